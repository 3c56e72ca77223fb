//! The live dashboard (ratatui + crossterm): the public face of `app`, `ui`, `events` and `log`.
//!
//! - [`App`] (`app`) is built from the aggregator's snapshots (it never touches devices) and the
//!   keys;
//! - [`render`] (`ui`) draws an `App` and nothing else (tested with `TestBackend`);
//! - [`run_loop`] (`events`) `select!`s over a fixed-rate redraw tick, terminal events and the
//!   snapshot channel, and ends when the run drops its end of the channel;
//! - [`init_logging`] (`log`) installs the `tracing` subscriber whose layers keep log lines
//!   while the dashboard owns the terminal ([`CONSOLE`]: the operator's lines, printed as they are).
//!
//! `q` / Ctrl-C ask the run to stop (arrivals end, in-flight devices drain, every file is
//! written); the dashboard stays up until the run has finished and then restores the terminal,
//! on every exit path including a panic.

mod app;
mod events;
mod log;
mod ui;

pub use app::{Action, App};
pub use events::{Dashboard, FPS, StopKeys, run_loop};
pub use log::{CONSOLE, init as init_logging};
pub use ui::render;
