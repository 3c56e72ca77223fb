//! The visual reports: a run's `report.html`, the variants page and `compare.html`.
//!
//! The variants page (`<results>/report.html`) overlays every variant; `compare.html` overlays the
//! compared runs, with the comparison table. Each page is one self-contained file: inline CSS,
//! charts drawn by plotters into inline SVG, no script, nothing fetched, so it opens offline and
//! can be mailed on its own. Pages are built only from the files of the run folders
//! (`summary.json`, `timeseries.csv`, `failures.csv`, `latency.hlog`, `scenario.toml`), which is
//! what lets `fleetstorm report` regenerate them; the same files give the same bytes (no generation
//! timestamp).

mod chart;
mod cloudwatch;
mod input;
mod notice;
mod page;

use std::path::{Path, PathBuf};

use crate::compare::{self, CompareError, Comparison};
use crate::results::{self, Folder, ResultsError, RunResults};

pub use input::RunData;
pub use page::{render_overlay, render_run};

/// The file name of a run's (or a variants folder's) report.
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Results(#[from] ResultsError),
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
            ReportError::Results(_) => true,
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

fn ready(runs: Vec<RunResults>) -> Result<Vec<RunData>, ResultsError> {
    runs.into_iter().map(RunData::new).collect()
}

/// Read a run folder and write its report (`DIR/report.html`, or `out`).
pub fn write_run_report(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    run_report(RunResults::read(dir)?, out)
}

fn run_report(mut run: RunResults, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let failures = run.failures.take();
    let failures = failures.ok_or_else(|| run.missing("failures.csv"))?;
    let path = out.map_or_else(|| run.dir.join(REPORT_FILE), Path::to_path_buf);
    let html = render_run(&RunData::new(run)?, &failures)?;
    write(&path, &html)
}

/// The variants page of `parent` (`parent/report.html`, or `out`) from its variant folders.
pub fn write_variants_report(
    parent: &Path,
    runs: Vec<RunResults>,
    comparison: Option<&Comparison>,
    out: Option<&Path>,
) -> Result<PathBuf, ReportError> {
    let runs = ready(runs)?;
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
    runs: Vec<RunResults>,
    comparison: &Comparison,
) -> Result<PathBuf, ReportError> {
    let html = render_overlay("fleetstorm compare", &ready(runs)?, Some(comparison), false)?;
    write(path, &html)
}

/// `fleetstorm report DIR`: a run folder gets its `report.html` again; a variants folder (run
/// folders below it) gets its overlay page, comparison included (seeded by the first variant's
/// scenario, as the run was).
pub fn regenerate(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let runs = match results::read_folder(dir)? {
        Folder::Run(run) => return run_report(*run, out),
        Folder::Variants(runs) => runs,
    };
    let comparison = if runs.len() > 1 {
        Some(compare::compare_runs(&runs, runs[0].seed())?)
    } else {
        None
    };
    write_variants_report(dir, runs, comparison.as_ref(), out)
}
