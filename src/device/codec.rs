//! The two MQTT versions the lean client speaks, as one small trait: [`V311`] on rumqttc's
//! `mqttbytes` (v4) codec, [`V5`] on rumqttc's `v5::mqttbytes` codec.
//!
//! The session is generic over [`Codec`] and the driver picks the version once per flow, so each
//! version compiles to its own straight-line code: no trait object, no box, and the 3.1.1 path
//! encodes and decodes exactly as it did before MQTT 5 existed. The session reads packets through
//! [`View`], a borrowed, protocol-neutral look at the few fields it acts on.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self, QoS};
use rumqttc::v5::mqttbytes as mqttbytes5;
use rumqttc::v5::mqttbytes::v5 as p5;

/// Largest packet accepted from the endpoint (AWS's 128 KB payload limit plus headers).
pub(super) const MAX_PACKET: usize = 150 * 1024;

/// Why no packet could be taken from the read buffer.
pub(super) enum ReadError {
    /// The packet is incomplete: at least this many more bytes are needed.
    More(usize),
    /// The bytes are no valid packet.
    Malformed(String),
}

/// What the session needs to know of an incoming packet, whichever the version.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum View<'a> {
    /// `code`: 0 accepted; otherwise the 3.1.1 return code or the MQTT 5 reason code.
    ConnAck {
        code: u8,
        /// MQTT 5's Server Keep Alive, which the client must use instead of its own.
        server_keep_alive: Option<u16>,
    },
    /// `refused`: the first return/reason code of 0x80 or more, if any.
    SubAck {
        pkid: u16,
        refused: Option<u8>,
    },
    Publish {
        pkid: u16,
        qos1: bool,
        topic: &'a [u8],
        /// Topic and payload bytes: what AWS meters a PUBLISH on.
        metered_bytes: usize,
    },
    /// `reason`: 0 in 3.1.1 (no reason code); the MQTT 5 reason code.
    PubAck {
        pkid: u16,
        reason: u8,
    },
    UnsubAck {
        pkid: u16,
    },
    PingResp,
    /// MQTT 5: the endpoint is closing the connection, and says why.
    Disconnect {
        reason: u8,
    },
    Other,
}

/// One MQTT version's encoder and decoder, as the device's session uses them.
pub(super) trait Codec: Send + Sync + 'static {
    type Packet: std::fmt::Debug + Send;
    type Error: std::fmt::Display;

    fn connect(client_id: &str, keep_alive: u16, buf: &mut BytesMut) -> Result<usize, Self::Error>;
    fn subscribe(pkid: u16, filters: &[String], buf: &mut BytesMut) -> Result<usize, Self::Error>;
    fn unsubscribe(pkid: u16, filters: &[String], buf: &mut BytesMut)
    -> Result<usize, Self::Error>;
    /// A QoS 1 PUBLISH, without copying the payload into a `Vec` first.
    fn publish(
        topic: &str,
        pkid: u16,
        payload: &[u8],
        buf: &mut BytesMut,
    ) -> Result<usize, Self::Error>;
    fn puback(pkid: u16, buf: &mut BytesMut) -> Result<usize, Self::Error>;
    fn pingreq(buf: &mut BytesMut) -> Result<usize, Self::Error>;
    fn disconnect(buf: &mut BytesMut) -> Result<usize, Self::Error>;
    /// The next whole packet at the front of `buf` (taken out of it).
    fn read(buf: &mut BytesMut) -> Result<Self::Packet, ReadError>;
    fn view(packet: &Self::Packet) -> View<'_>;
    /// A PUBLISH's payload (empty for any other packet).
    fn into_payload(packet: Self::Packet) -> Bytes;
}

/// MQTT 3.1.1 with rumqttc's v4 codec.
pub(super) struct V311;

impl Codec for V311 {
    type Packet = rumqttc::Packet;
    type Error = mqttbytes::Error;

    fn connect(client_id: &str, keep_alive: u16, buf: &mut BytesMut) -> Result<usize, Self::Error> {
        let mut connect = rumqttc::Connect::new(client_id);
        connect.keep_alive = keep_alive;
        connect.clean_session = true;
        connect.write(buf)
    }

