//! The failure taxonomy: [`FailureReason`] with its stable labels, and how rejections, I/O and
//! TLS errors map onto it.

use std::io;

use super::rules::{Class, Rules};
use crate::protocol::ErrorResponse;
use crate::stage::{FailureClass, Stage};

/// Why a device failed. Labels (`label()`) are stable: they key CSV columns and counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// TLS handshake failed (the alert or error, abbreviated).
    TlsHandshake(Stage, String),
    ConnectionRefused(Stage),
    ConnectionReset(Stage),
    /// CONNACK with a non-zero return code (MQTT 3.1.1; labelled in decimal).
    ConnackRefused(Stage, u8),
    /// MQTT 5 CONNACK with a reason code of 0x80 or more (labelled in hex, as AWS documents them).
    ConnackReason(Stage, u8),
    /// SUBACK with a failure return code (MQTT 3.1.1: 0x80, which carries no reason).
    SubscribeRefused,
    /// MQTT 5 SUBACK with a failure reason code.
    SubscribeReason(u8),
    /// MQTT 5 PUBACK with a failure reason code (a QoS 1 publish the endpoint refused).
    PubackRefused(Stage, u8),
    /// `…/rejected` with statusCode and errorCode.
    Rejected(Stage, u16, String),
    Throttled(Stage),
    /// RegisterThing refused by the pre-provisioning hook (AWS: ACCESS_DENIED), with the cause
    /// when the message names one (deny, hook error, malformed hook output, hook timeout).
    HookDenied(HookCause),
    Timeout(Stage),
    Disconnected(Stage),
    /// MQTT 5: the endpoint sent DISCONNECT with this reason code, then closed.
    DisconnectedBy(Stage, u8),
    /// The endpoint's host name did not resolve.
    Dns(Stage),
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
            FailureReason::ConnackReason(s, c) => {
                format!("connack_refused.{}.{c:#04x}", s.as_str())
            }
            FailureReason::SubscribeRefused => "subscribe_refused".into(),
            FailureReason::SubscribeReason(c) => format!("subscribe_refused.{c:#04x}"),
            FailureReason::PubackRefused(s, c) => format!("puback_refused.{}.{c:#04x}", s.as_str()),
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
            FailureReason::DisconnectedBy(s, c) => {
                format!("disconnected.{}.{c:#04x}", s.as_str())
            }
            FailureReason::Dns(s) => format!("dns.{}", s.as_str()),
            FailureReason::MalformedResponse(s) => format!("malformed_response.{}", s.as_str()),
            FailureReason::Local(s) => format!("local_error.{}", s.as_str()),
            FailureReason::Aborted => "aborted".into(),
        }
    }

    /// The failure class without stage or code (timeseries columns, retries, rate levels).
    pub fn class(&self) -> FailureClass {
        match self {
            FailureReason::TlsHandshake(..) => FailureClass::TlsHandshake,
            FailureReason::ConnectionRefused(_) => FailureClass::ConnectionRefused,
            FailureReason::ConnectionReset(_) => FailureClass::ConnectionReset,
            FailureReason::ConnackRefused(..) | FailureReason::ConnackReason(..) => {
                FailureClass::ConnackRefused
            }
            FailureReason::SubscribeRefused | FailureReason::SubscribeReason(_) => {
                FailureClass::SubscribeRefused
            }
            FailureReason::PubackRefused(..) => FailureClass::PubackRefused,
            FailureReason::Rejected(..) => FailureClass::Rejected,
            FailureReason::Throttled(_) => FailureClass::Throttled,
            FailureReason::HookDenied(_) => FailureClass::HookDenied,
            FailureReason::Timeout(_) => FailureClass::Timeout,
            FailureReason::Disconnected(_) | FailureReason::DisconnectedBy(..) => {
                FailureClass::Disconnected
            }
            FailureReason::Dns(_) => FailureClass::Dns,
            FailureReason::MalformedResponse(_) => FailureClass::MalformedResponse,
            FailureReason::Local(_) => FailureClass::LocalError,
            FailureReason::Aborted => FailureClass::Aborted,
        }
    }
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
    /// The `…/rejected` payload as received (its codes go to failures.csv as they are, since
    /// how AWS's codes map to classes is partly guessed).
    pub rejection: Option<Box<ErrorResponse>>,
}

impl Failure {
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            detail: detail.into(),
            rejection: None,
        }
    }
}

/// A `…/rejected` response: throttled, refused by the hook, or rejected with its codes, as
/// `rules` (the scenario's `[target.classify]`) say.
pub(super) fn rejection(stage: Stage, error: ErrorResponse, rules: &Rules) -> Failure {
    let class = rules.class(
        error.status_code,
        &error.error_code,
        stage == Stage::RegisterThing,
    );
    let reason = match class {
        Class::Throttled => FailureReason::Throttled(stage),
        Class::HookDenied => {
            FailureReason::HookDenied(HookCause::from_message(&error.error_message))
        }
        Class::Rejected => {
            FailureReason::Rejected(stage, error.status_code, error.error_code.clone())
        }
    };
    Failure {
        reason,
        detail: error.error_message.clone(),
        rejection: Some(Box::new(error)),
    }
}

pub(super) fn io_reason(stage: Stage, kind: io::ErrorKind) -> FailureReason {
    use io::ErrorKind;
    match kind {
        ErrorKind::ConnectionRefused => FailureReason::ConnectionRefused(stage),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => FailureReason::ConnectionReset(stage),
        _ => FailureReason::Disconnected(stage),
    }
}

/// An I/O error before CONNACK: a TLS error is a handshake failure (with TLS 1.3 a refused
/// client certificate arrives as an alert on the first read), anything else a transport one.
pub(super) fn handshake_failure(stage: Stage, e: io::Error) -> Failure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(inner) => Failure::new(
            FailureReason::TlsHandshake(stage, tls_error_label(inner)),
            e.to_string(),
        ),
        None => Failure::new(io_reason(stage, e.kind()), e.to_string()),
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
