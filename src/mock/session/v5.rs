//! The MQTT 5 codec of a mock session: CONNACK properties and reason codes as AWS IoT Core sends them.

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::v5::mqttbytes as m5;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet,
    PingResp, PubAck, PubAckReason, Publish, SubAck, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use super::{
    Client, Close, Connection, Hello, MAX_FRAME, MAX_PAYLOAD_BYTES, Proto, PublishRefused, Refusal,
    Step, SubscribeRefused, keep_alive_secs,
};
use crate::mock_settings::{Mqtt5Refusal, Mqtt5Settings, ServerKeepAlive};

/// What an MQTT 5 connection negotiated in its CONNECT.
pub(super) struct Session {
    /// The largest packet the client accepts (responses larger are dropped, as MQTT 5 says).
    client_max_packet: Option<u32>,
    /// Topics by the alias the client gave them (index: alias - 1).
    aliases: Vec<Option<Bytes>>,
}

/// Decode an MQTT 5 CONNECT.
pub(super) fn read_connect(buf: &mut BytesMut) -> Result<Hello, Close> {
    match read(buf) {
        Ok(Packet::Connect(connect, _will, _login)) => {
            let properties = connect.properties.as_ref();
            Ok(Hello {
                client_id: connect.client_id,
                keep_alive: connect.keep_alive,
                proto: Proto::V5(Box::new(Session {
                    client_max_packet: properties.and_then(|p| p.max_packet_size),
                    aliases: Vec::new(),
                })),
            })
        }
        Ok(_) => Err(Close::ProtocolViolation),
        Err(e) => {
            debug!("malformed MQTT 5 CONNECT: {e}");
            Err(Close::Malformed)
        }
    }
}

/// Decode one packet. rumqttc wants a body in every DISCONNECT, but MQTT 5 lets a client send
/// one with remaining length 0 (normal disconnection), as the AWS SDKs do.
fn read(buf: &mut BytesMut) -> Result<Packet, m5::Error> {
    if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
        buf.advance(2);
        return Ok(Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::NormalDisconnection,
        )));
    }
    Packet::read(buf, Some(MAX_FRAME as u32))
}

/// The CONNACK of an accepted connection, with the properties AWS IoT Core sends.
pub(crate) fn connack(settings: &Mqtt5Settings, requested_keep_alive: u16) -> ConnAck {
    let used = keep_alive_secs(requested_keep_alive);
    let server_keep_alive = match settings.server_keep_alive {
        ServerKeepAlive::WhenClamped => (used != requested_keep_alive).then_some(used),
        ServerKeepAlive::Always => Some(used),
        ServerKeepAlive::Never => None,
    };
    ConnAck {
        session_present: false,
        code: ConnectReturnCode::Success,
        properties: Some(ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(settings.receive_maximum),
            // AWS IoT Core supports QoS 0 and 1 only.
            max_qos: Some(1),
            retain_available: Some(1),
            max_packet_size: Some(settings.maximum_packet_size),
            assigned_client_identifier: None,
            topic_alias_max: Some(settings.topic_alias_maximum),
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(0),
            shared_subscription_available: Some(1),
            server_keep_alive,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        }),
    }
}

/// The DISCONNECT reason code for why the server closes (`None`: the client left or the
/// network failed, nothing to say).
pub(crate) fn disconnect_reason(close: Close) -> Option<DisconnectReasonCode> {
    Some(match close {
        Close::Malformed => DisconnectReasonCode::MalformedPacket,
        Close::ProtocolViolation => DisconnectReasonCode::ProtocolError,
        Close::PolicyViolation => DisconnectReasonCode::NotAuthorized,
        Close::KeepAlive => DisconnectReasonCode::KeepAliveTimeout,
        Close::TakenOver => DisconnectReasonCode::SessionTakenOver,
        // UNCONFIRMED: no AWS source gives the reason code of this DISCONNECT.
        Close::CertificateNotActive => DisconnectReasonCode::AdministrativeAction,
        Close::Shutdown => DisconnectReasonCode::ServerShuttingDown,
        Close::PacketTooLarge => DisconnectReasonCode::PacketTooLarge,
        Close::TopicInvalid => DisconnectReasonCode::TopicNameInvalid,
        Close::QuotaExceeded => DisconnectReasonCode::QuotaExceeded,
        Close::QosNotSupported => DisconnectReasonCode::QoSNotSupported,
        Close::TopicAliasInvalid => DisconnectReasonCode::TopicAliasInvalid,
        Close::SubscriptionIdsNotSupported => {
            DisconnectReasonCode::SubscriptionIdentifiersNotSupported
        }
        // An injected fault drops the connection as a network would; a throttled CONNECT got
        // its CONNACK.
        Close::ClientDisconnect | Close::Eof | Close::Io | Close::Fault | Close::Throttled => {
            return None;
        }
    })
}

