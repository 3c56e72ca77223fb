//! The runner: starts devices on the scenario's schedule (open model), caps in-flight work,
//! aggregates their results in one task, streams the outputs, and drains on stop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::device::{self, CertificateMode, DeviceSpec, DeviceTls, Endpoint};
use crate::live::{Controls, FailureView, ScheduleClock, Snapshot, StageView};
use crate::metrics::{Percentiles, STAGE_NAMES, StageSet};
use crate::mock::{self, MockConfig};
use crate::output::{DeviceRow, Outputs, Summary};
use crate::pki::{self, KeyAlgorithm, Pki};
use crate::scenario::{Pattern, PlannedPhase, RetrySettings, Scenario, Target};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Mock(#[from] mock::MockError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error("{0}")]
    Other(String),
}

/// How `run` is invoked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// Print a one-line progress update per second on stderr.
    pub progress: bool,
    /// `--endpoint HOST[:PORT]`: use this endpoint instead of the scenario's target address.
    pub endpoint: Option<(String, Option<u16>)>,
    /// Time allowed for in-flight devices to finish after a stop request.
    pub drain: Duration,
    /// Write each new certificate and key here (keys 0600); otherwise they stay in memory.
    pub save_identities: Option<PathBuf>,
    /// Pause and arrival-rate multiplier (the dashboard's keys); recorded in the results.
    pub controls: Arc<Controls>,
    /// Where the aggregator publishes its once-a-second snapshot (the dashboard).
    pub snapshots: Option<watch::Sender<Arc<Snapshot>>>,
    /// The run ID (`{run}` in patterns, `run_id` in summary.json and created.csv): the same
    /// for every variant of one `fleetstorm run`.
    pub run_id: String,
}

impl RunOptions {
    /// Options for a run writing to `out_dir`, with defaults for the rest.
    pub fn new(out_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            out_dir: out_dir.into(),
            progress: false,
            endpoint: None,
            drain: Duration::from_secs(10),
            save_identities: None,
            controls: Controls::new(),
            snapshots: None,
            run_id: crate::scenario::new_run_id(),
        }
    }
}

/// What one device reports to the aggregator.
enum Record {
    Done(Box<DeviceResult>),
    /// `offset`: the schedule time it was due at.
    Dropped {
        seq: u64,
        offset: Duration,
    },
}

struct DeviceResult {
    seq: u64,
    client_id: String,
    intended: Instant,
    /// Schedule time the device was due at (see `live`).
    offset: Duration,
    lag: Duration,
    report: device::DeviceReport,
    /// Provisioning time from the actual start (service) and from the intended start (latency).
    total: (Duration, Duration),
    attempts: u32,
}

fn aborted() -> device::DeviceReport {
    device::DeviceReport {
        stages: Vec::new(),
        provisioned_at: None,
        outcome: Err(device::Failure::new(
            device::FailureReason::Aborted,
            "run stopped before the device finished",
        )),
    }
}

/// Live counters the scheduler and devices update (atomics: no lock).
#[derive(Default)]
struct Live {
    started: AtomicU64,
    in_flight: AtomicU64,
    dropped: AtomicU64,
    max_lag_us: AtomicU64,
    /// Devices connected with their own identity right now (stay / telemetry).
    connected: Arc<AtomicU64>,
}

