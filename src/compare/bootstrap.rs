//! The noise test: bootstrap resampling of a run's interval histograms and interval counts.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{BOOTSTRAP_RESAMPLES, CONFIDENCE, MAX_BLOCKS, MIN_INTERVALS};
use crate::results::RunResults;

/// splitmix64: a well-mixed seed per (seed, run, test).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, stable across builds (unlike the std hasher).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn rng_for(seed: u64, run: usize, test: &str) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed ^ fnv(test)).wrapping_add(run as u64)))
}

/// Resampling weights: how often each of `n` units was drawn in `n` draws with replacement.
fn draw_weights(rng: &mut StdRng, weights: &mut [u64]) {
    let n = weights.len();
    weights.fill(0);
    for _ in 0..n {
        weights[rng.random_range(0..n)] += 1;
    }
}

/// Interval histograms prepared for fast resampling: the distinct values recorded (bucket
/// upper bounds, as `value_at_quantile` reports them) and, per value, each unit's cumulative count
/// up to it, laid out value-major so that one value's counts over all units are contiguous.
struct Resampler {
    values: Vec<u64>,
    units: usize,
    /// `cumulative[g * units + i]`: recorded values <= `values[g]` in unit `i`.
    cumulative: Vec<u64>,
}

impl Resampler {
    fn new(intervals: &[Histogram<u64>]) -> Resampler {
        // Group consecutive intervals into at most MAX_BLOCKS units.
        let block = intervals.len().div_ceil(MAX_BLOCKS).max(1);
        let units: Vec<Vec<(u64, u64)>> = intervals
            .chunks(block)
            .map(|chunk| {
                let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
                for h in chunk {
                    for v in h.iter_recorded() {
                        *counts.entry(v.value_iterated_to()).or_default() +=
                            v.count_since_last_iteration();
                    }
                }
                counts.into_iter().collect()
            })
            .collect();
        let values: Vec<u64> = units
            .iter()
            .flatten()
            .map(|&(v, _)| v)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let n = units.len();
        let mut cumulative = vec![0u64; values.len() * n];
        for (i, unit) in units.iter().enumerate() {
            let mut entries = unit.iter().peekable();
            let mut running = 0;
            for (g, &value) in values.iter().enumerate() {
                while let Some(&&(v, c)) = entries.peek() {
                    if v > value {
                        break;
                    }
                    running += c;
                    entries.next();
                }
                cumulative[g * n + i] = running;
            }
        }
        Resampler {
            values,
            units: n,
            cumulative,
        }
    }

    /// Weighted count of recorded values <= `values[g]`.
    fn count_upto(&self, g: usize, weights: &[u64]) -> u64 {
        self.cumulative[g * self.units..(g + 1) * self.units]
            .iter()
            .zip(weights)
            .map(|(c, w)| c * w)
            .sum()
    }

