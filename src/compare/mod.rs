//! `fleetstorm compare`: runs' metrics against the first run's, and which differ beyond noise.
//!
//! Statistics over runs read by [`crate::results`]: values come from each run's `summary.json`. The
//! noise test is a bootstrap over the run's 1 s intervals: for a stage's p50/p90/p99 (and
//! service-time p50), the interval histograms of `latency.hlog` are resampled with replacement
//! ([`BOOTSTRAP_RESAMPLES`] times, seeded), merged, and the percentile taken; for throughput, the
//! per-interval `completed` counts of `timeseries.csv` are resampled and averaged. Both runs are
//! resampled independently, and a difference is significant when the 95 % interval of the resampled
//! (run − baseline) excludes 0.
//!
//! A run needs at least [`MIN_INTERVALS`] intervals with data for a test; a run without
//! `latency.hlog` (or `timeseries.csv`) is compared without that test. Runs longer than
//! [`MAX_BLOCKS`] intervals are resampled in blocks of consecutive seconds (a block bootstrap,
//! which also respects autocorrelation between neighbouring seconds).

mod bootstrap;
mod table;

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::metrics::{Percentiles, STAGE_NAMES};
use crate::results::{ResultsError, RunResults};
use bootstrap::{
    Replicates, bootstrap_mean, bootstrap_ratio, latency_replicates, rng_for, significance,
};

/// Bootstrap resamples per test.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Fewest intervals with data a run needs for a noise test.
pub const MIN_INTERVALS: usize = 5;
/// Most resampling units per run; longer runs are grouped into blocks of consecutive seconds.
pub const MAX_BLOCKS: usize = 600;
/// Two-sided confidence level of the bootstrap interval.
const CONFIDENCE: f64 = 0.95;
/// Latency percentiles tested (rows `p50_ms`, `p90_ms`, `p99_ms`).
const QUANTILES: [f64; 3] = [0.50, 0.90, 0.99];

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("compare needs at least two run directories (the first is the baseline), got {0}")]
    TooFewRuns(usize),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// e.g. `register_thing.p99_ms`, `register_thing.service.p50_ms`,
    /// `throughput.provisioned_per_s`, `success_rate`, `devices.failed`, `failures.hook_denied`.
    pub metric: String,
    /// One per run; `None` when the run has no such value (e.g. the stage never ran).
    pub values: Vec<Option<f64>>,
    /// `value - baseline`, one per run (the baseline's own is 0).
    pub delta_abs: Vec<Option<f64>>,
    /// `delta_abs / baseline` as a fraction; `None` when the baseline is 0 or missing.
    pub delta_rel: Vec<Option<f64>>,
    /// Whether the difference exceeds run-to-run noise; `None` when not testable (the baseline's
    /// own entry, metrics without a test, runs without enough interval data).
    pub significant: Vec<Option<bool>>,
}

/// The result of comparing runs; the first run is the baseline.
#[derive(Debug, Clone)]
pub struct Comparison {
    runs: Vec<String>,
    dirs: Vec<PathBuf>,
    rows: Vec<Row>,
    notes: Vec<String>,
    seed: u64,
}

fn row(metric: String, values: Vec<Option<f64>>, significant: Vec<Option<bool>>) -> Row {
    let base = values.first().copied().flatten();
    let delta_abs: Vec<Option<f64>> = values.iter().map(|v| Some(v.as_ref()? - base?)).collect();
    let delta_rel = delta_abs
        .iter()
        .map(|d| {
            base.filter(|b| *b != 0.0)
                .and_then(|b| Some(d.as_ref()? / b))
        })
        .collect();
    let mut significant = significant;
    significant.resize(values.len(), None);
    Row {
        metric,
        values,
        delta_abs,
        delta_rel,
        significant,
    }
}

/// Compare run directories; the first is the baseline. `seed` seeds the bootstrap.
pub fn compare(dirs: &[PathBuf], seed: u64) -> Result<Comparison, CompareError> {
    if dirs.len() < 2 {
        return Err(CompareError::TooFewRuns(dirs.len()));
    }
    compare_runs(&crate::results::read_runs(dirs)?, seed)
}

