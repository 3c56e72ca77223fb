//! `fleetstorm run` end to end: scenarios against the embedded mock, outputs, exit codes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn scenario(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("s.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn options(out: &Path) -> RunOptions {
    RunOptions {
        drain: Duration::from_secs(5),
        ..RunOptions::new(out)
    }
}

const SMALL: &str = r#"
name = "small"
seed = 3
max_in_flight = 100
thresholds = ["success_rate > 99%", "register_thing.p99 < 30s"]
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 20
client_id = "t-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "{pick:Berlin=1,Seattle=1}"
[[schedule]]
executor = "constant-arrival-rate"
rate = 40
duration = "1s"
"#;

#[tokio::test]
async fn a_small_run_provisions_every_device_and_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::load(&scenario(dir.path(), SMALL), &[]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.planned, 20);
    assert_eq!(summary.devices.provisioned, 20, "{:?}", summary.failures);
    assert_eq!(summary.devices.failed, 0);
    assert!(summary.thresholds_ok());
    assert_eq!(summary.stages["register_thing"].latency.count, 20);
    assert_eq!(summary.stages["total"].latency.count, 20);
    assert!(
        summary.stages["total"].latency.p50_ms >= summary.stages["register_thing"].latency.p50_ms
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "scenario",
        "started_at",
        "duration_s",
        "devices",
        "throughput",
        "stages",
        "failures",
        "thresholds",
    ] {
        assert!(json.get(key).is_some(), "summary.json lacks {key}");
    }
    for key in ["planned", "started", "provisioned", "failed", "dropped"] {
        assert!(json["devices"].get(key).is_some(), "devices.{key}");
    }
    for key in [
        "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "service",
    ] {
        assert!(
            json["stages"]["register_thing"].get(key).is_some(),
            "stages.register_thing.{key}"
        );
    }
    assert!(json["throughput"]["provisioned_per_s"].as_f64().unwrap() > 0.0);

    let devices = std::fs::read_to_string(out.join("devices.csv")).unwrap();
    assert_eq!(devices.lines().count(), 21);
    assert!(
        devices
            .lines()
            .next()
            .unwrap()
            .starts_with("seq,client_id,thing_name,start_lag_us")
    );
    assert!(devices.contains(",thing-007,"));
    let timeseries = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    assert!(timeseries.starts_with("elapsed_s,offered,started,completed,failed,"));
    // The harness's own CPU per interval: devices and the embedded mock did work.
    let mut reader = csv::Reader::from_reader(timeseries.as_bytes());
    let col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "cpu_percent")
        .expect("cpu_percent column");
    let cpu: Vec<f64> = reader
        .records()
        .map(|r| r.unwrap()[col].parse().unwrap())
        .collect();
    assert!(cpu.iter().all(|c| *c >= 0.0), "{cpu:?}");
    assert!(cpu.iter().any(|c| *c > 0.0), "{cpu:?}");
    assert!(
        std::fs::read_to_string(out.join("summary.csv"))
            .unwrap()
            .contains("register_thing,20,")
    );

    let hlog = std::fs::read(out.join("latency.hlog")).unwrap();
    let text = String::from_utf8_lossy(&hlog);
    assert!(text.contains("#[Histogram log format version 1.3]"));
    assert!(text.contains(
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    ));
    let mut total = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&hlog) {
        if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(h)) = entry
            && h.tag().map(|t| t.as_str()) == Some("register_thing")
        {
            let bytes = base64_decode(h.encoded_histogram());
            let hist: hdrhistogram::Histogram<u64> =
                hdrhistogram::serialization::Deserializer::new()
                    .deserialize(&mut &bytes[..])
                    .unwrap();
            total += hist.len();
        }
    }
    assert_eq!(total, 20, "register_thing samples across the interval log");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn arrivals_beyond_the_in_flight_cap_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let body = SMALL
        .replace("max_in_flight = 100", "max_in_flight = 1")
        .replace(
            "executor = \"constant-arrival-rate\"\nrate = 40\nduration = \"1s\"",
            "executor = \"burst\"\ncount = 10",
        );
    let s = Scenario::load(&scenario(dir.path(), &body), &[]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.provisioned, 1);
    assert_eq!(summary.devices.dropped, 9);
    assert!(
        !summary.thresholds_ok(),
        "success rate 10% must fail the threshold"
    );
    let failures = std::fs::read_to_string(out.join("failures.csv")).unwrap();
    assert_eq!(failures.matches(",dropped,").count(), 9);
}

