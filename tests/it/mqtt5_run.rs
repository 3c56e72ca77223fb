//! `fleetstorm run` with MQTT 5 devices and CBOR payloads against the embedded mock: every device
//! of `quickstart` provisions, and `[[variants]]` override the protocol and payload.

use std::path::Path;
use std::process::Command;

use fleetstorm::device::{Format, Protocol};
use fleetstorm::scenario::Scenario;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

fn scenarios() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
}

/// `fleetstorm run scenarios/quickstart.toml --no-tui` with `sets`: the summary.
fn quickstart(sets: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg(scenarios().join("quickstart.toml"))
        .arg("--no-tui")
        .arg("--out")
        .arg(&out);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{sets:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    serde_json::from_str(&summary).unwrap()
}

fn assert_all_provisioned(summary: &serde_json::Value) {
    let devices = &summary["devices"];
    assert_eq!(devices["planned"], 50, "{summary}");
    assert_eq!(devices["provisioned"], 50, "{}", summary["failures"]);
    assert_eq!(devices["failed"], 0, "{}", summary["failures"]);
}

#[test]
fn quickstart_over_mqtt5_provisions_every_device() {
    assert_all_provisioned(&quickstart(&["devices.protocol=mqtt5"]));
}

#[test]
fn quickstart_with_cbor_payloads_provisions_every_device() {
    assert_all_provisioned(&quickstart(&["devices.payload=cbor"]));
}

#[test]
fn quickstart_over_mqtt5_with_cbor_in_keys_mode_provisions_every_device() {
    assert_all_provisioned(&quickstart(&[
        "devices.protocol=mqtt5",
        "devices.payload=cbor",
        "devices.certificate=keys",
    ]));
}

#[test]
fn protocol_and_payload_load_from_set_and_variants_and_bad_values_are_refused() {
    let quick = scenarios().join("quickstart.toml");
    let s = Scenario::load(&quick, &[]).unwrap();
    assert_eq!(
        (s.devices.protocol, s.profile.payload),
        (Protocol::Mqtt311, Format::Json)
    );
    let sets = ["devices.protocol=mqtt5".to_string()];
    assert_eq!(
        Scenario::load(&quick, &sets).unwrap().devices.protocol,
        Protocol::Mqtt5
    );
    let err = Scenario::load(&quick, &["devices.payload=xml".into()]).unwrap_err();
    assert!(err.to_string().contains("unknown variant `xml`"), "{err}");
    let variants =
        Scenario::load_variants(&scenarios().join("protocol-compare.toml"), &[]).unwrap();
    let wires: Vec<_> = variants
        .iter()
        .map(|v| {
            (
                v.variant.clone().unwrap(),
                v.devices.protocol,
                v.profile.payload,
            )
        })
        .collect();
    assert_eq!(
        wires,
        [
            ("mqtt311-json".to_string(), Protocol::Mqtt311, Format::Json),
            ("mqtt5-cbor".to_string(), Protocol::Mqtt5, Format::Cbor),
        ]
    );
}
