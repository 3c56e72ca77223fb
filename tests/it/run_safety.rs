//! Nothing lost, nothing overwritten (issue 14 items 2, 3, 5): results folders are never shared,
//! `--out` and `--save-identities` refuse to overwrite, a `kill -9`ed run stays readable by
//! `report` and `compare`, SIGHUP stops a run gracefully and a second signal cuts the drain
//! short. Every test runs the real `fleetstorm` binary against its embedded mock (loopback,
//! ephemeral port).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// `count` devices at `rate`/s over `duration` against the embedded mock (P-256 keys: fast).
fn scenario(name: &str, count: u32, rate: u32, duration: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
seed = 7
[target]
kind = "mock"
[target.mock]
keys = "p256"
{extra}
[devices]
count = {count}
client_id = "safe-{{seq:05}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "safe-{{seq:05}}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = {rate}
duration = "{duration}"
"#
    )
}

fn write(dir: &Path, file: &str, body: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, body).unwrap();
    path
}

fn fleetstorm(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(dir: &Path) -> serde_json::Value {
    let path = dir.join("summary.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `devices.csv`'s rows, every one of them whole (same field count as the header).
fn device_rows(dir: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(dir.join("devices.csv")).unwrap();
    let header = reader.headers().unwrap().len();
    let rows: Vec<_> = reader.records().collect::<Result<_, _>>().unwrap();
    for row in &rows {
        assert_eq!(
            row.len(),
            header,
            "a corrupt row in {}: {row:?}",
            dir.display()
        );
    }
    rows
}

/// A `fleetstorm run` in the background, its stderr lines forwarded to a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// `fleetstorm run --no-tui --drain DRAIN SCENARIO --out OUT` in `cwd`.
    fn start(cwd: &Path, scenario: &Path, out: &Path, drain: &str) -> Running {
        let mut child = Command::new(BIN)
            .current_dir(cwd)
            .args(["run", "--no-tui", "--drain", drain])
            .arg(scenario)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line (from now on) matching `f`, within `timeout`.
    fn line(&mut self, f: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no such line ({e:?}); stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every stderr line, up to the end of the stream (the process has exited).
    fn all_lines(&mut self) -> &[String] {
        self.seen.extend(self.lines.iter());
        &self.seen
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status within `timeout`, else the process is killed and the test fails.
    fn exit_within(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {timeout:?}; stderr:\n{}",
                    self.seen.join("\n")
                );
            }
            // Polling the process for its exit (no event to wait on with std), not a sleep
            // standing in for an order of events.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The default results folder has one-second resolution: runs started in the same second used
/// to share it (devices.csv got both runs' rows). Two runs started together now get a folder
/// each.
#[test]
fn two_runs_started_together_get_two_folders_with_intact_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "twin.toml",
        &scenario("twin", 20, 40, "500ms", ""),
    );
    let path = path.to_str().unwrap();
    // Start both early in a wall-clock second, so that their default folder names (to the
    // second) are the same: the collision under test. This places the start in time; it does
    // not order the two processes, which run concurrently.
    let into_second = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second)));
    let runs: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(BIN)
                .current_dir(dir.path())
                .args(["run", "--no-tui", path])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut announced = Vec::new();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let folder = stderr
            .lines()
            .find_map(|l| l.split_once("; results in ").map(|(_, f)| f.to_string()))
            .unwrap_or_else(|| panic!("no results folder on stderr: {stderr}"));
        announced.push(dir.path().join(folder));
    }
    announced.sort();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert_eq!(folders, announced, "each run says where its results go");
    let names: Vec<String> = folders
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if names[0].len() == "twin-2026-01-01T000000Z".len() && names[1].starts_with(&names[0]) {
        assert_eq!(names[1], format!("{}-2", names[0]));
    }
    let mut run_ids = Vec::new();
    for folder in &folders {
        let rows = device_rows(folder);
        assert_eq!(rows.len(), 20, "{}", folder.display());
        let s = summary(folder);
        assert_eq!(s["devices"]["provisioned"], 20, "{s}");
        assert_eq!(s["complete"], true, "{s}");
        run_ids.push(s["run_id"].as_str().unwrap().to_string());
    }
    assert_ne!(run_ids[0], run_ids[1]);
}

