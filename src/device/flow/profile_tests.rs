//! Acceptance of the built-in profiles, sans IO: a scripted endpoint answers late, rejects and
//! drops, and the device's actions and their times (connect retries, response timeouts,
//! whole-flow retries with their waits) must be what each profile's table says. The device is
//! the flow plus the fleet's whole-flow retry ([`Profile::flow_pause`]), run on virtual time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::device::{After, FailureClass, Jitter, Profile, Reaction};
use crate::pki::KeyAlgorithm;

/// What the endpoint does with one action of the device.
enum Reply {
    /// Answers after this long (late: after the action's deadline, so the device times out).
    After(Duration, Event),
    /// Never answers.
    Silent,
    /// Closes the connection after this long.
    Drop(Duration, FailureReason),
}

/// One action of the device, as the script sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ConnectClaim,
    Subscribe,
    Unsubscribe,
    Create,
    Register,
    ConnectDevice,
}

/// What the device did: at which time (ms from its start), in which attempt, what.
type Log = Vec<(u64, u32, String)>;

struct Device {
    log: Log,
    outcome: Result<Provisioned, Failure>,
    tally: Tally,
    /// Every request's step and `await_puback`.
    await_puback: Vec<(Step, bool)>,
    /// The last attempt's stage times, as service times in ms.
    stages: Vec<(Stage, u64)>,
}

fn spec(profile: &str, mode: CertificateMode) -> DeviceSpec {
    DeviceSpec {
        client_id: "dev-1".into(),
        template: "Tpl".into(),
        parameters: BTreeMap::new(),
        mode,
        csr_key: KeyAlgorithm::P256,
        protocol: Protocol::Mqtt311,
        profile: Arc::new(Profile::builtin(profile).unwrap()),
        classify: Default::default(),
        after: After::default(),
    }
}

fn body(format: Format, json: serde_json::Value) -> Bytes {
    match format {
        Format::Json => Bytes::from(json.to_string()),
        Format::Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(&json, &mut out).unwrap();
            Bytes::from(out)
        }
    }
}

/// The endpoint's accepted answer to a step, in the profile's payload format.
fn accepted(s: &DeviceSpec, step: Step) -> Event {
    let json = match step {
        Step::ConnectClaim | Step::ConnectDevice => return Event::ConnAck(0),
        Step::Subscribe => return Event::SubAck { refused: None },
        Step::Unsubscribe => return Event::UnsubAck,
        Step::Create => serde_json::json!({
            "certificateId": "c1", "certificatePem": "CERT", "privateKey": "KEY",
            "certificateOwnershipToken": "tok"
        }),
        Step::Register => serde_json::json!({"thingName": "thing-1", "deviceConfiguration": {}}),
    };
    Event::Response {
        rejected: false,
        payload: body(s.profile.payload, json),
    }
}

fn rejected(s: &DeviceSpec) -> Event {
    let json =
        serde_json::json!({"statusCode": 400, "errorCode": "InvalidPayload", "errorMessage": "no"});
    Event::Response {
        rejected: true,
        payload: body(s.profile.payload, json),
    }
}

const MS: Duration = Duration::from_millis(1);

