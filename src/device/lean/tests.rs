//! The lean client against the real mock on loopback: keep-alives, telemetry, refusals,
//! takeovers, CBOR and MQTT 5.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::device::codec::{V5, V311};
use crate::device::{
    After, AfterAction, CertificateMode, DeviceSpec, DeviceTls, Format, Handles, Profile, Protocol,
    Provisioned, provision,
};
use crate::mock::{self, MockConfig, MockHandle, MockSettings};
use crate::pki::{KeyAlgorithm, Pki};

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    handle: MockHandle,
    tls: DeviceTls,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

/// The real mock in process on an ephemeral loopback port.
async fn start_mock() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = Pki::init(&dir.path().join("pki"), &[], KeyAlgorithm::P256).unwrap();
    let settings = MockSettings {
        keys: KeyAlgorithm::P256,
        ..MockSettings::default()
    };
    let config = MockConfig::new(Arc::new(pki), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = mock::start(config, listener, CancellationToken::new())
        .await
        .unwrap();
    let tls = DeviceTls::new(
        &handle.pki.root_ca_pem,
        &handle.pki.claim_cert_pem,
        &handle.pki.claim_key_pem,
        false,
    )
    .unwrap();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: handle.addr.port(),
    };
    Fixture {
        handle,
        tls,
        endpoint,
        _dir: dir,
    }
}

fn spec(name: &str, after: After) -> DeviceSpec {
    DeviceSpec {
        client_id: format!("client-{name}"),
        template: "FleetProvisioningTemplate".into(),
        parameters: BTreeMap::from([
            ("DeviceName".to_string(), name.to_string()),
            ("SerialNumber".to_string(), "123456789".to_string()),
            ("DeviceLocation".to_string(), "Berlin".to_string()),
        ]),
        mode: CertificateMode::Csr,
        csr_key: KeyAlgorithm::P256,
        protocol: Protocol::Mqtt311,
        profile: Arc::new(Profile::generic()),
        after,
        classify: Default::default(),
    }
}

/// A registered device identity (the full flow, then disconnected).
async fn registered(f: &Fixture, name: &str) -> Provisioned {
    let report = provision(
        &f.endpoint,
        &f.tls,
        &spec(name, After::default()),
        &Handles::default(),
    )
    .await;
    report.outcome.unwrap()
}

async fn connect<P: Codec>(
    f: &Fixture,
    device: &Provisioned,
    client_id: &str,
    keep_alive: Duration,
) -> Result<Connected<P>, Failure> {
    let own = f
        .tls
        .for_identity(&device.certificate_pem, &device.private_key_pem)
        .unwrap();
    connect_as(f, own, client_id, keep_alive).await
}

async fn connect_as<P: Codec>(
    f: &Fixture,
    identity: Arc<rustls::ClientConfig>,
    client_id: &str,
    keep_alive: Duration,
) -> Result<Connected<P>, Failure> {
    Session::connect(
        &f.endpoint,
        client_id,
        identity,
        Stage::ConnectDevice,
        Instant::now() + WAIT,
        KeepAlive {
            interval: keep_alive,
            ping_timeout: keep_alive,
        },
    )
    .await
}

/// A session that must come up.
async fn up<P: Codec>(f: &Fixture, device: &Provisioned, keep_alive: Duration) -> Session<P> {
    accepted(connect(f, device, &device.thing_name, keep_alive).await)
}

fn accepted<P: Codec>(connected: Result<Connected<P>, Failure>) -> Session<P> {
    match connected {
        Ok(Connected::Accepted(session)) => session,
        Ok(Connected::Refused(code)) => panic!("CONNACK {code}"),
        Ok(Connected::TimedOut) => panic!("connect timed out"),
        Err(f) => panic!("{f:?}"),
    }
}

#[tokio::test]
async fn keep_alive_pings_are_answered_over_several_intervals() {
    let f = start_mock().await;
    let device = registered(&f, "pinger").await;
    let mut session = up::<V311>(&f, &device, Duration::from_secs(1)).await;
    // Pings are due at 1 s, 2 s and 3 s; each needs its PINGRESP before the next is sent.
    let until = Instant::now() + Duration::from_millis(3_500);
    session.idle(until, Stage::Telemetry).await.unwrap();
    assert!(session.pongs >= 3, "{} PINGRESPs", session.pongs);
    assert_eq!(f.handle.stats().active_connections, 1);
    session.disconnect().await;
    f.handle.wait_active_at_most(0).await;
}

