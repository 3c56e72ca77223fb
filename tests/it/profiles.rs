//! Device behaviour profiles end to end on the embedded mock (loopback): every built-in
//! provisions every device when nothing is slow, over the protocol and payload its client uses,
//! and a hook slower than embedded-c-demo's 1 s response wait makes its devices give up and try
//! again with new certificates, as the demo does.

use std::path::Path;
use std::time::Duration;

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
) -> (
    fleetstorm::output::Summary,
    Vec<std::collections::BTreeMap<String, String>>,
) {
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
    let csv = std::fs::read_to_string(out.join("devices.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect();
    (summary, rows)
}

#[test]
fn every_built_in_profile_provisions_every_device_when_nothing_is_slow() {
    for name in fleetstorm::device::profile::names() {
        // The protocol each client speaks (the payload is the profile's).
        let protocol = match name {
            "crt-mqtt5" | "sdk-v2-sample" => "mqtt5",
            _ => "mqtt311",
        };
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
