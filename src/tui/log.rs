//! The dashboard as the end of fleetstorm's one logging path, `tracing`: a subscriber whose
//! layers print on stderr, or, while the dashboard owns the terminal, keep the lines (the last
//! one is shown in the footer) and print them when the dashboard gives the terminal back.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Log lines kept while the dashboard owns the terminal.
const LOG_LINES: usize = 50;

static LOG: Mutex<Option<VecDeque<String>>> = Mutex::new(None);

pub(super) fn set_log_capture(on: bool) {
    if let Ok(mut log) = LOG.lock() {
        match (on, log.is_some()) {
            (true, false) => *log = Some(VecDeque::new()),
            (false, true) => {
                // Keep the captured lines for `take_log`; new lines go to stderr again.
                let lines = log.take().unwrap_or_default();
                drop(log);
                if let Ok(mut kept) = KEPT.lock() {
                    kept.extend(lines);
                }
            }
            _ => {}
        }
    }
}

static KEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(super) fn take_log() -> Vec<String> {
    KEPT.lock()
        .map(|mut k| std::mem::take(&mut *k))
        .unwrap_or_default()
}

pub(super) fn last_log() -> Option<String> {
    LOG.lock().ok()?.as_ref()?.back().cloned()
}

/// The target of the lines fleetstorm prints for the operator as they are (`results in …`,
/// `cleanup: …`): `tracing::info!(target: CONSOLE, "…")`. They are shown whatever the log
/// filter says, without a timestamp or level; every other event is formatted by `tracing`'s
/// fmt layer and filtered by `--log` / `RUST_LOG`.
pub const CONSOLE: &str = "console";

/// Install the one logging path: `tracing`, with two layers that both end in [`emit`] (kept
/// for the dashboard while it owns the terminal, else printed on stderr): the console lines as
/// they are, and every other event formatted and filtered by `filter`.
pub fn init(filter: EnvFilter, ansi: bool) {
    let filter = match format!("{CONSOLE}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let formatted = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(LogWriter::make)
        .with_filter(filter);
    let console = ConsoleLayer.with_filter(filter_fn(|m| m.target() == CONSOLE));
    let _ = tracing_subscriber::registry()
        .with(formatted)
        .with(console)
        .try_init();
}

/// The layer that passes [`CONSOLE`] events' message on as it is.
pub struct ConsoleLayer;

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0.push_str(value);
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    use std::fmt::Write as _;
                    let _ = write!(self.0, "{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        emit(message.0);
    }
}

/// Print a line on stderr, or keep it for the dashboard's footer while it owns the terminal.
fn emit(line: String) {
    if let Ok(mut log) = LOG.lock()
        && let Some(lines) = log.as_mut()
    {
        lines.push_back(strip_ansi(&line));
        while lines.len() > LOG_LINES {
            lines.pop_front();
        }
        return;
    }
    eprintln!("{line}");
}

/// The fmt layer's writer: each event's text, line by line, through [`emit`].
struct LogWriter(Vec<u8>);

impl LogWriter {
    fn make() -> LogWriter {
        LogWriter(Vec::new())
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines().filter(|l| !l.is_empty()) {
            emit(line.to_string());
        }
    }
}

/// `line` without terminal escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_go_through_tracing_to_the_dashboard_while_it_owns_the_terminal() {
        let subscriber = tracing_subscriber::registry()
            .with(ConsoleLayer.with_filter(filter_fn(|m| m.target() == CONSOLE)));
        tracing::subscriber::with_default(subscriber, || {
            set_log_capture(true);
            tracing::info!(target: CONSOLE, "variant {}: results in {}", "a", "out/a");
            tracing::info!("not a console line");
            assert_eq!(last_log().as_deref(), Some("variant a: results in out/a"));
            set_log_capture(false);
        });
        assert!(take_log().contains(&"variant a: results in out/a".to_string()));
    }

    #[test]
    fn log_lines_lose_terminal_escapes() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m hi"),
            "2026  INFO hi"
        );
    }
}
