//! The mock endpoint over MQTT 5: CONNACK properties, AWS's reason codes, provisioning, and a
//! 3.1.1 and an MQTT 5 connection side by side. A raw MQTT 5 client (rumqttc's v5 codec over
//! tokio-rustls) so every reason code and property is seen exactly as sent.

use crate::common;

use std::sync::Arc;

use bytes::BytesMut;
use common::{Client, TestMock, WAIT, start_mock};
use fleetstorm::iot::policy::PolicyDocument;
use fleetstorm::mock::registry::CertificateStatus;
use fleetstorm::mock_settings::Mqtt5Refusal;
use fleetstorm::pki::KeyAlgorithm;
use fleetstorm::protocol::{
    CreateKeysAndCertificateResponse, Format, RegisterThingRequest, RegisterThingResponse,
    RequestTopic,
};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectReturnCode, DisconnectReasonCode, Filter, Packet, PubAck,
    PubAckReason, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::{self as m5, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A raw MQTT 5 connection.
pub(crate) struct V5 {
    tls: TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
    next_pkid: u16,
}

impl V5 {
    /// Open TLS and send a CONNECT; returns the connection and the CONNACK.
    pub(crate) async fn connect(
        m: &TestMock,
        client_id: &str,
        tls: Arc<rustls::ClientConfig>,
        keep_alive: u16,
    ) -> (V5, ConnAck) {
        let connector = tokio_rustls::TlsConnector::from(tls);
        let tcp = tokio::net::TcpStream::connect(m.handle.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let mut c = V5 {
            tls,
            buf: BytesMut::new(),
            next_pkid: 0,
        };
        let connect = Connect {
            keep_alive,
            client_id: client_id.into(),
            clean_start: true,
            properties: None,
        };
        c.send(Packet::Connect(connect, None, None)).await;
        match c.next().await {
            Some(Packet::ConnAck(ack)) => (c, ack),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }

    /// Connect and insist on success.
    pub(crate) async fn connected(
        m: &TestMock,
        client_id: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> V5 {
        let (c, ack) = V5::connect(m, client_id, tls, 30).await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{ack:?}");
        c
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, None).unwrap();
        self.tls.write_all(&out).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// The next packet from the server; `None` once it closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, None) {
                Ok(packet) => return Some(packet),
                Err(m5::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("undecodable packet from the mock: {e}"),
            }
            let read = tokio::time::timeout(WAIT, self.tls.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| panic!("nothing from the mock within {WAIT:?}"));
            match read {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "a partial packet: {:?}", &self.buf[..]);
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid += 1;
        self.next_pkid
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        let mut subscribe = Subscribe::new(Filter::new(filter, QoS::AtLeastOnce), None);
        subscribe.pkid = self.pkid();
        self.send(Packet::Subscribe(subscribe)).await;
        loop {
            match self.next().await {
                Some(Packet::SubAck(ack)) => return ack.return_codes,
                Some(_) => continue,
                None => panic!("closed while subscribing to {filter}"),
            }
        }
    }

    /// Publish; returns the packet identifier (0 for QoS 0).
    async fn publish(&mut self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) -> u16 {
        let mut publish = Publish::new(topic, qos, payload.into(), None);
        if qos != QoS::AtMostOnce {
            publish.pkid = self.pkid();
        }
        let pkid = publish.pkid;
        self.send(Packet::Publish(publish)).await;
        pkid
    }

    /// The PUBACK for `pkid` (other packets before it are skipped).
    async fn puback(&mut self, pkid: u16) -> PubAck {
        loop {
            match self.next().await {
                Some(Packet::PubAck(ack)) if ack.pkid == pkid => return ack,
                Some(_) => continue,
                None => panic!("closed before the PUBACK of {pkid}"),
            }
        }
    }

    /// The next PUBLISH from the server (topic, payload).
    async fn next_publish(&mut self) -> (String, Vec<u8>) {
        loop {
            match self.next().await {
                Some(Packet::Publish(p)) => {
                    return (
                        String::from_utf8(p.topic.to_vec()).unwrap(),
                        p.payload.to_vec(),
                    );
                }
                Some(_) => continue,
                None => panic!("closed while waiting for a publish"),
            }
        }
    }

    /// Read until the server's DISCONNECT; returns its reason code once the connection closed.
    pub(crate) async fn disconnected(&mut self) -> DisconnectReasonCode {
        loop {
            match self.next().await {
                Some(Packet::Disconnect(d)) => {
                    assert!(self.next().await.is_none(), "the connection stays open");
                    return d.reason_code;
                }
                Some(_) => continue,
                None => panic!("closed without a DISCONNECT"),
            }
        }
    }

    /// CreateKeysAndCertificate on this connection.
    async fn create_keys(&mut self) -> CreateKeysAndCertificateResponse {
        let t = RequestTopic::create_keys(Format::Json);
        assert_eq!(
            self.subscribe(&t.accepted()).await,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        );
        let pkid = self.publish(&t.topic(), QoS::AtLeastOnce, "{}").await;
        assert_eq!(self.puback(pkid).await.reason, PubAckReason::Success);
        let (topic, payload) = self.next_publish().await;
        assert_eq!(topic, t.accepted());
        serde_json::from_slice(&payload).unwrap()
    }
}

fn register_payload(token: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&RegisterThingRequest {
        certificate_ownership_token: Some(token.to_string()),
        parameters: Some(
            [
                ("DeviceName", name),
                ("SerialNumber", "123456789"),
                ("DeviceLocation", "Berlin"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
    })
    .unwrap()
}

#[tokio::test]
async fn the_connack_carries_the_properties_aws_sends() {
    let m = start_mock(|_| {}).await;
    // 10 s is below AWS's 30 s floor: the CONNACK says the keep-alive the server uses.
    let (_c, ack) = V5::connect(&m, "props", m.tls.claim(), 10).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present);
    let p = ack.properties.expect("CONNACK properties");
    assert_eq!(p.max_qos, Some(1));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.wildcard_subscription_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(p.subscription_identifiers_available, Some(0));
    assert_eq!(p.max_packet_size, Some(128 * 1024));
    assert_eq!(p.receive_max, Some(100));
    assert_eq!(p.topic_alias_max, Some(8));
    assert_eq!(p.server_keep_alive, Some(30));
    // Within 30-1200 s nothing is clamped, and nothing said.
    let (_c, ack) = V5::connect(&m, "props-60", m.tls.claim(), 60).await;
    assert_eq!(ack.properties.unwrap().server_keep_alive, None);
}

#[tokio::test]
async fn an_unknown_or_revoked_certificate_gets_connack_0x87() {
    let m = start_mock(|_| {}).await;
    let key = KeyAlgorithm::P256.generate().unwrap();
    let issued = m.handle.pki.issue_device_certificate(&key).unwrap();
    let stranger = m
        .tls
        .for_identity(&issued.pem, &key.serialize_pem())
        .unwrap();
    let (mut c, ack) = V5::connect(&m, "stranger", stranger.clone(), 30).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    assert!(c.next().await.is_none(), "closed after the refusal");

    let id = fleetstorm::pki::certificate_id(&issued.der);
    m.handle
        .registry()
        .add_certificate(&id, CertificateStatus::Revoked, &[]);
    let (_, ack) = V5::connect(&m, "stranger", stranger, 30).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    assert_eq!(m.handle.stats().connack_refused, 2);
}

#[tokio::test]
async fn a_connect_the_policy_does_not_allow_gets_connack_0x87() {
    let m = start_mock(|_| {}).await;
    let json = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "iot:Connect",
        "Resource": "arn:aws:iot:us-east-1:123456789012:client/allowed"}]});
    m.handle
        .registry()
        .add_policy("only-allowed", PolicyDocument::parse(&json).unwrap(), json);
    let key = KeyAlgorithm::P256.generate().unwrap();
    let issued = m.handle.pki.issue_device_certificate(&key).unwrap();
    let id = fleetstorm::pki::certificate_id(&issued.der);
    m.handle
        .registry()
        .add_certificate(&id, CertificateStatus::Active, &["only-allowed"]);
    let tls = m
        .tls
        .for_identity(&issued.pem, &key.serialize_pem())
        .unwrap();
    let (_, ack) = V5::connect(&m, "someone-else", tls.clone(), 30).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    let (_, ack) = V5::connect(&m, "allowed", tls, 30).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
}

