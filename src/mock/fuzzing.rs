//! The mock's side of the fuzz entry points ([`crate::fuzzing`]): a real mock (its own PKI,
//! built once per process) serving one session or one API request made of the fuzzer's bytes.
//! Each input gets a fresh mock, so inputs do not see each other's registry and memory stays
//! bounded however long the fuzzer runs.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::provisioning::{self, Job, Requester, Response};
use super::{MockConfig, MockHandle, MockSettings, load_template, session};
use crate::pki::{self, KeyAlgorithm, Pki};
use crate::protocol::{
    Api, CreateCertificateFromCsrResponse, CreateKeysAndCertificateResponse, ErrorResponse, Format,
    RegisterThingResponse, RequestTopic,
};

/// An ownership token every fuzzed mock starts with (for a pending certificate
/// [`PENDING_CERTIFICATE_ID`]), so a RegisterThing request can get past the token check: an
/// input cannot know the tokens the mock hands out. As long as a real one.
pub const TOKEN: &str = "TOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKENTOKE";

/// The certificate behind [`TOKEN`].
pub const PENDING_CERTIFICATE_ID: &str =
    "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// Client ID of the CONNECT the session harness writes when the input asks for one.
pub const CLIENT_ID: &str = "fuzz-client";

/// The PKI every fuzzed mock uses: P-256, created once per process in a temporary directory that
/// is removed at once (everything the mock needs is in memory; it writes nothing back with
/// P-256 keys and no registry file).
pub fn pki() -> Arc<Pki> {
    static PKI: OnceLock<Arc<Pki>> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory for the fuzzing PKI");
        let (pki, _) =
            Pki::init(&dir.path().join("pki"), &[], KeyAlgorithm::P256).expect("fuzzing PKI");
        Arc::new(pki)
    })
    .clone()
}

/// Runs `f` on this thread's single-threaded runtime (one per fuzzing thread, built once).
fn block_on<F: Future>(f: F) -> F::Output {
    thread_local! {
        static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
    }
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        });
        rt.block_on(f)
    })
}

/// A fresh mock on the fuzzing PKI: P-256 keys (no background generators), no control plane,
/// and a pending certificate whose token is [`TOKEN`].
async fn start_mock() -> MockHandle {
    let settings = MockSettings {
        keys: KeyAlgorithm::P256,
        key_pool_size: 0,
        ..MockSettings::default()
    };
    let mut config = MockConfig::new(pki(), settings).expect("mock configuration");
    config.control = None;
    // The PKI's directory is gone (everything is in memory): no journal, no registry.json.
    config.persist_registry = false;
    config.write_registry = false;
    let listener = super::listen((std::net::Ipv4Addr::LOCALHOST, 0).into()).expect("listener");
    let handle = super::start(config, listener, CancellationToken::new())
        .await
        .expect("mock start");
    handle.state.registry.add_pending_certificate(
        PENDING_CERTIFICATE_ID,
        "",
        &claim_certificate_id(&handle),
        TOKEN,
        Duration::from_secs(3600),
    );
    handle
}

/// The certificate ID the claim certificate connects with.
fn claim_certificate_id(handle: &MockHandle) -> String {
    pki::certificate_id(handle.pki.claim_cert_der.as_ref())
}

/// One MQTT session on a fresh mock: `input[0]` chooses how, the rest is what the client sends
/// after the TLS handshake. Bit 0 set: the harness sends a valid MQTT 3.1.1 CONNECT (client ID
/// [`CLIENT_ID`]) before the rest; clear: the rest starts with the client's own CONNECT.
/// Bits 1-2, the certificate the client presents: 0 (or 3) the claim certificate, 1 one the mock
/// never issued (the CONNECT is refused), 2 a device certificate whose policy allows everything
/// (so any topic gets past authorization). Bit 3: the harness's CONNECT is MQTT 5 (protocol
/// level 5) instead of 3.1.1. Bits 4-7 are free.
/// The client half-closes after its bytes, once the mock has had the chance to answer what it
/// read; the session then ends as it would on a real connection. Everything the mock sent must
/// be well-formed MQTT of the CONNECT's version (3.1.1 or 5), starting with a CONNACK; it is
/// returned.
pub fn mqtt_session(input: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = input.split_first() else {
        return Vec::new();
    };
    let mut bytes = BytesMut::new();
    if mode & 1 != 0 {
        let written = if mode & 8 != 0 {
            let connect = rumqttc::v5::mqttbytes::v5::Connect {
                keep_alive: 60,
                client_id: CLIENT_ID.into(),
                clean_start: true,
                properties: None,
            };
            connect
                .write(&None, &None, &mut bytes)
                .map(drop)
                .map_err(drop)
        } else {
            rumqttc::Connect::new(CLIENT_ID)
                .write(&mut bytes)
                .map(drop)
                .map_err(drop)
        };
        if written.is_err() {
            return Vec::new();
        }
    }
    bytes.put_slice(rest);
    let v5 = session::connect_protocol_level(&bytes) == Some(5);
    block_on(async {
        let handle = start_mock().await;
        let cert_id = match (mode >> 1) & 3 {
            1 => "0".repeat(64),
            2 => add_device_certificate(&handle),
            _ => claim_certificate_id(&handle),
        };
        let (client, server) = tokio::io::duplex(64 * 1024);
        let shutdown = CancellationToken::new();
        let serve = session::serve_established(handle.state.clone(), server, cert_id, shutdown);
        let ((), sent) = tokio::join!(serve, client_side(client, &bytes));
        handle.stop().await;
        if v5 {
            check_sent_v5(&sent);
        } else {
            check_sent(&sent);
        }
        sent
    })
}