#[tokio::test]
async fn telemetry_publishes_are_acknowledged_one_by_one() {
    let f = start_mock().await;
    let device = registered(&f, "sender").await;
    let mut session = up::<V311>(&f, &device, Duration::from_secs(30)).await;
    for n in 1..=3u16 {
        let payload = format!("{{\"sequence\":{n}}}");
        let acked = session
            .publish_acked(
                "device/sender",
                payload.as_bytes(),
                Instant::now() + WAIT,
                Stage::Telemetry,
            )
            .await
            .unwrap();
        assert_eq!(acked, Some(0), "PUBACK {n} missing");
        assert_eq!(session.next_pkid, n);
    }
    session.disconnect().await;
}

/// 300 ms of telemetry every 100 ms: the device must succeed with 2-4 timed PUBACKs.
async fn assert_telemetry_pubacks_timed(spec: impl FnOnce(After) -> DeviceSpec) {
    let f = start_mock().await;
    let after = After {
        action: AfterAction::Telemetry,
        duration: Duration::from_millis(300),
        interval: Duration::from_millis(100),
        ..After::default()
    };
    let report = provision(&f.endpoint, &f.tls, &spec(after), &Handles::default()).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome.err());
    let acks = report
        .stages
        .iter()
        .filter(|s| s.stage == Stage::Telemetry)
        .count();
    assert!((2..=4).contains(&acks), "{acks} telemetry PUBACKs");
}

#[tokio::test]
async fn the_telemetry_scenario_times_every_puback() {
    assert_telemetry_pubacks_timed(|after| spec("periodic", after)).await;
}

#[tokio::test]
async fn a_refused_connack_maps_to_its_return_code() {
    let f = start_mock().await;
    let device = registered(&f, "refused").await;
    // AWS refuses client IDs starting with `$`: CONNACK 2 (identifier rejected).
    let refused = connect::<V311>(&f, &device, "$refused", Duration::from_secs(30)).await;
    match refused {
        Ok(Connected::Refused(code)) => assert_eq!(code, 2, "BadClientId"),
        Ok(Connected::Accepted(_)) => panic!("accepted"),
        Ok(Connected::TimedOut) => panic!("timed out"),
        Err(f) => panic!("{f:?}"),
    }
}

#[tokio::test]
async fn the_mock_closing_the_connection_mid_stay_ends_the_stay_as_disconnected() {
    let f = start_mock().await;
    let device = registered(&f, "kicked").await;
    let mut first = up::<V311>(&f, &device, Duration::from_secs(30)).await;
    let stay = tokio::spawn(async move {
        first
            .idle(Instant::now() + Duration::from_secs(60), Stage::Telemetry)
            .await
    });
    // A newer connection with the same client ID makes the mock close the first one.
    let second = up::<V311>(&f, &device, Duration::from_secs(30)).await;
    let result = tokio::time::timeout(WAIT, stay).await.unwrap().unwrap();
    let failure = result.unwrap_err();
    assert_eq!(
        failure.reason,
        FailureReason::Disconnected(Stage::Telemetry)
    );
    assert_eq!(f.handle.stats().takeovers, 1);
    second.disconnect().await;
}

#[tokio::test]
async fn a_cbor_device_provisions_against_the_mock() {
    let f = start_mock().await;
    let mut spec = spec("cbor", After::default());
    spec.profile = Arc::new(Profile {
        payload: Format::Cbor,
        ..Profile::generic()
    });
    let report = provision(&f.endpoint, &f.tls, &spec, &Handles::default()).await;
    let device = report.outcome.unwrap();
    assert!(!device.certificate_id.is_empty());
    // Decoded from CBOR: the mock answers on the topics' format (JSON would be malformed).
    assert_eq!(device.thing_name, "cbor");
}

#[tokio::test]
async fn a_host_that_does_not_resolve_fails_as_dns_not_as_a_disconnect() {
    let f = start_mock().await;
    // A 64-character label cannot be put in a DNS query (63 at most): the resolver fails
    // before sending anything, and `.invalid` never resolves anyway (RFC 6761).
    let endpoint = Endpoint {
        host: format!("{}.invalid", "a".repeat(64)),
        port: f.endpoint.port,
    };
    let report = provision(
        &endpoint,
        &f.tls,
        &spec("nowhere", After::default()),
        &Handles::default(),
    )
    .await;
    let failure = report.outcome.unwrap_err();
    assert_eq!(
        failure.reason.label(),
        "dns.connect_claim",
        "{}",
        failure.detail
    );
    assert_eq!(failure.reason.class(), "dns");
    assert!(failure.detail.contains(".invalid"), "{}", failure.detail);
}

