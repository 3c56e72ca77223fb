//! `fleetstorm merge`: a real run on the embedded mock (loopback, ephemeral port) split into
//! shard folders (its latency.hlog's values dealt out among N histograms per interval) and merged
//! back exactly; the refusals; timeseries rows summed by wall-clock interval.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use rand::{RngExt, SeedableRng};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// 60 devices over 3 s, a fifth of the RegisterThing calls answered with an error (failures to
/// concatenate); one threshold passes and one fails (exit 5, in the run and in the merge).
const RUN: &str = r#"
name = "merge-test"
seed = 5
thresholds = ["success_rate > 10%", "failed < 1"]
[target]
kind = "mock"
[target.mock]
keys = "p256"
[target.mock.faults.register_thing]
error_rate = 0.2
[devices]
count = 60
client_id = "m-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "3s"
"#;

/// A fresh folder under cargo's scratch directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("merge-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fleetstorm(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `fleetstorm merge DIRS --out OUT EXTRA...`.
fn merge(dirs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("merge")
        .args(dirs)
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd.output().unwrap()
}

/// The one real run the split-and-merge tests share.
fn the_run() -> &'static Path {
    static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();
    RUN_DIR.get_or_init(|| {
        let dir = scratch("run");
        let scenario = dir.join("s.toml");
        std::fs::write(&scenario, RUN).unwrap();
        let out = dir.join("out");
        let output = fleetstorm(&["run", "--no-tui"], &[&scenario, Path::new("--out"), &out]);
        assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
        out
    })
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A CSV file as (header, rows).
fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for row in rows {
        w.write_record(row).unwrap();
    }
    w.flush().unwrap();
}

/// An interval log: (StartTime, BaseTime) and its tagged intervals, empty ones included.
struct Log {
    start: Option<Duration>,
    base: Option<Duration>,
    intervals: Vec<(String, Duration, Duration, Histogram<u64>)>,
}

fn read_log(path: &Path) -> Log {
    let bytes = std::fs::read(path).unwrap();
    let mut log = Log {
        start: None,
        base: None,
        intervals: Vec::new(),
    };
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.unwrap() {
            LogEntry::StartTime(t) => log.start = Some(t),
            LogEntry::BaseTime(t) => log.base = Some(t),
            LogEntry::Interval(i) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = deserializer.deserialize(&mut raw.as_slice()).unwrap();
                let tag = i.tag().unwrap().as_str().to_string();
                log.intervals
                    .push((tag, i.start_timestamp(), i.duration(), h));
            }
        }
    }
    log
}

fn write_log(path: &Path, log: &Log) {
    let epoch = std::time::UNIX_EPOCH;
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    if let Some(t) = log.start {
        builder.with_start_time(epoch + t);
    }
    if let Some(t) = log.base {
        builder.with_base_time(epoch + t);
    }
    let mut w = builder.begin_log_with(&mut out, &mut serializer).unwrap();
    for (tag, start, length, h) in &log.intervals {
        w.write_histogram(h, *start, *length, Tag::new(tag))
            .unwrap();
    }
    std::fs::write(path, out).unwrap();
}

/// Per tag, every interval added.
fn totals(log: &Log) -> BTreeMap<String, Histogram<u64>> {
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for (tag, _, _, h) in &log.intervals {
        let t = totals.entry(tag.clone()).or_insert_with(|| {
            let mut t = Histogram::new(3).unwrap();
            t.auto(true);
            t
        });
        t.add(h).unwrap();
    }
    totals
}