/// Remarks on a run's inputs: files missing, too little interval data, an interrupted run.
fn notes_on(run: &RunResults, completed: Option<&Vec<f64>>, notes: &mut Vec<String>) {
    let label = &run.label;
    if run.intervals.is_none() {
        notes.push(format!(
            "{label}: no latency.hlog, latency percentiles not tested"
        ));
    }
    if run.timeseries.is_none() {
        notes.push(format!("{label}: no timeseries.csv, throughput not tested"));
    }
    let longest = run
        .intervals
        .as_ref()
        .and_then(|t| t.values().map(Vec::len).max())
        .unwrap_or(0);
    if run.intervals.is_some() && longest < MIN_INTERVALS {
        notes.push(format!(
            "{label}: {longest} intervals of latency data (fewer than {MIN_INTERVALS}), latency percentiles not tested"
        ));
    }
    if let Some(c) = completed.filter(|c| c.len() < MIN_INTERVALS) {
        notes.push(format!(
            "{label}: {} full intervals in timeseries.csv (fewer than {MIN_INTERVALS}), throughput not tested",
            c.len()
        ));
    }
    if run.summary.interrupted {
        notes.push(format!("{label}: the run was interrupted"));
    }
    notes.extend(run.summary.incomplete_note(label));
}

/// A warning when a run is of another scenario than the baseline: another `scenario` name, or
/// (when both summaries have it) another `scenario_sha256`, the scenario file changed. Variants
/// of one file, and runs of one file with different `--set`, are not warned about.
fn scenario_warning(runs: &[RunResults]) -> Option<String> {
    let base = &runs[0].summary;
    let describe = |r: &RunResults| {
        let hash = r
            .summary
            .scenario_sha256
            .as_deref()
            .map(|h| format!(", file sha256 {}…", &h[..h.len().min(12)]))
            .unwrap_or_default();
        format!("{} is scenario {:?}{hash}", r.label, r.summary.scenario)
    };
    let others: Vec<String> = runs[1..]
        .iter()
        .filter(|r| {
            let s = &r.summary;
            s.scenario != base.scenario
                || matches!((&s.scenario_sha256, &base.scenario_sha256), (Some(a), Some(b)) if a != b)
        })
        .map(describe)
        .collect();
    (!others.is_empty()).then(|| {
        format!(
            "WARNING: the runs are of different scenarios: the baseline {}, {}; differences may come from the scenarios rather than from what they measure",
            describe(&runs[0]),
            others.join(", ")
        )
    })
}

