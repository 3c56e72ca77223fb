//! Unit tests of the flow: each stage's success, rejection, timeout and malformed-response paths.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::device::{After, HookCause, Profile};
use crate::pki::KeyAlgorithm;

const MS: Duration = Duration::from_millis(1);

fn spec(mode: CertificateMode, action: AfterAction) -> DeviceSpec {
    DeviceSpec {
        client_id: "client-1".into(),
        template: "Tpl".into(),
        parameters: BTreeMap::from([("SerialNumber".to_string(), "42".to_string())]),
        mode,
        csr_key: KeyAlgorithm::P256,
        protocol: Protocol::Mqtt311,
        profile: std::sync::Arc::new(Profile::generic()),
        classify: Default::default(),
        after: After {
            action,
            duration: Duration::from_millis(250),
            interval: Duration::from_millis(100),
            topic: "dt/{thingName}/{clientId}".into(),
            payload_bytes: 48,
        },
    }
}

fn keys() -> DeviceSpec {
    spec(CertificateMode::Keys, AfterAction::Disconnect)
}

fn csr() -> Option<Csr> {
    Some(Csr {
        key_pem: "DEVICE KEY".into(),
        csr_pem: "THE CSR".into(),
    })
}

fn accepted(body: &str) -> Event {
    Event::Response {
        rejected: false,
        payload: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn rejected(status: u16, code: &str, message: &str) -> Event {
    let body =
        format!(r#"{{"statusCode":{status},"errorCode":"{code}","errorMessage":"{message}"}}"#);
    Event::Response {
        rejected: true,
        payload: Bytes::from(body),
    }
}

const KEYS_ACCEPTED: &str = r#"{"certificateId":"c1","certificatePem":"CERT","privateKey":"KEY","certificateOwnershipToken":"tok"}"#;
const CSR_ACCEPTED: &str =
    r#"{"certificateId":"c2","certificatePem":"CERT2","certificateOwnershipToken":"tok2"}"#;
const REGISTERED: &str = r#"{"thingName":"thing-1","deviceConfiguration":{"k":"v"}}"#;

/// Feed `events` one millisecond apart from `t0`; returns the instant of the last one.
fn feed(flow: &mut Flow<'_>, t0: Instant, events: Vec<Event>) -> Instant {
    let mut now = t0;
    for event in events {
        now += MS;
        flow.handle(now, event);
    }
    now
}

/// A flow for `s` fed `events` from a fresh start, and the instant of the last event.
fn drive(s: &DeviceSpec, csr: Option<Csr>, events: Vec<Event>) -> (Flow<'_>, Instant) {
    let t0 = Instant::now();
    let mut flow = Flow::new(s, csr, t0);
    let now = feed(&mut flow, t0, events);
    (flow, now)
}

fn ok() -> Event {
    Event::ConnAck(0)
}

fn suback() -> Event {
    Event::SubAck { refused: None }
}

/// The events that take a keys-mode flow to the connect with its own identity.
fn to_own_connect() -> Vec<Event> {
    vec![
        ok(),
        suback(),
        accepted(KEYS_ACCEPTED),
        accepted(REGISTERED),
        Event::Adopted,
    ]
}

fn failure(flow: Flow<'_>) -> Failure {
    flow.into_report().outcome.unwrap_err()
}

fn assert_failed(flow: Flow<'_>, label: &str) -> Failure {
    assert_eq!(flow.action(), Action::Failed);
    let f = failure(flow);
    assert_eq!(f.reason.label(), label, "{}", f.detail);
    f
}

#[test]
fn a_new_flow_should_connect_with_the_claim_identity() {
    let s = keys();
    let t0 = Instant::now();
    let flow = Flow::new(&s, None, t0);
    assert_eq!(
        flow.action(),
        Action::Connect {
            identity: Identity::Claim,
            client_id: "client-1",
            deadline: t0 + s.profile.timeouts.connect,
        }
    );
}

#[test]
fn an_accepted_claim_connack_should_subscribe_to_both_apis_responses() {
    let s = keys();
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, None, t0);
    let action = flow.handle(t0 + 3 * MS, ok());
    let Action::Subscribe { filters, deadline } = action else {
        panic!("{action:?}")
    };
    assert_eq!(
        filters,
        [
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create/json/rejected",
            "$aws/provisioning-templates/Tpl/provision/json/accepted",
            "$aws/provisioning-templates/Tpl/provision/json/rejected",
        ]
    );
    assert_eq!(deadline, t0 + 3 * MS + s.profile.timeouts.subscribe);
    let report = flow.into_report();
    assert_eq!(report.stages.len(), 1);
    assert_eq!(report.stages[0].stage, Stage::ConnectClaim);
    assert_eq!(report.stages[0].service, 3 * MS);
}

#[test]
fn a_refused_claim_connack_should_fail_with_its_return_code() {
    let s = keys();
    let mut flow = Flow::new(&s, None, Instant::now());
    // MQTT 3.1.1's return code 5, not authorized.
    flow.handle(Instant::now(), Event::ConnAck(5));
    let f = assert_failed(flow, "connack_refused.connect_claim.5");
    assert_eq!(f.detail, "CONNACK NotAuthorized");
}

#[test]
fn a_claim_connect_timeout_should_fail_as_timeout_connect_claim() {
    let s = keys();
    let mut flow = Flow::new(&s, None, Instant::now());
    flow.handle(Instant::now(), Event::Timeout);
    assert_failed(flow, "timeout.connect_claim");
}

#[test]
fn a_lost_claim_connection_should_fail_with_the_drivers_classification() {
    let s = keys();
    let mut flow = Flow::new(&s, None, Instant::now());
    let lost = Failure::new(FailureReason::ConnectionReset(Stage::ConnectClaim), "reset");
    flow.handle(Instant::now(), Event::Lost(lost));
    let f = assert_failed(flow, "connection_reset.connect_claim");
    assert_eq!(f.detail, "reset");
}

#[test]
fn a_suback_should_request_new_keys_with_an_empty_object() {
    let s = keys();
    let (flow, now) = drive(&s, None, vec![ok(), suback()]);
    assert_eq!(
        flow.action(),
        Action::Request {
            topic: "$aws/certificates/create/json",
            payload: b"{}",
            responses: [
                "$aws/certificates/create/json/accepted",
                "$aws/certificates/create/json/rejected",
            ],
            deadline: now + s.profile.timeouts.create_certificate,
            await_puback: false,
        }
    );
}

#[test]
fn a_refused_suback_should_fail_as_subscribe_refused() {
    let s = keys();
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, None, t0);
    // MQTT 3.1.1's one failure return code.
    let refused = Event::SubAck {
        refused: Some(0x80),
    };
    feed(&mut flow, t0, vec![ok(), refused]);
    assert_failed(flow, "subscribe_refused");
}

#[test]
fn a_subscribe_timeout_should_fail_as_timeout_subscribe() {
    let s = keys();
    let (flow, _) = drive(&s, None, vec![ok(), Event::Timeout]);
    let f = assert_failed(flow, "timeout.subscribe");
    assert_eq!(f.detail, "no SUBACK");
}

#[test]
fn accepted_keys_should_register_with_the_ownership_token_and_parameters() {
    let s = keys();
    let (flow, now) = drive(&s, None, vec![ok(), suback(), accepted(KEYS_ACCEPTED)]);
    let Action::Request {
        topic,
        payload,
        responses,
        deadline,
        await_puback,
    } = flow.action()
    else {
        panic!("{:?}", flow.action());
    };
    assert!(
        !await_puback,
        "the generic profile waits for RegisterThing's response alone, as devices did before profiles"
    );
    assert_eq!(topic, "$aws/provisioning-templates/Tpl/provision/json");
    assert_eq!(
        responses[1],
        "$aws/provisioning-templates/Tpl/provision/json/rejected"
    );
    assert_eq!(deadline, now + s.profile.timeouts.register_thing);
    let body: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(body["certificateOwnershipToken"], "tok");
    assert_eq!(body["parameters"]["SerialNumber"], "42");
}

#[test]
fn csr_mode_should_send_the_csr_and_keep_the_device_key() {
    let s = spec(CertificateMode::Csr, AfterAction::Disconnect);
    let (mut flow, now) = drive(&s, csr(), vec![ok(), suback()]);
    let Action::Request { topic, payload, .. } = flow.action() else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(topic, "$aws/certificates/create-from-csr/json");
    let body: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(body["certificateSigningRequest"], "THE CSR");
    feed(
        &mut flow,
        now,
        vec![
            accepted(CSR_ACCEPTED),
            accepted(REGISTERED),
            Event::Adopted,
            ok(),
        ],
    );
    let p = flow.into_report().outcome.unwrap();
    assert_eq!(p.certificate_id, "c2");
    assert_eq!(p.certificate_pem, "CERT2");
    assert_eq!(p.private_key_pem, "DEVICE KEY");
}

#[test]
fn a_rejected_create_should_fail_with_status_and_error_code() {
    let s = spec(CertificateMode::Csr, AfterAction::Disconnect);
    let events = vec![ok(), suback(), rejected(400, "InvalidCsr", "bad CSR")];
    let (flow, _) = drive(&s, csr(), events);
    let f = assert_failed(flow, "rejected.create_certificate.400.InvalidCsr");
    assert_eq!(f.detail, "bad CSR");
}

#[test]
fn a_throttled_create_should_fail_as_throttled() {
    let s = keys();
    let events = vec![ok(), suback(), rejected(429, "ThrottlingException", "slow")];
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "throttled.create_certificate");
}

