//! The run folder's files, read for the report: `summary.json` (tolerant of unknown and missing
//! optional fields), `timeseries.csv` (by header name), `latency.hlog` (interval histograms
//! merged per tag), `failures.csv` and `scenario.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Deserialize;

use super::ReportError;
use crate::compare;
use crate::metrics::{STAGE_NAMES, StageSummary, ThresholdResult};
use crate::output::{DeviceCounts, Scheduler, ThrottleAnalysis, Throughput};

/// The part of `summary.json` the report shows. Unknown fields are ignored and optional ones may
/// be missing, so summaries of older and newer versions read alike.
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryIn {
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(default)]
    pub variant: Option<String>,
    pub devices: DeviceCounts,
    pub throughput: Throughput,
    pub success_rate: f64,
    pub stages: BTreeMap<String, StageSummary>,
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    #[serde(default)]
    pub scheduler: Scheduler,
    #[serde(default)]
    pub sustainable_rate_per_s: Option<f64>,
    #[serde(default)]
    pub throttle: Option<ThrottleAnalysis>,
    /// Pauses and rate-multiplier changes made from the dashboard.
    #[serde(default)]
    pub rate_changes: Vec<crate::live::RateChange>,
}

/// `timeseries.csv`, read by header name: the columns a run writes today, plus any later ones.
#[derive(Debug, Clone)]
pub struct Timeseries {
    header: Vec<String>,
    /// Row-major; `None` for an empty cell.
    rows: Vec<Vec<Option<f64>>>,
}

const REQUIRED_COLUMNS: [&str; 5] = ["elapsed_s", "offered", "started", "completed", "failed"];

/// Whether fleetstorm writes (or wrote) this column: its cells must be numbers. Cells of other
/// columns (added later, by hand, ...) that are not numbers are ignored.
fn known_column(name: &str) -> bool {
    const OTHERS: [&str; 7] = [
        "in_flight",
        "dropped_total",
        "start_lag_max_ms",
        "target_rate_per_s",
        "rate_multiplier",
        "connected",
        "cpu_percent",
    ];
    REQUIRED_COLUMNS.contains(&name)
        || OTHERS.contains(&name)
        || name
            .strip_prefix("failed_")
            .is_some_and(|c| crate::device::FailureReason::CLASSES.contains(&c))
        || STAGE_NAMES.iter().any(|stage| {
            name.strip_prefix(stage)
                .is_some_and(|rest| rest == "_p50_ms" || rest == "_p99_ms")
        })
}

