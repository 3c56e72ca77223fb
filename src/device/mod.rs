//! One virtual device: the provisioning flow ([`flow`], a sans-IO state machine) driven over
//! MQTT 3.1.1 or 5 + rustls (a lean client on rumqttc's codecs, see `lean` and `codec`), timed
//! per stage, with every failure classified into [`FailureReason`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pki::{self, KeyAlgorithm};

mod classify;
mod codec;
pub mod flow;
mod lean;
pub mod profile;
mod rules;
mod tally;
mod tls;

pub use crate::protocol::Format;
pub use crate::stage::{FailureClass, Stage, StageTime};
pub use classify::{Failure, FailureReason, HookCause};
use codec::Codec;
use flow::{Action, Backoff, Csr, Event, Flow, Identity};
use lean::{Connected, Session};
pub use profile::{Jitter, JitterSeed, Profile, Reaction, Subscriptions};
pub use rules::{Class, Classify, Rules};
pub use tally::{
    Activity, ConnectWindow, ConnectWindows, MESSAGE_UNIT_BYTES, Tally, connection_minutes,
    message_units,
};
pub use tls::DeviceTls;

/// Where devices connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// The MQTT version devices speak (`[devices] protocol`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, schemars::JsonSchema,
)]
pub enum Protocol {
    #[default]
    #[serde(rename = "mqtt311")]
    Mqtt311,
    #[serde(rename = "mqtt5")]
    Mqtt5,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt311 => "mqtt311",
            Protocol::Mqtt5 => "mqtt5",
        }
    }
}

/// How a device gets its certificate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CertificateMode {
    /// CreateKeysAndCertificate: the endpoint generates the key.
    #[default]
    Keys,
    /// CreateCertificateFromCsr with a device-generated key.
    Csr,
}

/// Per-stage timeouts (a profile's `timeouts`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub subscribe: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub create_certificate: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub register_thing: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            subscribe: Duration::from_secs(10),
            create_certificate: Duration::from_secs(30),
            register_thing: Duration::from_secs(30),
        }
    }
}
/// What a device does once it is registered and connected with its own certificate.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct After {
    pub action: AfterAction,
    /// How long to stay connected (`stay`, `telemetry`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub duration: Duration,
    /// Telemetry period.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Telemetry topic; `{thingName}` and `{clientId}` are replaced.
    pub topic: String,
    /// Telemetry payload size in bytes (a JSON object padded to this size).
    pub payload_bytes: usize,
}

/// What a device gets from whoever runs it, beside its settings: runtime handles, never in a
/// scenario file.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// A gauge of devices currently connected with their own identity (a live view or a
    /// benchmark reads it while devices stay connected).
    pub connected: Option<Arc<AtomicU64>>,
    /// Cancelled when the run stops, so devices that stay connected or send telemetry end that
    /// phase early and disconnect cleanly (they were provisioned: ending their stay is not a
    /// failure).
    pub release: tokio_util::sync::CancellationToken,
    /// Where the device reports each certificate it was issued and the thing it registered, as
    /// it gets them ([`Created`]); `None`: not reported.
    pub created: Option<tokio::sync::mpsc::UnboundedSender<Created>>,
    /// The whole-flow attempt (1-based) this flow is, for [`Created::attempt`].
    pub attempt: u32,
    /// The run's live counts (connects, certificates issued, retries); `None`: not counted.
    pub activity: Option<Arc<Activity>>,
}

/// Holds one count in [`Handles::connected`] while the device's own session is up.
struct ConnectedGuard(Option<Arc<AtomicU64>>);

impl ConnectedGuard {
    fn new(gauge: &Option<Arc<AtomicU64>>) -> ConnectedGuard {
        if let Some(g) = gauge {
            g.fetch_add(1, Ordering::Relaxed);
        }
        ConnectedGuard(gauge.clone())
    }
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AfterAction {
    #[default]
    Disconnect,
    Stay,
    Telemetry,
}

impl Default for After {
    fn default() -> Self {
        After {
            action: AfterAction::Disconnect,
            duration: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            topic: "device/{thingName}".into(),
            payload_bytes: 64,
        }
    }
}

/// What one device does.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub client_id: String,
    pub template: String,
    pub parameters: BTreeMap<String, String>,
    pub mode: CertificateMode,
    pub csr_key: KeyAlgorithm,
    /// The MQTT version of both connections.
    pub protocol: Protocol,
    /// How the device behaves: timeouts, keep-alive, subscriptions, payload format (`…/json`
    /// or `…/cbor` topics), retries; one for the whole run, shared.
    pub profile: Arc<Profile>,
    pub after: After,
    /// Which rejection codes are throttled / hook denied (`[target.classify]`), shared.
    pub classify: Arc<Rules>,
}

