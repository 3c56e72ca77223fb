//! The live dashboard driving a real run: the event loop on ratatui's `TestBackend`, keys fed
//! through a channel, the run against the embedded mock on an ephemeral loopback port.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::live::{Controls, Snapshot};
use fleetstorm::scenario::Scenario;
use fleetstorm::tui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// 40 arrivals/s for 5 minutes: the test always ends it from the keyboard.
const LONG: &str = r#"
name = "tui"
max_in_flight = 200
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 20000
client_id = "tui-{seq:05}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "tui-{seq:05}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 40
duration = "5m"
"#;

struct Harness {
    keys: mpsc::UnboundedSender<std::io::Result<Event>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    run: tokio::task::JoinHandle<fleetstorm::output::Summary>,
    ui: tokio::task::JoinHandle<(tui::App, String)>,
}

fn start(dir: &Path) -> Harness {
    start_with(dir, LONG)
}

fn start_with(dir: &Path, body: &str) -> Harness {
    let path = dir.join("s.toml");
    std::fs::write(&path, body).unwrap();
    let scenario = Scenario::load(&path, &[]).unwrap();
    let controls = Controls::new();
    let stop = CancellationToken::new();
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let snapshots = rx.clone();
    let options = RunOptions {
        controls: controls.clone(),
        snapshots: Some(tx),
        drain: Duration::from_secs(10),
        ..RunOptions::new(dir.join("out"))
    };
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { fleet::run(scenario, options, stop).await.unwrap() }
    });
    let (keys, key_rx) = mpsc::unbounded_channel();
    let ui = tokio::spawn(async move {
        let mut key_rx = key_rx;
        let events = futures_util::stream::poll_fn(move |cx| key_rx.poll_recv(cx));
        let mut terminal = Terminal::new(TestBackend::new(160, 45)).unwrap();
        let app = tui::run_loop(&mut terminal, events, rx, controls, stop)
            .await
            .unwrap();
        let buf = terminal.backend().buffer().clone();
        let mut screen = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                screen.push_str(buf[(x, y)].symbol());
            }
            screen.push('\n');
        }
        (app, screen)
    });
    Harness {
        keys,
        snapshots,
        run,
        ui,
    }
}

impl Harness {
    fn press(&self, c: char) {
        let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        self.keys.send(Ok(Event::Key(key))).unwrap();
    }