#[tokio::test]
async fn an_unauthorized_qos1_publish_gets_puback_0x87_and_the_connection_stays() {
    let m = start_mock(|_| {}).await;
    let mut c = V5::connected(&m, "talker", m.tls.claim()).await;
    let pkid = c.publish("device/x", QoS::AtLeastOnce, "{}").await;
    assert_eq!(c.puback(pkid).await.reason, PubAckReason::NotAuthorized);
    let r = c.create_keys().await;
    assert_eq!(r.certificate_id.len(), 64);
    assert_eq!(m.handle.stats().policy_disconnects, 0);
}

#[tokio::test]
async fn an_unauthorized_subscribe_gets_suback_0x87_per_filter() {
    let m = start_mock(|_| {}).await;
    let mut c = V5::connected(&m, "greedy", m.tls.claim()).await;
    let t = RequestTopic::create_keys(Format::Json);
    let mut subscribe = Subscribe::new_many(
        [
            Filter::new("#", QoS::AtLeastOnce),
            Filter::new(t.accepted(), QoS::AtLeastOnce),
        ],
        None,
    );
    subscribe.pkid = 7;
    c.send(Packet::Subscribe(subscribe)).await;
    match c.next().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, 7);
            assert_eq!(
                ack.return_codes,
                [
                    SubscribeReasonCode::NotAuthorized,
                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                ]
            );
        }
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    // The granted filter works.
    let pkid = c.publish(&t.topic(), QoS::AtLeastOnce, "{}").await;
    assert_eq!(c.puback(pkid).await.reason, PubAckReason::Success);
    assert_eq!(c.next_publish().await.0, t.accepted());
}