#[test]
fn a_rejection_should_keep_its_raw_codes_and_follow_the_scenarios_classification() {
    let mut s = keys();
    let events = || vec![ok(), suback(), rejected(503, "SlowDown", "busy")];
    let (flow, _) = drive(&s, None, events());
    let f = assert_failed(flow, "rejected.create_certificate.503.SlowDown");
    let raw = f.rejection.expect("the raw rejection is kept");
    assert_eq!(
        (
            raw.status_code,
            raw.error_code.as_str(),
            raw.error_message.as_str()
        ),
        (503, "SlowDown", "busy")
    );
    let rules = crate::device::Classify {
        throttled: vec!["503:SlowDown".into()],
        hook_denied: vec!["400:Denied".into()],
    };
    s.classify = std::sync::Arc::new(rules.rules().unwrap());
    let (flow, _) = drive(&s, None, events());
    assert_failed(flow, "throttled.create_certificate");
    // The default 429 no longer counts once `throttled` is given.
    let (flow, _) = drive(&s, None, vec![ok(), suback(), rejected(429, "X", "y")]);
    assert_failed(flow, "rejected.create_certificate.429.X");
    let mut register = to_own_connect();
    register.truncate(3);
    register.push(rejected(400, "Denied", "serial not allowed"));
    let (flow, _) = drive(&s, None, register);
    assert_failed(flow, "hook_denied");
}