/// Run a scenario to the end (or until `stop` is cancelled) and write its results.
pub async fn run(
    scenario: Scenario,
    options: RunOptions,
    stop: CancellationToken,
) -> Result<Summary, RunError> {
    let mock_shutdown = CancellationToken::new();
    let _guard = mock_shutdown.clone().drop_guard();
    let (endpoint, tls, mock_handle, endpoint_label, _pki_dir) =
        prepare_target(&scenario, &options, &mock_shutdown).await?;

    let planned = scenario.devices.count;
    let run_id = &options.run_id;
    let client_id = Pattern::parse(&scenario.devices.client_id)
        .map_err(RunError::Other)?
        .bind_run(run_id);
    let parameters: Vec<(String, Pattern)> = scenario
        .devices
        .parameters
        .iter()
        .map(|(k, v)| Pattern::parse(v).map(|p| (k.clone(), p.bind_run(run_id))))
        .collect::<Result<_, _>>()
        .map_err(RunError::Other)?;

    let mut outputs = Outputs::create(&options.out_dir, &scenario, &endpoint_label)?;
    let started_at = SystemTime::now();
    let start = Instant::now();
    let live = Arc::new(Live::default());
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let semaphore = Arc::new(Semaphore::new(scenario.max_in_flight));
    let devices_stop = CancellationToken::new();
    let spec_base = DeviceSpec {
        client_id: String::new(),
        template: scenario.devices.template.clone(),
        parameters: BTreeMap::new(),
        mode: scenario.devices.certificate,
        csr_key: scenario.devices.csr_key,
        timeouts: scenario.devices.timeouts.into(),
        classify: Arc::new(
            scenario
                .target
                .classify()
                .rules()
                .map_err(RunError::Other)?,
        ),
        after: device::After {
            connected: Some(live.connected.clone()),
            // Devices that stay connected end their stay when the run is asked to stop.
            release: stop.child_token(),
            ..scenario.devices.after.clone()
        },
    };

    let launcher = Launcher {
        live: live.clone(),
        tx: tx.clone(),
        devices_stop: devices_stop.clone(),
        endpoint: endpoint.clone(),
        tls: tls.clone(),
        seed: scenario.seed,
        retry: scenario.devices.retry.clone(),
        spec_base,
        client_id,
        parameters,
        semaphore,
    };
    let plan = scenario.plan();
    let limit = scenario.devices.count;
    let clock = Arc::new(ScheduleClock::new(start, options.controls.current()));
    let scheduler = tokio::spawn(schedule(
        launcher,
        plan,
        limit,
        Pacer {
            clock: clock.clone(),
            controls: options.controls.subscribe(),
        },
        stop.clone(),
    ));
    drop(tx);

    // Drain deadline: once a stop is requested, in-flight devices get `drain` to finish.
    {
        let stop = stop.clone();
        let devices_stop = devices_stop.clone();
        let drain = options.drain;
        tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::sleep(drain).await;
            devices_stop.cancel();
        });
    }

    // The aggregator: this task.
    let mut agg = Aggregator {
        scenario: &scenario,
        endpoint: &endpoint_label,
        live: &live,
        clock: &clock,
        start,
        window: Window::new(start),
        levels: crate::output::LevelCounts::default(),
        total: StageSet::default(),
        failures: BTreeMap::new(),
        latest: BTreeMap::new(),
        provisioned: 0,
        failed: 0,
        dropped: 0,
        stopping: false,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut tick = tokio::time::interval_at(
        (Instant::now() + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            record = rx.recv() => match record {
                Some(Record::Done(r)) => agg.done(*r, &mut outputs, &options)?,
                Some(Record::Dropped { seq, offset }) => {
                    agg.dropped += 1;
                    agg.levels.record(&scenario, offset, Some("dropped"));
                    outputs.failure(seq, "", "dropped", "in-flight cap reached at the intended arrival", None, start.elapsed())?;
                }
                None => break,
            },
            _ = tick.tick() => {
                agg.stopping = stop.is_cancelled();
                let (line, snapshot) = agg.close(&mut outputs, options.snapshots.is_some())?;
                if let (Some(tx), Some(s)) = (&options.snapshots, snapshot) {
                    tx.send_replace(Arc::new(s));
                }
                if options.progress {
                    eprintln!("{line}");
                }
            }
        }
    }
    let _ = scheduler.await;
    // The last, partial interval.
    agg.stopping = stop.is_cancelled();
    let (_, snapshot) = agg.close(&mut outputs, options.snapshots.is_some())?;
    if let (Some(tx), Some(mut s)) = (&options.snapshots, snapshot) {
        s.finished = true;
        tx.send_replace(Arc::new(s));
    }
    let duration = start.elapsed();
    let mock_report = match mock_handle {
        Some(h) => Some(h.stop().await),
        None => None,
    };
    let Aggregator {
        levels,
        total,
        failures,
        provisioned,
        failed,
        dropped,
        ..
    } = agg;
    let summary = outputs.finish(crate::output::Totals {
        scenario: &scenario,
        run_id: &options.run_id,
        started_at,
        duration,
        planned,
        started: live.started.load(Ordering::Relaxed),
        provisioned,
        failed,
        dropped,
        max_lag: Duration::from_micros(live.max_lag_us.load(Ordering::Relaxed)),
        failures: &failures,
        stages: &total,
        endpoint: &endpoint_label,
        interrupted: stop.is_cancelled(),
        levels: &levels,
        mock: mock_report.as_ref(),
        rate_changes: options.controls.changes_since(start),
    })?;
    Ok(summary)
}

