//! The flow's stage names and per-stage timings, shared by `device` (which records them) and
//! `metrics`, `live` and `output` (which count them).

use std::time::{Duration, Instant};

use serde::Serialize;

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