    /// The next snapshot that satisfies `f`.
    async fn until(&mut self, f: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        loop {
            let s = self.snapshots.borrow_and_update().clone();
            if f(&s) {
                return s;
            }
            self.snapshots.changed().await.expect("run ended early");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_stops_the_run_gracefully_and_every_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path());
    let first = h.until(|s| s.provisioned + s.failed > 0).await;
    assert_eq!(first.failed, 0, "{:?}", first.failures);
    assert_eq!(first.scenario, "tui");
    assert!(first.stages.iter().any(|s| s.name == "register_thing"));
    h.press('q');
    let summary = h.run.await.unwrap();
    let (app, screen) = h.ui.await.unwrap();
    assert!(summary.interrupted);
    assert!(app.stop_requested);
    assert!(app.snapshot.finished, "the last snapshot marks the end");
    assert!(summary.devices.provisioned > 0);
    assert!(
        summary.devices.started < 20000,
        "arrivals stopped at q: {:?}",
        summary.devices
    );
    // Devices in flight at q were drained, not abandoned.
    assert_eq!(
        summary.devices.started,
        summary.devices.provisioned + summary.devices.failed
    );
    assert_eq!(summary.failures.get("aborted"), None);
    for file in [
        "summary.json",
        "summary.csv",
        "devices.csv",
        "failures.csv",
        "timeseries.csv",
        "latency.hlog",
    ] {
        assert!(dir.path().join("out").join(file).is_file(), "{file}");
    }
    let devices = std::fs::read_to_string(dir.path().join("out/devices.csv")).unwrap();
    assert_eq!(
        devices.lines().count() as u64 - 1,
        summary.devices.started,
        "one row per started device"
    );
    // The final frame shows the finished run with its stage percentiles.
    assert!(screen.contains("FINISHED"), "{screen}");
    assert!(screen.contains("register_thing"), "{screen}");
    assert!(screen.contains(&format!("provisioned {}", summary.devices.provisioned)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_rate_keys_steer_arrivals_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path());
    let first = h.until(|s| s.provisioned + s.failed > 0).await;
    assert_eq!(first.failed, 0, "{:?}", first.failures);

    // Paused: once a snapshot shows the pause, no device starts until it is lifted.
    h.press('p');
    let paused = h.until(|s| s.rate.paused).await;
    let at_pause = h
        .until(|s| s.rate.paused && s.elapsed > paused.elapsed)
        .await;
    let later = h
        .until(|s| s.elapsed >= at_pause.elapsed + Duration::from_secs(2))
        .await;
    assert!(later.rate.paused);
    assert_eq!(later.started, at_pause.started, "no arrivals while paused");
    assert_eq!(later.target_rate, Some(0.0));
    let schedule_at_pause = at_pause.schedule_elapsed;
    assert_eq!(
        later.schedule_elapsed, schedule_at_pause,
        "schedule time stands still"
    );

    h.press('p');
    for _ in 0..5 {
        h.press('+');
    }
    let faster = h
        .until(|s| !s.rate.paused && (s.rate.multiplier - 1.5).abs() < 1e-9)
        .await;
    let after = h
        .until(|s| s.elapsed >= faster.elapsed + Duration::from_secs(2))
        .await;
    assert!(after.started > faster.started, "arrivals resumed");
    assert_eq!(after.target_rate, Some(60.0), "40/s times 1.5");
    h.press('q');
    let summary = h.run.await.unwrap();
    h.ui.await.unwrap();

    let changes = &summary.rate_changes;
    assert_eq!(changes.len(), 7, "{changes:?}");
    assert!(changes[0].paused && !changes[1].paused);
    assert!((changes[6].multiplier - 1.5).abs() < 1e-9);
    assert!(changes.windows(2).all(|w| w[0].elapsed_s <= w[1].elapsed_s));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["rate_changes"].as_array().unwrap().len(), 7);

    // timeseries.csv has the multiplier per interval: 0 while paused, 1.5 at the end.
    let mut reader = csv::Reader::from_path(dir.path().join("out/timeseries.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "rate_multiplier").unwrap();
    let target = headers
        .iter()
        .position(|h| h == "target_rate_per_s")
        .unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let multipliers: Vec<f64> = rows.iter().map(|r| r[col].parse().unwrap()).collect();
    assert!(multipliers.contains(&0.0), "{multipliers:?}");
    assert!(multipliers.contains(&1.0) && multipliers.contains(&1.5));
    assert!(rows.iter().any(|r| &r[target] == "60.000"));

    // The report lists the changes.
    let report = fleetstorm::report::write_run_report(&dir.path().join("out"), None).unwrap();
    let html = std::fs::read_to_string(report).unwrap();
    let section = &html[html
        .find("Changes made during the run")
        .expect("rate changes section")..];
    assert_eq!(section.matches("<td>paused</td>").count(), 1, "{section}");
    assert!(section.contains("<td>x1.5</td>"), "{section}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staying_devices_are_counted_connected_and_a_stop_releases_them_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let stay = LONG
        .replace("count = 20000", "count = 25")
        .replace(
            "[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 40\nduration = \"5m\"",
            "[devices.after]\naction = \"stay\"\nduration = \"10m\"\n[[schedule]]\nexecutor = \"burst\"\ncount = 25",
        );
    assert!(stay.contains("action = \"stay\""));
    let mut h = start_with(dir.path(), &stay);
    let all = h.until(|s| s.connected == 25).await;
    // A device's result is recorded when it ends: staying devices are still in flight.
    assert_eq!((all.started, all.in_flight, all.provisioned), (25, 25, 0));
    h.press('q');
    let summary = h.run.await.unwrap();
    let (app, screen) = h.ui.await.unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.devices.provisioned, 25);
    assert_eq!(summary.devices.failed, 0, "{:?}", summary.failures);
    assert_eq!(app.snapshot.connected, 0, "all disconnected at the end");
    assert!(screen.contains("connected 0"), "{screen}");
    let mut reader = csv::Reader::from_path(dir.path().join("out/timeseries.csv")).unwrap();
    let col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "connected")
        .unwrap();
    let connected: Vec<u64> = reader
        .records()
        .map(|r| r.unwrap()[col].parse().unwrap())
        .collect();
    assert!(connected.contains(&25), "{connected:?}");
}