#[test]
fn a_create_timeout_should_fail_as_timeout_create_certificate() {
    let s = keys();
    let (flow, _) = drive(&s, None, vec![ok(), suback(), Event::Timeout]);
    let f = assert_failed(flow, "timeout.create_certificate");
    assert_eq!(f.detail, "no response");
}

#[test]
fn a_malformed_create_response_should_fail_as_malformed() {
    let s = keys();
    let events = vec![ok(), suback(), accepted(r#"{"certificateId":"c1"}"#)];
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "malformed_response.create_certificate");
}

#[test]
fn a_malformed_rejection_should_fail_as_malformed() {
    let s = keys();
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, None, t0);
    let garbage = Event::Response {
        rejected: true,
        payload: Bytes::from_static(b"not json"),
    };
    feed(&mut flow, t0, vec![ok(), suback(), garbage]);
    assert_failed(flow, "malformed_response.create_certificate");
}

#[test]
fn an_accepted_registration_should_adopt_the_new_identity() {
    let s = keys();
    let events = vec![
        ok(),
        suback(),
        accepted(KEYS_ACCEPTED),
        accepted(REGISTERED),
    ];
    let (flow, _) = drive(&s, None, events);
    assert_eq!(
        flow.action(),
        Action::Adopt {
            certificate_pem: "CERT",
            private_key_pem: "KEY",
        }
    );
}

