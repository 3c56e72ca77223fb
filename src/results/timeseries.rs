//! `timeseries.csv`: one row per interval of the run. Its one model: [`columns`], what each
//! column holds (and so how many decimals it is written with and how `merge` merges it), the
//! row the run writes ([`TimeseriesRow`]), and the reader ([`Timeseries`], by header name).

use std::path::Path;

use super::{ResultsError, open_csv};
use crate::metrics::STAGE_NAMES;
use crate::stage::FailureClass;

/// The file name inside a run folder.
pub const FILE_NAME: &str = "timeseries.csv";

/// What a column measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// `elapsed_s`: the interval's end, seconds since the start.
    Elapsed,
    /// Counted in the interval (`offered`, `failed_<class>`, ...).
    Count,
    /// A level at the interval's end (`in_flight`, `connected`).
    Level,
    /// A running total (`dropped_total`).
    Cumulative,
    /// A maximum over the interval (`start_lag_max_ms`, `cpu_percent`).
    Max,
    /// The live arrival-rate multiplier (`rate_multiplier`).
    Mean,
    /// The job's figure, which every shard of it writes whole (`target_rate_per_s`: a shard
    /// runs the unsharded schedule, taking every N-th arrival).
    Shared,
    /// A latency percentile (0.50, 0.99) of a stage in the interval, in ms.
    Percentile(&'static str, f64),
}

/// One column of `timeseries.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub measure: Measure,
    /// Decimals the run writes it with.
    pub decimals: usize,
}

/// The columns a run writes, in order: the file's header.
pub fn columns() -> Vec<Column> {
    let column = |name: &str, measure, decimals| Column {
        name: name.to_string(),
        measure,
        decimals,
    };
    let mut out = vec![column("elapsed_s", Measure::Elapsed, 1)];
    for name in ["offered", "started", "completed", "failed"] {
        out.push(column(name, Measure::Count, 0));
    }
    for class in FailureClass::FAILED {
        out.push(column(
            &format!("failed_{}", class.as_str()),
            Measure::Count,
            0,
        ));
    }
    out.push(column("in_flight", Measure::Level, 0));
    out.push(column("dropped_total", Measure::Cumulative, 0));
    out.push(column("start_lag_max_ms", Measure::Max, 3));
    for stage in STAGE_NAMES {
        out.push(column(
            &format!("{stage}_p50_ms"),
            Measure::Percentile(stage, 0.50),
            3,
        ));
        out.push(column(
            &format!("{stage}_p99_ms"),
            Measure::Percentile(stage, 0.99),
            3,
        ));
    }
    out.push(column("target_rate_per_s", Measure::Shared, 3));
    out.push(column("rate_multiplier", Measure::Mean, 2));
    out.push(column("connected", Measure::Level, 0));
    out.push(column("cpu_percent", Measure::Max, 1));
    for name in ["certificates_issued", "connects", "retries"] {
        out.push(column(name, Measure::Count, 0));
    }
    out
}

/// The column `name`, when fleetstorm writes it.
pub fn column(name: &str) -> Option<Column> {
    columns().into_iter().find(|c| c.name == name)
}

/// One interval of the run, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesRow {
    pub elapsed_s: f64,
    pub offered: u64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Per failure class, in [`FailureClass::FAILED`] order.
    pub failed_by_class: Vec<u64>,
    pub in_flight: u64,
    pub dropped_total: u64,
    pub start_lag_max_ms: f64,
    /// Per stage, in [`STAGE_NAMES`] order: (p50, p99) latency in ms.
    pub stage_ms: Vec<(f64, f64)>,
    /// What the schedule asked for at the interval's end (multiplier applied).
    pub target_rate_per_s: Option<f64>,
    pub rate_multiplier: f64,
    pub connected: u64,
    /// This process's CPU over the interval, percent of one core.
    pub cpu_percent: f64,
    /// Certificates issued to the devices, MQTT connects they attempted, and whole-flow
    /// retries they started, in the interval.
    pub certificates_issued: u64,
    pub connects: u64,
    pub retries: u64,
}

impl TimeseriesRow {
    /// The cells as written, in [`columns`] order, each with its column's decimals.
    pub fn cells(&self) -> Vec<String> {
        let mut values: Vec<Option<f64>> = vec![Some(self.elapsed_s)];
        values.extend(
            [self.offered, self.started, self.completed, self.failed].map(|v| Some(v as f64)),
        );
        values.extend(self.failed_by_class.iter().map(|v| Some(*v as f64)));
        values.push(Some(self.in_flight as f64));
        values.push(Some(self.dropped_total as f64));
        values.push(Some(self.start_lag_max_ms));
        values.extend(
            self.stage_ms
                .iter()
                .flat_map(|(p50, p99)| [Some(*p50), Some(*p99)]),
        );
        values.push(self.target_rate_per_s);
        values.push(Some(self.rate_multiplier));
        values.push(Some(self.connected as f64));
        values.push(Some(self.cpu_percent));
        values.extend(
            [self.certificates_issued, self.connects, self.retries].map(|v| Some(v as f64)),
        );
        columns()
            .iter()
            .zip(values)
            .map(|(c, v)| v.map_or_else(String::new, |v| format!("{v:.*}", c.decimals)))
            .collect()
    }
}

/// `timeseries.csv`, read by header name: the columns a run writes today, plus any later ones.
#[derive(Debug, Clone)]
pub struct Timeseries {
    header: Vec<String>,
    /// Row-major; `None` for an empty cell.
    rows: Vec<Vec<Option<f64>>>,
}

/// The columns every `timeseries.csv` has had from the first version on.
const REQUIRED_COLUMNS: [&str; 5] = ["elapsed_s", "offered", "started", "completed", "failed"];

impl Timeseries {
    pub fn read(path: &Path) -> Result<Timeseries, ResultsError> {
        let invalid = |detail: String| ResultsError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let (mut reader, header) = open_csv(path)?;
        // Cells of the columns fleetstorm writes must be numbers; cells of other columns
        // (added later, by hand, ...) that are not numbers are ignored.
        let known: Vec<bool> = header.iter().map(|h| column(h).is_some()).collect();
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
                .zip(header.iter().zip(&known))
                .map(|(cell, (name, known))| {
                    let cell = cell.trim();
                    if cell.is_empty() {
                        return Ok(None);
                    }
                    match cell.parse::<f64>() {
                        Ok(v) => Ok(Some(v)),
                        Err(_) if !known => Ok(None),
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

    /// The column names, in file order.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    pub fn column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let i = self.header.iter().position(|h| h == name)?;
        Some(
            self.rows
                .iter()
                .map(|r| r.get(i).copied().flatten())
                .collect(),
        )
    }

    pub fn elapsed(&self) -> Vec<f64> {
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
    pub fn rate(&self, name: &str) -> Vec<(f64, f64)> {
        self.full_intervals(name)
            .into_iter()
            .map(|(t, n, length)| (t, n / length))
            .collect()
    }

    /// A column as it is (a rate, or a latency in ms), empty cells as gaps.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let values = self.column(name).unwrap_or_default();
        self.elapsed()
            .into_iter()
            .zip(values)
            .map(|(t, v)| (t, v.unwrap_or(f64::NAN)))
            .collect()
    }

    /// A latency column: 0 means "nothing finished that stage in the interval", drawn as a gap.
    pub fn latency(&self, name: &str) -> Vec<(f64, f64)> {
        self.points(name)
            .into_iter()
            .map(|(t, v)| (t, if v > 0.0 { v } else { f64::NAN }))
            .collect()
    }
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