/// Run a device of `s` against `script` (attempt, step -> reply): every answer comes 10 ms
/// after the request unless the script says otherwise.
fn run(s: &DeviceSpec, mut script: impl FnMut(u32, Step) -> Option<Reply>) -> Device {
    let t0 = Instant::now();
    let at = |now: Instant| (now - t0).as_millis() as u64;
    let mut now = t0;
    let mut jitter = s.profile.jitter_state(1, 0);
    let mut backoff = Backoff::default();
    let (mut log, mut tally, mut pause, mut await_puback) =
        (Log::new(), Tally::default(), Duration::ZERO, Vec::new());
    for attempt in 1.. {
        let csr = (s.mode == CertificateMode::Csr).then(|| Csr {
            key_pem: format!("KEY-{attempt}"),
            csr_pem: format!("CSR-{attempt}"),
        });
        let mut flow = Flow::new(s, csr, now)
            .with_jitter(jitter)
            .with_backoff(backoff);
        loop {
            let (step, deadline) = match flow.action() {
                Action::Done | Action::Failed => break,
                Action::Wait { until } => {
                    log.push((
                        at(now),
                        attempt,
                        format!("wait {} ms", (until - now).as_millis()),
                    ));
                    now = until;
                    flow.handle(now, Event::Elapsed);
                    continue;
                }
                Action::Adopt { .. } => {
                    flow.handle(now, Event::Adopted);
                    continue;
                }
                Action::Connect {
                    identity, deadline, ..
                } => match identity {
                    Identity::Claim => (Step::ConnectClaim, deadline),
                    Identity::Own => (Step::ConnectDevice, deadline),
                },
                Action::Subscribe { filters, deadline } => {
                    log.push((at(now), attempt, format!("subscribe {}", filters.len())));
                    (Step::Subscribe, deadline)
                }
                Action::Unsubscribe { deadline, .. } => (Step::Unsubscribe, deadline),
                Action::Request {
                    topic,
                    deadline,
                    await_puback: a,
                    ..
                } => {
                    if topic.contains("provision") {
                        await_puback.push((Step::Register, a));
                        (Step::Register, deadline)
                    } else {
                        await_puback.push((Step::Create, a));
                        if let Action::Request { payload, .. } = flow.action() {
                            let sent = String::from_utf8_lossy(payload).into_owned();
                            if let Some(csr) = ["CSR-1", "CSR-2", "CSR-3"]
                                .iter()
                                .find(|c| sent.contains(**c))
                            {
                                log.push((at(now), attempt, format!("csr {csr}")));
                            }
                        }
                        (Step::Create, deadline)
                    }
                }
                other => panic!("{other:?}"),
            };
            if step != Step::Subscribe {
                log.push((at(now), attempt, format!("{step:?}")));
            }
            let reply =
                script(attempt, step).unwrap_or_else(|| Reply::After(10 * MS, accepted(s, step)));
            let event = match reply {
                Reply::After(d, event) if now + d < deadline => {
                    now += d;
                    event
                }
                Reply::After(..) | Reply::Silent => {
                    now = deadline;
                    log.push((at(now), attempt, "timeout".into()));
                    Event::Timeout
                }
                Reply::Drop(d, reason) => {
                    now += d;
                    Event::Lost(Failure::new(reason, "dropped"))
                }
            };
            flow.handle(now, event);
        }
        jitter = flow.jitter();
        backoff = flow.backoff();
        let report = flow.into_report();
        let stages = report
            .stages
            .iter()
            .map(|t| (t.stage, t.service.as_millis() as u64))
            .collect();
        tally.add(&Tally {
            attempts: 1,
            ..report.tally
        });
        let failure = match report.outcome {
            Ok(p) => {
                return Device {
                    log,
                    outcome: Ok(p),
                    tally,
                    await_puback,
                    stages,
                };
            }
            Err(f) => f,
        };
        log.push((
            at(now),
            attempt,
            format!("failed {}", failure.reason.label()),
        ));
        match s
            .profile
            .flow_pause(failure.reason.class(), attempt, pause, || {
                profile::unit(&mut jitter)
            }) {
            Some(p) => {
                log.push((at(now), attempt, format!("flow wait {} ms", p.as_millis())));
                now += p;
                pause = p;
            }
            None => {
                return Device {
                    log,
                    outcome: Err(failure),
                    tally,
                    await_puback,
                    stages,
                };
            }
        }
    }
    unreachable!()
}

fn lines(d: &Device) -> Vec<String> {
    d.log
        .iter()
        .map(|(t, a, what)| format!("{t} #{a} {what}"))
        .collect()
}

fn waits(d: &Device) -> Vec<u64> {
    d.log
        .iter()
        .filter_map(|(_, _, w)| w.strip_prefix("wait ")?.strip_suffix(" ms")?.parse().ok())
        .collect()
}

fn refused() -> FailureReason {
    FailureReason::ConnectionRefused(Stage::ConnectClaim)
}