    fn subscribe(pkid: u16, filters: &[String], buf: &mut BytesMut) -> Result<usize, Self::Error> {
        let mut subscribe = rumqttc::Subscribe::new_many(
            filters
                .iter()
                .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
        );
        subscribe.pkid = pkid;
        subscribe.write(buf)
    }

    fn unsubscribe(
        pkid: u16,
        filters: &[String],
        buf: &mut BytesMut,
    ) -> Result<usize, Self::Error> {
        let unsubscribe = rumqttc::Unsubscribe {
            pkid,
            topics: filters.to_vec(),
        };
        unsubscribe.write(buf)
    }

    fn publish(
        topic: &str,
        pkid: u16,
        payload: &[u8],
        buf: &mut BytesMut,
    ) -> Result<usize, Self::Error> {
        let mut publish =
            rumqttc::Publish::from_bytes(topic, QoS::AtLeastOnce, Bytes::copy_from_slice(payload));
        publish.pkid = pkid;
        publish.write(buf)
    }

    fn puback(pkid: u16, buf: &mut BytesMut) -> Result<usize, Self::Error> {
        rumqttc::PubAck::new(pkid).write(buf)
    }

    fn pingreq(buf: &mut BytesMut) -> Result<usize, Self::Error> {
        rumqttc::PingReq.write(buf)
    }

    fn disconnect(buf: &mut BytesMut) -> Result<usize, Self::Error> {
        rumqttc::Disconnect.write(buf)
    }

    fn read(buf: &mut BytesMut) -> Result<Self::Packet, ReadError> {
        match rumqttc::Packet::read(buf, MAX_PACKET) {
            Ok(p) => Ok(p),
            Err(mqttbytes::Error::InsufficientBytes(n)) => Err(ReadError::More(n)),
            Err(e) => Err(ReadError::Malformed(e.to_string())),
        }
    }

    fn view(packet: &Self::Packet) -> View<'_> {
        use rumqttc::Packet;
        match packet {
            Packet::ConnAck(ack) => View::ConnAck {
                code: ack.code as u8,
                server_keep_alive: None,
            },
            Packet::SubAck(ack) => View::SubAck {
                pkid: ack.pkid,
                refused: ack
                    .return_codes
                    .contains(&rumqttc::SubscribeReasonCode::Failure)
                    .then_some(0x80),
            },
            Packet::Publish(p) => View::Publish {
                pkid: p.pkid,
                qos1: p.qos == QoS::AtLeastOnce,
                topic: p.topic.as_bytes(),
                metered_bytes: p.topic.len() + p.payload.len(),
            },
            Packet::PubAck(ack) => View::PubAck {
                pkid: ack.pkid,
                reason: 0,
            },
            Packet::UnsubAck(ack) => View::UnsubAck { pkid: ack.pkid },
            Packet::PingResp => View::PingResp,
            _ => View::Other,
        }
    }

    fn into_payload(packet: Self::Packet) -> Bytes {
        match packet {
            rumqttc::Packet::Publish(p) => p.payload,
            _ => Bytes::new(),
        }
    }
}

/// An MQTT 5 packet: decoded by rumqttc's v5 codec, or one of the short forms read here.
/// Transient (read, looked at, dropped before the session awaits again), so its size is no
/// per-device cost; boxing the codec's packet would cost an allocation per packet.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Packet5 {
    Codec(p5::Packet),
    /// A refusing CONNACK: its reason code. Read here because the codec refuses codes it does not
    /// know (a 3.1.1-only server answers an MQTT 5 CONNECT with the 3.1.1 code 0x01) and a
    /// refusal's properties are not needed.
    Refused(u8),
    /// A DISCONNECT's reason code. Read here because the codec refuses the short forms MQTT 5
    /// allows (no reason code at all meaning 0x00; a reason code without properties).
    Disconnect(u8),
}

/// MQTT 5 with rumqttc's v5 codec: clean start, no properties sent.
pub(super) struct V5;

