//! The runner: starts devices on the scenario's schedule (open model), caps in-flight work,
//! aggregates their results in one task, streams the outputs, and drains on stop.
//!
//! `scheduler` starts the devices, `aggregator` owns their results, `target` prepares where
//! they connect; `run` wires them together.

mod aggregator;
mod progress;
mod scheduler;
mod target;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::device;
use crate::live::{Controls, ScheduleClock, Snapshot};
use crate::mock;
use crate::output::{Outputs, Summary};
use crate::pki;
use crate::results::ShardSummary;
use crate::scenario::Plan;
use crate::shard::{Shard, StartAt};
use aggregator::Aggregator;
use scheduler::{ArrivalPacer, Launcher};

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
    /// Cancelled after `stop` (a second Ctrl-C / SIGTERM / SIGHUP): cut the drain short, abort
    /// the devices still in flight (recorded as `aborted`) and write every file.
    pub abort: CancellationToken,
    /// SHA-256 (hex) of the scenario file as read: `scenario_sha256` in summary.json.
    pub scenario_sha256: Option<String>,
    /// `--metrics-listen`: the endpoint's source, which this run's series attach to.
    pub metrics: Option<crate::exporter::RunMetrics>,
    /// `--shard I/N` / `--shards N`: run only this shard's devices (None: all of them).
    pub shard: Option<Shard>,
    /// `--start-at`: the instant the schedule's time 0 is (None: as soon as the run is ready).
    pub start_at: Option<StartAt>,
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
            abort: CancellationToken::new(),
            scenario_sha256: None,
            metrics: None,
            shard: None,
            start_at: None,
        }
    }

    /// The devices this run starts: all of them unless it is a shard.
    fn shard_or_whole(&self) -> Shard {
        self.shard.unwrap_or_default()
    }
}

/// When the run's schedule begins and what part of the scenario it runs.
struct Origin {
    /// Schedule time 0 (in the past when the run started late).
    start: Instant,
    /// Wall-clock time of `start`: `started_at`, the interval log's start time.
    started_at: SystemTime,
    /// The devices this run plans: its shard's share of `devices.count`.
    planned: u64,
    /// summary.json's `shard` (None unless --shard, --shards or --start-at was given).
    shard: Option<ShardSummary>,
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

/// One device's run, as the aggregator gets it.
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
    /// The device's counts summed over its attempts.
    tally: device::Tally,
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
    /// What the devices did that AWS counts (connects, certificates issued, whole-flow
    /// retries), as it happens.
    activity: Arc<device::Activity>,
}

impl Live {
    /// What a metrics scrape reads (atomics and the operator's controls, no lock).
    fn exported(&self, planned: u64, controls: &Controls) -> crate::exporter::run::LiveValues {
        crate::exporter::run::LiveValues {
            planned,
            started: self.started.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            max_lag: Duration::from_micros(self.max_lag_us.load(Ordering::Relaxed)),
            rate: controls.current(),
        }
    }
}