/// Compare runs already read; the first is the baseline. `seed` seeds the bootstrap.
pub fn compare_runs(runs: &[RunResults], seed: u64) -> Result<Comparison, CompareError> {
    if runs.len() < 2 {
        return Err(CompareError::TooFewRuns(runs.len()));
    }
    // Per-interval completed counts (full intervals only), for the throughput test.
    let completed: Vec<Option<Vec<f64>>> = runs
        .iter()
        .map(|r| {
            let ts = r.timeseries.as_ref()?;
            Some(
                ts.full_intervals("completed")
                    .into_iter()
                    .map(|(_, n, _)| n)
                    .collect(),
            )
        })
        .collect();
    let mut notes: Vec<String> = scenario_warning(runs).into_iter().collect();
    for (run, completed) in runs.iter().zip(&completed) {
        notes_on(run, completed.as_ref(), &mut notes);
    }
    // Distinct labels, so that columns can be told apart.
    let mut seen = BTreeSet::new();
    let mut labels = Vec::with_capacity(runs.len());
    for run in runs {
        let mut label = run.label.clone();
        let mut k = 2;
        while !seen.insert(label.clone()) {
            label = format!("{} ({k})", run.label);
            k += 1;
        }
        labels.push(label);
    }
    let none = vec![None; runs.len()];

    // Stages in output order, then any other stage a summary names.
    let mut stages: Vec<String> = Vec::new();
    let known = STAGE_NAMES.iter().map(|s| s.to_string());
    let other: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.summary.stages.keys().cloned())
        .filter(|s| !STAGE_NAMES.contains(&s.as_str()))
        .collect();
    for stage in known.chain(other) {
        let ran = runs.iter().any(|r| {
            r.summary
                .stages
                .get(&stage)
                .is_some_and(|s| s.latency.count > 0)
        });
        if ran {
            stages.push(stage);
        }
    }

    let mut rows = Vec::new();
    for stage in &stages {
        let get = |f: &dyn Fn(&Percentiles) -> f64| -> Vec<Option<f64>> {
            runs.iter()
                .map(|r| {
                    r.summary
                        .stages
                        .get(stage)
                        .map(|s| &s.latency)
                        .filter(|s| s.count > 0)
                        .map(f)
                })
                .collect()
        };
        let latency = latency_replicates(runs, stage, &QUANTILES, seed);
        rows.push(row(
            format!("{stage}.count"),
            runs.iter()
                .map(|r| r.summary.stages.get(stage).map(|s| s.latency.count as f64))
                .collect(),
            none.clone(),
        ));
        rows.push(row(
            format!("{stage}.p50_ms"),
            get(&|s| s.p50_ms),
            significance(&latency, 0),
        ));
        rows.push(row(
            format!("{stage}.p90_ms"),
            get(&|s| s.p90_ms),
            significance(&latency, 1),
        ));
        rows.push(row(
            format!("{stage}.p99_ms"),
            get(&|s| s.p99_ms),
            significance(&latency, 2),
        ));
        rows.push(row(
            format!("{stage}.max_ms"),
            get(&|s| s.max_ms),
            none.clone(),
        ));
        let service = latency_replicates(runs, &format!("{stage}.service"), &[0.5], seed);
        rows.push(row(
            format!("{stage}.service.p50_ms"),
            runs.iter()
                .map(|r| {
                    let s = &r.summary.stages.get(stage)?.service;
                    (s.count > 0).then_some(s.p50_ms)
                })
                .collect(),
            significance(&service, 0),
        ));
    }

    let throughput: Replicates = completed
        .iter()
        .enumerate()
        .map(|(r, samples)| {
            let samples = samples.as_ref()?;
            if samples.len() < MIN_INTERVALS {
                return None;
            }
            let mut rng = rng_for(seed, r, "throughput");
            Some(
                bootstrap_mean(samples, BOOTSTRAP_RESAMPLES, &mut rng)
                    .into_iter()
                    .map(|m| vec![m])
                    .collect(),
            )
        })
        .collect();
    rows.push(row(
        "throughput.provisioned_per_s".into(),
        runs.iter()
            .map(|r| Some(r.summary.throughput.provisioned_per_s))
            .collect(),
        significance(&throughput, 0),
    ));
    rows.push(row(
        "success_rate".into(),
        runs.iter().map(|r| Some(r.summary.success_rate)).collect(),
        none.clone(),
    ));
    rows.push(row(
        "devices.failed".into(),
        runs.iter()
            .map(|r| Some(r.summary.devices.failed as f64))
            .collect(),
        none.clone(),
    ));
    amplification_rows(runs, seed, &mut rows);
    let reasons: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.summary.failures.keys())
        .collect();
    for reason in reasons {
        rows.push(row(
            format!("failures.{reason}"),
            runs.iter()
                .map(|r| Some(r.summary.failures.get(reason).copied().unwrap_or(0) as f64))
                .collect(),
            none.clone(),
        ));
    }

    Ok(Comparison {
        runs: labels,
        dirs: runs.iter().map(|r| r.dir.clone()).collect(),
        rows,
        notes,
        seed,
    })
}