impl Codec for V5 {
    type Packet = Packet5;
    type Error = mqttbytes5::Error;

    fn connect(client_id: &str, keep_alive: u16, buf: &mut BytesMut) -> Result<usize, Self::Error> {
        let connect = p5::Connect {
            keep_alive,
            client_id: client_id.to_string(),
            clean_start: true,
            properties: None,
        };
        connect.write(&None, &None, buf)
    }

    fn subscribe(pkid: u16, filters: &[String], buf: &mut BytesMut) -> Result<usize, Self::Error> {
        let mut subscribe = p5::Subscribe::new_many(
            filters
                .iter()
                .map(|f| p5::Filter::new(f.clone(), mqttbytes5::QoS::AtLeastOnce)),
            None,
        );
        subscribe.pkid = pkid;
        subscribe.write(buf)
    }

    fn unsubscribe(
        pkid: u16,
        filters: &[String],
        buf: &mut BytesMut,
    ) -> Result<usize, Self::Error> {
        let unsubscribe = p5::Unsubscribe {
            pkid,
            filters: filters.to_vec(),
            properties: None,
        };
        unsubscribe.write(buf)
    }

    fn publish(
        topic: &str,
        pkid: u16,
        payload: &[u8],
        buf: &mut BytesMut,
    ) -> Result<usize, Self::Error> {
        let publish = p5::Publish {
            qos: mqttbytes5::QoS::AtLeastOnce,
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            pkid,
            payload: Bytes::copy_from_slice(payload),
            ..Default::default()
        };
        publish.write(buf)
    }

    fn puback(pkid: u16, buf: &mut BytesMut) -> Result<usize, Self::Error> {
        p5::PubAck::new(pkid, None).write(buf)
    }

    fn pingreq(buf: &mut BytesMut) -> Result<usize, Self::Error> {
        p5::PingReq::write(buf)
    }

    fn disconnect(buf: &mut BytesMut) -> Result<usize, Self::Error> {
        p5::Disconnect::new(p5::DisconnectReasonCode::NormalDisconnection).write(buf)
    }

    fn read(buf: &mut BytesMut) -> Result<Self::Packet, ReadError> {
        let max = Some(MAX_PACKET as u32);
        let frame = match p5::check(buf.iter(), max) {
            Ok(header) => header.frame_length(),
            Err(mqttbytes5::Error::InsufficientBytes(n)) => return Err(ReadError::More(n)),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        };
        match buf[0] {
            // CONNACK: acknowledge flags, then the reason code.
            0x20 => {
                let code = body(&buf[..frame]).get(1).copied();
                match code {
                    Some(0) => {}
                    Some(code) => {
                        let _ = buf.split_to(frame);
                        return Ok(Packet5::Refused(code));
                    }
                    None => return Err(ReadError::Malformed("CONNACK too short".into())),
                }
            }
            0xE0 => {
                let reason = body(&buf[..frame]).first().copied().unwrap_or(0);
                let _ = buf.split_to(frame);
                return Ok(Packet5::Disconnect(reason));
            }
            _ => {}
        }
        // The whole frame is in `buf` (checked above): any error now is a malformed packet.
        p5::Packet::read(buf, max)
            .map(Packet5::Codec)
            .map_err(|e| ReadError::Malformed(e.to_string()))
    }