/// Split a run folder into `n` shard folders below `parent`: each interval's recorded values
/// dealt out at random (fixed seed) among n histograms, devices, failures and created rows by
/// `seq % n`, the summary's counts those of the shard's devices, the timeseries in shard 0.
fn split(run: &Path, parent: &Path, n: u32, seed: u64) -> Vec<PathBuf> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let log = read_log(&run.join("latency.hlog"));
    let mut logs: Vec<Log> = (0..n)
        .map(|_| Log {
            start: log.start,
            base: log.base,
            intervals: Vec::new(),
        })
        .collect();
    for (tag, start, length, h) in &log.intervals {
        let mut parts: Vec<Histogram<u64>> = (0..n).map(|_| Histogram::new_from(h)).collect();
        for v in h.iter_recorded() {
            for _ in 0..v.count_at_value() {
                let i = rng.random_range(0..n as usize);
                parts[i].record(v.value_iterated_to()).unwrap();
            }
        }
        for (i, part) in parts.into_iter().enumerate() {
            // Empty parts are written too: a shard's log may hold empty intervals.
            logs[i].intervals.push((tag.clone(), *start, *length, part));
        }
    }
    let (dev_header, devices) = csv_rows(&run.join("devices.csv"));
    let (fail_header, failures) = csv_rows(&run.join("failures.csv"));
    let (created_header, created) = csv_rows(&run.join("created.csv"));
    let (ts_header, ts_rows) = csv_rows(&run.join("timeseries.csv"));
    let col = |header: &[String], name: &str| header.iter().position(|h| h == name).unwrap();
    let seq_of_client: BTreeMap<String, u64> = devices
        .iter()
        .map(|r| {
            (
                r[col(&dev_header, "client_id")].clone(),
                r[col(&dev_header, "seq")].parse().unwrap(),
            )
        })
        .collect();
    let summary = json(&run.join("summary.json"));
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = parent.join(format!("shard-{i}-of-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mine = |seq: u64| seq % u64::from(n) == u64::from(i);
        let my_devices: Vec<Vec<String>> = devices
            .iter()
            .filter(|r| mine(r[col(&dev_header, "seq")].parse().unwrap()))
            .cloned()
            .collect();
        write_csv(&dir.join("devices.csv"), &dev_header, &my_devices);
        let my_failures: Vec<Vec<String>> = failures
            .iter()
            .filter(|r| mine(r[col(&fail_header, "seq")].parse().unwrap()))
            .cloned()
            .collect();
        write_csv(&dir.join("failures.csv"), &fail_header, &my_failures);
        let my_created: Vec<Vec<String>> = created
            .iter()
            .filter(|r| mine(seq_of_client[&r[col(&created_header, "device")]]))
            .cloned()
            .collect();
        write_csv(&dir.join("created.csv"), &created_header, &my_created);
        let rows = if i == 0 { ts_rows.clone() } else { Vec::new() };
        write_csv(&dir.join("timeseries.csv"), &ts_header, &rows);
        write_log(&dir.join("latency.hlog"), &logs[i as usize]);
        std::fs::copy(run.join("scenario.toml"), dir.join("scenario.toml")).unwrap();

        let outcome = col(&dev_header, "outcome");
        let provisioned = my_devices
            .iter()
            .filter(|r| r[outcome] == "provisioned")
            .count();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for r in my_devices.iter().filter(|r| r[outcome] == "failed") {
            *reasons
                .entry(r[col(&dev_header, "reason")].clone())
                .or_default() += 1;
        }
        let mut s = summary.clone();
        s["shard"] =
            serde_json::json!({"index": i, "count": n, "start_at": null, "start_lag_s": 0.0});
        s["devices"] = serde_json::json!({
            "planned": my_devices.len(), "started": my_devices.len(),
            "provisioned": provisioned, "failed": my_devices.len() - provisioned, "dropped": 0,
        });
        s["failures"] = serde_json::to_value(&reasons).unwrap();
        // A shard's summary counts the values of its own log, as a run's does.
        for (tag, h) in totals(&logs[i as usize]) {
            let (stage, service) = match tag.strip_suffix(".service") {
                Some(stage) => (stage.to_string(), true),
                None => (tag.clone(), false),
            };
            let entry = &mut s["stages"][stage.as_str()];
            let entry = if service {
                &mut entry["service"]
            } else {
                entry
            };
            entry["count"] = h.len().into();
        }
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_vec_pretty(&s).unwrap(),
        )
        .unwrap();
        dirs.push(dir);
    }
    dirs
}

fn paths(dirs: &[PathBuf]) -> Vec<&Path> {
    dirs.iter().map(PathBuf::as_path).collect()
}

/// Rows sorted by their `seq` column.
fn by_seq(path: &Path) -> Vec<Vec<String>> {
    let (header, mut rows) = csv_rows(path);
    let seq = header.iter().position(|h| h == "seq").unwrap();
    rows.sort_by_key(|r| r[seq].parse::<u64>().unwrap());
    rows
}

