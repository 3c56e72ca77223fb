//! Log capture while the dashboard owns the terminal.
//!
//! Lines are kept (the last one is shown in the footer) and printed on stderr when the dashboard
//! gives the terminal back.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

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

/// Print a message on stderr, or keep it for the dashboard's footer while it owns the terminal.
pub fn log_line(line: String) {
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

/// A `tracing` writer that goes through [`log_line`].
pub struct LogWriter(Vec<u8>);

impl LogWriter {
    pub fn make() -> LogWriter {
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
            log_line(line.to_string());
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
    fn log_lines_lose_terminal_escapes() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m hi"),
            "2026  INFO hi"
        );
    }
}