#[test]
fn a_rejected_registration_should_fail_with_status_and_error_code() {
    let s = keys();
    let events = vec![
        ok(),
        suback(),
        accepted(KEYS_ACCEPTED),
        rejected(400, "InvalidParameters", "no SerialNumber"),
    ];
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "rejected.register_thing.400.InvalidParameters");
}

#[test]
fn an_access_denied_registration_should_be_a_hook_denial_with_its_cause() {
    for (message, cause, label) in [
        ("denied by hook", HookCause::Denied, "hook_denied"),
        ("hook timed out", HookCause::Timeout, "hook_denied.timeout"),
        (
            "hook returned malformed output",
            HookCause::Malformed,
            "hook_denied.malformed",
        ),
        ("hook failed", HookCause::Error, "hook_denied.error"),
    ] {
        let s = keys();
        let t0 = Instant::now();
        let mut flow = Flow::new(&s, None, t0);
        let events = vec![
            ok(),
            suback(),
            accepted(KEYS_ACCEPTED),
            rejected(403, "AccessDenied", message),
        ];
        feed(&mut flow, t0, events);
        let f = assert_failed(flow, label);
        assert_eq!(f.reason, FailureReason::HookDenied(cause));
    }
}

#[test]
fn a_registration_timeout_should_fail_as_timeout_register_thing() {
    let s = keys();
    let events = vec![ok(), suback(), accepted(KEYS_ACCEPTED), Event::Timeout];
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "timeout.register_thing");
}

#[test]
fn a_malformed_registration_response_should_fail_as_malformed() {
    let s = keys();
    let events = vec![
        ok(),
        suback(),
        accepted(KEYS_ACCEPTED),
        accepted(r#"{"deviceConfiguration":{}}"#),
    ];
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "malformed_response.register_thing");
}

#[test]
fn an_unusable_identity_should_fail_as_a_malformed_certificate() {
    let s = keys();
    let mut events = to_own_connect();
    events.pop();
    events.push(Event::Unusable("private key: no PEM".into()));
    let (flow, _) = drive(&s, None, events);
    let f = assert_failed(flow, "malformed_response.create_certificate");
    assert_eq!(f.detail, "private key: no PEM");
}

#[test]
fn an_adopted_identity_should_connect_as_the_thing() {
    let s = keys();
    let (flow, now) = drive(&s, None, to_own_connect());
    assert_eq!(
        flow.action(),
        Action::Connect {
            identity: Identity::Own,
            client_id: "thing-1",
            deadline: now + s.profile.timeouts.connect,
        }
    );
}

