//! The folders to merge, read and checked: same scenario, shards that fit together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{MergeError, MergeOptions, MergedFrom};
use crate::results::{self, Folder, ResultsError, RunResults, ShardSummary, TimedLog};

/// One folder to merge.
#[derive(Debug)]
pub(super) struct Input {
    pub run: RunResults,
    pub shard: Option<ShardSummary>,
    pub log: TimedLog,
    /// `summary.json`'s `started_at`: the folder's time origin.
    pub started_at: SystemTime,
    /// `started_at` − the merged origin, seconds (set by [`check`]).
    pub offset_s: f64,
}

impl Input {
    pub fn dir(&self) -> &Path {
        &self.run.dir
    }

    /// The folder and its shard, for messages: `results/x-shard-1-of-4 (shard 1/4)`.
    pub fn name(&self) -> String {
        match &self.shard {
            Some(s) => format!("{} (shard {}/{})", self.dir().display(), s.index, s.count),
            None => format!("{} (unsharded)", self.dir().display()),
        }
    }

    pub fn merged_from(&self) -> MergedFrom {
        MergedFrom {
            dir: self.dir().display().to_string(),
            shard: self.shard.clone(),
            run_id: self.run.summary.run_id.clone(),
            started_at: self.run.summary.started_at.clone(),
            complete: self.run.summary.complete,
        }
    }
}

/// What the checks found.
#[derive(Debug)]
pub(super) struct Plan {
    /// The merged time origin: the earliest `started_at`.
    pub origin: SystemTime,
    pub missing: Vec<u64>,
    pub notes: Vec<String>,
}

fn read_one(dir: &Path) -> Result<Input, MergeError> {
    let summary_path = dir.join("summary.json");
    if !summary_path.is_file()
        && let Ok(Folder::Variants(runs)) = results::read_folder(dir)
    {
        let names: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
        return Err(MergeError::Refused(format!(
            "{}: a variants folder (run folders {} below it): merge each variant's folders on their own, e.g. `fleetstorm merge A/{v} B/{v} --out merged/{v}`",
            dir.display(),
            names.join(", "),
            v = names.first().map_or("VARIANT", String::as_str),
        )));
    }
    let run = RunResults::read(dir)?;
    let shard = run.summary.shard.clone();
    if let Some(s) = &shard
        && (s.count == 0 || s.index >= s.count)
    {
        return Err(ResultsError::Invalid {
            path: summary_path,
            detail: format!("shard {}/{}: not a shard of the job", s.index, s.count),
        }
        .into());
    }
    let started_at = humantime::parse_rfc3339_weak(&run.summary.started_at).map_err(|e| {
        ResultsError::Invalid {
            path: summary_path.clone(),
            detail: format!(
                "started_at {:?} is not an RFC 3339 time: {e}",
                run.summary.started_at
            ),
        }
    })?;
    let log = results::read_hlog(&dir.join("latency.hlog"))?;
    for file in ["timeseries.csv", "devices.csv", "failures.csv"] {
        if !dir.join(file).is_file() {
            return Err(run.missing(file).into());
        }
    }
    if run.timeseries.is_none() {
        return Err(run.missing("timeseries.csv").into());
    }
    Ok(Input {
        run,
        shard,
        log,
        started_at,
        offset_s: 0.0,
    })
}

/// Read every folder (the first unreadable one is the error).
pub(super) fn read_all(dirs: &[PathBuf]) -> Result<Vec<Input>, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::Refused("no folders to merge".into()));
    }
    dirs.iter().map(|d| read_one(d)).collect()
}

fn refuse(text: String) -> MergeError {
    MergeError::Refused(text)
}

/// The scenario identity the folders must share: name, file hash and variant.
fn same_scenario(inputs: &[Input]) -> Result<(), MergeError> {
    let first = &inputs[0];
    let key = |i: &Input| {
        let s = &i.run.summary;
        (
            s.scenario.clone(),
            s.scenario_sha256.clone(),
            s.variant.clone(),
        )
    };
    for other in &inputs[1..] {
        if key(other) != key(first) {
            let describe = |i: &Input| {
                let (name, sha, variant) = key(i);
                format!(
                    "{}: scenario {name:?}{}{}",
                    i.dir().display(),
                    sha.map(|s| format!(" (scenario_sha256 {s})"))
                        .unwrap_or_else(|| " (no scenario_sha256)".into()),
                    variant
                        .map(|v| format!(", variant {v:?}"))
                        .unwrap_or_default()
                )
            };
            return Err(refuse(format!(
                "different scenarios: {} but {}: only shards of one scenario merge",
                describe(first),
                describe(other)
            )));
        }
    }
    Ok(())
}