fn mqtt5(name: &str, after: After) -> DeviceSpec {
    DeviceSpec {
        protocol: Protocol::Mqtt5,
        ..spec(name, after)
    }
}

#[tokio::test]
async fn an_mqtt5_device_and_a_311_one_provision_side_by_side_in_json_and_cbor() {
    let f = start_mock().await;
    let cbor5 = DeviceSpec {
        profile: Arc::new(Profile {
            payload: Format::Cbor,
            ..Profile::generic()
        }),
        ..mqtt5("five-cbor", After::default())
    };
    let json5 = mqtt5("five-json", After::default());
    let json311 = spec("three", After::default());
    let h = Handles::default();
    let (a, b, c) = tokio::join!(
        provision(&f.endpoint, &f.tls, &cbor5, &h),
        provision(&f.endpoint, &f.tls, &json5, &h),
        provision(&f.endpoint, &f.tls, &json311, &h),
    );
    for report in [a, b, c] {
        let stages = report.stages.len();
        let device = report.outcome.unwrap();
        assert!(device.thing_name.starts_with("five") || device.thing_name == "three");
        assert_eq!(stages, 5, "{}", device.thing_name);
    }
}

#[tokio::test]
async fn an_mqtt5_telemetry_device_gets_every_puback() {
    assert_telemetry_pubacks_timed(|after| mqtt5("t5", after)).await;
}

#[tokio::test]
async fn an_mqtt5_takeover_ends_the_older_stay_with_disconnect_0x8e() {
    let f = start_mock().await;
    let device = registered(&f, "kicked5").await;
    let mut first = up::<V5>(&f, &device, Duration::from_secs(30)).await;
    let stay = tokio::spawn(async move {
        first
            .idle(Instant::now() + Duration::from_secs(60), Stage::Telemetry)
            .await
    });
    let second = up::<V5>(&f, &device, Duration::from_secs(30)).await;
    let failure = tokio::time::timeout(WAIT, stay)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(failure.reason.label(), "disconnected.telemetry.0x8e");
    assert_eq!(failure.detail, "DISCONNECT 0x8e Session taken over");
    second.disconnect().await;
}

#[tokio::test]
async fn an_mqtt5_connack_refusal_gives_its_reason_code() {
    let f = start_mock().await;
    let device = registered(&f, "refused5").await;
    // AWS refuses client IDs starting with `$`: MQTT 5 CONNACK 0x85 (client ID not valid).
    match connect::<V5>(&f, &device, "$refused", Duration::from_secs(30)).await {
        Ok(Connected::Refused(code)) => assert_eq!(code, 0x85),
        Ok(Connected::Accepted(_)) => panic!("accepted"),
        Ok(Connected::TimedOut) => panic!("timed out"),
        Err(f) => panic!("{f:?}"),
    }
}

#[tokio::test]
async fn mqtt5_publishes_and_subscriptions_outside_the_policy_get_0x87() {
    let f = start_mock().await;
    // The claim certificate's policy allows the provisioning topics only.
    let claim = connect_as::<V5>(&f, f.tls.claim(), "claim-5", Duration::from_secs(30)).await;
    let mut session = accepted(claim);
    let deadline = Instant::now() + WAIT;
    let ack = session
        .publish_acked("device/elsewhere", b"{}", deadline, Stage::Telemetry)
        .await
        .unwrap();
    assert_eq!(ack, Some(0x87));
    let granted = "$aws/certificates/create/json/accepted";
    let codes = session
        .subscribe(
            &[granted.to_string(), "device/elsewhere".to_string()],
            deadline,
            Stage::Subscribe,
        )
        .await
        .unwrap();
    assert_eq!(codes, Some(Some(0x87)));
    let codes = session
        .subscribe(&[granted.to_string()], deadline, Stage::Subscribe)
        .await
        .unwrap();
    assert_eq!(codes, Some(None));
    session.disconnect().await;
}
