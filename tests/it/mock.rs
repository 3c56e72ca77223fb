//! The mock endpoint, driven over real TLS + MQTT on loopback.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Client, TestMock, start_mock};
use fleetstorm::device::{self, CertificateMode, DeviceSpec, FailureReason, Stage};
use fleetstorm::mock::registry::CertificateStatus;
use fleetstorm::pki::{self, KeyAlgorithm};
use fleetstorm::protocol::{
    CreateKeysAndCertificateResponse, ErrorResponse, Format, RegisterThingRequest, RequestTopic,
};
use rumqttc::{ConnectReturnCode, ConnectionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn seed_params(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("DeviceName".to_string(), name.to_string()),
        ("SerialNumber".to_string(), "123456789".to_string()),
        ("DeviceLocation".to_string(), "Berlin".to_string()),
    ])
}

fn spec(name: &str, mode: CertificateMode) -> DeviceSpec {
    DeviceSpec {
        client_id: format!("client-{name}"),
        template: "FleetProvisioningTemplate".into(),
        parameters: seed_params(name),
        mode,
        csr_key: KeyAlgorithm::P256,
        protocol: fleetstorm::device::Protocol::Mqtt311,
        profile: std::sync::Arc::new(fleetstorm::device::Profile::generic()),
        classify: Default::default(),
        after: Default::default(),
    }
}

/// Publish CreateKeysAndCertificate on a connected claim client and return the response.
async fn create_keys(c: &mut Client) -> CreateKeysAndCertificateResponse {
    let t = RequestTopic::create_keys(Format::Json);
    c.subscribe(&t.accepted()).await;
    c.publish(&t.topic(), "{}");
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, t.accepted());
    serde_json::from_slice(&payload).unwrap()
}

/// Publish a RegisterThing request and return (topic, payload).
async fn register(c: &mut Client, payload: Vec<u8>) -> (String, Vec<u8>) {
    let t = RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json);
    c.subscribe(&format!("{}/+", t.topic())).await;
    c.publish(&t.topic(), payload);
    c.next_publish().await
}

fn register_payload(token: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&RegisterThingRequest {
        certificate_ownership_token: Some(token.to_string()),
        parameters: Some(seed_params(name)),
    })
    .unwrap()
}

fn rejected(payload: &[u8]) -> ErrorResponse {
    serde_json::from_slice(payload).unwrap()
}

async fn claim_client(m: &TestMock, id: &str) -> Client {
    Client::connect(m, id, m.tls.claim()).await
}

#[tokio::test]
async fn keys_flow_registers_the_thing_and_the_new_certificate_connects() {
    let m = start_mock(|_| {}).await;
    let report = device::provision(
        &m.endpoint,
        &m.tls,
        &spec("dev-1", CertificateMode::Keys),
        &device::Handles::default(),
    )
    .await;
    let p = report.outcome.expect("provisioned");
    assert_eq!(p.thing_name, "dev-1");
    assert_eq!(p.certificate_id.len(), 64);
    assert_eq!(
        p.certificate_id,
        pki::certificate_id(&pki::certs(std::path::Path::new("-"), &p.certificate_pem).unwrap()[0])
    );
    assert_eq!(
        p.device_configuration["LocationUrl"],
        "https://www.berlin.de"
    );
    assert_eq!(
        p.device_configuration["FallbackUrl"],
        "https://www.example.com/test-site"
    );
    let stages: Vec<Stage> = report.stages.iter().map(|t| t.stage).collect();
    assert_eq!(stages, Stage::ALL[..5].to_vec());

    let thing = m
        .handle
        .registry()
        .thing("dev-1")
        .expect("thing registered");
    assert_eq!(thing.attributes["serialNumber"], "123456789");
    assert_eq!(thing.attributes["version"], "v1");
    assert!(thing.thing_groups.contains("fleet-provisioning-group"));
    let cert = m.handle.registry().certificate(&p.certificate_id).unwrap();
    assert_eq!(cert.status, CertificateStatus::Active);
    assert!(cert.things.contains("dev-1"));
    assert_eq!(cert.policies.len(), 1, "the template's policy is attached");
    let stats = m.handle.stats();
    assert_eq!(stats.create_keys_accepted, 1);
    assert_eq!(stats.register_thing_accepted, 1);
}

