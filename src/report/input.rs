//! A run as the pages draw it: its results with the timeseries and the merged hlog required.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hdrhistogram::Histogram;

use crate::metrics::STAGE_NAMES;
use crate::results::{ResultsError, RunResults, Summary, Timeseries};

/// One run folder, ready to draw.
#[derive(Debug)]
pub struct RunData {
    pub dir: PathBuf,
    /// The variant name, else the folder name.
    pub label: String,
    pub summary: Summary,
    pub timeseries: Timeseries,
    /// Per `latency.hlog` tag, the interval histograms merged.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// `scenario.toml`; `None` for a run written before fleetstorm wrote it.
    pub scenario: Option<String>,
    /// `cloudwatch.csv` (`fleetstorm aws metrics`); `None` when the run has none.
    pub cloudwatch: Option<Vec<crate::results::cloudwatch::CloudWatchRow>>,
}

impl RunData {
    pub fn new(run: RunResults) -> Result<RunData, ResultsError> {
        let histograms = run.merged()?;
        let missing = run.missing("timeseries.csv");
        let cloudwatch_csv = run.dir.join(crate::results::cloudwatch::FILE_NAME);
        let cloudwatch = cloudwatch_csv
            .exists()
            .then(|| crate::results::cloudwatch::read(&cloudwatch_csv))
            .transpose()?;
        Ok(RunData {
            cloudwatch,
            timeseries: run.timeseries.ok_or(missing)?,
            dir: run.dir,
            label: run.label,
            summary: run.summary,
            histograms,
            scenario: run.scenario,
        })
    }
}

/// Stages in output order, then any other stage the summary names.
pub(super) fn stages_of(summary: &Summary) -> Vec<String> {
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
