//! Arrival schedules: the k6-style executors, as written, validated and planned into arrivals.
//!
//! `PhaseSpec` is the entry as written, `Phase` the validated phase, `PlannedPhase` what the
//! scheduler runs (arrival offsets, or a closed-model ramp).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Scenario;
use super::arrivals::Arrivals;
use super::phase::{Phase, Ramp, RampStage};

/// The highest arrival rate a phase may offer, per second. Every device costs at least a TCP and
/// TLS handshake and a few signatures (well over 100 µs of CPU on the harness side alone), so one
/// process cannot start even 100,000 devices per second; a rate above this is a typo (a unit, a
/// few zeros too many), refused before anything runs.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The longest schedule: 31 days, beyond any soak a test plan asks for (and with [`MAX_RATE`]
/// at most 2.7e12 arrivals, exact as f64 and far from overflowing durations).
pub const MAX_SCHEDULE: Duration = Duration::from_secs(31 * 24 * 3600);

/// The most levels a `step` phase may have: each is a row of the throttle-limit finder.
pub const MAX_STEPS: u32 = 10_000;

/// One `[[schedule]]` entry as written: the executor and its fields. Kept flat (rather than a
/// tagged enum) so parse errors point at the exact line of the faulty field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub executor: Executor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<RampStage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_step: Option<f64>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub step_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
}

/// k6-style executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Executor {
    ConstantArrivalRate,
    RampingArrivalRate,
    Burst,
    RampingConcurrency,
    Step,
}

impl Executor {
    /// The name as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate => "constant-arrival-rate",
            Executor::RampingArrivalRate => "ramping-arrival-rate",
            Executor::Burst => "burst",
            Executor::RampingConcurrency => "ramping-concurrency",
            Executor::Step => "step",
        }
    }
}

impl PhaseSpec {
    /// The phase this entry describes; errors name the field (`at` is e.g. `schedule[0]`).
    pub fn to_phase(&self, at: &str) -> Result<Phase, String> {
        let allowed: &[&str] = match self.executor {
            Executor::ConstantArrivalRate => &["rate", "duration"],
            Executor::RampingArrivalRate => &["start_rate", "stages"],
            Executor::Burst => &["count"],
            Executor::RampingConcurrency => &["start", "stages"],
            Executor::Step => &["start_rate", "rate_step", "step_duration", "steps"],
        };
        let present = [
            ("rate", self.rate.is_some()),
            ("duration", self.duration.is_some()),
            ("start_rate", self.start_rate.is_some()),
            ("start", self.start.is_some()),
            ("stages", self.stages.is_some()),
            ("count", self.count.is_some()),
            ("rate_step", self.rate_step.is_some()),
            ("step_duration", self.step_duration.is_some()),
            ("steps", self.steps.is_some()),
        ];
        let name = self.executor.as_str();
        for (field, is_set) in present {
            if is_set && !allowed.contains(&field) {
                return Err(format!(
                    "{at}.{field}: not a field of the {name} executor (it takes {})",
                    allowed.join(", ")
                ));
            }
        }
        let need = |field: &str| format!("{at}.{field}: required by the {name} executor");
        Ok(match self.executor {
            Executor::ConstantArrivalRate => Phase::ConstantArrivalRate {
                rate: self.rate.ok_or_else(|| need("rate"))?,
                duration: self.duration.ok_or_else(|| need("duration"))?,
            },
            Executor::RampingArrivalRate => Phase::RampingArrivalRate {
                start_rate: self.start_rate.unwrap_or(0.0),
                stages: self.stages.clone().ok_or_else(|| need("stages"))?,
            },
            Executor::Burst => Phase::Burst {
                count: self.count.ok_or_else(|| need("count"))?,
            },
            Executor::RampingConcurrency => Phase::RampingConcurrency {
                start: self.start.unwrap_or(0.0),
                stages: self.stages.clone().ok_or_else(|| need("stages"))?,
            },
            Executor::Step => Phase::Step {
                start_rate: self.start_rate.ok_or_else(|| need("start_rate"))?,
                rate_step: self.rate_step.ok_or_else(|| need("rate_step"))?,
                step_duration: self.step_duration.ok_or_else(|| need("step_duration"))?,
                steps: self.steps.ok_or_else(|| need("steps"))?,
            },
        })
    }
}

/// A phase turned into what the scheduler does.
#[derive(Debug, Clone)]
pub enum PlannedPhase {
    /// Arrival offsets from the start of the run, generated as the scheduler takes them.
    Open(Arrivals),
    /// Keep `ramp.at(t)` devices in flight from `begin` for `ramp.duration()`.
    Closed { begin: Duration, ramp: Ramp },
}

impl Scenario {
    /// The phases as the scheduler runs them, open arrivals capped at `devices.count`. Nothing
    /// here grows with the number of arrivals: they are generated lazily.
    pub fn plan(&self) -> Vec<PlannedPhase> {
        let mut out = Vec::new();
        let mut begin = Duration::ZERO;
        let mut open = Vec::new();
        let mut planned = 0u64;
        let mut flush = |open: &mut Vec<(Duration, Phase)>, out: &mut Vec<PlannedPhase>| {
            let arrivals = Arrivals::new(
                std::mem::take(open),
                self.devices.count.saturating_sub(planned),
            );
            let n = arrivals.len();
            if n > 0 {
                planned += n;
                out.push(PlannedPhase::Open(arrivals));
            }
        };
        let phases = self
            .schedule
            .iter()
            .filter_map(|p| p.to_phase("schedule").ok());
        for phase in phases {
            let d = phase.duration();
            match phase {
                Phase::RampingConcurrency { start, stages } => {
                    flush(&mut open, &mut out);
                    let ramp = Ramp { start, stages };
                    out.push(PlannedPhase::Closed { begin, ramp });
                }
                phase => open.push((begin, phase)),
            }
            begin += d;
        }
        flush(&mut open, &mut out);
        out
    }

