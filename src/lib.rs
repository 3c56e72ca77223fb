//! fleetstorm: a load-testing harness for AWS IoT Core fleet provisioning by claim,
//! with a faithful local mock endpoint.
//!
//! # Module map
//!
//! Layered: a module uses modules of its own layer or below, never above. `tests/it/architecture.rs`
//! holds the walls marked ⊘ (and fails on an import cycle between modules, or between the files
//! of one module).
//!
//! ```text
//! 6 front      cli (commands)  exit (every error's exit code; only cli uses it)
//! 5 commands   fleet (the run engine)  merge  aws (real-AWS setup, teardown, cleanup)  k8s
//!              report  compare  exporter (Prometheus endpoint)  fuzzing (fuzz entry points)
//! 4 run parts  output (the run's results writer)  live (what a running test shares: snapshot,
//!              controls)  tui (dashboard, and the end of the logging path)  guard  shard
//! 3 models     scenario (the validated scenario)  results (the results files' models and
//!              readers)
//! 2 sides      device (the sans-IO device flow)  mock (the endpoint)  metrics (histograms,
//!              percentiles, thresholds)  mock_settings
//! 1 leaves     iot (AWS IoT's template and policy languages)  protocol  pki  tls  stage
//!              limits  signals  http  toml_error_message
//! ```
//!
//! Walls: ⊘ `device` uses only protocol, pki, tls, stage, limits; ⊘ `protocol` and `iot` use no
//! crate module; ⊘ `mock` uses only protocol, pki, tls, limits, mock_settings, http, iot (and
//! `toml_error_message`); ⊘ `aws` does not use `mock` (both use `iot`); ⊘ `results` does not
//! use the engine or the writers (live, fleet, output, tui, cli) and ⊘ `output` not live,
//! fleet, tui or cli; ⊘ `metrics`, `live` and `tui` do not use `device`; ⊘ `scenario` does not
//! use `mock`.
//!
//! # Names
//!
//! - `results` is the model of a results folder (one row type or model per file, with its
//!   columns: `results::{created, devices, failures, timeseries, hlog}`, `Summary`) and its
//!   readers; `output` is the running test's writer of those files.
//! - `metrics` is the latency histograms and what is computed from them (percentiles,
//!   thresholds, the throttle analysis); `exporter` is the Prometheus endpoint
//!   (`--metrics-listen`) that exports them.
//! - `live` is what a running test shares with whoever watches it; `fleet`'s private `Live` is
//!   the engine's own atomic counters behind it.
//! - MQTT 3.1.1 is `311` everywhere: `device::Protocol::Mqtt311` (`mqtt311` in scenarios), the
//!   device's codec `V311`, the mock's `session/v311.rs` and `Proto::V311`; only rumqttc calls
//!   it `v4` (its protocol level).
//! - Logging has one path, `tracing`: operator lines go to the target `tui::CONSOLE` (printed
//!   as they are), everything else is formatted and filtered; the dashboard's layer keeps both
//!   while it owns the terminal.
//! - Each type name means one thing: `fleet`'s `ArrivalPacer` paces arrivals, `aws`'s `Pacer`
//!   paces API calls; `cli`'s `CommandFailure` is a failed command with its exit code,
//!   `device`'s `Failure` a failed device flow; `device`'s `Created` is one resource as the
//!   endpoint creates it, `aws`'s `CreatedSet` the deduplicated set read back from `created.csv`.
//! - "spec §N" in comments is `spec/aws-fleet-provisioning.md`, section N.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod compare;
pub mod device;
pub mod exit;
pub mod exporter;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod http;
pub mod iot;
pub mod k8s;
pub mod limits;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod mock;
pub mod mock_settings;
pub mod output;
pub mod pki;
pub mod protocol;
pub mod report;
pub mod results;
pub mod scenario;
pub mod schema;
pub mod shard;
pub mod signals;
pub mod stage;
pub mod tls;
pub mod tui;

/// "line L, column C: message" for a TOML parse error in `text`.
pub fn toml_error_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column} ({source}): {message}")
        }
        None => message.to_string(),
    }
}
