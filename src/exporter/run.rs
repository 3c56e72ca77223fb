//! A run's metrics, labelled `scenario` and `shard` (and `variant` in a run of several
//! `[[variants]]`), so one Prometheus sums every shard of a job.
//!
//! [`RunMetrics`] lives as long as the `fleetstorm run` command (its endpoint serves every
//! variant in turn); each `fleet::run` attaches a [`RunSeries`] to it. A scrape reads the
//! scheduler's and devices' live atomics through the series' reader and the embedded mock's
//! counters; the aggregator adds what it alone knows: devices provisioned and failed (by the
//! failure label summary.json counts them under), retries, the stage histograms, and once a
//! second the harness's CPU and the target rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{LabelPairs, MockMetrics, PREFIX, family, with};
use crate::live::Rate;
use crate::metrics::{STAGE_NAMES, device_samples};
use crate::mock::MockObserver;
use crate::scenario::Plan;
use crate::shard::Shard;
use crate::stage::StageTime;

/// Distinct `reason` label values kept for `fleetstorm_failed_total`; a new label past this
/// many is counted under its failure class instead (the labels are bounded by stage and code,
/// but a rejection's `errorCode` comes from the endpoint).
pub const MAX_REASONS: usize = 64;

/// Histogram upper bounds in seconds, per stage in [`STAGE_NAMES`] order; `+Inf` is implicit.
/// Latency runs from the device's intended start, so a later stage's values include the
/// earlier ones. On this machine's mock a stage's service is 0.1-3 ms
/// (docs/developer/performance.md: `total` p50 2.1 ms, p99 364 ms when arrivals queue at the
/// in-flight cap); against AWS IoT a connect (TCP + TLS + CONNACK) is tens to hundreds of
/// milliseconds, RegisterThing with a pre-provisioning hook up to the hook's 5 s deadline, and a
/// flow retried after throttling tens of seconds.
pub const BUCKETS: [&[f64]; 7] = [
    // connect_claim: TCP + TLS handshake + CONNACK.
    &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    // subscribe: one round trip, no crypto.
    &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    // create_certificate: a CSR signed, or a key pair from the pool; AWS quota throttles.
    &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    // register_thing: the template, the hook (5 s deadline) and the registry.
    &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
    ],
    // connect_device: the second handshake, with the new certificate.
    &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    // telemetry: one publish until its PUBACK, from when it was due.
    &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    // total: the whole provisioning, retries and backoff included.
    &[
        0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ],
];

/// The label values of one run. Built in one place, [`Labels::of`], from the run's scenario
/// and shard (`fleet::run` passes its options' `--shard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub scenario: String,
    /// The `[[variants]]` name, when the run has several.
    pub variant: Option<String>,
    /// The shard index as a string, "0" for an unsharded run.
    pub shard: String,
}

impl Labels {
    /// The labels of `scenario` run as `shard` (the run options' `--shard`, whole when unsharded).
    pub fn of(scenario: &Plan, shard: Shard) -> Labels {
        Labels {
            scenario: scenario.name.clone(),
            variant: scenario.variant.clone(),
            shard: shard.index.to_string(),
        }
    }

    pub(crate) fn pairs(&self) -> LabelPairs<'_> {
        let mut l = vec![("scenario", self.scenario.as_str())];
        if let Some(v) = &self.variant {
            l.push(("variant", v.as_str()));
        }
        l.push(("shard", self.shard.as_str()));
        l
    }
}

/// What a scrape reads from the running fleet (its live atomics and controls).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveValues {
    pub planned: u64,
    pub started: u64,
    pub in_flight: u64,
    pub connected: u64,
    pub dropped: u64,
    pub max_lag: Duration,
    pub rate: Rate,
}

/// Reads [`LiveValues`] at scrape time.
pub type LiveReader = Box<dyn Fn() -> LiveValues + Send + Sync>;

/// A run's metrics endpoint source: the collector registered once per `fleetstorm run`, and
/// the series of the run (variant) in progress or last finished.
#[derive(Debug, Clone, Default)]
pub struct RunMetrics {
    current: Arc<Mutex<Option<Arc<RunSeries>>>>,
}

impl RunMetrics {
    pub fn new() -> RunMetrics {
        RunMetrics::default()
    }