/// The aggregator's state: the only owner of the histograms and counters.
struct Aggregator<'a> {
    scenario: &'a Scenario,
    endpoint: &'a str,
    live: &'a Live,
    clock: &'a ScheduleClock,
    start: Instant,
    window: Window,
    levels: crate::output::LevelCounts,
    total: StageSet,
    failures: BTreeMap<String, u64>,
    /// The latest detail message per failure label.
    latest: BTreeMap<String, String>,
    provisioned: u64,
    failed: u64,
    dropped: u64,
    stopping: bool,
    /// Cores this process may use (the dashboard's CPU scale), read once.
    cores: usize,
}

impl Aggregator<'_> {
    fn done(
        &mut self,
        r: DeviceResult,
        outputs: &mut Outputs,
        options: &RunOptions,
    ) -> Result<(), RunError> {
        let ok = r.report.outcome.is_ok();
        let total = ok.then_some(r.total);
        let w = &mut self.window;
        w.stages.record_device(r.intended, &r.report.stages, total);
        w.max_lag = w.max_lag.max(r.lag);
        let class = r.report.outcome.as_ref().err().map(|f| f.reason.class());
        self.levels.record(self.scenario, r.offset, class);
        let row = DeviceRow::new(r.seq, &r.client_id, r.lag, &r.report, r.total.0, r.attempts);
        if let Err(f) = &r.report.outcome {
            self.failed += 1;
            w.failed += 1;
            let label = f.reason.label();
            *self.failures.entry(label.clone()).or_default() += 1;
            *w.failed_by_class
                .entry(f.reason.class().to_string())
                .or_default() += 1;
            outputs.failure(
                r.seq,
                &r.client_id,
                &label,
                &f.detail,
                None,
                self.start.elapsed(),
            )?;
            self.latest.insert(label, f.detail.clone());
        } else {
            self.provisioned += 1;
            w.completed += 1;
        }
        if let (Some(dir), Ok(p)) = (&options.save_identities, &r.report.outcome) {
            save_identity(dir, &r.client_id, p)?;
        }
        Ok(outputs.device(&row)?)
    }

    /// Write the current window, fold it into the totals, open the next; returns the progress
    /// line and, when `want_snapshot`, the dashboard's snapshot.
    fn close(
        &mut self,
        outputs: &mut Outputs,
        want_snapshot: bool,
    ) -> Result<(String, Option<Snapshot>), RunError> {
        let now = Instant::now();
        let live = self.live;
        let started = live.started.load(Ordering::Relaxed);
        let dropped = live.dropped.load(Ordering::Relaxed);
        let in_flight = live.in_flight.load(Ordering::Relaxed);
        let connected = live.connected.load(Ordering::Relaxed);
        let schedule_now = self.clock.at(now);
        let rate = self.clock.rate();
        let multiplier = if rate.paused { 0.0 } else { rate.multiplier };
        let target_rate = self.scenario.rate_at(schedule_now).map(|r| r * multiplier);
        let cpu = process_cpu_s();
        let w = &mut self.window;
        let offered = started - w.started_before + dropped - w.dropped_before;
        let length = now - w.opened;
        let cpu_percent = 100.0 * (cpu - w.cpu_opened) / length.as_secs_f64().max(1e-9);
        let line = outputs.interval(crate::output::Interval {
            elapsed: now - self.start,
            length,
            offered,
            started: started - w.started_before,
            completed: w.completed,
            failed: w.failed,
            failed_by_class: &w.failed_by_class,
            in_flight,
            connected,
            dropped_total: dropped,
            max_lag: w.max_lag,
            stages: &w.stages,
            target_rate,
            multiplier,
            cpu_percent,
        })?;
        self.total.add(&w.stages);
        let snapshot = want_snapshot.then(|| {
            let stages = STAGE_NAMES
                .iter()
                .zip(w.stages.stages.iter().zip(&self.total.stages))
                .map(|(name, (interval, total))| StageView {
                    name,
                    interval: Percentiles::of(&interval.latency),
                    total: Percentiles::of(&total.latency),
                    curve: crate::live::CURVE
                        .iter()
                        .filter(|_| !total.latency.is_empty())
                        .map(|p| {
                            let v = total.latency.value_at_quantile(p / 100.0);
                            (*p, v as f64 / 1000.0)
                        })
                        .collect(),
                })
                .collect();
            let mut failures: Vec<FailureView> = self
                .failures
                .iter()
                .map(|(reason, count)| FailureView {
                    reason: reason.clone(),
                    count: *count,
                    latest: self.latest.get(reason).cloned().unwrap_or_default(),
                })
                .collect();
            if self.dropped > 0 {
                failures.push(FailureView {
                    reason: "dropped".into(),
                    count: self.dropped,
                    latest: "in-flight cap reached at the intended arrival".into(),
                });
            }
            failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
            Snapshot {
                scenario: self.scenario.name.clone(),
                variant: self.scenario.variant.clone(),
                endpoint: self.endpoint.to_string(),
                elapsed: now - self.start,
                schedule_elapsed: schedule_now,
                planned: self.scenario.planned_duration(),
                phase: self
                    .scenario
                    .phase_at(schedule_now)
                    .map(|(i, e)| {
                        format!("{}/{} {}", i + 1, self.scenario.schedule.len(), e.as_str())
                    })
                    .unwrap_or_default(),
                target_rate,
                rate,
                stopping: self.stopping,
                finished: false,
                planned_devices: self.scenario.devices.count,
                started,
                provisioned: self.provisioned,
                failed: self.failed,
                in_flight,
                connected,
                dropped,
                interval: length,
                interval_offered: offered,
                interval_provisioned: w.completed,
                interval_failed: w.failed,
                lag_interval: w.max_lag,
                lag_max: Duration::from_micros(live.max_lag_us.load(Ordering::Relaxed)),
                cpu_percent,
                cores: self.cores,
                stages,
                failures,
            }
        });
        w.reset(now, started, dropped, cpu);
        Ok((line, snapshot))
    }
}