#[tokio::test]
async fn csr_flow_registers_the_thing() {
    let m = start_mock(|_| {}).await;
    let report = device::provision(
        &m.endpoint,
        &m.tls,
        &spec("dev-csr", CertificateMode::Csr),
        &device::Handles::default(),
    )
    .await;
    let p = report.outcome.expect("provisioned");
    assert_eq!(p.thing_name, "dev-csr");
    assert_eq!(m.handle.stats().create_from_csr_accepted, 1);
    assert!(m.handle.registry().thing("dev-csr").is_some());
}

#[tokio::test]
async fn create_keys_returns_an_rsa_2048_pkcs1_key_and_accepts_an_empty_payload() {
    let m = start_mock(|s| {
        s.keys = KeyAlgorithm::Rsa2048;
        s.key_pool_size = 2;
    })
    .await;
    let mut c = claim_client(&m, "rsa").await;
    let t = RequestTopic::create_keys(Format::Json);
    c.subscribe(&t.accepted()).await;
    c.publish(&t.topic(), Vec::new());
    let (_, payload) = c.next_publish().await;
    let r: CreateKeysAndCertificateResponse = serde_json::from_slice(&payload).unwrap();
    assert!(
        r.private_key
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
    );
    let key = rcgen::KeyPair::from_pem(&pkcs1_to_pkcs8(&r.private_key)).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
    // The JSON field order follows the real AWS trace.
    let text = String::from_utf8(payload).unwrap();
    assert!(text.starts_with(r#"{"certificateId":""#), "{text}");
}

fn pkcs1_to_pkcs8(pem: &str) -> String {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    // rcgen reads PKCS#8 only: check the PKCS#1 key is well formed via rustls, then re-wrap.
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap() {
        PrivateKeyDer::Pkcs1(der) => {
            let pkcs8 = pkcs8_wrap_rsa(der.secret_pkcs1_der());
            pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8))
        }
        other => panic!("not PKCS#1: {other:?}"),
    }
}

