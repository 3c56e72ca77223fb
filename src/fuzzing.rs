//! Entry points of the fuzz targets under `fuzz/` (docs/developer/fuzzing.md) and of their
//! regression tests (`tests/it/fuzz_regressions.rs`). Each runs the real code on arbitrary bytes;
//! any panic is a bug. Not an API: compiled always, so the normal build keeps them in step with
//! the code.
//!
//! Inputs that need more than one piece (a template and its parameters, a document and what
//! to check against it) are split at the first NUL byte.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::device::flow::{Action as FlowAction, Csr, Event, Flow, Identity};
use crate::device::{After, AfterAction, CertificateMode, DeviceSpec, DeviceTls, Protocol};
use crate::iot::policy::{self, Action, ArnContext, PolicyDocument, PolicyVars};
use crate::iot::template::RenderContext;
use crate::mock::registry::Registry;
use crate::pki::{self, KeyAlgorithm};
use crate::protocol::{Format, RequestTopic, valid_template_name};
use crate::scenario::Scenario;

pub use crate::mock::fuzzing::{CLIENT_ID, TOKEN, mqtt_session, provisioning_request};

/// Certificate ID used where one is needed but none is issued.
const CERTIFICATE_ID: &str = crate::mock::fuzzing::PENDING_CERTIFICATE_ID;

/// `(before, after)` the first NUL byte (`after` is empty when there is none).
fn split_nul(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[]),
    }
}