/// What a device achieved.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub thing_name: String,
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub device_configuration: serde_json::Map<String, serde_json::Value>,
}

/// The result of one device run: per-stage service times and the outcome.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Stages in order: service time and when the stage ended (telemetry may appear many times).
    pub stages: Vec<StageTime>,
    /// When the device was connected with its own certificate (the end of provisioning).
    pub provisioned_at: Option<Instant>,
    pub outcome: Result<Provisioned, Failure>,
    /// This attempt's counts (connects, certificates issued, registrations).
    pub tally: Tally,
}

/// What one device keeps from one whole-flow attempt to the next: its jitter source, its
/// connect backoff (for `connect_retry.reset_after`), the key it reuses (a profile with
/// `flow_retry.new_key = false`, csr mode) and its connects of the last second, per client ID
/// (for [`Tally::max_connects_per_s`]).
#[derive(Debug, Default)]
pub struct Carry {
    /// The jitter source's state ([`profile::unit`]): connect backoffs draw from it, and the
    /// fleet's whole-flow backoff too.
    pub jitter: u64,
    backoff: Backoff,
    key: Option<Csr>,
    pub window: ConnectWindows,
}

impl Carry {
    /// A device's carry with its jitter source at `jitter`.
    pub fn new(jitter: u64) -> Carry {
        Carry {
            jitter,
            ..Carry::default()
        }
    }
}

/// Run the full flow once (a single attempt, nothing carried): see [`attempt`].
pub async fn provision(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    spec: &DeviceSpec,
    handles: &Handles,
) -> DeviceReport {
    attempt(endpoint, tls, spec, handles, &mut Carry::default()).await
}

/// Run the full flow once, as one whole-flow attempt of a device that keeps `carry` between
/// attempts: this task does the I/O (sockets, TLS, timers) and [`Flow`] decides.
pub fn attempt<'a>(
    endpoint: &'a Endpoint,
    tls: &'a DeviceTls,
    spec: &'a DeviceSpec,
    handles: &'a Handles,
    carry: &'a mut Carry,
) -> impl Future<Output = DeviceReport> + Send + 'a {
    use futures_util::future::Either;
    // The version is picked once per flow; each is its own monomorphic code (no box, no
    // dynamic dispatch per packet), and the future is the bigger of the two, not a wrapper
    // holding either: a 3.1.1 device costs what it cost before MQTT 5.
    match spec.protocol {
        Protocol::Mqtt311 => Either::Left(run::<codec::V311>(endpoint, tls, spec, handles, carry)),
        Protocol::Mqtt5 => Either::Right(run::<codec::V5>(endpoint, tls, spec, handles, carry)),
    }
}

