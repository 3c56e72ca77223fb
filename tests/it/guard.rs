//! The remote-run guard end to end: a non-loopback endpoint without `--yes` is refused before
//! anything is sent; a loopback endpoint runs without it. (The `--yes` path is the decision
//! function's unit test in `src/guard.rs`: this suite never reaches a remote host.)

use crate::common;

use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn write_scenario(dir: &Path, target: &str) -> std::path::PathBuf {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[target]
{target}
[devices]
count = 20
client_id = "guard-{{run}}-{{seq:03}}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{{seq:06}}"
DeviceName = "guard-{{run}}-{{seq:03}}"
DeviceLocation = "Berlin"
[devices.retry]
max_attempts = 3
[[schedule]]
executor = "constant-arrival-rate"
rate = 40
duration = "1s"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_remote_endpoint_without_yes_exits_2_printing_the_counts_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The PEM files do not exist: the refusal comes before they are read, let alone a lookup of
    // the host or a connection.
    let path = write_scenario(
        dir.path(),
        r#"kind = "endpoint"
host = "abc123-ats.iot.eu-west-1.amazonaws.com"
ca = "missing-ca.pem"
claim_cert = "missing-claim.pem"
claim_key = "missing-claim.key"
account = "123456789012""#,
    );
    let out_dir = dir.path().join("out");
    let out = std::process::Command::new(BIN)
        .args(["run", "--no-tui", "--out"])
        .arg(&out_dir)
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "abc123-ats.iot.eu-west-1.amazonaws.com:8883",
        "eu-west-1",
        "123456789012",
        "20 things and 60 certificates",
        "--yes",
        "confirm_remote",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing in {stderr}"
        );
    }
    assert!(!out_dir.exists(), "a refused run writes no results folder");

    // `--endpoint` to a remote host from a mock scenario is refused the same way.
    let mock = write_scenario(dir.path(), r#"kind = "mock""#);
    let out = std::process::Command::new(BIN)
        .args(["run", "--no-tui", "--endpoint", "203.0.113.7:8883", "--out"])
        .arg(&out_dir)
        .arg(&mock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("203.0.113.7:8883"), "{stderr}");
    assert!(!out_dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_endpoint_runs_without_confirmation() {
    let mock = common::start_mock(|_| {}).await;
    let pki = mock.dir.path().join("pki");
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(
        dir.path(),
        &format!(
            "kind = \"endpoint\"\nhost = \"localhost\"\nport = {}\nca = \"{}\"\nclaim_cert = \"{}\"\nclaim_key = \"{}\"",
            mock.endpoint.port,
            pki.join("root-ca.pem").display(),
            pki.join("claim.pem").display(),
            pki.join("claim.key").display()
        ),
    );
    let out_dir = dir.path().join("out");
    let out = tokio::process::Command::new(BIN)
        .args(["run", "--no-tui", "--out"])
        .arg(&out_dir)
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("remote endpoint"), "{stderr}");
    let devices = std::fs::read_to_string(out_dir.join("devices.csv")).unwrap();
    assert_eq!(devices.lines().count(), 21, "{devices}");
    assert_eq!(devices.matches(",provisioned,").count(), 20, "{devices}");
    assert_eq!(mock.handle.registry().counts().things, 20);
}
