//! `created.csv` survives `kill -9`: every certificate the mock issued more than one second
//! before the kill is listed (the mock's registry is the reference).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// Device certificates in the mock's registry: ID -> creation time (seconds since the epoch).
fn issued(mock: &common::TestMock) -> BTreeMap<String, f64> {
    let json = mock.handle.registry().to_json();
    json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["created_by"].is_null())
        .map(|c| {
            (
                c["certificate_id"].as_str().unwrap().to_string(),
                c["created_at"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_csv_lists_every_certificate_issued_more_than_a_second_before_a_kill_9() {
    let mock = common::start_mock(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("kill.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
[target]
kind = "mock"
pki = "{}"
[devices]
count = 6000
client_id = "kill-{{run}}-{{seq:05}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "kill-{{run}}-{{seq:05}}-thing"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 60
duration = "100s"
"#,
            mock.dir.path().join("pki").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--no-tui", "--endpoint"])
        .arg(format!("127.0.0.1:{}", mock.endpoint.port))
        .arg("--out")
        .arg(&out)
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Wait (polling the mock's registry) until a good number of certificates were issued, and
    // a few seconds passed, so several flushes happened.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    while issued(&mock).len() < 150 || started.elapsed() < Duration::from_secs(3) {
        assert!(
            Instant::now() < deadline,
            "the run issued too few certificates"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = SystemTime::now();
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(!output.status.success(), "killed");

    let killed = killed_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let reference: BTreeSet<String> = issued(&mock)
        .into_iter()
        .filter(|(_, at)| *at < killed - 1.0)
        .map(|(id, _)| id)
        .collect();
    assert!(reference.len() >= 50, "{} certificates", reference.len());

    let mut reader = csv::Reader::from_path(out.join("created.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        fleetstorm::results::CreatedRow::COLUMNS
    );
    let summary_run_id = String::from_utf8_lossy(&output.stderr)
        .split("run ID ")
        .nth(1)
        .map(|s| s[..6].to_string())
        .expect("the run ID on stderr");
    let mut listed = BTreeSet::new();
    let mut things = 0;
    // A kill can cut the last line short: only whole records count.
    for record in reader.records().filter_map(Result::ok) {
        if record.len() != 8 {
            continue;
        }
        assert_eq!(&record[0], summary_run_id, "{record:?}");
        assert!(record[1].starts_with(&format!("kill-{summary_run_id}-")));
        assert_eq!(&record[2], "1");
        assert!(humantime::parse_rfc3339(&record[7]).is_ok(), "{record:?}");
        if !record[5].is_empty() {
            assert!(record[5].ends_with("-thing"), "{record:?}");
            things += 1;
        }
        listed.insert(record[3].to_string());
    }
    let missing: Vec<_> = reference.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "{} of {} certificates issued more than 1 s before the kill are not in created.csv, e.g. {:?}",
        missing.len(),
        reference.len(),
        &missing[..missing.len().min(3)]
    );
    assert!(things > 0, "registered things are listed too");
}
