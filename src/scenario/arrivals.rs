//! Open-model arrivals generated lazily. Each open phase is a sequence of pieces (a constant
//! rate, a linear ramp or a burst) and the k-th arrival of a piece is computed when the
//! scheduler asks for it, so memory does not grow with rate × duration and nothing is allocated
//! per arrival.

use std::time::Duration;

use super::phase::Phase;

/// Arrival offsets (from the start of the run) of consecutive open phases, at most `limit` of
/// them. Iterating yields them in order; `len` and `last` are computed without iterating.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// Each open phase with the schedule time it begins at.
    phases: Vec<(Duration, Phase)>,
    limit: u64,
}

impl Arrivals {
    pub(super) fn new(phases: Vec<(Duration, Phase)>, limit: u64) -> Arrivals {
        Arrivals { phases, limit }
    }

    /// How many arrivals there are (the phases' arrivals, capped at the limit).
    pub fn len(&self) -> u64 {
        let mut total = 0u64;
        for (begin, phase) in &self.phases {
            let mut pieces = PieceCursor {
                next: 0,
                at: *begin,
            };
            while let Some(p) = pieces.step(phase) {
                total = total.saturating_add(p.n);
                if total >= self.limit {
                    return self.limit;
                }
            }
        }
        total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last arrival's offset.
    pub fn last(&self) -> Option<Duration> {
        let n = self.len();
        let mut it = self.clone().into_iter();
        it.skip_arrivals(n.checked_sub(1)?);
        it.next()
    }
}

impl IntoIterator for Arrivals {
    type Item = Duration;
    type IntoIter = ArrivalIter;

    fn into_iter(self) -> ArrivalIter {
        ArrivalIter {
            remaining: self.limit,
            phases: self.phases,
            phase: 0,
            pieces: None,
            piece: Piece::EMPTY,
            k: 0,
        }
    }
}

/// The arrivals of [`Arrivals`], computed one at a time.
#[derive(Debug)]
pub struct ArrivalIter {
    phases: Vec<(Duration, Phase)>,
    remaining: u64,
    /// The phase whose pieces are being produced, and its piece cursor.
    phase: usize,
    pieces: Option<PieceCursor>,
    piece: Piece,
    /// The next arrival's index in `piece`.
    k: u64,
}

impl ArrivalIter {
    /// Move to the next piece that has arrivals; false when there is none.
    fn advance(&mut self) -> bool {
        while let Some((begin, phase)) = self.phases.get(self.phase) {
            let cursor = self.pieces.get_or_insert(PieceCursor {
                next: 0,
                at: *begin,
            });
            if let Some(p) = cursor.step(phase) {
                self.piece = p;
                self.k = 0;
                return true;
            }
            self.phase += 1;
            self.pieces = None;
        }
        false
    }

    /// Skip `n` arrivals, a piece at a time.
    fn skip_arrivals(&mut self, mut n: u64) {
        while n > 0 && self.remaining > 0 {
            let left = self.piece.n - self.k;
            if n < left {
                self.k += n;
                self.remaining = self.remaining.saturating_sub(n);
                return;
            }
            n -= left;
            self.remaining = self.remaining.saturating_sub(left);
            self.k = self.piece.n;
            if !self.advance() {
                return;
            }
        }
    }
}

impl Iterator for ArrivalIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        while self.k >= self.piece.n {
            if !self.advance() {
                self.remaining = 0;
                return None;
            }
        }
        let t = self.piece.at(self.k);
        self.k += 1;
        self.remaining -= 1;
        Some(t)
    }

    fn nth(&mut self, n: usize) -> Option<Duration> {
        self.skip_arrivals(n as u64);
        self.next()
    }
}

/// Where the next piece of a phase is: its index and the schedule time it begins at.
#[derive(Debug, Clone, Copy)]
struct PieceCursor {
    next: u32,
    at: Duration,
}

impl PieceCursor {
    fn step(&mut self, phase: &Phase) -> Option<Piece> {
        let p = Piece::of(phase, self.next, self.at)?;
        self.next += 1;
        self.at = p.begin + p.length;
        Some(p)
    }
}

/// A stretch of arrivals of one shape: `n` arrivals from `begin` over `length`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    begin: Duration,
    length: Duration,
    n: u64,
    shape: Shape,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Evenly spaced at this rate.
    Constant(f64),
    /// A linear ramp from `r0` with this slope (per second²).
    Ramp { r0: f64, slope: f64 },
    /// All at `begin`.
    Burst,
}