fn pkcs8_wrap_rsa(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID rsaEncryption, NULL }, OCTET STRING pkcs1 }
    fn der_len(n: usize) -> Vec<u8> {
        if n < 128 {
            vec![n as u8]
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            let mut v = vec![0x80 | bytes.len() as u8];
            v.extend(bytes);
            v
        }
    }
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(alg);
    body.push(0x04);
    body.extend(der_len(pkcs1.len()));
    body.extend(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

#[tokio::test]
async fn a_response_never_reaches_another_connection_subscribed_to_the_same_topic() {
    let m = start_mock(|_| {}).await;
    let mut a = claim_client(&m, "conn-a").await;
    let mut b = claim_client(&m, "conn-b").await;
    let t = RequestTopic::create_keys(Format::Json);
    b.subscribe(&t.accepted()).await;
    let ra = create_keys(&mut a).await;
    // B now asks for itself. Had A's response been fanned out to B, it would have been written to
    // B's socket before B's own request even existed, so it would be the first publish B reads.
    b.publish(&t.topic(), "{}");
    let (topic, payload) = b.next_publish().await;
    assert_eq!(topic, t.accepted());
    let rb: CreateKeysAndCertificateResponse = serde_json::from_slice(&payload).unwrap();
    assert_ne!(rb.certificate_id, ra.certificate_id);
    assert_eq!(m.handle.stats().create_keys_accepted, 2);
}

#[tokio::test]
async fn a_response_is_not_delivered_without_a_subscription() {
    let m = start_mock(|_| {}).await;
    let mut a = claim_client(&m, "nosub").await;
    let t = RequestTopic::create_keys(Format::Json);
    // Subscribed to rejected only: the accepted response of a good request has nowhere to go.
    a.subscribe(&t.rejected()).await;
    a.publish(&t.topic(), "{}");
    // A bad request next: requests are answered in order, so once its rejection arrives the first
    // response has been dropped.
    a.publish(&t.topic(), "{bad");
    let (topic, _) = a.next_publish().await;
    assert_eq!(topic, t.rejected());
    assert_eq!(m.handle.stats().undelivered_responses, 1);
    assert_eq!(m.handle.stats().create_keys_accepted, 1);
}

#[tokio::test]
async fn the_claim_certificate_cannot_subscribe_to_everything_or_publish_elsewhere() {
    let m = start_mock(|_| {}).await;
    let mut c = claim_client(&m, "greedy").await;
    c.client
        .try_subscribe("#", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    c.closed().await;

    let mut c = claim_client(&m, "talker").await;
    c.publish("device/x", "{}");
    c.closed().await;

    let mut c = claim_client(&m, "other-template").await;
    c.publish("$aws/provisioning-templates/Other/provision/json", "{}");
    c.closed().await;

    assert_eq!(m.handle.stats().policy_disconnects, 3);
    // The mock keeps serving everyone else.
    let report = device::provision(
        &m.endpoint,
        &m.tls,
        &spec("after", CertificateMode::Keys),
        &device::Handles::default(),
    )
    .await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome.err());
}

#[tokio::test]
async fn a_client_certificate_from_a_foreign_ca_fails_the_tls_handshake() {
    let m = start_mock(|_| {}).await;
    let other = tempfile::tempdir().unwrap();
    let (foreign, _) = pki::Pki::init(other.path(), &[], KeyAlgorithm::P256).unwrap();
    // Trust the real server, present a claim certificate from another CA.
    let tls = device::DeviceTls::new(
        &m.handle.pki.root_ca_pem,
        &foreign.claim_cert_pem,
        &foreign.claim_key_pem,
        false,
    )
    .unwrap();
    let mut spec = spec("foreign", CertificateMode::Keys);
    spec.client_id = "foreign".into();
    let report = device::provision(&m.endpoint, &tls, &spec, &device::Handles::default()).await;
    let failure = report.outcome.unwrap_err();
    assert!(
        matches!(
            failure.reason,
            FailureReason::TlsHandshake(Stage::ConnectClaim, _)
                | FailureReason::ConnectionReset(Stage::ConnectClaim)
                | FailureReason::Disconnected(Stage::ConnectClaim)
        ),
        "{failure:?}"
    );
    m.handle.wait_active_at_most(0).await;
    assert!(m.handle.stats().tls_failures >= 1);
    assert_eq!(m.handle.stats().create_keys_accepted, 0);
    let ok = device::provision(
        &m.endpoint,
        &m.tls,
        &self::spec("native", CertificateMode::Keys),
        &device::Handles::default(),
    )
    .await;
    assert!(ok.outcome.is_ok());
}

#[tokio::test]
async fn certificates_unknown_to_the_registry_or_inactive_cannot_connect() {
    let m = start_mock(|_| {}).await;
    // Signed by the right CA but never registered.
    let key = KeyAlgorithm::P256.generate().unwrap();
    let issued = m.handle.pki.issue_device_certificate(&key).unwrap();
    let config = m
        .tls
        .for_identity(&issued.pem, &key.serialize_pem())
        .unwrap();
    let mut c = Client::new(&m, "stranger", config.clone());
    match c.next().await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected a refused CONNACK, got {other:?}"),
    }
    // A provisioned certificate that is then deactivated is refused the same way.
    let p = device::provision(
        &m.endpoint,
        &m.tls,
        &spec("deact", CertificateMode::Keys),
        &device::Handles::default(),
    )
    .await
    .outcome
    .unwrap();
    assert!(
        m.handle
            .registry()
            .set_certificate_status(&p.certificate_id, CertificateStatus::Revoked)
    );
    let own = m
        .tls
        .for_identity(&p.certificate_pem, &p.private_key_pem)
        .unwrap();
    let mut c = Client::new(&m, "deact", own);
    assert!(matches!(
        c.next().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    assert!(m.handle.stats().connack_refused >= 2);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let m = start_mock(|s| s.token_ttl = std::time::Duration::ZERO).await;
    let mut c = claim_client(&m, "late").await;
    let r = create_keys(&mut c).await;
    let (topic, payload) = register(
        &mut c,
        register_payload(&r.certificate_ownership_token, "late"),
    )
    .await;
    assert!(topic.ends_with("/rejected"), "{topic}");
    let e = rejected(&payload);
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (400, "InvalidCertificateOwnershipToken")
    );
    assert!(m.handle.registry().thing("late").is_none());
}

#[tokio::test]
async fn a_token_is_single_use_and_bad_tokens_are_refused() {
    let m = start_mock(|_| {}).await;
    let mut c = claim_client(&m, "twice").await;
    let r = create_keys(&mut c).await;
    let (topic, _) = register(
        &mut c,
        register_payload(&r.certificate_ownership_token, "once"),
    )
    .await;
    assert!(topic.ends_with("/accepted"));
    let t = RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json);
    c.publish(
        &t.topic(),
        register_payload(&r.certificate_ownership_token, "twice"),
    );
    let (topic, payload) = c.next_publish().await;
    assert!(topic.ends_with("/rejected"));
    assert_eq!(
        rejected(&payload).error_code,
        "InvalidCertificateOwnershipToken"
    );
    c.publish(&t.topic(), register_payload("", "empty"));
    let (_, payload) = c.next_publish().await;
    let e = rejected(&payload);
    assert_eq!(
        e.error_message,
        "Certificate ownership token cannot be empty."
    );
    c.publish(&t.topic(), register_payload("made-up", "bogus"));
    let (_, payload) = c.next_publish().await;
    assert_eq!(rejected(&payload).status_code, 400);
    assert!(m.handle.registry().thing("twice").is_none());
}