#[test]
fn embedded_c_demo_gives_up_on_a_late_registration_at_1_s_and_retries_the_flow_5_s_later_with_a_new_csr()
 {
    let s = spec("embedded-c-demo", CertificateMode::Csr);
    // RegisterThing is answered after 1.5 s (a slow hook): too late every time.
    let d = run(&s, |_, step| {
        (step == Step::Register).then(|| Reply::After(1500 * MS, accepted(&s, step)))
    });
    let attempt = |n: u32, t0: u64| {
        vec![
            format!("{t0} #{n} ConnectClaim"),
            format!("{} #{n} subscribe 2", t0 + 10),
            format!("{} #{n} csr CSR-{n}", t0 + 20),
            format!("{} #{n} Create", t0 + 20),
            format!("{} #{n} Unsubscribe", t0 + 30),
            format!("{} #{n} subscribe 2", t0 + 40),
            format!("{} #{n} Register", t0 + 50),
            // The response timeout: 1.000 s after the request.
            format!("{} #{n} timeout", t0 + 1050),
            format!("{} #{n} failed timeout.register_thing", t0 + 1050),
        ]
    };
    let mut want = attempt(1, 0);
    want.push("1050 #1 flow wait 5000 ms".into());
    want.extend(attempt(2, 6050));
    want.push("7100 #2 flow wait 5000 ms".into());
    // The third attempt is the last.
    want.extend(attempt(3, 12100));
    assert_eq!(lines(&d), want);
    assert_eq!(
        d.outcome.unwrap_err().reason.label(),
        "timeout.register_thing"
    );
    let t = d.tally;
    assert_eq!(
        (t.attempts, t.connects, t.certificates_issued, t.registered),
        (3, 3, 3, 0)
    );
    // CBOR payloads, as the demo sends them.
    assert_eq!(s.profile.payload, Format::Cbor);
}

#[test]
fn embedded_c_demo_retries_a_rejection_and_a_connack_timeout_with_full_jitter_up_to_5_connects() {
    let s = spec("embedded-c-demo", CertificateMode::Csr);
    // Attempt 1: CreateCertificate rejected -> retried (the demo retries any failure).
    // Attempt 2: no CONNACK, ever: 5 connects, 1 s each, full jitter from 500 ms to 5 s.
    let d = run(&s, |attempt, step| match (attempt, step) {
        (1, Step::Create) => Some(Reply::After(10 * MS, rejected(&s))),
        (2, Step::ConnectClaim) => Some(Reply::Silent),
        _ => None,
    });
    let connects = d
        .log
        .iter()
        .filter(|(_, a, w)| *a == 2 && w == "ConnectClaim")
        .count();
    assert_eq!(connects, 5, "{:#?}", lines(&d));
    let w = waits(&d);
    assert_eq!(w.len(), 4, "{w:?}");
    for (n, wait) in w.iter().enumerate() {
        let cap = (500u64 << n).min(5000);
        assert!(*wait <= cap, "wait {} {wait} ms over {cap}", n + 1);
    }
    assert!(
        w.iter().any(|x| *x > 0) && w.windows(2).any(|p| p[0] != p[1]),
        "{w:?}"
    );
    assert!(
        lines(&d).contains(&"30 #1 failed rejected.create_certificate.400.InvalidPayload".into()),
        "{:#?}",
        lines(&d)
    );
    // The connect timeout is 1 s: the first timeout comes 1.000 s after attempt 2's connect.
    let first = d
        .log
        .iter()
        .position(|(_, a, w)| *a == 2 && w == "ConnectClaim")
        .unwrap();
    assert_eq!(d.log[first + 1].0 - d.log[first].0, 1000);
    assert_eq!(d.tally.attempts, 3);
}