/// Sort the inputs by shard index and check they are distinct shards of one job; the shard
/// indexes the job has and no folder holds.
fn shards_fit(inputs: &mut [Input]) -> Result<Vec<u64>, MergeError> {
    let unsharded: Vec<&Input> = inputs.iter().filter(|i| i.shard.is_none()).collect();
    if !unsharded.is_empty() && unsharded.len() < inputs.len() {
        let sharded = inputs.iter().find(|i| i.shard.is_some()).map(Input::name);
        return Err(refuse(format!(
            "overlapping shards: {} is a whole (unsharded) run, so it holds the devices of {} too",
            unsharded[0].name(),
            sharded.unwrap_or_default()
        )));
    }
    if unsharded.len() > 1 {
        return Err(refuse(format!(
            "overlapping shards: {} and {} are both whole (unsharded) runs of the same devices",
            unsharded[0].name(),
            unsharded[1].name()
        )));
    }
    if !unsharded.is_empty() {
        return Ok(Vec::new());
    }
    inputs.sort_by_key(|i| i.shard.as_ref().map(|s| s.index));
    let count = |i: &Input| i.shard.as_ref().map_or(1, |s| s.count);
    if let Some(other) = inputs.iter().find(|i| count(i) != count(&inputs[0])) {
        return Err(refuse(format!(
            "overlapping shards: {} and {} split the devices differently (into {} and {} shards)",
            inputs[0].name(),
            other.name(),
            count(&inputs[0]),
            count(other)
        )));
    }
    for pair in inputs.windows(2) {
        if pair[0].shard.as_ref().map(|s| s.index) == pair[1].shard.as_ref().map(|s| s.index) {
            return Err(refuse(format!(
                "overlapping shards: {} and {} are the same shard",
                pair[0].name(),
                pair[1].name()
            )));
        }
    }
    let present: BTreeSet<u64> = inputs
        .iter()
        .filter_map(|i| i.shard.as_ref().map(|s| s.index))
        .collect();
    Ok((0..count(&inputs[0]))
        .filter(|i| !present.contains(i))
        .collect())
}

/// Check the folders merge (refusing with a message naming them), sort them by shard and set
/// each one's offset from the merged time origin.
pub(super) fn check(
    inputs: &mut [Input],
    out: &Path,
    options: MergeOptions,
) -> Result<Plan, MergeError> {
    let partial = options.partial;
    same_scenario(inputs)?;
    let missing = shards_fit(inputs)?;
    let same_dir = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(input) = inputs.iter().find(|i| same_dir(i.dir(), out)) {
        return Err(refuse(format!(
            "--out {}: is one of the folders to merge ({}); choose another folder",
            out.display(),
            input.name()
        )));
    }
    let incomplete: Vec<String> = inputs
        .iter()
        .filter(|i| !i.run.summary.complete)
        .map(Input::name)
        .collect();
    let total = inputs[0].shard.as_ref().map_or(1, |s| s.count);
    let missing_text = || {
        let list: Vec<String> = missing.iter().map(|i| format!("{i}/{total}")).collect();
        format!("missing shards: {} of {total}", list.join(", "))
    };
    if !partial {
        if !incomplete.is_empty() {
            return Err(refuse(format!(
                "incomplete run folders (\"complete\": false: killed, or still running): {}; add --partial to merge them as they are",
                incomplete.join(", ")
            )));
        }
        if !missing.is_empty() {
            return Err(refuse(format!(
                "{}: no folder given holds them; add --partial to merge the {} given",
                missing_text(),
                inputs.len()
            )));
        }
    }
    let origin = inputs
        .iter()
        .map(|i| i.started_at)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for input in inputs.iter_mut() {
        input.offset_s = input
            .started_at
            .duration_since(origin)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
    }
    let mut notes = Vec::new();
    if !missing.is_empty() {
        notes.push(format!(
            "{} (--partial): the merge holds {} of the job's {total} shards",
            missing_text(),
            inputs.len()
        ));
    }
    if !incomplete.is_empty() {
        notes.push(format!(
            "incomplete folders merged as they are (--partial): {}",
            incomplete.join(", ")
        ));
    }
    notes.extend(same_run(inputs, options.mixed_runs)?);
    for input in inputs.iter() {
        if let Some(note) = hlog_counts_match(input)? {
            notes.push(note);
        }
    }
    Ok(Plan {
        origin,
        missing,
        notes,
    })
}

