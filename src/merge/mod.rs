//! `fleetstorm merge DIR... --out DIR`: the run folders of a sharded job (`run --shard I/N`)
//! merged into one run folder, as if one process had run every device.
//!
//! What is merged how:
//! - Time: the merged run starts at the earliest `started_at` of the folders (T0). Every
//!   folder's 1 s intervals are placed by wall clock: a `latency.hlog` interval at `BaseTime`
//!   (else `StartTime`) + its timestamp, a `timeseries.csv` row at `started_at` + the previous
//!   row's `elapsed_s`, each in the whole second after T0 nearest to its start. Shards started
//!   with one `--start-at` share their interval boundaries, so this is exact; folders started at
//!   other instants land in the nearest whole interval.
//! - `latency.hlog`: per tag and interval, the shards' histograms added (HDR addition, nothing
//!   averaged), written with `StartTime` = `BaseTime` = T0. The per-stage figures of
//!   `summary.json` (count, mean, percentiles, max; latency and service time) come from the sum
//!   of the merged intervals, exactly as a run computes them from its own.
//! - `timeseries.csv`, per column: counts of the interval (`offered`, `started`, `completed`,
//!   `failed`, `failed_<class>`) summed; levels at the interval's end (`in_flight`,
//!   `connected`) summed, a shard between two of its rows counting its last level and a shard
//!   not started yet or finished counting 0; `dropped_total` (cumulative) summed, a finished
//!   shard counting its last total; `start_lag_max_ms` the maximum; `<stage>_p50_ms` /
//!   `_p99_ms` from the merged interval histograms of `latency.hlog` (0 where no device finished
//!   the stage, as a run writes); `target_rate_per_s` the running shards' (each writes the
//!   job's rate: a shard runs the unsharded schedule and takes every N-th arrival);
//!   `rate_multiplier` the mean of the running shards (their multipliers apply to equal
//!   shares); `cpu_percent` the maximum (the busiest shard's process: a merged run is only as
//!   trustworthy as its most loaded shard); columns fleetstorm does not write are left empty.
//!   A second in which no shard wrote a row is written with zero counts.
//! - `devices.csv` ordered by `seq`, `failures.csv` by time (its `elapsed_s` rebased on T0),
//!   `created.csv` by `time`: one header each, every row of every folder. A device `seq` in two
//!   folders is refused as overlapping shards; every `devices.csv` cell is parsed with its type
//!   (`devices`), and a `seq` twice in one file is a malformed file.
//! - `summary.json`: device counts and failures by reason summed; success rate recomputed; the
//!   provisioning window is the union of the shards' (each taken from its time origin, where
//!   its first arrival is due), throughput over it; duration from T0 to the last folder's end;
//!   the largest start lag; rate levels (throttle-limit finder, each shard's keyed by the
//!   job's rate) summed per level and judged again; thresholds evaluated again, from the
//!   scenario's `thresholds`, by the run's code. `merged_from` lists the folders and their shards, `shards_missing` what `--partial` left
//!   out; `complete` is true when every merged folder was complete.
//! - `scenario.toml` is the first folder's; `report.html` is drawn by the run's report code
//!   and says it is a merge.
//!
//! Refused (exit 2, nothing written): folders of different scenarios (name, `scenario_sha256`
//! or variant), overlapping shards (an index twice, different shard counts, a sharded folder
//! with an unsharded one, two unsharded ones), incomplete folders (`"complete": false`) and
//! missing shards unless `--partial`, folders of different runs (run ID or `--start-at`)
//! unless `--mixed-runs`, a variants folder (merge each variant's folders on their own), and an
//! `--out` that is one of the inputs. A results file that cannot be read or does not parse is
//! an error naming the file (and line) with exit 3, as for `report`; so is a complete folder's
//! `latency.hlog` that does not hold the values its own `summary.json` counts per stage.

mod inputs;
mod summary;
mod tables;
mod timeseries;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::output::{FolderError, OutputError};
use crate::report::ReportError;
pub use crate::results::MergedFrom;
use crate::results::hlog::{self, Buckets, HlogWriter};
use crate::results::{ResultsError, Summary};

/// `fleetstorm merge`'s command line.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' run folders (in any order).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The merged run folder: created when missing; an existing one must be empty, unless
    /// --overwrite.
    #[arg(long)]
    pub out: PathBuf,
    /// Merge even with shards missing or incomplete (killed) folders; summary.json says which.
    #[arg(long)]
    pub partial: bool,
    /// Write into an existing, non-empty --out folder (files of the same name are replaced).
    #[arg(long)]
    pub overwrite: bool,
    /// Merge folders of different runs (run IDs or --start-at instants that differ): not the
    /// shards of one job, so their seconds are aligned to the nearest whole second only and every
    /// second between them is written, zero-filled.
    #[arg(long)]
    pub mixed_runs: bool,
}

