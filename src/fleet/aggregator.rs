//! The aggregator: the one owner of the run's histograms and counters; it streams results and
//! intervals to the outputs and publishes the dashboard's snapshot once a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::target::Prepared;
use super::{DeviceResult, Live, Origin, Record, RunError, RunOptions};
use crate::device::{self, FailureClass};
use crate::live::{FailureView, ScheduleClock, Snapshot, StageView};
use crate::metrics::{LevelCounts, Percentiles, STAGE_NAMES, StageSet};
use crate::mock;
use crate::output::{CreatedContext, Outputs, Summary, Totals};
use crate::results::DeviceRow;
use crate::scenario::Plan;

/// What failures.csv and the dashboard say of a dropped arrival.
const DROPPED_DETAIL: &str = "in-flight cap reached at the intended arrival";

/// The aggregator's state: the only owner of the histograms, counters and outputs.
pub(super) struct Aggregator<'a> {
    scenario: &'a Plan,
    /// Where devices connect; the embedded mock is stopped when the run finishes.
    target: Prepared,
    live: &'a Live,
    clock: &'a ScheduleClock,
    options: &'a RunOptions,
    outputs: Outputs,
    start: Instant,
    /// Wall-clock time of `start`.
    started_at: SystemTime,
    /// The devices this run (shard) plans, and summary.json's `shard`.
    planned: u64,
    shard: Option<crate::results::ShardSummary>,
    window: Window,
    levels: LevelCounts,
    total: StageSet,
    failures: BTreeMap<String, u64>,
    /// The latest detail message per failure label.
    latest: BTreeMap<String, String>,
    provisioned: u64,
    failed: u64,
    dropped: u64,
    /// The finished devices' tallies, added (summary.json's amplification figures).
    counted: crate::results::summary::Counted,
    stopping: bool,
    /// Cores this process may use (the dashboard's CPU scale), read once.
    cores: usize,
    /// What every created.csv row shares (run ID, region and account for ARNs).
    created_rows: CreatedContext,
    /// `--metrics-listen`: this run's series, fed what only the aggregator knows.
    pub(super) metrics: Option<Arc<crate::exporter::run::RunSeries>>,
}