/// Run a scenario's plan to the end (or until `stop` is cancelled) and write its results.
pub async fn run(
    scenario: Plan,
    options: RunOptions,
    stop: CancellationToken,
) -> Result<Summary, RunError> {
    let mock_shutdown = CancellationToken::new();
    let _guard = mock_shutdown.clone().drop_guard();
    let target = target::prepare(&scenario, &options, &mock_shutdown).await?;
    let live = Arc::new(Live::default());
    let (tx, rx) = mpsc::unbounded_channel::<Record>();
    // Certificates and things as devices get them, for created.csv.
    let (created_tx, created_rx) = mpsc::unbounded_channel::<device::Created>();
    let devices_stop = CancellationToken::new();
    let shard = options.shard_or_whole();
    let launcher = Launcher::new(
        &scenario,
        &target,
        &options.run_id,
        live.clone(),
        (tx, created_tx),
        &stop,
        devices_stop.clone(),
        shard,
    );

    let outputs = match options.start_at {
        Some(at) => Outputs::create_at(&options.out_dir, &scenario, &target.label, at.0)?,
        None => Outputs::create(&options.out_dir, &scenario, &target.label)?,
    };
    let origin = begin(&scenario, &options, &stop).await?;
    let start = origin.start;
    let clock = Arc::new(ScheduleClock::new(start, options.controls.current()));
    let pacer = ArrivalPacer::new(clock.clone(), options.controls.subscribe());
    let scheduler = tokio::spawn(scheduler::schedule(
        launcher,
        scenario.planned_phases(),
        scenario.devices.count,
        pacer,
        stop.clone(),
        shard,
    ));
    abort_after_drain(&stop, &options.abort, devices_stop, options.drain);

    // The aggregator: this task.
    let labels = crate::exporter::Labels::of(&scenario, shard);
    let observer = target.mock.as_ref().map(|h| h.observer());
    let mut agg = Aggregator::new(&scenario, target, &live, &clock, &options, outputs, &origin);
    agg.metrics = options.metrics.as_ref().map(|m| {
        let (l, controls, planned) = (live.clone(), options.controls.clone(), origin.planned);
        m.start(
            labels,
            Box::new(move || l.exported(planned, &controls)),
            observer,
        )
    });
    // A summary from the start: a run killed in its first second has one too.
    agg.write_summary(&stop)?;
    agg.run(rx, created_rx, &stop).await?;
    let _ = scheduler.await;
    agg.finish(&stop).await
}

/// Fix the run's time origin: now, or `--start-at` (waiting for it, unless `stop` comes
/// first; a start already past is not moved: the arrivals due before now start at once and
/// the lag is reported).
async fn begin(
    scenario: &Plan,
    options: &RunOptions,
    stop: &CancellationToken,
) -> Result<Origin, RunError> {
    let shard = options.shard_or_whole();
    let summary = |start_at: Option<StartAt>, lag: Duration| {
        (options.shard.is_some() || start_at.is_some()).then(|| ShardSummary {
            index: shard.index,
            count: shard.count,
            start_at: start_at.map(StartAt::rfc3339),
            start_lag_s: lag.as_secs_f64(),
        })
    };
    let planned = shard.share(scenario.devices.count);
    let now = |start_at| Origin {
        start: Instant::now(),
        started_at: SystemTime::now(),
        planned,
        shard: summary(start_at, Duration::ZERO),
    };
    let Some(at) = options.start_at else {
        return Ok(now(None));
    };
    let Some((start, late)) = at.origin() else {
        return Err(RunError::Other(format!(
            "--start-at {}: further in the past than this machine's clock reaches",
            at.rfc3339()
        )));
    };
    if late.is_zero() {
        tracing::info!(
            target: crate::tui::CONSOLE,
            "waiting {:.1} s for --start-at {} (Ctrl-C stops)",
            start
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
            at.rfc3339()
        );
        tokio::select! {
            _ = tokio::time::sleep_until(start.into()) => {}
            // Stopped before it began: nothing ran, the results say so from now.
            _ = stop.cancelled() => return Ok(now(Some(at))),
        }
    }
    let lag = Instant::now().saturating_duration_since(start);
    if !late.is_zero() {
        tracing::info!(
            target: crate::tui::CONSOLE,
            "started {:.3} s after --start-at {}: the schedule is not shifted, arrivals due before now start at once",
            lag.as_secs_f64(),
            at.rfc3339()
        );
    }
    Ok(Origin {
        start,
        started_at: at.0,
        planned,
        shard: summary(Some(at), lag),
    })
}

/// Drain deadline: once a stop is requested, in-flight devices get `drain` to finish, then
/// `devices_stop` aborts them; `abort` (a second signal) aborts them at once.
fn abort_after_drain(
    stop: &CancellationToken,
    abort: &CancellationToken,
    devices_stop: CancellationToken,
    drain: Duration,
) {
    let (stop, abort) = (stop.clone(), abort.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = abort.cancelled() => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(drain) => {}
            _ = abort.cancelled() => {}
        }
        devices_stop.cancel();
    });
}
