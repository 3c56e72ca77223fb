//! Throttle-limit finder: arrivals per offered-rate level, each level judged sustainable or not.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// Devices counted by the offered-rate level of their *intended* start (so a device belongs to
/// the level that offered it, whenever it finished).
#[derive(Debug, Default)]
pub struct LevelCounts {
    /// (target rate, offered, completed, throttled), in schedule order.
    levels: Vec<(f64, u64, u64, u64)>,
}

impl LevelCounts {
    /// Count one arrival that intended to start at `offset`; `failure` is its failure class
    /// (`None` = provisioned, `Some("dropped")` = never started).
    pub fn record(&mut self, scenario: &Scenario, offset: Duration, failure: Option<&str>) {
        let Some(rate) = scenario.rate_at(offset) else {
            return;
        };
        let rate = (rate * 1000.0).round() / 1000.0;
        let index = match self.levels.iter().position(|l| l.0 == rate) {
            Some(i) => i,
            None => {
                self.levels.push((rate, 0, 0, 0));
                self.levels.len() - 1
            }
        };
        let level = &mut self.levels[index];
        level.1 += 1;
        match failure {
            None => level.2 += 1,
            Some("throttled") => level.3 += 1,
            Some(_) => {}
        }
    }
}

/// One offered-rate level of the schedule, judged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateLevel {
    pub target_per_s: f64,
    pub offered: u64,
    pub completed: u64,
    pub throttled: u64,
    pub throttled_fraction: f64,
    pub completion_ratio: f64,
    pub sustainable: bool,
}

/// The throttle-limit finder's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThrottleAnalysis {
    /// The stage with the most throttled failures.
    pub throttling_stage: Option<String>,
    pub levels: Vec<RateLevel>,
}

/// Judge each rate level: sustainable when few arrivals were throttled and completions kept pace.
pub fn throttle_analysis(
    scenario: &Scenario,
    counts: &LevelCounts,
    failures: &BTreeMap<String, u64>,
) -> Option<ThrottleAnalysis> {
    if counts.levels.is_empty() {
        return None;
    }
    let a = &scenario.analysis;
    let mut levels: Vec<RateLevel> = counts
        .levels
        .iter()
        .map(|&(target, offered, completed, throttled)| {
            let ratio = |n: u64| {
                if offered == 0 {
                    0.0
                } else {
                    n as f64 / offered as f64
                }
            };
            RateLevel {
                target_per_s: target,
                offered,
                completed,
                throttled,
                throttled_fraction: ratio(throttled),
                completion_ratio: ratio(completed),
                sustainable: offered > 0
                    && ratio(throttled) <= a.max_throttled_fraction
                    && ratio(completed) >= a.min_completion_ratio,
            }
        })
        .collect();
    levels.sort_by(|x, y| x.target_per_s.total_cmp(&y.target_per_s));
    let throttling_stage = failures
        .iter()
        .filter_map(|(label, n)| label.strip_prefix("throttled.").map(|stage| (stage, *n)))
        .max_by_key(|(_, n)| *n)
        .map(|(stage, _)| stage.to_string());
    Some(ThrottleAnalysis {
        throttling_stage,
        levels,
    })
}
