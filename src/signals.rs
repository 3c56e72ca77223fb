//! Ctrl-C / SIGTERM / SIGHUP as futures.
//!
//! SIGHUP is handled like SIGTERM: a dropped ssh session stops the run gracefully (drain, every
//! file written) instead of killing it. [`Signals`] keeps its handlers for the whole process, so
//! a second signal is seen as well (a run aborts its drain on it).

/// The stop signals, registered once; each `recv` waits for the next one.
pub struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    /// Register the handlers now (a signal arriving before the first `recv` is not lost).
    /// Needs a Tokio runtime.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Wait for the next SIGINT, SIGTERM or SIGHUP; returns the signal's name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let Some([int, term, hup]) = &mut self.streams else {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            };
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// Wait for SIGINT, SIGTERM or SIGHUP; returns the signal's name.
pub async fn shutdown_signal() -> &'static str {
    Signals::new().recv().await
}
