//! One virtual device: the claim-to-registration flow over MQTT 3.1.1 + rustls (a lean client on
//! rumqttc's codec, see `lean`), timed per stage, with every failure classified into
//! [`FailureReason`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::pki::{self, KeyAlgorithm};
use crate::protocol::{
    CreateCertificateFromCsrRequest, CreateCertificateFromCsrResponse,
    CreateKeysAndCertificateResponse, ErrorResponse, Format, RegisterThingRequest,
    RegisterThingResponse, RequestTopic,
};

mod lean;
use lean::Session;

/// The steps of the flow, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    ConnectClaim,
    Subscribe,
    CreateCertificate,
    RegisterThing,
    ConnectDevice,
    /// One telemetry publish with the new identity, until its PUBACK.
    Telemetry,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::ConnectClaim,
        Stage::Subscribe,
        Stage::CreateCertificate,
        Stage::RegisterThing,
        Stage::ConnectDevice,
        Stage::Telemetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ConnectClaim => "connect_claim",
            Stage::Subscribe => "subscribe",
            Stage::CreateCertificate => "create_certificate",
            Stage::RegisterThing => "register_thing",
            Stage::ConnectDevice => "connect_device",
            Stage::Telemetry => "telemetry",
        }
    }
}

/// Why a device failed. Labels (`label()`) are stable: they key CSV columns and counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// TLS handshake failed (the alert or error, abbreviated).
    TlsHandshake(Stage, String),
    ConnectionRefused(Stage),
    ConnectionReset(Stage),
    /// CONNACK with a non-zero return code.
    ConnackRefused(Stage, u8),
    SubscribeRefused,
    /// `…/rejected` with statusCode and errorCode.
    Rejected(Stage, u16, String),
    Throttled(Stage),
    /// RegisterThing refused by the pre-provisioning hook (AWS: ACCESS_DENIED), with the cause
    /// when the message names one (deny, hook error, malformed hook output, hook timeout).
    HookDenied(HookCause),
    Timeout(Stage),
    Disconnected(Stage),
    MalformedResponse(Stage),
    /// A local problem (e.g. key generation) rather than the endpoint's.
    Local(Stage),
    /// The run stopped (Ctrl-C, drain deadline) before the device finished: not a timeout.
    Aborted,
}

impl FailureReason {
    pub fn label(&self) -> String {
        match self {
            FailureReason::TlsHandshake(s, alert) => {
                format!("tls_handshake.{}.{alert}", s.as_str())
            }
            FailureReason::ConnectionRefused(s) => format!("connection_refused.{}", s.as_str()),
            FailureReason::ConnectionReset(s) => format!("connection_reset.{}", s.as_str()),
            FailureReason::ConnackRefused(s, c) => format!("connack_refused.{}.{c}", s.as_str()),
            FailureReason::SubscribeRefused => "subscribe_refused".into(),
            FailureReason::Rejected(s, status, code) => {
                format!("rejected.{}.{status}.{code}", s.as_str())
            }
            FailureReason::Throttled(s) => format!("throttled.{}", s.as_str()),
            FailureReason::HookDenied(HookCause::Denied) => "hook_denied".into(),
            FailureReason::HookDenied(HookCause::Error) => "hook_denied.error".into(),
            FailureReason::HookDenied(HookCause::Malformed) => "hook_denied.malformed".into(),
            FailureReason::HookDenied(HookCause::Timeout) => "hook_denied.timeout".into(),
            FailureReason::Timeout(s) => format!("timeout.{}", s.as_str()),
            FailureReason::Disconnected(s) => format!("disconnected.{}", s.as_str()),
            FailureReason::MalformedResponse(s) => format!("malformed_response.{}", s.as_str()),
            FailureReason::Local(s) => format!("local_error.{}", s.as_str()),
            FailureReason::Aborted => "aborted".into(),
        }
    }

    /// The failure class without stage or code (timeseries columns).
    pub fn class(&self) -> &'static str {
        match self {
            FailureReason::TlsHandshake(..) => "tls_handshake",
            FailureReason::ConnectionRefused(_) => "connection_refused",
            FailureReason::ConnectionReset(_) => "connection_reset",
            FailureReason::ConnackRefused(..) => "connack_refused",
            FailureReason::SubscribeRefused => "subscribe_refused",
            FailureReason::Rejected(..) => "rejected",
            FailureReason::Throttled(_) => "throttled",
            FailureReason::HookDenied(_) => "hook_denied",
            FailureReason::Timeout(_) => "timeout",
            FailureReason::Disconnected(_) => "disconnected",
            FailureReason::MalformedResponse(_) => "malformed_response",
            FailureReason::Local(_) => "local_error",
            FailureReason::Aborted => "aborted",
        }
    }

    pub const CLASSES: [&'static str; 13] = [
        "tls_handshake",
        "connection_refused",
        "connection_reset",
        "connack_refused",
        "subscribe_refused",
        "rejected",
        "throttled",
        "hook_denied",
        "timeout",
        "disconnected",
        "malformed_response",
        "local_error",
        "aborted",
    ];
}

