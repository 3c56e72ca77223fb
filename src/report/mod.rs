//! The visual reports: `report.html` for one run, the variants page (`<results>/report.html`,
//! every variant overlaid) and `compare.html` (the compared runs overlaid, with the comparison
//! table).
//!
//! Each page is one self-contained file: inline CSS, charts drawn by plotters into inline SVG, no
//! script, nothing fetched, so it opens offline and can be mailed on its own. Pages are built only
//! from the files of the run folders (`summary.json`, `timeseries.csv`, `failures.csv`,
//! `latency.hlog`, `scenario.toml`), which is what lets `fleetstorm report` regenerate them; the
//! same files give the same bytes (no generation timestamp).

mod chart;
mod input;
mod page;

use std::path::{Path, PathBuf};

use crate::compare::{self, CompareError, Comparison};

pub use input::{RunData, SummaryIn, Timeseries};
use input::{read_failures, read_summary};
pub use page::{render_overlay, render_run};

/// The file name of a run's (or a variants folder's) report.
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{}: not a run folder (no summary.json in it, nor in any folder directly below it)",
        path.display()
    )]
    NotARun { path: PathBuf },
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error("drawing the chart {chart:?}: {detail}")]
    Chart { chart: String, detail: String },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReportError {
    /// Whether the error is in the input files (as opposed to drawing or writing the report).
    pub fn is_input(&self) -> bool {
        match self {
            ReportError::Read { .. }
            | ReportError::Invalid { .. }
            | ReportError::NotARun { .. } => true,
            ReportError::Compare(e) => !matches!(e, CompareError::Write { .. }),
            ReportError::Chart { .. } | ReportError::Write { .. } => false,
        }
    }
}

fn write(path: &Path, html: &str) -> Result<PathBuf, ReportError> {
    std::fs::write(path, html).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// Read a run folder and write its report (`DIR/report.html`, or `out`).
pub fn write_run_report(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let run = RunData::read(dir)?;
    let failures = read_failures(&dir.join("failures.csv"))?;
    let html = render_run(&run, &failures)?;
    write(
        &out.map_or_else(|| dir.join(REPORT_FILE), Path::to_path_buf),
        &html,
    )
}

/// The variants page of `parent` (`parent/report.html`, or `out`) from its variant folders.
pub fn write_variants_report(
    parent: &Path,
    dirs: &[PathBuf],
    comparison: Option<&Comparison>,
    out: Option<&Path>,
) -> Result<PathBuf, ReportError> {
    let runs = dirs
        .iter()
        .map(|d| RunData::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let name = runs
        .first()
        .map_or("variants", |r| r.summary.scenario.as_str());
    let html = render_overlay(
        &format!("fleetstorm: {name}, variants"),
        &runs,
        comparison,
        true,
    )?;
    write(
        &out.map_or_else(|| parent.join(REPORT_FILE), Path::to_path_buf),
        &html,
    )
}

/// `compare.html` at `path`: the runs overlaid and the comparison table.
pub fn write_compare_report(
    path: &Path,
    dirs: &[PathBuf],
    comparison: &Comparison,
) -> Result<PathBuf, ReportError> {
    let runs = dirs
        .iter()
        .map(|d| RunData::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let html = render_overlay("fleetstorm compare", &runs, Some(comparison), false)?;
    write(path, &html)
}

/// The variant folders directly below `parent`, in the order they ran.
fn variant_dirs(parent: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let entries = std::fs::read_dir(parent).map_err(|source| ReportError::Read {
        path: parent.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let summary = path.join("summary.json");
        if summary.is_file() {
            found.push((read_summary(&summary)?.started_at, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The bootstrap seed a variants run compared with: the scenario's `seed` (1 when absent).
fn scenario_seed(run_dir: &Path) -> u64 {
    std::fs::read_to_string(run_dir.join("scenario.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("seed").and_then(toml::Value::as_integer))
        .map_or(1, |s| s as u64)
}

/// `fleetstorm report DIR`: a run folder gets its `report.html` again; a variants folder (run
/// folders below it) gets its overlay page, comparison included.
pub fn regenerate(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    // A folder with any run file is a run folder: a missing summary.json is then named as such.
    let run_files = [
        "summary.json",
        "timeseries.csv",
        "latency.hlog",
        "failures.csv",
    ];
    if run_files.iter().any(|f| dir.join(f).exists()) {
        return write_run_report(dir, out);
    }
    if !dir.is_dir() {
        return Err(ReportError::Read {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    let dirs = variant_dirs(dir)?;
    if dirs.is_empty() {
        return Err(ReportError::NotARun {
            path: dir.to_path_buf(),
        });
    }
    let comparison = if dirs.len() > 1 {
        Some(compare::compare(&dirs, scenario_seed(&dirs[0]))?)
    } else {
        None
    };
    write_variants_report(dir, &dirs, comparison.as_ref(), out)
}