impl Piece {
    const EMPTY: Piece = Piece {
        begin: Duration::ZERO,
        length: Duration::ZERO,
        n: 0,
        shape: Shape::Burst,
    };

    /// Piece `j` of `phase`, beginning at `at` (None past the phase's last piece).
    fn of(phase: &Phase, j: u32, at: Duration) -> Option<Piece> {
        let first = j == 0;
        match phase {
            Phase::ConstantArrivalRate { rate, duration } if first => {
                Some(Piece::constant(at, *rate, *duration))
            }
            Phase::RampingArrivalRate { start_rate, stages } => {
                let stage = stages.get(j as usize)?;
                let r0 = match j.checked_sub(1) {
                    Some(prev) => stages[prev as usize].target,
                    None => *start_rate,
                };
                Some(Piece::ramp(at, r0, stage.target, stage.duration))
            }
            Phase::Burst { count } if first => Some(Piece {
                begin: at,
                length: Duration::ZERO,
                n: *count,
                shape: Shape::Burst,
            }),
            Phase::Step {
                start_rate,
                rate_step,
                step_duration,
                steps,
            } if j < *steps => Some(Piece::constant(
                at,
                start_rate + rate_step * f64::from(j),
                *step_duration,
            )),
            _ => None,
        }
    }

    /// Evenly spaced arrivals at `rate` for `length`.
    fn constant(begin: Duration, rate: f64, length: Duration) -> Piece {
        Piece {
            begin,
            length,
            n: (rate * length.as_secs_f64()).round() as u64,
            shape: Shape::Constant(rate),
        }
    }

    /// A linear ramp from `r0` to `r1` over `length`: the k-th arrival is where the integral of
    /// the rate reaches k.
    fn ramp(begin: Duration, r0: f64, r1: f64, length: Duration) -> Piece {
        let t = length.as_secs_f64();
        Piece {
            begin,
            length,
            n: ((r0 + r1) / 2.0 * t).floor() as u64,
            shape: Shape::Ramp {
                r0,
                slope: (r1 - r0) / t,
            },
        }
    }

