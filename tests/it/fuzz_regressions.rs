//! The fuzz targets' committed inputs in the normal test suite: every seed (`fuzz/corpus/<target>/`)
//! and every input that once crashed a target (`fuzz/regressions/<target>/`) runs through the
//! target's entry point (`fleetstorm::fuzzing`), so a fixed crash stays fixed without nightly or
//! cargo-fuzz. Files libFuzzer adds to a corpus (40-hex-digit names, not committed) are skipped.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use fleetstorm::fuzzing;
use rumqttc::{ConnectReturnCode, Packet};

/// The committed inputs of `target`, seeds first.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .collect();
        paths.sort();
        out.extend(paths);
    }
    out
}

/// Run every committed input of `target`; a panic names the file.
fn run_all(target: &str, entry: impl Fn(&[u8])) {
    let paths = inputs(target);
    assert!(!paths.is_empty(), "no committed inputs for {target}");
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&bytes))).is_err() {
            panic!("{target}: {} crashes", path.display());
        }
    }
}

#[test]
fn mqtt_session_inputs() {
    run_all("mqtt_session", |b| {
        fuzzing::mqtt_session(b);
    });
}

#[test]
fn provisioning_request_inputs() {
    run_all("provisioning_request", fuzzing::provisioning_request);
}

#[test]
fn device_response_inputs() {
    run_all("device_response", fuzzing::device_response);
}

#[test]
fn csr_inputs() {
    run_all("csr", fuzzing::csr);
}

#[test]
fn template_inputs() {
    run_all("template", fuzzing::template);
}

#[test]
fn policy_inputs() {
    run_all("policy", fuzzing::policy);
}

#[test]
fn scenario_inputs() {
    run_all("scenario", fuzzing::scenario);
}

/// What the mock sent, as packets.
fn packets(mut bytes: BytesMut) -> Vec<Packet> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(Packet::read(&mut bytes, usize::MAX).expect("the mock sends valid MQTT"));
    }
    out
}

/// The session harness reaches the provisioning APIs: the seed CONNECT + SUBSCRIBE + PUBLISH
/// gets a CONNACK, a SUBACK, PUBACKs and both responses, so the fuzzer starts deep in the
/// session rather than at a refused CONNECT.
#[test]
fn the_session_seed_is_answered_through_to_register_thing() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/mqtt_session/connect-subscribe-publish-keys");
    let sent = packets(BytesMut::from(
        &fuzzing::mqtt_session(&std::fs::read(path).unwrap())[..],
    ));
    let topics: Vec<&str> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&sent[0], Packet::ConnAck(c) if c.code == ConnectReturnCode::Success),
        "{sent:?}"
    );
    assert!(matches!(&sent[1], Packet::SubAck(s) if s.return_codes.len() == 4));
    assert_eq!(
        topics,
        [
            "$aws/certificates/create/json/accepted",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json/accepted",
        ],
        "{sent:?}"
    );
}

/// A certificate the mock never issued is refused at CONNECT (mode bit 1).
#[test]
fn the_session_harness_can_present_an_unknown_certificate() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mqtt_session/unknown-certificate");
    let sent = packets(BytesMut::from(
        &fuzzing::mqtt_session(&std::fs::read(path).unwrap())[..],
    ));
    assert!(
        matches!(&sent[..], [Packet::ConnAck(c)] if c.code == ConnectReturnCode::NotAuthorized),
        "{sent:?}"
    );
}
