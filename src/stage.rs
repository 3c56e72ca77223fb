//! The flow's stage names, per-stage timings and outcome classes, shared by `device` (which
//! records them), `scenario` (whose retries name classes) and `metrics`, `live` and `output`
//! (which count them).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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

/// One completed stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTime {
    pub stage: Stage,
    pub service: Duration,
    pub ended: Instant,
    /// When the stage was due, for a stage with its own schedule (a telemetry publish): its
    /// latency runs from here. `None`: from the device's intended start.
    pub due: Option<Instant>,
}

impl StageTime {
    /// A stage that ran from `started` to `ended`.
    pub fn between(stage: Stage, started: Instant, ended: Instant) -> StageTime {
        StageTime {
            stage,
            service: ended.saturating_duration_since(started),
            ended,
            due: None,
        }
    }

    /// A stage due at `due` (its own schedule) that ran from `started` to `ended`.
    pub fn scheduled(stage: Stage, due: Instant, started: Instant, ended: Instant) -> StageTime {
        StageTime {
            due: Some(due),
            ..StageTime::between(stage, started, ended)
        }
    }
}

/// What a device's attempt came to when it did not provision: the class of its failure (its
/// label without stage or code), or `Dropped`, an arrival that never started (the in-flight cap
/// was reached). Names (`as_str`) are stable: `devices.retry.on`, the `failed_<class>` columns
/// of timeseries.csv and the rate levels count by them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    TlsHandshake,
    ConnectionRefused,
    ConnectionReset,
    ConnackRefused,
    SubscribeRefused,
    Rejected,
    Throttled,
    HookDenied,
    Timeout,
    Disconnected,
    MalformedResponse,
    LocalError,
    Aborted,
    PubackRefused,
    Dns,
    /// Never started: not a failure of the device, so not among [`FailureClass::FAILED`]
    /// (last, so the others keep their column order).
    #[serde(skip_deserializing)]
    Dropped,
}

impl FailureClass {
    /// Every class, in declaration order (a test holds it complete).
    pub const ALL: [FailureClass; 16] = [
        FailureClass::TlsHandshake,
        FailureClass::ConnectionRefused,
        FailureClass::ConnectionReset,
        FailureClass::ConnackRefused,
        FailureClass::SubscribeRefused,
        FailureClass::Rejected,
        FailureClass::Throttled,
        FailureClass::HookDenied,
        FailureClass::Timeout,
        FailureClass::Disconnected,
        FailureClass::MalformedResponse,
        FailureClass::LocalError,
        FailureClass::Aborted,
        FailureClass::PubackRefused,
        FailureClass::Dns,
        FailureClass::Dropped,
    ];

    /// The classes of devices that started and failed (timeseries.csv's `failed_<class>`
    /// columns, in this order): all but `Dropped`.
    pub const FAILED: &[FailureClass] = Self::ALL.split_last().expect("not empty").1;

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::TlsHandshake => "tls_handshake",
            FailureClass::ConnectionRefused => "connection_refused",
            FailureClass::ConnectionReset => "connection_reset",
            FailureClass::ConnackRefused => "connack_refused",
            FailureClass::SubscribeRefused => "subscribe_refused",
            FailureClass::Rejected => "rejected",
            FailureClass::Throttled => "throttled",
            FailureClass::HookDenied => "hook_denied",
            FailureClass::Timeout => "timeout",
            FailureClass::Disconnected => "disconnected",
            FailureClass::MalformedResponse => "malformed_response",
            FailureClass::LocalError => "local_error",
            FailureClass::Aborted => "aborted",
            FailureClass::PubackRefused => "puback_refused",
            FailureClass::Dns => "dns",
            FailureClass::Dropped => "dropped",
        }
    }

    /// The failure class named `name` (`None` for other names and for `dropped`).
    pub fn failed(name: &str) -> Option<FailureClass> {
        Self::FAILED.iter().copied().find(|c| c.as_str() == name)
    }
}

impl PartialEq<&str> for FailureClass {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_classes_are_all_listed_once_and_named_as_serde_names_them() {
        for (i, class) in FailureClass::ALL.into_iter().enumerate() {
            // Declaration order: the discriminants 0..16 each appear, so none is missing.
            assert_eq!(class as usize, i, "{class:?}");
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
        }
        assert_eq!(FailureClass::FAILED.len(), FailureClass::ALL.len() - 1);
        assert!(!FailureClass::FAILED.contains(&FailureClass::Dropped));
        assert_eq!(FailureClass::failed("dns"), Some(FailureClass::Dns));
        assert_eq!(FailureClass::failed("dropped"), None);
        assert!(serde_json::from_str::<FailureClass>("\"dropped\"").is_err());
        assert!(serde_json::from_str::<FailureClass>("\"throttled\"").is_ok());
    }
}