#[tokio::test]
async fn policy_violations_without_an_acknowledgement_get_disconnect_0x87() {
    // QoS 0 has no PUBACK to carry the code.
    let m = start_mock(|_| {}).await;
    let mut c = V5::connected(&m, "quiet", m.tls.claim()).await;
    c.publish("device/x", QoS::AtMostOnce, "{}").await;
    assert_eq!(c.disconnected().await, DisconnectReasonCode::NotAuthorized);
    assert_eq!(m.handle.stats().policy_disconnects, 1);

    // policy_violation = "disconnect": the 3.1.1 behaviour, with its reason code.
    let m = start_mock(|s| s.mqtt5.policy_violation = Mqtt5Refusal::Disconnect).await;
    let mut c = V5::connected(&m, "strict-sub", m.tls.claim()).await;
    let mut subscribe = Subscribe::new(Filter::new("#", QoS::AtLeastOnce), None);
    subscribe.pkid = 1;
    c.send(Packet::Subscribe(subscribe)).await;
    assert_eq!(c.disconnected().await, DisconnectReasonCode::NotAuthorized);
    let mut c = V5::connected(&m, "strict-pub", m.tls.claim()).await;
    c.publish("device/x", QoS::AtLeastOnce, "{}").await;
    assert_eq!(c.disconnected().await, DisconnectReasonCode::NotAuthorized);
    assert_eq!(m.handle.stats().policy_disconnects, 2);
}

#[tokio::test]
async fn a_duplicate_client_id_gets_disconnect_0x8e_session_taken_over() {
    let m = start_mock(|_| {}).await;
    let mut old = V5::connected(&m, "same-id", m.tls.claim()).await;
    let mut new = V5::connected(&m, "same-id", m.tls.claim()).await;
    assert_eq!(
        old.disconnected().await,
        DisconnectReasonCode::SessionTakenOver
    );
    assert_eq!(new.create_keys().await.certificate_id.len(), 64);
    assert_eq!(m.handle.stats().takeovers, 1);
}

