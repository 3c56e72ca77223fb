//! The fuzz targets' committed inputs in the normal test suite: every seed (`fuzz/corpus/<target>/`)
//! and every input that once crashed a target (`fuzz/regressions/<target>/`) runs through the
//! target's entry point (`fleetstorm::fuzzing`), so a fixed crash stays fixed without nightly or
//! cargo-fuzz. Files libFuzzer adds to a corpus (40-hex-digit names, not committed) are skipped.
//!
//! Beside them, a mutation smoke run: a few hundred inputs per target mutated from the committed
//! ones (seeded, so a failure reproduces), on stable Rust at release speed. It is not coverage
//! guided (`.ci/fuzz` is, docs/developer/fuzzing.md); it catches a panic that a small change to a
//! seed reaches, and that every `fuzz/fuzz_targets/` file still calls its entry point.

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

/// One mutation of `input`, libFuzzer's simple kinds: flip a bit, set a byte to an edge value,
/// insert random bytes, erase or repeat a range, truncate, or splice in part of `other`.
fn mutate(rng: &mut impl rand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    use rand::RngExt as _;
    let mut out = input.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let len = out.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        let span = if len == 0 {
            0
        } else {
            rng.random_range(1..=(len - at).min(16))
        };
        match rng.random_range(0..7) {
            0 if len > 0 => out[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => out[at] = [0, 0x7f, 0x80, 0xff][rng.random_range(0..4)],
            2 => {
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            3 if len > 0 => {
                out.drain(at..at + span);
            }
            4 if len > 0 => {
                let copy = out[at..at + span].to_vec();
                out.splice(at..at, copy);
            }
            5 => out.truncate(at),
            _ if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                let to = rng.random_range(from..=other.len());
                out.splice(at..len, other[from..to].iter().copied());
            }
            _ => {}
        }
    }
    out
}

/// Run `runs` mutated inputs of `target` (`FUZZ_SMOKE_RUNS` multiplies them) through `entry`;
/// an input that panics is written to `target/fuzz-smoke/` and the test fails naming it (commit
/// it under `fuzz/regressions/<target>/` once fixed).
fn smoke(target: &str, runs: usize, entry: impl Fn(&[u8])) {
    use rand::{RngExt as _, SeedableRng as _};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join(format!("fuzz/fuzz_targets/{target}.rs")))
        .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{target}.rs: {e}"));
    assert!(
        source.contains(&format!("fleetstorm::fuzzing::{target}(")),
        "fuzz/fuzz_targets/{target}.rs does not call fleetstorm::fuzzing::{target}"
    );
    let seeds: Vec<Vec<u8>> = inputs(target)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let scale: usize = std::env::var("FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let seed = target
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for run in 0..runs * scale {
        let input = &seeds[rng.random_range(0..seeds.len())];
        let other = &seeds[rng.random_range(0..seeds.len())];
        let bytes = mutate(&mut rng, input, other);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&bytes))).is_err() {
            let dir = root.join("target/fuzz-smoke");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{target}-{run}"));
            std::fs::write(&file, &bytes).unwrap();
            panic!(
                "{target}: mutated input {run} crashes; it is in {}",
                file.display()
            );
        }
    }
}

#[test]
fn the_committed_fuzz_targets_are_the_entry_points_tested_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "csr",
            "device_response",
            "mqtt_session",
            "policy",
            "provisioning_request",
            "scenario",
            "template"
        ]
    );
    let manifest = std::fs::read_to_string(dir.parent().unwrap().join("Cargo.toml")).unwrap();
    for t in &targets {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{t}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {t}"
        );
    }
}

#[test]
fn mutated_inputs_crash_no_target() {
    smoke("mqtt_session", 1000, |b| {
        fuzzing::mqtt_session(b);
    });
    smoke("provisioning_request", 3000, fuzzing::provisioning_request);
    smoke("device_response", 3000, fuzzing::device_response);
    smoke("csr", 3000, fuzzing::csr);
    smoke("template", 3000, fuzzing::template);
    smoke("policy", 3000, fuzzing::policy);
    smoke("scenario", 3000, fuzzing::scenario);
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
