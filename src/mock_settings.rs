//! The embedded mock's settings as plain data, shared by `scenario` (embeds) and `mock` (runs).
//!
//! Written in `fleetstorm mock --config FILE` or a scenario's `[target.mock]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pki::KeyAlgorithm;

/// Name under which the mock always offers the seed template.
pub const SEED_TEMPLATE_NAME: &str = "FleetProvisioningTemplate";

/// Mock settings as written in `fleetstorm mock --config FILE` or a scenario's `[target.mock]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MockSettings {
    /// Region and account used in ARNs (policy resources, template ARNs).
    pub region: String,
    pub account: String,
    /// Key type CreateKeysAndCertificate returns: `rsa2048` (what AWS returns) or `p256` (fast).
    pub keys: KeyAlgorithm,
    /// RSA keys kept generated ahead of demand.
    pub key_pool_size: usize,
    /// Lifetime of a certificate ownership token.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub token_ttl: Duration,
    /// Time allowed for the TLS handshake, then for the CONNECT packet.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// Extra templates: name -> JSON file (relative paths are relative to the settings file).
    pub templates: BTreeMap<String, PathBuf>,
    /// Thing groups that exist before any provisioning.
    pub thing_groups: Vec<String>,
    /// Seeded fault injection.
    pub faults: Faults,
    /// AWS quotas (off by default).
    pub quotas: QuotaSettings,
    /// Pre-provisioning hooks by template name.
    pub hooks: BTreeMap<String, HookSettings>,
    /// What the MQTT 5 endpoint says where AWS does not document it (`[mqtt5]`).
    pub mqtt5: Mqtt5Settings,
    /// What the registry keeps per provisioned device (docs/mock.md, "The registry").
    pub registry: RegistryMode,
    /// `[http]`: timeouts and the connection cap of the mock's HTTP listeners (control plane,
    /// `--metrics-listen`, the embedded hook service).
    pub http: crate::http::Limits,
    /// Directory that relative paths in hook settings are resolved against (the settings or
    /// scenario file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            keys: KeyAlgorithm::Rsa2048,
            key_pool_size: 256,
            token_ttl: Duration::from_secs(3600),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            templates: BTreeMap::new(),
            thing_groups: vec!["fleet-provisioning-group".into()],
            faults: Faults::default(),
            quotas: QuotaSettings::default(),
            hooks: BTreeMap::new(),
            mqtt5: Mqtt5Settings::default(),
            registry: RegistryMode::Full,
            http: crate::http::Limits::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

/// `[mqtt5]`: the MQTT 5 behaviour AWS leaves open. Every field is UNCONFIRMED (docs/mock.md,
/// "MQTT 5"): the defaults are our reading of AWS's MQTT page and quotas, not captured AWS
/// traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt5Settings {
    /// CONNACK Receive Maximum. UNCONFIRMED: 100, AWS's quota of in-flight unacknowledged
    /// messages per connection.
    pub receive_maximum: u16,
    /// CONNACK Topic Alias Maximum (aliases a client may set on its PUBLISHes). UNCONFIRMED: 8,
    /// AWS's default quota of topic aliases per connection.
    pub topic_alias_maximum: u16,
    /// CONNACK Maximum Packet Size, in bytes. UNCONFIRMED: 128 KB, AWS's message size limit.
    pub maximum_packet_size: u32,
    /// When the CONNACK carries Server Keep Alive. UNCONFIRMED: AWS documents the 30-1200 s
    /// clamp, not when it says so in the CONNACK.
    pub server_keep_alive: ServerKeepAlive,
    /// An unauthorized PUBLISH or SUBSCRIBE. UNCONFIRMED: AWS lists 0x87 for PUBACK, SUBACK
    /// and DISCONNECT without saying which one a policy violation gets.
    pub policy_violation: Mqtt5Refusal,
    /// A QoS 1 PUBLISH over the per-connection publish quota. UNCONFIRMED: AWS lists 0x97 for
    /// PUBACK and DISCONNECT; a QoS 0 PUBLISH over the quota is discarded as in 3.1.1.
    pub publish_over_quota: Mqtt5Refusal,
}

