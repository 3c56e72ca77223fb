//! `summary.json`: the one model of a run's summary, written by `output` and read by `results`,
//! and [`derive`], the one derivation of its figures (a run's writer and `merge` both call it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::metrics::{
    Analysis, LevelCounts, Percentiles, StageSummary, Threshold, ThresholdInputs, ThresholdResult,
    ThrottleAnalysis, throttle_analysis,
};
use crate::mock::MockReport;
use crate::results::cost::{self, Cost, Prices, Usage};

/// One change made during a run, as recorded in `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RateChange {
    /// Seconds since the start of the run (real time).
    pub elapsed_s: f64,
    /// The arrival-rate multiplier from then on.
    pub multiplier: f64,
    /// Whether arrivals were paused from then on.
    pub paused: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct DeviceCounts {
    /// Devices planned (`devices.count`; a shard's own share of them).
    pub planned: u64,
    /// Devices whose provisioning flow started.
    pub started: u64,
    /// Devices that completed the flow (registered, and connected with their own certificate).
    pub provisioned: u64,
    /// Devices that failed for good (after their retries); `failures` says why.
    pub failed: u64,
    /// Arrivals not started because `max_in_flight` devices were already in flight.
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Scheduler {
    /// The latest any device started after its intended start: above a few ms, the load
    /// generator itself could not keep up.
    pub max_start_lag_ms: f64,
}

/// `certificates` in summary.json: what the devices were issued and registered (counted on the
/// device side, so true against AWS too), summed over the whole-flow attempts of the devices
/// that finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Certificates {
    /// Accepted CreateKeysAndCertificate / CreateCertificateFromCsr responses, every attempt.
    pub issued: u64,
    /// Accepted RegisterThing responses: certificates this run registered, and learnt it had.
    pub registered: u64,
    /// `issued` ÷ `devices.provisioned` (0 when none was provisioned): 1.00 for a client that
    /// never gives up on a certificate it was issued.
    pub per_provisioned: f64,
    /// Certificates issued that this run never registered (`issued` − `registered`): left
    /// PENDING_ACTIVATION in the account, or registered by AWS after the device gave up.
    pub orphaned: u64,
}

/// `attempts` in summary.json: whole-flow attempts per device that finished (every started
/// device, at the end of a run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Attempts {
    /// Whole-flow attempts of the devices that finished, retries included.
    pub total: u64,
    /// `total` ÷ devices that finished (provisioned or failed); 0 when none did.
    pub mean: f64,
    /// The most attempts one device made.
    pub max: u64,
}

/// `connects` in summary.json: MQTT connects the devices attempted, claim and own certificate,
/// connect retries included (device side).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Connects {
    /// Connects attempted, every device and attempt.
    pub total: u64,
    /// `total` ÷ `devices.provisioned` (0 when none was provisioned): 2.00 for a flow that
    /// connects once with the claim and once with its own certificate.
    pub per_provisioned: f64,
    /// The most connects one client ID made in any one-second window (a device's claim and own
    /// client IDs count apart): above 1, some client ID exceeded AWS's limit of one connect
    /// per second per client ID.
    pub max_per_client_id_per_s: u64,
}

/// What the devices did that AWS counts, summed (and the per-device maxima) over the devices
/// that finished: what [`derive`] makes `certificates`, `attempts`, `connects` and `cost` of. A
/// run adds its devices' tallies; `merge` adds its shards' ([`Counted::of`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counted {
    pub attempts: u64,
    pub attempts_max: u64,
    pub connects: u64,
    pub certificates_issued: u64,
    pub registered: u64,
    pub max_connects_per_s: u64,
    /// Metered MQTT messages (5 KB units).
    pub messages: u64,
    /// Connection-minutes, each connection rounded up to a minute.
    pub connection_minutes: u64,
}

impl Counted {
    /// Add one device's tally (summed over its attempts).
    pub fn device(&mut self, t: &crate::device::Tally) {
        self.add(&Counted {
            attempts: t.attempts.into(),
            attempts_max: t.attempts.into(),
            connects: t.connects.into(),
            certificates_issued: t.certificates_issued.into(),
            registered: t.registered.into(),
            max_connects_per_s: t.max_connects_per_s.into(),
            messages: t.messages.into(),
            connection_minutes: t.connection_minutes.into(),
        });
    }