#[test]
fn crt_mqtt311_reconnects_after_1_2_4_8_s_with_no_jitter_and_a_rejection_is_fatal() {
    let s = spec("crt-mqtt311", CertificateMode::Keys);
    let mut refusals = 0;
    let d = run(&s, |_, step| match step {
        Step::ConnectClaim if refusals < 4 => {
            refusals += 1;
            Some(Reply::Drop(5 * MS, refused()))
        }
        Step::Create => Some(Reply::After(10 * MS, rejected(&s))),
        _ => None,
    });
    assert_eq!(waits(&d), [1000, 2000, 4000, 8000]);
    let connects: Vec<u64> = d
        .log
        .iter()
        .filter(|(_, _, w)| w == "ConnectClaim")
        .map(|(t, ..)| *t)
        .collect();
    assert_eq!(connects, [0, 1005, 3010, 7015, 15020]);
    assert_eq!(d.tally.attempts, 1, "the application retries nothing");
    assert_eq!(d.tally.connects, 5);
    assert_eq!(
        d.outcome.unwrap_err().reason.label(),
        "rejected.create_certificate.400.InvalidPayload"
    );
}

#[test]
fn python_v2_mqtt311_reconnects_after_5_10_20_40_s_then_gives_up_at_5_connects() {
    let s = spec("python-v2-mqtt311", CertificateMode::Keys);
    let d = run(&s, |_, step| {
        (step == Step::ConnectClaim).then(|| Reply::Drop(MS, refused()))
    });
    assert_eq!(waits(&d), [5000, 10_000, 20_000, 40_000]);
    assert_eq!(d.tally.connects, 5);
    assert_eq!(
        d.outcome.unwrap_err().reason.label(),
        "connection_refused.connect_claim"
    );
}

#[test]
fn crt_mqtt5_reconnects_with_full_jitter_within_its_bounds_and_waits_20_s_for_a_connack() {
    let s = spec("crt-mqtt5", CertificateMode::Keys);
    let d = run(&s, |_, step| {
        (step == Step::ConnectClaim).then(|| Reply::Drop(MS, refused()))
    });
    let w = waits(&d);
    assert_eq!(w.len(), 7, "8 connects in all: {w:?}");
    for (n, wait) in w.iter().enumerate() {
        let cap = (1000u64 << n).min(120_000);
        assert!(*wait <= cap, "wait {} {wait} ms over {cap}", n + 1);
    }
    assert!(
        w.iter()
            .zip(0..)
            .any(|(wait, n)| *wait != (1000u64 << n).min(120_000)),
        "jittered: {w:?}"
    );
    assert_eq!(
        d.outcome.unwrap_err().reason.label(),
        "connection_refused.connect_claim"
    );
    // No CONNACK: the wait is 20 s, then the client reconnects (the next test).
    let d = run(&s, |_, step| {
        (step == Step::ConnectClaim).then_some(Reply::Silent)
    });
    let first: Vec<u64> = d.log.iter().take(2).map(|(t, ..)| *t).collect();
    assert_eq!(first, [0, 20_000], "CONNACK timeout 20 s");
    // A device with nothing slow provisions on one connect per identity.
    let ok = run(&s, |_, _| None);
    assert!(ok.outcome.is_ok());
    assert_eq!(
        (
            ok.tally.connects,
            ok.tally.certificates_issued,
            ok.tally.registered
        ),
        (2, 1, 1)
    );
}

#[test]
fn sdk_v2_sample_and_device_client_stop_at_the_first_rejection_or_timeout() {
    for (name, wait) in [("sdk-v2-sample", 30_000), ("device-client", 10_000)] {
        let s = spec(name, CertificateMode::Keys);
        let d = run(&s, |_, step| {
            (step == Step::Register).then(|| Reply::After(10 * MS, rejected(&s)))
        });
        assert_eq!(d.tally.attempts, 1, "{name}");
        assert_eq!(
            d.outcome.unwrap_err().reason.label(),
            "rejected.register_thing.400.InvalidPayload"
        );
        let d = run(&s, |_, step| {
            (step == Step::Create).then_some(Reply::Silent)
        });
        let create = d.log.iter().find(|(_, _, w)| w == "Create").unwrap().0;
        assert!(
            lines(&d).contains(&format!("{} #1 timeout", create + wait)),
            "{name}: {:#?}",
            lines(&d)
        );
        assert_eq!(d.tally.attempts, 1, "{name}");
        // A dropped connection is fatal too: no reconnect.
        let d = run(&s, |_, step| {
            (step == Step::ConnectClaim).then(|| Reply::Drop(MS, refused()))
        });
        assert_eq!((d.tally.attempts, d.tally.connects), (1, 1), "{name}");
    }
}