/// The run a folder belongs to: its run ID and `--start-at` (none for a shard started without
/// one, or an unsharded run).
fn run_of(input: &Input) -> (&str, Option<&str>) {
    (
        input.run.summary.run_id.as_str(),
        input.shard.as_ref().and_then(|s| s.start_at.as_deref()),
    )
}

/// Refuse folders of different runs (run ID or `--start-at`) unless `mixed_runs`; with it, the
/// notes that say so.
fn same_run(inputs: &[Input], mixed_runs: bool) -> Result<Vec<String>, MergeError> {
    let describe = |i: &Input| {
        let (id, start_at) = run_of(i);
        format!(
            "{} (run ID {id:?}, --start-at {})",
            i.name(),
            start_at.unwrap_or("none")
        )
    };
    let Some(other) = inputs.iter().find(|i| run_of(i) != run_of(&inputs[0])) else {
        return Ok(Vec::new());
    };
    if !mixed_runs {
        return Err(refuse(format!(
            "different runs: {} but {}: the shards of one job share one --run-id and one --start-at; add --mixed-runs to merge them anyway (their seconds are then aligned to the nearest whole second, and every second between their runs is written, zero-filled)",
            describe(&inputs[0]),
            describe(other)
        )));
    }
    let mut notes = Vec::new();
    let run_ids: BTreeSet<&str> = inputs.iter().map(|i| run_of(i).0).collect();
    if run_ids.len() > 1 {
        notes.push(format!(
            "the folders have different run IDs ({}), merged as one (--mixed-runs)",
            run_ids.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let starts: BTreeSet<Option<&str>> = inputs.iter().map(|i| run_of(i).1).collect();
    if starts.len() > 1 {
        notes.push(
            "the shards did not all share one --start-at (--mixed-runs): intervals are aligned to the nearest whole second".into(),
        );
    }
    Ok(notes)
}

/// Per `latency.hlog` tag, the values its intervals hold.
fn hlog_counts(log: &TimedLog) -> BTreeMap<&str, u64> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &log.intervals {
        *counts.entry(i.tag.as_str()).or_default() += i.histogram.len();
    }
    counts
}

/// Check a folder's `latency.hlog` holds what its own `summary.json` counted: per stage, as
/// many latency (tag `<stage>`) and service-time (`<stage>.service`) values as the stage's
/// `count`s. A complete folder whose log falls short (truncated, emptied, another run's) is
/// an error naming the log (exit 3); an incomplete one (merged with `--partial`) can be a
/// second apart, killed between the two writes: a note.
fn hlog_counts_match(input: &Input) -> Result<Option<String>, MergeError> {
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (stage, s) in &input.run.summary.stages {
        want.insert(stage.clone(), s.latency.count);
        want.insert(format!("{stage}.service"), s.service.count);
    }
    let got = hlog_counts(&input.log);
    let mut tags: BTreeSet<&str> = want.keys().map(String::as_str).collect();
    tags.extend(got.keys().copied());
    let differ: Vec<String> = tags
        .into_iter()
        .filter_map(|tag| {
            let (w, g) = (
                want.get(tag).copied().unwrap_or(0),
                got.get(tag).copied().unwrap_or(0),
            );
            (w != g).then(|| format!("tag {tag} holds {g} values, summary.json counts {w}"))
        })
        .collect();
    if differ.is_empty() {
        return Ok(None);
    }
    let differ = match differ.len() {
        n @ 4.. => format!("{} and {} more tags", differ[..3].join("; "), n - 3),
        _ => differ.join("; "),
    };
    let path = input.dir().join("latency.hlog");
    if !input.run.summary.complete {
        return Ok(Some(format!(
            "{}: {} (an incomplete folder: its log and summary were written at different moments)",
            path.display(),
            differ
        )));
    }
    Err(ResultsError::Invalid {
        path,
        detail: format!(
            "does not hold what this folder's summary.json counts: {}: truncated, emptied or not this run's log",
            differ
        ),
    }
    .into())
}
