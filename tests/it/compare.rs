//! `compare`: run directories written by hand (summary.json, timeseries.csv, latency.hlog in the
//! formats `output` writes), compared against the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use fleetstorm::compare::{CompareError, Comparison, compare};
use fleetstorm::metrics::{Percentiles, histogram};
use fleetstorm::results::ResultsError;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

const SEED: u64 = 20261128;

/// One synthetic run: register_thing latency around `register_ms`, `per_interval` devices a second.
struct Spec {
    variant: Option<&'static str>,
    register_ms: f64,
    intervals: usize,
    per_interval: u64,
    failures: Vec<(&'static str, u64)>,
    data_seed: u64,
    hlog: bool,
}

impl Spec {
    fn new(register_ms: f64, data_seed: u64) -> Spec {
        Spec {
            variant: None,
            register_ms,
            intervals: 30,
            per_interval: 40,
            failures: Vec::new(),
            data_seed,
            hlog: true,
        }
    }
}

fn hlog_line(out: &mut String, tag: &str, h: &Histogram<u64>, start: f64) {
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&buf);
    writeln!(
        out,
        "Tag={tag},{start:.3},{:.3},{}.0,{encoded}",
        1.0,
        h.max()
    )
    .unwrap();
}

fn stage_json(latency: &Histogram<u64>, service: &Histogram<u64>) -> serde_json::Value {
    let p = |h: &Histogram<u64>| {
        let p = Percentiles::of(h);
        json!({"count": p.count, "mean_ms": p.mean_ms, "p50_ms": p.p50_ms, "p90_ms": p.p90_ms,
               "p99_ms": p.p99_ms, "p999_ms": p.p999_ms, "max_ms": p.max_ms})
    };
    let mut v = p(latency);
    v["service"] = p(service);
    v
}

/// Write the run into `dir` (created) and return it.
fn write_run(dir: &Path, spec: &Spec) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(spec.data_seed);
    let mut hlog = String::from(
        "#[fleetstorm 0.1.0 scenario test against embedded mock]\n\
         #[Values are microseconds; tag <stage> = latency from intended start, <stage>.service = service time]\n\
         #[Histogram log format version 1.3]\n\
         #[StartTime: 1795898067.322 (seconds since epoch)]\n\
         #[BaseTime: 1795898067.322 (seconds since epoch)]\n\
         \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    let mut timeseries = String::from("elapsed_s,offered,started,completed,failed,in_flight\n");
    let (mut latency_all, mut service_all) = (histogram(), histogram());
    let (mut claim_all, mut claim_service_all) = (histogram(), histogram());
    let mut provisioned = 0;
    for i in 0..spec.intervals {
        // Interval-to-interval drift plus per-device jitter.
        let drift = rng.random_range(-0.05..0.05) * spec.register_ms;
        let completed = spec.per_interval + rng.random_range(0..5);
        let (mut latency, mut service) = (histogram(), histogram());
        let (mut claim, mut claim_service) = (histogram(), histogram());
        for _ in 0..completed {
            let ms = spec.register_ms + drift + rng.random_range(-0.2..0.2) * spec.register_ms;
            let claim_ms = 45.0 + rng.random_range(-5.0..5.0);
            latency.record((ms * 1000.0) as u64).unwrap();
            service.record((ms * 1000.0 / 2.0) as u64).unwrap();
            claim.record((claim_ms * 1000.0) as u64).unwrap();
            claim_service.record((claim_ms * 900.0) as u64).unwrap();
        }
        let start = i as f64;
        hlog_line(&mut hlog, "connect_claim", &claim, start);
        hlog_line(&mut hlog, "connect_claim.service", &claim_service, start);
        hlog_line(&mut hlog, "register_thing", &latency, start);
        hlog_line(&mut hlog, "register_thing.service", &service, start);
        latency_all.add(&latency).unwrap();
        service_all.add(&service).unwrap();
        claim_all.add(&claim).unwrap();
        claim_service_all.add(&claim_service).unwrap();
        provisioned += completed;
        writeln!(
            timeseries,
            "{}.0,{completed},{completed},{completed},0,0",
            i + 1
        )
        .unwrap();
    }
    let failed: u64 = spec.failures.iter().map(|(_, n)| n).sum();
    let duration = spec.intervals as f64;
    let mut summary = json!({
        "scenario": "test",
        "started_at": "2026-11-28T20:34:27.322Z",
        "duration_s": duration,
        "endpoint": "embedded mock",
        "interrupted": false,
        "devices": {"planned": provisioned + failed, "started": provisioned + failed,
                    "provisioned": provisioned, "failed": failed, "dropped": 0},
        "throughput": {"provisioned_per_s": provisioned as f64 / duration},
        "success_rate": 100.0 * provisioned as f64 / (provisioned + failed) as f64,
        "stages": {
            "connect_claim": stage_json(&claim_all, &claim_service_all),
            "register_thing": stage_json(&latency_all, &service_all),
            "telemetry": stage_json(&histogram(), &histogram()),
        },
        "failures": spec.failures.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "thresholds": [],
        "scheduler": {"max_start_lag_ms": 0.1},
    });
    if let Some(v) = spec.variant {
        summary["variant"] = json!(v);
    }
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("timeseries.csv"), timeseries).unwrap();
    if spec.hlog {
        std::fs::write(dir.join("latency.hlog"), hlog).unwrap();
    }
    dir.to_path_buf()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn row<'a>(c: &'a Comparison, metric: &str) -> &'a fleetstorm::compare::Row {
    c.rows()
        .iter()
        .find(|r| r.metric == metric)
        .unwrap_or_else(|| panic!("no row {metric}"))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
}

