//! `run --shard I/N`, `--shards N`, `--start-at`, `--run-id`: the shards of a run start exactly
//! the unsharded run's devices between them, on one shared schedule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::output::Summary;
use fleetstorm::scenario::Scenario;
use fleetstorm::shard::Shard;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Open phases only: a rate, a ramp and a burst, {uuid} in the client ID and {pick} in the
/// thing name (so identities show the per-seq random source). `count` = 30 ends the run inside
/// the burst.
fn open(count: u64) -> String {
    mini(
        count,
        r#"
[[schedule]]
executor = "constant-arrival-rate"
rate = 40
duration = "250ms"
[[schedule]]
executor = "ramping-arrival-rate"
start_rate = 10
stages = [{ target = 30, duration = "500ms" }]
[[schedule]]
executor = "burst"
count = 15
"#,
    )
}

/// A scenario of `count` devices against the embedded mock with this schedule.
fn mini(count: u64, schedule: &str) -> String {
    format!(
        r#"
name = "mini"
seed = 11
max_in_flight = 100
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = {count}
client_id = "sh-{{seq:03}}-{{uuid}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "77{{seq:06}}"
DeviceName = "thing-{{seq:03}}-{{pick:a=1,b=1,c=1}}"
DeviceLocation = "Berlin"
{schedule}
"#
    )
}

/// (seq, client_id, thing_name, outcome) of every devices.csv row.
fn devices(dir: &Path) -> Vec<(u64, String, String, String)> {
    let mut reader = csv::Reader::from_path(dir.join("devices.csv")).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].parse().unwrap(),
                r[1].to_string(),
                r[2].to_string(),
                r[11].to_string(),
            )
        })
        .collect()
}

async fn run_lib(body: &str, dir: &Path, out: &str, shard: Option<Shard>) -> Summary {
    let s = Scenario::load(&write(dir, "s.toml", body), &[]).unwrap();
    let options = RunOptions {
        drain: Duration::from_secs(5),
        shard,
        run_id: "fixed".into(),
        ..RunOptions::new(dir.join(out))
    };
    fleet::run(s, options, CancellationToken::new())
        .await
        .unwrap()
}

/// Run `body` (`devices.count` = `planned`) unsharded and as 2 and 4 shards: the shards' devices
/// are disjoint, their union is the unsharded run's (same seqs, client IDs with their {uuid},
/// thing names with their {pick}), and every shard started and planned its share.
async fn shards_union_to_the_whole(body: &str, expect_started: u64, planned: u64) {
    let dir = tempfile::tempdir().unwrap();
    let whole = run_lib(body, dir.path(), "whole", None).await;
    assert_eq!(whole.devices.started, expect_started, "{whole:?}");
    assert_eq!(
        whole.devices.provisioned, expect_started,
        "{:?}",
        whole.failures
    );
    assert!(whole.shard.is_none());
    let mut want = devices(&dir.path().join("whole"));
    want.sort();
    let seqs: Vec<u64> = want.iter().map(|d| d.0).collect();
    assert_eq!(seqs, (0..expect_started).collect::<Vec<_>>());
    for count in [2u64, 4] {
        let mut union = Vec::new();
        let mut provisioned = 0;
        for index in 0..count {
            let shard = Shard::new(index, count).unwrap();
            let out = format!("shard-{index}-of-{count}");
            let s = run_lib(body, dir.path(), &out, Some(shard)).await;
            let rows = devices(&dir.path().join(&out));
            assert!(rows.iter().all(|d| d.0 % count == index), "{out}: {rows:?}");
            assert_eq!(s.devices.planned, shard.share(planned), "{out}");
            assert_eq!(s.devices.started, shard.share(expect_started), "{out}");
            assert_eq!(rows.len() as u64, s.devices.started, "{out}");
            let recorded = s.shard.clone().expect("summary.shard");
            assert_eq!((recorded.index, recorded.count), (index, count));
            assert_eq!(recorded.start_at, None);
            provisioned += s.devices.provisioned;
            union.extend(rows);
        }
        union.sort();
        let ids: BTreeSet<&String> = union.iter().map(|d| &d.1).collect();
        assert_eq!(
            ids.len(),
            union.len(),
            "{count} shards: duplicate client IDs"
        );
        assert_eq!(
            union, want,
            "{count} shards: union differs from the whole run"
        );
        assert_eq!(provisioned, whole.devices.provisioned, "{count} shards");
    }
}