/// `<name>.cert.pem` and `<name>.private.key` (0600), named by thing name (or client ID).
fn save_identity(
    dir: &std::path::Path,
    client_id: &str,
    p: &device::Provisioned,
) -> Result<(), RunError> {
    let name = if p.thing_name.is_empty() {
        client_id
    } else {
        &p.thing_name
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_:.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::create_dir_all(dir)
        .map_err(|source| RunError::Output(crate::output::OutputError::new(dir, source)))?;
    pki::write_file(
        &dir.join(format!("{name}.cert.pem")),
        p.certificate_pem.as_bytes(),
        false,
    )?;
    pki::write_file(
        &dir.join(format!("{name}.private.key")),
        p.private_key_pem.as_bytes(),
        true,
    )?;
    Ok(())
}

/// The current one-second window of the aggregator.
struct Window {
    stages: StageSet,
    failed_by_class: BTreeMap<String, u64>,
    completed: u64,
    failed: u64,
    opened: Instant,
    /// Largest start lag (scheduler behind) among devices that ended in this window.
    max_lag: Duration,
    started_before: u64,
    dropped_before: u64,
    /// This process's CPU seconds when the window opened.
    cpu_opened: f64,
}

/// CPU seconds this process has used (all threads, user + system), less what RSA key pools
/// spent generating keys: their threads run at nice 19 on idle CPU only, and counting them
/// would show an idle harness as saturated.
fn process_cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9 - mock::keypool::background_cpu_s_total()
}

impl Window {
    fn new(start: Instant) -> Window {
        Window {
            stages: StageSet::default(),
            failed_by_class: BTreeMap::new(),
            completed: 0,
            failed: 0,
            opened: start,
            max_lag: Duration::ZERO,
            started_before: 0,
            dropped_before: 0,
            cpu_opened: process_cpu_s(),
        }
    }

    /// Open the next window at `now`.
    fn reset(&mut self, now: Instant, started: u64, dropped: u64, cpu: f64) {
        self.max_lag = Duration::ZERO;
        self.stages.reset();
        self.failed_by_class.clear();
        self.completed = 0;
        self.failed = 0;
        self.opened = now;
        self.started_before = started;
        self.dropped_before = dropped;
        self.cpu_opened = cpu;
    }
}

/// Everything needed to start one device.
struct Launcher {
    live: Arc<Live>,
    tx: mpsc::UnboundedSender<Record>,
    devices_stop: CancellationToken,
    endpoint: Endpoint,
    tls: DeviceTls,
    seed: u64,
    retry: RetrySettings,
    spec_base: DeviceSpec,
    client_id: Pattern,
    parameters: Vec<(String, Pattern)>,
    semaphore: Arc<Semaphore>,
}

