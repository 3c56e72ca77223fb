//! Device behaviour profiles end to end on the embedded mock (loopback) and on the standalone
//! `fleetstorm mock` process: every built-in provisions every device when nothing is slow, over
//! the protocol and payload its client uses, and a hook slower than embedded-c-demo's 1 s
//! response wait makes its devices give up and try again with new certificates, as the demo
//! does. (tests/it/mosquitto.rs runs every built-in against Mosquitto.)

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetstorm::fleet::{self, RunOptions};
use fleetstorm::scenario::Scenario;
use tokio_util::sync::CancellationToken;

/// Run `count` csr-mode devices in a burst against the mock, with `devices` added to
/// `[devices]` and `mock` to `[target.mock]`; the summary and devices.csv's rows (by header).
fn run(
    dir: &Path,
    count: u32,
    devices: &str,
    mock: &str,
) -> (fleetstorm::output::Summary, Vec<BTreeMap<String, String>>) {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "profiles"
[target]
kind = "mock"
[target.mock]
keys = "p256"
{mock}
[devices]
count = {count}
client_id = "p-{{seq:03}}"
certificate = "csr"
{devices}
[devices.parameters]
SerialNumber = "123456{{seq:03}}"
DeviceName = "p-thing-{{seq:03}}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "burst"
count = {count}
"#
        ),
    )
    .unwrap();
    let plan = Scenario::load(&path, &[]).unwrap();
    let out = dir.join("out");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let summary = runtime
        .block_on(fleet::run(
            plan,
            RunOptions {
                drain: Duration::from_secs(5),
                ..RunOptions::new(&out)
            },
            CancellationToken::new(),
        ))
        .unwrap();
    (summary, device_rows(&out))
}

