//! `timeseries.csv`, read by header name: one row per interval of the run.

use std::path::Path;

use super::{ResultsError, open_csv};
use crate::metrics::STAGE_NAMES;

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
    pub fn read(path: &Path) -> Result<Timeseries, ResultsError> {
        let invalid = |detail: String| ResultsError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let (mut reader, header) = open_csv(path)?;
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
