//! What a running test shares with whoever watches it: the aggregator's once-a-second
//! [`Snapshot`], and the [`Controls`] (pause, arrival-rate multiplier) that the scheduler obeys.
//!
//! The scheduler runs on *schedule time*: the scenario's clock, which advances at the multiplier
//! times real time and stands still while paused. With the multiplier at 1 and no pause, schedule
//! time is real time since the start, so a run nobody touches follows its plan exactly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Percentiles;
use crate::results::RateChange;

/// Bounds and step of the arrival-rate multiplier.
pub const MULTIPLIER_MIN: f64 = 0.1;
pub const MULTIPLIER_MAX: f64 = 10.0;
pub const MULTIPLIER_STEP: f64 = 0.1;

/// The operator's settings at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub multiplier: f64,
    pub paused: bool,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            multiplier: 1.0,
            paused: false,
        }
    }
}

/// Live controls, shared by the dashboard (writer) and the scheduler (reader).
#[derive(Debug)]
pub struct Controls {
    rate: watch::Sender<Rate>,
    changes: Mutex<Vec<(Instant, Rate)>>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            rate: watch::Sender::new(Rate::default()),
            changes: Mutex::new(Vec::new()),
        }
    }
}

impl Controls {
    pub fn new() -> Arc<Controls> {
        Arc::new(Controls::default())
    }

    pub fn current(&self) -> Rate {
        *self.rate.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Rate> {
        self.rate.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut Rate)) -> Rate {
        let mut next = self.current();
        f(&mut next);
        next.multiplier = next.multiplier.clamp(MULTIPLIER_MIN, MULTIPLIER_MAX);
        // Round to the step so repeated +/- land on the same values (1.1, not 1.1000000000000001).
        let per_unit = (1.0 / MULTIPLIER_STEP).round();
        next.multiplier = (next.multiplier * per_unit).round() / per_unit;
        if next != self.current() {
            self.rate.send_replace(next);
            if let Ok(mut c) = self.changes.lock() {
                c.push((Instant::now(), next));
            }
        }
        next
    }

    pub fn toggle_pause(&self) -> Rate {
        self.update(|r| r.paused = !r.paused)
    }

    pub fn faster(&self) -> Rate {
        self.update(|r| r.multiplier += MULTIPLIER_STEP)
    }

    pub fn slower(&self) -> Rate {
        self.update(|r| r.multiplier -= MULTIPLIER_STEP)
    }