    fn view(packet: &Self::Packet) -> View<'_> {
        use p5::Packet;
        let packet = match packet {
            Packet5::Refused(code) => {
                return View::ConnAck {
                    code: *code,
                    server_keep_alive: None,
                };
            }
            Packet5::Disconnect(reason) => return View::Disconnect { reason: *reason },
            Packet5::Codec(p) => p,
        };
        match packet {
            // Refusals never reach the codec (`read`): a decoded CONNACK accepted.
            Packet::ConnAck(ack) => View::ConnAck {
                code: 0,
                server_keep_alive: ack.properties.as_ref().and_then(|p| p.server_keep_alive),
            },
            Packet::SubAck(ack) => View::SubAck {
                pkid: ack.pkid,
                refused: ack
                    .return_codes
                    .iter()
                    .map(|c| suback_code(*c))
                    .find(|c| *c >= 0x80),
            },
            Packet::Publish(p) => View::Publish {
                pkid: p.pkid,
                qos1: p.qos == mqttbytes5::QoS::AtLeastOnce,
                topic: &p.topic,
                metered_bytes: p.topic.len() + p.payload.len(),
            },
            Packet::PubAck(ack) => View::PubAck {
                pkid: ack.pkid,
                reason: puback_code(ack.reason),
            },
            Packet::UnsubAck(ack) => View::UnsubAck { pkid: ack.pkid },
            Packet::PingResp(_) => View::PingResp,
            Packet::Disconnect(d) => View::Disconnect {
                reason: d.reason_code as u8,
            },
            _ => View::Other,
        }
    }

    fn into_payload(packet: Self::Packet) -> Bytes {
        match packet {
            Packet5::Codec(p5::Packet::Publish(p)) => p.payload,
            _ => Bytes::new(),
        }
    }
}

