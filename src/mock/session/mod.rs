//! One client connection: TLS, the MQTT session, authorization, and delivery of API responses
//! to this connection only. Written once for both protocols: the codecs (`v311`: MQTT 3.1.1, `v5`:
//! MQTT 5) decode a packet, call the neutral steps here, and encode what those steps answer.

mod v311;
mod v5;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::State;
use super::provisioning::{self, Job, Requester, Response};
use super::registry::Identity;
use crate::iot::policy::{self, Action, PolicyVars};
use crate::pki::certificate_id;
use crate::protocol::{MAX_PAYLOAD_BYTES, RequestTopic};

/// Largest MQTT frame read: the 128 KB payload limit plus room for the topic and headers.
/// Anything larger is refused before it is buffered.
const MAX_FRAME: usize = MAX_PAYLOAD_BYTES + 1024;
/// Read room for the CONNECT (client ID, and for SDKs a username with metrics).
const READ_CHUNK: usize = 1024;
/// Read room kept free while a session waits for its next packet: small, since an idle
/// connection keeps its buffer (a PINGREQ is 2 bytes); a packet whose header says it is larger
/// reserves its whole size.
const IDLE_ROOM: usize = 64;
/// Longest client ID AWS accepts, in bytes.
const MAX_CLIENT_ID: usize = 128;

/// An open MQTT session, by client ID in [`State::sessions`].
pub(super) struct OpenSession {
    /// The connection's number (a newer connection with the client ID replaces the entry).
    pub(super) number: u64,
    /// The certificate it authenticated with.
    pub(super) certificate_id: String,
    /// Cancelled when a newer connection takes the client ID over.
    pub(super) kicked: CancellationToken,
    /// Cancelled when its certificate stops being ACTIVE (UpdateCertificate).
    pub(super) deactivated: CancellationToken,
}

impl super::State {
    /// Close every open session that authenticated with `certificate_id`, as AWS does "within a
    /// few minutes of updating a certificate from the ACTIVE state to any other state" (the
    /// UpdateCertificate API reference; the mock closes them at once). Returns how many.
    pub(crate) fn close_sessions_of(&self, certificate_id: &str) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .values()
            .filter(|s| s.certificate_id == certificate_id)
            .map(|s| s.deactivated.cancel())
            .count()
    }
}

/// Why a session ended (for logs and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    ClientDisconnect,
    Eof,
    Io,
    Malformed,
    PolicyViolation,
    ProtocolViolation,
    KeepAlive,
    TakenOver,
    /// Its certificate was set INACTIVE or REVOKED (UpdateCertificate).
    CertificateNotActive,
    Shutdown,
    /// Injected fault.
    Fault,
    /// Over the CONNECT quota.
    Throttled,
    /// A PUBLISH over 128 KB (or a frame over [`MAX_FRAME`], MQTT 5).
    PacketTooLarge,
    /// MQTT 5: a PUBLISH topic that is not a valid topic name.
    TopicInvalid,
    /// MQTT 5: over the per-connection publish quota, with `publish_over_quota = "disconnect"`.
    QuotaExceeded,
    /// MQTT 5: a QoS 2 PUBLISH after the CONNACK said Maximum QoS 1.
    QosNotSupported,
    /// MQTT 5: a topic alias of 0, over the maximum, or not set yet.
    TopicAliasInvalid,
    /// MQTT 5: a SUBSCRIBE with a subscription identifier, which the CONNACK said is not available.
    SubscriptionIdsNotSupported,
}

impl Close {
    fn is_protocol_error(self) -> bool {
        matches!(
            self,
            Close::Malformed
                | Close::ProtocolViolation
                | Close::PacketTooLarge
                | Close::TopicInvalid
                | Close::QosNotSupported
                | Close::TopicAliasInvalid
                | Close::SubscriptionIdsNotSupported
        )
    }
}

/// The codec a connection speaks, chosen by its CONNECT's protocol level.
enum Proto {
    V311,
    V5(Box<v5::Session>),
}

/// A decoded CONNECT: what the neutral checks need.
struct Hello {
    client_id: String,
    keep_alive: u16,
    proto: Proto,
}

/// Why a CONNECT is refused; each codec has its own code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadClientId,
    NotAuthorized,
    /// Over the CONNECT rate (MQTT 3.1.1 gets no CONNACK, only the close).
    RateExceeded,
}

