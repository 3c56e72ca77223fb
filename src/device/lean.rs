//! The device's MQTT client, hand-written over tokio-rustls with rumqttc's codecs (`mqttbytes`
//! for 3.1.1, `v5::mqttbytes` for MQTT 5: the same packet encoding and decoding rumqttc uses),
//! one session type generic over the version ([`Codec`]).
//!
//! Why not rumqttc's client: the own-identity session may stay connected for hours on thousands
//! of devices, and rumqttc allocates ~24 KB per connection that cannot be configured (two 8 KB
//! codec buffers and an 8 KB table of QoS 2 packet IDs), plus a request channel and event queue;
//! on the claim connection the same allocations (zeroed) cost CPU on every flow. A device only
//! needs clean sessions at QoS 0/1: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PUBACK, PINGREQ and
//! DISCONNECT out; CONNACK, SUBACK, UNSUBACK, PUBLISH, PUBACK and PINGRESP (and MQTT 5's
//! DISCONNECT) in. Its buffers
//! start at a few dozen bytes and grow only when a bigger packet arrives.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::classify::{Failure, FailureReason, handshake_failure, io_reason};
use super::codec::{Codec, ReadError, View, reason_name};
use super::profile::KeepAlive;
use super::{Endpoint, connection_minutes, message_units};
use crate::stage::Stage;

/// Read room kept free before each read: CONNACK, PINGRESP and PUBACK are 2–4 bytes.
const READ_ROOM: usize = 64;

/// How a connection attempt ended, short of a transport failure. Returned once per connection
/// and moved straight into the driver's slot: boxing the session would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Connected<P: Codec> {
    Accepted(Session<P>),
    /// The CONNACK's code: 3.1.1 return code or MQTT 5 reason code.
    Refused(u8),
    TimedOut,
}

/// One connected MQTT session (version `P`) with clean session/start, QoS 0/1 only.
pub(super) struct Session<P: Codec> {
    stream: TlsStream<TcpStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    keep_alive: Duration,
    /// How long a PINGREQ may stay unanswered.
    ping_timeout: Duration,
    /// When the next PINGREQ is due (keep-alive after the last packet sent).
    next_ping: Instant,
    /// A PINGREQ is unanswered: its PINGRESP is due by then.
    pong_due: Option<Instant>,
    next_pkid: u16,
    /// CONNACK accepted: from then on a TLS error is a lost connection, not a handshake failure.
    connected: bool,
    /// PINGRESPs received (tests read it).
    pub(super) pongs: u64,
    /// Messages AWS meters on this connection so far ([`super::message_units`] each).
    metered: u32,
    /// When the CONNACK accepted the connection: its connection-minutes run from then.
    since: Instant,
    codec: PhantomData<P>,
}

impl<P: Codec> Session<P> {
    /// TCP connect, TLS handshake, CONNECT and CONNACK, all by `deadline`.
    pub(super) async fn connect(
        endpoint: &Endpoint,
        client_id: &str,
        tls: Arc<rustls::ClientConfig>,
        stage: Stage,
        deadline: Instant,
        keep_alive: KeepAlive,
    ) -> Result<Connected<P>, Failure> {
        tokio::time::timeout_at(
            deadline.into(),
            Self::connect_inner(endpoint, client_id, tls, stage, keep_alive),
        )
        .await
        .unwrap_or(Ok(Connected::TimedOut))
    }

