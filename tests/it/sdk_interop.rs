//! The official AWS IoT Device SDK v2 for Python against a `fleetstorm mock` process.
//!
//! The test creates its own virtualenv under `target/sdk-venv` from `tests/sdk/requirements.txt`
//! when it is missing. It never skips: without Python or PyPI it fails and says why.

use crate::common;

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, creating the venv on first use.
pub(crate) fn venv_python() -> PathBuf {
    common::python_venv(
        "sdk-venv",
        "tests/sdk/requirements.txt",
        "import awsiot.iotidentity, awscrt.mqtt_request_response",
    )
    .join("python")
}

struct Mock {
    process: common::MockProcess,
    port: u16,
    pki: PathBuf,
}

fn start_mock(dir: &Path, host: &str) -> Mock {
    let pki = dir.join("pki");
    let out = Command::new(BIN)
        .args(["pki", "init"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let template = dir.join("region.json");
    std::fs::write(
        &template,
        r#"{"Parameters":{"DeviceName":{"Type":"String"}},
            "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{
              "ThingName":{"Fn::Join":["-",[{"Ref":"DeviceName"},{"Ref":"AWS::Region"}]]}}}}}"#,
    )
    .unwrap();
    let config = dir.join("mock.toml");
    std::fs::write(&config, "keys = \"rsa2048\"\nkey_pool_size = 4\n").unwrap();
    let listen = (host, 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("localhost resolves");
    let process = common::MockProcess::start(
        [
            "--log".into(),
            "info".into(),
            "mock".into(),
            "--listen".into(),
            listen.to_string().into(),
            "--config".into(),
            config.into_os_string(),
            "--template".into(),
            format!("RegionTemplate={}", template.display()).into(),
            "--pki".into(),
            pki.clone().into_os_string(),
        ] as [std::ffi::OsString; 11],
        Stdio::inherit(),
    );
    let expected_tail = format!(
        "(ca {}, claim {} {})",
        pki.join("root-ca.pem").display(),
        pki.join("claim.pem").display(),
        pki.join("claim.key").display()
    );
    assert!(
        process.ready.trim_end().ends_with(&expected_tail),
        "ready line: {:?}",
        process.ready
    );
    Mock {
        port: process.addr.port(),
        process,
        pki,
    }
}

fn run_sdk(python: &Path, mock: &Mock, work: &Path, mode: &str, extra: &[&str]) -> Value {
    let script = manifest_dir().join("tests/sdk/fleet_provision.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--endpoint", "localhost", "--port", &mock.port.to_string()])
        .arg("--ca")
        .arg(mock.pki.join("root-ca.pem"))
        .arg("--cert")
        .arg(mock.pki.join("claim.pem"))
        .arg("--key")
        .arg(mock.pki.join("claim.key"))
        .args(["--mode", mode])
        .arg("--workdir")
        .arg(work)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("script output {stdout:?}: {e}"))
}