#[test]
fn an_empty_thing_name_should_connect_as_the_client_id_with_a_suffix() {
    let s = keys();
    let unnamed = accepted(r#"{"thingName":"","deviceConfiguration":{}}"#);
    let events = vec![
        ok(),
        suback(),
        accepted(KEYS_ACCEPTED),
        unnamed,
        Event::Adopted,
    ];
    let (flow, _) = drive(&s, None, events);
    let Action::Connect { client_id, .. } = flow.action() else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(client_id, "client-1-device");
}

#[test]
fn an_accepted_device_connack_should_finish_with_five_timed_stages() {
    let s = keys();
    let mut events = to_own_connect();
    events.push(ok());
    let (flow, now) = drive(&s, None, events);
    assert_eq!(flow.action(), Action::Done);
    let report = flow.into_report();
    let stages: Vec<Stage> = report.stages.iter().map(|s| s.stage).collect();
    assert_eq!(stages, Stage::ALL[..5].to_vec());
    assert_eq!(report.provisioned_at, Some(now));
    // Adopting the identity is outside the timed connect.
    assert_eq!(report.stages[4].service, MS);
    let p = report.outcome.unwrap();
    assert_eq!(p.thing_name, "thing-1");
    assert_eq!(p.certificate_id, "c1");
    assert_eq!(p.private_key_pem, "KEY");
    assert_eq!(p.device_configuration["k"], "v");
}

#[test]
fn a_refused_device_connack_should_fail_connect_device() {
    let s = keys();
    let mut events = to_own_connect();
    // MQTT 3.1.1's return code 2, identifier rejected.
    events.push(Event::ConnAck(2));
    let (flow, _) = drive(&s, None, events);
    assert_failed(flow, "connack_refused.connect_device.2");
}

#[test]
fn a_device_connect_timeout_should_fail_as_timeout_connect_device() {
    let s = keys();
    let mut events = to_own_connect();
    events.push(Event::Timeout);
    let (flow, _) = drive(&s, None, events);
    let report = flow.into_report();
    assert_eq!(report.provisioned_at, None);
    assert_eq!(
        report.outcome.unwrap_err().reason.label(),
        "timeout.connect_device"
    );
}

#[test]
fn a_stay_should_idle_for_its_duration_then_finish() {
    let s = spec(CertificateMode::Keys, AfterAction::Stay);
    let mut events = to_own_connect();
    events.push(ok());
    let (mut flow, now) = drive(&s, None, events);
    assert_eq!(
        flow.action(),
        Action::Idle {
            until: now + s.after.duration
        }
    );
    assert_eq!(
        flow.handle(now + s.after.duration, Event::Elapsed),
        Action::Done
    );
    assert!(flow.into_report().outcome.is_ok());
}

#[test]
fn a_release_during_a_stay_should_end_it_as_provisioned() {
    let s = spec(CertificateMode::Keys, AfterAction::Stay);
    let mut events = to_own_connect();
    events.extend([ok(), Event::Released]);
    let (flow, _) = drive(&s, None, events);
    assert_eq!(flow.action(), Action::Done);
    assert!(flow.into_report().outcome.is_ok());
}

#[test]
fn a_disconnect_during_a_stay_should_fail_as_disconnected() {
    let s = spec(CertificateMode::Keys, AfterAction::Stay);
    let mut events = to_own_connect();
    let closed = Failure::new(FailureReason::Disconnected(Stage::Telemetry), "closed");
    events.extend([ok(), Event::Lost(closed)]);
    let (flow, _) = drive(&s, None, events);
    let report = flow.into_report();
    assert!(report.provisioned_at.is_some());
    assert_eq!(
        report.outcome.unwrap_err().reason.label(),
        "disconnected.telemetry"
    );
}

#[test]
fn telemetry_should_publish_every_interval_until_its_duration_ends() {
    let s = spec(CertificateMode::Keys, AfterAction::Telemetry);
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, None, t0);
    let mut events = to_own_connect();
    events.push(ok());
    let start = feed(&mut flow, t0, events);
    let mut now = start;
    let mut published = 0;
    while let Action::Publish {
        topic,
        payload,
        deadline,
    } = flow.action()
    {
        published += 1;
        assert_eq!(topic, "dt/thing-1/thing-1");
        assert_eq!(payload.len(), s.after.payload_bytes);
        let text = std::str::from_utf8(payload).unwrap();
        assert!(
            text.starts_with(&format!("{{\"sequence\":{published},")),
            "{text}"
        );
        assert_eq!(deadline, now + s.profile.timeouts.connect);
        let sent = now;
        now += 2 * MS;
        let Action::Idle { until } = flow.handle(now, Event::PubAck(0)) else {
            panic!("no idle after a PUBACK");
        };
        assert_eq!(
            until,
            (sent + s.after.interval).min(start + s.after.duration)
        );
        now = until;
        flow.handle(now, Event::Elapsed);
    }
    assert_eq!(flow.action(), Action::Done);
    // 250 ms at 100 ms: sent at 0, 100 and 200 ms.
    assert_eq!(published, 3);
    let report = flow.into_report();
    let acks: Vec<_> = report
        .stages
        .iter()
        .filter(|t| t.stage == Stage::Telemetry)
        .collect();
    assert_eq!(acks.len(), 3);
    assert!(acks.iter().all(|t| t.service == 2 * MS));
    assert!(report.outcome.is_ok());
}