/// A whole frame's variable header and payload: after the type byte and the remaining length
/// (1 to 4 bytes, the last without the continuation bit).
fn body(frame: &[u8]) -> &[u8] {
    let length_bytes = frame[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(frame.len(), |i| i + 1);
    frame.get(1 + length_bytes..).unwrap_or_default()
}

/// The SUBACK reason code on the wire (rumqttc keeps its own mapping private).
fn suback_code(code: p5::SubscribeReasonCode) -> u8 {
    use p5::SubscribeReasonCode as C;
    match code {
        C::Success(qos) => qos as u8,
        C::Failure | C::Unspecified => 0x80,
        C::ImplementationSpecific => 0x83,
        C::NotAuthorized => 0x87,
        C::TopicFilterInvalid => 0x8F,
        C::PkidInUse => 0x91,
        C::QuotaExceeded => 0x97,
        C::SharedSubscriptionsNotSupported => 0x9E,
        C::SubscriptionIdNotSupported => 0xA1,
        C::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

/// The PUBACK reason code on the wire (rumqttc keeps its own mapping private).
fn puback_code(reason: p5::PubAckReason) -> u8 {
    use p5::PubAckReason as R;
    match reason {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

/// The MQTT 5 specification's name of a reason code (§2.4; the same code means the same thing in
/// every packet that carries one), for failure details.
pub(super) fn reason_name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription Identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "unknown reason code",
    }
}

/// The MQTT 3.1.1 CONNACK return code's name (rumqttc's), for failure details.
pub(super) fn return_code_name(code: u8) -> &'static str {
    match code {
        0 => "Success",
        1 => "RefusedProtocolVersion",
        2 => "BadClientId",
        3 => "ServiceUnavailable",
        4 => "BadUserNamePassword",
        5 => "NotAuthorized",
        _ => "unknown return code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read5(bytes: &[u8]) -> Result<Packet5, ReadError> {
        V5::read(&mut BytesMut::from(bytes))
    }

    fn view5(bytes: &[u8]) -> String {
        match read5(bytes) {
            Ok(p) => format!("{:?}", V5::view(&p)),
            Err(ReadError::More(n)) => format!("more {n}"),
            Err(ReadError::Malformed(m)) => format!("malformed {m}"),
        }
    }

    #[test]
    fn mqtt5_connacks_give_their_reason_code_even_one_the_codec_does_not_know() {
        // Accepted, with Server Keep Alive 60 (property 0x13).
        assert_eq!(
            view5(&[0x20, 0x06, 0x00, 0x00, 0x03, 0x13, 0x00, 0x3C]),
            "ConnAck { code: 0, server_keep_alive: Some(60) }"
        );
        // 0x87 Not authorized, with an empty property block.
        assert_eq!(
            view5(&[0x20, 0x03, 0x00, 0x87, 0x00]),
            "ConnAck { code: 135, server_keep_alive: None }"
        );
        // A 3.1.1 server refusing protocol level 5: 0x01, no properties.
        assert_eq!(
            view5(&[0x20, 0x02, 0x00, 0x01]),
            "ConnAck { code: 1, server_keep_alive: None }"
        );
        assert_eq!(view5(&[0x20, 0x01, 0x00]), "malformed CONNACK too short");
    }

    #[test]
    fn mqtt5_disconnects_in_every_length_form_give_their_reason_code() {
        assert_eq!(view5(&[0xE0, 0x00]), "Disconnect { reason: 0 }");
        assert_eq!(view5(&[0xE0, 0x01, 0x97]), "Disconnect { reason: 151 }");
        assert_eq!(
            view5(&[0xE0, 0x02, 0x8E, 0x00]),
            "Disconnect { reason: 142 }"
        );
        assert_eq!(view5(&[0xE0, 0x02, 0x8E]), "more 1");
    }

    #[test]
    fn mqtt5_acks_give_their_reason_codes() {
        // SUBACK pkid 7, no properties, codes 1, 0x87.
        assert_eq!(
            view5(&[0x90, 0x05, 0x00, 0x07, 0x00, 0x01, 0x87]),
            "SubAck { pkid: 7, refused: Some(135) }"
        );
        assert_eq!(
            view5(&[0x90, 0x04, 0x00, 0x07, 0x00, 0x01]),
            "SubAck { pkid: 7, refused: None }"
        );
        // PUBACK pkid 3: the short form (success), and 0x97 with no properties.
        assert_eq!(
            view5(&[0x40, 0x02, 0x00, 0x03]),
            "PubAck { pkid: 3, reason: 0 }"
        );
        assert_eq!(
            view5(&[0x40, 0x03, 0x00, 0x03, 0x97]),
            "PubAck { pkid: 3, reason: 151 }"
        );
    }

    #[test]
    fn what_mqtt5_writes_mqtt5_reads() {
        let mut buf = BytesMut::new();
        V5::publish("a/b", 9, b"xyz", &mut buf).unwrap();
        V5::pingreq(&mut buf).unwrap();
        let publish = V5::read(&mut buf).ok().unwrap();
        assert_eq!(
            V5::view(&publish),
            View::Publish {
                pkid: 9,
                qos1: true,
                topic: b"a/b",
                metered_bytes: 6,
            }
        );
        assert_eq!(&V5::into_payload(publish)[..], b"xyz");
        // PINGREQ is a client packet: the session ignores it, the codec still frames it.
        assert_eq!(V5::view(&V5::read(&mut buf).ok().unwrap()), View::Other);
        assert!(buf.is_empty());
        V5::disconnect(&mut buf).unwrap();
        assert_eq!(&buf[..], [0xE0, 0x00]);
    }

    #[test]
    fn unsubscribes_are_encoded_by_rumqttc_and_unsubacks_read_in_both_versions() {
        let filters = ["a/accepted".to_string(), "a/rejected".to_string()];
        let mut buf = BytesMut::new();
        V311::unsubscribe(4, &filters, &mut buf).unwrap();
        assert_eq!(buf[0], 0xA2, "UNSUBSCRIBE with its reserved flags");
        let mut buf = BytesMut::new();
        V5::unsubscribe(4, &filters, &mut buf).unwrap();
        assert_eq!(buf[0], 0xA2);
        let ack = V311::read(&mut BytesMut::from(&[0xB0, 0x02, 0x00, 0x04][..])).ok();
        assert_eq!(V311::view(&ack.unwrap()), View::UnsubAck { pkid: 4 });
        // MQTT 5: pkid, no properties, one reason code per filter.
        assert_eq!(
            view5(&[0xB0, 0x05, 0x00, 0x04, 0x00, 0x00, 0x00]),
            "UnsubAck { pkid: 4 }"
        );
    }

    #[test]
    fn reason_codes_have_the_specifications_names() {
        assert_eq!(reason_name(0x97), "Quota exceeded");
        assert_eq!(reason_name(0x9F), "Connection rate exceeded");
        assert_eq!(return_code_name(5), "NotAuthorized");
    }
}