/// The four cases (keys flow, CSR flow, bad ownership token, unresolvable reference) through
/// the SDK over `protocol` (`mqtt311` or `mqtt5`); things are named `{prefix}-keys` and
/// `{prefix}-csr`.
fn provision_through_the_sdk(python: &Path, mock: &Mock, dir: &Path, protocol: &str, prefix: &str) {
    let params = |name: &str| {
        format!(r#"{{"DeviceName":"{name}","SerialNumber":"123456001","DeviceLocation":"Berlin"}}"#)
    };
    let run = |work: &Path, mode: &str, extra: &[&str]| {
        let extra: Vec<&str> = ["--protocol", protocol]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        run_sdk(python, mock, work, mode, &extra)
    };
    let keys_name = format!("{prefix}-keys");
    let csr_name = format!("{prefix}-csr");

    // CreateKeysAndCertificate -> RegisterThing -> connect with the new certificate.
    let work = dir.join(format!("{protocol}-keys"));
    std::fs::create_dir_all(&work).unwrap();
    let r = run(
        &work,
        "keys",
        &[
            "--template",
            "FleetProvisioningTemplate",
            "--params",
            &params(&keys_name),
        ],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["stage"], "done", "{r}");
    assert_eq!(r["thingName"], keys_name.as_str());
    assert_eq!(r["privateKeyHeader"], "-----BEGIN RSA PRIVATE KEY-----");
    assert_eq!(r["certificateId"].as_str().unwrap().len(), 64);
    assert_eq!(
        r["deviceConfiguration"]["LocationUrl"],
        "https://www.berlin.de"
    );

    // The same with CreateCertificateFromCsr, the CSR made here.
    let work = dir.join(format!("{protocol}-csr"));
    std::fs::create_dir_all(&work).unwrap();
    let (key, csr) =
        fleetstorm::pki::generate_csr(fleetstorm::pki::KeyAlgorithm::P256, &csr_name).unwrap();
    std::fs::write(work.join("device.csr"), csr).unwrap();
    std::fs::write(work.join("device.key"), key.serialize_pem()).unwrap();
    let csr_path = work.join("device.csr").display().to_string();
    let key_path = work.join("device.key").display().to_string();
    let r = run(
        &work,
        "csr",
        &[
            "--template",
            "FleetProvisioningTemplate",
            "--params",
            &params(&csr_name),
            "--csr",
            &csr_path,
            "--csr-key",
            &key_path,
        ],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["stage"], "done", "{r}");
    assert_eq!(r["thingName"], csr_name.as_str());

    // A bad ownership token.
    let work = dir.join(format!("{protocol}-badtoken"));
    std::fs::create_dir_all(&work).unwrap();
    let r = run(
        &work,
        "keys",
        &[
            "--template",
            "FleetProvisioningTemplate",
            "--params",
            &params(&format!("{prefix}-bad")),
            "--token-override",
            "not-a-token",
        ],
    );
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["stage"], "register", "{r}");
    assert_eq!(r["error"]["statusCode"], 400, "{r}");
    assert_eq!(
        r["error"]["errorCode"], "InvalidCertificateOwnershipToken",
        "{r}"
    );

    // An unresolvable reference in the template.
    let work = dir.join(format!("{protocol}-region"));
    std::fs::create_dir_all(&work).unwrap();
    let r = run(
        &work,
        "keys",
        &[
            "--template",
            "RegionTemplate",
            "--params",
            r#"{"DeviceName":"x"}"#,
        ],
    );
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["statusCode"], 400, "{r}");
    assert_eq!(r["error"]["errorCode"], "InvalidParameters", "{r}");
    assert_eq!(
        r["error"]["errorMessage"], "Cannot resolve reference value: AWS::Region",
        "{r}"
    );
}

#[test]
fn official_python_sdk_provisions_against_the_mock() {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let mock = start_mock(dir.path(), "localhost");
    provision_through_the_sdk(&python, &mock, dir.path(), "mqtt311", "sdk");

    // SIGTERM: the mock writes its registry and exits cleanly.
    let mut mock = mock;
    let status = Command::new("kill")
        .args(["-TERM", &mock.process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = mock.process.child.wait().unwrap();
    assert!(exit.success(), "mock exit: {exit}");
    let registry: Value =
        serde_json::from_slice(&std::fs::read(mock.pki.join("registry.json")).unwrap()).unwrap();
    let things: Vec<&str> = registry["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thing_name"].as_str().unwrap())
        .collect();
    assert_eq!(things, ["sdk-csr", "sdk-keys"]);
}

/// The same four cases with the SDK's MQTT 5 client (`awsiot.mqtt5_client_builder` and
/// `IotIdentityClientV2` on it), as AWS's current fleet-provisioning sample connects.
#[test]
fn official_python_sdk_provisions_over_mqtt5_against_the_mock() {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let mock = start_mock(dir.path(), "localhost");
    provision_through_the_sdk(&python, &mock, dir.path(), "mqtt5", "sdk5");
}