#[tokio::test]
async fn shards_start_exactly_the_unsharded_devices_when_the_count_ends_the_run() {
    shards_union_to_the_whole(&open(30), 30, 30).await;
}

#[tokio::test]
async fn shards_start_exactly_the_unsharded_devices_when_the_schedule_ends_the_run() {
    // 10 + 10 + 15 = 35 arrivals; 1000 devices would go on. Contiguous blocks of seqs per shard
    // would leave a gap here: interleaved seqs do not.
    let body = open(1000);
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::load(&write(dir.path(), "s.toml", &body), &[]).unwrap();
    assert_eq!(s.arrival_span().0, 35);
    shards_union_to_the_whole(&body, 35, 1000).await;
}

#[tokio::test]
async fn a_burst_splits_exactly() {
    let body = mini(1000, "[[schedule]]\nexecutor = \"burst\"\ncount = 13");
    let dir = tempfile::tempdir().unwrap();
    let mut seqs = Vec::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let s = run_lib(&body, dir.path(), &format!("{index}"), Some(shard)).await;
        // 13 = 5 + 4 + 4.
        assert_eq!(s.devices.started, [5, 4, 4][index as usize]);
        assert_eq!(s.devices.provisioned, s.devices.started, "{:?}", s.failures);
        seqs.extend(
            devices(&dir.path().join(format!("{index}")))
                .iter()
                .map(|d| d.0),
        );
    }
    seqs.sort();
    assert_eq!(seqs, (0..13).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_closed_model_phase_splits_its_devices_by_residue() {
    // Keep 6 in flight until 24 devices have run: each of 3 shards keeps 2 in flight and runs
    // seqs I, I+3, ... below 24.
    let body = mini(
        24,
        "[[schedule]]\nexecutor = \"ramping-concurrency\"\nstart = 6\nstages = [{ target = 6, duration = \"20s\" }]",
    );
    let body = body.as_str();
    let dir = tempfile::tempdir().unwrap();
    let whole = run_lib(body, dir.path(), "whole", None).await;
    assert_eq!(whole.devices.started, 24);
    let mut want = devices(&dir.path().join("whole"));
    want.sort();
    let mut union = Vec::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let s = run_lib(body, dir.path(), &format!("{index}"), Some(shard)).await;
        assert_eq!(s.devices.started, 8, "shard {index}");
        assert_eq!(s.devices.provisioned, 8, "shard {index}: {:?}", s.failures);
        union.extend(devices(&dir.path().join(format!("{index}"))));
    }
    union.sort();
    assert_eq!(union, want);
}

/// A loopback listener that notes the wall-clock instant of every connection and closes it:
/// the moment each device of any shard began (its claim connection), measured outside fleetstorm.
fn connection_clock() -> (u16, Arc<Mutex<Vec<SystemTime>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let at = SystemTime::now();
            log.lock().unwrap().push(at);
            drop(conn);
        }
    });
    (port, seen)
}

const TIMED: &str = r#"
name = "timed"
seed = 2
max_in_flight = 100
[target]
kind = "mock"
pki = "PKI"
[devices]
count = 1000
client_id = "t-{run}-{seq}"
[[schedule]]
executor = "constant-arrival-rate"
rate = 4.5
duration = "2s"
"#;