    async fn connect_inner(
        endpoint: &Endpoint,
        client_id: &str,
        tls: Arc<rustls::ClientConfig>,
        stage: Stage,
        keep_alive: KeepAlive,
    ) -> Result<Connected<P>, Failure> {
        let tcp = tcp_connect(endpoint, stage).await?;
        // Without TCP_NODELAY a small packet can wait out Nagle against delayed ACKs (~40 ms).
        tcp.set_nodelay(true)
            .map_err(|e| Failure::new(FailureReason::Local(stage), e.to_string()))?;
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
            Failure::new(
                FailureReason::TlsHandshake(stage, "config".into()),
                e.to_string(),
            )
        })?;
        let mut packet = BytesMut::new();
        let seconds = u16::try_from(keep_alive.interval.as_secs()).unwrap_or(u16::MAX);
        P::connect(client_id, seconds, &mut packet)
            .map_err(|e| Failure::new(FailureReason::Local(stage), e.to_string()))?;
        let packet_len = packet.len();
        // The CONNECT waits in rustls until the handshake completes and leaves with the client's
        // Finished in one write (TLS 1.3 lets the client send data right after its Finished):
        // one write and one wake-up fewer on each side, and no extra round trip.
        let mut queued = Ok(());
        let stream = TlsConnector::from(tls)
            .connect_with(name, tcp, |conn| {
                queued = io::Write::write_all(&mut conn.writer(), &packet);
            })
            .await
            .map_err(|e| handshake_failure(stage, e))?;
        queued.map_err(|e| Failure::new(FailureReason::Local(stage), e.to_string()))?;
        let mut session = Session {
            stream,
            rbuf: BytesMut::with_capacity(READ_ROOM),
            wbuf: BytesMut::new(),
            keep_alive: keep_alive.interval,
            ping_timeout: keep_alive.ping_timeout,
            next_ping: Instant::now() + keep_alive.interval,
            pong_due: None,
            next_pkid: 0,
            connected: false,
            pongs: 0,
            metered: 0,
            since: Instant::now(),
            codec: PhantomData,
        };
        // Only a CONNACK may come first (or MQTT 5's DISCONNECT); with TLS 1.3 a refused client
        // certificate surfaces here, as an alert on the first read.
        let packet = session.read_packet(stage).await?;
        match P::view(&packet) {
            View::ConnAck {
                code: 0,
                server_keep_alive,
            } => {
                // MQTT 5: a Server Keep Alive replaces the client's (0 turns pings off; pinging
                // anyway is harmless, so only a positive value is taken).
                if let Some(seconds) = server_keep_alive.filter(|s| *s > 0) {
                    session.keep_alive = Duration::from_secs(seconds.into());
                    session.next_ping = Instant::now() + session.keep_alive;
                }
                session.connected = true;
                // The CONNECT is metered by its size (no Will here); the CONNACK is not.
                session.metered = message_units(packet_len);
                session.since = Instant::now();
                Ok(Connected::Accepted(session))
            }
            View::ConnAck { code, .. } => Ok(Connected::Refused(code)),
            View::Disconnect { reason } => Err(disconnected_by(stage, reason)),
            _ => Err(Failure::new(
                FailureReason::Disconnected(stage),
                format!("expected CONNACK, got {packet:?}"),
            )),
        }
    }

    /// Subscribe to `filters` at QoS 1 and wait for the SUBACK until `deadline`: `Some` with its
    /// first failure code (`None` when every filter was granted), or `None` when none came.
    pub(super) async fn subscribe(
        &mut self,
        filters: &[String],
        deadline: Instant,
        stage: Stage,
    ) -> Result<Option<Option<u8>>, Failure> {
        let pkid = self.pkid();
        self.send(|buf| P::subscribe(pkid, filters, buf), stage)
            .await?;
        // Metered on the size of its topic filters.
        self.meter(filters.iter().map(String::len).sum());
        let ack = self
            .wait(
                deadline,
                stage,
                |p| matches!(p, View::SubAck { pkid: id, .. } if *id == pkid),
            )
            .await?;
        Ok(ack.map(|ack| match P::view(&ack) {
            View::SubAck { refused, .. } => refused,
            _ => unreachable!("only a SUBACK is awaited"),
        }))
    }

    /// Unsubscribe from `filters` and wait for the UNSUBACK until `deadline` (`false`: none
    /// came).
    pub(super) async fn unsubscribe(
        &mut self,
        filters: &[String],
        deadline: Instant,
        stage: Stage,
    ) -> Result<bool, Failure> {
        let pkid = self.pkid();
        self.send(|buf| P::unsubscribe(pkid, filters, buf), stage)
            .await?;
        let ack = self
            .wait(
                deadline,
                stage,
                |p| matches!(p, View::UnsubAck { pkid: id } if *id == pkid),
            )
            .await?;
        Ok(ack.is_some())
    }

    /// Publish a request at QoS 1 and wait until `deadline` for a PUBLISH on one of `topics`
    /// (and, when `await_puback`, for the request's PUBACK too, in either order); returns which
    /// topic (its index) and the payload, or `None` when they did not come.
    pub(super) async fn request(
        &mut self,
        topic: &str,
        payload: &[u8],
        topics: [&str; 2],
        deadline: Instant,
        stage: Stage,
        await_puback: bool,
    ) -> Result<Option<(usize, Bytes)>, Failure> {
        let pkid = self.pkid();
        self.send(|buf| P::publish(topic, pkid, payload, buf), stage)
            .await?;
        self.meter(topic.len() + payload.len());
        let mut acked = !await_puback;
        let mut response = None;
        loop {
            if acked && response.is_some() {
                return Ok(response);
            }
            let waiting = response.is_none();
            let got = self
                .wait(deadline, stage, |p| match p {
                    View::Publish { topic, .. } => {
                        waiting && topics.iter().any(|t| t.as_bytes() == *topic)
                    }
                    View::PubAck { pkid: id, .. } => !acked && *id == pkid,
                    _ => false,
                })
                .await?;
            let Some(p) = got else { return Ok(None) };
            let index = match P::view(&p) {
                View::Publish { topic, .. } => usize::from(topic != topics[0].as_bytes()),
                _ => {
                    acked = true;
                    continue;
                }
            };
            response = Some((index, P::into_payload(p)));
        }
    }

    /// Count one metered message of `bytes` (topic and payload, or topic filters).
    fn meter(&mut self, bytes: usize) {
        self.metered = self.metered.saturating_add(message_units(bytes));
    }

    /// What AWS meters this connection as if it ends `now`: (messages, connection-minutes).
    pub(super) fn metered(&self, now: Instant) -> (u32, u32) {
        let up = now.saturating_duration_since(self.since);
        (self.metered, connection_minutes(up))
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Stay connected, answering keep-alives, until `until`.
    pub(super) async fn idle(&mut self, until: Instant, stage: Stage) -> Result<(), Failure> {
        match self.wait(until, stage, |_| false).await? {
            None => Ok(()),
            Some(_) => unreachable!("no packet is awaited"),
        }
    }

    /// Publish at QoS 1 and wait (keeping the session alive) for its PUBACK until `deadline`:
    /// its reason code (always 0 in 3.1.1), or `None` when none came.
    pub(super) async fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        deadline: Instant,
        stage: Stage,
    ) -> Result<Option<u8>, Failure> {
        let pkid = self.pkid();
        self.send(|buf| P::publish(topic, pkid, payload, buf), stage)
            .await?;
        self.meter(topic.len() + payload.len());
        let acked = self
            .wait(
                deadline,
                stage,
                |p| matches!(p, View::PubAck { pkid: id, .. } if *id == pkid),
            )
            .await?;
        Ok(acked.map(|ack| match P::view(&ack) {
            View::PubAck { reason, .. } => reason,
            _ => unreachable!("only a PUBACK is awaited"),
        }))
    }

    /// Send DISCONNECT (the MQTT goodbye; the TCP close follows), bounded by one second.
    pub(super) async fn disconnect(mut self) {
        let bye = self.send(P::disconnect, Stage::ConnectDevice);
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }

    /// Read packets, answering keep-alive duties, until one matches `want` (returned) or
    /// `until` passes (`None`).
    async fn wait(
        &mut self,
        until: Instant,
        stage: Stage,
        want: impl Fn(&View<'_>) -> bool,
    ) -> Result<Option<P::Packet>, Failure> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            if let Some(due) = self.pong_due
                && now >= due
            {
                return Err(Failure::new(
                    FailureReason::Timeout(stage),
                    format!(
                        "no PINGRESP within the ping timeout ({} ms)",
                        self.ping_timeout.as_millis()
                    ),
                ));
            }
            if self.pong_due.is_none() && now >= self.next_ping {
                self.send(P::pingreq, stage).await?;
                self.pong_due = Some(Instant::now() + self.ping_timeout);
            }
            let wake = until.min(self.pong_due.unwrap_or(self.next_ping));
            // `read_packet` keeps partial input in `rbuf`, so a timeout loses nothing.
            let packet = match tokio::time::timeout_at(wake.into(), self.read_packet(stage)).await {
                Err(_) => continue,
                Ok(r) => r?,
            };
            if let Some(wanted) = self.take(packet, stage, &want)? {
                // A queued PUBACK goes out with the caller's next packet (the next request, or
                // DISCONNECT), or with a keep-alive ping: one write instead of two.
                return Ok(Some(wanted));
            }
            self.send(|_| Ok(0), stage).await?;
        }
    }

    /// Do a packet's keep-alive duties; the packet back when `want` matches it. Synchronous, so
    /// that no packet is held across the next await (an MQTT 5 packet is a few hundred bytes:
    /// the future of every waiting device would carry it).
    fn take(
        &mut self,
        packet: P::Packet,
        stage: Stage,
        want: &impl Fn(&View<'_>) -> bool,
    ) -> Result<Option<P::Packet>, Failure> {
        let view = P::view(&packet);
        match view {
            View::PingResp => {
                self.pong_due = None;
                self.pongs += 1;
            }
            View::Publish {
                pkid,
                qos1,
                metered_bytes,
                ..
            } => {
                // A PUBLISH the endpoint sends is metered; so is the device's PUBACK of it
                // (3.1.1: as one 5 KB message; MQTT 5: by its size, which is below that).
                self.meter(metered_bytes);
                if qos1 {
                    self.queue(|buf| P::puback(pkid, buf), stage)?;
                    self.meter(0);
                }
            }
            View::Disconnect { reason } => return Err(disconnected_by(stage, reason)),
            _ => {}
        }
        Ok(want(&view).then_some(packet))
    }

    /// The next whole packet, reading more input as needed.
    async fn read_packet(&mut self, stage: Stage) -> Result<P::Packet, Failure> {
        loop {
            match P::read(&mut self.rbuf) {
                Ok(p) => return Ok(p),
                Err(ReadError::More(n)) => {
                    self.rbuf.reserve(n.max(READ_ROOM));
                    match self.stream.read_buf(&mut self.rbuf).await {
                        Ok(0) => {
                            return Err(Failure::new(
                                FailureReason::Disconnected(stage),
                                "connection closed by the endpoint",
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.io_failure(stage, e)),
                    }
                }
                Err(ReadError::Malformed(e)) => {
                    return Err(Failure::new(
                        FailureReason::Disconnected(stage),
                        format!("malformed packet: {e}"),
                    ));
                }
            }
        }
    }

    /// Before CONNACK, a TLS error is a handshake failure: with TLS 1.3 a refused client
    /// certificate arrives as an alert on the first read.
    fn io_failure(&self, stage: Stage, e: io::Error) -> Failure {
        if self.connected {
            Failure::new(io_reason(stage, e.kind()), e.to_string())
        } else {
            handshake_failure(stage, e)
        }
    }

    /// Encode one packet behind those queued.
    fn queue(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<usize, P::Error>,
        stage: Stage,
    ) -> Result<(), Failure> {
        encode(&mut self.wbuf)
            .map(drop)
            .map_err(|e| Failure::new(FailureReason::Local(stage), e.to_string()))
    }

    /// Encode one packet and write it with any queued ones in one go (one TLS record).
    async fn send(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<usize, P::Error>,
        stage: Stage,
    ) -> Result<(), Failure> {
        self.queue(encode, stage)?;
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| self.io_failure(stage, e))?;
        self.stream
            .flush()
            .await
            .map_err(|e| self.io_failure(stage, e))?;
        self.wbuf.clear();
        self.next_ping = Instant::now() + self.keep_alive;
        Ok(())
    }
}

/// TCP to the endpoint. The host is resolved first, on its own, so that a name that does not
/// resolve is told apart (`dns.<stage>`) from an endpoint that does not answer; an IP address
/// resolves to itself without a lookup, as in `TcpStream::connect`.
async fn tcp_connect(endpoint: &Endpoint, stage: Stage) -> Result<TcpStream, Failure> {
    let host = endpoint.host.as_str();
    let dns = |detail: String| Failure::new(FailureReason::Dns(stage), detail);
    let addresses = tokio::net::lookup_host((host, endpoint.port))
        .await
        .map_err(|e| dns(format!("{host}: {e}")))?;
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => Failure::new(io_reason(stage, e.kind()), e.to_string()),
        None => dns(format!("{host}: no address")),
    })
}

/// MQTT 5: the endpoint said why it closes the connection.
fn disconnected_by(stage: Stage, reason: u8) -> Failure {
    Failure::new(
        FailureReason::DisconnectedBy(stage, reason),
        format!("DISCONNECT {reason:#04x} {}", reason_name(reason)),
    )
}

#[cfg(test)]
mod tests;