#[test]
fn greengrass_fp_retries_a_timeout_treats_a_rejection_as_fatal_and_does_not_await_registers_puback()
{
    let s = spec("greengrass-fp", CertificateMode::Keys);
    // RegisterThing times out twice (30 s), then is answered: three attempts, no wait between.
    let d = run(&s, |attempt, step| {
        (step == Step::Register && attempt < 3).then_some(Reply::Silent)
    });
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    assert_eq!(d.tally.attempts, 3);
    assert_eq!(d.tally.certificates_issued, 3);
    assert!(
        lines(&d).contains(&"30030 #1 flow wait 0 ms".to_string()),
        "{:#?}",
        lines(&d)
    );
    let register: Vec<bool> = d
        .await_puback
        .iter()
        .filter(|(step, _)| *step == Step::Register)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(register, [false, false, false]);
    let d = run(&s, |_, step| {
        (step == Step::Register).then(|| Reply::After(10 * MS, rejected(&s)))
    });
    assert_eq!(d.tally.attempts, 1);
    assert!(d.outcome.is_err());
    // Another profile awaits RegisterThing's PUBACK.
    let crt = run(&spec("crt-mqtt5", CertificateMode::Keys), |_, _| None);
    assert_eq!(
        crt.await_puback,
        [(Step::Create, true), (Step::Register, true)]
    );
}

#[test]
fn generic_is_todays_device_one_attempt_and_its_timeouts() {
    let s = spec("generic", CertificateMode::Csr);
    let d = run(&s, |_, step| {
        (step == Step::ConnectClaim).then_some(Reply::Silent)
    });
    assert_eq!(
        lines(&d),
        [
            "0 #1 ConnectClaim",
            "10000 #1 timeout",
            "10000 #1 failed timeout.connect_claim"
        ]
    );
    // One SUBSCRIBE of all four topics, no UNSUBSCRIBE.
    let d = run(&s, |_, _| None);
    assert!(
        lines(&d).contains(&"10 #1 subscribe 4".into()),
        "{:#?}",
        lines(&d)
    );
    assert!(!d.log.iter().any(|(_, _, w)| w == "Unsubscribe"));
    assert_eq!(
        s.profile.reaction.get(&FailureClass::Throttled),
        Some(&Reaction::Retry)
    );
}

#[test]
fn a_claim_session_that_lasted_reset_after_starts_the_own_connects_backoff_afresh() {
    let mut p = Profile::builtin("crt-mqtt311").unwrap();
    p.connect_retry.reset_after = Duration::from_millis(20);
    let mut s = spec("crt-mqtt311", CertificateMode::Keys);
    s.profile = Arc::new(p);
    let mut claim = 0;
    let d = run(&s, |_, step| match step {
        Step::ConnectClaim if claim < 2 => {
            claim += 1;
            Some(Reply::Drop(MS, refused()))
        }
        Step::ConnectDevice => Some(Reply::Drop(
            MS,
            FailureReason::ConnectionRefused(Stage::ConnectDevice),
        )),
        _ => None,
    });
    // Claim: 1 s, 2 s; the claim session lasted 30 ms >= 20 ms, so the own connects start at 1 s.
    assert_eq!(
        waits(&d),
        [1000, 2000, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000]
    );
}

#[tokio::test]
async fn a_new_key_per_attempt_or_the_first_one_again_as_the_profile_says() {
    let mut s = spec("embedded-c-demo", CertificateMode::Csr);
    let mut carry = crate::device::Carry::default();
    let first = crate::device::attempt_key(&s, &mut carry)
        .await
        .unwrap()
        .unwrap();
    let second = crate::device::attempt_key(&s, &mut carry)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.key_pem, second.key_pem, "new_key = true");
    let mut p = (*s.profile).clone();
    p.flow_retry.new_key = false;
    s.profile = Arc::new(p);
    let mut carry = crate::device::Carry::default();
    let first = crate::device::attempt_key(&s, &mut carry)
        .await
        .unwrap()
        .unwrap();
    let second = crate::device::attempt_key(&s, &mut carry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.key_pem, first.csr_pem),
        (second.key_pem, second.csr_pem)
    );
}