fn rfc3339_ms(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Two shard processes started 2 s apart with one --start-at: every device (of either shard)
/// connects within a few milliseconds of start_at + its offset in the unsharded schedule, so
/// the two schedules agree; their folders record the same start and interval grid.
#[test]
fn shards_started_apart_share_the_start_at_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fleetstorm::pki::Pki::init(&pki, &[], fleetstorm::pki::KeyAlgorithm::P256).unwrap();
    let path = write(
        dir.path(),
        "timed.toml",
        &TIMED.replace("PKI", pki.to_str().unwrap()),
    );
    let (port, seen) = connection_clock();
    // Whole milliseconds: --start-at as written is what the shards use.
    let start = SystemTime::now() + Duration::from_secs(5);
    let start = humantime::parse_rfc3339(&rfc3339_ms(start)).unwrap();
    let spawn = |shard: &[&str], index_var: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["run", path.to_str().unwrap(), "--no-tui"])
            .args(["--endpoint", &format!("127.0.0.1:{port}")])
            .args(["--start-at", &rfc3339_ms(start)])
            .args(shard)
            .env_remove("JOB_COMPLETION_INDEX")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(i) = index_var {
            cmd.env("JOB_COMPLETION_INDEX", i);
        }
        cmd.spawn().unwrap()
    };
    let first = spawn(&["--shard", "0/2"], None);
    // The second shard starts 2 s later (this delay is the situation under test).
    std::thread::sleep(Duration::from_secs(2));
    let second = spawn(&["--shards", "2"], Some("1"));
    let outs = [first, second].map(|c| c.wait_with_output().unwrap());
    for (i, o) in outs.iter().enumerate() {
        // Every device fails (the listener is no MQTT server): the run itself completes.
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(5),
            "shard {i}: {:?}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("waiting"), "shard {i}: {stderr}");
        assert!(
            stderr.contains(&format!("shard {i} of 2")),
            "shard {i}: {stderr}"
        );
    }

    // Measured outside fleetstorm: when each connection arrived, relative to start_at.
    let mut at: Vec<f64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| match t.duration_since(start) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        })
        .collect();
    at.sort_by(f64::total_cmp);
    assert_eq!(at.len(), 9, "{at:?}");
    // The unsharded schedule: 4.5 arrivals a second from start_at (none on a whole second, where
    // an interval closes), shard 0 the even ones.
    let deviation: Vec<f64> = at
        .iter()
        .enumerate()
        .map(|(k, t)| (t - k as f64 / 4.5) * 1000.0)
        .collect();
    eprintln!("connection time - scheduled time (ms): {deviation:?}");
    // A connection cannot come before its time; one can come late when the machine is busy
    // (2 cores, two processes and their devices waking at the same instant).
    assert!(
        deviation.iter().all(|d| (-2.0..50.0).contains(d)),
        "connections off the shared schedule (ms): {deviation:?}"
    );
    // How far apart the two shards' schedules are: the median lateness of shard 0's arrivals
    // (the even ones) against shard 1's (the odd ones).
    let median = |parity: usize| {
        let mut d: Vec<f64> = deviation.iter().skip(parity).step_by(2).copied().collect();
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    };
    let apart = (median(0) - median(1)).abs();
    eprintln!("shard schedules apart by {apart:.3} ms (medians)");
    // The shards started 2 s apart: a shard that anchored the schedule on its own start would be
    // about 2,000 ms off the other. 20 ms leaves room for two processes' timer wake-ups on a
    // 2-core machine (one run measured its shards 9.7 ms apart, each within 36 ms of the schedule).
    assert!(
        apart < 20.0,
        "shards' schedules {apart} ms apart: {deviation:?}"
    );

    let stamp = humantime::format_rfc3339_seconds(start)
        .to_string()
        .replace(':', "");
    let folders: Vec<PathBuf> = (0..2)
        .map(|i| {
            dir.path()
                .join("results")
                .join(format!("timed-{stamp}-shard-{i}-of-2"))
        })
        .collect();
    let summaries: Vec<serde_json::Value> = folders
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f.join("summary.json")).unwrap()).unwrap())
        .collect();
    let grids: Vec<Vec<(String, u64)>> = folders
        .iter()
        .map(|f| {
            let mut r = csv::Reader::from_path(f.join("timeseries.csv")).unwrap();
            r.records()
                .map(|r| {
                    let r = r.unwrap();
                    (r[0].to_string(), r[2].parse().unwrap())
                })
                .collect()
        })
        .collect();
    for (i, s) in summaries.iter().enumerate() {
        assert_eq!(s["started_at"], rfc3339_ms(start), "shard {i}");
        assert_eq!(s["shard"]["index"], i as u64);
        assert_eq!(s["shard"]["count"], 2);
        assert_eq!(s["shard"]["start_at"], rfc3339_ms(start));
        let lag = s["shard"]["start_lag_s"].as_f64().unwrap();
        assert!((0.0..0.05).contains(&lag), "shard {i} lag {lag}");
        assert_eq!(s["devices"]["started"], [5, 4][i], "shard {i}");
        assert_eq!(s["devices"]["planned"], 500, "shard {i}");
        let hlog = std::fs::read_to_string(folders[i].join("latency.hlog")).unwrap();
        let base = hlog
            .lines()
            .find_map(|l| l.strip_prefix("#[BaseTime: "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|secs| secs.parse::<f64>().ok())
            .expect("BaseTime");
        let want = start.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert!((base - want.as_secs_f64()).abs() < 0.001, "{base}");
        let page = std::fs::read_to_string(folders[i].join("report.html")).unwrap();
        assert!(
            page.contains(&format!("shard {i} of 2")),
            "shard {i}'s report"
        );
    }
    // One run ID, derived alike by both.
    assert_eq!(summaries[0]["run_id"], summaries[1]["run_id"]);
    // The first second of the schedule: shard 0's arrivals at 0, 444, 889 ms, shard 1's at 222,
    // 667 ms, counted in intervals that close on the same whole seconds.
    assert_eq!(grids[0][0], ("1.0".to_string(), 3), "{:?}", grids[0]);
    assert_eq!(grids[1][0], ("1.0".to_string(), 2), "{:?}", grids[1]);
}