async fn run<P: Codec>(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    spec: &DeviceSpec,
    handles: &Handles,
    carry: &mut Carry,
) -> DeviceReport {
    let csr = match attempt_key(spec, carry).await {
        Ok(csr) => csr,
        Err(failure) => {
            return DeviceReport {
                stages: Vec::new(),
                provisioned_at: None,
                outcome: Err(failure),
                tally: Tally::default(),
            };
        }
    };
    let mut flow = Flow::new(spec, csr, Instant::now())
        .with_jitter(carry.jitter)
        .with_backoff(carry.backoff);
    let mut created = CreatedReporter::new(handles, handles.attempt.max(1));
    let keep_alive = spec.profile.keep_alive;
    let mut session: Option<Session<P>> = None;
    let mut meter = Meter::default();
    let mut own = None;
    let mut _connected = None;
    loop {
        let stage = flow.stage();
        let event = match flow.action() {
            Action::Connect {
                identity,
                client_id,
                deadline,
            } => {
                let config = match identity {
                    Identity::Claim => Some(tls.claim()),
                    Identity::Own => own.take(),
                };
                match config {
                    None => lost(stage, "no identity to connect with"),
                    Some(config) => {
                        carry
                            .window
                            .connect(&spec.client_id, client_id, Instant::now());
                        if let Some(activity) = &handles.activity {
                            activity.connects.fetch_add(1, Ordering::Relaxed);
                        }
                        // A retried own connect presents the same identity again.
                        let retry = (identity == Identity::Own).then(|| config.clone());
                        let connect = Session::<P>::connect(
                            endpoint, client_id, config, stage, deadline, keep_alive,
                        );
                        match Box::pin(connect).await {
                            Ok(Connected::Accepted(s)) => {
                                meter.close(&session);
                                session = Some(s);
                                if identity == Identity::Own {
                                    _connected = Some(ConnectedGuard::new(&handles.connected));
                                }
                                Event::ConnAck(0)
                            }
                            result => {
                                own = retry;
                                match result {
                                    Ok(Connected::Refused(code)) => Event::ConnAck(code),
                                    Ok(Connected::TimedOut) => Event::Timeout,
                                    Err(failure) => Event::Lost(failure),
                                    Ok(Connected::Accepted(_)) => unreachable!("matched above"),
                                }
                            }
                        }
                    }
                }
            }
            Action::Adopt {
                certificate_pem,
                private_key_pem,
            } => {
                // The claim session ends first; the own configuration is built outside the timed
                // connect.
                meter.close(&session);
                if let Some(claim) = session.take() {
                    claim.disconnect().await;
                }
                match tls.for_identity(certificate_pem, private_key_pem) {
                    Ok(config) => {
                        own = Some(config);
                        Event::Adopted
                    }
                    Err(e) => Event::Unusable(e.to_string()),
                }
            }
            Action::Done => {
                meter.close(&session);
                if let Some(s) = session.take() {
                    s.disconnect().await;
                }
                break;
            }
            Action::Failed => break,
            // The backoff before connecting again; the claim session of a failed connect is
            // gone already.
            Action::Wait { until } => {
                tokio::time::sleep_until(until.into()).await;
                Event::Elapsed
            }
            exchange => match session.as_mut() {
                Some(s) => {
                    let event = exchange_on(s, exchange, stage, &handles.release).await;
                    // A lost connection's minutes end when it was lost, not at the next connect.
                    if matches!(event, Event::Lost(_)) {
                        meter.close(&session);
                        session = None;
                    }
                    event
                }
                None => lost(stage, "no session"),
            },
        };
        flow.handle(Instant::now(), event);
        created.check(spec, &flow);
    }
    meter.close(&session);
    drop(session);
    carry.jitter = flow.jitter();
    carry.backoff = flow.backoff();
    let mut report = flow.into_report();
    report.tally.max_connects_per_s = carry.window.max();
    (report.tally.messages, report.tally.connection_minutes) = (meter.messages, meter.minutes);
    report
}

/// What AWS meters of an attempt's connections that have ended: messages and
/// connection-minutes, added as each connection ends. It reads the session where it lies (a
/// borrowed local session would be kept in the device's future across the next await: a
/// second session's worth of bytes per device).
#[derive(Debug, Default)]
struct Meter {
    messages: u32,
    minutes: u32,
}

impl Meter {
    /// Add what the session in `slot`, if any, was metered, as it ends now.
    fn close<P: Codec>(&mut self, slot: &Option<Session<P>>) {
        let Some(s) = slot else { return };
        let (messages, minutes) = s.metered(Instant::now());
        self.messages = self.messages.saturating_add(messages);
        self.minutes = self.minutes.saturating_add(minutes);
    }
}

/// This attempt's key and CSR in csr mode: a new one, or the first attempt's again when the
/// profile reuses it (kept in `carry`; only then is it copied).
async fn attempt_key(spec: &DeviceSpec, carry: &mut Carry) -> Result<Option<Csr>, Failure> {
    let retry = &spec.profile.flow_retry;
    let reuse = !retry.new_key && retry.attempts > 1;
    if reuse && let Some(kept) = &carry.key {
        return Ok(Some(Csr {
            key_pem: kept.key_pem.clone(),
            csr_pem: kept.csr_pem.clone(),
        }));
    }
    let csr = device_key(spec).await?;
    if reuse && let Some(csr) = &csr {
        carry.key = Some(Csr {
            key_pem: csr.key_pem.clone(),
            csr_pem: csr.csr_pem.clone(),
        });
    }
    Ok(csr)
}