    /// Add another part's counts: sums, and the larger of the maxima.
    pub fn add(&mut self, o: &Counted) {
        self.attempts += o.attempts;
        self.attempts_max = self.attempts_max.max(o.attempts_max);
        self.connects += o.connects;
        self.certificates_issued += o.certificates_issued;
        self.registered += o.registered;
        self.max_connects_per_s = self.max_connects_per_s.max(o.max_connects_per_s);
        self.messages += o.messages;
        self.connection_minutes += o.connection_minutes;
    }

    /// The counts a summary's figures were derived from.
    pub fn of(s: &Summary) -> Counted {
        Counted {
            attempts: s.attempts.total,
            attempts_max: s.attempts.max,
            connects: s.connects.total,
            certificates_issued: s.certificates.issued,
            registered: s.certificates.registered,
            max_connects_per_s: s.connects.max_per_client_id_per_s,
            messages: s.cost.messaging.quantity,
            connection_minutes: s.cost.connectivity.quantity,
        }
    }

    /// What of these counts AWS IoT Core prices.
    pub fn usage(&self) -> Usage {
        Usage {
            connection_minutes: self.connection_minutes,
            messages: self.messages,
            registrations: self.registered,
        }
    }
}

/// `summary.json`, as a run writes it and as `report` and `compare` read it. Unknown fields are
/// ignored and optional ones may be missing, so summaries of older and newer versions read alike.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    /// The scenario's name (its `name`, or the file stem).
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
    /// When the run's clock started (RFC 3339, UTC, milliseconds).
    #[serde(default)]
    pub started_at: String,
    /// The run's length in seconds (so far, while it runs).
    #[serde(default)]
    pub duration_s: f64,
    /// The endpoint the devices connected to (HOST:PORT).
    #[serde(default)]
    pub endpoint: String,
    /// True when a signal (Ctrl-C, SIGTERM, SIGHUP) stopped the run before its schedule ended.
    #[serde(default)]
    pub interrupted: bool,
    /// False while the run goes on (the summary is rewritten every interval), true once it
    /// wrote its final summary: a folder whose summary says false is a run that was killed (or
    /// is still running). Summaries of older versions, written only at the end, read as true.
    #[serde(default = "complete_when_absent")]
    pub complete: bool,
    /// Devices by outcome.
    pub devices: DeviceCounts,
    /// Devices provisioned per second.
    pub throughput: Throughput,
    /// Percent of finished devices (provisioned, failed or dropped) that were provisioned.
    pub success_rate: f64,
    /// Latency per flow stage, by stage name (`connect_claim`, `subscribe`,
    /// `create_certificate`, `register_thing`, ...).
    pub stages: BTreeMap<String, StageSummary>,
    /// Certificates issued and registered, per provisioned device, orphaned (device side).
    #[serde(default)]
    pub certificates: Certificates,
    /// Whole-flow attempts per device.
    #[serde(default)]
    pub attempts: Attempts,
    /// MQTT connects, per provisioned device, and the highest rate of one client ID.
    #[serde(default)]
    pub connects: Connects,
    /// What the run's usage costs on AWS IoT Core at the shipped price table's prices
    /// (`pricing/aws-iot-core.toml`), per priced item; labelled `would cost on AWS` when the run
    /// did not go to AWS IoT.
    #[serde(default)]
    pub cost: Cost,
    /// Failed devices by failure label (e.g. `throttled.register_thing`, `timeout.connect_claim`).
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    /// The scenario's `thresholds`, each evaluated.
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// How closely devices started on schedule.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Pauses and arrival-rate multiplier changes made from the dashboard during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_changes: Vec<RateChange>,
    /// The highest offered rate judged sustainable (throttle-limit finder), when the schedule
    /// has rate levels to judge (more than one: a step or ramp probe).
    #[serde(default)]
    pub sustainable_rate_per_s: Option<f64>,
    /// The throttle-limit finder's judgement of each offered-rate level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleAnalysis>,
    /// The variant's name, for a run of a scenario's `[[variants]]`.
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
    /// The embedded mock's report (runs against the embedded mock only).
    // Written only: the report is for people and scripts, no command reads it back.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockReport>,
    #[serde(skip)]
    pub out_dir: PathBuf,
}