    /// A registry (prefix `fleetstorm_`) whose scrape reads this run's series.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// Start the series of one run: they replace the previous variant's (whose counters end
    /// with it) and stay readable after the run ends, until the next starts.
    pub fn start(
        &self,
        labels: Labels,
        live: LiveReader,
        mock: Option<MockObserver>,
    ) -> Arc<RunSeries> {
        let series = Arc::new(RunSeries {
            labels,
            live,
            mock: mock.map(MockMetrics::new),
            provisioned: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed: Mutex::new(BTreeMap::new()),
            cpu_percent: AtomicU64::new(0f64.to_bits()),
            target_rate: AtomicU64::new(f64::NAN.to_bits()),
            latency: BUCKETS.map(|b| Histogram::new(b.iter().copied())),
            service: BUCKETS.map(|b| Histogram::new(b.iter().copied())),
        });
        *lock(&self.current) = Some(series.clone());
        series
    }

    /// The series being served, if a run started.
    pub fn current(&self) -> Option<Arc<RunSeries>> {
        lock(&self.current).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Collector for RunMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        match self.current() {
            Some(series) => series.write(&mut encoder),
            None => Ok(()),
        }
    }
}

/// One run's series.
pub struct RunSeries {
    labels: Labels,
    live: LiveReader,
    mock: Option<MockMetrics>,
    provisioned: AtomicU64,
    retries: AtomicU64,
    /// By failure label (summary.json `failures`), at most [`MAX_REASONS`] + the classes.
    failed: Mutex<BTreeMap<String, u64>>,
    cpu_percent: AtomicU64,
    /// NaN: the schedule asks for no rate now (a burst, a closed-model phase, the end).
    target_rate: AtomicU64,
    latency: [Histogram; 7],
    service: [Histogram; 7],
}

impl std::fmt::Debug for RunSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSeries")
            .field("labels", &self.labels)
            .field("provisioned", &self.provisioned)
            .finish_non_exhaustive()
    }
}

impl RunSeries {
    /// A device finished: the aggregator's record of it. `failure`: its (label, class).
    pub fn device(
        &self,
        intended: Instant,
        stages: &[StageTime],
        total: Option<(Duration, Duration)>,
        failure: Option<(&str, &str)>,
        attempts: u32,
    ) {
        for (i, service, latency) in device_samples(intended, stages, total) {
            self.latency[i].observe(latency.as_secs_f64());
            self.service[i].observe(service.as_secs_f64());
        }
        self.retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
        match failure {
            None => {
                self.provisioned.fetch_add(1, Ordering::Relaxed);
            }
            Some((label, class)) => {
                let mut failed = lock(&self.failed);
                let key = if failed.len() < MAX_REASONS || failed.contains_key(label) {
                    label
                } else {
                    class
                };
                *failed.entry(key.to_string()).or_default() += 1;
            }
        }
    }

