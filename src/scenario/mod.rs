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
    /// The device behaviour profile: a built-in's name (default `generic`), or a table with
    /// `base` (a built-in, default `generic`) and overrides of any profile field
    /// (docs/profiles.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileChoice>,
    /// Provisioning API payloads: `json` or `cbor` (the `…/cbor` topics); default: the
    /// profile's (`json` for `generic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<crate::protocol::Format>,
    /// Per-stage timeouts; a field given here overrides the profile's.
    #[serde(default)]
    pub timeouts: TimeoutOverrides,
    /// The generic profile's whole-flow retry (with another profile: its `flow_retry` and
    /// `reaction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySettings>,
    /// After registration: `disconnect` (default), `stay` connected, or publish `telemetry`.
    #[serde(default)]
    pub after: crate::device::After,
}

/// `[devices] profile`: a built-in's name or a table of overrides on a `base`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ProfileChoice {
    Name(String),
    Custom(#[schemars(with = "BTreeMap<String, serde_json::Value>")] toml::Table),
}

/// `[devices.timeouts]`: each field given overrides the profile's `timeouts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutOverrides {
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub connect: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub subscribe: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub create_certificate: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub register_thing: Option<Duration>,
}

impl TimeoutOverrides {
    /// `timeouts` with the fields given here in place of theirs.
    pub fn apply(&self, timeouts: &mut crate::device::Timeouts) {
        for (over, slot) in [
            (self.connect, &mut timeouts.connect),
            (self.subscribe, &mut timeouts.subscribe),
            (self.create_certificate, &mut timeouts.create_certificate),
            (self.register_thing, &mut timeouts.register_thing),
        ] {
            if let Some(d) = over {
                *slot = d;
            }
        }
    }
}

/// Whole-flow retries with exponential backoff and full jitter: the generic profile's
/// `flow_retry` and `reaction` under their older names.
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
    /// These settings in `profile`: max_attempts is `flow_retry.attempts`, base_delay
    /// `delay`, max_delay `delay_max`, full jitter, and `on` the classes whose reaction is
    /// `retry` (every other class fatal).
    pub fn apply(&self, profile: &mut crate::device::Profile) {
        let r = &mut profile.flow_retry;
        r.attempts = self.max_attempts;
        r.delay = self.base_delay;
        r.delay_max = self.max_delay;
        r.jitter = crate::device::Jitter::Full;
        profile.reaction = self
            .on
            .iter()
            .map(|c| (*c, crate::device::Reaction::Retry))
            .collect();
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
    fn retry_settings_are_the_generic_profiles_flow_retry_with_full_jitter() {
        let r = RetrySettings {
            max_attempts: 9,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            on: vec![FailureClass::Throttled],
        };
        let mut p = crate::device::Profile::generic();
        r.apply(&mut p);
        let pause = |class, attempt, unit| p.flow_pause(class, attempt, Duration::ZERO, || unit);
        let ms = Duration::from_millis;
        assert_eq!(pause(FailureClass::Throttled, 1, 1.0), Some(ms(100)));
        assert_eq!(pause(FailureClass::Throttled, 3, 1.0), Some(ms(400)));
        assert_eq!(pause(FailureClass::Throttled, 3, 0.5), Some(ms(200)));
        assert_eq!(pause(FailureClass::Throttled, 3, 0.0), Some(Duration::ZERO));
        assert_eq!(
            pause(FailureClass::Throttled, 5, 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(pause(FailureClass::Throttled, 9, 1.0), None);
        assert_eq!(pause(FailureClass::Timeout, 1, 1.0), None);
    }
}