/// A DISCONNECT with a reason code and no properties, written by hand: rumqttc 0.25 encodes it
/// one byte longer than its remaining length says, and with an empty property list as the
/// bodiless normal DISCONNECT.
fn disconnect_frame(reason_code: DisconnectReasonCode) -> [u8; 4] {
    [0xE0, 2, reason_code as u8, 0]
}

fn qos_in(qos: m5::QoS) -> QoS {
    match qos {
        m5::QoS::AtMostOnce => QoS::AtMostOnce,
        m5::QoS::AtLeastOnce => QoS::AtLeastOnce,
        m5::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_out(qos: QoS) -> m5::QoS {
    match qos {
        QoS::AtMostOnce => m5::QoS::AtMostOnce,
        QoS::AtLeastOnce => m5::QoS::AtLeastOnce,
        QoS::ExactlyOnce => m5::QoS::ExactlyOnce,
    }
}

/// A shared subscription's filter without its `$share/<group>/`: what topics are matched on.
fn unshared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}

impl<S: AsyncRead + AsyncWrite> Connection<S> {
    fn v5(&mut self) -> &mut Session {
        match &mut self.proto {
            Proto::V5(session) => session,
            Proto::V311 => unreachable!("the MQTT 5 codec runs on MQTT 5 connections only"),
        }
    }

    fn settings5(&self) -> &Mqtt5Settings {
        &self.state.settings.mqtt5
    }

    /// Decode and handle the next buffered packet.
    pub(super) async fn next_v5(&mut self, client: &Client) -> Step {
        match read(&mut self.rbuf) {
            Ok(packet) => match self.handle_v5(client, packet).await {
                Some(close) => Step::Close(close),
                None => Step::Handled,
            },
            Err(m5::Error::InsufficientBytes(n)) => Step::Need(n),
            Err(m5::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
                info!(client_id = %client.client_id, bytes = pkt_size, "packet over the maximum size: closing");
                Step::Close(Close::PacketTooLarge)
            }
            Err(e) => {
                debug!(peer = %self.peer, "malformed MQTT 5 packet: {e}");
                Step::Close(Close::Malformed)
            }
        }
    }

    /// Handle one packet; `Some` closes the connection.
    async fn handle_v5(&mut self, client: &Client, packet: Packet) -> Option<Close> {
        match packet {
            Packet::Publish(publish) => self.publish_v5(client, publish).await,
            Packet::Subscribe(subscribe) => {
                if subscribe
                    .properties
                    .as_ref()
                    .is_some_and(|p| p.id.is_some())
                {
                    return Some(Close::SubscriptionIdsNotSupported);
                }
                let policy = self.settings5().policy_violation;
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                for filter in &subscribe.filters {
                    let path = filter.path.as_str();
                    let code =
                        match self.subscribe(client, path, unshared(path), qos_in(filter.qos)) {
                            Ok(qos) => SubscribeReasonCode::Success(qos_out(qos)),
                            Err(SubscribeRefused::FilterInvalid) => {
                                SubscribeReasonCode::TopicFilterInvalid
                            }
                            Err(SubscribeRefused::NotAuthorized) => match policy {
                                Mqtt5Refusal::ReasonCode => SubscribeReasonCode::NotAuthorized,
                                Mqtt5Refusal::Disconnect => return Some(Close::PolicyViolation),
                            },
                        };
                    codes.push(code);
                }
                self.queue5(Packet::SubAck(SubAck {
                    pkid: subscribe.pkid,
                    return_codes: codes,
                    properties: None,
                }))
                .err()
            }
            Packet::Unsubscribe(unsubscribe) => {
                let filters: Vec<&str> = unsubscribe.filters.iter().map(|f| unshared(f)).collect();
                self.subscriptions
                    .retain(|(f, _)| !filters.contains(&f.as_str()));
                let reasons = vec![UnsubAckReason::Success; unsubscribe.filters.len()];
                self.queue5(Packet::UnsubAck(UnsubAck {
                    pkid: unsubscribe.pkid,
                    reasons,
                    properties: None,
                }))
                .err()
            }
            Packet::PingReq(_) => self.queue5(Packet::PingResp(PingResp)).err(),
            Packet::PubAck(_) => None,
            Packet::Disconnect(_) => Some(Close::ClientDisconnect),
            // A second CONNECT, QoS 2 flow packets, AUTH (AWS has no enhanced authentication),
            // or server-to-client packets.
            _ => Some(Close::ProtocolViolation),
        }
    }

    async fn publish_v5(&mut self, client: &Client, publish: Publish) -> Option<Close> {
        if publish.payload.len() > MAX_PAYLOAD_BYTES {
            info!(client_id = %client.client_id, bytes = publish.payload.len(), "publish over 128 KB: closing");
            return Some(Close::PacketTooLarge);
        }
        if publish.qos == m5::QoS::ExactlyOnce {
            // The CONNACK said Maximum QoS 1.
            return Some(Close::QosNotSupported);
        }
        let qos = qos_in(publish.qos);
        // Response topic, correlation data, user properties: AWS's reserved topics answer on
        // their own fixed topics, so the mock reads none of them.
        let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
        let topic = match self.resolve_alias(alias, publish.topic) {
            Ok(topic) => topic,
            Err(close) => return Some(close),
        };
        let Ok(name) = std::str::from_utf8(&topic) else {
            return Some(Close::Malformed);
        };
        let refusal = match self.check_publish(client, name) {
            Ok(()) => None,
            Err(PublishRefused::TopicInvalid) => return Some(Close::TopicInvalid),
            Err(PublishRefused::NotAuthorized) => match self.settings5().policy_violation {
                Mqtt5Refusal::ReasonCode if qos == QoS::AtLeastOnce => {
                    Some(PubAckReason::NotAuthorized)
                }
                _ => return Some(Close::PolicyViolation),
            },
            Err(PublishRefused::OverQuota) => match self.settings5().publish_over_quota {
                Mqtt5Refusal::ReasonCode if qos == QoS::AtLeastOnce => {
                    Some(PubAckReason::QuotaExceeded)
                }
                // A QoS 0 publish over the quota is discarded, as under 3.1.1.
                Mqtt5Refusal::ReasonCode => return None,
                Mqtt5Refusal::Disconnect => return Some(Close::QuotaExceeded),
            },
        };
        if qos == QoS::AtLeastOnce {
            let ack = PubAck {
                pkid: publish.pkid,
                reason: refusal.unwrap_or(PubAckReason::Success),
                properties: None,
            };
            if self.queue5(Packet::PubAck(ack)).is_err() {
                return Some(Close::ProtocolViolation);
            }
        }
        if refusal.is_some() {
            return None;
        }
        self.request(client, name, publish.payload).await
    }

    /// The topic of a PUBLISH: its own (recorded under its alias if it sets one), or the one its
    /// alias stands for.
    fn resolve_alias(&mut self, alias: Option<u16>, topic: Bytes) -> Result<Bytes, Close> {
        let maximum = self.settings5().topic_alias_maximum;
        let Some(alias) = alias else {
            return if topic.is_empty() {
                Err(Close::ProtocolViolation)
            } else {
                Ok(topic)
            };
        };
        if alias == 0 || alias > maximum {
            return Err(Close::TopicAliasInvalid);
        }
        let index = usize::from(alias - 1);
        let aliases = &mut self.v5().aliases;
        if topic.is_empty() {
            return aliases
                .get(index)
                .cloned()
                .flatten()
                .ok_or(Close::TopicAliasInvalid);
        }
        if aliases.len() <= index {
            aliases.resize(index + 1, None);
        }
        aliases[index] = Some(topic.clone());
        Ok(topic)
    }

    pub(super) fn queue_connack_v5(&mut self, requested_keep_alive: u16) -> Result<(), Close> {
        let ack = connack(self.settings5(), requested_keep_alive);
        self.queue5(Packet::ConnAck(ack))
    }

    pub(super) fn queue_connack_refused_v5(&mut self, refusal: Refusal) -> Result<(), Close> {
        let code = match refusal {
            Refusal::BadClientId => ConnectReturnCode::ClientIdentifierNotValid,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
            Refusal::RateExceeded => ConnectReturnCode::ConnectionRateExceeded,
        };
        self.queue5(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: None,
        }))
    }

    pub(super) fn queue_publish_v5(
        &mut self,
        topic: String,
        qos: QoS,
        pkid: u16,
        payload: Vec<u8>,
    ) -> Result<(), Close> {
        let mut publish = Publish::new(topic, qos_out(qos), payload, None);
        publish.pkid = pkid;
        let size = publish.size();
        if self
            .v5()
            .client_max_packet
            .is_some_and(|max| size > max as usize)
        {
            // MQTT 5: a packet over the client's Maximum Packet Size is discarded.
            self.state
                .stats
                .undelivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(peer = %self.peer, size, "response over the client's maximum packet size: dropped");
            return Ok(());
        }
        self.queue5(Packet::Publish(publish))
    }

    /// Queue the DISCONNECT that says why the server closes an MQTT 5 connection.
    pub(super) fn queue_disconnect(&mut self, close: Close) {
        if !matches!(self.proto, Proto::V5(_)) {
            return;
        }
        if let Some(reason_code) = disconnect_reason(close) {
            self.wbuf.extend_from_slice(&disconnect_frame(reason_code));
        }
    }

    /// Encode a packet behind those already queued; `flush` sends them.
    fn queue5(&mut self, packet: Packet) -> Result<(), Close> {
        packet
            .write(&mut self.wbuf, None)
            .map_err(|_| Close::ProtocolViolation)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keep_alive_is_sent_as_the_setting_says() {
        // The other CONNACK properties: tests/it/mqtt5_mock.rs, over a real connection.
        let settings = Mqtt5Settings::default();
        let keep_alive = |s: &Mqtt5Settings, requested| {
            connack(s, requested).properties.unwrap().server_keep_alive
        };
        assert_eq!(keep_alive(&settings, 10), Some(30));
        assert_eq!(keep_alive(&settings, 5000), Some(1200));
        assert_eq!(keep_alive(&settings, 60), None);
        assert_eq!(keep_alive(&settings, 0), Some(1200));
        let never = Mqtt5Settings {
            server_keep_alive: ServerKeepAlive::Never,
            ..Default::default()
        };
        assert_eq!(keep_alive(&never, 5), None);
        let always = Mqtt5Settings {
            server_keep_alive: ServerKeepAlive::Always,
            ..Default::default()
        };
        assert_eq!(keep_alive(&always, 60), Some(60));
    }

    #[test]
    fn a_bodiless_disconnect_is_read_and_a_reason_code_disconnect_round_trips() {
        let mut buf = BytesMut::from(&[0xE0, 0, 0xC0, 0][..]);
        assert!(matches!(read(&mut buf), Ok(Packet::Disconnect(_))));
        assert!(matches!(read(&mut buf), Ok(Packet::PingReq(_))));
        let mut frame =
            BytesMut::from(&disconnect_frame(DisconnectReasonCode::SessionTakenOver)[..]);
        match read(&mut frame) {
            Ok(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, DisconnectReasonCode::SessionTakenOver)
            }
            other => panic!("{other:?}"),
        }
        assert!(frame.is_empty());
    }

    #[test]
    fn shared_subscriptions_match_on_the_filter_after_the_group() {
        assert_eq!(unshared("$share/g/$aws/things/+"), "$aws/things/+");
        assert_eq!(unshared("$aws/things/+"), "$aws/things/+");
        assert_eq!(unshared("$share/only"), "$share/only");
    }
}
