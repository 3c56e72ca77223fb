//! Measurement: per-stage HDR histograms (latency from the intended start, and service time),
//! per-interval and cumulative; outcome counters; failure taxonomy; thresholds.
//!
//! Devices never touch these structures: each device sends one record when it ends, and the
//! single aggregator task owns every histogram, so there is no lock on the hot path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stage::{Stage, StageTime};

mod throttle;
pub use throttle::{Analysis, LevelCounts, RateLevel, ThrottleAnalysis, throttle_analysis};

/// Stage names in output order, with the whole flow last.
pub const STAGE_NAMES: [&str; 7] = [
    "connect_claim",
    "subscribe",
    "create_certificate",
    "register_thing",
    "connect_device",
    "telemetry",
    "total",
];

pub fn stage_index(stage: Stage) -> usize {
    stage as usize
}
pub const TOTAL: usize = 6;

/// A histogram of microseconds, 3 significant digits, auto-resizing.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| Histogram::new(2).expect("sigfig 2"));
    h.auto(true);
    h
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = d.as_micros().clamp(1, u128::from(u64::MAX >> 4)) as u64;
    // `record` grows an auto-resizing histogram; `saturating_record` would clamp instead.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// One device's samples, as [`StageSet::record_device`] records them: (stage index in
/// [`STAGE_NAMES`], service time, latency). A stage's latency runs from the device's intended
/// start, or from when it was due for a stage with its own schedule; `total` last, when given.
pub fn device_samples(
    intended: Instant,
    stages: &[StageTime],
    total: Option<(Duration, Duration)>,
) -> impl Iterator<Item = (usize, Duration, Duration)> + '_ {
    stages
        .iter()
        .map(move |st| {
            let from = st.due.unwrap_or(intended);
            let latency = st.ended.saturating_duration_since(from);
            (stage_index(st.stage), st.service, latency)
        })
        .chain(total.map(|(service, latency)| (TOTAL, service, latency)))
}

/// Latency (from the intended start) and service time of one stage.
#[derive(Clone)]
pub struct StageHistograms {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
}

impl Default for StageHistograms {
    fn default() -> Self {
        StageHistograms {
            latency: histogram(),
            service: histogram(),
        }
    }
}

/// All stages, and the provisioning window they were recorded in.
#[derive(Clone, Default)]
pub struct StageSet {
    pub stages: [StageHistograms; 7],
    /// The earliest intended start of a device recorded.
    first_intended: Option<Instant>,
    /// The latest instant a device recorded was provisioned.
    last_provisioned: Option<Instant>,
}

impl StageSet {
    /// Record one device's stages. A stage's latency runs from the device's *intended* start
    /// (its scheduled arrival) to the end of the stage, so time the harness lost starting the
    /// device late, earlier stages and retries all count (no coordinated omission); a stage
    /// with its own schedule (a telemetry publish) runs from when it was due instead, so a late
    /// publish counts its lateness. Its service time is the stage alone. `total` is (service, latency) of the whole provisioning.
    pub fn record_device(
        &mut self,
        intended: Instant,
        stages: &[StageTime],
        total: Option<(Duration, Duration)>,
    ) {
        for (i, service, latency) in device_samples(intended, stages, total) {
            let h = &mut self.stages[i];
            record(&mut h.service, service);
            record(&mut h.latency, latency);
        }
        self.first_intended = Some(self.first_intended.map_or(intended, |t| t.min(intended)));
        if let Some((_, latency)) = total {
            let provisioned = intended + latency;
            self.last_provisioned = Some(
                self.last_provisioned
                    .map_or(provisioned, |t| t.max(provisioned)),
            );
        }
    }

    pub fn add(&mut self, other: &StageSet) {
        for (a, b) in self.stages.iter_mut().zip(&other.stages) {
            let _ = a.latency.add(&b.latency);
            let _ = a.service.add(&b.service);
        }
        self.first_intended = match (self.first_intended, other.first_intended) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_provisioned = self.last_provisioned.max(other.last_provisioned);
    }

    pub fn reset(&mut self) {
        for s in &mut self.stages {
            s.latency.reset();
            s.service.reset();
        }
        self.first_intended = None;
        self.last_provisioned = None;
    }

    /// The provisioning window: from the first intended start to the last device provisioned
    /// (None until a device was provisioned).
    pub fn provisioning_window(&self) -> Option<Duration> {
        Some(
            self.last_provisioned?
                .saturating_duration_since(self.first_intended?),
        )
    }
}

/// Percentile summary of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default)]
pub struct Percentiles {
    /// Measurements (devices that completed the stage).
    pub count: u64,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, in milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile, in milliseconds.
    pub p999_ms: f64,
    /// Maximum, in milliseconds.
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    pub fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "count" => self.count as f64,
            "mean" | "avg" => self.mean_ms,
            "p50" | "med" => self.p50_ms,
            "p90" => self.p90_ms,
            "p99" => self.p99_ms,
            "p999" | "p99.9" => self.p999_ms,
            "max" => self.max_ms,
            _ => return None,
        })
    }
}

/// A stage in `summary.json`: intended-start latency, with service time beside it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StageSummary {
    /// From the device's intended start (its stage's latency as a device on schedule sees it).
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Service time: from when the stage actually began.
    #[serde(default)]
    pub service: Percentiles,
}

/// A k6-style threshold: `<metric> <op> <value>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub expr: String,
    metric: Metric,
    op: Op,
    value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    Stage { stage: String, stat: String },
    SuccessRate,
    Throughput,
    Failed,
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// What thresholds are evaluated against.
pub struct ThresholdInputs<'a> {
    pub stages: &'a BTreeMap<String, StageSummary>,
    pub success_rate_percent: f64,
    pub throughput_per_s: f64,
    pub failed: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ThresholdResult {
    /// The threshold as written, e.g. `register_thing.p99 < 800ms`.
    pub expr: String,
    /// Whether it held.
    pub ok: bool,
    /// The measured value it was compared with (null when nothing was measured).
    pub value: Option<f64>,
}