/// Everything the mock sent parses as MQTT 3.1.1 packets, the first a CONNACK.
fn check_sent(sent: &[u8]) {
    let mut buf = BytesMut::from(sent);
    let mut first = true;
    while !buf.is_empty() {
        match rumqttc::Packet::read(&mut buf, usize::MAX) {
            Ok(packet) => assert!(
                !first || matches!(packet, rumqttc::Packet::ConnAck(_)),
                "the mock's first packet is {packet:?}"
            ),
            Err(e) => panic!("the mock sent a malformed packet ({e}): {sent:?}"),
        }
        first = false;
    }
}

/// Everything the mock sent is whole MQTT 5 frames (fixed header and remaining length agree),
/// the first a CONNACK that rumqttc's MQTT 5 reader accepts. Frames only: rumqttc 0.25's MQTT 5
/// reader refuses some DISCONNECT forms the specification allows (docs/mock.md, "MQTT 5").
fn check_sent_v5(sent: &[u8]) {
    use rumqttc::v5::mqttbytes::v5::{self, Packet};
    let mut buf = BytesMut::from(sent);
    let mut first = true;
    while !buf.is_empty() {
        let header = match v5::check(buf.iter(), None) {
            Ok(header) => header,
            Err(e) => panic!("the mock sent a malformed MQTT 5 frame ({e}): {sent:?}"),
        };
        let frame = buf.split_to(header.frame_length());
        if first {
            let packet = Packet::read(&mut BytesMut::from(&frame[..]), None);
            assert!(
                matches!(packet, Ok(Packet::ConnAck(_))),
                "the mock's first MQTT 5 packet is {packet:?}"
            );
        }
        first = false;
    }
}

/// Registers an active device certificate whose one policy allows every action on every
/// resource; returns its ID.
fn add_device_certificate(handle: &MockHandle) -> String {
    let id = "d".repeat(64);
    let json = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    });
    let doc = super::PolicyDocument::parse(&json).expect("allow-all policy");
    let registry = &handle.state.registry;
    registry.add_policy("fuzz-allow-all", doc, json);
    registry.add_certificate(&id, super::CertificateStatus::Active, &["fuzz-allow-all"]);
    id
}

/// Writes `bytes`, lets the session and its provisioning worker answer what they read, then
/// half-closes, while reading everything the mock sends (returned).
async fn client_side(client: DuplexStream, bytes: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = tokio::io::split(client);
    let send = async {
        let _ = wr.write_all(bytes).await;
        // Not a synchronisation point, only coverage: on this single-threaded runtime each
        // yield runs the session and the worker once, so responses get delivered before EOF.
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
        let _ = wr.shutdown().await;
    };
    let drain = async {
        let mut sent = Vec::new();
        let _ = rd.read_to_end(&mut sent).await;
        sent
    };
    tokio::join!(send, drain).1
}

/// One fleet-provisioning API request answered by a fresh mock, as a claim connection would
/// have it answered: `input[0]` chooses the API (bits 0-1: 0 CreateKeysAndCertificate,
/// 1 CreateCertificateFromCsr, 2 and 3 RegisterThing), the payload format (bit 2: CBOR) and, for
/// RegisterThing, the template (bit 3: one the mock does not have); the rest is the payload
/// (with [`TOKEN`] a RegisterThing request is accepted). Every answer must be a well-formed
/// response on the request's accepted or rejected topic.
pub fn provisioning_request(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let format = if mode & 4 != 0 {
        Format::Cbor
    } else {
        Format::Json
    };
    let template = if mode & 8 != 0 {
        "NoSuchTemplate"
    } else {
        crate::iot::template::SEED_TEMPLATE_NAME
    };
    let request = match mode & 3 {
        0 => RequestTopic::create_keys(format),
        1 => RequestTopic::create_from_csr(format),
        _ => RequestTopic::register_thing(template, format),
    };
    block_on(async {
        let handle = start_mock().await;
        let state = handle.state.clone();
        let claim = claim_certificate_id(&handle);
        let requester = Requester {
            client_id: CLIENT_ID,
            claim_certificate_id: &claim,
            connection: 1,
        };
        let job = Job {
            request: request.clone(),
            payload: Bytes::copy_from_slice(rest),
        };
        let response = provisioning::answer(&state, &requester, &mut None, job).await;
        let Some(Response::Publish { topic, payload }) = response else {
            panic!("no fault is configured, yet the request got no answer");
        };
        if topic == request.rejected() {
            let error: ErrorResponse = format
                .decode(&payload)
                .unwrap_or_else(|e| panic!("rejected response does not decode: {e}"));
            assert!(
                (400..600).contains(&error.status_code),
                "rejection status {}",
                error.status_code
            );
        } else {
            assert_eq!(topic, request.accepted());
            let decoded = match request.api {
                Api::CreateKeysAndCertificate => format
                    .decode::<CreateKeysAndCertificateResponse>(&payload)
                    .map(drop),
                Api::CreateCertificateFromCsr => format
                    .decode::<CreateCertificateFromCsrResponse>(&payload)
                    .map(drop),
                Api::RegisterThing => format.decode::<RegisterThingResponse>(&payload).map(drop),
            };
            decoded.unwrap_or_else(|e| panic!("accepted response does not decode: {e}"));
        }
        handle.stop().await;
    });
}

/// A template body as the mock loads one (name check, structure, inline policy documents).
pub fn load_template_text(text: &str) -> Result<Arc<super::Template>, super::MockError> {
    let arn = crate::iot::policy::ArnContext::new("us-east-1", "123456789012");
    load_template("FuzzTemplate", "fuzz input", text, &arn)
}