#[test]
fn shared_jitter_gives_every_device_the_same_draws_per_device_its_own() {
    let shared = Profile::builtin("embedded-c-demo").unwrap();
    assert_eq!(shared.jitter_state(7, 1), shared.jitter_state(7, 2));
    let own = Profile::builtin("crt-mqtt5").unwrap();
    assert_ne!(own.jitter_state(7, 1), own.jitter_state(7, 2));
    assert_ne!(own.jitter_state(7, 1), own.jitter_state(8, 1));
}

#[test]
fn crt_mqtt5_reconnects_after_a_connack_timeout_with_its_jittered_backoff() {
    let s = spec("crt-mqtt5", CertificateMode::Keys);
    // The first two CONNECTs get no CONNACK; the third is accepted and the device provisions.
    let mut silent = 0;
    let d = run(&s, |_, step| match step {
        Step::ConnectClaim if silent < 2 => {
            silent += 1;
            Some(Reply::Silent)
        }
        _ => None,
    });
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    let w = waits(&d);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0] <= 1000 && w[1] <= 2000, "full jitter from 1 s: {w:?}");
    let connects: Vec<u64> = d
        .log
        .iter()
        .filter(|(_, _, what)| what == "ConnectClaim")
        .map(|(t, ..)| *t)
        .collect();
    // Each CONNACK wait is the profile's 20 s, then the backoff (logged in whole ms).
    assert_eq!(connects.len(), 3, "{:#?}", lines(&d));
    for (n, pair) in connects.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(gap.abs_diff(20_000 + w[n]) <= 1, "{:#?}", lines(&d));
    }
    assert_eq!((d.tally.attempts, d.tally.connects), (1, 4));
    // Never a CONNACK: 8 connects in all, then the timeout is the device's failure.
    let d = run(&s, |_, step| {
        (step == Step::ConnectClaim).then_some(Reply::Silent)
    });
    assert_eq!(d.tally.connects, 8, "{:#?}", lines(&d));
    assert_eq!(waits(&d).len(), 7);
    assert_eq!(
        d.outcome.unwrap_err().reason.label(),
        "timeout.connect_claim"
    );
}

#[test]
fn create_certificates_puback_is_awaited_when_the_profile_says_so() {
    let awaited = |name: &str| {
        let d = run(&spec(name, CertificateMode::Keys), |_, _| None);
        assert!(d.outcome.is_ok(), "{name}");
        d.await_puback
    };
    // The Device Client waits for both publishes to complete before each response.
    assert_eq!(
        awaited("device-client"),
        [(Step::Create, true), (Step::Register, true)]
    );
    // Greengrass leaves only RegisterThing's unawaited.
    assert_eq!(
        awaited("greengrass-fp"),
        [(Step::Create, true), (Step::Register, false)]
    );
    // generic is the device before profiles: the responses alone.
    assert_eq!(
        awaited("generic"),
        [(Step::Create, false), (Step::Register, false)]
    );
    let mut p = Profile::generic();
    p.await_create_certificate_puback = true;
    let mut s = spec("generic", CertificateMode::Csr);
    s.profile = Arc::new(p);
    let d = run(&s, |_, _| None);
    assert_eq!(
        d.await_puback,
        [(Step::Create, true), (Step::Register, false)]
    );
    let mut p = Profile::generic();
    p.await_register_thing_puback = true;
    s.profile = Arc::new(p);
    let d = run(&s, |_, _| None);
    assert_eq!(
        d.await_puback,
        [(Step::Create, false), (Step::Register, true)]
    );
}