/// devices.csv's rows in the results folder `out`, by header.
pub(crate) fn device_rows(out: &Path) -> Vec<BTreeMap<String, String>> {
    let csv = std::fs::read_to_string(out.join("devices.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

/// The MQTT version and certificate mode a built-in profile's client uses (the payload is the
/// profile's own): the MQTT 5 clients speak MQTT 5; the Embedded C demo and the Device Client
/// send a CSR, the others have the endpoint make the key (both modes are covered).
pub(crate) fn client(profile: &str) -> (&'static str, &'static str) {
    let protocol = match profile {
        "crt-mqtt5" | "sdk-v2-sample" => "mqtt5",
        _ => "mqtt311",
    };
    let certificate = match profile {
        "embedded-c-demo" | "device-client" | "generic" | "crt-mqtt5" => "csr",
        _ => "keys",
    };
    (protocol, certificate)
}

#[test]
fn every_built_in_profile_provisions_every_device_when_nothing_is_slow() {
    for name in fleetstorm::device::profile::names() {
        let (protocol, _) = client(name);
        let dir = tempfile::tempdir().unwrap();
        let devices = format!("profile = \"{name}\"\nprotocol = \"{protocol}\"");
        let (s, rows) = run(dir.path(), 4, &devices, "");
        assert_eq!(
            (s.devices.provisioned, s.devices.failed),
            (4, 0),
            "{name}: {:?}",
            s.failures
        );
        assert!(
            rows.iter().all(|r| r["attempts"] == "1"),
            "{name}: {rows:?}"
        );
    }
}

#[test]
fn a_hook_slower_than_embedded_c_demos_1_s_makes_its_devices_retry_with_new_certificates() {
    let dir = tempfile::tempdir().unwrap();
    // The demo's profile, its 5 s between attempts shortened to keep the test quick.
    let devices = "[devices.profile]\nbase = \"embedded-c-demo\"\nflow_retry.delay = \"100ms\"\nflow_retry.delay_max = \"100ms\"";
    let hook = "[target.mock.hooks.FleetProvisioningTemplate]\nkind = \"http\"\nurl = \"embedded\"\nprefix = \"123456\"\nlatency = \"1300ms\"";
    let (s, rows) = run(dir.path(), 3, devices, hook);
    assert_eq!(
        (s.devices.provisioned, s.devices.failed),
        (0, 3),
        "{:?}",
        s.failures
    );
    for row in &rows {
        assert_eq!(row["outcome"], "failed", "{row:?}");
        assert_eq!(row["reason"], "timeout.register_thing", "{row:?}");
        // The third attempt is the last.
        assert_eq!(row["attempts"], "3", "{row:?}");
        // The total includes the attempts and the waits between them.
        let total: u64 = row["total_us"].parse().unwrap();
        assert!(total >= 3_200_000, "{row:?}");
    }
    // A new certificate per attempt: three issued per device (created.csv lists each).
    let created = std::fs::read_to_string(dir.path().join("out/created.csv")).unwrap();
    let certificates: std::collections::BTreeSet<&str> = created
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split(',')
                .find(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    assert_eq!(certificates.len(), 9, "{created}");
}

/// The standalone mock (`fleetstorm mock`, a process on an ephemeral loopback port) and
/// `fleetstorm run` (the binary, one `[[variants]]` entry per built-in profile, so one run and
/// one mock): every profile provisions every device, over its client's protocol and payload.
#[test]
fn every_built_in_profile_provisions_every_device_against_the_standalone_mock() {
    const COUNT: usize = 4;
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let mock = common::MockProcess::start(
        [
            "mock".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--keys".into(),
            "p256".into(),
            "--pki".into(),
            pki.clone().into_os_string(),
        ] as [std::ffi::OsString; 7],
        Stdio::null(),
    );
    let file = |name: &str| pki.join(name).display().to_string();
    let mut scenario = format!(
        r#"
name = "profiles-standalone"
[target]
kind = "endpoint"
host = "127.0.0.1"
port = {port}
ca = "{ca}"
claim_cert = "{cert}"
claim_key = "{key}"
[devices]
count = {COUNT}
client_id = "standalone-{{seq:03}}"
[devices.parameters]
SerialNumber = "123456{{seq:03}}"
DeviceName = "standalone-thing-{{seq:03}}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "burst"
count = {COUNT}
"#,
        port = mock.addr.port(),
        ca = file(fleetstorm::pki::ROOT_CA_PEM),
        cert = file(fleetstorm::pki::CLAIM_PEM),
        key = file(fleetstorm::pki::CLAIM_KEY),
    );
    // One registry for every variant: each profile's devices and things have their own names.
    for name in fleetstorm::device::profile::names() {
        let (protocol, certificate) = client(name);
        scenario += &format!(
            r#"
[[variants]]
name = "{name}"
[variants.set]
"devices.profile" = "{name}"
"devices.protocol" = "{protocol}"
"devices.certificate" = "{certificate}"
"devices.client_id" = "{name}-{{seq:03}}"
"devices.parameters.DeviceName" = "{name}-thing-{{seq:03}}"
"#
        );
    }
    let path = dir.path().join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .arg("run")
        .arg(&path)
        .arg("--no-tui")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = common::output_text(&run);
    for name in fleetstorm::device::profile::names() {
        let folder = out.join(name);
        let summary: serde_json::Value = std::fs::read(folder.join("summary.json"))
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or_else(|e| panic!("{name}: no summary ({e}): {text}"));
        let devices = &summary["devices"];
        assert_eq!(
            (&devices["provisioned"], &devices["failed"]),
            (&COUNT.into(), &0.into()),
            "{name}: {}",
            summary["failures"]
        );
        assert_eq!(summary["variant"], name, "{name}");
        let rows = device_rows(&folder);
        assert_eq!(rows.len(), COUNT, "{name}: {rows:?}");
        for row in &rows {
            assert_eq!(row["outcome"], "provisioned", "{name}: {row:?}");
            assert!(
                row["thing_name"].starts_with(&format!("{name}-thing-")),
                "{name}: {row:?}"
            );
        }
    }
    assert!(run.status.success(), "{text}");
    drop(mock);
    eprintln!(
        "standalone mock, 8 profiles x {COUNT} devices: {:?}",
        began.elapsed()
    );
}