fn merge_exactly(n: u32) {
    let run = the_run();
    let parent = scratch(&format!("exact-{n}"));
    let shards = split(run, &parent, n, 42 + u64::from(n));
    let out = parent.join("merged");
    // Given in reverse: the merge orders them by shard.
    let mut given = paths(&shards);
    given.reverse();
    let o = merge(&given, &out, &[]);
    assert_eq!(o.status.code(), Some(5), "failed < 1 fails: {}", stderr(&o));

    let original = json(&run.join("summary.json"));
    let merged = json(&out.join("summary.json"));
    // Every stage: count, mean, p50, p90, p99, p99.9 and max, latency and service time.
    assert_eq!(merged["stages"], original["stages"], "n = {n}");
    for key in ["devices", "failures", "success_rate", "thresholds"] {
        assert_eq!(merged[key], original[key], "{key}, n = {n}");
    }
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), n as usize);
    assert_eq!(merged["merged_from"][0]["shard"]["index"], 0);
    assert!(merged.get("shards_missing").is_none());
    assert_eq!(merged["complete"], true);

    // The merged log reads back with hdrhistogram's reader, and per tag its intervals add up
    // to the original's histogram: the same minimum, maximum, mean and every percentile.
    let original_log = totals(&read_log(&run.join("latency.hlog")));
    let merged_log = totals(&read_log(&out.join("latency.hlog")));
    assert_eq!(
        merged_log.keys().collect::<Vec<_>>(),
        original_log.keys().collect::<Vec<_>>()
    );
    for (tag, h) in &original_log {
        let m = &merged_log[tag];
        assert_eq!(
            (m.len(), m.min(), m.max(), m.mean()),
            (h.len(), h.min(), h.max(), h.mean()),
            "{tag}"
        );
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.value_at_quantile(q), h.value_at_quantile(q), "{tag} q{q}");
        }
        assert_eq!(m, h, "{tag}");
    }
    // The timeseries (all in shard 0) comes back as it was, per-interval percentiles included
    // (recomputed from the merged intervals).
    assert_eq!(
        std::fs::read_to_string(out.join("timeseries.csv")).unwrap(),
        std::fs::read_to_string(run.join("timeseries.csv")).unwrap()
    );
    assert_eq!(
        by_seq(&out.join("devices.csv")),
        by_seq(&run.join("devices.csv"))
    );
    // Failures in time order (rows of one millisecond in any order).
    let sorted = |path: &Path| {
        let mut rows = csv_rows(path).1;
        rows.sort_by(|a, b| {
            let t = |r: &Vec<String>| r[0].parse::<f64>().unwrap();
            t(a).total_cmp(&t(b)).then(a.cmp(b))
        });
        rows
    };
    let times: Vec<f64> = csv_rows(&out.join("failures.csv"))
        .1
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(
        sorted(&out.join("failures.csv")),
        sorted(&run.join("failures.csv"))
    );
    assert_eq!(
        csv_rows(&out.join("created.csv")).1.len(),
        csv_rows(&run.join("created.csv")).1.len()
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!("merge of {n} shards")), "n = {n}");
}

#[test]
fn a_run_split_into_2_shard_logs_merges_back_exactly() {
    merge_exactly(2);
}

#[test]
fn a_run_split_into_4_shard_logs_merges_back_exactly() {
    merge_exactly(4);
}

/// Copy a folder (flat).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn edit_summary(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("summary.json");
    let mut s = json(&path);
    edit(&mut s);
    std::fs::write(&path, serde_json::to_vec_pretty(&s).unwrap()).unwrap();
}