#[test]
fn a_telemetry_puback_timeout_should_fail_as_timeout_telemetry() {
    let s = spec(CertificateMode::Keys, AfterAction::Telemetry);
    let mut events = to_own_connect();
    events.extend([ok(), Event::Timeout]);
    let (flow, _) = drive(&s, None, events);
    let f = assert_failed(flow, "timeout.telemetry");
    assert_eq!(f.detail, "no PUBACK");
}

#[test]
fn an_event_out_of_order_should_fail_locally_instead_of_panicking() {
    let s = keys();
    let (flow, _) = drive(&s, None, vec![ok(), Event::PubAck(0)]);
    assert_failed(flow, "local_error.subscribe");
}

#[test]
fn events_after_the_end_should_change_nothing() {
    let s = keys();
    let (flow, _) = drive(&s, None, vec![Event::Timeout, ok(), suback()]);
    assert_failed(flow, "timeout.connect_claim");
}

#[test]
fn each_telemetry_publish_is_timed_from_its_own_due_time_and_a_late_one_counts_its_lateness() {
    let s = spec(CertificateMode::Keys, AfterAction::Telemetry);
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, None, t0);
    let mut events = to_own_connect();
    events.push(ok());
    let start = feed(&mut flow, t0, events);
    // 250 ms at 100 ms: due at 0, 100 and 200 ms. The first PUBACK takes 150 ms, so the second
    // publish (due at 100 ms) goes at once, and the third is still due at 200 ms.
    let Action::Idle { until } = flow.handle(start + 150 * MS, Event::PubAck(0)) else {
        panic!("no idle after a PUBACK");
    };
    assert_eq!(until, start + 100 * MS);
    let second = flow.handle(start + 150 * MS, Event::Elapsed);
    assert!(matches!(second, Action::Publish { .. }), "{second:?}");
    let Action::Idle { until } = flow.handle(start + 152 * MS, Event::PubAck(0)) else {
        panic!("no idle after a PUBACK");
    };
    assert_eq!(until, start + 200 * MS);
    flow.handle(until, Event::Elapsed);
    flow.handle(until + 2 * MS, Event::PubAck(0));
    flow.handle(start + 250 * MS, Event::Elapsed);
    assert_eq!(flow.action(), Action::Done);
    let report = flow.into_report();
    let acks: Vec<_> = report
        .stages
        .iter()
        .filter(|t| t.stage == Stage::Telemetry)
        .collect();
    let due: Vec<_> = acks.iter().map(|t| t.due).collect();
    assert_eq!(due, [0, 100, 200].map(|ms| Some(start + ms * MS)));
    let latency: Vec<_> = acks.iter().map(|t| t.ended - t.due.unwrap()).collect();
    assert_eq!(latency, [150 * MS, 52 * MS, 2 * MS]);
    let service: Vec<_> = acks.iter().map(|t| t.service).collect();
    assert_eq!(service, [150 * MS, 2 * MS, 2 * MS]);
    // The metrics time it so, not from the device's intended start.
    let mut set = crate::metrics::StageSet::default();
    set.record_device(t0, &report.stages, None);
    let h = &set.stages[crate::metrics::stage_index(Stage::Telemetry)].latency;
    let max = crate::metrics::Percentiles::of(h).max_ms;
    assert!((max - 150.0).abs() < 0.2, "{max}");
}