#[test]
fn the_cli_exit_codes_distinguish_bad_scenarios_and_failed_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), SMALL);
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "run",
                path.to_str().unwrap(),
                "--no-tui",
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let failing = run(&[
        "--set",
        "devices.count=3",
        "--set",
        r#"thresholds=["total.p50 < 1us"]"#,
    ]);
    assert_eq!(
        failing.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&failing.stderr)
    );
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(stdout.contains("FAIL total.p50 < 1us"), "{stdout}");
    assert!(stdout.contains("register_thing"), "{stdout}");

    let bad = run(&["--set", "schedule.0.rate=-3"]);
    assert_eq!(bad.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("s.toml") && stderr.contains("schedule[0].rate"),
        "{stderr}"
    );

    std::fs::write(&path, SMALL.replace("count = 20", "count = \"many\"")).unwrap();
    let bad = Command::new(BIN)
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("s.toml") && stderr.contains("line 11"),
        "{stderr}"
    );
}

#[tokio::test]
async fn connections_dropped_mid_flow_are_failures_classified_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let body = SMALL.replace(
        "[devices]",
        "[target.mock.faults.register_thing]\ndisconnect_rate = 1.0\n[devices]",
    );
    let s = Scenario::load(&scenario(dir.path(), &body), &["devices.count=5".into()]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.failed, 5);
    assert_eq!(summary.devices.provisioned, 0);
    let reasons: Vec<&String> = summary.failures.keys().collect();
    assert!(
        summary
            .failures
            .keys()
            .all(|r| r.ends_with(".register_thing")),
        "{reasons:?}"
    );
    // The stages before the fault completed and were measured.
    assert_eq!(summary.stages["create_certificate"].latency.count, 5);
    assert_eq!(summary.stages["register_thing"].latency.count, 0);
    let mock = summary.mock.as_ref().unwrap();
    assert_eq!(mock.registry.things, 0);
    assert_eq!(mock.stats.create_from_csr_accepted, 5);
}

#[tokio::test]
async fn a_slow_endpoint_shows_intended_start_latency_above_service_time() {
    let dir = tempfile::tempdir().unwrap();
    let body = SMALL.replace(
        "[devices]",
        "[target.mock.faults.register_thing]\nlatency = \"300ms\"\n[devices]",
    );
    let s = Scenario::load(&scenario(dir.path(), &body), &["devices.count=8".into()]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.provisioned, 8);
    let reg = &summary.stages["register_thing"];
    assert!(reg.service.p50_ms >= 300.0, "{reg:?}");
    assert!(reg.latency.p50_ms > reg.service.p50_ms, "{reg:?}");
    let total = &summary.stages["total"];
    assert!(total.latency.p50_ms >= reg.latency.p50_ms, "{total:?}");
}