#[tokio::test]
async fn malformed_csr_and_non_json_payloads_are_rejected_with_400() {
    let m = start_mock(|_| {}).await;
    let mut c = claim_client(&m, "garbage").await;
    let csr = RequestTopic::create_from_csr(Format::Json);
    c.subscribe(&format!("{}/+", csr.topic())).await;
    c.publish(&csr.topic(), r#"{"certificateSigningRequest":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}"#);
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, csr.rejected());
    assert_eq!(rejected(&payload).status_code, 400);
    c.publish(&csr.topic(), "this is not json");
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, csr.rejected());
    assert_eq!(rejected(&payload).status_code, 400);
    let keys = RequestTopic::create_keys(Format::Json);
    c.subscribe(&keys.rejected()).await;
    c.publish(&keys.topic(), "{not json");
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, keys.rejected());
    assert_eq!(rejected(&payload).status_code, 400);
    let (topic, payload) = register(&mut c, b"[1,2".to_vec()).await;
    assert!(topic.ends_with("/rejected"));
    assert_eq!(rejected(&payload).status_code, 400);
    // Same connection, still served.
    let r = create_keys(&mut c).await;
    assert_eq!(r.certificate_id.len(), 64);
}

#[tokio::test]
async fn a_payload_over_128_kb_closes_the_connection_and_others_are_served() {
    let m = start_mock(|_| {}).await;
    let mut big = claim_client(&m, "big").await;
    let mut small = claim_client(&m, "small").await;
    big.publish(
        &RequestTopic::create_keys(Format::Json).topic(),
        vec![b' '; 128 * 1024 + 1],
    );
    big.closed().await;
    assert_eq!(m.handle.stats().protocol_errors, 1);
    let r = create_keys(&mut small).await;
    assert_eq!(r.certificate_id.len(), 64);
}