#[test]
fn deltas_are_computed_against_the_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_run(&tmp.path().join("base"), &Spec::new(100.0, 1));
    let mut slow = Spec::new(300.0, 2);
    slow.per_interval = 20;
    slow.failures = vec![("hook_denied", 7)];
    let slow = write_run(&tmp.path().join("slow"), &slow);
    let c = compare(&[base.clone(), slow.clone()], SEED).unwrap();
    assert_eq!(c.runs(), ["base", "slow"]);
    let (b, v) = (summary(&base), summary(&slow));

    for (metric, pointer) in [
        ("register_thing.p50_ms", "/stages/register_thing/p50_ms"),
        ("register_thing.p90_ms", "/stages/register_thing/p90_ms"),
        ("register_thing.p99_ms", "/stages/register_thing/p99_ms"),
        ("register_thing.max_ms", "/stages/register_thing/max_ms"),
        ("register_thing.count", "/stages/register_thing/count"),
        (
            "register_thing.service.p50_ms",
            "/stages/register_thing/service/p50_ms",
        ),
        (
            "throughput.provisioned_per_s",
            "/throughput/provisioned_per_s",
        ),
        ("success_rate", "/success_rate"),
        ("devices.failed", "/devices/failed"),
    ] {
        let r = row(&c, metric);
        let (bv, vv) = (
            b.pointer(pointer).unwrap().as_f64().unwrap(),
            v.pointer(pointer).unwrap().as_f64().unwrap(),
        );
        assert!(close(r.values[0], bv), "{metric} {:?} vs {bv}", r.values);
        assert!(close(r.values[1], vv), "{metric} {:?} vs {vv}", r.values);
        assert_eq!(r.delta_abs[0], Some(0.0), "{metric}");
        assert!(close(r.delta_abs[1], vv - bv), "{metric} {:?}", r.delta_abs);
        if bv == 0.0 {
            assert_eq!(r.delta_rel, vec![None, None], "{metric}");
        } else {
            assert_eq!(r.delta_rel[0], Some(0.0), "{metric}");
            assert!(close(r.delta_rel[1], (vv - bv) / bv), "{metric}");
        }
        assert_eq!(
            r.significant[0], None,
            "{metric}: the baseline is not tested"
        );
    }
    // About three times slower, so roughly +200 %.
    let rel = row(&c, "register_thing.p50_ms").delta_rel[1].unwrap();
    assert!((1.8..2.2).contains(&rel), "{rel}");

    // Shifted register_thing latency (300 ms against 100 ms) and halved throughput are flagged.
    for metric in [
        "register_thing.p50_ms",
        "register_thing.p90_ms",
        "register_thing.p99_ms",
        "register_thing.service.p50_ms",
        "throughput.provisioned_per_s",
    ] {
        assert_eq!(row(&c, metric).significant[1], Some(true), "{metric}");
    }
    // Untested metrics.
    for metric in [
        "register_thing.count",
        "register_thing.max_ms",
        "success_rate",
        "devices.failed",
    ] {
        assert_eq!(row(&c, metric).significant, vec![None, None], "{metric}");
    }
    // Stages that never ran get no rows.
    assert!(c.rows().iter().all(|r| !r.metric.starts_with("telemetry.")));

    let table = c.render_table();
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with("register_thing.p99_ms"))
        .unwrap();
    assert!(line.trim_end().ends_with('*'), "{line}");
    assert!(line.contains("%"), "{line}");
    assert!(table.contains("* = "), "{table}");
    let widths: Vec<usize> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("register_thing."))
        .map(|l| l.trim_end_matches('*').trim_end().len())
        .collect();
    assert!(
        widths.windows(2).all(|w| w[0] == w[1]),
        "aligned columns:\n{table}"
    );
}

