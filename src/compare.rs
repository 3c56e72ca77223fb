//! `fleetstorm compare`: compare two or more run directories against the first (the baseline)
//! and flag the differences that exceed run-to-run noise.
//!
//! Values come from each run's `summary.json`. The noise test is a bootstrap over the run's
//! 1 s intervals: for a stage's p50/p90/p99 (and service-time p50), the interval histograms of
//! `latency.hlog` are resampled with replacement ([`BOOTSTRAP_RESAMPLES`] times, seeded), merged,
//! and the percentile taken; for throughput, the per-interval `completed` counts of
//! `timeseries.csv` are resampled and averaged. Both runs are resampled independently, and a
//! difference is significant when the 95 % interval of the resampled (run − baseline) excludes 0.
//!
//! A run needs at least [`MIN_INTERVALS`] intervals with data for a test; a run without
//! `latency.hlog` (or `timeseries.csv`) is compared without that test. Runs longer than
//! [`MAX_BLOCKS`] intervals are resampled in blocks of consecutive seconds (a block bootstrap,
//! which also respects autocorrelation between neighbouring seconds).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use crate::metrics::STAGE_NAMES;
use crate::report::{ReportError, Timeseries};

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
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed summary: {source}", path.display())]
    Summary {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: malformed interval log: {detail}", path.display())]
    Hlog { path: PathBuf, detail: String },
    #[error("{}: malformed timeseries: {detail}", path.display())]
    Timeseries { path: PathBuf, detail: String },
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

// ---------------------------------------------------------------------------------------------
// Inputs

#[derive(Debug, Deserialize)]
struct SummaryIn {
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    interrupted: bool,
    devices: DevicesIn,
    throughput: ThroughputIn,
    success_rate: f64,
    stages: BTreeMap<String, StageIn>,
    #[serde(default)]
    failures: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct DevicesIn {
    failed: u64,
}

#[derive(Debug, Deserialize)]
struct ThroughputIn {
    provisioned_per_s: f64,
}

#[derive(Debug, Deserialize)]
struct StageIn {
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    #[serde(default)]
    service: Option<ServiceIn>,
}

#[derive(Debug, Deserialize)]
struct ServiceIn {
    count: u64,
    p50_ms: f64,
}

/// One run directory, read.
struct Run {
    label: String,
    summary: SummaryIn,
    /// Interval histograms per tag, in time order; `None` without `latency.hlog`.
    intervals: Option<BTreeMap<String, Vec<Histogram<u64>>>>,
    /// Per-interval completed counts (full intervals only); `None` without `timeseries.csv`.
    completed: Option<Vec<f64>>,
}

fn read_run(dir: &Path, notes: &mut Vec<String>) -> Result<Run, CompareError> {
    let path = dir.join("summary.json");
    let text = std::fs::read(&path).map_err(|source| CompareError::Read {
        path: path.clone(),
        source,
    })?;
    let summary: SummaryIn =
        serde_json::from_slice(&text).map_err(|source| CompareError::Summary { path, source })?;
    let label = summary
        .variant
        .clone()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string())
        });
    let path = dir.join("latency.hlog");
    let intervals = match std::fs::read(&path) {
        Ok(bytes) => Some(parse_hlog(&path, &bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!(
                "{label}: no latency.hlog, latency percentiles not tested"
            ));
            None
        }
        Err(source) => return Err(CompareError::Read { path, source }),
    };
    let path = dir.join("timeseries.csv");
    let completed: Option<Vec<f64>> = match Timeseries::read(&path) {
        Ok(ts) => Some(
            ts.full_intervals("completed")
                .into_iter()
                .map(|(_, n, _)| n)
                .collect(),
        ),
        Err(ReportError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!("{label}: no timeseries.csv, throughput not tested"));
            None
        }
        Err(ReportError::Read { path, source }) => {
            return Err(CompareError::Read { path, source });
        }
        Err(ReportError::Invalid { path, detail }) => {
            return Err(CompareError::Timeseries { path, detail });
        }
        Err(e) => {
            return Err(CompareError::Timeseries {
                path,
                detail: e.to_string(),
            });
        }
    };
    let longest = intervals
        .as_ref()
        .and_then(|t| t.values().map(Vec::len).max())
        .unwrap_or(0);
    if intervals.is_some() && longest < MIN_INTERVALS {
        notes.push(format!(
            "{label}: {longest} intervals of latency data (fewer than {MIN_INTERVALS}), latency percentiles not tested"
        ));
    }
    if let Some(c) = completed.as_ref().filter(|c| c.len() < MIN_INTERVALS) {
        notes.push(format!(
            "{label}: {} full intervals in timeseries.csv (fewer than {MIN_INTERVALS}), throughput not tested",
            c.len()
        ));
    }
    if summary.interrupted {
        notes.push(format!("{label}: the run was interrupted"));
    }
    Ok(Run {
        label,
        summary,
        intervals,
        completed,
    })
}

