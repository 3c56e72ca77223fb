//! One validated schedule phase and its maths: a phase's length, the rate it offers at a time,
//! and the piecewise-linear ramp its ramping executors follow. Both the arrival generator
//! (`arrivals`) and the schedule planner (`schedule`) build on this, so neither imports the
//! other's types back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One phase of the schedule, validated.
#[derive(Debug, Clone)]
pub enum Phase {
    /// `rate` arrivals per second for `duration`.
    ConstantArrivalRate { rate: f64, duration: Duration },
    /// Rate moves linearly from `start_rate` through each stage's `target` over its `duration`.
    RampingArrivalRate {
        start_rate: f64,
        stages: Vec<RampStage>,
    },
    /// `count` devices at once (the power-restored herd).
    Burst { count: u64 },
    /// Closed model: keep a number of devices in flight, ramping linearly from `start` through
    /// each stage's `target`; a device starts as soon as another ends.
    RampingConcurrency { start: f64, stages: Vec<RampStage> },
    /// `steps` constant-rate levels of `step_duration` each: `start_rate`, `start_rate +
    /// rate_step`, ... (the throttle-limit probe).
    Step {
        start_rate: f64,
        rate_step: f64,
        step_duration: Duration,
        steps: u32,
    },
}

impl Phase {
    /// The phase's length, or None when it overflows.
    pub(super) fn checked_duration(&self) -> Option<Duration> {
        match self {
            Phase::RampingArrivalRate { stages, .. } | Phase::RampingConcurrency { stages, .. } => {
                stages
                    .iter()
                    .try_fold(Duration::ZERO, |t, s| t.checked_add(s.duration))
            }
            Phase::Step {
                step_duration,
                steps,
                ..
            } => step_duration.checked_mul(*steps),
            other => Some(other.duration()),
        }
    }

    pub(super) fn duration(&self) -> Duration {
        match self {
            Phase::ConstantArrivalRate { duration, .. } => *duration,
            Phase::RampingArrivalRate { stages, .. } | Phase::RampingConcurrency { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
            Phase::Burst { .. } => Duration::ZERO,
            Phase::Step {
                step_duration,
                steps,
                ..
            } => *step_duration * *steps,
        }
    }

    /// The offered arrival rate `t` into this phase (open phases with a rate only).
    pub(super) fn rate_at(&self, t: Duration) -> Option<f64> {
        match self {
            Phase::ConstantArrivalRate { rate, .. } => Some(*rate),
            Phase::RampingArrivalRate { start_rate, stages } => {
                Some(level_at(*start_rate, stages, t))
            }
            Phase::Step {
                start_rate,
                rate_step,
                step_duration,
                steps,
            } => {
                let k = (t.as_secs_f64() / step_duration.as_secs_f64()).floor() as u32;
                Some(start_rate + rate_step * f64::from(k.min(steps.saturating_sub(1))))
            }
            Phase::Burst { .. } | Phase::RampingConcurrency { .. } => None,
        }
    }
}

/// A piecewise-linear level over time.
#[derive(Debug, Clone)]
pub struct Ramp {
    pub start: f64,
    pub stages: Vec<RampStage>,
}

impl Ramp {
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The level `t` after the ramp began.
    pub fn at(&self, t: Duration) -> f64 {
        level_at(self.start, &self.stages, t)
    }
}

/// The level `t` into a ramp from `start` through `stages`.
fn level_at(start: f64, stages: &[RampStage], t: Duration) -> f64 {
    let mut from = start;
    let mut elapsed = Duration::ZERO;
    for s in stages {
        if t < elapsed + s.duration {
            let f = (t - elapsed).as_secs_f64() / s.duration.as_secs_f64();
            return from + (s.target - from) * f;
        }
        elapsed += s.duration;
        from = s.target;
    }
    from
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RampStage {
    pub target: f64,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub duration: Duration,
}
