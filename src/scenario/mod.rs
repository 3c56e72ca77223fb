//! The scenario model: what a scenario file says (target, devices, retries, timeouts, schedule).
//!
//! Reading it, validating it and building its [`Plan`] (what a run takes: the scenario
//! compiled once) live in `load`, the plan in `plan`, phases in `schedule` (their arrivals,
//! generated lazily, in `arrivals`), generators in `patterns`.

mod arrivals;
mod load;
mod patterns;
mod phase;
mod plan;
mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::{CertificateMode, Classify, FailureClass};
use crate::mock_settings::MockSettings;
use crate::pki::KeyAlgorithm;

pub use crate::metrics::Analysis;
pub use arrivals::Arrivals;
pub use load::{apply_set, parse_thresholds};
pub use patterns::{MAX_RUN_ID, Pattern, new_run_id, run_id_from_bytes, valid_run_id};
pub use phase::{Phase, Ramp, RampStage};
#[cfg(test)]
pub(crate) use plan::of_toml;
pub use plan::{Plan, PlannedPhase};
pub use schedule::{Executor, PhaseSpec};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name used for the results folder; defaults to the file stem.
    #[serde(default)]
    pub name: String,
    /// Seed for every random choice (generators, jitter): same seed, same devices.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub target: Target,
    pub devices: Devices,
    /// Phases run one after another.
    pub schedule: Vec<PhaseSpec>,
    /// Devices allowed in flight at once; arrivals beyond it are dropped and counted.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// k6-style pass/fail expressions, e.g. `"register_thing.p99 < 800ms"`.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// How the throttle-limit analysis judges a rate level.
    #[serde(default)]
    pub analysis: Analysis,
    /// Variants run one after another on the same schedule, each with a fresh mock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// Set when this scenario is one variant of a comparison.
    #[serde(skip)]
    pub variant: Option<String>,
}

/// `[[variants]]`: a name and `path = value` overrides (any field, as with `--set`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub set: toml::Table,
}

fn default_seed() -> u64 {
    1
}
fn default_max_in_flight() -> usize {
    1000
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[schemars(transform = kind_defaults_to_mock)]
pub enum Target {
    /// The embedded mock, started in process on a loopback port.
    Mock {
        #[serde(default)]
        mock: Box<MockSettings>,
        /// PKI directory (created when missing); default: a fresh temporary one per run.
        #[serde(default)]
        pki: Option<PathBuf>,
        /// Which rejection codes count as throttled / hook denied.
        #[serde(default, skip_serializing_if = "Classify::is_default")]
        classify: Classify,
    },
    /// A real endpoint (AWS IoT Core or a separately started `fleetstorm mock`).
    Endpoint {
        host: String,
        #[serde(default = "default_port")]
        port: u16,
        /// Offer ALPN `x-amzn-mqtt-ca` (needed on port 443).
        #[serde(default)]
        alpn: Option<bool>,
        ca: PathBuf,
        claim_cert: PathBuf,
        claim_key: PathBuf,
        /// The AWS account ID (12 digits), when known (`fleetstorm aws setup` writes it): shown by
        /// the remote-run guard and used for certificate ARNs in `created.csv`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        /// Run against this non-loopback endpoint without `--yes`.
        #[serde(default)]
        confirm_remote: bool,
        /// Which rejection codes count as throttled / hook denied.
        #[serde(default, skip_serializing_if = "Classify::is_default")]
        classify: Classify,
    },
}

/// `[target]` without `kind` is the embedded mock (the loader adds `kind = "mock"`): the mock
/// variant's schema does not require it.
fn kind_defaults_to_mock(schema: &mut schemars::Schema) {
    let variants = schema.get_mut("oneOf").and_then(|v| v.as_array_mut());
    for variant in variants.into_iter().flatten() {
        let is_mock = variant.pointer("/properties/kind/const") == Some(&"mock".into());
        let Some(object) = variant.as_object_mut().filter(|_| is_mock) else {
            continue;
        };
        if let Some(list) = object.get_mut("required").and_then(|r| r.as_array_mut()) {
            list.retain(|k| k != "kind");
            if list.is_empty() {
                object.remove("required");
            }
        }
    }
}

fn default_port() -> u16 {
    8883
}

impl Default for Target {
    fn default() -> Self {
        Target::Mock {
            mock: Box::default(),
            pki: None,
            classify: Classify::default(),
        }
    }
}

impl Target {
    pub fn classify(&self) -> &Classify {
        match self {
            Target::Mock { classify, .. } | Target::Endpoint { classify, .. } => classify,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    /// Devices planned in total (the schedule stops when they have all arrived).
    pub count: u64,
    /// Client ID pattern; must make IDs unique (use `{seq}` or `{uuid}`).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_template")]
    pub template: String,
    /// Template parameters: name -> pattern with generators.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub certificate: CertificateMode,
    /// Key type of device-generated keys in `csr` mode.
    #[serde(default)]
    pub csr_key: KeyAlgorithm,
    /// MQTT version: `mqtt311` (default) or `mqtt5`.
    #[serde(default)]
    pub protocol: crate::device::Protocol,
    /// Provisioning API payloads: `json` (default) or `cbor` (the `…/cbor` topics).
    #[serde(default)]
    pub payload: crate::protocol::Format,
    #[serde(default)]
    pub timeouts: crate::device::Timeouts,
    #[serde(default)]
    pub retry: RetrySettings,
    /// After registration: `disconnect` (default), `stay` connected, or publish `telemetry`.
    #[serde(default)]
    pub after: crate::device::After,
}

/// Whole-flow retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before attempt n+1 is uniform in [0, min(max_delay, base_delay * 2^(n-1))].
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_delay: Duration,
    /// Failure classes that are retried (docs/results.md, "Failure reasons").
    pub on: Vec<FailureClass>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 1,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            on: vec![FailureClass::Throttled, FailureClass::Timeout],
        }
    }
}

impl RetrySettings {
    /// The backoff before the attempt after `attempt` (1-based), given a uniform sample in [0, 1).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        exp.min(self.max_delay).mul_f64(unit.clamp(0.0, 1.0))
    }

    pub fn retries(&self, class: FailureClass, attempt: u32) -> bool {
        attempt < self.max_attempts && self.on.contains(&class)
    }
}

fn default_client_id() -> String {
    "fleetstorm-{seq:06}".into()
}
fn default_template() -> String {
    crate::mock_settings::SEED_TEMPLATE_NAME.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let r = RetrySettings {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            on: vec![FailureClass::Throttled],
        };
        assert_eq!(r.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(r.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(r.backoff(9, 1.0), Duration::from_secs(1));
        assert_eq!(r.backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(r.backoff(3, 0.0), Duration::ZERO);
        assert!(r.retries(FailureClass::Throttled, 4));
        assert!(!r.retries(FailureClass::Throttled, 5));
        assert!(!r.retries(FailureClass::HookDenied, 1));
    }
}
