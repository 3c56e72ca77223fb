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

use super::Endpoint;
use super::classify::{Failure, FailureReason, handshake_failure, io_reason};
use super::codec::{Codec, ReadError, View, reason_name};
use super::profile::KeepAlive;
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
                pkid, qos1: true, ..
            } => {
                self.queue(|buf| P::puback(pkid, buf), stage)?;
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
mod tests {
    use std::collections::BTreeMap;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::device::codec::{V5, V311};
    use crate::device::{
        After, AfterAction, CertificateMode, DeviceSpec, DeviceTls, Format, Handles, Profile,
        Protocol, Provisioned, provision,
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
}
