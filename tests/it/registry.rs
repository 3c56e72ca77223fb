//! The mock's registry across restarts (a real `fleetstorm mock` process killed with SIGKILL
//! and started again on the same PKI directory), and the PKI checks made before anything runs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetstorm::device::{self, DeviceTls, Endpoint, Provisioned};
use fleetstorm::pki::{self, KeyAlgorithm, Pki};
use rumqttc::{ConnectReturnCode, Event, MqttOptions, Packet, TlsConfiguration, Transport};

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");
const DEVICES: usize = 12;

/// A `fleetstorm mock` process on an ephemeral loopback port; SIGKILLed on drop.
fn start_mock(pki: &Path, config: &Path) -> common::MockProcess {
    let mut args: Vec<std::ffi::OsString> = [
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
    ]
    .map(Into::into)
    .into();
    args.extend(["--pki".into(), pki.into(), "--config".into(), config.into()]);
    common::MockProcess::start(args, Stdio::null())
}

fn claim_tls(pki_dir: &Path) -> DeviceTls {
    let pki = Pki::load(pki_dir).unwrap();
    DeviceTls::new(
        &pki.root_ca_pem,
        &pki.claim_cert_pem,
        &pki.claim_key_pem,
        false,
    )
    .unwrap()
}

/// CONNECT with a device's own certificate: the mock's CONNACK code.
async fn connack(endpoint: &Endpoint, tls: &DeviceTls, device: &Provisioned) -> ConnectReturnCode {
    let config = tls
        .for_identity(&device.certificate_pem, &device.private_key_pem)
        .unwrap();
    let mut options = MqttOptions::new(&device.thing_name, &endpoint.host, endpoint.port);
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 4);
    let until = tokio::time::timeout(common::WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.code,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
                Err(e) => panic!("{}: {e}", device.thing_name),
            }
        }
    });
    until.await.expect("no CONNACK in time")
}

/// Provision `n` devices named `{prefix}-{i}` through the claim flow.
async fn provision(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    prefix: &str,
    n: usize,
) -> Vec<Provisioned> {
    let mut out = Vec::new();
    for i in 0..n {
        let spec = common::seed_device(&format!("{prefix}-{i}"), "FleetProvisioningTemplate");
        let report = device::provision(endpoint, tls, &spec, &device::Handles::default()).await;
        out.push(report.outcome.expect("provisioned"));
    }
    out
}

/// Wait (bounded) until the journal holds every one of `names`: the evidence that a kill now
/// loses none of them.
fn wait_journaled(pki: &Path, names: &[String]) {
    let path = pki.join(fleetstorm::mock::registry::journal::LOG_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if names.iter().all(|n| text.contains(&format!("\"{n}\""))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} misses devices",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn restart_keeps_every_device(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let config = dir.path().join("mock.toml");
    std::fs::write(&config, format!("keys = \"p256\"\nregistry = \"{mode}\"\n")).unwrap();

    let first = start_mock(&pki_dir, &config);
    let tls = claim_tls(&pki_dir);
    let devices = provision(&first.endpoint(), &tls, &format!("{mode}-before"), DEVICES).await;
    let names: Vec<String> = devices.iter().map(|d| d.thing_name.clone()).collect();
    wait_journaled(&pki_dir, &names);
    // A second mock on the directory while the first runs is refused before it touches the
    // journal (it would replay a log being appended to and rename its snapshot over it).
    let log = pki_dir.join(fleetstorm::mock::registry::journal::LOG_FILE);
    let journal_before = std::fs::read(&log).unwrap();
    let (code, stderr) = run_to_end(
        &[
            "mock",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--pki",
        ]
        .map(std::ffi::OsStr::new)
        .into_iter()
        .chain([pki_dir.as_os_str(), "--config".as_ref(), config.as_os_str()])
        .collect::<Vec<_>>(),
    );
    assert_eq!(code, Some(4), "{stderr}");
    let pid = first.child.id();
    assert!(
        stderr.contains(&format!(
            "{}: in use by another running fleetstorm mock (pid {pid})",
            pki_dir.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), journal_before);
    drop(first); // kill -9: the kernel releases its lock

    let second = start_mock(&pki_dir, &config);
    for device in &devices {
        assert_eq!(
            connack(&second.endpoint(), &tls, device).await,
            ConnectReturnCode::Success,
            "{mode}: {} refused after the restart",
            device.thing_name
        );
    }
    // The restarted mock goes on provisioning, and knows the earlier things are taken.
    let later = provision(&second.endpoint(), &tls, &format!("{mode}-after"), 2).await;
    assert_eq!(
        connack(&second.endpoint(), &tls, &later[0]).await,
        ConnectReturnCode::Success
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mock_killed_and_restarted_on_its_pki_accepts_every_device_it_provisioned() {
    restart_keeps_every_device("full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_registry_survives_a_restart_the_same_way() {
    restart_keeps_every_device("compact").await;
}

/// A PKI directory whose claim.key belongs to another certificate.
fn pki_with_foreign_claim_key(dir: &Path) -> PathBuf {
    let pki_dir = dir.join("pki");
    Pki::init(&pki_dir, &[], KeyAlgorithm::P256).unwrap();
    let other = KeyAlgorithm::P256.generate().unwrap();
    std::fs::write(pki_dir.join(pki::CLAIM_KEY), other.serialize_pem()).unwrap();
    pki_dir
}

/// Run `fleetstorm ARGS` and return (exit code, stderr); a run still going after 20 s fails.
fn run_to_end(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fleetstorm {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_mock_refuses_to_start_with_a_claim_key_not_of_claim_pem() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = pki_with_foreign_claim_key(dir.path());
    let (code, stderr) = run_to_end(&[
        "mock".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pki".as_ref(),
        pki_dir.as_os_str(),
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    for name in [pki::CLAIM_PEM, pki::CLAIM_KEY] {
        let path = pki_dir.join(name).display().to_string();
        assert!(stderr.contains(&path), "{stderr}");
    }
}

/// `fleetstorm run SCENARIO` with results in the scenario's directory: (exit code, stderr).
fn run_scenario(scenario: &Path) -> (Option<i32>, String) {
    let out = scenario.with_file_name("out");
    run_to_end(&[
        "run".as_ref(),
        scenario.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
}

fn write_scenario(dir: &Path, target: &str) -> PathBuf {
    let path = dir.join("s.toml");
    let text = format!(
        "[target]\n{target}\n[devices]\ncount = 1\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 1\nduration = \"1s\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_claim_key_mismatch_names_the_certificate_and_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = pki_with_foreign_claim_key(dir.path());
    let (ca, cert, key) = (
        pki_dir.join(pki::ROOT_CA_PEM),
        pki_dir.join(pki::CLAIM_PEM),
        pki_dir.join(pki::CLAIM_KEY),
    );
    let scenario = write_scenario(
        dir.path(),
        &format!(
            "kind = \"endpoint\"\nhost = \"127.0.0.1\"\nport = 1\nca = \"{}\"\nclaim_cert = \"{}\"\nclaim_key = \"{}\"",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    let (code, stderr) = run_scenario(&scenario);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("KeyMismatch"), "{stderr}");
    for path in [&cert, &key] {
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    }
}

#[test]
fn a_relative_target_pki_that_does_not_exist_is_an_error_naming_the_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), "kind = \"mock\"\npki = \"no-such-pki\"");
    let (code, stderr) = run_scenario(&scenario);
    let resolved = dir.path().join("no-such-pki");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&resolved.display().to_string()), "{stderr}");
    assert!(!resolved.exists(), "a new PKI was created");
}
