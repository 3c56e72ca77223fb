//! Arrival schedules: the k6-style executors, as written, validated and planned into arrivals.
//!
//! `PhaseSpec` is the entry as written; `to_phase` validates it into a `phase::Phase`, which the
//! plan (`plan`) holds and turns into what the scheduler runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::phase::{Phase, RampStage};

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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    #[schemars(with = "Option<String>")]
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
    #[schemars(with = "Option<String>")]
    pub step_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
}

/// k6-style executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

impl Executor {
    /// The executor a validated phase runs.
    pub fn of(phase: &Phase) -> Executor {
        match phase {
            Phase::ConstantArrivalRate { .. } => Executor::ConstantArrivalRate,
            Phase::RampingArrivalRate { .. } => Executor::RampingArrivalRate,
            Phase::Burst { .. } => Executor::Burst,
            Phase::RampingConcurrency { .. } => Executor::RampingConcurrency,
            Phase::Step { .. } => Executor::Step,
        }
    }
}