#[test]
fn folders_that_do_not_merge_are_refused_with_the_folders_named() {
    let run = the_run();
    let parent = scratch("refusals");
    let shards = split(run, &parent.join("job"), 4, 7);
    let out = parent.join("out");
    let refused = |o: &Output, needles: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
        let e = stderr(o);
        for n in needles {
            assert!(e.contains(n), "{n:?} not in: {e}");
        }
        assert!(!out.exists(), "a refused merge wrote nothing");
    };
    let name = |p: &Path| p.display().to_string();

    // Another scenario: by name, and by the scenario file's hash.
    let other = parent.join("other");
    copy_dir(&shards[1], &other);
    edit_summary(&other, |s| s["scenario"] = "something-else".into());
    let o = merge(&[&shards[0], &other, &shards[2], &shards[3]], &out, &[]);
    refused(
        &o,
        &["different scenarios", &name(&other), "something-else"],
    );
    edit_summary(&other, |s| {
        s["scenario"] = "merge-test".into();
        s["scenario_sha256"] = "00ff".into();
    });
    let o = merge(&[&shards[0], &other, &shards[2], &shards[3]], &out, &[]);
    refused(&o, &["different scenarios", "00ff"]);

    // The same shard twice, different shard counts, a whole run with a shard.
    let again = parent.join("again");
    copy_dir(&shards[2], &again);
    let o = merge(
        &[&shards[0], &shards[1], &shards[2], &again, &shards[3]],
        &out,
        &[],
    );
    refused(
        &o,
        &["overlapping shards", &name(&again), "same shard", "2/4"],
    );
    edit_summary(
        &again,
        |s| {
            s["shard"] =
                serde_json::json!({"index": 1, "count": 2, "start_at": null, "start_lag_s": 0.0})
        },
    );
    let o = merge(&[&shards[0], &again], &out, &[]);
    refused(&o, &["overlapping shards", "into 4 and 2 shards"]);
    let o = merge(&[run, &shards[1]], &out, &[]);
    refused(&o, &["overlapping shards", &name(run), "unsharded"]);

    // A missing shard is named; --partial merges the others and says which is missing.
    let o = merge(&[&shards[0], &shards[1], &shards[3]], &out, &[]);
    refused(&o, &["missing shards: 2/4", "--partial"]);
    let o = merge(&[&shards[0], &shards[1], &shards[3]], &out, &["--partial"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("missing shards: 2/4"));
    let merged = json(&out.join("summary.json"));
    assert_eq!(merged["shards_missing"], serde_json::json!([2]));
    let shard_devices = |i: usize| {
        json(&shards[i].join("summary.json"))["devices"]["started"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        merged["devices"]["started"].as_u64().unwrap(),
        shard_devices(0) + shard_devices(1) + shard_devices(3)
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("merge of 3 shards (missing: 2)"));

    // The results folder is claimed as `run --out` claims it.
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let o = merge(&paths(&shards), &out, &["--overwrite"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        json(&out.join("summary.json"))
            .get("shards_missing")
            .is_none()
    );
    std::fs::remove_dir_all(&out).unwrap();

    // An incomplete (killed) folder needs --partial.
    let killed = parent.join("killed");
    copy_dir(&shards[3], &killed);
    edit_summary(&killed, |s| s["complete"] = false.into());
    let o = merge(&[&shards[0], &shards[1], &shards[2], &killed], &out, &[]);
    refused(&o, &["incomplete", &name(&killed), "--partial"]);

    // A variants folder: merged variant by variant, not as one.
    let variants = parent.join("variants");
    copy_dir(&shards[0], &variants.join("fast"));
    let o = merge(&[&variants, &shards[1]], &out, &[]);
    refused(&o, &["variants folder", "fast"]);
}

#[test]
fn a_corrupt_file_is_named_with_its_line_and_exit_3() {
    let run = the_run();
    let parent = scratch("corrupt");
    let shards = split(run, &parent.join("job"), 2, 9);
    let out = parent.join("out");
    let hlog = shards[1].join("latency.hlog");
    let text = std::fs::read_to_string(&hlog).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines.iter().position(|l| l.starts_with("Tag=")).unwrap() + 2;
    lines[at] = lines[at].replacen("HISTF", "HISTx", 1);
    std::fs::write(&hlog, lines.join("\n") + "\n").unwrap();
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&hlog.display().to_string()) && e.contains(&format!("line {}:", at + 1)),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");

    std::fs::write(&hlog, text).unwrap();
    let devices = shards[0].join("devices.csv");
    let mut text = std::fs::read_to_string(&devices).unwrap();
    text.push_str("soon,x,,0,,,,,,0,0,failed,x,1\n");
    std::fs::write(&devices, text).unwrap();
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("devices.csv") && e.contains("column `seq`") && e.contains("\"soon\""),
        "{e}"
    );
}