impl<'a> Aggregator<'a> {
    pub(super) fn new(
        scenario: &'a Plan,
        target: Prepared,
        live: &'a Live,
        clock: &'a ScheduleClock,
        options: &'a RunOptions,
        outputs: Outputs,
        origin: &Origin,
    ) -> Aggregator<'a> {
        let start = origin.start;
        let cpu = process_cpu_s(target.mock.as_ref());
        let created_rows = CreatedContext {
            run_id: options.run_id.clone(),
            region: crate::guard::aws_region(&target.endpoint.host),
            account: match &scenario.target {
                crate::scenario::Target::Endpoint { account, .. } => account.clone(),
                crate::scenario::Target::Mock { .. } => None,
            },
        };
        Aggregator {
            scenario,
            target,
            live,
            clock,
            options,
            outputs,
            start,
            started_at: origin.started_at,
            planned: origin.planned,
            shard: origin.shard.clone(),
            // A late start's first window opens now: nothing ran before.
            window: Window::new(start.max(Instant::now()), cpu),
            levels: LevelCounts::default(),
            total: StageSet::default(),
            failures: BTreeMap::new(),
            latest: BTreeMap::new(),
            provisioned: 0,
            failed: 0,
            dropped: 0,
            counted: Default::default(),
            stopping: false,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            created_rows,
            metrics: None,
        }
    }

    /// Take device records until every sender is gone, closing a window every second; then
    /// close the last, partial one.
    pub(super) async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Record>,
        mut created: mpsc::UnboundedReceiver<device::Created>,
        stop: &CancellationToken,
    ) -> Result<(), RunError> {
        // Windows close on whole seconds from the start, so shards with one --start-at
        // close theirs at the same instants.
        let into_run = Instant::now().saturating_duration_since(self.start);
        let first = self.start + Duration::from_secs(into_run.as_secs() + 1);
        let mut tick = tokio::time::interval_at(first.into(), Duration::from_secs(1));
        loop {
            tokio::select! {
                record = rx.recv() => match record {
                    Some(Record::Done(r)) => self.done(*r)?,
                    Some(Record::Dropped { seq, offset }) => self.dropped(seq, offset)?,
                    None => break,
                },
                Some(c) = created.recv() => self.created(&c)?,
                _ = tick.tick() => self.publish(stop, false)?,
            }
        }
        // Devices report what they created before their result, on the other channel.
        while let Ok(c) = created.try_recv() {
            self.created(&c)?;
        }
        Ok(())
    }

    /// A certificate issued or a thing registered: a created.csv row.
    fn created(&mut self, c: &device::Created) -> Result<(), RunError> {
        let row = self.created_rows.row(
            &c.client_id,
            c.attempt,
            &c.certificate_id,
            &c.thing_name,
            c.at,
        );
        Ok(self.outputs.created(&row)?)
    }

    /// Close the current window and publish it (snapshot, progress line); `last`: the run's
    /// final, partial window (its snapshot says so, no progress line).
    pub(super) fn publish(&mut self, stop: &CancellationToken, last: bool) -> Result<(), RunError> {
        self.stopping = stop.is_cancelled();
        let options = self.options;
        let (line, snapshot) = self.close(options.snapshots.is_some())?;
        if let (Some(tx), Some(mut s)) = (&options.snapshots, snapshot) {
            s.finished = last;
            tx.send_replace(Arc::new(s));
        }
        if options.progress && !last {
            eprintln!("{line}");
        }
        // The interim summary is a courtesy to a run that gets killed: failing to write it (out
        // of file descriptors at a peak, a full disk) is reported and the run goes on; the final
        // summary's write still fails the run.
        if !last && let Err(e) = self.write_summary(stop) {
            tracing::warn!("interim summary not written: {e}");
        }
        Ok(())
    }

    /// The summary so far, `"complete": false` (rewritten every interval, so a killed run has
    /// one at most an interval old; [`Aggregator::finish`] writes the final one).
    pub(super) fn write_summary(&self, stop: &CancellationToken) -> Result<(), RunError> {
        let duration = Instant::now().saturating_duration_since(self.start);
        self.outputs
            .summary(self.totals(stop, duration, None, false))?;
        Ok(())
    }

    /// Everything the summary says, as of `duration` into the run; `mock`: the embedded mock's
    /// final report; `complete`: the final summary.
    fn totals<'t>(
        &'t self,
        stop: &CancellationToken,
        duration: Duration,
        mock: Option<&'t mock::MockReport>,
        complete: bool,
    ) -> Totals<'t> {
        let live = self.live;
        Totals {
            scenario: self.scenario,
            run_id: &self.options.run_id,
            started_at: self.started_at,
            duration,
            planned: self.planned,
            started: live.started.load(Ordering::Relaxed),
            provisioned: self.provisioned,
            failed: self.failed,
            dropped: self.dropped,
            max_lag: Duration::from_micros(live.max_lag_us.load(Ordering::Relaxed)),
            failures: &self.failures,
            stages: &self.total,
            endpoint: &self.target.label,
            interrupted: stop.is_cancelled(),
            levels: &self.levels,
            mock,
            rate_changes: self.options.controls.changes_since(self.start),
            complete,
            scenario_sha256: self.options.scenario_sha256.as_deref(),
            shard: self.shard.clone(),
            counted: self.counted,
        }
    }

    /// Close the last, partial window, stop the embedded mock and write the final summary
    /// (its duration ends when the devices did, before the mock stops).
    pub(super) async fn finish(mut self, stop: &CancellationToken) -> Result<Summary, RunError> {
        self.publish(stop, true)?;
        let duration = Instant::now().saturating_duration_since(self.start);
        let mock = match self.target.mock.take() {
            Some(h) => Some(h.stop().await),
            None => None,
        };
        self.outputs.flush()?;
        let totals = self.totals(stop, duration, mock.as_ref(), true);
        Ok(self.outputs.summary(totals)?)
    }

    fn dropped(&mut self, seq: u64, offset: Duration) -> Result<(), RunError> {
        self.dropped += 1;
        let rate = self.scenario.rate_at(offset);
        self.levels.record(rate, Some(FailureClass::Dropped));
        self.outputs.failure(
            seq,
            "",
            FailureClass::Dropped.as_str(),
            DROPPED_DETAIL,
            None,
            self.start.elapsed(),
        )?;
        Ok(())
    }

    fn done(&mut self, r: DeviceResult) -> Result<(), RunError> {
        self.counted.device(&r.tally);
        let ok = r.report.outcome.is_ok();
        let total = ok.then_some(r.total);
        let w = &mut self.window;
        w.stages.record_device(r.intended, &r.report.stages, total);
        w.max_lag = w.max_lag.max(r.lag);
        let class = r.report.outcome.as_ref().err().map(|f| f.reason.class());
        if let Some(m) = &self.metrics {
            let failure = r.report.outcome.as_ref().err();
            let label = failure.map(|f| f.reason.label());
            let failure = label.as_deref().zip(class.map(FailureClass::as_str));
            m.device(r.intended, &r.report.stages, total, failure, r.attempts);
        }
        self.levels.record(self.scenario.rate_at(r.offset), class);
        let row = DeviceRow::new(r.seq, &r.client_id, r.lag, &r.report, r.total.0, r.attempts);
        if let Err(f) = &r.report.outcome {
            self.failed += 1;
            w.failed += 1;
            let label = f.reason.label();
            *self.failures.entry(label.clone()).or_default() += 1;
            *w.failed_by_class.entry(f.reason.class()).or_default() += 1;
            let at = self.start.elapsed();
            let raw = f.rejection.as_deref();
            self.outputs
                .failure(r.seq, &r.client_id, &label, &f.detail, raw, at)?;
            self.latest.insert(label, f.detail.clone());
        } else {
            self.provisioned += 1;
            w.completed += 1;
        }
        if let (Some(dir), Ok(p)) = (&self.options.save_identities, &r.report.outcome)
            && let Some(file) = crate::output::save_identity(dir, &r.client_id, p)?
        {
            tracing::info!(
                target: crate::tui::CONSOLE,
                "--save-identities: {} exists: not overwritten, {}'s identity not saved",
                file.display(),
                r.client_id
            );
        }
        Ok(self.outputs.device(&row)?)
    }

    /// Write the current window, fold it into the totals, open the next; returns the progress
    /// line and, when `want_snapshot`, the dashboard's snapshot.
    fn close(&mut self, want_snapshot: bool) -> Result<(String, Option<Snapshot>), RunError> {
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
        let cpu = process_cpu_s(self.target.mock.as_ref());
        let activity = Activity::of(&live.activity);
        let w = &mut self.window;
        let offered = started - w.started_before + dropped - w.dropped_before;
        let length = now - w.opened;
        let cpu_percent = 100.0 * (cpu - w.cpu_opened) / length.as_secs_f64().max(1e-9);
        if let Some(m) = &self.metrics {
            m.interval(cpu_percent, target_rate);
        }
        let interval = crate::output::Interval {
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
            certificates_issued: activity.certificates_issued
                - w.activity_before.certificates_issued,
            connects: activity.connects - w.activity_before.connects,
            retries: activity.retries - w.activity_before.retries,
        };
        self.outputs.interval(&interval)?;
        let line = super::progress::line(&interval);
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
                    reason: FailureClass::Dropped.as_str().into(),
                    count: self.dropped,
                    latest: DROPPED_DETAIL.into(),
                });
            }
            failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
            Snapshot {
                scenario: self.scenario.name.clone(),
                variant: self.scenario.variant.clone(),
                shard: self.options.shard,
                endpoint: self.target.label.clone(),
                elapsed: now - self.start,
                schedule_elapsed: schedule_now,
                planned: self.scenario.planned_duration(),
                phase: self
                    .scenario
                    .phase_at(schedule_now)
                    .map(|(i, e)| {
                        let phases = self.scenario.phases().len();
                        format!("{}/{phases} {}", i + 1, e.as_str())
                    })
                    .unwrap_or_default(),
                target_rate,
                rate,
                stopping: self.stopping,
                finished: false,
                planned_devices: self.planned,
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
                certificates_issued: activity.certificates_issued,
                connects: activity.connects,
                retries: activity.retries,
                max_connects_per_s: self.counted.max_connects_per_s,
                stages,
                failures,
            }
        });
        w.reset(now, started, dropped, cpu);
        w.activity_before = activity;
        Ok((line, snapshot))
    }
}