impl Timeseries {
    pub fn read(path: &Path) -> Result<Timeseries, ReportError> {
        let invalid = |detail: String| ReportError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let mut reader = csv::Reader::from_reader(open(path)?);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| invalid(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        if let Some(missing) = REQUIRED_COLUMNS
            .iter()
            .find(|c| !header.iter().any(|h| h == *c))
        {
            return Err(invalid(format!("line 1: no `{missing}` column")));
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| invalid(e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let row = record
                .iter()
                .zip(&header)
                .map(|(cell, name)| {
                    let cell = cell.trim();
                    if cell.is_empty() {
                        return Ok(None);
                    }
                    match cell.parse::<f64>() {
                        Ok(v) => Ok(Some(v)),
                        Err(_) if !known_column(name) => Ok(None),
                        Err(_) => Err(invalid(format!(
                            "line {line}: column `{name}`: {cell:?} is not a number"
                        ))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
        }
        Ok(Timeseries { header, rows })
    }

    pub(super) fn column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let i = self.header.iter().position(|h| h == name)?;
        Some(
            self.rows
                .iter()
                .map(|r| r.get(i).copied().flatten())
                .collect(),
        )
    }

    pub(super) fn elapsed(&self) -> Vec<f64> {
        self.column("elapsed_s")
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect()
    }

    /// A per-interval count column over the full intervals: (interval end, count, interval
    /// length). Intervals shorter than half a second (the partial last one) are left out, as
    /// are empty cells.
    pub fn full_intervals(&self, name: &str) -> Vec<(f64, f64, f64)> {
        let Some(values) = self.column(name) else {
            return Vec::new();
        };
        let mut previous = 0.0;
        let mut out = Vec::new();
        for (t, v) in self.elapsed().into_iter().zip(values) {
            let length = t - previous;
            previous = t;
            if length >= 0.5
                && let Some(v) = v
            {
                out.push((t, v, length));
            }
        }
        out
    }

    /// A per-interval count column as a rate per second, at each full interval's end.
    pub(super) fn rate(&self, name: &str) -> Vec<(f64, f64)> {
        self.full_intervals(name)
            .into_iter()
            .map(|(t, n, length)| (t, n / length))
            .collect()
    }

    /// A column as it is (a rate, or a latency in ms), empty cells as gaps.
    pub(super) fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let values = self.column(name).unwrap_or_default();
        self.elapsed()
            .into_iter()
            .zip(values)
            .map(|(t, v)| (t, v.unwrap_or(f64::NAN)))
            .collect()
    }

    /// A latency column: 0 means "nothing finished that stage in the interval", drawn as a gap.
    pub(super) fn latency(&self, name: &str) -> Vec<(f64, f64)> {
        self.points(name)
            .into_iter()
            .map(|(t, v)| (t, if v > 0.0 { v } else { f64::NAN }))
            .collect()
    }
}

/// One run folder, read.
#[derive(Debug)]
pub struct RunData {
    pub dir: PathBuf,
    /// The variant name, else the folder name.
    pub label: String,
    pub summary: SummaryIn,
    pub timeseries: Timeseries,
    /// Per `latency.hlog` tag, the interval histograms merged.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// `scenario.toml`; `None` for a run written before fleetstorm wrote it.
    pub scenario: Option<String>,
}

fn open(path: &Path) -> Result<std::fs::File, ReportError> {
    std::fs::File::open(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReportError> {
    std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn read_summary(path: &Path) -> Result<SummaryIn, ReportError> {
    serde_json::from_slice(&read_bytes(path)?).map_err(|e| ReportError::Invalid {
        path: path.to_path_buf(),
        detail: format!("malformed summary: {e}"),
    })
}

impl RunData {
    pub fn read(dir: &Path) -> Result<RunData, ReportError> {
        let summary = read_summary(&dir.join("summary.json"))?;
        let timeseries = Timeseries::read(&dir.join("timeseries.csv"))?;
        let path = dir.join("latency.hlog");
        let mut histograms = BTreeMap::new();
        for (tag, intervals) in compare::parse_hlog(&path, &read_bytes(&path)?)? {
            let mut merged = crate::metrics::histogram();
            for h in &intervals {
                merged.add(h).map_err(|e| ReportError::Invalid {
                    path: path.clone(),
                    detail: format!("tag {tag}: {e:?}"),
                })?;
            }
            histograms.insert(tag, merged);
        }
        let path = dir.join("scenario.toml");
        let scenario = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ReportError::Read { path, source }),
        };
        let label = summary
            .variant
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                dir.file_name().map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            });
        Ok(RunData {
            dir: dir.to_path_buf(),
            label,
            summary,
            timeseries,
            histograms,
            scenario,
        })
    }
}

/// `failures.csv`: (elapsed seconds, reason) per failure and dropped arrival.
pub(super) fn read_failures(path: &Path) -> Result<Vec<(f64, String)>, ReportError> {
    let invalid = |detail: String| ReportError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_reader(open(path)?);
    let headers = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(format!("line 1: no `{name}` column")))
    };
    let (elapsed_col, reason_col) = (column("elapsed_s")?, column("reason")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = record.get(elapsed_col).unwrap_or("").trim();
        let elapsed = cell.parse::<f64>().map_err(|_| {
            invalid(format!(
                "line {line}: column `elapsed_s`: {cell:?} is not a number"
            ))
        })?;
        out.push((elapsed, record.get(reason_col).unwrap_or("").to_string()));
    }
    Ok(out)
}

/// Stages in output order, then any other stage the summary names.
pub(super) fn stages_of(summary: &SummaryIn) -> Vec<String> {
    let known = STAGE_NAMES.iter().map(|s| s.to_string());
    let others: BTreeSet<String> = summary
        .stages
        .keys()
        .filter(|s| !STAGE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    known
        .chain(others)
        .filter(|s| summary.stages.get(s).is_some_and(|st| st.latency.count > 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_required_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeseries.csv");
        std::fs::write(&path, "elapsed_s,offered\n1.0,5\n").unwrap();
        let err = Timeseries::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("timeseries.csv") && err.contains("no `started` column"),
            "{err}"
        );
    }
}
