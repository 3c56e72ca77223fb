//! Throttle-limit finder: arrivals per offered-rate level, each level judged sustainable or not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stage::FailureClass;

/// Devices counted by the offered-rate level of their *intended* start (so a device belongs to
/// the level that offered it, whenever it finished).
#[derive(Debug, Default)]
pub struct LevelCounts {
    /// (target rate, offered, completed, throttled), in schedule order.
    levels: Vec<(f64, u64, u64, u64)>,
    /// Where each rate is in `levels` (a ramp offers a new rate at nearly every arrival: a
    /// linear search would make counting quadratic).
    index: std::collections::HashMap<u64, usize>,
}

impl LevelCounts {
    /// Count one arrival whose intended start the schedule offered at `rate` (None: outside
    /// any rate level); `failure` is its failure class (`None` = provisioned, `Dropped` =
    /// never started).
    pub fn record(&mut self, rate: Option<f64>, failure: Option<FailureClass>) {
        if let Some(rate) = rate {
            let throttled = failure == Some(FailureClass::Throttled);
            self.add(rate, 1, u64::from(failure.is_none()), u64::from(throttled));
        }
    }

    /// Count `offered` arrivals at `rate`, `completed` and `throttled` of them (`merge` adds
    /// the shards' levels with it).
    pub fn add(&mut self, rate: f64, offered: u64, completed: u64, throttled: u64) {
        // `+ 0.0` folds -0 into 0, which share a level.
        let rate = (rate * 1000.0).round() / 1000.0 + 0.0;
        let next = self.levels.len();
        let index = *self.index.entry(rate.to_bits()).or_insert(next);
        if index == next {
            self.levels.push((rate, 0, 0, 0));
        }
        let level = &mut self.levels[index];
        level.1 += offered;
        level.2 += completed;
        level.3 += throttled;
    }
}

/// A rate level is sustainable when at most `max_throttled_fraction` of its arrivals were
/// throttled and completions reached `min_completion_ratio` of the offered rate.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    pub max_throttled_fraction: f64,
    pub min_completion_ratio: f64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_throttled_fraction: 0.01,
            min_completion_ratio: 0.9,
        }
    }
}

/// One offered-rate level of the schedule, judged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RateLevel {
    /// The offered arrival rate of the level, per second.
    pub target_per_s: f64,
    /// Devices whose intended start fell in the level.
    pub offered: u64,
    /// Devices of the level that were provisioned.
    pub completed: u64,
    /// Devices of the level that failed as throttled.
    pub throttled: u64,
    /// `throttled / offered`.
    pub throttled_fraction: f64,
    /// `completed / offered`.
    pub completion_ratio: f64,
    /// Whether the level was judged sustainable (the scenario's `[analysis]`).
    pub sustainable: bool,
}

/// The throttle-limit finder's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ThrottleAnalysis {
    /// The stage with the most throttled failures.
    pub throttling_stage: Option<String>,
    /// The levels by offered rate, each judged.
    pub levels: Vec<RateLevel>,
}

impl ThrottleAnalysis {
    /// Whether the run offered rate levels to judge: more than one (a step or ramp probe); a
    /// plain constant-rate run has one and says nothing about what else would be sustainable.
    pub fn has_levels(&self) -> bool {
        self.levels.len() > 1
    }

    /// The highest sustainable level below the first unsustainable one (a rate that only looks
    /// fine after the limit was crossed, e.g. a lucky window, does not count); None when the run
    /// has no levels to judge.
    pub fn sustainable_rate(&self) -> Option<f64> {
        if !self.has_levels() {
            return None;
        }
        self.levels
            .iter()
            .take_while(|l| l.sustainable)
            .map(|l| l.target_per_s)
            .reduce(f64::max)
    }
}

/// Judge each rate level: sustainable when few arrivals were throttled and completions kept pace.
pub fn throttle_analysis(
    a: &Analysis,
    counts: &LevelCounts,
    failures: &BTreeMap<String, u64>,
) -> Option<ThrottleAnalysis> {
    if counts.levels.is_empty() {
        return None;
    }
    let levels = counts
        .levels
        .iter()
        .map(|&(target, offered, completed, throttled)| {
            RateLevel::judge(a, target, offered, completed, throttled)
        })
        .collect();
    Some(ThrottleAnalysis::new(levels, failures))
}

impl RateLevel {
    /// A level's counts, judged: sustainable when few arrivals were throttled and completions
    /// kept pace. (`merge` judges the shards' summed counts with it.)
    pub fn judge(
        a: &Analysis,
        target_per_s: f64,
        offered: u64,
        completed: u64,
        throttled: u64,
    ) -> RateLevel {
        let ratio = |n: u64| {
            if offered == 0 {
                0.0
            } else {
                n as f64 / offered as f64
            }
        };
        RateLevel {
            target_per_s,
            offered,
            completed,
            throttled,
            throttled_fraction: ratio(throttled),
            completion_ratio: ratio(completed),
            sustainable: offered > 0
                && ratio(throttled) <= a.max_throttled_fraction
                && ratio(completed) >= a.min_completion_ratio,
        }
    }
}

impl ThrottleAnalysis {
    /// Judged levels (sorted here by rate) and the failures by label (for the throttling stage).
    pub fn new(mut levels: Vec<RateLevel>, failures: &BTreeMap<String, u64>) -> ThrottleAnalysis {
        levels.sort_by(|x, y| x.target_per_s.total_cmp(&y.target_per_s));
        let throttling_stage = failures
            .iter()
            .filter_map(|(label, n)| label.strip_prefix("throttled.").map(|stage| (stage, *n)))
            .max_by_key(|(_, n)| *n)
            .map(|(stage, _)| stage.to_string());
        ThrottleAnalysis {
            throttling_stage,
            levels,
        }
    }
}
