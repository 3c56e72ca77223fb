//! The cleanup progress bar on stderr: redrawn in place on a terminal, one line a second otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Items finished and failed so far, shared with the workers.
#[derive(Debug, Default)]
pub struct Counters {
    pub finished: AtomicU64,
    pub failed: AtomicU64,
}

/// A running progress display.
pub struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Start drawing `counters` against `total` items.
    pub fn start(total: u64, counters: Arc<Counters>) -> Progress {
        let stop = CancellationToken::new();
        let tty = std::io::stderr().is_terminal();
        let period = if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    draw(&line(total, &counters, start.elapsed()), tty, false);
                }
                draw(&line(total, &counters, start.elapsed()), tty, true);
            })
        };
        Progress { stop, task }
    }

    /// Draw the last state and stop.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn draw(text: &str, tty: bool, last: bool) {
    let mut err = std::io::stderr().lock();
    let _ = if tty {
        write!(err, "\r\x1b[2K{text}{}", if last { "\n" } else { "" })
    } else {
        writeln!(err, "{text}")
    };
    let _ = err.flush();
}

/// `[#########...........]  45/100 items, 2 failed, 3.1/s, 14 s`
pub fn line(total: u64, counters: &Counters, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let done = counters.finished.load(Ordering::Relaxed).min(total);
    let failed = counters.failed.load(Ordering::Relaxed);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "cleanup [{}{}] {done}/{total} items, {failed} failed, {rate:.1}/s, {} s",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        elapsed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_share_done() {
        let c = Counters::default();
        c.finished.store(15, Ordering::Relaxed);
        c.failed.store(1, Ordering::Relaxed);
        let text = line(30, &c, Duration::from_secs(5));
        assert!(
            text.contains(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{text}"
        );
        assert!(text.contains("15/30 items, 1 failed, 3.0/s, 5 s"), "{text}");
        let empty = line(0, &Counters::default(), Duration::ZERO);
        assert!(empty.contains("0/0"), "{empty}");
    }
}