impl Default for Mqtt5Settings {
    fn default() -> Self {
        Mqtt5Settings {
            receive_maximum: 100,
            topic_alias_maximum: 8,
            maximum_packet_size: 128 * 1024,
            server_keep_alive: ServerKeepAlive::WhenClamped,
            policy_violation: Mqtt5Refusal::ReasonCode,
            publish_over_quota: Mqtt5Refusal::ReasonCode,
        }
    }
}

/// `[mqtt5] server_keep_alive`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKeepAlive {
    /// Only when the keep-alive the client asked for is clamped to 30-1200 s (or was 0).
    #[default]
    WhenClamped,
    Always,
    Never,
}

/// How an MQTT 5 request AWS refuses is answered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mqtt5Refusal {
    /// The refusal's reason code in the PUBACK (QoS 1) or SUBACK; the connection stays. A QoS 0
    /// PUBLISH, which has no acknowledgement, gets a DISCONNECT for a policy violation.
    #[default]
    ReasonCode,
    /// A DISCONNECT with the reason code, then the connection is closed.
    Disconnect,
}

/// What the mock's registry keeps per provisioned device.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RegistryMode {
    /// Everything AWS keeps: attributes, thing groups, the certificate PEM, who created it.
    #[default]
    Full,
    /// Only what later checks need (thing name -> certificate, certificate status, policies),
    /// so a million devices fit in a bounded budget.
    Compact,
}

/// Faults for one API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiFaults {
    /// Added before the request is handled.
    pub latency: Latency,
    /// Fraction of responses never sent.
    pub drop_response_rate: f64,
    /// Fraction of requests answered by closing the connection.
    pub disconnect_rate: f64,
    /// Fraction of requests answered with an error response.
    pub error_rate: f64,
    pub error_status: u16,
    pub error_code: String,
}

/// All faults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Seed of the fault dice (per connection: seed ^ connection number).
    pub seed: u64,
    /// Fraction of connections whose TLS handshake is never answered.
    pub tls_stall_rate: f64,
    pub create_keys: ApiFaults,
    pub create_from_csr: ApiFaults,
    pub register_thing: ApiFaults,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 1,
            tls_stall_rate: 0.0,
            create_keys: ApiFaults::default(),
            create_from_csr: ApiFaults::default(),
            register_thing: ApiFaults::default(),
        }
    }
}

/// A latency distribution, written as a string: `"200ms"` (fixed), `"50ms..300ms"` (uniform),
/// `"exp:100ms"` (exponential with that mean).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Latency {
    #[default]
    None,
    Fixed(Duration),
    Uniform(Duration, Duration),
    Exponential(Duration),
}

impl Latency {
    pub fn parse(s: &str) -> Result<Latency, String> {
        let d = |v: &str| humantime::parse_duration(v.trim()).map_err(|e| format!("{v:?}: {e}"));
        let s = s.trim();
        if s.is_empty() || s == "0" {
            return Ok(Latency::None);
        }
        if let Some(mean) = s.strip_prefix("exp:") {
            return Ok(Latency::Exponential(d(mean)?));
        }
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (d(lo)?, d(hi)?);
            if hi < lo {
                return Err(format!("{s:?}: the upper bound is below the lower bound"));
            }
            return Ok(Latency::Uniform(lo, hi));
        }
        Ok(Latency::Fixed(d(s)?))
    }
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = |d: Duration| humantime::format_duration(d).to_string();
        s.serialize_str(&match self {
            Latency::None => "0".into(),
            Latency::Fixed(d) => h(*d),
            Latency::Uniform(a, b) => format!("{}..{}", h(*a), h(*b)),
            Latency::Exponential(m) => format!("exp:{}", h(*m)),
        })
    }
}