impl Launcher {
    /// Start device `seq` (intended to start at `intended`), or count it as dropped when the
    /// in-flight cap is reached.
    fn launch(&self, seq: u64, intended: Instant, offset: Duration, tasks: &mut JoinSet<()>) {
        let Ok(permit) = self.semaphore.clone().try_acquire_owned() else {
            self.live.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.send(Record::Dropped { seq, offset });
            return;
        };
        let lag = intended.elapsed();
        self.live
            .max_lag_us
            .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(self.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut spec = self.spec_base.clone();
        spec.client_id = self.client_id.render(seq, &mut rng);
        spec.parameters = self
            .parameters
            .iter()
            .map(|(k, p)| (k.clone(), p.render(seq, &mut rng)))
            .collect();
        self.live.started.fetch_add(1, Ordering::Relaxed);
        self.live.in_flight.fetch_add(1, Ordering::Relaxed);
        let (live, tx, endpoint, tls, devices_stop, retry) = (
            self.live.clone(),
            self.tx.clone(),
            self.endpoint.clone(),
            self.tls.clone(),
            self.devices_stop.clone(),
            self.retry.clone(),
        );
        tasks.spawn(async move {
            let begun = Instant::now();
            let mut attempts = 0;
            let report = loop {
                attempts += 1;
                let report = tokio::select! {
                    r = device::provision(&endpoint, &tls, &spec) => r,
                    _ = devices_stop.cancelled() => break aborted(),
                };
                match &report.outcome {
                    Err(f) if retry.retries(f.reason.class(), attempts) => {
                        let pause = retry.backoff(attempts, rand::RngExt::random::<f64>(&mut rng));
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = devices_stop.cancelled() => break report,
                        }
                    }
                    _ => break report,
                }
            };
            let end = report.provisioned_at.unwrap_or_else(Instant::now);
            let total = (end - begun, end - intended);
            drop(permit);
            live.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(Record::Done(Box::new(DeviceResult {
                seq,
                client_id: spec.client_id,
                intended,
                offset,
                lag,
                report,
                total,
                attempts,
            })));
        });
    }
}

/// Schedule time and the controls that move it.
struct Pacer {
    clock: Arc<ScheduleClock>,
    controls: watch::Receiver<crate::live::Rate>,
}

