//! The MQTT 3.1.1 codec of a mock session: rumqttc's v4 packets in and out (the benchmarks' hot path).

use rumqttc::mqttbytes::{self, QoS};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use super::{
    Client, Close, Connection, Hello, MAX_FRAME, MAX_PAYLOAD_BYTES, Proto, PublishRefused, Refusal,
    Step, SubscribeRefused,
};

/// Decode a CONNECT that is not MQTT 5.
pub(super) fn read_connect(buf: &mut bytes::BytesMut) -> Result<Hello, Close> {
    match Packet::read(buf, MAX_FRAME) {
        Ok(Packet::Connect(connect)) => Ok(Hello {
            client_id: connect.client_id,
            keep_alive: connect.keep_alive,
            proto: Proto::V311,
        }),
        Ok(_) => Err(Close::ProtocolViolation),
        Err(_) => Err(Close::Malformed),
    }
}

impl<S: AsyncRead + AsyncWrite> Connection<S> {
    /// Decode and handle the next buffered packet.
    pub(super) async fn next_v311(&mut self, client: &Client) -> Step {
        match Packet::read(&mut self.rbuf, MAX_FRAME) {
            Ok(packet) => match self.handle_v311(client, packet).await {
                Some(close) => Step::Close(close),
                None => Step::Handled,
            },
            Err(mqttbytes::Error::InsufficientBytes(n)) => Step::Need(n),
            Err(e) => {
                debug!(peer = %self.peer, "malformed packet: {e}");
                Step::Close(Close::Malformed)
            }
        }
    }

    /// Handle one packet; `Some` closes the connection.
    async fn handle_v311(&mut self, client: &Client, packet: Packet) -> Option<Close> {
        match packet {
            Packet::Publish(publish) => {
                if publish.payload.len() > MAX_PAYLOAD_BYTES {
                    info!(client_id = %client.client_id, bytes = publish.payload.len(), "publish over 128 KB: closing");
                    return Some(Close::PacketTooLarge);
                }
                if publish.qos == QoS::ExactlyOnce {
                    // AWS IoT does not support QoS 2: no PUBACK/PUBREC, the message is dropped.
                    return None;
                }
                match self.check_publish(client, &publish.topic) {
                    Ok(()) => {}
                    Err(PublishRefused::TopicInvalid) => return Some(Close::ProtocolViolation),
                    // AWS closes an MQTT 3.1.1 connection on an unauthorized publish.
                    Err(PublishRefused::NotAuthorized) => return Some(Close::PolicyViolation),
                    // Publishes over the connection's quota are discarded, as AWS does.
                    Err(PublishRefused::OverQuota) => return None,
                }
                if publish.qos == QoS::AtLeastOnce
                    && self
                        .queue(Packet::PubAck(PubAck::new(publish.pkid)))
                        .is_err()
                {
                    return Some(Close::ProtocolViolation);
                }
                self.request(client, &publish.topic, publish.payload).await
            }
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                for filter in &subscribe.filters {
                    match self.subscribe(client, &filter.path, &filter.path, filter.qos) {
                        Ok(qos) => codes.push(SubscribeReasonCode::Success(qos)),
                        Err(SubscribeRefused::FilterInvalid) => {
                            return Some(Close::ProtocolViolation);
                        }
                        // AWS closes an MQTT 3.1.1 connection on an unauthorized subscribe.
                        Err(SubscribeRefused::NotAuthorized) => {
                            return Some(Close::PolicyViolation);
                        }
                    }
                }
                let ack = Packet::SubAck(SubAck::new(subscribe.pkid, codes));
                self.queue(ack).err()
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.subscriptions
                    .retain(|(f, _)| !unsubscribe.topics.contains(f));
                let ack = Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid));
                self.queue(ack).err()
            }
            Packet::PingReq => self.queue(Packet::PingResp).err(),
            Packet::PubAck(_) => None,
            Packet::Disconnect => Some(Close::ClientDisconnect),
            // A second CONNECT, QoS 2 flow packets, or server-to-client packets.
            _ => Some(Close::ProtocolViolation),
        }
    }

    pub(super) fn queue_connack_v311(&mut self) -> Result<(), Close> {
        self.queue(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
    }

    /// 3.1.1 has no code for an exceeded CONNECT rate: that refusal queues nothing.
    pub(super) fn queue_connack_refused_v311(&mut self, refusal: Refusal) -> Result<(), Close> {
        let code = match refusal {
            Refusal::BadClientId => ConnectReturnCode::BadClientId,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
            Refusal::RateExceeded => return Ok(()),
        };
        self.queue(Packet::ConnAck(ConnAck::new(code, false)))
    }

    pub(super) fn queue_publish_v311(
        &mut self,
        topic: String,
        qos: QoS,
        pkid: u16,
        payload: Vec<u8>,
    ) -> Result<(), Close> {
        let mut publish = Publish::new(topic, qos, payload);
        publish.pkid = pkid;
        self.queue(Packet::Publish(publish))
    }

    /// Encode a packet behind those already queued; [`Self::flush`] sends them.
    fn queue(&mut self, packet: Packet) -> Result<(), Close> {
        packet
            .write(&mut self.wbuf, usize::MAX)
            .map_err(|_| Close::ProtocolViolation)?;
        Ok(())
    }
}