/// Per interval of `run`'s `timeseries.csv` (full intervals only): the sum of the `numerators`
/// columns and of the `denominators`; None without the columns or enough intervals.
fn interval_pairs(
    run: &RunResults,
    numerators: &[&str],
    denominators: &[&str],
) -> Option<Vec<(f64, f64)>> {
    let ts = run.timeseries.as_ref()?;
    let sum = |names: &[&str]| -> Option<Vec<f64>> {
        let mut total: Option<Vec<f64>> = None;
        for name in names {
            ts.header().iter().find(|h| h == name)?;
            let values: Vec<f64> = ts.full_intervals(name).iter().map(|v| v.1).collect();
            match &mut total {
                None => total = Some(values),
                Some(t) if t.len() == values.len() => {
                    t.iter_mut().zip(values).for_each(|(a, b)| *a += b);
                }
                Some(_) => return None,
            }
        }
        total
    };
    let (num, den) = (sum(numerators)?, sum(denominators)?);
    (num.len() == den.len() && num.len() >= MIN_INTERVALS)
        .then(|| num.into_iter().zip(den).collect())
}

/// The amplification figures' rows. Certificates and connects per provisioned device, and
/// attempts per finished device, are tested as ratios of per-second counts of
/// `timeseries.csv` (intervals resampled, [`bootstrap_ratio`]); the counts and maxima are not.
fn amplification_rows(runs: &[RunResults], seed: u64, rows: &mut Vec<Row>) {
    let none = vec![None; runs.len()];
    let ratio_test = |name: &str, numerators: &[&str], denominators: &[&str]| -> Replicates {
        runs.iter()
            .enumerate()
            .map(|(r, run)| {
                let pairs = interval_pairs(run, numerators, denominators)?;
                let mut rng = rng_for(seed, r, name);
                let ratios = bootstrap_ratio(&pairs, BOOTSTRAP_RESAMPLES, &mut rng);
                Some(ratios.into_iter().map(|m| vec![m]).collect())
            })
            .collect()
    };
    let certificates = ratio_test("certificates", &["certificates_issued"], &["completed"]);
    let attempts = ratio_test(
        "attempts",
        &["started", "retries"],
        &["completed", "failed"],
    );
    let connects = ratio_test("connects", &["connects"], &["completed"]);
    type Figure = fn(&crate::results::Summary) -> f64;
    let figures: [(&str, Figure, Option<&Replicates>); 8] = [
        (
            "certificates.issued",
            |s| s.certificates.issued as f64,
            None,
        ),
        (
            "certificates.per_provisioned",
            |s| s.certificates.per_provisioned,
            Some(&certificates),
        ),
        (
            "certificates.orphaned",
            |s| s.certificates.orphaned as f64,
            None,
        ),
        ("attempts.mean", |s| s.attempts.mean, Some(&attempts)),
        ("attempts.max", |s| s.attempts.max as f64, None),
        ("connects.total", |s| s.connects.total as f64, None),
        (
            "connects.per_provisioned",
            |s| s.connects.per_provisioned,
            Some(&connects),
        ),
        (
            "connects.max_per_client_id_per_s",
            |s| s.connects.max_per_client_id_per_s as f64,
            None,
        ),
    ];
    for (metric, figure, test) in figures {
        let values = runs.iter().map(|r| Some(figure(&r.summary))).collect();
        let significant = test.map_or_else(|| none.clone(), |t| significance(t, 0));
        rows.push(row(metric.into(), values, significant));
    }
}

impl Comparison {
    /// Run labels (`variant` from `summary.json`, else the directory name); the first is the
    /// baseline.
    pub fn runs(&self) -> &[String] {
        &self.runs
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Remarks on the inputs (a run without `latency.hlog`, an interrupted run, ...).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn row(&self, metric: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.metric == metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas() {
        let r = row(
            "x.p50_ms".into(),
            vec![Some(0.0), Some(2.0)],
            vec![None, Some(true)],
        );
        assert_eq!(r.delta_abs, vec![Some(0.0), Some(2.0)]);
        assert_eq!(r.delta_rel, vec![None, None]);
        let r = row("x".into(), vec![Some(4.0), Some(5.0), None], vec![]);
        assert_eq!(r.delta_abs, vec![Some(0.0), Some(1.0), None]);
        assert_eq!(r.delta_rel, vec![Some(0.0), Some(0.25), None]);
        assert_eq!(r.significant, vec![None, None, None]);
    }
}