    /// The offset of arrival `k` (< n).
    fn at(&self, k: u64) -> Duration {
        let k = k as f64;
        let t = match self.shape {
            Shape::Burst => 0.0,
            Shape::Constant(rate) => k / rate,
            Shape::Ramp { r0, slope } => {
                // Solve r0 t + slope t^2 / 2 = k.
                let t = if slope.abs() < 1e-12 {
                    k / r0
                } else {
                    (-r0 + (r0 * r0 + 2.0 * slope * k).max(0.0).sqrt()) / slope
                };
                t.clamp(0.0, self.length.as_secs_f64())
            }
        };
        self.begin + Duration::from_secs_f64(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::plan::of_toml;
    use crate::scenario::{Executor, Plan};

    /// The arrivals as they were built before they were generated lazily (every one in a
    /// vector), kept to show the lazy ones are the same.
    fn eager(phases: &[Phase], limit: usize) -> Vec<Duration> {
        fn constant(out: &mut Vec<Duration>, start: &mut Duration, rate: f64, d: Duration) {
            let n = (rate * d.as_secs_f64()).round() as u64;
            out.extend((0..n).map(|k| *start + Duration::from_secs_f64(k as f64 / rate)));
            *start += d;
        }
        let mut out = Vec::new();
        let mut start = Duration::ZERO;
        for phase in phases {
            match phase {
                Phase::ConstantArrivalRate { rate, duration } => {
                    constant(&mut out, &mut start, *rate, *duration)
                }
                Phase::RampingArrivalRate { start_rate, stages } => {
                    let mut r0 = *start_rate;
                    for stage in stages {
                        let (r1, t_total) = (stage.target, stage.duration.as_secs_f64());
                        let slope = (r1 - r0) / t_total;
                        for k in 0..((r0 + r1) / 2.0 * t_total).floor() as u64 {
                            let k = k as f64;
                            let t = if slope.abs() < 1e-12 {
                                k / r0
                            } else {
                                (-r0 + (r0 * r0 + 2.0 * slope * k).max(0.0).sqrt()) / slope
                            };
                            out.push(start + Duration::from_secs_f64(t.clamp(0.0, t_total)));
                        }
                        start += stage.duration;
                        r0 = r1;
                    }
                }
                Phase::Burst { count } => out.extend(std::iter::repeat_n(start, *count as usize)),
                Phase::Step {
                    start_rate,
                    rate_step,
                    step_duration,
                    steps,
                } => {
                    for k in 0..*steps {
                        let rate = start_rate + rate_step * f64::from(k);
                        constant(&mut out, &mut start, rate, *step_duration);
                    }
                }
                Phase::RampingConcurrency { .. } => {}
            }
        }
        out.truncate(limit);
        out
    }

    /// A schedule of every open executor, with rates that do not divide evenly.
    fn mixed() -> Plan {
        of_toml(
            r#"
            [devices]
            count = 100000
            [[schedule]]
            executor = "constant-arrival-rate"
            rate = 33.3
            duration = "1500ms"
            [[schedule]]
            executor = "ramping-arrival-rate"
            start_rate = 5
            stages = [{ target = 120, duration = "2s" }, { target = 120, duration = "1s" }, { target = 0, duration = "3s" }]
            [[schedule]]
            executor = "burst"
            count = 17
            [[schedule]]
            executor = "step"
            start_rate = 7
            rate_step = 11.5
            step_duration = "700ms"
            steps = 6
            "#,
        )
    }

    #[test]
    fn lazy_arrivals_are_the_ones_built_eagerly_before() {
        let s = mixed();
        let phases: Vec<Phase> = s.phases().iter().map(|(_, p)| p.clone()).collect();
        for limit in [0, 1, 49, 50, 51, 200, 100000] {
            let want = eager(&phases, limit);
            let begins = phases.iter().scan(Duration::ZERO, |t, p| {
                let b = *t;
                *t += p.duration();
                Some(b)
            });
            let lazy = Arrivals::new(begins.zip(phases.iter().cloned()).collect(), limit as u64);
            assert_eq!(lazy.len(), want.len() as u64, "limit {limit}");
            assert_eq!(lazy.last(), want.last().copied(), "limit {limit}");
            let got: Vec<Duration> = lazy.clone().into_iter().collect();
            assert_eq!(got, want, "limit {limit}");
            // Skipping lands where iterating does.
            for i in [0, 1, 50, 51, 67, 300] {
                assert_eq!(
                    lazy.clone().into_iter().nth(i),
                    want.get(i).copied(),
                    "nth {i}"
                );
            }
        }
        assert_eq!(s.schedule[2].executor, Executor::Burst);
    }

    #[test]
    fn each_shard_gets_exactly_its_arrivals_at_their_unsharded_times() {
        let s = mixed();
        let whole: Vec<(u64, Duration)> = s.arrivals().zip(0..).map(|(t, k)| (k, t)).collect();
        assert!(whole.len() > 300, "{}", whole.len());
        for base in [0, 5] {
            for count in 1..=5 {
                let mut union = Vec::new();
                for index in 0..count {
                    let shard = crate::shard::Shard::new(index, count).unwrap();
                    let own: Vec<_> = shard.arrivals(s.arrivals(), base).collect();
                    let want: Vec<_> = whole
                        .iter()
                        .map(|&(k, t)| (k + base, t))
                        .filter(|(seq, _)| shard.owns(*seq))
                        .collect();
                    assert_eq!(own, want, "{index}/{count} from {base}");
                    union.extend(own);
                }
                union.sort();
                let shifted: Vec<_> = whole.iter().map(|&(k, t)| (k + base, t)).collect();
                assert_eq!(union, shifted, "{count} shards from {base}");
            }
        }
    }

    #[test]
    fn a_huge_schedule_costs_nothing_until_it_is_iterated() {
        let s = of_toml(
            r#"
            [devices]
            count = 18446744073709551615
            [[schedule]]
            executor = "constant-arrival-rate"
            rate = 1e6
            duration = "744h"
            [[schedule]]
            executor = "burst"
            count = 1000000000000
            "#,
        );
        let (n, last) = s.arrival_span();
        assert_eq!(n, 1_000_000 * 744 * 3600 + 1_000_000_000_000);
        assert_eq!(last, Some(Duration::from_secs(744 * 3600)));
        let first: Vec<_> = s.arrivals().take(3).collect();
        assert_eq!(first, [0, 1, 2].map(Duration::from_micros));
        // The last of a billion shards skips the other shards' arrivals a piece at a time.
        let crate::scenario::PlannedPhase::Open(a) = s.planned_phases().remove(0) else {
            panic!("an open phase first")
        };
        let shard = crate::shard::Shard::new(999_999_999, 1_000_000_000).unwrap();
        let own: Vec<_> = shard.arrivals(a.into_iter(), 0).take(2).collect();
        assert_eq!(own.len(), 2);
        for ((seq, t), want) in own.into_iter().zip([999_999_999u64, 1_999_999_999]) {
            assert_eq!(seq, want);
            assert!(t.as_micros().abs_diff(u128::from(want)) <= 1, "{t:?}");
        }
    }
}
