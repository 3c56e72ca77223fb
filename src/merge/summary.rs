//! The merged `summary.json`: counts summed, the shards' rate levels added, and every derived
//! figure (stage figures from the merged histograms, rates, rate levels judged, thresholds)
//! computed by the run's own derivation, [`crate::results::summary::derive`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::MergeError;
use super::hlog::{Buckets, totals};
use super::inputs::{Input, Plan};
use crate::metrics::{Analysis, LevelCounts, STAGE_NAMES, Threshold};
use crate::results::summary::{Counted, Measured, derive};
use crate::results::{DeviceCounts, ResultsError, Scheduler, Summary};

/// What the merge needs of `scenario.toml`.
#[derive(Deserialize, Default)]
struct ScenarioPart {
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default)]
    analysis: Option<Analysis>,
}

/// The thresholds and rate-level analysis of the first folder's `scenario.toml`; without one,
/// the thresholds its summary evaluated and the default analysis. A threshold that does not
/// parse is an error naming the file it came from.
fn scenario_part(inputs: &[Input]) -> Result<(Vec<Threshold>, Analysis), MergeError> {
    let (part, path) = match inputs.iter().find(|i| i.run.scenario.is_some()) {
        None => {
            let thresholds = inputs[0].run.summary.thresholds.iter();
            let part = ScenarioPart {
                thresholds: thresholds.map(|t| t.expr.clone()).collect(),
                analysis: None,
            };
            (part, inputs[0].dir().join("summary.json"))
        }
        Some(input) => {
            let path = input.dir().join("scenario.toml");
            let text = input.run.scenario.as_deref().unwrap_or_default();
            let part = toml::from_str(text).map_err(|e| ResultsError::Invalid {
                path: path.clone(),
                detail: crate::toml_error_message(text, &e),
            })?;
            (part, path)
        }
    };
    let thresholds = crate::scenario::parse_thresholds(&part.thresholds)
        .map_err(|detail| ResultsError::Invalid { path, detail })?;
    Ok((thresholds, part.analysis.unwrap_or_default()))
}

/// One value when every folder agrees, else them all joined.
fn common(values: impl Iterator<Item = String>, separator: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    for v in values {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(separator)
}

/// The rate levels of the shards added per level. Every shard counts its arrivals by the job's
/// rate at their intended start (a shard runs the unsharded schedule, taking every N-th
/// arrival), so the shards' levels are the job's.
fn levels(inputs: &[Input]) -> LevelCounts {
    let mut levels = LevelCounts::default();
    let shard_levels = inputs
        .iter()
        .filter_map(|i| i.run.summary.throttle.as_ref())
        .flat_map(|th| &th.levels);
    for l in shard_levels {
        levels.add(l.target_per_s, l.offered, l.completed, l.throttled);
    }
    levels
}

/// The shards' amplification counts added: sums, and the largest of the per-device maxima (a
/// device runs in one shard).
fn counted(inputs: &[Input]) -> Counted {
    let mut counted = Counted::default();
    for input in inputs {
        counted.add(&Counted::of(&input.run.summary));
    }
    counted
}

/// The merged summary of `inputs` (checked), written to `out` later.
pub(super) fn build(
    inputs: &[Input],
    plan: &Plan,
    buckets: &Buckets,
    out: &Path,
) -> Result<Summary, MergeError> {
    let first = &inputs[0].run.summary;
    let sum = |f: fn(&DeviceCounts) -> u64| -> u64 {
        inputs.iter().map(|i| f(&i.run.summary.devices)).sum()
    };
    let devices = DeviceCounts {
        planned: sum(|d| d.planned),
        started: sum(|d| d.started),
        provisioned: sum(|d| d.provisioned),
        failed: sum(|d| d.failed),
        dropped: sum(|d| d.dropped),
    };
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for input in inputs {
        for (reason, n) in &input.run.summary.failures {
            *failures.entry(reason.clone()).or_default() += n;
        }
    }
    let histograms = totals(buckets);
    let mut names: Vec<String> = STAGE_NAMES.iter().map(|s| s.to_string()).collect();
    for tag in histograms.keys() {
        let stage = tag.strip_suffix(".service").unwrap_or(tag);
        if !names.iter().any(|n| n == stage) {
            names.push(stage.to_string());
        }
    }

    let end_of = |i: &Input| i.offset_s + i.run.summary.duration_s;
    let duration_s = inputs.iter().map(end_of).fold(0.0, f64::max);
    // Each shard's provisioning window runs from its first arrival, due at its time origin
    // (within one inter-arrival time); the union runs from the earliest to the latest end.
    let provisioning: Vec<&Input> = inputs
        .iter()
        .filter(|i| i.run.summary.devices.provisioned > 0)
        .collect();
    let window_s = match (
        provisioning.iter().map(|i| i.offset_s).reduce(f64::min),
        provisioning
            .iter()
            .map(|i| i.offset_s + i.run.summary.throughput.provisioning_window_s)
            .reduce(f64::max),
    ) {
        (Some(start), Some(end)) => Some(end - start),
        _ => None,
    };
    let (thresholds, analysis) = scenario_part(inputs)?;
    let levels = levels(inputs);
    let measured = Measured {
        devices: &devices,
        failures: &failures,
        stages: names
            .into_iter()
            .map(|name| {
                let service = histograms.get(&format!("{name}.service"));
                (name.clone(), histograms.get(&name), service)
            })
            .collect(),
        duration_s,
        window_s,
        levels: &levels,
        counted: counted(inputs),
        on_aws: inputs
            .iter()
            .any(|i| crate::guard::is_aws_endpoint(&i.run.summary.endpoint)),
    };
    let d = derive(&measured, &thresholds, &analysis);
    let mut rate_changes: Vec<crate::results::RateChange> = inputs
        .iter()
        .flat_map(|i| {
            i.run
                .summary
                .rate_changes
                .iter()
                .map(|c| crate::results::RateChange {
                    elapsed_s: i.offset_s + c.elapsed_s,
                    ..c.clone()
                })
        })
        .collect();
    rate_changes.sort_by(|a, b| a.elapsed_s.total_cmp(&b.elapsed_s));

    Ok(Summary {
        scenario: first.scenario.clone(),
        scenario_sha256: first.scenario_sha256.clone(),
        run_id: common(inputs.iter().map(|i| i.run.summary.run_id.clone()), "+"),
        started_at: humantime::format_rfc3339_millis(plan.origin).to_string(),
        duration_s,
        endpoint: common(inputs.iter().map(|i| i.run.summary.endpoint.clone()), ", "),
        interrupted: inputs.iter().any(|i| i.run.summary.interrupted),
        complete: inputs.iter().all(|i| i.run.summary.complete),
        devices,
        throughput: d.throughput,
        success_rate: d.success_rate,
        stages: d.stages,
        certificates: d.certificates,
        attempts: d.attempts,
        connects: d.connects,
        cost: d.cost,
        failures,
        thresholds: d.thresholds,
        scheduler: Scheduler {
            max_start_lag_ms: inputs
                .iter()
                .map(|i| i.run.summary.scheduler.max_start_lag_ms)
                .fold(0.0, f64::max),
        },
        rate_changes,
        sustainable_rate_per_s: d.sustainable_rate_per_s,
        throttle: d.throttle,
        variant: first.variant.clone(),
        merged_from: inputs.iter().map(Input::merged_from).collect(),
        shards_missing: plan.missing.clone(),
        // The merge is the whole job, not one shard of it.
        shard: None,
        mock: None,
        out_dir: out.to_path_buf(),
    })
}