/// One MQTT exchange on a connected session.
async fn exchange_on<P: Codec>(
    session: &mut Session<P>,
    action: Action<'_>,
    stage: Stage,
    release: &tokio_util::sync::CancellationToken,
) -> Event {
    let result = match action {
        Action::Subscribe { filters, deadline } => session
            .subscribe(filters, deadline, stage)
            .await
            .map(|ack| match ack {
                Some(refused) => Event::SubAck { refused },
                None => Event::Timeout,
            }),
        Action::Unsubscribe { filters, deadline } => session
            .unsubscribe(filters, deadline, stage)
            .await
            .map(|acked| {
                if acked {
                    Event::UnsubAck
                } else {
                    Event::Timeout
                }
            }),
        Action::Request {
            topic,
            payload,
            responses,
            deadline,
            await_puback,
        } => session
            .request(topic, payload, responses, deadline, stage, await_puback)
            .await
            .map(|response| match response {
                Some((index, payload)) => Event::Response {
                    rejected: index != 0,
                    payload,
                },
                None => Event::Timeout,
            }),
        // A registered device's stay or telemetry ends early when the run stops.
        Action::Publish {
            topic,
            payload,
            deadline,
        } => tokio::select! {
            r = session.publish_acked(topic, payload, deadline, stage) => {
                r.map(|ack| ack.map_or(Event::Timeout, Event::PubAck))
            }
            _ = release.cancelled() => Ok(Event::Released),
        },
        Action::Idle { until } => tokio::select! {
            r = session.idle(until, stage) => r.map(|()| Event::Elapsed),
            _ = release.cancelled() => Ok(Event::Released),
        },
        other => Ok(lost(stage, &format!("{other:?} is no session exchange"))),
    };
    result.unwrap_or_else(Event::Lost)
}

fn lost(stage: Stage, detail: &str) -> Event {
    Event::Lost(Failure::new(FailureReason::Local(stage), detail))
}

/// Device-side key generation happens before the flow (a real device has its key already).
/// A P-256 key and CSR take tens of microseconds: cheaper inline than a hand-off to the blocking
/// pool; RSA key generation takes tens of milliseconds and goes there.
async fn device_key(spec: &DeviceSpec) -> Result<Option<Csr>, Failure> {
    if spec.mode != CertificateMode::Csr {
        return Ok(None);
    }
    let local = |e: String| Failure::new(FailureReason::Local(Stage::CreateCertificate), e);
    let alg = spec.csr_key;
    let generated = if alg == KeyAlgorithm::P256 {
        pki::generate_csr(alg, &spec.client_id)
    } else {
        let cn = spec.client_id.clone();
        tokio::task::spawn_blocking(move || pki::generate_csr(alg, &cn))
            .await
            .map_err(|e| local(e.to_string()))?
    }
    .map_err(|e| local(e.to_string()))?;
    Ok(Some(Csr {
        key_pem: generated.0.serialize_pem(),
        csr_pem: generated.1,
    }))
}

/// A certificate the endpoint issued to a device, or the thing it registered for it, reported as
/// it happens: a run lists them in `created.csv` so that what it created in an account can be
/// removed even when it is killed, and even for attempts that failed afterwards.
#[derive(Debug, Clone)]
pub struct Created {
    pub client_id: String,
    /// The whole-flow attempt (1-based), from [`Handles::attempt`].
    pub attempt: u32,
    pub certificate_id: String,
    /// Empty when the certificate was issued; the thing name once RegisterThing accepted it.
    pub thing_name: String,
    pub at: std::time::SystemTime,
}

/// Reports a flow's certificate and thing once each, as soon as the flow holds them (and
/// counts the certificate in the run's [`Activity`]).
struct CreatedReporter<'a> {
    sink: Option<&'a tokio::sync::mpsc::UnboundedSender<Created>>,
    activity: Option<&'a Activity>,
    attempt: u32,
    certificate: bool,
    thing: bool,
}

