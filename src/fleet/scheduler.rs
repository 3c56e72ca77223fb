//! The scheduler: when each device starts (open or closed model, on schedule time), and the
//! launcher that starts it, retries it and reports its result to the aggregator.
//!
//! Schedule time follows tokio's clock (the system's, except in tests that pause it), and the
//! scheduler starts devices through [`Launch`], so its timing is tested without devices.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::target::Prepared;
use super::{DeviceResult, Live, Record};
use crate::device::{self, DeviceSpec, DeviceTls, Endpoint};
use crate::live::ScheduleClock;
use crate::scenario::{Pattern, Plan, PlannedPhase};
use crate::shard::Shard;

fn aborted() -> device::DeviceReport {
    device::DeviceReport {
        stages: Vec::new(),
        provisioned_at: None,
        outcome: Err(device::Failure::new(
            device::FailureReason::Aborted,
            "run stopped before the device finished",
        )),
        tally: device::Tally::default(),
    }
}

/// Now, on tokio's clock: the system clock, or the paused clock of a test.
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the scheduler starts devices with: the [`Launcher`], or a recorder in tests.
pub(super) trait Launch {
    /// Start device `seq`, intended to start at `intended` (schedule time `offset`), as a task
    /// of `tasks`, or count it as dropped.
    fn launch(&self, seq: u64, intended: Instant, offset: Duration, tasks: &mut JoinSet<()>);
    /// Devices started and not finished yet.
    fn in_flight(&self) -> u64;
}

/// Everything needed to start one device.
pub(super) struct Launcher {
    live: Arc<Live>,
    tx: mpsc::UnboundedSender<Record>,
    devices_stop: CancellationToken,
    endpoint: Endpoint,
    tls: DeviceTls,
    seed: u64,
    spec_base: DeviceSpec,
    handles: device::Handles,
    client_id: Pattern,
    parameters: Vec<(String, Pattern)>,
    semaphore: Arc<Semaphore>,
}

impl Launcher {
    /// Starts the plan's devices (`{run}` in their patterns bound to `run_id` here) at the
    /// target, at most `shard`'s part of `max_in_flight` at once; `stop` releases devices that
    /// stay connected, `devices_stop` aborts them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        scenario: &Plan,
        target: &Prepared,
        run_id: &str,
        live: Arc<Live>,
        (tx, created): (
            mpsc::UnboundedSender<Record>,
            mpsc::UnboundedSender<device::Created>,
        ),
        stop: &CancellationToken,
        devices_stop: CancellationToken,
        shard: Shard,
    ) -> Launcher {
        let devices = &scenario.devices;
        let client_id = scenario.client_id.bind_run(run_id);
        let parameters: Vec<(String, Pattern)> = scenario
            .parameters
            .iter()
            .map(|(k, p)| (k.clone(), p.bind_run(run_id)))
            .collect();
        let spec_base = DeviceSpec {
            client_id: String::new(),
            template: devices.template.clone(),
            parameters: Default::default(),
            mode: devices.certificate,
            csr_key: devices.csr_key,
            protocol: devices.protocol,
            profile: scenario.profile.clone(),
            classify: scenario.classify.clone(),
            after: devices.after.clone(),
        };
        let handles = device::Handles {
            connected: Some(live.connected.clone()),
            // Devices that stay connected end their stay when the run is asked to stop.
            release: stop.child_token(),
            created: Some(created),
            attempt: 1,
            activity: Some(live.activity.clone()),
        };
        Launcher {
            live,
            tx,
            devices_stop,
            endpoint: target.endpoint.clone(),
            tls: target.tls.clone(),
            seed: scenario.seed,
            spec_base,
            handles,
            client_id,
            parameters,
            semaphore: Arc::new(Semaphore::new(shard.max_in_flight(scenario.max_in_flight))),
        }
    }
}

impl Launch for Launcher {
    fn in_flight(&self) -> u64 {
        self.live.in_flight.load(Ordering::Relaxed)
    }

