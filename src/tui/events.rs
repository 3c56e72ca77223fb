//! The event loop (`select!` over redraw tick, keys, snapshots) and the real-terminal `Dashboard`.
//!
//! The `Dashboard` runs the loop beside the run and restores the terminal on every exit path.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::Event;
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::log::{CONSOLE, set_log_capture, take_log};
use super::{Action, App, render};
use crate::live::{Controls, Snapshot};

/// Redraws per second.
pub const FPS: u32 = 5;

/// What `q` / Ctrl-C do: the first press stops the run (arrivals end, in-flight devices
/// drain); a second, when there is `abort`, cuts the drain short.
#[derive(Debug, Clone)]
pub struct StopKeys {
    pub stop: CancellationToken,
    pub abort: Option<CancellationToken>,
}

impl From<CancellationToken> for StopKeys {
    fn from(stop: CancellationToken) -> StopKeys {
        StopKeys { stop, abort: None }
    }
}

/// Apply a key's action to the run.
fn apply(action: Action, controls: &Controls, stop: &StopKeys) {
    match action {
        Action::Stop => match &stop.abort {
            Some(abort) if stop.stop.is_cancelled() => {
                tracing::info!(
                    target: CONSOLE,
                    "stop pressed again: aborting in-flight devices, writing the results"
                );
                abort.cancel();
            }
            _ => stop.stop.cancel(),
        },
        Action::TogglePause => {
            controls.toggle_pause();
        }
        Action::Faster => {
            controls.faster();
        }
        Action::Slower => {
            controls.slower();
        }
    }
}

/// The event loop: redraws at `FPS`, applies keys, follows the snapshots; returns when the run
/// drops the snapshot sender (after one last redraw).
pub async fn run_loop<B, E>(
    terminal: &mut Terminal<B>,
    mut events: E,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    controls: Arc<Controls>,
    stop: impl Into<StopKeys>,
) -> Result<App, B::Error>
where
    B: Backend,
    E: Stream<Item = std::io::Result<Event>> + Unpin,
{
    let stop = stop.into();
    let mut app = App::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut events_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                terminal.draw(|f| render(f, &app))?;
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let s = snapshots.borrow_and_update().clone();
                app.update(s);
            }
            event = events.next(), if events_open => match event {
                Some(Ok(Event::Key(key))) => {
                    if let Some(action) = app.key(key) {
                        apply(action, &controls, &stop);
                    }
                }
                Some(Ok(_)) => {}
                // No terminal input any more: keep showing the run.
                Some(Err(_)) | None => events_open = false,
            },
        }
    }
    app.update(snapshots.borrow().clone());
    terminal.draw(|f| render(f, &app))?;
    Ok(app)
}

/// The dashboard on the real terminal, running beside the run.
pub struct Dashboard {
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
}

/// Restores the terminal when dropped (normal end, error or panic unwinding).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
        set_log_capture(false);
    }
}

impl Dashboard {
    /// Take over the terminal (alternate screen, raw mode) and start drawing.
    pub fn start(controls: Arc<Controls>, stop: impl Into<StopKeys>) -> std::io::Result<Dashboard> {
        let stop = stop.into();
        let mut terminal = ratatui::try_init()?;
        set_log_capture(true);
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let task = tokio::spawn(async move {
            let _restore = Restore;
            let events = crossterm::event::EventStream::new();
            if let Err(e) = run_loop(&mut terminal, events, rx, controls, stop).await {
                tracing::info!(target: CONSOLE, "dashboard: {e}");
            }
        });
        Ok(Dashboard {
            snapshots: tx,
            task,
        })
    }

    /// Wait for the dashboard to draw the end of the run and give the terminal back.
    pub async fn finish(self) {
        let Dashboard { snapshots, task } = self;
        drop(snapshots);
        let _ = task.await;
        // Whatever was logged while the dashboard had the screen.
        for line in take_log() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_step_clamp_and_record_changes() {
        let controls = Controls::new();
        let start = std::time::Instant::now();
        assert_eq!(controls.faster().multiplier, 1.1);
        for _ in 0..200 {
            controls.slower();
        }
        assert!((controls.current().multiplier - crate::live::MULTIPLIER_MIN).abs() < 1e-9);
        controls.toggle_pause();
        let changes = controls.changes_since(start);
        // 1.1, then 1.0 down to 0.1 (10 changes; further presses change nothing), then pause.
        assert_eq!(changes.len(), 1 + 10 + 1);
        assert!(changes.last().unwrap().paused);
    }

    #[test]
    fn a_second_stop_key_aborts_the_drain() {
        let controls = Controls::new();
        let keys = StopKeys {
            stop: CancellationToken::new(),
            abort: Some(CancellationToken::new()),
        };
        let abort = keys.abort.clone().unwrap();
        apply(Action::Stop, &controls, &keys);
        assert!(keys.stop.is_cancelled() && !abort.is_cancelled());
        apply(Action::Stop, &controls, &keys);
        assert!(abort.is_cancelled());
        // Without an abort token (tests, embedders), further presses only stop.
        let keys = StopKeys::from(CancellationToken::new());
        apply(Action::Stop, &controls, &keys);
        apply(Action::Stop, &controls, &keys);
        assert!(keys.stop.is_cancelled());
    }
}
