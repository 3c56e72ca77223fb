//! The runner without devices: the scheduler's timing against the plan on tokio's paused
//! clock (through a recording [`Launch`]), the drain deadline, and the aggregator's totals.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use tokio::task::JoinSet;

use super::scheduler::{Launch, now, schedule};
use super::*;
use crate::device::{DeviceReport, Failure, FailureReason, Provisioned, Stage, StageTime};
use crate::live::Rate;
use crate::scenario::of_toml;

/// One start the scheduler asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Launched {
    seq: u64,
    intended: Instant,
    offset: Duration,
    /// tokio's clock when it was asked.
    at: Instant,
    /// Devices in flight just before.
    in_flight: u64,
}

/// Records every start; each started device stays in flight for `hold`.
#[derive(Default)]
struct Recorder {
    launched: Mutex<Vec<Launched>>,
    in_flight: Arc<AtomicU64>,
    hold: Duration,
}

impl Recorder {
    fn holding(hold: Duration) -> Recorder {
        Recorder {
            hold,
            ..Recorder::default()
        }
    }

    fn launched(&self) -> Vec<Launched> {
        self.launched.lock().unwrap().clone()
    }
}

impl Launch for &Recorder {
    fn launch(&self, seq: u64, intended: Instant, offset: Duration, tasks: &mut JoinSet<()>) {
        self.launched.lock().unwrap().push(Launched {
            seq,
            intended,
            offset,
            at: now(),
            in_flight: self.in_flight(),
        });
        let (in_flight, hold) = (self.in_flight.clone(), self.hold);
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            tokio::time::sleep(hold).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The tokio timer wheel fires on whole milliseconds: a start may come up to 1 ms after the
/// instant it was due, never before.
fn on_time(l: &Launched) -> bool {
    l.at >= l.intended && l.at - l.intended < Duration::from_millis(1)
}

/// Run `plan`'s schedule from now on tokio's clock at `rate`, as `shard`, starting devices
/// with `launcher`; returns the schedule's start and when it returned.
async fn run_schedule(
    plan: &Plan,
    launcher: &Recorder,
    controls: &Controls,
    stop: &CancellationToken,
    shard: Shard,
) -> (Instant, Instant) {
    let start = now();
    let clock = Arc::new(ScheduleClock::new(start, controls.current()));
    let pacer = ArrivalPacer::new(clock, controls.subscribe());
    let phases = plan.planned_phases();
    schedule(
        launcher,
        phases,
        plan.devices.count,
        pacer,
        stop.clone(),
        shard,
    )
    .await;
    (start, now())
}

const OPEN: &str = r#"
[devices]
count = 100
[[schedule]]
executor = "constant-arrival-rate"
rate = 10
duration = "1s"
[[schedule]]
executor = "burst"
count = 3
[[schedule]]
executor = "ramping-arrival-rate"
start_rate = 10
stages = [{ target = 30, duration = "1s" }]
"#;

#[tokio::test(start_paused = true)]
async fn open_arrivals_start_at_their_planned_instants_in_order() {
    let plan = of_toml(OPEN);
    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let (start, _) = run_schedule(&plan, &recorder, &Controls::new(), &stop, Shard::WHOLE).await;
    let launched = recorder.launched();
    let planned: Vec<Duration> = plan.arrivals().collect();
    assert_eq!(launched.len(), 10 + 3 + 20);
    assert_eq!(
        launched.iter().map(|l| l.offset).collect::<Vec<_>>(),
        planned
    );
    for (k, l) in launched.iter().enumerate() {
        assert_eq!(l.seq, k as u64);
        assert_eq!(l.intended, start + l.offset, "{l:?}");
        assert!(on_time(l), "{l:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_shard_starts_its_own_arrivals_at_the_unsharded_instants() {
    let plan = of_toml(OPEN);
    let whole: Vec<Duration> = plan.arrivals().collect();
    let recorder = Recorder::default();
    let shard = Shard::new(1, 3).unwrap();
    let stop = CancellationToken::new();
    let (start, _) = run_schedule(&plan, &recorder, &Controls::new(), &stop, shard).await;
    let launched = recorder.launched();
    let want: Vec<(u64, Duration)> = (0..whole.len() as u64)
        .filter(|k| k % 3 == 1)
        .map(|k| (k, whole[k as usize]))
        .collect();
    let got: Vec<(u64, Duration)> = launched.iter().map(|l| (l.seq, l.offset)).collect();
    assert_eq!(got, want);
    assert!(
        launched
            .iter()
            .all(|l| l.intended == start + l.offset && on_time(l))
    );
}

#[tokio::test(start_paused = true)]
async fn a_pause_moves_the_arrivals_after_it_by_its_length() {
    let plan = of_toml(
        "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\n",
    );
    let recorder = Recorder::default();
    let controls = Controls::new();
    let stop = CancellationToken::new();
    let toggler = {
        let controls = controls.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            controls.toggle_pause();
            tokio::time::sleep(Duration::from_secs(1)).await;
            controls.toggle_pause();
        })
    };
    let (start, _) = run_schedule(&plan, &recorder, &controls, &stop, Shard::WHOLE).await;
    toggler.await.unwrap();
    let late: Vec<Duration> = recorder
        .launched()
        .iter()
        .map(|l| l.at.duration_since(start))
        .collect();
    let ms = |n: u64| Duration::from_millis(n);
    // Due at 0..900 ms; paused from 450 ms for 1 s: those after it start 1 s late.
    for (k, at) in late.iter().enumerate() {
        let due = ms(100 * k as u64) + if k >= 5 { ms(1000) } else { ms(0) };
        assert!(
            *at >= due && *at - due < ms(2),
            "arrival {k} at {at:?}, due {due:?}"
        );
    }
    assert_eq!(late.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_arrivals_and_the_scheduler_waits_for_devices_in_flight() {
    let plan = of_toml(OPEN);
    let recorder = Recorder::holding(Duration::from_secs(2));
    let stop = CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            stop.cancel();
        })
    };
    let (start, returned) =
        run_schedule(&plan, &recorder, &Controls::new(), &stop, Shard::WHOLE).await;
    stopper.await.unwrap();
    let launched = recorder.launched();
    let offsets: Vec<Duration> = launched.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, [0, 100, 200].map(Duration::from_millis));
    // The last device started at 200 ms and holds for 2 s: the scheduler returns after it.
    let waited = returned.duration_since(start);
    assert!(
        waited >= Duration::from_millis(2200) && waited < Duration::from_millis(2210),
        "{waited:?}"
    );
    assert_eq!((&recorder).in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_closed_phase_keeps_the_ramps_number_of_devices_in_flight() {
    let plan = of_toml(
        "[devices]\ncount = 1000\n[[schedule]]\nexecutor = \"ramping-concurrency\"\nstart = 0\nstages = [{ target = 4, duration = \"1s\" }, { target = 4, duration = \"1s\" }]\n",
    );
    let recorder = Recorder::holding(Duration::from_millis(300));
    let stop = CancellationToken::new();
    let (start, _) = run_schedule(&plan, &recorder, &Controls::new(), &stop, Shard::WHOLE).await;
    let launched = recorder.launched();
    let level = |t: Duration| (4.0 * t.as_secs_f64()).min(4.0).floor() as u64;
    for (k, l) in launched.iter().enumerate() {
        assert_eq!(l.seq, k as u64);
        assert!(l.offset < Duration::from_secs(2), "{l:?}");
        assert!(l.in_flight < level(l.offset), "{l:?}");
    }
    // Held at 4 for the second second: a device ends every 75 ms on average, and is replaced.
    let second = launched
        .iter()
        .filter(|l| l.at.duration_since(start) >= Duration::from_secs(1))
        .count();
    assert!(
        (12..=14).contains(&second),
        "{second} starts in the second second"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_devices_the_drain_time_and_a_second_signal_aborts_them_at_once() {
    let ms = Duration::from_millis;
    for abort_after in [None, Some(ms(3000))] {
        let (stop, abort, devices) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        abort_after_drain(&stop, &abort, devices.clone(), Duration::from_secs(10));
        tokio::time::sleep(ms(500)).await;
        assert!(!devices.is_cancelled(), "nothing before a stop");
        let stopped = now();
        stop.cancel();
        if let Some(after) = abort_after {
            tokio::time::sleep(after).await;
            abort.cancel();
        }
        devices.cancelled().await;
        let took = now().duration_since(stopped);
        let want = abort_after.unwrap_or(Duration::from_secs(10));
        assert!(
            took >= want && took < want + ms(2),
            "{took:?}, {abort_after:?}"
        );
    }
}

/// A finished device of `plan`'s first second (offset `offset_ms`) with this outcome.
fn done(seq: u64, offset_ms: u64, start: Instant, failure: Option<FailureReason>) -> Record {
    let intended = start + Duration::from_millis(offset_ms);
    let ended = intended + Duration::from_millis(5);
    let stages = vec![StageTime::between(Stage::ConnectClaim, intended, ended)];
    let outcome = match failure {
        None => Ok(Provisioned::default()),
        Some(reason) => Err(Failure::new(reason, "test")),
    };
    Record::Done(Box::new(DeviceResult {
        seq,
        client_id: format!("dev-{seq}"),
        intended,
        offset: Duration::from_millis(offset_ms),
        lag: Duration::ZERO,
        report: DeviceReport {
            stages,
            provisioned_at: outcome.is_ok().then_some(ended),
            outcome,
            tally: device::Tally::default(),
        },
        total: (Duration::from_millis(5), Duration::from_millis(5)),
        attempts: 1,
        tally: device::Tally {
            attempts: 1,
            ..Default::default()
        },
    }))
}

fn read_summary(dir: &std::path::Path) -> Summary {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn the_interim_and_final_summaries_count_every_record_the_aggregator_took() {
    let dir = tempfile::tempdir().unwrap();
    let plan = of_toml(
        "thresholds = [\"failed < 1\", \"success_rate >= 60\"]\n[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\n",
    );
    let pki_dir = tempfile::tempdir().unwrap();
    let (pki, _) = pki::Pki::init(pki_dir.path(), &[], pki::KeyAlgorithm::P256).unwrap();
    let tls = device::DeviceTls::new(
        &pki.root_ca_pem,
        &pki.claim_cert_pem,
        &pki.claim_key_pem,
        false,
    )
    .unwrap();
    let target = target::external("127.0.0.1".into(), 1, tls);
    let options = RunOptions::new(dir.path().join("out"));
    let outputs = Outputs::create(&options.out_dir, &plan, &target.label).unwrap();
    let start = Instant::now();
    let origin = Origin {
        start,
        started_at: SystemTime::now(),
        planned: 10,
        shard: None,
    };
    let live = Live::default();
    live.started.store(9, Ordering::Relaxed);
    let clock = ScheduleClock::new(start, Rate::default());
    let mut agg = Aggregator::new(&plan, target, &live, &clock, &options, outputs, &origin);
    let stop = CancellationToken::new();
    agg.write_summary(&stop).unwrap();
    let first = read_summary(&options.out_dir);
    assert!(!first.complete);
    assert_eq!(first.devices.planned, 10);
    assert_eq!(first.devices.provisioned, 0);

    let (tx, rx) = mpsc::unbounded_channel();
    let (_created_tx, created_rx) = mpsc::unbounded_channel();
    for seq in 0..6 {
        tx.send(done(seq, seq * 100, start, None)).unwrap();
    }
    let throttled = FailureReason::Throttled(Stage::RegisterThing);
    tx.send(done(6, 600, start, Some(throttled.clone())))
        .unwrap();
    tx.send(done(7, 700, start, Some(throttled))).unwrap();
    let timeout = FailureReason::Timeout(Stage::Subscribe);
    tx.send(done(8, 800, start, Some(timeout))).unwrap();
    tx.send(Record::Dropped {
        seq: 9,
        offset: Duration::from_millis(900),
    })
    .unwrap();
    drop(tx);
    drop(_created_tx);
    agg.run(rx, created_rx, &stop).await.unwrap();
    agg.write_summary(&stop).unwrap();
    let interim = read_summary(&options.out_dir);
    let summary = agg.finish(&stop).await.unwrap();
    let written = read_summary(&options.out_dir);
    for (s, complete) in [(&interim, false), (&summary, true), (&written, true)] {
        assert_eq!(s.complete, complete);
        let d = &s.devices;
        let counts = (d.planned, d.started, d.provisioned, d.failed, d.dropped);
        assert_eq!(counts, (10, 9, 6, 3, 1), "complete: {complete}");
        let failures: Vec<(&str, u64)> = s.failures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            failures,
            [("throttled.register_thing", 2), ("timeout.subscribe", 1)]
        );
        assert_eq!(s.success_rate, 60.0);
        let judged: Vec<bool> = s.thresholds.iter().map(|t| t.ok).collect();
        assert_eq!(judged, [false, true]);
        // Every arrival at the plan's one rate level: offered 10 (the dropped one too).
        let level = &s.throttle.as_ref().expect("a rate level").levels[0];
        let level = (
            level.target_per_s,
            level.offered,
            level.completed,
            level.throttled,
        );
        assert_eq!(level, (10.0, 10, 6, 2));
    }
    // The stages of the last window are folded in when it closes, before the final summary.
    for s in [&summary, &written] {
        assert_eq!(s.stages["connect_claim"].latency.count, 9);
        assert_eq!(s.stages["total"].latency.count, 6);
    }
}