#[test]
fn out_on_a_non_empty_folder_is_refused_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &scenario("s", 5, 20, "250ms", ""));
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--no-tui",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        fleetstorm(dir.path(), &args)
    };
    let first = run(&[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let first_id = summary(&out)["run_id"].clone();

    let refused = run(&[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(out.to_str().unwrap()) && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        summary(&out)["run_id"],
        first_id,
        "the earlier run is untouched"
    );

    let overwritten = run(&["--overwrite"]);
    assert_eq!(
        overwritten.status.code(),
        Some(0),
        "{}",
        text(&overwritten.stderr)
    );
    assert_ne!(summary(&out)["run_id"], first_id);
    assert_eq!(device_rows(&out).len(), 5, "only the new run's rows");

    // An empty folder made beforehand is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let ok = fleetstorm(
        dir.path(),
        &[
            "run",
            "--no-tui",
            path.to_str().unwrap(),
            "--out",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
}

#[test]
fn save_identities_never_overwrites_the_keys_of_an_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &scenario("s", 3, 20, "150ms", ""));
    let ids = dir.path().join("ids");
    let run = |out: &str| {
        fleetstorm(
            dir.path(),
            &[
                "run",
                "--no-tui",
                path.to_str().unwrap(),
                "--out",
                out,
                "--save-identities",
                ids.to_str().unwrap(),
            ],
        )
    };
    let first = run("out1");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let key = ids.join("safe-00000.private.key");
    let before = std::fs::read(&key).unwrap();
    assert!(ids.join("safe-00000.cert.pem").is_file());

    // Same seed, same thing names: the second run would write the same files.
    let second = run("out2");
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("safe-00000.") && stderr.contains("never overwrites"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out2").exists(),
        "refused before the run: no results folder"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

/// `kill -9` mid-run: `summary.json` is there (at most an interval old, `"complete": false`) and
/// `report` and `compare` read the folder and say it is incomplete.
#[test]
fn a_run_killed_with_sigkill_is_readable_and_reported_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &scenario("s", 2400, 40, "60s", ""));
    let out = dir.path().join("killed");
    let mut run = Running::start(dir.path(), &path, &out, "10s");
    // Two progress lines: two intervals, each rewrote the summary.
    for _ in 0..2 {
        run.line(|l| l.contains("provisioned"), Duration::from_secs(60));
    }
    run.signal("KILL");
    let status = run.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), None, "killed by a signal");

    let s = summary(&out);
    assert_eq!(s["complete"], false, "{s}");
    assert!(s["devices"]["provisioned"].as_u64().unwrap() > 0, "{s}");
    assert!(s["duration_s"].as_f64().unwrap() >= 1.0, "{s}");

    let report = fleetstorm(dir.path(), &["report", out.to_str().unwrap()]);
    let stdout = text(&report.stdout);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Incomplete run"), "no banner in report.html");

    // A complete run of the same scenario file, compared with the killed one.
    let done = dir.path().join("done");
    let finished = fleetstorm(
        dir.path(),
        &[
            "run",
            "--no-tui",
            path.to_str().unwrap(),
            "--set",
            "devices.count=40",
            "--set",
            "schedule.0.duration=1s",
            "--out",
            done.to_str().unwrap(),
        ],
    );
    assert_eq!(
        finished.status.code(),
        Some(0),
        "{}",
        text(&finished.stderr)
    );
    let compare = fleetstorm(
        dir.path(),
        &[
            "compare",
            done.to_str().unwrap(),
            out.to_str().unwrap(),
            "--out",
            dir.path().join("compare.csv").to_str().unwrap(),
        ],
    );
    let stdout = text(&compare.stdout);
    assert_eq!(compare.status.code(), Some(0), "{}", text(&compare.stderr));
    assert!(stdout.contains("killed: INCOMPLETE run"), "{stdout}");
    assert!(!stdout.contains("done: INCOMPLETE"), "{stdout}");
    assert!(
        !stdout.contains("different scenarios"),
        "same scenario file: {stdout}"
    );
}

/// A dropped ssh session (SIGHUP) stops the run like SIGTERM: drained, every file written.
#[test]
fn sighup_stops_the_run_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "s.toml", &scenario("s", 2400, 40, "60s", ""));
    let out = dir.path().join("out");
    let mut run = Running::start(dir.path(), &path, &out, "10s");
    run.line(|l| l.contains("provisioned"), Duration::from_secs(60));
    run.signal("HUP");
    run.line(
        |l| l.starts_with("SIGHUP: stopping"),
        Duration::from_secs(10),
    );
    let status = run.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let s = summary(&out);
    assert_eq!(s["complete"], true, "{s}");
    assert_eq!(s["interrupted"], true, "{s}");
    let started = s["devices"]["started"].as_u64().unwrap();
    assert!(started > 0 && started < 2400, "{s}");
    assert_eq!(device_rows(&out).len() as u64, started);
    assert!(out.join("report.html").is_file());
}