/// Why a pre-provisioning hook refused, as far as the rejection message tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookCause {
    Denied,
    Error,
    Malformed,
    Timeout,
}

impl HookCause {
    fn from_message(message: &str) -> HookCause {
        let m = message.to_ascii_lowercase();
        if m.contains("timed out") || m.contains("timeout") || m.contains("deadline") {
            HookCause::Timeout
        } else if m.contains("malformed") || m.contains("invalid response") {
            HookCause::Malformed
        } else if m.contains("error") || m.contains("failed") || m.contains("exception") {
            HookCause::Error
        } else {
            HookCause::Denied
        }
    }
}

/// A failure with its human-readable detail.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: FailureReason,
    pub detail: String,
}

impl Failure {
    fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

/// Where devices connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// TLS state built once and shared by every device.
#[derive(Clone)]
pub struct DeviceTls {
    verifier: Arc<crate::tls::CachingServerVerifier>,
    claim: Arc<rustls::ClientConfig>,
    alpn: bool,
}

impl DeviceTls {
    /// `ca_pem`: the endpoint's trust anchor; the claim identity as PEM; `alpn`: offer
    /// `x-amzn-mqtt-ca` (AWS port 443).
    pub fn new(
        ca_pem: &str,
        claim_cert_pem: &str,
        claim_key_pem: &str,
        alpn: bool,
    ) -> Result<DeviceTls, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| rustls::Error::General(format!("CA file: {e}")))?;
            roots.add(cert)?;
        }
        let verifier = crate::tls::CachingServerVerifier::new(Arc::new(roots))?;
        let claim = Arc::new(client_config(
            &verifier,
            claim_cert_pem,
            claim_key_pem,
            alpn,
        )?);
        Ok(DeviceTls {
            verifier,
            claim,
            alpn,
        })
    }

    /// A client configuration for a device's own identity. It holds no session cache: a device
    /// connects once with it, and the default cache preallocates room for 256 servers.
    pub fn for_identity(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut config = client_config(&self.verifier, cert_pem, key_pem, self.alpn)?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    pub fn claim(&self) -> Arc<rustls::ClientConfig> {
        self.claim.clone()
    }
}

fn client_config(
    verifier: &Arc<crate::tls::CachingServerVerifier>,
    cert_pem: &str,
    key_pem: &str,
    alpn: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rustls::Error::General(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| rustls::Error::General(format!("private key: {e}")))?;
    let provider = crate::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(chain, key)?;
    if alpn {
        config.alpn_protocols = vec![crate::mock::ALPN_MQTT_CA.to_vec()];
    }
    Ok(config)
}

/// How a device gets its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CertificateMode {
    /// CreateKeysAndCertificate: the endpoint generates the key.
    #[default]
    Keys,
    /// CreateCertificateFromCsr with a device-generated key.
    Csr,
}

/// Per-stage timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub subscribe: Duration,
    pub create_certificate: Duration,
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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct After {
    pub action: AfterAction,
    /// How long to stay connected (`stay`, `telemetry`).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Telemetry period.
    #[serde(with = "humantime_serde")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
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
    pub timeouts: Timeouts,
    pub after: After,
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

/// One completed stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTime {
    pub stage: Stage,
    pub service: Duration,
    pub ended: Instant,
}

impl StageTime {
    fn since(stage: Stage, started: Instant) -> StageTime {
        let ended = Instant::now();
        StageTime {
            stage,
            service: ended - started,
            ended,
        }
    }
}

/// The result of one device run: per-stage service times and the outcome.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Stages in order: service time and when the stage ended (telemetry may appear many times).
    pub stages: Vec<StageTime>,
    /// When the device was connected with its own certificate (the end of provisioning).
    pub provisioned_at: Option<Instant>,
    pub outcome: Result<Provisioned, Failure>,
}

/// Run the full flow once.
pub async fn provision(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    spec: &DeviceSpec,
    handles: &Handles,
) -> DeviceReport {
    let mut stages = Vec::with_capacity(Stage::ALL.len());
    let mut provisioned_at = None;
    let outcome = run_flow(
        endpoint,
        tls,
        spec,
        handles,
        &mut stages,
        &mut provisioned_at,
    )
    .await;
    DeviceReport {
        stages,
        provisioned_at,
        outcome,
    }
}