impl MergeArgs {
    pub fn options(&self) -> MergeOptions {
        MergeOptions {
            partial: self.partial,
            overwrite: self.overwrite,
            mixed_runs: self.mixed_runs,
        }
    }
}

/// `merge`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Merge even with shards missing or incomplete (the summary says which).
    pub partial: bool,
    /// Write into a non-empty `--out` folder.
    pub overwrite: bool,
    /// Merge folders of different run IDs or `--start-at` instants.
    pub mixed_runs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A folder or results file that cannot be read or does not parse.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// The folders do not merge (different scenarios, overlapping or missing shards, ...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("the merged results are written, but not report.html: {0}")]
    Report(#[from] ReportError),
}

/// A merge, written.
#[derive(Debug)]
pub struct Merged {
    pub summary: Summary,
    pub report: PathBuf,
    /// Things worth a line on the terminal (missing shards, mixed run IDs, ...).
    pub notes: Vec<String>,
}

/// Merge the run folders `dirs` into `out` (claimed as `run --out` claims its folder).
pub fn merge(dirs: &[PathBuf], out: &Path, options: MergeOptions) -> Result<Merged, MergeError> {
    let mut inputs = inputs::read_all(dirs)?;
    let plan = inputs::check(&mut inputs, out, options)?;
    let origin = plan.origin;
    let buckets = merge_hlogs(&inputs, origin)?;
    let devices = tables::devices(&inputs)?;
    let failures = tables::failures(&inputs)?;
    let created = tables::created(&inputs)?;
    let series = timeseries::merge(&inputs, &buckets);

    let out = crate::output::claim_given(out, options.overwrite)?;
    let summary = summary::build(&inputs, &plan, &buckets, &out)?;
    write_hlog(&out.join(hlog::FILE_NAME), &summary, origin, &buckets)?;
    tables::write(&out.join("timeseries.csv"), &series)?;
    tables::write(&out.join("devices.csv"), &devices)?;
    tables::write(&out.join("failures.csv"), &failures)?;
    if let Some(created) = &created {
        tables::write(&out.join("created.csv"), created)?;
    }
    if let Some(text) = inputs.iter().find_map(|i| i.run.scenario.as_deref()) {
        let path = out.join("scenario.toml");
        let header = format!(
            "# Merged by fleetstorm merge from {} folders; the scenario as the first of them ran it.\n",
            inputs.len()
        );
        std::fs::write(&path, header + text).map_err(|e| OutputError::new(&path, e))?;
    }
    crate::output::write_summary(&out, &summary)?;
    let report = crate::report::write_run_report(&out, None)?;
    Ok(Merged {
        summary,
        report,
        notes: plan.notes,
    })
}

/// Every folder's `latency.hlog` intervals added into the merged ones.
fn merge_hlogs(inputs: &[inputs::Input], origin: SystemTime) -> Result<Buckets, MergeError> {
    let mut buckets = Buckets::new();
    for input in inputs {
        let path = input.dir().join(hlog::FILE_NAME);
        hlog::add(&mut buckets, &input.log, input.offset_s, &path, origin)?;
    }
    Ok(buckets)
}

/// The merged log, written as a run writes its own, with `StartTime` = `BaseTime` = the merged
/// origin.
fn write_hlog(
    path: &Path,
    summary: &Summary,
    origin: SystemTime,
    buckets: &Buckets,
) -> Result<(), MergeError> {
    let title = format!(
        "merge of {} folders of scenario {}",
        summary.merged_from.len(),
        summary.scenario
    );
    let io = |e: std::io::Error| OutputError::new(path, e);
    let mut w = HlogWriter::begin(Vec::new(), &title, origin).map_err(io)?;
    hlog::write_buckets(&mut w, buckets).map_err(io)?;
    std::fs::write(path, w.into_inner()).map_err(io)?;
    Ok(())
}

/// What `fleetstorm merge` prints: the end-of-run table of the merge, the report and the notes.
pub fn render(merged: &Merged) -> String {
    let mut text = crate::output::render_table(&merged.summary);
    text.push_str(&format!("\n  report: {}", merged.report.display()));
    for note in &merged.notes {
        text.push_str(&format!("\n  note: {note}"));
    }
    text
}