    /// Changes made since `start`, as elapsed seconds from it.
    pub fn changes_since(&self, start: Instant) -> Vec<RateChange> {
        self.changes
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|(at, _)| *at >= start)
                    .map(|(at, r)| RateChange {
                        elapsed_s: (*at - start).as_secs_f64(),
                        multiplier: r.multiplier,
                        paused: r.paused,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Schedule time: follows the controls. Shared by the scheduler (which re-anchors it on every
/// change) and the aggregator (which reads it for the snapshot).
#[derive(Debug)]
pub struct ScheduleClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    real: Instant,
    schedule: Duration,
    rate: Rate,
}

impl ClockState {
    fn at(&self, now: Instant) -> Duration {
        if self.rate.paused {
            self.schedule
        } else {
            self.schedule
                + now
                    .saturating_duration_since(self.real)
                    .mul_f64(self.rate.multiplier)
        }
    }
}

impl ScheduleClock {
    pub fn new(start: Instant, rate: Rate) -> ScheduleClock {
        ScheduleClock {
            state: Mutex::new(ClockState {
                real: start,
                schedule: Duration::ZERO,
                rate,
            }),
        }
    }

    fn state(&self) -> ClockState {
        match self.state.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        }
    }

    /// Schedule time at `now`.
    pub fn at(&self, now: Instant) -> Duration {
        self.state().at(now)
    }

    pub fn rate(&self) -> Rate {
        self.state().rate
    }

    /// Apply new settings from `now` on.
    pub fn set(&self, now: Instant, rate: Rate) {
        if let Ok(mut s) = self.state.lock() {
            let schedule = s.at(now);
            *s = ClockState {
                real: now,
                schedule,
                rate,
            };
        }
    }

    /// The real instant schedule time reaches `t` at the current settings (None while paused).
    /// Times already passed map to the instant they were passed or earlier (the device is late).
    pub fn real_at(&self, t: Duration) -> Option<Instant> {
        let s = self.state();
        if s.rate.paused {
            return None;
        }
        let ahead = t.checked_sub(s.schedule);
        Some(match ahead {
            Some(d) => s.real + d.div_f64(s.rate.multiplier),
            None => s
                .real
                .checked_sub((s.schedule - t).div_f64(s.rate.multiplier))
                .unwrap_or(s.real),
        })
    }
}

/// One stage in a snapshot.
#[derive(Debug, Clone, Default)]
pub struct StageView {
    pub name: &'static str,
    /// Latency from the intended start, over the last interval.
    pub interval: Percentiles,
    /// Latency from the intended start, since the start of the run.
    pub total: Percentiles,
    /// Cumulative latency percentile curve: (percentile, milliseconds).
    pub curve: Vec<(f64, f64)>,
}

/// A failure reason with its count and the latest example message.
#[derive(Debug, Clone, Default)]
pub struct FailureView {
    pub reason: String,
    pub count: u64,
    pub latest: String,
}

/// What the aggregator publishes once a second (and once more at the end).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub scenario: String,
    pub variant: Option<String>,
    /// This process's shard of the run (`--shard`), None when unsharded.
    pub shard: Option<crate::shard::Shard>,
    pub endpoint: String,
    /// Real time since the start.
    pub elapsed: Duration,
    /// Schedule time (see the module doc) and the schedule's planned length.
    pub schedule_elapsed: Duration,
    pub planned: Duration,
    /// "2/3 ramping-arrival-rate".
    pub phase: String,
    /// The arrival rate the schedule asks for now, multiplier applied (None in bursts and
    /// closed-model phases).
    pub target_rate: Option<f64>,
    pub rate: Rate,
    pub stopping: bool,
    pub finished: bool,
    pub planned_devices: u64,
    pub started: u64,
    pub provisioned: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// Devices connected with their own identity now (they stay or send telemetry).
    pub connected: u64,
    pub dropped: u64,
    /// Length of the last interval and its counts.
    pub interval: Duration,
    pub interval_offered: u64,
    pub interval_provisioned: u64,
    pub interval_failed: u64,
    /// Largest start lag in the last interval, and over the run.
    pub lag_interval: Duration,
    pub lag_max: Duration,
    /// fleetstorm's own CPU over the last interval (devices, and the mock when embedded), in
    /// percent of one core, and the cores it may use: near `100 × cores` the harness itself is
    /// the bottleneck and latencies include its queueing.
    pub cpu_percent: f64,
    pub cores: usize,
    /// What the devices did that AWS counts, so far: certificates issued, MQTT connects and
    /// whole-flow retries (in-flight devices included), and the most connects one client ID
    /// made in a one-second window (devices that finished).
    pub certificates_issued: u64,
    pub connects: u64,
    pub retries: u64,
    pub max_connects_per_s: u64,
    pub stages: Vec<StageView>,
    /// Sorted by count, largest first.
    pub failures: Vec<FailureView>,
}

impl Snapshot {
    fn per_second(&self, n: u64) -> f64 {
        let s = self.interval.as_secs_f64();
        if s > 0.0 { n as f64 / s } else { 0.0 }
    }
    pub fn offered_per_s(&self) -> f64 {
        self.per_second(self.interval_offered)
    }
    pub fn provisioned_per_s(&self) -> f64 {
        self.per_second(self.interval_provisioned)
    }
    pub fn failed_per_s(&self) -> f64 {
        self.per_second(self.interval_failed)
    }
}

/// The percentiles shown in the dashboard's percentile view.
pub const CURVE: [f64; 7] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99];