/// A string, as [`Latency::parse`] reads it.
impl schemars::JsonSchema for Latency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Latency".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A latency distribution: \"200ms\" (fixed), \"50ms..300ms\" (uniform), \"exp:100ms\" (exponential with that mean), \"0\" (none)."
        })
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Latency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Quota settings. Off by default: fleetstorm's default job is measuring throughput, and AWS's
/// defaults would cap every run at 10 devices/s. `enabled = true` applies the AWS defaults below.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaSettings {
    pub enabled: bool,
    /// Requests per second; 0 switches one quota off.
    pub create_keys_per_s: f64,
    pub create_from_csr_per_s: f64,
    pub register_thing_per_s: f64,
    pub connect_per_s: f64,
    pub connect_per_client_id_per_s: f64,
    pub publish_per_connection_per_s: f64,
    /// Control-plane (REST) calls per second, all operations together. UNCONFIRMED: AWS sets a
    /// rate per operation (about 10 to a few hundred TPS); one bucket at 10 stands for them all.
    pub control_plane_per_s: f64,
    /// Bucket size as seconds of rate (1.0: a full second's worth may arrive at once).
    pub burst_seconds: f64,
    /// The rejected response for an over-quota API call. UNCONFIRMED: AWS publishes no captured
    /// throttled response; 429 / ThrottlingException is a guess.
    pub throttle_status: u16,
    pub throttle_error_code: String,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            enabled: false,
            create_keys_per_s: 10.0,
            create_from_csr_per_s: 100.0,
            register_thing_per_s: 10.0,
            connect_per_s: 500.0,
            connect_per_client_id_per_s: 1.0,
            publish_per_connection_per_s: 100.0,
            control_plane_per_s: 10.0,
            burst_seconds: 1.0,
            throttle_status: 429,
            throttle_error_code: "ThrottlingException".into(),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    #[default]
    None,
    SerialPrefix,
    AllowList,
    DenyFraction,
    Command,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CommandMode {
    PythonLambda,
    JsonStdio,
}

/// `[hooks.<TemplateName>]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HookSettings {
    pub kind: HookKind,
    /// Parameter the built-in rules look at.
    pub parameter: Option<String>,
    pub prefix: Option<String>,
    pub file: Option<PathBuf>,
    pub fraction: f64,
    pub seed: u64,
    pub command: Vec<String>,
    pub mode: Option<CommandMode>,
    pub handler: String,
    pub workers: usize,
    pub url: Option<String>,
    pub latency: Latency,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub deadline: Duration,
    pub deny_status: u16,
    pub deny_error_code: String,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            kind: HookKind::None,
            parameter: None,
            prefix: None,
            file: None,
            fraction: 0.0,
            seed: 1,
            command: Vec::new(),
            mode: None,
            handler: "lambda_handler".into(),
            workers: 4,
            url: None,
            latency: Latency::None,
            deadline: Duration::from_secs(5),
            deny_status: 403,
            deny_error_code: "AccessDenied".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mqtt5_table_parses_and_a_bad_value_names_its_field() {
        let s: MockSettings = toml::from_str(
            "[mqtt5]\npolicy_violation = \"disconnect\"\nserver_keep_alive = \"always\"\n",
        )
        .unwrap();
        assert_eq!(s.mqtt5.policy_violation, Mqtt5Refusal::Disconnect);
        assert_eq!(s.mqtt5.server_keep_alive, ServerKeepAlive::Always);
        assert_eq!(s.mqtt5.publish_over_quota, Mqtt5Refusal::ReasonCode);
        assert_eq!(s.mqtt5.topic_alias_maximum, 8);
        let e = toml::from_str::<MockSettings>("[mqtt5]\npolicy_violation = \"ignore\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("policy_violation") || e.contains("ignore"),
            "{e}"
        );
    }
    #[test]
    fn the_seed_template_name_is_the_one_the_mock_offers() {
        assert_eq!(
            super::SEED_TEMPLATE_NAME,
            crate::iot::template::SEED_TEMPLATE_NAME
        );
    }
}
