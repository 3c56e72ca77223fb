//! The merged `summary.json`: counts summed, stage figures from the merged histograms, rates,
//! rate levels and thresholds recomputed with the run's own code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::MergeError;
use super::hlog::{Buckets, totals};
use super::inputs::{Input, Plan};
use crate::metrics::{
    Analysis, Percentiles, RateLevel, STAGE_NAMES, StageSummary, Threshold, ThresholdInputs,
    ThrottleAnalysis,
};
use crate::results::{DeviceCounts, ResultsError, Scheduler, Summary, Throughput};

/// What the merge needs of `scenario.toml`.
#[derive(Deserialize, Default)]
struct ScenarioPart {
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default)]
    analysis: Option<Analysis>,
}

/// The thresholds and rate-level analysis of the first folder's `scenario.toml`; without one,
/// the thresholds its summary evaluated and the default analysis.
fn scenario_part(inputs: &[Input]) -> Result<ScenarioPart, MergeError> {
    let Some(input) = inputs.iter().find(|i| i.run.scenario.is_some()) else {
        return Ok(ScenarioPart {
            thresholds: inputs[0]
                .run
                .summary
                .thresholds
                .iter()
                .map(|t| t.expr.clone())
                .collect(),
            analysis: None,
        });
    };
    let text = input.run.scenario.as_deref().unwrap_or_default();
    toml::from_str(text).map_err(|e| {
        ResultsError::Invalid {
            path: input.dir().join("scenario.toml"),
            detail: crate::toml_error_message(text, &e),
        }
        .into()
    })
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

/// The rate levels of the shards summed per level and judged again. Every shard judges its
/// arrivals by the job's rate at their intended start (a shard runs the unsharded schedule,
/// taking every N-th arrival), so the shards' levels are the job's.
fn throttle(
    inputs: &[Input],
    analysis: &Analysis,
    failures: &BTreeMap<String, u64>,
) -> Option<ThrottleAnalysis> {
    let mut levels: BTreeMap<u64, (f64, u64, u64, u64)> = BTreeMap::new();
    let mut any = false;
    for input in inputs {
        let Some(th) = &input.run.summary.throttle else {
            continue;
        };
        any = true;
        for l in &th.levels {
            let rate = (l.target_per_s * 1000.0).round() / 1000.0 + 0.0;
            let level = levels.entry(rate.to_bits()).or_insert((rate, 0, 0, 0));
            level.1 += l.offered;
            level.2 += l.completed;
            level.3 += l.throttled;
        }
    }
    any.then(|| {
        let judged = levels
            .into_values()
            .map(|(rate, offered, completed, throttled)| {
                RateLevel::judge(analysis, rate, offered, completed, throttled)
            })
            .collect();
        ThrottleAnalysis::new(judged, failures)
    })
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
    let of = |tag: &str| histograms.get(tag).map(Percentiles::of).unwrap_or_default();
    let stages: BTreeMap<String, StageSummary> = names
        .into_iter()
        .map(|name| {
            let summary = StageSummary {
                latency: of(&name),
                service: of(&format!("{name}.service")),
            };
            (name, summary)
        })
        .collect();

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
        (Some(start), Some(end)) => end - start,
        _ => duration_s,
    };
    let provisioned = devices.provisioned as f64;
    let finished = devices.provisioned + devices.failed + devices.dropped;
    let success_rate = if finished == 0 {
        0.0
    } else {
        100.0 * provisioned / finished as f64
    };
    let throughput = Throughput {
        provisioned_per_s: provisioned / window_s.max(1e-9),
        provisioning_window_s: window_s,
        provisioned_per_s_whole_run: provisioned / duration_s.max(1e-9),
    };

    let scenario = scenario_part(inputs)?;
    let inputs_for_thresholds = ThresholdInputs {
        stages: &stages,
        success_rate_percent: success_rate,
        throughput_per_s: throughput.provisioned_per_s,
        failed: devices.failed,
        dropped: devices.dropped,
    };
    let thresholds = scenario
        .thresholds
        .iter()
        .filter_map(|e| Threshold::parse(e).ok())
        .map(|th| th.evaluate(&inputs_for_thresholds))
        .collect();
    let analysis = scenario.analysis.unwrap_or_default();
    let throttle = throttle(inputs, &analysis, &failures);
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
        throughput,
        success_rate,
        stages,
        failures,
        thresholds,
        scheduler: Scheduler {
            max_start_lag_ms: inputs
                .iter()
                .map(|i| i.run.summary.scheduler.max_start_lag_ms)
                .fold(0.0, f64::max),
        },
        rate_changes,
        sustainable_rate_per_s: throttle
            .as_ref()
            .and_then(ThrottleAnalysis::sustainable_rate),
        throttle,
        variant: first.variant.clone(),
        merged_from: inputs.iter().map(Input::merged_from).collect(),
        shards_missing: plan.missing.clone(),
        // The merge is the whole job, not one shard of it.
        shard: None,
        mock: None,
        out_dir: out.to_path_buf(),
    })
}