#[tokio::test]
async fn an_unresolvable_reference_is_rejected_with_invalid_parameters() {
    let m = start_mock(|s| {
        let dir = std::env::temp_dir().join(format!("fleetstorm-tmpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("region.json");
        std::fs::write(
            &path,
            r#"{"Parameters":{"DeviceName":{"Type":"String"}},
                "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{
                    "ThingName":{"Fn::Join":["-",[{"Ref":"DeviceName"},{"Ref":"AWS::Region"}]]}}}}}"#,
        )
        .unwrap();
        s.templates.insert("RegionTemplate".into(), path);
    })
    .await;
    let mut c = claim_client(&m, "region").await;
    let r = create_keys(&mut c).await;
    let t = RequestTopic::register_thing("RegionTemplate", Format::Json);
    c.subscribe(&t.rejected()).await;
    c.publish(
        &t.topic(),
        register_payload(&r.certificate_ownership_token, "x"),
    );
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, t.rejected());
    let e = rejected(&payload);
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (400, "InvalidParameters")
    );
    assert_eq!(
        e.error_message,
        "Cannot resolve reference value: AWS::Region"
    );
}

#[tokio::test]
async fn a_duplicate_client_id_closes_the_older_connection() {
    let m = start_mock(|_| {}).await;
    let mut old = claim_client(&m, "same-id").await;
    let mut new = claim_client(&m, "same-id").await;
    old.closed().await;
    let r = create_keys(&mut new).await;
    assert_eq!(r.certificate_id.len(), 64);
    assert_eq!(m.handle.stats().takeovers, 1);
}

#[tokio::test]
async fn an_mqtt5_connect_is_answered_by_the_mqtt5_codec() {
    let m = start_mock(|_| {}).await;
    let mut tls = raw_tls(&m).await;
    // MQTT 5 CONNECT: protocol level 5, clean start, keep-alive 30, no properties, client id "v5".
    let connect = [
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0, 2, b'v', b'5',
    ];
    tls.write_all(&connect).await.unwrap();
    // An MQTT 5 CONNACK: success, then its properties (tests/mqtt5_mock.rs reads them).
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack).await.unwrap();
    assert_eq!((ack[0], ack[2], ack[3]), (0x20, 0, 0));
    let mut properties = vec![0u8; usize::from(ack[1]) - 2];
    tls.read_exact(&mut properties).await.unwrap();
    assert_eq!(usize::from(properties[0]), properties.len() - 1);
    // A normal DISCONNECT without a body: the mock closes without a word.
    tls.write_all(&[0xE0, 0]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
}

async fn raw_tls(m: &TestMock) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(m.tls.claim());
    let tcp = tokio::net::TcpStream::connect(m.handle.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn random_bytes_and_truncated_packets_on_1000_connections_neither_crash_nor_wedge_it() {
    use rand::{Rng, RngExt, SeedableRng};
    let m = Arc::new(start_mock(|_| {}).await);
    let mut valid = bytes::BytesMut::new();
    rumqttc::Connect::new("fuzz").write(&mut valid).unwrap();
    let mut publish = bytes::BytesMut::new();
    let mut p = rumqttc::Publish::new(
        "$aws/certificates/create/json",
        rumqttc::QoS::AtLeastOnce,
        b"{}".to_vec(),
    );
    p.pkid = 1;
    p.write(&mut publish).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let m = m.clone();
        let valid = valid.clone();
        let publish = publish.clone();
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i);
            let mut junk = vec![0u8; rng.random_range(1..512)];
            rng.fill_bytes(&mut junk);
            let bytes: Vec<u8> = match i % 5 {
                0 => junk,                                                                  // random bytes
                1 => valid[..rng.random_range(1..valid.len())].to_vec(), // truncated CONNECT
                2 => [&valid[..], &publish[..rng.random_range(1..publish.len())]].concat(), // truncated PUBLISH
                3 => [&valid[..], &junk[..]].concat(), // CONNECT then noise
                _ => {
                    // Not even TLS: raw noise on the TLS port.
                    let mut tcp = tokio::net::TcpStream::connect(m.handle.addr).await.unwrap();
                    let _ = tcp.write_all(&junk).await;
                    return;
                }
            };
            let mut tls = raw_tls(&m).await;
            let _ = tls.write_all(&bytes).await;
            let _ = tls.flush().await;
            // Then hang up.
        });
        if tasks.len() >= 64 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    m.handle.wait_active_at_most(0).await;
    assert!(m.handle.stats().connections >= 1000);
    let report = device::provision(
        &m.endpoint,
        &m.tls,
        &spec("survivor", CertificateMode::Keys),
        &device::Handles::default(),
    )
    .await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome.err());
}