async fn run_flow(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    spec: &DeviceSpec,
    handles: &Handles,
    stages: &mut Vec<StageTime>,
    provisioned_at: &mut Option<Instant>,
) -> Result<Provisioned, Failure> {
    // The claim phase runs in its own allocation: its buffers, CSR and responses are freed before
    // the device connects with its own identity (and may stay connected for a long time).
    let claimed = Box::pin(claim(endpoint, tls, spec, stages)).await?;

    // The device's own TLS configuration is built once, outside the timed connect.
    let own = tls
        .for_identity(&claimed.certificate_pem, &claimed.private_key_pem)
        .map_err(|e| {
            Failure::new(
                FailureReason::MalformedResponse(Stage::CreateCertificate),
                e.to_string(),
            )
        })?;
    let started = Instant::now();
    let client_id = if claimed.thing_name.is_empty() {
        format!("{}-device", spec.client_id)
    } else {
        claimed.thing_name.clone()
    };
    let mut session = Box::pin(Session::connect(
        endpoint,
        &client_id,
        own,
        Stage::ConnectDevice,
        spec.timeouts.connect,
        KEEP_ALIVE,
    ))
    .await?;
    stages.push(StageTime::since(Stage::ConnectDevice, started));
    *provisioned_at = Some(Instant::now());
    let _connected = ConnectedGuard::new(&handles.connected);
    let release = &handles.release;
    match spec.after.action {
        AfterAction::Disconnect => {}
        AfterAction::Stay => {
            tokio::select! {
                r = session.idle(Instant::now() + spec.after.duration, Stage::Telemetry) => r?,
                _ = release.cancelled() => {}
            }
        }
        AfterAction::Telemetry => {
            let topic = spec
                .after
                .topic
                .replace("{thingName}", &claimed.thing_name)
                .replace("{clientId}", &client_id);
            tokio::select! {
                r = Box::pin(telemetry(
                    &mut session,
                    &topic,
                    &spec.after,
                    spec.timeouts.connect,
                    stages,
                )) => r?,
                _ = release.cancelled() => {}
            }
        }
    }
    session.disconnect().await;
    Ok(claimed)
}

/// The keep-alive devices ask for (AWS accepts 30–1200 s).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Publish at QoS 1 every `after.interval` for `after.duration`, timing each PUBACK.
async fn telemetry(
    session: &mut Session,
    topic: &str,
    after: &After,
    timeout: Duration,
    stages: &mut Vec<StageTime>,
) -> Result<(), Failure> {
    let end = Instant::now() + after.duration;
    let mut sequence = 0u64;
    let mut payload = String::with_capacity(after.payload_bytes);
    while Instant::now() < end {
        let next = Instant::now() + after.interval;
        sequence += 1;
        payload.clear();
        use std::fmt::Write as _;
        let _ = write!(payload, "{{\"sequence\":{sequence},\"pad\":\"");
        let pad = after.payload_bytes.saturating_sub(payload.len() + 2);
        payload.extend(std::iter::repeat_n('x', pad));
        payload.push_str("\"}");
        let sent = Instant::now();
        session
            .publish_acked(topic, payload.as_bytes(), sent + timeout, Stage::Telemetry)
            .await?;
        stages.push(StageTime::since(Stage::Telemetry, sent));
        session.idle(next.min(end), Stage::Telemetry).await?;
    }
    Ok(())
}

