//! `fleetstorm aws metrics` against moto's CloudWatch: datapoints put there with boto3 come back
//! in `cloudwatch.csv`, aligned to the run's minutes, and in the report's panel with the
//! differences named; a dry run prints the queries and sends nothing; an empty window and a
//! missing permission are clear messages, not crashes.

use std::path::Path;

use serde_json::Value;

use crate::aws_moto::{Moto, fixture, venv_python};
use crate::support::{self, fleetstorm, text};

/// A run of the quickstart (10 devices against the embedded mock) in `dir`, its summary made
/// to last 100 s so that its window covers two minutes whatever second it started at; returns
/// the window's first minute (Unix seconds).
fn run_folder(dir: &Path) -> u64 {
    let out = support::command(&[
        "run",
        "scenarios/quickstart.toml",
        "--no-tui",
        "--set",
        "devices.count=10",
        "--out",
        dir.to_str().unwrap(),
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let path = dir.join("summary.json");
    let mut summary: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    summary["duration_s"] = 100.0.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).unwrap()).unwrap();
    let started = humantime::parse_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    let secs = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    secs / 60 * 60
}

fn metrics(dir: &Path, moto: &Moto, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "aws",
        "metrics",
        dir.to_str().unwrap(),
        "--endpoint-url",
        moto.url_ref(),
        "--claim-certificate-id",
        "claim-abc",
    ];
    args.extend_from_slice(extra);
    fleetstorm(&args)
}

/// The rows of cloudwatch.csv: header name -> cell, per minute.
fn csv_rows(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(dir.join("cloudwatch.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn metrics_put_into_moto_come_back_per_minute_in_cloudwatch_csv_and_the_report() {
    let python = venv_python();
    let moto = Moto::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let start = run_folder(dir.path());
    fixture(
        &python,
        &[
            "put-metrics",
            moto.url_ref(),
            &start.to_string(),
            "FleetProvisioningTemplate",
            "claim-abc",
        ],
    );

    // The dry run prints the queries and sends nothing (no cloudwatch.csv).
    let dry = metrics(dir.path(), &moto, &["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.contains("aws cloudwatch get-metric-data")
            && printed.contains(r#""MetricName":"RegisterThingFailed""#)
            && printed.contains(r#""Name":"TemplateName","Value":"FleetProvisioningTemplate""#)
            && printed.contains("dry run: nothing sent"),
        "{printed}"
    );
    assert!(!dir.path().join("cloudwatch.csv").exists());

    let out = metrics(dir.path(), &moto, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    // The run just ended: its minutes are too recent for CloudWatch to have settled.
    assert!(said.contains("may not be in CloudWatch yet"), "{said}");
    let rows = csv_rows(dir.path());
    assert!(rows.len() >= 2, "{rows:?}");
    let minute = |i: usize, column: &str| rows[i][column].clone();
    let first = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(start),
    )
    .to_string();
    assert_eq!(minute(0, "minute"), first);
    assert_eq!(
        (
            minute(0, "connect_success"),
            minute(0, "connect_throttle"),
            minute(0, "create_keys_calls"),
            minute(0, "create_keys_failed"),
        ),
        ("40".into(), "2".into(), "30".into(), "1".into())
    );
    // Only this template's RegisterThing failures (another template's 99 are not read).
    assert_eq!(
        (
            minute(0, "register_thing_calls"),
            minute(0, "register_thing_failed")
        ),
        ("30".into(), "12".into())
    );
    assert_eq!(minute(1, "register_thing_failed"), "5");
    assert_eq!(minute(0, "things_registered"), "18");
    assert_eq!(minute(1, "connect_success"), "", "no datapoint: empty");
    assert_eq!(minute(0, "settled"), "false");

    // The report's panel: the minutes side by side, the differences named. The devices
    // (against the mock) saw no RegisterThing rejection: all 17 are AWS's alone.
    let report = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        report.contains("Devices and AWS, per minute")
            && report.contains("AWS counted 17 RegisterThing failures the devices never saw")
            && report.contains("AWS throttled 2 connects"),
        "{}",
        &report[report.find("cloudwatch").unwrap_or(0)..]
    );
}

#[test]
fn an_empty_window_and_a_missing_permission_are_messages_not_crashes() {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    run_folder(dir.path());

    // Nothing in CloudWatch for the window: said plainly; the file has the minutes, empty.
    let empty = Moto::start(&python);
    let out = metrics(dir.path(), &empty, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CloudWatch has no AWS/IoT datapoints"),
        "{}",
        text(&out)
    );
    let rows = csv_rows(dir.path());
    assert!(!rows.is_empty() && rows.iter().all(|r| r["connect_success"].is_empty()));

    // A user without cloudwatch:GetMetricData: moto enforces IAM after the two calls that
    // create the user and its key.
    let denying = Moto::start_with(&python, &[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]);
    let key = fixture(&python, &["deny-user", denying.url_ref()]);
    let out = support::command(&[
        "aws",
        "metrics",
        dir.path().to_str().unwrap(),
        "--endpoint-url",
        denying.url_ref(),
    ])
    .env("AWS_ACCESS_KEY_ID", key["id"].as_str().unwrap())
    .env("AWS_SECRET_ACCESS_KEY", key["secret"].as_str().unwrap())
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("GetMetricData")
            && err.contains("AccessDenied")
            && err.contains("the credentials need cloudwatch:GetMetricData")
            && !err.contains("panicked"),
        "{}",
        text(&out)
    );
}

/// `run --cloudwatch` reads the metrics after the run (here from moto, through the SDK's
/// `AWS_ENDPOINT_URL`): a run against the mock has none there, and its last minutes are too
/// recent anyway, which the end of the run says.
#[test]
fn run_cloudwatch_reads_the_window_after_the_run_and_says_when_to_read_again() {
    let python = venv_python();
    let moto = Moto::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let out = support::command(&[
        "run",
        "scenarios/quickstart.toml",
        "--no-tui",
        "--set",
        "devices.count=5",
        "--cloudwatch",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .env("AWS_ENDPOINT_URL", moto.url_ref())
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("cloudwatch: CloudWatch has no AWS/IoT datapoints")
            && said.contains("may not be in CloudWatch yet: run `fleetstorm aws metrics"),
        "{said}"
    );
    assert!(!csv_rows(dir.path()).is_empty());
    let report = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(report.contains("Devices and AWS, per minute"));
}