/// `shard` in summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShardSummary {
    /// 0-based index of this shard, < `count`.
    pub index: u64,
    /// Shards in the job (N of `--shard I/N`).
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MergedFrom {
    /// The shard's results folder, as given to `merge`.
    pub dir: String,
    /// null for an unsharded run folder.
    pub shard: Option<ShardSummary>,
    /// The shard's run ID.
    #[serde(default)]
    pub run_id: String,
    /// The shard's `started_at`.
    #[serde(default)]
    pub started_at: String,
    /// The shard's `complete`.
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

/// A stage's name with its latency and service-time histograms (None: none recorded).
pub type MeasuredStage<'a> = (
    String,
    Option<&'a Histogram<u64>>,
    Option<&'a Histogram<u64>>,
);

/// What a summary's derived figures are computed from: the counts and histograms of a run, or
/// of the shards a merge adds up.
pub struct Measured<'a> {
    pub devices: &'a DeviceCounts,
    /// Failures by label.
    pub failures: &'a BTreeMap<String, u64>,
    /// Each stage: its name and its latency and service-time histograms (None: none recorded).
    pub stages: Vec<MeasuredStage<'a>>,
    pub duration_s: f64,
    /// The provisioning window (first intended start to last device provisioned); None when
    /// no device was provisioned, and the whole run counts instead.
    pub window_s: Option<f64>,
    /// Arrivals by offered-rate level.
    pub levels: &'a LevelCounts,
    /// What the devices that finished did that AWS counts.
    pub counted: Counted,
    /// The run went to an AWS IoT endpoint (its cost is billed, not only what it would cost).
    pub on_aws: bool,
}

/// A summary's derived figures.
#[derive(Debug, Clone)]
pub struct Derived {
    pub stages: BTreeMap<String, StageSummary>,
    pub success_rate: f64,
    pub throughput: Throughput,
    pub thresholds: Vec<ThresholdResult>,
    pub throttle: Option<ThrottleAnalysis>,
    pub sustainable_rate_per_s: Option<f64>,
    pub certificates: Certificates,
    pub attempts: Attempts,
    pub connects: Connects,
    pub cost: Cost,
}