impl<'a> CreatedReporter<'a> {
    fn new(handles: &'a Handles, attempt: u32) -> CreatedReporter<'a> {
        CreatedReporter {
            sink: handles.created.as_ref(),
            activity: handles.activity.as_deref(),
            attempt,
            certificate: false,
            thing: false,
        }
    }

    /// After each event: a string comparison or two, and one message per new fact.
    fn check(&mut self, spec: &DeviceSpec, flow: &Flow<'_>) {
        if self.sink.is_none() && self.activity.is_none() {
            return;
        }
        let new_certificate = !self.certificate && !flow.certificate_id().is_empty();
        let new_thing = !self.thing && !flow.thing_name().is_empty();
        if let Some(activity) = self.activity.filter(|_| new_certificate) {
            activity.certificates_issued.fetch_add(1, Ordering::Relaxed);
        }
        self.certificate |= new_certificate;
        self.thing |= new_thing;
        let Some(sink) = self.sink else { return };
        for thing in [
            new_certificate.then_some(""),
            new_thing.then(|| flow.thing_name()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = sink.send(Created {
                client_id: spec.client_id.clone(),
                attempt: self.attempt,
                certificate_id: flow.certificate_id().to_string(),
                thing_name: thing.to_string(),
                at: std::time::SystemTime::now(),
            });
        }
    }
}

#[cfg(test)]
mod created_tests {
    use super::*;

    fn response(rejected: bool, body: &str) -> Event {
        Event::Response {
            rejected,
            payload: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// A keys-mode 3.1.1/JSON device with template `Tpl` and no parameters.
    pub(super) fn keys_spec(client_id: &str) -> DeviceSpec {
        DeviceSpec {
            client_id: client_id.into(),
            template: "Tpl".into(),
            parameters: BTreeMap::new(),
            mode: CertificateMode::Keys,
            csr_key: KeyAlgorithm::P256,
            protocol: Protocol::Mqtt311,
            profile: Arc::new(Profile::generic()),
            after: After::default(),
            classify: Default::default(),
        }
    }

    /// `register`: RegisterThing's answer (rejected or accepted).
    fn reported(register: Event) -> Vec<Created> {
        let spec = keys_spec("dev-7");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let handles = Handles {
            created: Some(tx),
            ..Handles::default()
        };
        let mut reporter = CreatedReporter::new(&handles, 3);
        let mut flow = Flow::new(&spec, None, Instant::now());
        for event in [
            Event::ConnAck(0),
            Event::SubAck { refused: None },
            response(
                false,
                r#"{"certificateId":"c1","certificatePem":"P","privateKey":"K","certificateOwnershipToken":"t"}"#,
            ),
            register,
            Event::Adopted,
        ] {
            flow.handle(Instant::now(), event);
            reporter.check(&spec, &flow);
        }
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn an_issued_certificate_is_reported_even_when_registration_then_fails() {
        let sent = reported(response(
            true,
            r#"{"statusCode":403,"errorCode":"AccessDenied","errorMessage":"no"}"#,
        ));
        assert_eq!(sent.len(), 1, "{sent:?}");
        let c = &sent[0];
        assert_eq!(
            (c.client_id.as_str(), c.attempt, c.certificate_id.as_str()),
            ("dev-7", 3, "c1")
        );
        assert!(c.thing_name.is_empty());
    }

    #[test]
    fn a_registered_thing_is_reported_once_after_its_certificate() {
        let sent = reported(response(
            false,
            r#"{"thingName":"thing-7","deviceConfiguration":{}}"#,
        ));
        let things: Vec<_> = sent.iter().map(|c| c.thing_name.as_str()).collect();
        assert_eq!(things, ["", "thing-7"], "{sent:?}");
        assert!(sent.iter().all(|c| c.certificate_id == "c1"));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// A device's future is most of what an idle connected device costs: MQTT 5 must not make
    /// it bigger, for either version (the dispatch adds one tag, no wrapper state).
    #[test]
    fn an_mqtt5_flow_costs_no_more_memory_than_a_311_one() {
        let spec = created_tests::keys_spec("x");
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = pki::Pki::init(dir.path(), &[], KeyAlgorithm::P256).unwrap();
        let tls =
            DeviceTls::new(&p.root_ca_pem, &p.claim_cert_pem, &p.claim_key_pem, false).unwrap();
        let h = Handles::default();
        let c = &mut Carry::default();
        let v311 = std::mem::size_of_val(&run::<codec::V311>(&endpoint, &tls, &spec, &h, c));
        let v5 = std::mem::size_of_val(&run::<codec::V5>(&endpoint, &tls, &spec, &h, c));
        let either = std::mem::size_of_val(&attempt(&endpoint, &tls, &spec, &h, c));
        eprintln!("device future: 3.1.1 {v311} bytes, MQTT 5 {v5}, dispatched {either}");
        assert!(v5 <= v311, "MQTT 5 {v5} bytes, 3.1.1 {v311}");
        assert!(either <= v311 + 8, "attempt {either} bytes, 3.1.1 {v311}");
        // Measured; the profile machinery (retries, per-step subscriptions, ping timeout)
        // must not grow it unnoticed.
        assert!(
            v311 <= SIZE_311,
            "3.1.1 flow {v311} bytes, more than {SIZE_311}"
        );
    }

    // 6,040 before each connection carried what AWS meters of it (its metered messages and
    // CONNACK instant, for the run's cost): 80 bytes more.
    const SIZE_311: usize = 6_120;
}