impl Threshold {
    pub fn parse(expr: &str) -> Result<Threshold, String> {
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];
        let (lhs, op, rhs) = ops
            .iter()
            .find_map(|(s, op)| expr.split_once(s).map(|(l, r)| (l.trim(), *op, r.trim())))
            .ok_or_else(|| {
                format!("{expr:?}: expected `<metric> <op> <value>` with one of < <= > >=")
            })?;
        let metric = match lhs {
            "success_rate" => Metric::SuccessRate,
            "throughput" => Metric::Throughput,
            "failed" => Metric::Failed,
            "dropped" => Metric::Dropped,
            other => {
                let (stage, stat) = other.split_once('.').ok_or_else(|| {
                    format!("{expr:?}: unknown metric {other:?} (use <stage>.<stat>, success_rate, throughput, failed or dropped)")
                })?;
                if !STAGE_NAMES.contains(&stage) {
                    return Err(format!(
                        "{expr:?}: unknown stage {stage:?} (one of {})",
                        STAGE_NAMES.join(", ")
                    ));
                }
                if Percentiles::default().get(stat).is_none() {
                    return Err(format!(
                        "{expr:?}: unknown statistic {stat:?} (count, mean, p50, p90, p99, p999, max)"
                    ));
                }
                Metric::Stage {
                    stage: stage.to_string(),
                    stat: stat.to_string(),
                }
            }
        };
        let value = parse_value(&metric, rhs).map_err(|e| format!("{expr:?}: {e}"))?;
        Ok(Threshold {
            expr: expr.to_string(),
            metric,
            op,
            value,
        })
    }

    pub fn evaluate(&self, inputs: &ThresholdInputs<'_>) -> ThresholdResult {
        let value = match &self.metric {
            Metric::Stage { stage, stat } => inputs
                .stages
                .get(stage)
                .and_then(|s| (s.latency.count > 0).then(|| s.latency.get(stat)).flatten()),
            Metric::SuccessRate => Some(inputs.success_rate_percent),
            Metric::Throughput => Some(inputs.throughput_per_s),
            Metric::Failed => Some(inputs.failed as f64),
            Metric::Dropped => Some(inputs.dropped as f64),
        };
        let ok = value.is_some_and(|v| match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
        });
        ThresholdResult {
            expr: self.expr.clone(),
            ok,
            value,
        }
    }
}

fn parse_value(metric: &Metric, raw: &str) -> Result<f64, String> {
    let number = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{raw:?} is not a number"))
    };
    match metric {
        Metric::Stage { stat, .. } if stat == "count" => number(raw),
        Metric::Stage { .. } => {
            // Durations: ms by default; us, ms, s accepted.
            for (suffix, factor) in [("us", 0.001), ("µs", 0.001), ("ms", 1.0), ("s", 1000.0)] {
                if let Some(n) = raw.strip_suffix(suffix) {
                    return Ok(number(n)? * factor);
                }
            }
            number(raw)
        }
        Metric::SuccessRate => number(raw.strip_suffix('%').unwrap_or(raw)),
        Metric::Throughput => number(raw.strip_suffix("/s").unwrap_or(raw)),
        Metric::Failed | Metric::Dropped => number(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_runs_from_the_intended_start_and_service_time_is_the_stage_alone() {
        let mut set = StageSet::default();
        let intended = Instant::now();
        let stage = StageTime {
            stage: Stage::RegisterThing,
            service: Duration::from_millis(20),
            ended: intended + Duration::from_millis(120),
            due: None,
        };
        set.record_device(
            intended,
            &[stage],
            Some((Duration::from_millis(50), Duration::from_millis(150))),
        );
        let reg = &set.stages[stage_index(Stage::RegisterThing)];
        let p = Percentiles::of(&reg.service);
        assert!((p.p50_ms - 20.0).abs() < 0.1, "{p:?}");
        assert!((Percentiles::of(&reg.latency).p50_ms - 120.0).abs() < 0.2);
        assert!((Percentiles::of(&set.stages[TOTAL].latency).max_ms - 150.0).abs() < 0.2);
    }

    #[test]
    fn thresholds_parse_and_evaluate() {
        let mut stages = BTreeMap::new();
        let mut reg = StageSummary::default();
        reg.latency.count = 10;
        reg.latency.p99_ms = 700.0;
        stages.insert("register_thing".to_string(), reg);
        let inputs = ThresholdInputs {
            stages: &stages,
            success_rate_percent: 99.5,
            throughput_per_s: 9.5,
            failed: 1,
            dropped: 0,
        };
        let eval = |e: &str| Threshold::parse(e).unwrap().evaluate(&inputs);
        assert!(eval("register_thing.p99 < 800ms").ok);
        assert!(!eval("register_thing.p99 < 0.5s").ok);
        assert!(eval("success_rate > 99%").ok);
        assert!(eval("throughput > 9/s").ok);
        assert!(!eval("failed < 1").ok);
        // No samples: the threshold fails rather than passing vacuously.
        let r = eval("total.p50 < 1s");
        assert!(!r.ok && r.value.is_none());
        assert!(Threshold::parse("register_thing.p42 < 1s").is_err());
        assert!(Threshold::parse("lunch.p99 < 1s").is_err());
        assert!(Threshold::parse("success_rate 99").is_err());
        assert!(Threshold::parse("throughput > fast").is_err());
    }
}