/// Devices that cannot finish (RegisterThing is never answered, its timeout is 10 minutes) and a
/// 10-minute drain: the first SIGTERM starts the drain, the second aborts it at once; the
/// devices in flight are recorded as aborted and every file is written.
#[test]
fn a_second_signal_aborts_the_drain_and_still_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = "[target.mock.faults.register_thing]\ndrop_response_rate = 1.0";
    let body = scenario("stuck", 2400, 40, "60s", stuck).replace(
        "[devices]\n",
        "[devices]\ntimeouts = { register_thing = \"10m\" }\n",
    );
    let path = write(dir.path(), "s.toml", &body);
    let out = dir.path().join("out");
    let mut run = Running::start(dir.path(), &path, &out, "10m");
    // Devices waiting for RegisterThing: in flight, none provisioned.
    run.line(
        |l| {
            l.split("in flight")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        },
        Duration::from_secs(60),
    );
    run.signal("TERM");
    // The first signal handled (a second sent before could merge with it in the kernel).
    run.line(
        |l| l.starts_with("SIGTERM: stopping"),
        Duration::from_secs(10),
    );
    let second = Instant::now();
    run.signal("TERM");
    let status = run.exit_within(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    assert!(
        second.elapsed() < Duration::from_secs(60),
        "the drain was not cut short"
    );
    assert!(
        run.all_lines()
            .iter()
            .any(|l| l.starts_with("SIGTERM again")),
        "{:?}",
        run.seen
    );
    let s = summary(&out);
    assert_eq!(s["complete"], true, "{s}");
    let started = s["devices"]["started"].as_u64().unwrap();
    let aborted = s["failures"]["aborted"].as_u64().unwrap_or(0);
    assert!(aborted > 0, "{s}");
    assert_eq!(s["devices"]["provisioned"], 0, "{s}");
    assert_eq!(aborted, started, "every started device was in flight: {s}");
    let rows = device_rows(&out);
    assert_eq!(rows.len() as u64, started);
    assert!(
        rows.iter()
            .all(|r| &r[11] == "failed" && &r[12] == "aborted")
    );
    for file in [
        "summary.csv",
        "timeseries.csv",
        "failures.csv",
        "latency.hlog",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

/// `compare` warns, before its table, when the runs are of different scenarios.
#[test]
fn compare_warns_when_runs_are_of_different_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", &scenario("alpha", 5, 20, "250ms", ""));
    let b = write(dir.path(), "b.toml", &scenario("beta", 5, 20, "250ms", ""));
    for (path, out) in [(&a, "ra"), (&b, "rb"), (&a, "ra2")] {
        let o = fleetstorm(
            dir.path(),
            &["run", "--no-tui", path.to_str().unwrap(), "--out", out],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    assert_eq!(
        summary(&dir.path().join("ra"))["scenario_sha256"],
        summary(&dir.path().join("ra2"))["scenario_sha256"]
    );
    let compare = |dirs: &[&str]| {
        let mut args = vec!["compare"];
        args.extend(dirs);
        let o = fleetstorm(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let warned = compare(&["ra", "rb"]);
    let warning = warned
        .lines()
        .find(|l| l.contains("WARNING: the runs are of different scenarios"))
        .unwrap_or_else(|| panic!("no warning: {warned}"));
    assert!(
        warning.contains("\"alpha\"") && warning.contains("\"beta\""),
        "{warning}"
    );
    let table = warned.find("metric").unwrap();
    assert!(warned.find("WARNING").unwrap() < table, "before the table");
    let html = std::fs::read_to_string(dir.path().join("compare.html")).unwrap();
    assert!(html.contains("different scenarios"), "compare.html");

    let same = compare(&["ra", "ra2"]);
    assert!(!same.contains("different scenarios"), "{same}");

    // Same name, edited file: a different scenario too.
    std::fs::write(&a, scenario("alpha", 6, 20, "250ms", "")).unwrap();
    let o = fleetstorm(
        dir.path(),
        &["run", "--no-tui", a.to_str().unwrap(), "--out", "ra3"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let edited = compare(&["ra", "ra3"]);
    assert!(edited.contains("different scenarios"), "{edited}");
}
