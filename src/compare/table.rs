//! A comparison as text: the stdout table, and `compare.csv`.

use std::fmt::Write as _;
use std::path::Path;

use super::{BOOTSTRAP_RESAMPLES, CONFIDENCE, CompareError, Comparison, MIN_INTERVALS};

/// Counts print as integers; everything else (ms, per second, percent) with 2 decimals.
fn is_count(metric: &str) -> bool {
    metric.ends_with(".count")
        || metric.starts_with("devices.")
        || metric.starts_with("failures.")
        || matches!(
            metric,
            "certificates.issued"
                | "certificates.orphaned"
                | "attempts.max"
                | "connects.total"
                | "connects.max_per_client_id_per_s"
        )
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
        // Warnings before the table, where they are seen first (and again in the notes).
        for warning in self.notes.iter().filter(|n| n.starts_with("WARNING")) {
            let _ = writeln!(out, "\n  {warning}");
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