    /// Start device `seq` (intended to start at `intended`), or count it as dropped when the
    /// in-flight cap is reached.
    fn launch(&self, seq: u64, intended: Instant, offset: Duration, tasks: &mut JoinSet<()>) {
        let Ok(permit) = self.semaphore.clone().try_acquire_owned() else {
            self.live.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.send(Record::Dropped { seq, offset });
            return;
        };
        let lag = now().saturating_duration_since(intended);
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
        let mut carry = device::Carry::new(spec.profile.jitter_state(self.seed, seq));
        let (live, tx, endpoint, tls, devices_stop, mut handles) = (
            self.live.clone(),
            self.tx.clone(),
            self.endpoint.clone(),
            self.tls.clone(),
            self.devices_stop.clone(),
            self.handles.clone(),
        );
        tasks.spawn(async move {
            let begun = Instant::now();
            let mut attempts = 0;
            let mut tally = device::Tally::default();
            let mut pause = Duration::ZERO;
            let report = loop {
                attempts += 1;
                handles.attempt = attempts;
                let report = tokio::select! {
                    r = device::attempt(&endpoint, &tls, &spec, &handles, &mut carry) => r,
                    _ = devices_stop.cancelled() => break aborted(),
                };
                tally.add(&device::Tally {
                    attempts: 1,
                    ..report.tally
                });
                let Err(f) = &report.outcome else {
                    break report;
                };
                let next = spec
                    .profile
                    .flow_pause(f.reason.class(), attempts, pause, || {
                        device::profile::unit(&mut carry.jitter)
                    });
                let Some(next) = next else { break report };
                pause = next;
                if let Some(activity) = &handles.activity {
                    activity.retries.fetch_add(1, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = devices_stop.cancelled() => break report,
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
                tally,
            })));
        });
    }
}

/// Schedule time and the controls that move it.
pub(super) struct ArrivalPacer {
    clock: Arc<ScheduleClock>,
    controls: watch::Receiver<crate::live::Rate>,
}

impl ArrivalPacer {
    pub(super) fn new(
        clock: Arc<ScheduleClock>,
        controls: watch::Receiver<crate::live::Rate>,
    ) -> ArrivalPacer {
        ArrivalPacer { clock, controls }
    }

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
        self.clock.set(now(), rate);
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The scheduler: runs the phases in order, sleeping until each intended arrival (open model) or
/// keeping the target number of devices in flight (closed model), on schedule time; of a
/// sharded run, only `shard`'s arrivals and its share of the devices in flight (see `shard`).
pub(super) async fn schedule(
    launcher: impl Launch,
    plan: Vec<PlannedPhase>,
    limit: u64,
    mut pacer: ArrivalPacer,
    stop: CancellationToken,
    shard: Shard,
) {
    let mut tasks = JoinSet::new();
    // The unsharded run's next seq: where the next phase's arrivals are numbered from.
    let mut seq = 0u64;
    'phases: for phase in plan {
        match phase {
            PlannedPhase::Open(arrivals) => {
                let n = arrivals.len();
                for (own, offset) in shard.arrivals(arrivals.into_iter(), seq) {
                    if own >= limit {
                        break 'phases;
                    }
                    let Some(intended) = pacer.until(offset, &stop).await else {
                        break 'phases;
                    };
                    while tasks.try_join_next().is_some() {}
                    launcher.launch(own, intended, offset, &mut tasks);
                }
                seq += n;
            }
            PlannedPhase::Closed { begin, ramp } => {
                let phase_end = begin + ramp.duration();
                if pacer.until(begin, &stop).await.is_none() {
                    break 'phases;
                }
                // This shard's seqs: every count-th from its first.
                let mut own = shard.next_owned(seq);
                loop {
                    let at = pacer.clock.at(now());
                    if at >= phase_end || own >= limit {
                        break;
                    }
                    let rate = pacer.clock.rate();
                    let target = if rate.paused {
                        0
                    } else {
                        shard.share((ramp.at(at - begin) * rate.multiplier).floor() as u64)
                    };
                    while launcher.in_flight() < target && own < limit {
                        launcher.launch(own, now(), at, &mut tasks);
                        own += shard.count;
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
                // How many devices the other shards started is unknown here: the next phase's
                // arrivals are numbered from a multiple of the count past this shard's last seq,
                // so every shard still takes the arrivals k with k % count == index, and its
                // seqs stay in its own residue class (disjoint from the other shards').
                seq = own - shard.index;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}