#[tokio::test]
async fn stop_writes_the_registry_and_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = pki::Pki::init(&dir.path().join("pki"), &[], KeyAlgorithm::P256).unwrap();
    let settings = fleetstorm::mock::MockSettings {
        keys: KeyAlgorithm::P256,
        ..Default::default()
    };
    let mut config = fleetstorm::mock::MockConfig::new(Arc::new(pki), settings).unwrap();
    config.write_registry = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle =
        fleetstorm::mock::start(config, listener, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    let tls = device::DeviceTls::new(
        &handle.pki.root_ca_pem,
        &handle.pki.claim_cert_pem,
        &handle.pki.claim_key_pem,
        false,
    )
    .unwrap();
    let endpoint = device::Endpoint {
        host: "127.0.0.1".into(),
        port: handle.addr.port(),
    };
    let p = device::provision(
        &endpoint,
        &tls,
        &spec("persisted", CertificateMode::Csr),
        &device::Handles::default(),
    )
    .await
    .outcome
    .unwrap();
    let report = handle.stop().await;
    assert_eq!(report.registry.things, 1);
    let path = report.registry_file.expect("registry written");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(json["things"][0]["thing_name"], "persisted");
    let certs = json["certificates"].as_array().unwrap();
    assert!(
        certs
            .iter()
            .any(|c| c["certificate_id"] == p.certificate_id.as_str() && c["status"] == "ACTIVE")
    );
}

#[tokio::test]
async fn a_template_can_leave_the_certificate_inactive() {
    let m = start_mock(|s| {
        let dir = std::env::temp_dir().join(format!("fleetstorm-inactive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inactive.json");
        std::fs::write(
            &path,
            r#"{"Parameters":{"DeviceName":{"Type":"String"}},
                "Resources":{
                  "thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"DeviceName"}}},
                  "certificate":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"inactive"}},
                  "policy":{"Type":"AWS::IoT::Policy","Properties":{"PolicyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"}]}"}}}}"#,
        )
        .unwrap();
        s.templates.insert("Inactive".into(), path);
    })
    .await;
    let mut s = spec("sleepy", CertificateMode::Keys);
    s.template = "Inactive".into();
    let failure = device::provision(&m.endpoint, &m.tls, &s, &device::Handles::default())
        .await
        .outcome
        .unwrap_err();
    assert_eq!(
        failure.reason,
        FailureReason::ConnackRefused(Stage::ConnectDevice, 5)
    );
    assert!(m.handle.registry().thing("sleepy").is_some());
}

/// A device that disconnects while its RegisterThing waits for a slow pre-provisioning hook:
/// AWS completes the request (the hook returns, the thing is registered, the certificate
/// activated) though nobody learns of it; so does the mock, and its report, taken when it has
/// stopped, counts it. The report's run figures leave out the claim certificate it started with.
#[tokio::test]
async fn a_request_whose_device_disconnected_is_completed_and_counted() {
    let m = start_mock(|s| {
        s.hooks.insert(
            "FleetProvisioningTemplate".into(),
            toml::from_str("kind = \"serial-prefix\"\nprefix = \"123456\"\nlatency = \"300ms\"")
                .unwrap(),
        );
    })
    .await;
    let mut c = claim_client(&m, "gives-up").await;
    let issued = create_keys(&mut c).await;
    c.publish(
        &RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json).topic(),
        register_payload(&issued.certificate_ownership_token, "given-up"),
    );
    // The broker has the request (its PUBACK), then the device is gone before the answer.
    loop {
        if let rumqttc::Packet::PubAck(_) = c.next().await.unwrap() {
            break;
        }
    }
    drop(c);
    let report = m.handle.stop().await;
    assert_eq!(report.registry_at_start.active_certificates, 1, "the claim");
    assert_eq!(
        (
            report.things,
            report.certificates_active,
            report.certificates_pending
        ),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.stats.register_thing_accepted, 1);
    assert_eq!(report.stats.undelivered_responses, 1);
}