/// What the neutral PUBLISH checks found; the codec decides how that is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishRefused {
    TopicInvalid,
    NotAuthorized,
    OverQuota,
}

/// What the neutral SUBSCRIBE checks found for one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscribeRefused {
    FilterInvalid,
    NotAuthorized,
}

/// One step of the read loop: a packet handled, more bytes needed, or the end.
enum Step {
    Handled,
    Need(usize),
    Close(Close),
}

struct ActiveGuard(Arc<State>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.send_modify(|a| *a = a.saturating_sub(1));
    }
}

pub(super) async fn run(
    state: Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    state.stats.connections.fetch_add(1, Ordering::Relaxed);
    state.active.send_modify(|a| *a += 1);
    let _guard = ActiveGuard(state.clone());
    let number = state.next_connection.fetch_add(1, Ordering::Relaxed);

    let faults = &state.settings.faults;
    if faults.tls_stall_rate > 0.0
        && rand::RngExt::random::<f64>(&mut faults.rng(number)) < faults.tls_stall_rate
    {
        // Injected fault: accept the TCP connection and never answer the handshake.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(state.settings.handshake_timeout) => {}
        }
        drop(tcp);
        return;
    }
    let accept = tokio::time::timeout(state.settings.handshake_timeout, state.tls.accept(tcp));
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = accept => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                state.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                state.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        }
    };
    let session = tls.get_ref().1;
    let Some(cert_id) = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| certificate_id(c.as_ref()))
    else {
        // The verifier requires a client certificate, so this cannot happen; refuse anyway.
        state.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    debug!(
        %peer,
        sni = session.server_name().unwrap_or("-"),
        alpn = session.alpn_protocol().map(String::from_utf8_lossy).as_deref().unwrap_or("-"),
        "TLS established"
    );
    let mut conn = Connection::new(state.clone(), tls, peer, number);
    let close = conn.serve(cert_id, shutdown).await;
    if close.is_protocol_error() {
        state.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
    } else if close == Close::PolicyViolation {
        state
            .stats
            .policy_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }
    // Whatever was queued before the close (a PUBACK, a response) goes out first. A client that
    // said goodbye (DISCONNECT or EOF) gets no TLS close_notify: the TCP close is enough, and a
    // write fewer per connection.
    let bye = async {
        let _ = conn.flush().await;
        if !matches!(close, Close::ClientDisconnect | Close::Eof) {
            let _ = conn.wr.shutdown().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
}

struct Connection<S> {
    state: Arc<State>,
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    peer: SocketAddr,
    number: u64,
    /// Set from the CONNECT; [`Proto::V311`] until then.
    proto: Proto,
    next_pkid: u16,
    subscriptions: Vec<(String, QoS)>,
    /// Publishes over this connection's quota are discarded, as AWS does.
    publish_quota: Option<super::quotas::TokenBucket>,
    /// The provisioning worker, started by the first API request: connections that never make
    /// one (devices connected with their own certificate) hold no task and no channels.
    worker: Option<Worker>,
}

/// This connection's provisioning worker: requests in, responses out. It outlives the
/// connection: a request the broker accepted is completed, as AWS completes it, when its device
/// has disconnected meanwhile (a RegisterThing whose hook is slower than the device waits still
/// registers the thing; nobody learns of its certificate). The mock waits for it when it stops.
struct Worker {
    jobs: mpsc::Sender<Job>,
    responses: mpsc::Receiver<Response>,
}

impl Worker {
    fn start(state: &Arc<State>, client: &Client, connection: u64) -> Worker {
        let (jobs, job_rx) = mpsc::channel(16);
        let (out_tx, responses) = mpsc::channel::<Response>(16);
        state.workers.spawn(provisioning::worker(
            state.clone(),
            client.client_id.clone(),
            client.identity.certificate_id.clone(),
            connection,
            job_rx,
            out_tx,
        ));
        Worker { jobs, responses }
    }
}

/// The worker's next response; pending forever while no worker runs.
async fn next_response(worker: &mut Option<Worker>) -> Option<Response> {
    match worker {
        Some(w) => w.responses.recv().await,
        None => std::future::pending().await,
    }
}

/// A client that has connected: who it is and what it may do.
struct Client {
    client_id: String,
    identity: Identity,
}

impl Client {
    fn allowed(&self, state: &State, action: Action, name: &str) -> bool {
        let vars = PolicyVars {
            client_id: &self.client_id,
            thing_name: self.identity.thing_name.as_deref(),
            certificate_id: Some(&self.identity.certificate_id),
        };
        let resource = state.arn.resource_for(action, name);
        policy::evaluate(
            self.identity.policies.iter().map(|p| &**p),
            action,
            &resource,
            &vars,
        )
        .is_allowed()
    }
}

/// A session over a stream that is already past its TLS handshake, as [`run`] serves it: the
/// fuzz targets (`mock::fuzzing`) feed it bytes through an in-memory stream.
pub(super) async fn serve_established<S: AsyncRead + AsyncWrite>(
    state: Arc<State>,
    stream: S,
    cert_id: String,
    shutdown: CancellationToken,
) {
    let number = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let peer = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let mut conn = Connection::new(state, stream, peer, number);
    conn.serve(cert_id, shutdown).await;
    let _ = conn.flush().await;
}

impl<S: AsyncRead + AsyncWrite> Connection<S> {
    fn new(state: Arc<State>, stream: S, peer: SocketAddr, number: u64) -> Connection<S> {
        let (rd, wr) = tokio::io::split(stream);
        let publish_quota = state.quotas.publish_bucket();
        Connection {
            state,
            rd,
            wr,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            peer,
            number,
            proto: Proto::V311,
            next_pkid: 0,
            subscriptions: Vec::new(),
            publish_quota,
            worker: None,
        }
    }

    async fn serve(&mut self, cert_id: String, shutdown: CancellationToken) -> Close {
        let connect_deadline = Instant::now() + self.state.settings.connect_timeout;
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Close::Shutdown,
            _ = tokio::time::sleep_until(connect_deadline) => return Close::KeepAlive,
            r = self.read_first() => r,
        };
        let hello = match first {
            Ok(hello) => hello,
            Err(close) => return close,
        };
        self.proto = hello.proto;
        let client_id = hello.client_id;
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID || client_id.starts_with('$') {
            return self.refuse(Refusal::BadClientId).await;
        }
        let identity = match self.state.registry.identity(&cert_id) {
            Ok(identity) => identity,
            Err(refusal) => {
                info!(peer = %self.peer, %client_id, certificate = %cert_id, ?refusal, "CONNECT refused: certificate");
                return self.refuse(Refusal::NotAuthorized).await;
            }
        };
        let client = Client {
            client_id,
            identity,
        };
        if !client.allowed(&self.state, Action::Connect, &client.client_id) {
            info!(peer = %self.peer, client_id = %client.client_id, "CONNECT refused: policy");
            return self.refuse(Refusal::NotAuthorized).await;
        }

        if !self.state.quotas.allow_connect(&client.client_id) {
            // Over the CONNECT rate: AWS refuses; under MQTT 3.1.1 the client sees the socket
            // close, under MQTT 5 a CONNACK 0x9F first.
            self.state
                .stats
                .throttled_connects
                .fetch_add(1, Ordering::Relaxed);
            info!(peer = %self.peer, client_id = %client.client_id, "CONNECT throttled: closing");
            let _ = self.queue_connack_refused(Refusal::RateExceeded);
            return Close::Throttled;
        }
        // The newest connection with a client ID wins; the older one is closed.
        let kicked = CancellationToken::new();
        let deactivated = CancellationToken::new();
        let previous = lock(&self.state.sessions).insert(
            client.client_id.clone(),
            OpenSession {
                number: self.number,
                certificate_id: cert_id,
                kicked: kicked.clone(),
                deactivated: deactivated.clone(),
            },
        );
        if let Some(old) = previous {
            self.state.stats.takeovers.fetch_add(1, Ordering::Relaxed);
            old.kicked.cancel();
        }
        self.state
            .stats
            .connects_accepted
            .fetch_add(1, Ordering::Relaxed);
        let close = self
            .session(
                hello.keep_alive,
                &client,
                [&kicked, &deactivated],
                &shutdown,
            )
            .await;
        let mut sessions = lock(&self.state.sessions);
        if sessions
            .get(&client.client_id)
            .is_some_and(|s| s.number == self.number)
        {
            sessions.remove(&client.client_id);
        }
        drop(sessions);
        // MQTT 5 says why the server closes (queued behind whatever is pending; `run` flushes).
        self.queue_disconnect(close);
        debug!(peer = %self.peer, client_id = %client.client_id, ?close, "session closed");
        close
    }

    async fn refuse(&mut self, refusal: Refusal) -> Close {
        self.state
            .stats
            .connack_refused
            .fetch_add(1, Ordering::Relaxed);
        if self.queue_connack_refused(refusal).is_ok() {
            let _ = self.flush().await;
        }
        Close::ProtocolViolation
    }

    /// Queue the CONNACK that refuses a CONNECT, in the connection's protocol.
    fn queue_connack_refused(&mut self, refusal: Refusal) -> Result<(), Close> {
        match self.proto {
            Proto::V311 => self.queue_connack_refused_v311(refusal),
            Proto::V5(_) => self.queue_connack_refused_v5(refusal),
        }
    }

    async fn session(
        &mut self,
        requested_keep_alive: u16,
        client: &Client,
        [kicked, deactivated]: [&CancellationToken; 2],
        shutdown: &CancellationToken,
    ) -> Close {
        let accepted = match self.proto {
            Proto::V311 => self.queue_connack_v311(),
            Proto::V5(_) => self.queue_connack_v5(requested_keep_alive),
        };
        if accepted.is_err() || self.flush().await.is_err() {
            return Close::Io;
        }
        let keep_alive = keep_alive_window(requested_keep_alive);
        if self.rbuf.is_empty() {
            // The CONNECT's read room is not kept for the life of the connection.
            self.rbuf = BytesMut::new();
        }
        let mut deadline = Instant::now() + keep_alive;
        loop {
            // Packets already buffered are handled before waiting for more input.
            let wanted = loop {
                let step = match self.proto {
                    Proto::V311 => self.next_v311(client).await,
                    Proto::V5(_) => self.next_v5(client).await,
                };
                match step {
                    Step::Handled => deadline = Instant::now() + keep_alive,
                    Step::Need(n) => break n,
                    Step::Close(close) => return close,
                }
            };
            if self.flush().await.is_err() {
                return Close::Io;
            }
            tokio::select! {
                biased;
                _ = kicked.cancelled() => {
                    info!(client_id = %client.client_id, "connection taken over by a newer one with the same client ID");
                    return Close::TakenOver;
                }
                _ = deactivated.cancelled() => {
                    info!(client_id = %client.client_id, "certificate no longer ACTIVE: closing its connection");
                    return Close::CertificateNotActive;
                }
                _ = shutdown.cancelled() => return Close::Shutdown,
                Some(response) = next_response(&mut self.worker) => {
                    if let Err(close) = self.respond(client, Some(response)) {
                        return close;
                    }
                }
                read = read_more(&mut self.rd, &mut self.rbuf, wanted) => match read {
                    Ok(0) => return Close::Eof,
                    Ok(_) => {}
                    Err(_) => return Close::Io,
                },
                _ = tokio::time::sleep_until(deadline) => return Close::KeepAlive,
            }
        }
    }

    /// Read the CONNECT; its protocol level selects the codec (5: MQTT 5, else MQTT 3.1.1).
    async fn read_first(&mut self) -> Result<Hello, Close> {
        loop {
            match mqttbytes::check(self.rbuf.iter(), MAX_FRAME) {
                Ok(header) => return decode_connect(&mut self.rbuf, header.frame_length()),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {
                    match read_more(&mut self.rd, &mut self.rbuf, READ_CHUNK).await {
                        Ok(0) => return Err(Close::Eof),
                        Ok(_) => {}
                        Err(_) => return Err(Close::Io),
                    }
                }
                Err(_) => return Err(Close::Malformed),
            }
        }
    }

    /// The checks every PUBLISH passes once its codec has checked size and QoS: topic name,
    /// policy, per-connection quota.
    fn check_publish(&self, client: &Client, topic: &str) -> Result<(), PublishRefused> {
        if !mqttbytes::valid_topic(topic) {
            return Err(PublishRefused::TopicInvalid);
        }
        if !client.allowed(&self.state, Action::Publish, topic) {
            info!(client_id = %client.client_id, %topic, "publish not authorized");
            return Err(PublishRefused::NotAuthorized);
        }
        if self.publish_quota.as_ref().is_some_and(|b| !b.try_take()) {
            debug!(client_id = %client.client_id, %topic, "publish over the per-connection quota");
            return Err(PublishRefused::OverQuota);
        }
        Ok(())
    }

    /// Hand an accepted PUBLISH to provisioning if its topic is an API request (others are
    /// ignored, as nobody here subscribes to them).
    async fn request(&mut self, client: &Client, topic: &str, payload: Bytes) -> Option<Close> {
        let request = RequestTopic::parse(topic)?;
        let state = self.state.clone();
        let job = Job { request, payload };
        // Requests are answered in order: once a worker runs, it answers them all.
        if self.worker.is_none() && provisioning::answers_inline(&state, &job.request) {
            let requester = Requester {
                client_id: &client.client_id,
                claim_certificate_id: &client.identity.certificate_id,
                connection: self.number,
            };
            let response = provisioning::answer(&state, &requester, &mut None, job).await;
            return self.respond(client, response).err();
        }
        let number = self.number;
        let worker = self
            .worker
            .get_or_insert_with(|| Worker::start(&state, client, number));
        if worker.jobs.send(job).await.is_err() {
            return Some(Close::Io);
        }
        None
    }

    /// Check and record one SUBSCRIBE filter; `matched` is the filter topics are matched
    /// against (`filter` without a shared subscription's `$share/<group>/`). The granted QoS.
    fn subscribe(
        &mut self,
        client: &Client,
        filter: &str,
        matched: &str,
        qos: QoS,
    ) -> Result<QoS, SubscribeRefused> {
        if !mqttbytes::valid_filter(filter) {
            return Err(SubscribeRefused::FilterInvalid);
        }
        if !client.allowed(&self.state, Action::Subscribe, filter) {
            info!(client_id = %client.client_id, %filter, "subscribe not authorized");
            return Err(SubscribeRefused::NotAuthorized);
        }
        let qos = min_qos(qos, QoS::AtLeastOnce);
        match self.subscriptions.iter_mut().find(|(f, _)| f == matched) {
            Some(existing) => existing.1 = qos,
            None => self.subscriptions.push((matched.to_string(), qos)),
        }
        Ok(qos)
    }

    /// Queue an API response (`None`: dropped by an injected fault); a fault may close instead.
    fn respond(&mut self, client: &Client, response: Option<Response>) -> Result<(), Close> {
        match response {
            Some(Response::Publish { topic, payload }) => self.deliver(client, topic, payload),
            Some(Response::Close) => Err(Close::Fault),
            None => Ok(()),
        }
    }

    /// Queue an API response for this connection if it subscribed to the topic (and may receive
    /// it).
    fn deliver(&mut self, client: &Client, topic: String, payload: Vec<u8>) -> Result<(), Close> {
        let granted = self
            .subscriptions
            .iter()
            .filter(|(filter, _)| topic_matches(&topic, filter))
            .map(|(_, qos)| *qos)
            .max_by_key(|q| *q as u8);
        let Some(qos) = granted else {
            self.state.stats.undelivered.fetch_add(1, Ordering::Relaxed);
            debug!(client_id = %client.client_id, %topic, "response dropped: not subscribed");
            return Ok(());
        };
        if !client.allowed(&self.state, Action::Receive, &topic) {
            self.state.stats.undelivered.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let pkid = if qos == QoS::AtLeastOnce {
            self.pkid()
        } else {
            0
        };
        match self.proto {
            Proto::V311 => self.queue_publish_v311(topic, qos, pkid, payload),
            Proto::V5(_) => self.queue_publish_v5(topic, qos, pkid, payload),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Send what is queued in one TLS record and one write (a PUBACK and the API response
    /// together, or every answer to packets that arrived together).
    async fn flush(&mut self) -> Result<(), Close> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.wr.write_all(&self.wbuf).await.map_err(|_| Close::Io)?;
        self.wbuf.clear();
        self.wr.flush().await.map_err(|_| Close::Io)
    }
}

/// Read what is available into `buf`, with room for the `wanted` bytes the next packet still
/// needs and at least [`IDLE_ROOM`].
async fn read_more<R: AsyncRead>(
    rd: &mut ReadHalf<R>,
    buf: &mut BytesMut,
    wanted: usize,
) -> std::io::Result<usize> {
    buf.reserve(wanted.max(IDLE_ROOM));
    rd.read_buf(buf).await
}

/// The keep-alive AWS enforces: requests are clamped to 30–1200 s (0 means 1200), and the
/// connection is dropped after 1.5 × keep-alive without a packet.
fn keep_alive_window(requested: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive_secs(requested)) * 1500)
}

/// The keep-alive AWS uses for a requested one, in seconds (30–1200; 0 means 1200).
fn keep_alive_secs(requested: u16) -> u16 {
    match requested {
        0 => 1200,
        1..=29 => 30,
        s => s.min(1200),
    }
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) { a } else { b }
}

/// MQTT topic-filter matching. Unlike rumqttc's `matches`, `$`-topics match filters that spell the
/// `$` level out (`$aws/certificates/create/json/+`); only filters starting with a wildcard skip them.
pub(crate) fn topic_matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Decode the CONNECT framed at the start of `buf` with the codec its protocol level selects.
fn decode_connect(buf: &mut BytesMut, frame_length: usize) -> Result<Hello, Close> {
    if connect_protocol_level(&buf[..frame_length]) == Some(5) {
        v5::read_connect(buf)
    } else {
        v311::read_connect(buf)
    }
}

/// Protocol level byte of a CONNECT frame (`None` if the frame is not a CONNECT or too short).
pub(super) fn connect_protocol_level(frame: &[u8]) -> Option<u8> {
    if frame.first()? >> 4 != 1 {
        return None;
    }
    // Skip the remaining-length varint (1-4 bytes).
    let mut i = 1;
    while frame.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    let name_len = u16::from_be_bytes([*frame.get(i + 1)?, *frame.get(i + 2)?]) as usize;
    frame.get(i + 3 + name_len).copied()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_topics_match_explicit_filters_only() {
        let t = "$aws/certificates/create/json/accepted";
        assert!(topic_matches(t, t));
        assert!(topic_matches(t, "$aws/certificates/create/json/+"));
        assert!(topic_matches(t, "$aws/certificates/#"));
        assert!(!topic_matches(t, "#"));
        assert!(!topic_matches(t, "+/certificates/create/json/accepted"));
        assert!(!topic_matches(t, "$aws/certificates/create/json"));
        assert!(!topic_matches("$aws/certificates/create/json", t));
        assert!(topic_matches("device/a", "device/+"));
        assert!(topic_matches("device/a/b", "device/#"));
        assert!(!topic_matches("device/a/b", "device/+"));
    }

    #[test]
    fn protocol_level_is_read_from_connect_frames() {
        let mut buf = BytesMut::new();
        rumqttc::Connect::new("c").write(&mut buf).unwrap();
        assert_eq!(connect_protocol_level(&buf), Some(4));
        buf[8] = 5;
        assert_eq!(connect_protocol_level(&buf), Some(5));
        assert_eq!(connect_protocol_level(&[0x30, 0]), None);
        assert_eq!(connect_protocol_level(&[0x10, 0xff, 0xff]), None);
    }

    #[test]
    fn the_protocol_level_selects_the_codec() {
        use rumqttc::v5::mqttbytes::v5 as m5;
        let mut buf = BytesMut::new();
        rumqttc::Connect::new("three").write(&mut buf).unwrap();
        let len = buf.len();
        let hello = decode_connect(&mut buf, len).unwrap();
        assert!(matches!(hello.proto, Proto::V311));
        assert_eq!(hello.client_id, "three");
        assert!(buf.is_empty());

        let connect = m5::Connect {
            keep_alive: 45,
            client_id: "five".into(),
            clean_start: true,
            properties: None,
        };
        m5::Packet::Connect(connect, None, None)
            .write(&mut buf, None)
            .unwrap();
        let len = buf.len();
        let hello = decode_connect(&mut buf, len).unwrap();
        assert!(matches!(hello.proto, Proto::V5(_)));
        assert_eq!((hello.client_id.as_str(), hello.keep_alive), ("five", 45));
        assert!(buf.is_empty());
    }
}