    /// A one-second window closed: the harness's CPU over it and the rate asked for now.
    pub fn interval(&self, cpu_percent: f64, target_rate: Option<f64>) {
        self.cpu_percent
            .store(cpu_percent.to_bits(), Ordering::Relaxed);
        self.target_rate
            .store(target_rate.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    fn write(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let labels = self.labels.pairs();
        let v = (self.live)();
        let counter = |n: u64| [(labels.clone(), ConstCounter::new(n))];
        let gauge = |x: f64| [(labels.clone(), ConstGauge::new(x))];
        let c = MetricType::Counter;
        let g = MetricType::Gauge;
        family(e, "started", "Devices started", c, counter(v.started))?;
        let provisioned = self.provisioned.load(Ordering::Relaxed);
        family(
            e,
            "provisioned",
            "Devices provisioned",
            c,
            counter(provisioned),
        )?;
        let failed = lock(&self.failed).clone();
        family(
            e,
            "failed",
            "Devices failed, by reason: the failure label summary.json counts them under",
            c,
            failed
                .iter()
                .map(|(reason, n)| (with(&labels, "reason", reason), ConstCounter::new(*n))),
        )?;
        family(
            e,
            "dropped",
            "Arrivals dropped at the in-flight cap (never started)",
            c,
            counter(v.dropped),
        )?;
        let retries = self.retries.load(Ordering::Relaxed);
        family(
            e,
            "retries",
            "Flow retries of finished devices ([devices.retry])",
            c,
            counter(retries),
        )?;
        family(
            e,
            "planned_devices",
            "Devices the run plans to start",
            g,
            gauge(v.planned as f64),
        )?;
        family(
            e,
            "in_flight",
            "Devices in flight now",
            g,
            gauge(v.in_flight as f64),
        )?;
        family(
            e,
            "connected",
            "Devices connected with their own identity now (stay, telemetry)",
            g,
            gauge(v.connected as f64),
        )?;
        family(
            e,
            "rate_multiplier",
            "The arrival-rate multiplier set from the dashboard (1 unless changed)",
            g,
            gauge(v.rate.multiplier),
        )?;
        family(
            e,
            "paused",
            "1 while arrivals are paused from the dashboard",
            g,
            gauge(if v.rate.paused { 1.0 } else { 0.0 }),
        )?;
        let target = f64::from_bits(self.target_rate.load(Ordering::Relaxed));
        family(
            e,
            "target_rate",
            "Arrivals per second the schedule asks for now, multiplier applied (absent in bursts and closed-model phases)",
            g,
            (!target.is_nan()).then(|| (labels.clone(), ConstGauge::new(target))),
        )?;
        family(
            e,
            "cpu_percent",
            "fleetstorm's own CPU over the last second in percent of one core (devices, and the embedded mock)",
            g,
            gauge(f64::from_bits(self.cpu_percent.load(Ordering::Relaxed))),
        )?;
        family(
            e,
            "start_lag_max_seconds",
            "Largest start lag so far (the scheduler behind the schedule)",
            g,
            gauge(v.max_lag.as_secs_f64()),
        )?;
        for (name, help, histograms) in [
            (
                "stage_latency_seconds",
                "Stage latency from the device's intended start (as summary.json's stage percentiles), by stage",
                &self.latency,
            ),
            (
                "stage_service_seconds",
                "Stage service time, the stage alone, by stage",
                &self.service,
            ),
        ] {
            family(
                e,
                name,
                help,
                MetricType::Histogram,
                STAGE_NAMES
                    .iter()
                    .zip(histograms)
                    .map(|(stage, h)| (with(&labels, "stage", stage), h.clone())),
            )?;
        }
        match &self.mock {
            Some(mock) => mock.write(e, &labels),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> (RunMetrics, Arc<RunSeries>) {
        let metrics = RunMetrics::new();
        let labels = Labels {
            scenario: "s".into(),
            variant: None,
            shard: "3".into(),
        };
        let series = metrics.start(labels, Box::new(LiveValues::default), None);
        (metrics, series)
    }

    fn scrape(metrics: &RunMetrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry()).unwrap();
        text
    }

    #[test]
    fn reasons_past_the_cap_are_counted_under_their_class() {
        let (metrics, series) = series();
        let now = Instant::now();
        for i in 0..MAX_REASONS + 5 {
            let label = format!("rejected.register_thing.400.Code{i}");
            series.device(now, &[], None, Some((&label, "rejected")), 1);
        }
        // A label already counted keeps its own series.
        series.device(
            now,
            &[],
            None,
            Some(("rejected.register_thing.400.Code0", "rejected")),
            1,
        );
        let text = scrape(&metrics);
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("fleetstorm_failed_total{"))
            .collect();
        assert_eq!(failed.len(), MAX_REASONS + 1, "{text}");
        assert!(text.contains(
            "fleetstorm_failed_total{scenario=\"s\",shard=\"3\",reason=\"rejected\"} 5\n"
        ));
        assert!(text.contains(
            "fleetstorm_failed_total{scenario=\"s\",shard=\"3\",reason=\"rejected.register_thing.400.Code0\"} 2\n"
        ));
    }

    #[test]
    fn a_new_run_replaces_the_previous_variants_series_and_retries_count_attempts_after_the_first()
    {
        let (metrics, first) = series();
        first.device(Instant::now(), &[], None, None, 3);
        assert!(
            scrape(&metrics).contains("fleetstorm_retries_total{scenario=\"s\",shard=\"3\"} 2\n")
        );
        let labels = Labels {
            scenario: "s".into(),
            variant: Some("b".into()),
            shard: "3".into(),
        };
        metrics.start(labels, Box::new(LiveValues::default), None);
        let text = scrape(&metrics);
        assert!(
            text.contains(
                "fleetstorm_provisioned_total{scenario=\"s\",variant=\"b\",shard=\"3\"} 0\n"
            ),
            "{text}"
        );
        assert!(!text.contains("shard=\"3\"} 1\n"), "{text}");
        // No target rate while the schedule asks for none; a value once it does.
        assert!(!text.contains("fleetstorm_target_rate{"), "{text}");
        metrics.current().unwrap().interval(12.5, Some(40.0));
        let text = scrape(&metrics);
        assert!(
            text.contains(
                "fleetstorm_target_rate{scenario=\"s\",variant=\"b\",shard=\"3\"} 40.0\n"
            )
        );
        assert!(
            text.contains(
                "fleetstorm_cpu_percent{scenario=\"s\",variant=\"b\",shard=\"3\"} 12.5\n"
            )
        );
    }
}