impl Pacer {
    /// Wait until schedule time reaches `t`; returns the real instant it did (the device's
    /// intended start), or None when the run is stopped. Pauses and multiplier changes made
    /// while waiting move the instant.
    async fn until(&mut self, t: Duration, stop: &CancellationToken) -> Option<Instant> {
        loop {
            let due = self.clock.real_at(t);
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = self.changed() => {}
                _ = sleep_until_opt(due) => return due,
            }
        }
    }

    /// Wait for the next change of the controls and apply it (forever once they are gone).
    async fn changed(&mut self) {
        if self.controls.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let rate = *self.controls.borrow_and_update();
        self.clock.set(Instant::now(), rate);
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The scheduler: runs the phases in order, sleeping until each intended arrival (open model) or
/// keeping the target number of devices in flight (closed model), on schedule time.
async fn schedule(
    launcher: Launcher,
    plan: Vec<PlannedPhase>,
    limit: u64,
    mut pacer: Pacer,
    stop: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    let mut seq = 0u64;
    'phases: for phase in plan {
        match phase {
            PlannedPhase::Open(arrivals) => {
                for offset in arrivals {
                    if seq >= limit {
                        break 'phases;
                    }
                    let Some(intended) = pacer.until(offset, &stop).await else {
                        break 'phases;
                    };
                    while tasks.try_join_next().is_some() {}
                    launcher.launch(seq, intended, offset, &mut tasks);
                    seq += 1;
                }
            }
            PlannedPhase::Closed { begin, ramp } => {
                let phase_end = begin + ramp.duration();
                if pacer.until(begin, &stop).await.is_none() {
                    break 'phases;
                }
                loop {
                    let now = Instant::now();
                    let at = pacer.clock.at(now);
                    if at >= phase_end || seq >= limit {
                        break;
                    }
                    let rate = pacer.clock.rate();
                    let target = if rate.paused {
                        0
                    } else {
                        (ramp.at(at - begin) * rate.multiplier).floor() as u64
                    };
                    while launcher.live.in_flight.load(Ordering::Relaxed) < target && seq < limit {
                        launcher.launch(seq, Instant::now(), at, &mut tasks);
                        seq += 1;
                    }
                    // Re-check when a device ends, the controls change or the ramp moves
                    // (every 50 ms).
                    tokio::select! {
                        _ = stop.cancelled() => break 'phases,
                        _ = tasks.join_next(), if !tasks.is_empty() => {}
                        _ = pacer.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Endpoint, TLS, the embedded mock (if any), a label, and the temporary PKI to keep alive.
type Prepared = (
    Endpoint,
    DeviceTls,
    Option<mock::MockHandle>,
    String,
    Option<tempfile::TempDir>,
);

async fn prepare_target(
    scenario: &Scenario,
    options: &RunOptions,
    shutdown: &CancellationToken,
) -> Result<Prepared, RunError> {
    match &scenario.target {
        Target::Mock {
            mock: settings,
            pki: pki_dir,
            ..
        } if options.endpoint.is_none() => {
            // Without a configured directory: a fresh PKI per run, removed when the run ends.
            let (dir, temp) = match pki_dir {
                Some(d) => (d.clone(), None),
                None => {
                    let t = tempfile::Builder::new()
                        .prefix("fleetstorm-pki-")
                        .tempdir()
                        .map_err(|e| {
                            RunError::Other(format!("cannot create a temporary PKI directory: {e}"))
                        })?;
                    (t.path().to_path_buf(), Some(t))
                }
            };
            let (pki, _) = Pki::init(&dir, &[], KeyAlgorithm::P256)?;
            let mut mock_settings = (**settings).clone();
            if scenario.devices.certificate == CertificateMode::Csr {
                // No device of this run calls CreateKeysAndCertificate: a pool's RSA generators
                // would only burn the idle CPU (cached keys are still loaded and written back).
                mock_settings.key_pool_size = 0;
            }
            let config = MockConfig::new(Arc::new(pki), mock_settings)?;
            let listener = mock::listen((std::net::Ipv4Addr::LOCALHOST, 0).into())
                .map_err(|e| RunError::Other(format!("cannot bind the embedded mock: {e}")))?;
            let handle = mock::start(config, listener, shutdown.clone()).await?;
            let tls = DeviceTls::new(
                &handle.pki.root_ca_pem,
                &handle.pki.claim_cert_pem,
                &handle.pki.claim_key_pem,
                false,
            )?;
            let endpoint = Endpoint {
                host: "127.0.0.1".into(),
                port: handle.addr.port(),
            };
            let label = format!(
                "embedded mock {} (keys {})",
                handle.addr,
                settings.keys.as_str()
            );
            Ok((endpoint, tls, Some(handle), label, temp))
        }
        Target::Mock { pki: pki_dir, .. } => {
            // --endpoint with a mock target: a separately started `fleetstorm mock` with this PKI.
            let dir = pki_dir.clone().unwrap_or_else(|| PathBuf::from("pki"));
            let pki = Pki::load(&dir)?;
            let (host, port) = options.endpoint.clone().unwrap_or_default();
            let tls = DeviceTls::new(
                &pki.root_ca_pem,
                &pki.claim_cert_pem,
                &pki.claim_key_pem,
                false,
            )?;
            let port = port.unwrap_or(8883);
            Ok((
                Endpoint {
                    host: host.clone(),
                    port,
                },
                tls,
                None,
                format!("{host}:{port}"),
                None,
            ))
        }
        Target::Endpoint {
            host,
            port,
            alpn,
            ca,
            claim_cert,
            claim_key,
            ..
        } => {
            let (host, port) = match &options.endpoint {
                Some((h, p)) => (h.clone(), p.unwrap_or(*port)),
                None => (host.clone(), *port),
            };
            let ca_pem = pki::read_pem_file(ca)?;
            let cert_pem = pki::read_pem_file(claim_cert)?;
            let key_pem = pki::read_pem_file(claim_key)?;
            pki::certs(ca, &ca_pem)?;
            pki::certs(claim_cert, &cert_pem)?;
            pki::parse_key(claim_key, &key_pem)?;
            let alpn = alpn.unwrap_or(port == 443);
            let tls = DeviceTls::new(&ca_pem, &cert_pem, &key_pem, alpn)?;
            Ok((
                Endpoint {
                    host: host.clone(),
                    port,
                },
                tls,
                None,
                format!("{host}:{port}"),
                None,
            ))
        }
    }
}
