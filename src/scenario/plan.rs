//! The run plan: a scenario read, validated and compiled once ([`Plan::new`], in `load`, is
//! the one place that parses its phases, thresholds, patterns and classification rules).
//!
//! Everything a run asks of its scenario (arrivals, the phase and offered rate at a schedule
//! time, the thresholds to judge) is asked of the plan; the scenario as written stays inside
//! for its plain fields (names, counts, modes) and for echoing it to `scenario.toml`.

use std::sync::Arc;
use std::time::Duration;

use super::arrivals::Arrivals;
use super::phase::{Phase, Ramp};
use super::schedule::Executor;
use super::{Pattern, Scenario};
use crate::device::Rules;
use crate::metrics::Threshold;

/// A validated scenario with what a run uses compiled. It dereferences to the scenario as
/// written for the plain fields; where the plan has a compiled field of the same name
/// (`thresholds`), the compiled one is what `plan.thresholds` reads.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scenario as written, after `--set` and the variant's overrides.
    pub(super) scenario: Scenario,
    /// The phases, each with the schedule time it begins at.
    pub(super) phases: Vec<(Duration, Phase)>,
    /// `thresholds`, parsed.
    pub thresholds: Vec<Threshold>,
    /// `devices.client_id`, compiled (`{run}` still unbound).
    pub client_id: Pattern,
    /// `devices.parameters`, compiled, by name.
    pub parameters: Vec<(String, Pattern)>,
    /// `[target.classify]`, compiled; shared by every device.
    pub classify: Arc<Rules>,
    /// The device behaviour profile, resolved: `devices.profile` with `[devices.timeouts]`,
    /// `[devices] payload` and (generic only) `[devices.retry]` applied; shared by every device.
    pub profile: Arc<crate::device::Profile>,
}

impl std::ops::Deref for Plan {
    type Target = Scenario;

    fn deref(&self) -> &Scenario {
        &self.scenario
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

impl Plan {
    /// The scenario as written (what `scenario.toml` echoes).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The phases in order, each with the schedule time it begins at.
    pub fn phases(&self) -> &[(Duration, Phase)] {
        &self.phases
    }

    /// The phases as the scheduler runs them, open arrivals capped at `devices.count`. Nothing
    /// here grows with the number of arrivals: they are generated lazily.
    pub fn planned_phases(&self) -> Vec<PlannedPhase> {
        let mut out = Vec::new();
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
        for (begin, phase) in &self.phases {
            match phase {
                Phase::RampingConcurrency { start, stages } => {
                    flush(&mut open, &mut out);
                    let ramp = Ramp {
                        start: *start,
                        stages: stages.clone(),
                    };
                    out.push(PlannedPhase::Closed {
                        begin: *begin,
                        ramp,
                    });
                }
                phase => open.push((*begin, phase.clone())),
            }
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
        self.planned_phases()
            .into_iter()
            .filter_map(|p| match p {
                PlannedPhase::Open(a) => Some(a),
                PlannedPhase::Closed { .. } => None,
            })
            .collect()
    }

    /// Planned length of the whole schedule.
    pub fn planned_duration(&self) -> Duration {
        self.phases
            .last()
            .map_or(Duration::ZERO, |(begin, p)| *begin + p.duration())
    }

    /// The phase running at `t` (schedule time): its index and executor; the last phase once the
    /// schedule is over.
    pub fn phase_at(&self, t: Duration) -> Option<(usize, Executor)> {
        let last = self.phases.len().checked_sub(1)?;
        let i = self
            .phases
            .iter()
            .position(|(begin, p)| t < *begin + p.duration())
            .unwrap_or(last);
        Some((i, Executor::of(&self.phases[i].1)))
    }

    /// The offered rate the schedule intends at `t` from the start (None in bursts and closed
    /// phases). Runs for every arrival: a walk over the phases, nothing parsed or copied.
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let (begin, phase) = self
            .phases
            .iter()
            .find(|(begin, p)| t < *begin + p.duration())?;
        phase.rate_at(t - *begin)
    }

    /// Whether the client ID or a parameter uses `{run}`.
    pub fn uses_run(&self) -> bool {
        self.client_id.uses_run() || self.parameters.iter().any(|(_, p)| p.uses_run())
    }
}

/// A plan of a scenario given as TOML (paths as written), for tests.
#[cfg(test)]
pub(crate) fn of_toml(text: &str) -> Plan {
    let scenario: Scenario = toml::from_str(text).expect("a scenario");
    Plan::new(scenario).expect("a valid scenario")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_produce_the_planned_arrivals() {
        let text = r#"
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
            "#;
        let s = of_toml(text);
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
        let s = of_toml(&text.replace("count = 1000", "count = 7"));
        assert_eq!(s.arrivals().count(), 7);
        assert_eq!(s.arrival_span(), (7, Some(Duration::from_millis(600))));
    }

    #[test]
    fn a_step_schedule_offers_rising_levels() {
        let s = of_toml(
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
        );
        assert_eq!(s.arrivals().count(), 4 + 8 + 12);
        assert_eq!(s.rate_at(Duration::from_millis(500)), Some(2.0));
        assert_eq!(s.rate_at(Duration::from_millis(3500)), Some(4.0));
        assert_eq!(s.rate_at(Duration::from_millis(5999)), Some(6.0));
        assert_eq!(s.rate_at(Duration::from_secs(6)), None);
    }

    #[test]
    fn a_concurrency_phase_is_planned_between_open_phases() {
        let s = of_toml(
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
        );
        let plan = s.planned_phases();
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

    #[test]
    fn the_phase_and_rate_at_a_time_follow_the_phases_and_their_ramps() {
        let s = of_toml(
            r#"
            [devices]
            count = 100
            [[schedule]]
            executor = "constant-arrival-rate"
            rate = 5
            duration = "2s"
            [[schedule]]
            executor = "burst"
            count = 3
            [[schedule]]
            executor = "ramping-arrival-rate"
            start_rate = 10
            stages = [{ target = 30, duration = "4s" }]
            "#,
        );
        assert_eq!(s.planned_duration(), Duration::from_secs(6));
        let at = |ms| Duration::from_millis(ms);
        assert_eq!(
            s.phase_at(at(1999)),
            Some((0, Executor::ConstantArrivalRate))
        );
        // A burst lasts no time: at its instant the ramp after it runs.
        assert_eq!(
            s.phase_at(at(2000)),
            Some((2, Executor::RampingArrivalRate))
        );
        assert_eq!(
            s.phase_at(at(60_000)),
            Some((2, Executor::RampingArrivalRate))
        );
        assert_eq!(s.rate_at(at(0)), Some(5.0));
        assert_eq!(s.rate_at(at(4000)), Some(20.0));
        assert_eq!(s.rate_at(at(6000)), None);
        assert!(!s.uses_run());
    }
}