    /// Arrival offsets of the open phases, at most `devices.count` of them, generated lazily.
    pub fn arrivals(&self) -> impl Iterator<Item = Duration> + use<> {
        self.open_arrivals().into_iter().flatten()
    }

    /// How many arrivals the open phases schedule (at most `devices.count`), and the last one's
    /// offset; computed without generating them.
    pub fn arrival_span(&self) -> (u64, Option<Duration>) {
        let groups = self.open_arrivals();
        let count = groups.iter().map(Arrivals::len).sum();
        (count, groups.iter().rev().find_map(Arrivals::last))
    }

    fn open_arrivals(&self) -> Vec<Arrivals> {
        self.plan()
            .into_iter()
            .filter_map(|p| match p {
                PlannedPhase::Open(a) => Some(a),
                PlannedPhase::Closed { .. } => None,
            })
            .collect()
    }

    /// Planned length of the whole schedule.
    pub fn planned_duration(&self) -> Duration {
        self.schedule
            .iter()
            .filter_map(|p| p.to_phase("schedule").ok())
            .map(|p| p.duration())
            .sum()
    }

    /// The phase running at `t` (schedule time): its index and executor; the last phase once the
    /// schedule is over.
    pub fn phase_at(&self, t: Duration) -> Option<(usize, Executor)> {
        let mut begin = Duration::ZERO;
        for (i, spec) in self.schedule.iter().enumerate() {
            let d = spec.to_phase("schedule").ok()?.duration();
            if t < begin + d || i + 1 == self.schedule.len() {
                return Some((i, spec.executor));
            }
            begin += d;
        }
        None
    }

    /// The offered rate the schedule intends at `t` from the start (None in bursts and closed
    /// phases).
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let mut begin = Duration::ZERO;
        for spec in &self.schedule {
            let phase = spec.to_phase("schedule").ok()?;
            let d = phase.duration();
            if t < begin + d {
                return phase.rate_at(t - begin);
            }
            begin += d;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_produce_the_planned_arrivals() {
        let mut s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 1000
            [[schedule]]
            executor = "constant-arrival-rate"
            rate = 10
            duration = "2s"
            [[schedule]]
            executor = "burst"
            count = 5
            [[schedule]]
            executor = "ramping-arrival-rate"
            start_rate = 0
            stages = [{ target = 20, duration = "2s" }]
            "#,
        )
        .unwrap();
        let a: Vec<_> = s.arrivals().collect();
        assert_eq!(a.len(), 20 + 5 + 20);
        assert_eq!(s.arrival_span(), (45, a.last().copied()));
        assert_eq!(a[1], Duration::from_millis(100));
        assert!(a[20..25].iter().all(|t| *t == Duration::from_secs(2)));
        // The ramp accelerates: later gaps are shorter than earlier ones.
        let ramp = &a[25..];
        assert!(ramp[2] - ramp[1] > ramp[19] - ramp[18]);
        assert!(
            ramp.iter()
                .all(|t| *t >= Duration::from_secs(2) && *t <= Duration::from_secs(4))
        );
        s.devices.count = 7;
        assert_eq!(s.arrivals().count(), 7);
        assert_eq!(s.arrival_span(), (7, Some(Duration::from_millis(600))));
    }

    #[test]
    fn a_step_schedule_offers_rising_levels() {
        let s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 1000
            [[schedule]]
            executor = "step"
            start_rate = 2
            rate_step = 2
            step_duration = "2s"
            steps = 3
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.arrivals().count(), 4 + 8 + 12);
        assert_eq!(s.rate_at(Duration::from_millis(500)), Some(2.0));
        assert_eq!(s.rate_at(Duration::from_millis(3500)), Some(4.0));
        assert_eq!(s.rate_at(Duration::from_millis(5999)), Some(6.0));
        assert_eq!(s.rate_at(Duration::from_secs(6)), None);
    }

    #[test]
    fn a_concurrency_phase_is_planned_between_open_phases() {
        let s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 100
            [[schedule]]
            executor = "burst"
            count = 3
            [[schedule]]
            executor = "ramping-concurrency"
            start = 0
            stages = [{ target = 10, duration = "2s" }, { target = 10, duration = "1s" }]
            [[schedule]]
            executor = "burst"
            count = 2
            "#,
        )
        .unwrap();
        let plan = s.plan();
        assert_eq!(plan.len(), 3);
        let PlannedPhase::Closed { begin, ramp } = &plan[1] else {
            panic!("{plan:?}")
        };
        assert_eq!(*begin, Duration::ZERO);
        assert_eq!(ramp.duration(), Duration::from_secs(3));
        assert!((ramp.at(Duration::from_secs(1)) - 5.0).abs() < 1e-9);
        assert!((ramp.at(Duration::from_millis(2500)) - 10.0).abs() < 1e-9);
        let PlannedPhase::Open(last) = &plan[2] else {
            panic!("{plan:?}")
        };
        let last: Vec<_> = last.clone().into_iter().collect();
        assert_eq!(last, vec![Duration::from_secs(3); 2]);
    }
}