/// A CreateCertificateFromCsr CSR, as the mock handles it: `input[0]` bit 0 set, the rest is
/// the CSR's DER (wrapped in PEM here, so the fuzzer mutates the structure, not base64); clear,
/// the rest is the PEM text itself. A CSR the mock accepts yields a certificate that parses
/// and whose ID is the SHA-256 of its DER.
pub fn csr(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let pem = if mode & 1 != 0 {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", rest.to_vec()))
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    if let Ok(issued) = crate::mock::fuzzing::pki().issue_from_csr(&pem) {
        assert_eq!(issued.certificate_id, pki::certificate_id(&issued.der));
        x509_parser::parse_x509_certificate(&issued.der).expect("issued certificate parses");
    }
}

/// A template body (before the first NUL) loaded as the mock loads one, then, if valid,
/// rendered with the parameters after the NUL (`name=value` lines) and applied to an empty
/// registry as RegisterThing applies it.
pub fn template(input: &[u8]) {
    let (body, params) = split_nul(input);
    let Ok(template) = crate::mock::fuzzing::load_template_text(&String::from_utf8_lossy(body))
    else {
        return;
    };
    let params = String::from_utf8_lossy(params);
    let parameters: BTreeMap<String, String> = params
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(rendered) = template.render(&RenderContext {
        parameters: &parameters,
        certificate_id: CERTIFICATE_ID,
    }) else {
        return;
    };
    let registry = Registry::default();
    let token = "t".repeat(64);
    registry.add_pending_certificate(
        CERTIFICATE_ID,
        "",
        "claim",
        &token,
        Duration::from_secs(3600),
    );
    let _ = registry.apply(&token, &rendered);
}

/// A policy document (JSON, before the first NUL) parsed as the mock parses one, then
/// evaluated for every action against the names after the NUL. Those lines are: client ID,
/// thing name (empty: none), region, account, then names (client IDs, topics, filters).
/// Also checks that the claim policy the mock builds for any region and account lets a claim
/// connection use a valid template's provisioning topic.
pub fn policy(input: &[u8]) {
    let (doc, rest) = split_nul(input);
    let rest = String::from_utf8_lossy(rest);
    let mut lines = rest.lines();
    let client_id = lines.next().unwrap_or("client");
    let thing_name = lines.next().filter(|t| !t.is_empty());
    let region = lines.next().unwrap_or("us-east-1");
    let account = lines.next().unwrap_or("123456789012");
    let names: Vec<&str> = lines.take(16).collect();
    let arn = ArnContext::new(region, account);
    let vars = PolicyVars {
        client_id,
        thing_name,
        certificate_id: Some(CERTIFICATE_ID),
    };

    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(doc)
        && let Ok(document) = PolicyDocument::parse(&value)
    {
        for action in Action::ALL {
            for name in names.iter().chain([&client_id]) {
                let _ = document.evaluate(action, &arn.resource_for(action, name), &vars);
            }
        }
    }

    let template = names
        .first()
        .copied()
        .unwrap_or("FleetProvisioningTemplate");
    if valid_template_name(template) {
        let claim = PolicyDocument::parse(&policy::claim_policy_json(&arn, template))
            .expect("the claim policy parses");
        let topic = RequestTopic::register_thing(template, crate::protocol::Format::Json);
        for (action, name) in [
            (Action::Publish, topic.topic()),
            (Action::Subscribe, topic.accepted()),
            (Action::Receive, topic.rejected()),
        ] {
            assert!(
                claim
                    .evaluate(action, &arn.resource_for(action, &name), &vars)
                    .is_allowed(),
                "claim policy for region {region:?}, account {account:?} refuses {action:?} {name}"
            );
        }
    }
}

/// A scenario file (before the first NUL) loaded as `fleetstorm run` loads one, with the
/// `--set` overrides after the NUL (one per line).
pub fn scenario(input: &[u8]) {
    let (text, sets) = split_nul(input);
    let sets: Vec<String> = String::from_utf8_lossy(sets)
        .lines()
        .take(8)
        .map(String::from)
        .collect();
    let Ok(mut file) = tempfile::Builder::new()
        .prefix("fleetstorm-fuzz-")
        .suffix(".toml")
        .tempfile()
    else {
        return;
    };
    if file.write_all(text).is_err() {
        return;
    }
    let _ = Scenario::load_variants(file.path(), &sets);
}

/// A device's flow fed a response payload it did not expect: `input[0]` bit 0 chooses CSR mode,
/// bit 1 the RegisterThing response (else the create-certificate one), bit 2 the rejected
/// topic, bit 3 telemetry after provisioning, bit 4 an MQTT 5 device, bit 5 CBOR payloads (the
/// valid responses CBOR-encoded too); the rest is the payload. The other responses are
/// valid, and the certificate and key the flow adopts are built into a TLS identity as the
/// device does.
pub fn device_response(input: &[u8]) {
    let Some((&mode, payload)) = input.split_first() else {
        return;
    };
    let claim = crate::mock::fuzzing::pki();
    let spec = DeviceSpec {
        client_id: "device-1".into(),
        template: "FleetProvisioningTemplate".into(),
        parameters: BTreeMap::from([("SerialNumber".to_string(), "1".to_string())]),
        mode: if mode & 1 != 0 {
            CertificateMode::Csr
        } else {
            CertificateMode::Keys
        },
        csr_key: KeyAlgorithm::P256,
        protocol: if mode & 16 != 0 {
            Protocol::Mqtt5
        } else {
            Protocol::Mqtt311
        },
        profile: std::sync::Arc::new(crate::device::Profile {
            payload: if mode & 32 != 0 {
                Format::Cbor
            } else {
                Format::Json
            },
            ..crate::device::Profile::generic()
        }),
        after: After {
            action: if mode & 8 != 0 {
                AfterAction::Telemetry
            } else {
                AfterAction::Disconnect
            },
            duration: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            topic: "dt/{thingName}/{clientId}".into(),
            payload_bytes: 64,
        },
        classify: Default::default(),
    };
    let csr = (mode & 1 != 0).then(|| Csr {
        key_pem: claim.claim_key_pem.clone(),
        csr_pem: "CSR".into(),
    });
    let fuzzed = Event::Response {
        rejected: mode & 4 != 0,
        payload: Bytes::copy_from_slice(payload),
    };
    let create = serde_json::json!({
        "certificateId": CERTIFICATE_ID,
        "certificatePem": claim.claim_cert_pem,
        "privateKey": claim.claim_key_pem,
        "certificateOwnershipToken": "token",
    });
    let registered = serde_json::json!({"thingName": "thing-1", "deviceConfiguration": {}});
    let valid = |body: serde_json::Value| Event::Response {
        rejected: false,
        payload: match spec.profile.payload {
            Format::Json => Bytes::from(body.to_string()),
            Format::Cbor => {
                let mut cbor = Vec::new();
                ciborium::into_writer(&body, &mut cbor).expect("CBOR of a JSON value");
                Bytes::from(cbor)
            }
        },
    };
    let (first, second) = if mode & 2 != 0 {
        (valid(create), fuzzed)
    } else {
        (fuzzed, valid(registered))
    };

    let mut now = Instant::now();
    let mut flow = Flow::new(&spec, csr, now);
    let mut events = vec![
        Event::ConnAck(0),
        Event::SubAck { refused: None },
        first,
        second,
    ]
    .into_iter();
    let mut action = flow.action();
    // Bounded: telemetry lasts two intervals.
    for _ in 0..32 {
        let event = match action {
            FlowAction::Done | FlowAction::Failed => break,
            FlowAction::Adopt {
                certificate_pem,
                private_key_pem,
            } => match device_tls().for_identity(certificate_pem, private_key_pem) {
                Ok(_) => Event::Adopted,
                Err(e) => Event::Unusable(e.to_string()),
            },
            FlowAction::Connect {
                identity: Identity::Own,
                ..
            } => Event::ConnAck(0),
            FlowAction::Publish { .. } => Event::PubAck(0),
            FlowAction::Idle { until } => {
                now = now.max(until);
                Event::Elapsed
            }
            _ => match events.next() {
                Some(event) => event,
                None => break,
            },
        };
        now += Duration::from_millis(1);
        action = flow.handle(now, event);
    }
    let _ = flow.into_report();
}

/// The devices' TLS setup on the fuzzing PKI, built once.
fn device_tls() -> &'static DeviceTls {
    static TLS: OnceLock<DeviceTls> = OnceLock::new();
    TLS.get_or_init(|| {
        let pki = crate::mock::fuzzing::pki();
        DeviceTls::new(
            &pki.root_ca_pem,
            &pki.claim_cert_pem,
            &pki.claim_key_pem,
            false,
        )
        .expect("device TLS on the fuzzing PKI")
    })
}