/// A shard ready after its --start-at keeps the schedule: the arrivals already due start at
/// once (their start lag is how overdue they were), the later ones on time; the lag is reported.
#[test]
fn a_late_start_reports_its_lag_and_keeps_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fleetstorm::pki::Pki::init(&pki, &[], fleetstorm::pki::KeyAlgorithm::P256).unwrap();
    let body = TIMED.replace("PKI", pki.to_str().unwrap()).replace(
        "rate = 4.5\nduration = \"2s\"",
        "rate = 10\nduration = \"3s\"",
    );
    assert!(body.contains("rate = 10\n"), "{body}");
    let path = write(dir.path(), "late.toml", &body);
    let (port, _) = connection_clock();
    let start = SystemTime::now() - Duration::from_millis(1500);
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .args(["run", path.to_str().unwrap(), "--no-tui"])
        .args(["--endpoint", &format!("127.0.0.1:{port}")])
        .args(["--start-at", &rfc3339_ms(start), "--run-id", "late"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("after --start-at"), "{stderr}");
    assert!(stderr.contains("not shifted"), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["run_id"], "late");
    assert_eq!(s["shard"]["index"], 0);
    assert_eq!(s["shard"]["count"], 1);
    let lag = s["shard"]["start_lag_s"].as_f64().unwrap();
    assert!((1.5..4.0).contains(&lag), "lag {lag}");
    let rows = {
        let mut r = csv::Reader::from_path(out.join("devices.csv")).unwrap();
        r.records()
            .map(|r| {
                let r = r.unwrap();
                (
                    r[0].parse::<u64>().unwrap(),
                    r[3].parse::<f64>().unwrap() / 1e6,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows.len(), 30);
    for (seq, start_lag) in rows {
        let offset = seq as f64 * 0.1;
        if offset < lag - 0.05 {
            // Overdue at the start: started at once, as late as it was overdue.
            let overdue = lag - offset;
            assert!(
                (overdue - 0.05..overdue + 0.1).contains(&start_lag),
                "seq {seq}: lag {start_lag} s, overdue {overdue} s"
            );
        } else if offset > lag + 0.1 {
            // Due after the start: on its original time.
            assert!(start_lag < 0.05, "seq {seq}: lag {start_lag} s");
        }
    }
}

#[test]
fn bad_shard_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &open(30));
    let run = |args: &[&str], index_var: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["run", path.to_str().unwrap(), "--no-tui"])
            .args(args)
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some(v) = index_var {
            cmd.env("JOB_COMPLETION_INDEX", v);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    for (args, var, says) in [
        (&["--shard", "1/0"][..], None, "--shard"),
        (&["--shard", "3/2"], None, "out of range"),
        (&["--shard", "x"], None, "I/N"),
        (&["--shards", "2"], None, "JOB_COMPLETION_INDEX"),
        (&["--shards", "2"], Some("x"), "JOB_COMPLETION_INDEX"),
        (&["--shards", "2"], Some("2"), "out of range"),
        (&["--shards", "0"], Some("0"), "--shards"),
        (
            &["--shard", "0/2", "--shards", "2"],
            Some("0"),
            "cannot be used with",
        ),
        (&["--run-id", "Not-Base32!"], None, "--run-id"),
        (&["--start-at", "tomorrow"], None, "RFC 3339"),
        // More shards than the scenario's 30 devices: some shard would own none.
        (
            &["--shard", "60/100"],
            None,
            "--shard 60/100: more shards than",
        ),
        (&["--shard", "0/1000000000"], None, "would own none"),
        (
            &["--shards", "31"],
            Some("3"),
            "--shards 31: more shards than",
        ),
        // A start more than a day ahead: a typo more likely than a plan.
        (
            &["--start-at", "9999-01-01T00:00:00Z"],
            None,
            "add --wait-long",
        ),
        (&["--wait-long"], None, "--start-at"),
    ] {
        let (code, stderr) = run(args, var);
        assert_eq!(code, Some(2), "{args:?} {var:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} {var:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing ran: no results folder was made.
    assert!(!dir.path().join("results").exists());
}

/// SIGTERM while a shard waits for its --start-at: it stops at once, nothing started, and the
/// results folder is complete (interrupted, with its shard and start time).
#[test]
fn a_stop_while_waiting_for_start_at_still_writes_the_results() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &open(30));
    let out = dir.path().join("out");
    let start = SystemTime::now() + Duration::from_secs(600);
    let mut child = Command::new(BIN)
        .args(["run", path.to_str().unwrap(), "--no-tui", "--shard", "1/3"])
        .args(["--start-at", &rfc3339_ms(start)])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("waiting"))
        .expect("a waiting line");
    // It says how long: about 600 s.
    assert!(waiting.contains("for --start-at"), "{waiting}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::spawn(move || for _ in lines {});
    let began = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(began.elapsed() < Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(130));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["complete"], true);
    assert_eq!(s["devices"]["started"], 0);
    assert_eq!(s["devices"]["planned"], 10);
    assert_eq!(s["shard"]["index"], 1);
    assert_eq!(s["shard"]["start_at"], rfc3339_ms(start));
    for file in [
        "devices.csv",
        "timeseries.csv",
        "latency.hlog",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

/// `--wait-long` accepts a start more than a day ahead: the run waits for it (stopped here).
#[test]
fn a_start_days_ahead_waits_with_wait_long() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &open(30));
    let out = dir.path().join("out");
    let start = SystemTime::now() + Duration::from_secs(3 * 24 * 3600);
    let mut child = Command::new(BIN)
        .args(["run", path.to_str().unwrap(), "--no-tui", "--wait-long"])
        .args(["--start-at", &rfc3339_ms(start)])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("waiting"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::spawn(move || for _ in lines {});
    let status = child.wait().unwrap();
    assert!(waiting.is_some(), "no waiting line");
    assert_eq!(status.code(), Some(130));
}

/// A shard whose scenario uses {run} warns when nothing makes its run ID the other shards';
/// `--run-id` does.
#[test]
fn a_shard_without_a_shared_run_id_warns_when_the_scenario_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &open(30));
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let o = Command::new(BIN)
            .args(["run", path.to_str().unwrap(), "--no-tui", "--shard", "0/2"])
            .args(["--set", "devices.client_id=w-{run}-{seq}"])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        (String::from_utf8_lossy(&o.stderr).to_string(), s)
    };
    let (stderr, _) = run("a", &[]);
    assert!(
        stderr.contains("warning") && stderr.contains("{run}"),
        "{stderr}"
    );
    let (stderr, s) = run("b", &["--run-id", "job42"]);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(s["run_id"], "job42");
    let devices = std::fs::read_to_string(dir.path().join("b/devices.csv")).unwrap();
    assert!(devices.contains(",w-job42-0,"), "{devices}");
}
