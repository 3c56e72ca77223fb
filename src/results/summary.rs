//! `summary.json`: the one model of a run's summary, written by `output` and read by `results`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metrics::{StageSummary, ThresholdResult, ThrottleAnalysis};
use crate::mock::MockReport;

/// One change made during a run, as recorded in `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateChange {
    /// Seconds since the start of the run (real time).
    pub elapsed_s: f64,
    pub multiplier: f64,
    pub paused: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceCounts {
    pub planned: u64,
    pub started: u64,
    pub provisioned: u64,
    pub failed: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    /// Devices provisioned per second of the provisioning window (first intended start to last
    /// device provisioned): what the target sustained, whatever the devices did afterwards.
    pub provisioned_per_s: f64,
    /// The provisioning window's length.
    pub provisioning_window_s: f64,
    /// Devices provisioned per second of the whole run (telemetry, stays and drain included).
    pub provisioned_per_s_whole_run: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Scheduler {
    pub max_start_lag_ms: f64,
}

/// `summary.json`, as a run writes it and as `report` and `compare` read it. Unknown fields are
/// ignored and optional ones may be missing, so summaries of older and newer versions read alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub scenario: String,
    /// SHA-256 (hex) of the scenario file's bytes as the run read them, before `--set` and
    /// variant overrides: `compare` warns when runs differ in it (or in `scenario`). Absent for
    /// runs started from the library without a file, and in summaries of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_sha256: Option<String>,
    /// The run ID (`{run}`): the same for every variant of one `fleetstorm run`.
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub interrupted: bool,
    /// False while the run goes on (the summary is rewritten every interval), true once it
    /// wrote its final summary: a folder whose summary says false is a run that was killed (or
    /// is still running). Summaries of older versions, written only at the end, read as true.
    #[serde(default = "complete_when_absent")]
    pub complete: bool,
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
    /// Pauses and arrival-rate multiplier changes made from the dashboard during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_changes: Vec<RateChange>,
    /// The highest offered rate judged sustainable (throttle-limit finder), when the schedule
    /// has rate levels to judge (more than one: a step or ramp probe).
    #[serde(default)]
    pub sustainable_rate_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Which shard of a split run this is (`run --shard I/N`, `--shards N`, `--start-at`);
    /// absent for an unsharded run and in summaries of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardSummary>,
    /// `fleetstorm merge`: the folders this summary merges, in shard order (absent for a run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedFrom>,
    /// `fleetstorm merge --partial`: the shard indexes of the job that were not merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards_missing: Vec<u64>,
    /// Written only: the mock's report is for people and scripts, no command reads it back.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockReport>,
    #[serde(skip)]
    pub out_dir: PathBuf,
}

/// `shard` in summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// 0-based index of this shard, < `count`.
    pub index: u64,
    pub count: u64,
    /// `--start-at` (RFC 3339, UTC): the instant the schedule's time 0 was set to, and the run's
    /// time origin (`started_at`); null when not given.
    #[serde(default)]
    pub start_at: Option<String>,
    /// How late this shard was ready after `start_at` (0 when it waited for it): its schedule
    /// was not shifted, so arrivals due before then started at once.
    #[serde(default)]
    pub start_lag_s: f64,
}

/// One folder a merged summary was made from (`merged_from` in `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub dir: String,
    /// `None` for an unsharded run folder.
    pub shard: Option<ShardSummary>,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub complete: bool,
}

fn complete_when_absent() -> bool {
    true
}

impl Summary {
    pub fn thresholds_ok(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }

    /// What `report` and `compare` say of a run whose summary is not the final one (`label`
    /// names the run); `None` for a complete run.
    pub fn incomplete_note(&self, label: &str) -> Option<String> {
        (!self.complete).then(|| {
            format!(
                "{label}: INCOMPLETE run: it ended without writing its final summary (killed, or still running); its figures are as of {:.0} s into the run",
                self.duration_s
            )
        })
    }
}