/// Claim connection, subscribe, create a certificate, register the thing, disconnect.
async fn claim(
    endpoint: &Endpoint,
    tls: &DeviceTls,
    spec: &DeviceSpec,
    stages: &mut Vec<StageTime>,
) -> Result<Provisioned, Failure> {
    let create = match spec.mode {
        CertificateMode::Keys => RequestTopic::create_keys(Format::Json),
        CertificateMode::Csr => RequestTopic::create_from_csr(Format::Json),
    };
    let register = RequestTopic::register_thing(&spec.template, Format::Json);

    // Device-side key generation happens before the flow (a real device has its key already).
    // A P-256 key and CSR take tens of microseconds: cheaper inline than a hand-off to the
    // blocking pool; RSA key generation takes tens of milliseconds and goes there.
    let csr = match spec.mode {
        CertificateMode::Csr => {
            let alg = spec.csr_key;
            let generated = if alg == KeyAlgorithm::P256 {
                pki::generate_csr(alg, &spec.client_id)
            } else {
                let cn = spec.client_id.clone();
                tokio::task::spawn_blocking(move || pki::generate_csr(alg, &cn))
                    .await
                    .map_err(|e| {
                        Failure::new(
                            FailureReason::Local(Stage::CreateCertificate),
                            e.to_string(),
                        )
                    })?
            }
            .map_err(|e| {
                Failure::new(
                    FailureReason::Local(Stage::CreateCertificate),
                    e.to_string(),
                )
            })?;
            Some((generated.0.serialize_pem(), generated.1))
        }
        CertificateMode::Keys => None,
    };

    let started = Instant::now();
    let mut session = Session::connect(
        endpoint,
        &spec.client_id,
        tls.claim(),
        Stage::ConnectClaim,
        spec.timeouts.connect,
        KEEP_ALIVE,
    )
    .await?;
    stages.push(StageTime::since(Stage::ConnectClaim, started));

    let started = Instant::now();
    let filters = [
        create.accepted(),
        create.rejected(),
        register.accepted(),
        register.rejected(),
    ];
    session
        .subscribe(
            &filters,
            Instant::now() + spec.timeouts.subscribe,
            Stage::Subscribe,
        )
        .await?;
    stages.push(StageTime::since(Stage::Subscribe, started));

    let started = Instant::now();
    let payload = match &csr {
        Some((_, csr_pem)) => serde_json::to_vec(&CreateCertificateFromCsrRequest {
            certificate_signing_request: csr_pem.clone(),
        })
        .unwrap_or_default(),
        None => b"{}".to_vec(),
    };
    let body = request(
        &mut session,
        &create,
        &payload,
        Stage::CreateCertificate,
        spec.timeouts.create_certificate,
    )
    .await?;
    let (certificate_id, certificate_pem, private_key_pem, token) = match &csr {
        None => {
            let r: CreateKeysAndCertificateResponse = decode(&body, Stage::CreateCertificate)?;
            (
                r.certificate_id,
                r.certificate_pem,
                r.private_key,
                r.certificate_ownership_token,
            )
        }
        Some((key_pem, _)) => {
            let r: CreateCertificateFromCsrResponse = decode(&body, Stage::CreateCertificate)?;
            (
                r.certificate_id,
                r.certificate_pem,
                key_pem.clone(),
                r.certificate_ownership_token,
            )
        }
    };
    stages.push(StageTime::since(Stage::CreateCertificate, started));

    let started = Instant::now();
    let register_request = RegisterThingRequest {
        certificate_ownership_token: Some(token),
        parameters: Some(spec.parameters.clone()),
    };
    let body = request(
        &mut session,
        &register,
        &serde_json::to_vec(&register_request).unwrap_or_default(),
        Stage::RegisterThing,
        spec.timeouts.register_thing,
    )
    .await?;
    let registered: RegisterThingResponse = decode(&body, Stage::RegisterThing)?;
    stages.push(StageTime::since(Stage::RegisterThing, started));
    session.disconnect().await;
    Ok(Provisioned {
        thing_name: registered.thing_name,
        certificate_id,
        certificate_pem,
        private_key_pem,
        device_configuration: registered.device_configuration,
    })
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], stage: Stage) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::new(FailureReason::MalformedResponse(stage), e.to_string()))
}

/// Publish a request at QoS 1 and wait for its accepted/rejected response.
async fn request(
    session: &mut Session,
    topic: &RequestTopic,
    payload: &[u8],
    stage: Stage,
    timeout: Duration,
) -> Result<bytes::Bytes, Failure> {
    let accepted = topic.accepted();
    let rejected = topic.rejected();
    let (index, body) = session
        .request(
            &topic.topic(),
            payload,
            [&accepted, &rejected],
            Instant::now() + timeout,
            stage,
        )
        .await?;
    if index == 0 {
        return Ok(body);
    }
    let error: ErrorResponse = decode(&body, stage)?;
    Err(classify_rejection(stage, error))
}

fn classify_rejection(stage: Stage, error: ErrorResponse) -> Failure {
    let reason = if error.status_code == 429 || error.error_code.contains("Throttl") {
        FailureReason::Throttled(stage)
    } else if stage == Stage::RegisterThing
        && error.status_code == 403
        && error.error_code.eq_ignore_ascii_case("AccessDenied")
    {
        FailureReason::HookDenied(HookCause::from_message(&error.error_message))
    } else {
        FailureReason::Rejected(stage, error.status_code, error.error_code.clone())
    };
    Failure::new(reason, error.error_message)
}

fn io_reason(stage: Stage, kind: std::io::ErrorKind) -> FailureReason {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::ConnectionRefused => FailureReason::ConnectionRefused(stage),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => FailureReason::ConnectionReset(stage),
        _ => FailureReason::Disconnected(stage),
    }
}

fn tls_error_label(e: &rustls::Error) -> String {
    match e {
        rustls::Error::AlertReceived(alert) => format!("{alert:?}").to_lowercase(),
        rustls::Error::InvalidCertificate(c) => format!("invalid_certificate_{c:?}")
            .to_lowercase()
            .chars()
            .take(48)
            .collect(),
        _ => "error".into(),
    }
}