#[test]
fn per_step_subscriptions_time_both_subacks_and_register_thing_from_its_request() {
    let s = spec("embedded-c-demo", CertificateMode::Csr);
    // SUBACKs after 40 and 70 ms, the UNSUBACK after 50 ms, RegisterThing's response 200 ms
    // after its request; everything else after 10 ms.
    let mut subscribes = 0;
    let d = run(&s, |_, step| match step {
        Step::Subscribe => {
            subscribes += 1;
            let ms = if subscribes == 1 { 40 } else { 70 };
            Some(Reply::After(ms * MS, accepted(&s, step)))
        }
        Step::Unsubscribe => Some(Reply::After(50 * MS, accepted(&s, step))),
        Step::Register => Some(Reply::After(200 * MS, accepted(&s, step))),
        _ => None,
    });
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    assert_eq!(
        d.stages,
        [
            (Stage::ConnectClaim, 10),
            (Stage::Subscribe, 40),
            (Stage::CreateCertificate, 10),
            (Stage::Subscribe, 70),
            (Stage::RegisterThing, 200),
            (Stage::ConnectDevice, 10),
        ]
    );
    // Per connection: one SUBACK, and RegisterThing follows CreateCertificate at once.
    let g = run(&spec("generic", CertificateMode::Csr), |_, _| None);
    let subscribe: Vec<_> = g
        .stages
        .iter()
        .filter(|(st, _)| *st == Stage::Subscribe)
        .collect();
    assert_eq!(subscribe, [&(Stage::Subscribe, 10)]);
}

/// crt-mqtt311 with a whole-flow retry (a custom profile): the application retries on the same
/// client, whose reconnect backoff carries on from where the last attempt left it unless the
/// session lasted `reset_after` (10 s).
#[test]
fn reset_after_holds_across_whole_flow_attempts() {
    let mut p = Profile::builtin("crt-mqtt311").unwrap();
    p.flow_retry.attempts = 2;
    let mut s = spec("crt-mqtt311", CertificateMode::Keys);
    s.profile = Arc::new(p);
    // Attempt 1: two refused connects (1 s, 2 s), the third up, then lost `up` into
    // CreateCertificate. Attempt 2: one refused connect, then all goes well.
    let script = |up: Duration| {
        let mut refused_claims = 0;
        move |attempt: u32, step: Step| match (attempt, step) {
            (1, Step::ConnectClaim) | (2, Step::ConnectClaim) if refused_claims < attempt + 1 => {
                refused_claims += 1;
                Some(Reply::Drop(MS, refused()))
            }
            (1, Step::Create) => Some(Reply::Drop(
                up,
                FailureReason::Disconnected(Stage::CreateCertificate),
            )),
            _ => None,
        }
    };
    // A session of 1 s: attempt 2's first reconnect waits 4 s, the backoff's third wait.
    let d = run(&s, script(Duration::from_secs(1)));
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    assert_eq!(d.tally.attempts, 2);
    assert_eq!(waits(&d), [1000, 2000, 4000], "{:#?}", lines(&d));
    // A session of 11 s (at least reset_after): attempt 2 starts the backoff from 1 s again.
    let d = run(&s, script(Duration::from_secs(11)));
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    assert_eq!(waits(&d), [1000, 2000, 1000], "{:#?}", lines(&d));
    // embedded-c-demo (reset_after 0): a backoff context per connect, so nothing carries
    // (no jitter here, to see the waits): attempt 2 starts from 500 ms again.
    let mut p = Profile::builtin("embedded-c-demo").unwrap();
    p.connect_retry.jitter = Jitter::None;
    let mut s = spec("embedded-c-demo", CertificateMode::Csr);
    s.profile = Arc::new(p);
    let d = run(&s, |attempt, step| {
        (attempt < 3 && step == Step::ConnectClaim).then(|| Reply::Drop(MS, refused()))
    });
    assert!(d.outcome.is_ok(), "{:#?}", lines(&d));
    assert_eq!(
        waits(&d),
        [500, 1000, 2000, 4000, 500, 1000, 2000, 4000],
        "{:#?}",
        lines(&d)
    );
}