/// The current one-second window of the aggregator.
struct Window {
    stages: StageSet,
    failed_by_class: BTreeMap<FailureClass, u64>,
    completed: u64,
    failed: u64,
    opened: Instant,
    /// Largest start lag (scheduler behind) among devices that ended in this window.
    max_lag: Duration,
    started_before: u64,
    dropped_before: u64,
    /// This process's CPU seconds when the window opened.
    cpu_opened: f64,
    /// The run's live activity counts when the window opened.
    activity_before: Activity,
}

/// The run's live activity counts ([`device::Activity`]) at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    certificates_issued: u64,
    connects: u64,
    retries: u64,
}

impl Activity {
    fn of(a: &device::Activity) -> Activity {
        Activity {
            certificates_issued: a.certificates_issued.load(Ordering::Relaxed),
            connects: a.connects.load(Ordering::Relaxed),
            retries: a.retries.load(Ordering::Relaxed),
        }
    }
}

/// CPU seconds this process has used (all threads, user + system), less what the embedded
/// mock's RSA key pool spent generating keys: its threads run at nice 19 on idle CPU only, and
/// counting them would show an idle harness as saturated.
fn process_cpu_s(mock: Option<&mock::MockHandle>) -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let pool = mock.map_or(0.0, |m| m.key_pool().background_cpu_s);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9 - pool
}

impl Window {
    fn new(start: Instant, cpu: f64) -> Window {
        Window {
            stages: StageSet::default(),
            failed_by_class: BTreeMap::new(),
            completed: 0,
            failed: 0,
            opened: start,
            max_lag: Duration::ZERO,
            started_before: 0,
            dropped_before: 0,
            cpu_opened: cpu,
            activity_before: Activity::default(),
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