/// `n` ÷ `of`, 0 when `of` is 0.
fn ratio(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The amplification figures of `c`, for `d`'s devices.
fn amplification(c: &Counted, d: &DeviceCounts) -> (Certificates, Attempts, Connects) {
    let certificates = Certificates {
        issued: c.certificates_issued,
        registered: c.registered,
        per_provisioned: ratio(c.certificates_issued, d.provisioned),
        orphaned: c.certificates_issued.saturating_sub(c.registered),
    };
    let attempts = Attempts {
        total: c.attempts,
        mean: ratio(c.attempts, d.provisioned + d.failed),
        max: c.attempts_max,
    };
    let connects = Connects {
        total: c.connects,
        per_provisioned: ratio(c.connects, d.provisioned),
        max_per_client_id_per_s: c.max_connects_per_s,
    };
    (certificates, attempts, connects)
}

/// Every derived figure of a summary: per-stage percentiles, the success rate (of the devices
/// that finished or were dropped), throughput over the provisioning window and over the whole
/// run, `thresholds` judged, the throttle-limit analysis of the rate levels, and the
/// amplification figures (`certificates`, `attempts`, `connects`), and the cost of what the
/// devices did at the shipped prices.
pub fn derive(m: &Measured<'_>, thresholds: &[Threshold], analysis: &Analysis) -> Derived {
    let of = |h: Option<&Histogram<u64>>| h.map(Percentiles::of).unwrap_or_default();
    let stages: BTreeMap<String, StageSummary> = m
        .stages
        .iter()
        .map(|(name, latency, service)| {
            let summary = StageSummary {
                latency: of(*latency),
                service: of(*service),
            };
            (name.clone(), summary)
        })
        .collect();
    let d = m.devices;
    let provisioned = d.provisioned as f64;
    let finished = d.provisioned + d.failed + d.dropped;
    let success_rate = if finished == 0 {
        0.0
    } else {
        100.0 * provisioned / finished as f64
    };
    let window_s = m.window_s.unwrap_or(m.duration_s);
    let throughput = Throughput {
        provisioned_per_s: provisioned / window_s.max(1e-9),
        provisioning_window_s: window_s,
        provisioned_per_s_whole_run: provisioned / m.duration_s.max(1e-9),
    };
    let inputs = ThresholdInputs {
        stages: &stages,
        success_rate_percent: success_rate,
        throughput_per_s: throughput.provisioned_per_s,
        failed: d.failed,
        dropped: d.dropped,
    };
    let thresholds = thresholds.iter().map(|t| t.evaluate(&inputs)).collect();
    let throttle = throttle_analysis(analysis, m.levels, m.failures);
    let (certificates, attempts, connects) = amplification(&m.counted, d);
    Derived {
        cost: cost::price(&m.counted.usage(), Prices::shipped(), m.on_aws),
        certificates,
        attempts,
        connects,
        sustainable_rate_per_s: throttle
            .as_ref()
            .and_then(ThrottleAnalysis::sustainable_rate),
        throttle,
        stages,
        success_rate,
        throughput,
        thresholds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::FailureClass;

    fn devices(provisioned: u64, failed: u64, dropped: u64) -> DeviceCounts {
        DeviceCounts {
            planned: provisioned + failed + dropped,
            started: provisioned + failed,
            provisioned,
            failed,
            dropped,
        }
    }

    /// The figures of `devices` over `duration_s` (window `window_s`), without stages or levels.
    fn figures(d: &DeviceCounts, duration_s: f64, window_s: Option<f64>) -> Derived {
        let measured = Measured {
            devices: d,
            failures: &BTreeMap::new(),
            stages: Vec::new(),
            duration_s,
            window_s,
            levels: &LevelCounts::default(),
            counted: Counted::default(),
            on_aws: false,
        };
        derive(&measured, &[], &Analysis::default())
    }

    /// The figures of `d` when its devices did what `counted` says.
    fn amplified(d: &DeviceCounts, counted: Counted) -> Derived {
        let measured = Measured {
            devices: d,
            failures: &BTreeMap::new(),
            stages: Vec::new(),
            duration_s: 1.0,
            window_s: None,
            levels: &LevelCounts::default(),
            counted,
            on_aws: false,
        };
        derive(&measured, &[], &Analysis::default())
    }

    #[test]
    fn certificates_per_provisioned_and_orphaned_are_of_the_issued_ones() {
        // 261 provisioned of 300: 496 issued, 261 registered as far as the devices know.
        let counted = Counted {
            certificates_issued: 496,
            registered: 261,
            ..Counted::default()
        };
        let c = amplified(&devices(261, 39, 0), counted).certificates;
        assert_eq!((c.issued, c.registered, c.orphaned), (496, 261, 235));
        assert!((c.per_provisioned - 496.0 / 261.0).abs() < 1e-12);
        // None provisioned: no ratio; more registered than issued cannot go below 0.
        let none = Counted {
            certificates_issued: 3,
            registered: 4,
            ..Counted::default()
        };
        let c = amplified(&devices(0, 3, 0), none).certificates;
        assert_eq!((c.per_provisioned, c.orphaned), (0.0, 0));
    }

    #[test]
    fn attempts_mean_is_per_finished_device_and_max_is_one_devices() {
        let counted = Counted {
            attempts: 9,
            attempts_max: 3,
            ..Counted::default()
        };
        // 4 provisioned and 2 failed finished (the dropped arrival never started).
        let a = amplified(&devices(4, 2, 1), counted).attempts;
        assert_eq!((a.total, a.mean, a.max), (9, 1.5, 3));
        let a = amplified(&devices(0, 0, 0), Counted::default()).attempts;
        assert_eq!((a.mean, a.max), (0.0, 0));
    }

    #[test]
    fn connects_per_provisioned_and_the_highest_rate_of_one_client_id() {
        let counted = Counted {
            connects: 25,
            max_connects_per_s: 2,
            ..Counted::default()
        };
        let c = amplified(&devices(10, 1, 0), counted).connects;
        assert_eq!(
            (c.total, c.per_provisioned, c.max_per_client_id_per_s),
            (25, 2.5, 2)
        );
        assert_eq!(
            amplified(&devices(0, 1, 0), counted)
                .connects
                .per_provisioned,
            0.0
        );
    }

    #[test]
    fn counts_add_up_over_devices_and_parts_and_read_back_from_a_summary() {
        let mut a = Counted::default();
        for (attempts, connects, issued, registered, rate) in [(1, 2, 1, 1, 1), (3, 6, 3, 2, 2)] {
            a.device(&crate::device::Tally {
                attempts,
                connects,
                certificates_issued: issued,
                registered,
                max_connects_per_s: rate,
                messages: 9 * attempts,
                connection_minutes: 2 * attempts,
            });
        }
        let b = Counted {
            attempts: 1,
            attempts_max: 1,
            connects: 2,
            certificates_issued: 1,
            registered: 1,
            max_connects_per_s: 1,
            messages: 9,
            connection_minutes: 2,
        };
        a.add(&b);
        let want = Counted {
            attempts: 5,
            attempts_max: 3,
            connects: 10,
            certificates_issued: 5,
            registered: 4,
            max_connects_per_s: 2,
            messages: 45,
            connection_minutes: 10,
        };
        assert_eq!(a, want);
        // What a summary says is what it was derived from.
        let d = amplified(&devices(3, 0, 0), want);
        let mut s: Summary =
            serde_json::from_str(r#"{"devices":{},"throughput":{},"success_rate":0,"stages":{}}"#)
                .unwrap();
        (s.certificates, s.attempts, s.connects) = (d.certificates, d.attempts, d.connects);
        s.cost = d.cost;
        assert_eq!(Counted::of(&s), want);
    }

    #[test]
    fn the_cost_is_priced_from_the_counted_usage() {
        let counted = Counted {
            registered: 3,
            messages: 27,
            connection_minutes: 6,
            ..Counted::default()
        };
        let c = amplified(&devices(3, 0, 0), counted).cost;
        let p = Prices::shipped();
        assert_eq!((c.connectivity.quantity, c.messaging.quantity), (6, 27));
        let want = 6.0 * p.connectivity.per_million / 1e6 + 27.0 * p.messaging.per_million / 1e6;
        let registry = 3 * p.registry.per_registration.unwrap_or(0);
        let want = want + registry as f64 * p.registry.per_million / 1e6;
        assert!((c.total - want).abs() < 1e-15, "{c:?}");
        assert_eq!(c.label, "would cost on AWS");
    }

    #[test]
    fn the_success_rate_counts_failed_and_dropped_devices_and_is_0_with_none() {
        assert_eq!(figures(&devices(3, 0, 1), 1.0, None).success_rate, 75.0);
        assert_eq!(figures(&devices(1, 3, 0), 1.0, None).success_rate, 25.0);
        assert_eq!(figures(&devices(0, 0, 0), 1.0, None).success_rate, 0.0);
    }

    #[test]
    fn throughput_is_over_the_provisioning_window_and_the_whole_run() {
        let t = figures(&devices(40, 2, 0), 10.0, Some(4.0)).throughput;
        assert_eq!(
            (
                t.provisioned_per_s,
                t.provisioning_window_s,
                t.provisioned_per_s_whole_run
            ),
            (10.0, 4.0, 4.0)
        );
        // Nothing provisioned: no window, the whole run stands in for it.
        let t = figures(&devices(0, 5, 0), 8.0, None).throughput;
        assert_eq!((t.provisioned_per_s, t.provisioning_window_s), (0.0, 8.0));
        // A zero-length run divides by (almost) nothing rather than by zero.
        let t = figures(&devices(1, 0, 0), 0.0, Some(0.0)).throughput;
        assert!(t.provisioned_per_s.is_finite() && t.provisioned_per_s > 1e8);
    }

    #[test]
    fn stages_are_summarised_from_their_histograms_and_missing_ones_are_empty() {
        let mut latency = crate::metrics::histogram();
        let mut service = crate::metrics::histogram();
        // Microseconds below 2048: exact at 3 significant digits.
        for us in [100, 200, 300, 400] {
            latency.record(us).unwrap();
            service.record(us / 10).unwrap();
        }
        let d = devices(4, 0, 0);
        let measured = Measured {
            devices: &d,
            failures: &BTreeMap::new(),
            stages: vec![
                ("subscribe".into(), Some(&latency), Some(&service)),
                ("telemetry".into(), None, None),
            ],
            duration_s: 1.0,
            window_s: Some(1.0),
            levels: &LevelCounts::default(),
            counted: Counted::default(),
            on_aws: false,
        };
        let stages = derive(&measured, &[], &Analysis::default()).stages;
        let s = &stages["subscribe"];
        assert_eq!((s.latency.count, s.latency.max_ms), (4, 0.4));
        assert_eq!((s.service.count, s.service.mean_ms), (4, 0.025));
        assert_eq!(stages["telemetry"], StageSummary::default());
    }

    #[test]
    fn thresholds_are_judged_against_the_derived_figures() {
        let d = devices(9, 1, 0);
        let measured = Measured {
            devices: &d,
            failures: &BTreeMap::new(),
            stages: Vec::new(),
            duration_s: 10.0,
            window_s: Some(3.0),
            levels: &LevelCounts::default(),
            counted: Counted::default(),
            on_aws: false,
        };
        let thresholds = crate::scenario::parse_thresholds(&[
            "success_rate > 95%".into(),
            "throughput >= 3/s".into(),
            "failed < 2".into(),
            "register_thing.p99 < 1s".into(),
        ])
        .unwrap();
        let judged = derive(&measured, &thresholds, &Analysis::default()).thresholds;
        let got: Vec<(bool, Option<f64>)> = judged.iter().map(|t| (t.ok, t.value)).collect();
        // 90 % succeeded; 9 in a 3 s window; one failed; no register_thing data.
        assert_eq!(
            got,
            [
                (false, Some(90.0)),
                (true, Some(3.0)),
                (true, Some(1.0)),
                (false, None)
            ]
        );
        assert_eq!(judged[0].expr, "success_rate > 95%");
    }

    #[test]
    fn rate_levels_are_judged_and_the_sustainable_rate_is_the_last_before_the_limit() {
        let mut levels = LevelCounts::default();
        for (rate, n, throttled) in [(10.0, 100, 0), (20.0, 100, 0), (30.0, 100, 40)] {
            for i in 0..n {
                let failure = (i < throttled).then_some(FailureClass::Throttled);
                levels.record(Some(rate), failure);
            }
        }
        levels.record(Some(30.0), Some(FailureClass::Dropped));
        levels.record(None, None);
        let d = devices(260, 40, 1);
        let failures = BTreeMap::from([("throttled.register_thing".to_string(), 40)]);
        let measured = Measured {
            devices: &d,
            failures: &failures,
            stages: Vec::new(),
            duration_s: 30.0,
            window_s: Some(30.0),
            levels: &levels,
            counted: Counted::default(),
            on_aws: false,
        };
        let derived = derive(&measured, &[], &Analysis::default());
        let throttle = derived.throttle.expect("rate levels");
        let judged: Vec<(f64, u64, u64, bool)> = throttle
            .levels
            .iter()
            .map(|l| (l.target_per_s, l.offered, l.throttled, l.sustainable))
            .collect();
        assert_eq!(
            judged,
            [
                (10.0, 100, 0, true),
                (20.0, 100, 0, true),
                (30.0, 101, 40, false)
            ]
        );
        assert_eq!(throttle.throttling_stage.as_deref(), Some("register_thing"));
        assert_eq!(derived.sustainable_rate_per_s, Some(20.0));
        // No levels (a burst): no analysis, no sustainable rate.
        let none = figures(&d, 30.0, None);
        assert_eq!((none.throttle, none.sustainable_rate_per_s), (None, None));
    }
}