#[tokio::test]
async fn counts_agree_across_summary_devices_csv_and_the_mock_registry() {
    let dir = tempfile::tempdir().unwrap();
    let body = SMALL.replace("certificate = \"csr\"", "certificate = \"keys\"");
    let s = Scenario::load(&scenario(dir.path(), &body), &[]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    let rows = std::fs::read_to_string(out.join("devices.csv")).unwrap();
    let provisioned_rows = rows.lines().filter(|l| l.contains(",provisioned,")).count() as u64;
    let mock = summary.mock.as_ref().unwrap();
    assert_eq!(summary.devices.provisioned, 20);
    assert_eq!(provisioned_rows, summary.devices.provisioned);
    assert_eq!(mock.registry.things as u64, summary.devices.provisioned);
    assert_eq!(mock.stats.create_keys_accepted, 20);
    assert_eq!(mock.stats.register_thing_accepted, 20);
}

#[cfg(unix)]
#[test]
fn sigint_mid_run_leaves_complete_parseable_files() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Long enough that SIGINT lands mid-run: 40 devices/s for 30 s.
    let body = SMALL
        .replace("count = 20", "count = 1200")
        .replace("duration = \"1s\"", "duration = \"30s\"");
    let path = scenario(dir.path(), &body);
    let out = dir.path().join("out");
    let mut child = Command::new(BIN)
        .args([
            "run",
            path.to_str().unwrap(),
            "--no-tui",
            "--drain",
            "5s",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the second progress line: devices are running.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut progress = 0;
    while progress < 2 {
        let line = lines.next().expect("progress line").unwrap();
        if line.contains("provisioned") {
            progress += 1;
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::spawn(move || for _ in lines {});
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let provisioned = summary["devices"]["provisioned"].as_u64().unwrap();
    let started = summary["devices"]["started"].as_u64().unwrap();
    assert!(provisioned > 0 && started < 1200, "{summary}");
    let mut reader = csv::Reader::from_path(out.join("devices.csv")).unwrap();
    let rows = reader.records().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(rows.len() as u64, started, "every started device has a row");
    let mut reader = csv::Reader::from_path(out.join("timeseries.csv")).unwrap();
    assert!(
        reader
            .records()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len()
            >= 2
    );
}

fn probe(extra: &[&str]) -> fleetstorm::output::Summary {
    let dir = tempfile::tempdir().unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/throttle-probe.toml");
    let mut sets: Vec<String> = vec!["schedule.0.step_duration=\"2s\"".into()];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let s = Scenario::load(&path, &sets).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(fleet::run(s, options(dir.path()), CancellationToken::new()))
        .unwrap()
}

#[test]
fn the_throttle_probe_finds_the_default_register_thing_limit() {
    let summary = probe(&[]);
    let rate = summary.sustainable_rate_per_s.expect("a sustainable rate");
    assert!(
        (8.5..=11.5).contains(&rate),
        "{rate} not within 15% of 10/s: {:?}",
        summary.throttle
    );
    let th = summary.throttle.unwrap();
    assert_eq!(th.throttling_stage.as_deref(), Some("register_thing"));
    assert!(
        th.levels
            .iter()
            .any(|l| !l.sustainable && l.throttled_fraction > 0.05)
    );
    assert!(
        summary
            .failures
            .keys()
            .all(|k| k == "throttled.register_thing"),
        "{:?}",
        summary.failures
    );
}

#[test]
fn the_throttle_probe_follows_a_limit_changed_with_set() {
    let summary = probe(&[
        "target.mock.quotas.register_thing_per_s=20",
        "schedule.0.start_rate=4",
        "schedule.0.rate_step=4",
        "schedule.0.steps=7",
    ]);
    let rate = summary.sustainable_rate_per_s.expect("a sustainable rate");
    assert!(
        (17.0..=23.0).contains(&rate),
        "{rate} not within 15% of 20/s: {:?}",
        summary.throttle
    );
}

#[tokio::test]
async fn a_csr_run_does_not_fill_the_embedded_mocks_rsa_pool() {
    let dir = tempfile::tempdir().unwrap();
    let body = SMALL
        .replace("keys = \"p256\"", "keys = \"rsa2048\"\nkey_pool_size = 8")
        .replace("count = 20", "count = 10")
        .replace("rate = 40", "rate = 10");
    let path = scenario(dir.path(), &body);
    let s = Scenario::load(&path, &[]).unwrap();
    let out = dir.path().join("out");
    let summary = fleet::run(s, options(&out), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.devices.provisioned, 10);
    let keys = summary.mock.expect("embedded mock report").keys;
    // No device asks for keys, so no RSA key is generated: not ahead, not inline.
    assert_eq!(keys.generated_background, 0, "{keys:?}");
    assert_eq!(keys.generated_inline, 0, "{keys:?}");
    assert_eq!(keys.pooled, 0, "{keys:?}");
}