fn mqtt5(mut s: DeviceSpec) -> DeviceSpec {
    s.protocol = Protocol::Mqtt5;
    s
}

#[test]
fn an_mqtt5_claim_connack_refusal_should_be_labelled_with_its_hex_reason_code() {
    let s = mqtt5(keys());
    let mut flow = Flow::new(&s, None, Instant::now());
    flow.handle(Instant::now(), Event::ConnAck(0x87));
    let f = assert_failed(flow, "connack_refused.connect_claim.0x87");
    assert_eq!(
        f.reason,
        FailureReason::ConnackReason(Stage::ConnectClaim, 0x87)
    );
    assert_eq!(f.detail, "CONNACK 0x87 Not authorized");
    assert_eq!(f.reason.class(), "connack_refused");
}

#[test]
fn an_mqtt5_device_connack_refusal_should_be_labelled_with_its_hex_reason_code() {
    let s = mqtt5(keys());
    let mut events = to_own_connect();
    events.push(Event::ConnAck(0x9F));
    let (flow, _) = drive(&s, None, events);
    let f = assert_failed(flow, "connack_refused.connect_device.0x9f");
    assert_eq!(f.detail, "CONNACK 0x9f Connection rate exceeded");
}

#[test]
fn an_mqtt5_suback_failure_should_be_labelled_with_its_reason_code() {
    let s = mqtt5(keys());
    let refused = Event::SubAck {
        refused: Some(0x87),
    };
    let (flow, _) = drive(&s, None, vec![ok(), refused]);
    let f = assert_failed(flow, "subscribe_refused.0x87");
    assert_eq!(f.reason.class(), "subscribe_refused");
}

#[test]
fn an_mqtt5_flow_should_run_to_the_end_on_the_same_events() {
    let s = mqtt5(keys());
    let mut events = to_own_connect();
    events.push(ok());
    let (flow, _) = drive(&s, None, events);
    assert_eq!(flow.action(), Action::Done);
    assert_eq!(flow.into_report().outcome.unwrap().thing_name, "thing-1");
}

#[test]
fn a_refused_telemetry_puback_should_fail_with_its_reason_code() {
    let s = mqtt5(spec(CertificateMode::Keys, AfterAction::Telemetry));
    let mut events = to_own_connect();
    events.extend([
        ok(),
        Event::PubAck(0x10),
        Event::Elapsed,
        Event::PubAck(0x87),
    ]);
    let (flow, _) = drive(&s, None, events);
    // 0x10 (no matching subscribers) is a success: the first publish is timed.
    let f = assert_failed(flow, "puback_refused.telemetry.0x87");
    assert_eq!(f.detail, "PUBACK 0x87 Not authorized");
    assert_eq!(f.reason.class(), "puback_refused");
}

#[test]
fn an_mqtt5_disconnect_should_fail_with_the_drivers_reason_code_label() {
    let s = mqtt5(keys());
    let quota = Failure::new(
        FailureReason::DisconnectedBy(Stage::Subscribe, 0x97),
        "DISCONNECT 0x97 Quota exceeded",
    );
    let (flow, _) = drive(&s, None, vec![ok(), Event::Lost(quota)]);
    let f = assert_failed(flow, "disconnected.subscribe.0x97");
    assert_eq!(f.reason.class(), "disconnected");
}

fn cbor(value: &serde_json::Value) -> Event {
    let mut body = Vec::new();
    ciborium::into_writer(value, &mut body).unwrap();
    Event::Response {
        rejected: false,
        payload: Bytes::from(body),
    }
}