#[test]
fn runs_from_the_same_distribution_are_not_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(&tmp.path().join("a"), &Spec::new(100.0, 11));
    let b = write_run(&tmp.path().join("b"), &Spec::new(100.0, 12));
    let c = compare(&[a, b], SEED).unwrap();
    let tested: Vec<&str> = c
        .rows()
        .iter()
        .filter(|r| r.significant[1].is_some())
        .map(|r| r.metric.as_str())
        .collect();
    assert!(tested.contains(&"register_thing.p99_ms"), "{tested:?}");
    assert!(tested.contains(&"connect_claim.p50_ms"), "{tested:?}");
    assert!(
        tested.contains(&"throughput.provisioned_per_s"),
        "{tested:?}"
    );
    for r in c.rows() {
        assert_ne!(r.significant[1], Some(true), "{} flagged", r.metric);
    }
    assert!(
        !c.render_table()
            .lines()
            .any(|l| l.trim_end().ends_with('*'))
    );
    // Same seed, same answer.
    let again = compare(&[tmp.path().join("a"), tmp.path().join("b")], SEED).unwrap();
    assert_eq!(again.rows(), c.rows());
}

#[test]
fn a_missing_summary_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(&tmp.path().join("a"), &Spec::new(100.0, 1));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = compare(&[a.clone(), empty.clone()], SEED).unwrap_err();
    assert!(
        matches!(err, CompareError::Results(ResultsError::Read { .. })),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&empty.join("summary.json").display().to_string()),
        "{message}"
    );

    std::fs::write(empty.join("summary.json"), "{\"scenario\": ").unwrap();
    let err = compare(&[a.clone(), empty.clone()], SEED).unwrap_err();
    assert!(
        matches!(err, CompareError::Results(ResultsError::Summary { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("summary.json"), "{err}");

    let err = compare(std::slice::from_ref(&a), SEED).unwrap_err();
    assert!(matches!(err, CompareError::TooFewRuns(1)), "{err:?}");
}

#[test]
fn a_missing_hlog_only_disables_the_latency_test() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(&tmp.path().join("a"), &Spec::new(100.0, 1));
    let mut spec = Spec::new(300.0, 2);
    spec.hlog = false;
    let b = write_run(&tmp.path().join("b"), &spec);
    let c = compare(&[a, b], SEED).unwrap();
    let r = row(&c, "register_thing.p99_ms");
    assert!(r.values[1].is_some());
    assert_eq!(r.significant, vec![None, None]);
    assert_eq!(
        row(&c, "throughput.provisioned_per_s").significant[1],
        Some(false)
    );
    assert!(c.notes().iter().any(|n| n.contains("latency.hlog")));
    assert!(c.render_table().contains("note: b: no latency.hlog"));
}

#[test]
fn a_truncated_last_hlog_line_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(&tmp.path().join("a"), &Spec::new(100.0, 1));
    let b = write_run(&tmp.path().join("b"), &Spec::new(300.0, 2));
    let path = b.join("latency.hlog");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("Tag=register_thing,30.000,1.000,123.0,HISTFAAAAD");
    std::fs::write(&path, &text).unwrap();
    let c = compare(&[a.clone(), b], SEED).unwrap();
    assert_eq!(row(&c, "register_thing.p99_ms").significant[1], Some(true));

    // A damaged line in the middle is an error naming the file.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(a.join("summary.json"), bad.join("summary.json")).unwrap();
    std::fs::write(
        bad.join("latency.hlog"),
        "#[header]\nnot a log line\nTag=x,0.000,1.000,1.0,AAAA\n",
    )
    .unwrap();
    let err = compare(&[a, bad.clone()], SEED).unwrap_err();
    assert!(
        matches!(err, CompareError::Results(ResultsError::Hlog { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("latency.hlog"), "{err}");
}

#[test]
fn failure_reasons_get_rows_with_zero_where_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Spec::new(100.0, 1);
    a.failures = vec![("hook_denied", 3), ("timeout.register_thing", 2)];
    let mut b = Spec::new(100.0, 2);
    b.failures = vec![("throttled.create_certificate", 5), ("hook_denied", 1)];
    let a = write_run(&tmp.path().join("a"), &a);
    let b = write_run(&tmp.path().join("b"), &b);
    let c = compare(&[a, b], SEED).unwrap();
    let failures: BTreeMap<&str, &Vec<Option<f64>>> = c
        .rows()
        .iter()
        .filter_map(|r| Some((r.metric.strip_prefix("failures.")?, &r.values)))
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert_eq!(failures["hook_denied"], &vec![Some(3.0), Some(1.0)]);
    assert_eq!(
        failures["timeout.register_thing"],
        &vec![Some(2.0), Some(0.0)]
    );
    assert_eq!(
        failures["throttled.create_certificate"],
        &vec![Some(0.0), Some(5.0)]
    );
    let r = row(&c, "failures.throttled.create_certificate");
    assert_eq!(r.delta_abs, vec![Some(0.0), Some(5.0)]);
    assert_eq!(r.delta_rel, vec![None, None]);
    let r = row(&c, "failures.hook_denied");
    assert!(close(r.delta_rel[1], -2.0 / 3.0));
    assert_eq!(row(&c, "devices.failed").values, vec![Some(5.0), Some(6.0)]);
}

#[test]
fn compare_csv_has_a_header_and_one_line_per_row() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(&tmp.path().join("a"), &Spec::new(100.0, 1));
    let b = write_run(&tmp.path().join("b"), &Spec::new(300.0, 2));
    let mut spec = Spec::new(150.0, 3);
    spec.failures = vec![("hook_denied", 4)];
    let d = write_run(&tmp.path().join("d"), &spec);
    let c = compare(&[a, b, d], SEED).unwrap();
    let path = tmp.path().join("compare.csv");
    c.write_csv(&path).unwrap();
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "metric");
    assert_eq!(&header[1], "a");
    assert!(header.iter().any(|h| h == "b_delta_rel"));
    assert!(header.iter().any(|h| h == "d_significant"));
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), c.rows().len());
    for (record, row) in records.iter().zip(c.rows()) {
        assert_eq!(record.len(), header.len());
        assert_eq!(&record[0], row.metric);
    }
    let p99 = records
        .iter()
        .find(|r| &r[0] == "register_thing.p99_ms")
        .unwrap();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&p99[col("b_significant")], "true");
    assert_eq!(&p99[col("a_significant")], "");
    let delta: f64 = p99[col("b_delta_abs")].parse().unwrap();
    assert!(close(row(&c, "register_thing.p99_ms").delta_abs[1], delta));
    // The raw text: a header line plus one line per row.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), c.rows().len() + 1);

    let err = c
        .write_csv(&tmp.path().join("no/such/dir/compare.csv"))
        .unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn the_label_comes_from_the_variant_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Spec::new(100.0, 1);
    a.variant = Some("quotas-default");
    let b = Spec::new(100.0, 2);
    let mut d = Spec::new(100.0, 3);
    d.variant = Some("quotas-raised");
    let dirs = [
        write_run(&tmp.path().join("run-1"), &a),
        write_run(&tmp.path().join("run-2"), &b),
        write_run(&tmp.path().join("run-3"), &d),
    ];
    let c = compare(&dirs, SEED).unwrap();
    assert_eq!(c.runs(), ["quotas-default", "run-2", "quotas-raised"]);
    let table = c.render_table();
    let header = table
        .lines()
        .find(|l| l.trim_start().starts_with("metric"))
        .unwrap();
    assert!(header.contains("quotas-default"), "{header}");
    assert!(header.contains("quotas-raised"), "{header}");
    assert!(table.contains("quotas-default (baseline)"), "{table}");
}