#[tokio::test]
async fn a_payload_over_128_kb_gets_disconnect_0x95_packet_too_large() {
    let m = start_mock(|_| {}).await;
    let mut big = V5::connected(&m, "big", m.tls.claim()).await;
    let t = RequestTopic::create_keys(Format::Json);
    big.publish(&t.topic(), QoS::AtLeastOnce, vec![b' '; 128 * 1024 + 1])
        .await;
    assert_eq!(
        big.disconnected().await,
        DisconnectReasonCode::PacketTooLarge
    );
    assert_eq!(m.handle.stats().protocol_errors, 1);
}

#[tokio::test]
async fn a_publish_over_the_connection_quota_gets_0x97_quota_exceeded() {
    let quota = |s: &mut fleetstorm::mock::MockSettings| {
        s.quotas.enabled = true;
        s.quotas.publish_per_connection_per_s = 1.0;
    };
    let m = start_mock(quota).await;
    let mut c = V5::connected(&m, "chatty", m.tls.claim()).await;
    let t = RequestTopic::create_keys(Format::Json);
    c.subscribe(&t.accepted()).await;
    let first = c.publish(&t.topic(), QoS::AtLeastOnce, "{}").await;
    let second = c.publish(&t.topic(), QoS::AtLeastOnce, "{}").await;
    assert_eq!(c.puback(first).await.reason, PubAckReason::Success);
    // The first request's response and the second's refusal, in either order.
    let (mut refused, mut answered) = (None, false);
    while refused.is_none() || !answered {
        match c.next().await {
            Some(Packet::PubAck(ack)) if ack.pkid == second => refused = Some(ack.reason),
            Some(Packet::Publish(p)) => answered = p.topic == t.accepted().as_bytes(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, Some(PubAckReason::QuotaExceeded));
    assert_eq!(m.handle.stats().create_keys_accepted, 1);

    // publish_over_quota = "disconnect".
    let m = start_mock(|s| {
        quota(s);
        s.mqtt5.publish_over_quota = Mqtt5Refusal::Disconnect;
    })
    .await;
    let mut c = V5::connected(&m, "chatty", m.tls.claim()).await;
    c.publish(&t.topic(), QoS::AtMostOnce, "{}").await;
    c.publish(&t.topic(), QoS::AtMostOnce, "{}").await;
    assert_eq!(c.disconnected().await, DisconnectReasonCode::QuotaExceeded);
}

#[tokio::test]
async fn a_connect_over_the_rate_gets_connack_0x9f() {
    let m = start_mock(|s| s.quotas.enabled = true).await;
    let _first = V5::connected(&m, "eager", m.tls.claim()).await;
    // AWS allows one CONNECT per second per client ID.
    let (mut c, ack) = V5::connect(&m, "eager", m.tls.claim(), 30).await;
    assert_eq!(ack.code, ConnectReturnCode::ConnectionRateExceeded);
    assert!(c.next().await.is_none());
    assert_eq!(m.handle.stats().throttled_connects, 1);
}

#[tokio::test]
async fn stopping_the_mock_sends_disconnect_0x8b_server_shutting_down() {
    let TestMock {
        handle, tls, dir, ..
    } = start_mock(|_| {}).await;
    let m = TestMock {
        endpoint: fleetstorm::device::Endpoint {
            host: "127.0.0.1".into(),
            port: handle.addr.port(),
        },
        handle,
        tls,
        dir,
    };
    let mut c = V5::connected(&m, "bye", m.tls.claim()).await;
    let stop = tokio::spawn(m.handle.stop());
    assert_eq!(
        c.disconnected().await,
        DisconnectReasonCode::ServerShuttingDown
    );
    stop.await.unwrap();
}

#[tokio::test]
async fn keys_flow_over_mqtt5_registers_the_thing_and_the_new_certificate_connects() {
    let m = start_mock(|_| {}).await;
    let mut c = V5::connected(&m, "five", m.tls.claim()).await;
    let keys = c.create_keys().await;
    let t = RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json);
    assert_eq!(
        c.subscribe(&format!("{}/+", t.topic())).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let pkid = c
        .publish(
            &t.topic(),
            QoS::AtLeastOnce,
            register_payload(&keys.certificate_ownership_token, "five-thing"),
        )
        .await;
    assert_eq!(c.puback(pkid).await.reason, PubAckReason::Success);
    let (topic, payload) = c.next_publish().await;
    assert_eq!(topic, t.accepted());
    let registered: RegisterThingResponse = serde_json::from_slice(&payload).unwrap();
    assert_eq!(registered.thing_name, "five-thing");
    // A normal DISCONNECT (no body) ends the claim session.
    c.tls.write_all(&[0xE0, 0]).await.unwrap();
    c.tls.flush().await.unwrap();
    assert!(c.next().await.is_none());

    let own = m
        .tls
        .for_identity(&keys.certificate_pem, &keys.private_key)
        .unwrap();
    let _device = V5::connected(&m, "five-thing", own).await;
    let cert = m
        .handle
        .registry()
        .certificate(&keys.certificate_id)
        .unwrap();
    assert_eq!(cert.status, CertificateStatus::Active);
    assert!(cert.things.contains("five-thing"));
    assert_eq!(m.handle.stats().register_thing_accepted, 1);
}

#[tokio::test]
async fn an_mqtt311_and_an_mqtt5_connection_provision_side_by_side() {
    let m = start_mock(|_| {}).await;
    let mut three = Client::connect(&m, "three", m.tls.claim()).await;
    let mut five = V5::connected(&m, "five", m.tls.claim()).await;
    let t = RequestTopic::create_keys(Format::Json);
    three.subscribe(&t.accepted()).await;
    five.subscribe(&t.accepted()).await;
    three.publish(&t.topic(), "{}");
    let pkid = five.publish(&t.topic(), QoS::AtLeastOnce, "{}").await;
    let (topic, payload) = three.next_publish().await;
    assert_eq!(topic, t.accepted());
    let a: CreateKeysAndCertificateResponse = serde_json::from_slice(&payload).unwrap();
    assert_eq!(five.puback(pkid).await.reason, PubAckReason::Success);
    let (topic, payload) = five.next_publish().await;
    assert_eq!(topic, t.accepted());
    let b: CreateKeysAndCertificateResponse = serde_json::from_slice(&payload).unwrap();
    assert_ne!(a.certificate_id, b.certificate_id);
    assert_eq!(m.handle.stats().create_keys_accepted, 2);
}

#[tokio::test]
async fn topic_aliases_are_honoured_and_an_unknown_one_gets_disconnect_0x94() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    let aliased = |topic: &str, alias: u16, pkid: u16| {
        let mut p = Publish::new(
            topic,
            QoS::AtLeastOnce,
            "{}",
            Some(PublishProperties {
                topic_alias: Some(alias),
                ..Default::default()
            }),
        );
        p.pkid = pkid;
        Packet::Publish(p)
    };
    let m = start_mock(|_| {}).await;
    let mut c = V5::connected(&m, "alias", m.tls.claim()).await;
    let t = RequestTopic::create_keys(Format::Json);
    c.subscribe(&t.accepted()).await;
    // Alias 3 set with the topic, then used alone: both requests are answered.
    c.send(aliased(&t.topic(), 3, 100)).await;
    assert_eq!(c.puback(100).await.reason, PubAckReason::Success);
    assert_eq!(c.next_publish().await.0, t.accepted());
    c.send(aliased("", 3, 101)).await;
    assert_eq!(c.puback(101).await.reason, PubAckReason::Success);
    assert_eq!(c.next_publish().await.0, t.accepted());
    assert_eq!(m.handle.stats().create_keys_accepted, 2);
    // Alias 4 was never set.
    c.send(aliased("", 4, 102)).await;
    assert_eq!(
        c.disconnected().await,
        DisconnectReasonCode::TopicAliasInvalid
    );
}