    /// `value_at_quantile` of the merged histogram with each unit counted `weights[i]` times.
    fn quantile(&self, q: f64, total: u64, weights: &[u64]) -> u64 {
        let target = ((q * total as f64).ceil() as u64).max(1);
        // Smallest g whose weighted cumulative count reaches the target.
        let (mut lo, mut hi) = (0, self.values.len() - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.count_upto(mid, weights) >= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.values[lo]
    }

    /// `resamples` bootstrap replicates of the given quantiles, in ms.
    fn bootstrap(&self, quantiles: &[f64], resamples: usize, rng: &mut StdRng) -> Vec<Vec<f64>> {
        let mut weights = vec![0u64; self.units];
        let last = self.values.len() - 1;
        (0..resamples)
            .map(|_| {
                draw_weights(rng, &mut weights);
                let total = self.count_upto(last, &weights);
                quantiles
                    .iter()
                    .map(|&q| self.quantile(q, total, &weights) as f64 / 1000.0)
                    .collect()
            })
            .collect()
    }
}

/// Bootstrap replicates of the mean of `samples`.
pub(super) fn bootstrap_mean(samples: &[f64], resamples: usize, rng: &mut StdRng) -> Vec<f64> {
    let n = samples.len();
    (0..resamples)
        .map(|_| (0..n).map(|_| samples[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect()
}

/// Bootstrap replicates of `Σ numerators ÷ Σ denominators` over intervals resampled with
/// replacement (pairs kept together; 0 when the resampled denominators add up to 0): a ratio of
/// two per-interval counts, such as certificates issued per device provisioned.
pub(super) fn bootstrap_ratio(
    pairs: &[(f64, f64)],
    resamples: usize,
    rng: &mut StdRng,
) -> Vec<f64> {
    let n = pairs.len();
    (0..resamples)
        .map(|_| {
            let (num, den) = (0..n).fold((0.0, 0.0), |(a, b), _| {
                let (x, y) = pairs[rng.random_range(0..n)];
                (a + x, b + y)
            });
            if den == 0.0 { 0.0 } else { num / den }
        })
        .collect()
}

/// Whether the central `CONFIDENCE` interval of `variant[b] - baseline[b]` excludes 0.
fn excludes_zero(baseline: &[f64], variant: &[f64]) -> bool {
    let mut diffs: Vec<f64> = variant.iter().zip(baseline).map(|(v, b)| v - b).collect();
    if diffs.is_empty() {
        return false;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let at = |q: f64| {
        let i = (q * (diffs.len() - 1) as f64).round() as usize;
        diffs[i.min(diffs.len() - 1)]
    };
    at(tail) > 0.0 || at(1.0 - tail) < 0.0
}

/// Per run, the bootstrap replicates of a test: `replicates[b][k]` for statistic `k`.
pub(super) type Replicates = Vec<Option<Vec<Vec<f64>>>>;

/// Latency-percentile replicates for one hlog tag, per run.
pub(super) fn latency_replicates(
    runs: &[RunResults],
    tag: &str,
    quantiles: &[f64],
    seed: u64,
) -> Replicates {
    runs.iter()
        .enumerate()
        .map(|(r, run)| {
            let intervals = run.intervals.as_ref()?.get(tag)?;
            if intervals.len() < MIN_INTERVALS {
                return None;
            }
            let resampler = Resampler::new(intervals);
            let mut rng = rng_for(seed, r, tag);
            Some(resampler.bootstrap(quantiles, BOOTSTRAP_RESAMPLES, &mut rng))
        })
        .collect()
}

/// Significance of statistic `k` for each run against run 0.
pub(super) fn significance(replicates: &Replicates, k: usize) -> Vec<Option<bool>> {
    let column = |r: &Vec<Vec<f64>>| r.iter().map(|s| s[k]).collect::<Vec<f64>>();
    let base = replicates.first().and_then(|b| b.as_ref()).map(column);
    replicates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 0 {
                return None;
            }
            Some(excludes_zero(base.as_ref()?, &column(r.as_ref()?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram;

    #[test]
    fn a_ratio_bootstrap_keeps_pairs_together_and_centres_on_the_ratio_of_sums() {
        // Every interval issues two certificates per device: every replicate is exactly 2.
        let pairs: Vec<(f64, f64)> = (1..=20).map(|i| (2.0 * i as f64, i as f64)).collect();
        let mut rng = rng_for(1, 0, "ratio");
        let r = bootstrap_ratio(&pairs, 200, &mut rng);
        assert!(r.iter().all(|x| (*x - 2.0).abs() < 1e-12), "{r:?}");
        // Intervals with certificates but no device done still count in the numerator.
        let pairs = [(3.0, 0.0), (1.0, 1.0), (1.0, 1.0)];
        let r = bootstrap_ratio(&pairs, 2000, &mut rng);
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        assert!(mean > 1.5 && mean < 3.0, "{mean}");
        assert!(
            bootstrap_ratio(&[(1.0, 0.0)], 5, &mut rng)
                .iter()
                .all(|x| *x == 0.0)
        );
    }

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn unit_weights_reproduce_the_merged_histogram() {
        let intervals: Vec<Histogram<u64>> = (0..7u64)
            .map(|i| {
                hist(
                    &(0..50 + i * 13)
                        .map(|k| 1000 + (k * 7919 + i * 104_729) % 250_000)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut merged = histogram();
        for h in &intervals {
            merged.add(h).unwrap();
        }
        let r = Resampler::new(&intervals);
        let weights = vec![1; r.units];
        let total = r.count_upto(r.values.len() - 1, &weights);
        assert_eq!(total, merged.len());
        for q in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                r.quantile(q, total, &weights),
                merged.value_at_quantile(q),
                "q {q}"
            );
        }
        let mut doubled = merged.clone();
        doubled.add(&intervals[2]).unwrap();
        let mut weights = weights;
        weights[2] = 2;
        let total = r.count_upto(r.values.len() - 1, &weights);
        for q in [0.5, 0.9, 0.99] {
            assert_eq!(r.quantile(q, total, &weights), doubled.value_at_quantile(q));
        }
    }

    #[test]
    fn long_runs_are_resampled_in_blocks() {
        let intervals: Vec<Histogram<u64>> = (0..(MAX_BLOCKS as u64 * 2 + 1))
            .map(|i| hist(&[1000 + i]))
            .collect();
        let r = Resampler::new(&intervals);
        assert!(r.units <= MAX_BLOCKS);
        let weights = vec![1; r.units];
        assert_eq!(
            r.count_upto(r.values.len() - 1, &weights),
            intervals.len() as u64
        );
    }

    #[test]
    fn zero_interval_test() {
        assert!(excludes_zero(&[1.0; 100], &[2.0; 100]));
        assert!(excludes_zero(&[2.0; 100], &[1.0; 100]));
        assert!(!excludes_zero(&[1.0; 100], &[1.0; 100]));
        let base: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let var: Vec<f64> = (0..100).map(|i| (99 - i) as f64).collect();
        assert!(!excludes_zero(&base, &var));
    }
}