/// The shards of two runs (another run ID, another --start-at) are refused with both folders
/// named; `--mixed-runs` merges them and says so.
#[test]
fn shards_of_two_runs_are_refused_unless_mixed_runs() {
    let run = the_run();
    let parent = scratch("two-runs");
    let shards = split(run, &parent.join("job"), 2, 11);
    let out = parent.join("out");
    let name = |p: &Path| p.display().to_string();
    let run_id = json(&run.join("summary.json"))["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = parent.join("other");
    copy_dir(&shards[1], &other);
    edit_summary(&other, |s| s["run_id"] = "otherrun".into());
    let o = merge(&[&shards[0], &other], &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    for needle in [
        "different runs",
        &name(&shards[0]),
        &name(&other),
        "\"otherrun\"",
        &run_id,
        "--mixed-runs",
    ] {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
    assert!(!out.exists(), "a refused merge wrote nothing");

    // One run ID, but another --start-at.
    edit_summary(&other, |s| {
        s["run_id"] = run_id.clone().into();
        s["shard"]["start_at"] = "2026-01-08T00:00:00.000Z".into();
    });
    let o = merge(&[&shards[0], &other], &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("different runs")
            && e.contains("--start-at 2026-01-08T00:00:00.000Z")
            && e.contains("--start-at none"),
        "{e}"
    );

    let o = merge(&[&shards[0], &other], &out, &["--mixed-runs"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("note:") && stdout.contains("--mixed-runs"),
        "{stdout}"
    );
    assert_eq!(
        json(&out.join("summary.json"))["merged_from"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A shard whose latency.hlog does not hold what its own summary.json counts (cut short,
/// emptied) is named with exit 3; an incomplete folder merged with --partial gets a note.
#[test]
fn a_shard_with_a_truncated_or_empty_log_is_named_with_exit_3() {
    let run = the_run();
    let parent = scratch("truncated");
    let shards = split(run, &parent.join("job"), 2, 13);
    let out = parent.join("out");
    let hlog = shards[1].join("latency.hlog");
    let text = std::fs::read_to_string(&hlog).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() / 2;
    let truncated = lines[..cut].join("\n") + "\n";
    for (what, content) in [("truncated", truncated.as_str()), ("empty", "")] {
        std::fs::write(&hlog, content).unwrap();
        let o = merge(&paths(&shards), &out, &[]);
        assert_eq!(o.status.code(), Some(3), "{what}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&hlog.display().to_string())
                && e.contains("summary.json counts")
                && e.contains("truncated"),
            "{what}: {e}"
        );
        assert!(!out.exists(), "{what}: nothing written");
    }
    // The summary's own counts are checked too: a summary counting more than its log.
    std::fs::write(&hlog, &text).unwrap();
    edit_summary(&shards[0], |s| {
        let n = s["stages"]["total"]["count"].as_u64().unwrap();
        s["stages"]["total"]["count"] = (n + 1).into();
    });
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("tag total holds"), "{}", stderr(&o));
    // Incomplete (killed between writing the two): merged with --partial, with a note.
    edit_summary(&shards[0], |s| s["complete"] = false.into());
    let o = merge(&paths(&shards), &out, &["--partial"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("tag total holds") && stdout.contains("incomplete folder"),
        "{stdout}"
    );
}

/// devices.csv cells are parsed with their types: a seq of -7 or 0.5 is a malformed file (not
/// overlapping shards), so is a seq twice in one file or an outcome a run never writes.
#[test]
fn devices_csv_cells_are_parsed_with_their_types() {
    let run = the_run();
    let parent = scratch("device-cells");
    let shards = split(run, &parent.join("job"), 2, 17);
    let out = parent.join("out");
    let devices = shards[1].join("devices.csv");
    let (header, rows) = csv_rows(&devices);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let with = |edit: &dyn Fn(&mut Vec<Vec<String>>)| {
        let mut rows = rows.clone();
        edit(&mut rows);
        write_csv(&devices, &header, &rows);
        merge(&paths(&shards), &out, &[])
    };
    for (column, cell) in [
        ("seq", "-7"),
        ("seq", "0.5"),
        ("start_lag_us", "-1"),
        ("outcome", "maybe"),
        ("attempts", "0"),
    ] {
        let o = with(&|rows| rows[1][col(column)] = cell.into());
        assert_eq!(o.status.code(), Some(3), "{column} {cell}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&devices.display().to_string())
                && e.contains("line 3:")
                && e.contains(&format!("column `{column}`: {cell:?}")),
            "{column} {cell}: {e}"
        );
        assert!(!e.contains("overlapping"), "{e}");
    }
    let o = with(&|rows| {
        let again = rows[0].clone();
        rows.push(again);
    });
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    let seq = &rows[0][col("seq")];
    assert!(
        e.contains(&devices.display().to_string())
            && e.contains(&format!("device seq {seq} again (line 2)")),
        "{e}"
    );
    write_csv(&devices, &header, &rows);
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}

/// A hand-made run folder: `started_at`, shard, timeseries rows and the `register_thing`
/// latencies (µs) of interval 0.
fn folder(dir: &Path, started_at: &str, shard: u32, rows: &[&str], latencies: &[u64]) {
    std::fs::create_dir_all(dir).unwrap();
    let summary = serde_json::json!({
        "scenario": "ts", "run_id": "job1", "started_at": started_at, "duration_s": rows.len() as f64,
        "complete": true, "devices": {"planned": 2, "started": 2, "provisioned": 1, "failed": 1},
        "throughput": {"provisioned_per_s": 1.0, "provisioning_window_s": 1.0}, "success_rate": 50.0,
        "stages": {"register_thing": {"count": latencies.len()}}, "failures": {"timeout.register_thing": 1},
        "shard": {"index": shard, "count": 2, "start_at": null, "start_lag_s": 0.0},
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    let header = "elapsed_s,offered,started,completed,failed,in_flight,dropped_total,start_lag_max_ms,register_thing_p50_ms,target_rate_per_s,rate_multiplier,cpu_percent,note";
    std::fs::write(
        dir.join("timeseries.csv"),
        format!("{header}\n{}\n", rows.join("\n")),
    )
    .unwrap();
    std::fs::write(
        dir.join("devices.csv"),
        format!(
            "seq,client_id,outcome\n{shard},c-{shard},provisioned\n{},c-{},failed\n",
            shard + 2,
            shard + 2
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("failures.csv"),
        format!(
            "elapsed_s,seq,client_id,reason\n0.500,{},c-{},timeout.register_thing\n",
            shard + 2,
            shard + 2
        ),
    )
    .unwrap();
    let at = humantime::parse_rfc3339(started_at).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    for v in latencies {
        h.record(*v).unwrap();
    }
    write_log(
        &dir.join("latency.hlog"),
        &Log {
            start: Some(at.duration_since(std::time::UNIX_EPOCH).unwrap()),
            base: Some(at.duration_since(std::time::UNIX_EPOCH).unwrap()),
            intervals: vec![(
                "register_thing".into(),
                Duration::ZERO,
                Duration::from_secs(1),
                h,
            )],
        },
    );
}

#[test]
fn timeseries_rows_are_summed_by_wall_clock_interval() {
    let parent = scratch("timeseries");
    let (a, b) = (parent.join("a"), parent.join("b"));
    // b started 2 s after a: its first second is a's third.
    folder(
        &a,
        "2026-01-01T00:00:00.000Z",
        0,
        &[
            "1.0,5,5,4,1,3,0,1.500,0,5.000,1.00,40.0,x",
            "2.0,5,5,5,0,2,1,2.500,0,5.000,1.00,50.0,x",
            "3.0,5,5,5,0,1,2,0.500,0,5.000,1.00,30.0,x",
        ],
        &[1_000],
    );
    folder(
        &b,
        "2026-01-01T00:00:02.000Z",
        1,
        &[
            "1.0,7,7,7,0,6,10,9.000,0,7.000,0.50,20.0,x",
            "2.0,7,7,6,1,4,10,1.000,0,7.000,0.50,90.0,x",
            "2.4,1,1,1,0,0,11,0.000,0,7.000,0.50,10.0,x",
        ],
        &[3_000],
    );
    let out = parent.join("merged");
    let merged = fleetstorm::merge::merge(
        &[b.clone(), a.clone()],
        &out,
        fleetstorm::merge::MergeOptions::default(),
    )
    .unwrap();
    assert_eq!(merged.summary.started_at, "2026-01-01T00:00:00.000Z");
    assert_eq!(merged.summary.devices.started, 4);
    assert_eq!(merged.summary.failures["timeout.register_thing"], 2);
    let (header, rows) = csv_rows(&out.join("timeseries.csv"));
    let column = |name: &str| -> Vec<String> {
        let i = header.iter().position(|h| h == name).unwrap();
        rows.iter().map(|r| r[i].clone()).collect()
    };
    assert_eq!(column("elapsed_s"), ["1.0", "2.0", "3.0", "4.0", "4.4"]);
    assert_eq!(column("offered"), ["5", "5", "12", "7", "1"]);
    assert_eq!(column("failed"), ["1", "0", "0", "1", "0"]);
    // Levels: a's last (1) only while a runs; b's from its start.
    assert_eq!(column("in_flight"), ["3", "2", "7", "4", "0"]);
    // Running totals: a's last (2) counts on after a finished.
    assert_eq!(column("dropped_total"), ["0", "1", "12", "12", "13"]);
    assert_eq!(
        column("start_lag_max_ms"),
        ["1.500", "2.500", "9.000", "1.000", "0.000"]
    );
    assert_eq!(
        column("cpu_percent"),
        ["40.0", "50.0", "30.0", "90.0", "10.0"]
    );
    assert_eq!(
        column("target_rate_per_s"),
        ["5.000", "5.000", "7.000", "7.000", "7.000"]
    );
    assert_eq!(
        column("rate_multiplier"),
        ["1.00", "1.00", "0.75", "0.50", "0.50"]
    );
    assert_eq!(column("note"), ["", "", "", "", ""]);
    // a's interval 0 and b's interval 0 are seconds 0 and 2 of the merge.
    assert_eq!(
        column("register_thing_p50_ms"),
        ["1.000", "0.000", "3.001", "0.000", "0.000"]
    );
    let (_, failures) = csv_rows(&out.join("failures.csv"));
    let times: Vec<&str> = failures.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(times, ["0.500", "2.500"]);
    let (_, devices) = csv_rows(&out.join("devices.csv"));
    let seqs: Vec<&str> = devices.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(seqs, ["0", "1", "2", "3"]);
}

/// 40 devices at 20/s, nothing failing: the sharded runs' merge passes its threshold.
const SHARDED: &str = r#"
name = "merge-sharded"
seed = 3
thresholds = ["success_rate > 99%"]
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 40
client_id = "sh-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "99{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "2s"
"#;

/// The client IDs of a folder's devices.csv, in file order.
fn client_ids(dir: &Path) -> Vec<String> {
    let (header, rows) = csv_rows(&dir.join("devices.csv"));
    let i = header.iter().position(|h| h == "client_id").unwrap();
    rows.into_iter().map(|r| r[i].clone()).collect()
}

#[test]
fn real_2_and_4_shard_runs_merge_to_the_unsharded_runs_devices() {
    let parent = scratch("sharded");
    let scenario = parent.join("s.toml");
    std::fs::write(&scenario, SHARDED).unwrap();
    let whole = parent.join("whole");
    let o = fleetstorm(
        &["run", "--no-tui"],
        &[&scenario, Path::new("--out"), &whole],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut want = client_ids(&whole);
    want.sort();
    assert_eq!(want.len(), 40);

    for n in [2u32, 4] {
        // The shards run at once, on one schedule from one --start-at.
        let start_at = humantime::format_rfc3339_millis(
            std::time::SystemTime::now() + Duration::from_millis(1500),
        )
        .to_string();
        let shards: Vec<PathBuf> = (0..n)
            .map(|i| parent.join(format!("{n}/shard-{i}")))
            .collect();
        let children: Vec<std::process::Child> = shards
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                Command::new(BIN)
                    .args(["run", "--no-tui", "--run-id", "job"])
                    .args(["--shard", &format!("{i}/{n}"), "--start-at", &start_at])
                    .arg(&scenario)
                    .arg("--out")
                    .arg(dir)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        let out = parent.join(format!("{n}/merged"));
        let o = merge(&paths(&shards), &out, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        // The union of the shards' devices is the unsharded run's: same client IDs, none twice.
        let mut got = client_ids(&out);
        got.sort();
        assert_eq!(got, want, "n = {n}");
        let merged = json(&out.join("summary.json"));
        let summaries: Vec<Value> = shards
            .iter()
            .map(|d| json(&d.join("summary.json")))
            .collect();
        for key in ["planned", "started", "provisioned", "failed", "dropped"] {
            let sum: u64 = summaries
                .iter()
                .map(|s| s["devices"][key].as_u64().unwrap())
                .sum();
            assert_eq!(
                merged["devices"][key].as_u64().unwrap(),
                sum,
                "{key}, n = {n}"
            );
        }
        assert_eq!(merged["devices"]["provisioned"], 40);
        let total_count: u64 = summaries
            .iter()
            .map(|s| s["stages"]["total"]["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            merged["stages"]["total"]["count"].as_u64().unwrap(),
            total_count
        );
        // One --start-at: one time origin.
        for s in &summaries {
            assert_eq!(s["started_at"], summaries[0]["started_at"]);
        }
        assert_eq!(merged["started_at"], summaries[0]["started_at"]);
        assert_eq!(merged["merged_from"].as_array().unwrap().len(), n as usize);
        assert_eq!(merged["thresholds"][0]["ok"], true);
        // The merged timeseries counts every shard's arrivals.
        let (header, rows) = csv_rows(&out.join("timeseries.csv"));
        let started = header.iter().position(|h| h == "started").unwrap();
        let sum: u64 = rows
            .iter()
            .map(|r| r[started].parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, 40, "n = {n}");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains(&format!("merge of {n} shards")), "n = {n}");
    }
}

/// The amplification figures of shards merge as the run's would: counts summed, maxima the
/// largest of the shards', the ratios derived again from the sums (not averaged).
#[test]
fn amplification_figures_are_summed_maxed_and_derived_again() {
    let run = the_run();
    let parent = scratch("amplification");
    let shards = split(run, &parent.join("job"), 2, 23);
    // (issued, registered, attempts, attempts max, connects, connects/s max) per shard.
    let figures = [(30, 10, 14, 3, 40, 2), (12, 10, 10, 1, 20, 1)];
    let mut provisioned = 0;
    let mut finished = 0;
    for (dir, (issued, registered, attempts, max, connects, rate)) in shards.iter().zip(figures) {
        edit_summary(dir, |s| {
            provisioned += s["devices"]["provisioned"].as_u64().unwrap();
            finished += s["devices"]["provisioned"].as_u64().unwrap()
                + s["devices"]["failed"].as_u64().unwrap();
            s["certificates"] = serde_json::json!({"issued": issued, "registered": registered,
                "per_provisioned": 99.0, "orphaned": 99});
            s["attempts"] = serde_json::json!({"total": attempts, "mean": 99.0, "max": max});
            s["connects"] = serde_json::json!({"total": connects, "per_provisioned": 99.0,
                "max_per_client_id_per_s": rate});
            // What is priced: connection-minutes and messages, summed and priced again.
            s["cost"] = serde_json::json!({"total": 99.0,
                "connectivity": {"quantity": connects, "cost": 99.0},
                "messaging": {"quantity": 10 * connects, "cost": 99.0}});
        });
    }
    let out = parent.join("merged");
    let o = merge(&paths(&shards), &out, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let m = json(&out.join("summary.json"));
    let p = provisioned as f64;
    assert_eq!(
        m["certificates"],
        serde_json::json!({"issued": 42, "registered": 20, "per_provisioned": 42.0 / p, "orphaned": 22})
    );
    assert_eq!(
        m["attempts"],
        serde_json::json!({"total": 24, "mean": 24.0 / finished as f64, "max": 3})
    );
    assert_eq!(
        m["connects"],
        serde_json::json!({"total": 60, "per_provisioned": 60.0 / p, "max_per_client_id_per_s": 2})
    );
    let cost = &m["cost"];
    let quantity = |item: &str| cost[item]["quantity"].as_u64().unwrap();
    assert_eq!((quantity("connectivity"), quantity("messaging")), (60, 600));
    // 20 registrations, each the price table's registry operations per registration.
    assert_eq!(quantity("registry") % 20, 0, "{cost}");
    let priced: f64 = ["connectivity", "messaging", "registry"]
        .iter()
        .map(|i| quantity(i) as f64 * cost[i]["per_million"].as_f64().unwrap() / 1e6)
        .sum();
    assert!(
        (cost["total"].as_f64().unwrap() - priced).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(cost["label"], "would cost on AWS");
}