/// The interval histograms of an HdrHistogram interval log, per tag, in time order. A last line
/// cut short (a run killed mid-write) is ignored.
pub(crate) fn parse_hlog(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, Vec<Histogram<u64>>>, CompareError> {
    let err = |detail: String| CompareError::Hlog {
        path: path.to_path_buf(),
        detail,
    };
    let mut tagged: BTreeMap<String, Vec<(std::time::Duration, Histogram<u64>)>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let interval = match entry {
            Ok(LogEntry::Interval(i)) => i,
            Ok(_) => continue,
            Err(LogIteratorError::ParseError { offset }) => {
                if bytes
                    .get(offset..)
                    .is_some_and(|rest| !rest.contains(&b'\n'))
                {
                    break;
                }
                let line = bytes[..offset.min(bytes.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                return Err(err(format!("line {line}: not an interval log line")));
            }
        };
        let Some(tag) = interval.tag() else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| err(format!("tag {}: bad base64: {e}", tag.as_str())))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| err(format!("tag {}: bad histogram: {e:?}", tag.as_str())))?;
        if h.is_empty() {
            continue;
        }
        tagged
            .entry(tag.as_str().to_string())
            .or_default()
            .push((interval.start_timestamp(), h));
    }
    Ok(tagged
        .into_iter()
        .map(|(tag, mut v)| {
            v.sort_by_key(|(start, _)| *start);
            (tag, v.into_iter().map(|(_, h)| h).collect())
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Bootstrap

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

fn rng_for(seed: u64, run: usize, test: &str) -> StdRng {
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
fn bootstrap_mean(samples: &[f64], resamples: usize, rng: &mut StdRng) -> Vec<f64> {
    let n = samples.len();
    (0..resamples)
        .map(|_| (0..n).map(|_| samples[rng.random_range(0..n)]).sum::<f64>() / n as f64)
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
type Replicates = Vec<Option<Vec<Vec<f64>>>>;

/// Latency-percentile replicates for one hlog tag, per run.
fn latency_replicates(runs: &[Run], tag: &str, quantiles: &[f64], seed: u64) -> Replicates {
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
fn significance(replicates: &Replicates, k: usize) -> Vec<Option<bool>> {
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

// ---------------------------------------------------------------------------------------------
// Rows

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
    let mut notes = Vec::new();
    let mut runs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        runs.push(read_run(dir, &mut notes)?);
    }
    // Distinct labels, so that columns can be told apart.
    let mut seen = BTreeSet::new();
    for run in &mut runs {
        let base = run.label.clone();
        let mut k = 2;
        while !seen.insert(run.label.clone()) {
            run.label = format!("{base} ({k})");
            k += 1;
        }
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
        let ran = runs
            .iter()
            .any(|r| r.summary.stages.get(&stage).is_some_and(|s| s.count > 0));
        if ran {
            stages.push(stage);
        }
    }

    let mut rows = Vec::new();
    for stage in &stages {
        let get = |f: &dyn Fn(&StageIn) -> f64| -> Vec<Option<f64>> {
            runs.iter()
                .map(|r| r.summary.stages.get(stage).filter(|s| s.count > 0).map(f))
                .collect()
        };
        let latency = latency_replicates(&runs, stage, &QUANTILES, seed);
        rows.push(row(
            format!("{stage}.count"),
            runs.iter()
                .map(|r| r.summary.stages.get(stage).map(|s| s.count as f64))
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
        let service = latency_replicates(&runs, &format!("{stage}.service"), &[0.5], seed);
        rows.push(row(
            format!("{stage}.service.p50_ms"),
            runs.iter()
                .map(|r| {
                    let s = r.summary.stages.get(stage)?.service.as_ref()?;
                    (s.count > 0).then_some(s.p50_ms)
                })
                .collect(),
            significance(&service, 0),
        ));
    }

    let throughput: Replicates = runs
        .iter()
        .enumerate()
        .map(|(r, run)| {
            let samples = run.completed.as_ref()?;
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
        runs: runs.into_iter().map(|r| r.label).collect(),
        dirs: dirs.to_vec(),
        rows,
        notes,
        seed,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

/// Counts print as integers; everything else (ms, per second, percent) with 2 decimals.
fn is_count(metric: &str) -> bool {
    metric.ends_with(".count") || metric.starts_with("devices.") || metric.starts_with("failures.")
}

fn format_value(metric: &str, v: Option<f64>, signed: bool) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if is_count(metric) && signed => format!("{v:+.0}"),
        Some(v) if is_count(metric) => format!("{v:.0}"),
        Some(v) if signed => format!("{v:+.2}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn format_rel(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |r| format!("{:+.1}%", r * 100.0))
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

    /// The table as text cells: the header, then per row the metric, the baseline's value and,
    /// for each other run, its value, the difference, the relative difference and `*` when
    /// significant. Shared by the stdout table and `compare.html`.
    pub fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["metric".to_string(), self.runs[0].clone()];
        for label in &self.runs[1..] {
            header.extend([
                label.clone(),
                "delta".into(),
                "delta%".into(),
                String::new(),
            ]);
        }
        let lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                let mut cells = vec![
                    row.metric.clone(),
                    format_value(&row.metric, row.values[0], false),
                ];
                for i in 1..self.runs.len() {
                    cells.push(format_value(&row.metric, row.values[i], false));
                    cells.push(format_value(&row.metric, row.delta_abs[i], true));
                    cells.push(format_rel(row.delta_rel[i]));
                    cells.push(
                        if row.significant[i] == Some(true) {
                            "*"
                        } else {
                            ""
                        }
                        .into(),
                    );
                }
                cells
            })
            .collect();
        (header, lines)
    }

    /// The table for stdout (see [`Comparison::cells`]).
    pub fn render_table(&self) -> String {
        let (header, lines) = self.cells();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for cells in &lines {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
        let render = |cells: &[String]| {
            let mut line = String::from(" ");
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                match i {
                    0 => {
                        let _ = write!(line, " {cell:<w$}");
                    }
                    // The marker column hugs the relative difference.
                    _ if i >= 2 && (i - 2) % 4 == 3 => {
                        let _ = write!(line, "{cell:<w$}");
                    }
                    _ => {
                        let _ = write!(line, "  {cell:>w$}");
                    }
                }
            }
            line.trim_end().to_string()
        };

        let mut out = String::new();
        let _ = writeln!(out, "\nfleetstorm compare: {} runs", self.runs.len());
        for (i, (label, dir)) in self.runs.iter().zip(&self.dirs).enumerate() {
            let role = if i == 0 { " (baseline)" } else { "" };
            let _ = writeln!(out, "  {label}{role}: {}", dir.display());
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", render(&header));
        for cells in &lines {
            let _ = writeln!(out, "{}", render(cells));
        }
        let _ = writeln!(
            out,
            "\n  * = beyond run-to-run noise: the {:.0} % bootstrap interval of (run - baseline) excludes 0\n      \
             ({BOOTSTRAP_RESAMPLES} resamples of the runs' 1 s intervals, seed {}; about 1 tested cell in 20 is flagged\n      \
             by chance). Tested: stage p50/p90/p99 and service p50 (latency.hlog), throughput\n      \
             (timeseries.csv), for runs with at least {MIN_INTERVALS} intervals of data.",
            CONFIDENCE * 100.0,
            self.seed
        );
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }

    /// `compare.csv`: a header, then one line per row: the metric and, per run, its value,
    /// `delta_abs`, `delta_rel` (a fraction) and `significant` (`true`/`false`, empty when not
    /// tested); empty cells where there is no value.
    pub fn write_csv(&self, path: &Path) -> Result<(), CompareError> {
        let err = |e: csv::Error| CompareError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        };
        let mut w = csv::Writer::from_path(path).map_err(err)?;
        let mut header = vec!["metric".to_string()];
        for label in &self.runs {
            header.extend([
                label.clone(),
                format!("{label}_delta_abs"),
                format!("{label}_delta_rel"),
                format!("{label}_significant"),
            ]);
        }
        w.write_record(&header).map_err(err)?;
        let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for row in &self.rows {
            let mut record = vec![row.metric.clone()];
            for i in 0..self.runs.len() {
                record.push(num(row.values[i]));
                record.push(num(row.delta_abs[i]));
                record.push(num(row.delta_rel[i]));
                record.push(row.significant[i].map_or(String::new(), |s| s.to_string()));
            }
            w.write_record(&record).map_err(err)?;
        }
        w.flush().map_err(|source| CompareError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram;

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