fn cbor_spec(mode: CertificateMode) -> DeviceSpec {
    let mut s = spec(mode, AfterAction::Disconnect);
    s.profile = std::sync::Arc::new(Profile {
        payload: Format::Cbor,
        ..Profile::generic()
    });
    s
}

#[test]
fn cbor_keys_requests_should_go_to_the_cbor_topics_with_an_empty_cbor_map() {
    let s = cbor_spec(CertificateMode::Keys);
    let (flow, _) = drive(&s, None, vec![ok()]);
    let Action::Subscribe { filters, .. } = flow.action() else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(
        filters,
        [
            "$aws/certificates/create/cbor/accepted",
            "$aws/certificates/create/cbor/rejected",
            "$aws/provisioning-templates/Tpl/provision/cbor/accepted",
            "$aws/provisioning-templates/Tpl/provision/cbor/rejected",
        ]
    );
    let (flow, _) = drive(&s, None, vec![ok(), suback()]);
    let Action::Request {
        topic,
        payload,
        responses,
        ..
    } = flow.action()
    else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(topic, "$aws/certificates/create/cbor");
    assert_eq!(payload, [0xA0]);
    assert_eq!(responses[0], "$aws/certificates/create/cbor/accepted");
}

#[test]
fn a_cbor_flow_should_encode_requests_and_decode_responses_in_cbor() {
    let s = cbor_spec(CertificateMode::Csr);
    let t0 = Instant::now();
    let mut flow = Flow::new(&s, csr(), t0);
    let now = feed(&mut flow, t0, vec![ok(), suback()]);
    let Action::Request { topic, payload, .. } = flow.action() else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(topic, "$aws/certificates/create-from-csr/cbor");
    let body: serde_json::Value = ciborium::from_reader(payload).unwrap();
    assert_eq!(body["certificateSigningRequest"], "THE CSR");
    let created = cbor(&serde_json::json!({
        "certificateId": "c2", "certificatePem": "CERT2", "certificateOwnershipToken": "tok2"
    }));
    let now = feed(&mut flow, now, vec![created]);
    let Action::Request { topic, payload, .. } = flow.action() else {
        panic!("{:?}", flow.action());
    };
    assert_eq!(topic, "$aws/provisioning-templates/Tpl/provision/cbor");
    let body: serde_json::Value = ciborium::from_reader(payload).unwrap();
    assert_eq!(body["certificateOwnershipToken"], "tok2");
    assert_eq!(body["parameters"]["SerialNumber"], "42");
    let registered = cbor(&serde_json::json!({
        "thingName": "thing-1", "deviceConfiguration": {"k": "v"}
    }));
    feed(&mut flow, now, vec![registered, Event::Adopted, ok()]);
    let p = flow.into_report().outcome.unwrap();
    assert_eq!(
        (p.thing_name.as_str(), p.certificate_id.as_str()),
        ("thing-1", "c2")
    );
    assert_eq!(p.device_configuration["k"], "v");
}

#[test]
fn a_cbor_rejection_should_be_classified_like_a_json_one() {
    let s = cbor_spec(CertificateMode::Keys);
    let mut body = Vec::new();
    let error = crate::protocol::ErrorResponse::new(429, "ThrottlingException", "slow");
    ciborium::into_writer(&error, &mut body).unwrap();
    let rejected = Event::Response {
        rejected: true,
        payload: Bytes::from(body),
    };
    let (flow, _) = drive(&s, None, vec![ok(), suback(), rejected]);
    assert_failed(flow, "throttled.create_certificate");
    // JSON on a CBOR topic is malformed.
    let (flow, _) = drive(&s, None, vec![ok(), suback(), accepted(KEYS_ACCEPTED)]);
    assert_failed(flow, "malformed_response.create_certificate");
}
