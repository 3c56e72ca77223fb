//! Device behaviour profiles: how a device's client reacts to slow, refusing and dropping
//! endpoints (timeouts, keep-alive, subscriptions, connect and whole-flow retries), as data.
//!
//! The built-ins are `profiles/*.toml`, shipped in the binary; a scenario picks one
//! (`[devices] profile = NAME`) or overrides one (`[devices.profile] base = NAME` plus fields),
//! and the scenario's plan holds the one resolved [`Profile`] every device shares.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Timeouts;
use crate::protocol::Format;
use crate::stage::FailureClass;

/// The built-in profiles, by name, as shipped (comments and sources included).
pub const BUILTINS: &[(&str, &str)] = &[
    ("generic", include_str!("../../profiles/generic.toml")),
    (
        "embedded-c-demo",
        include_str!("../../profiles/embedded-c-demo.toml"),
    ),
    (
        "crt-mqtt311",
        include_str!("../../profiles/crt-mqtt311.toml"),
    ),
    (
        "python-v2-mqtt311",
        include_str!("../../profiles/python-v2-mqtt311.toml"),
    ),
    ("crt-mqtt5", include_str!("../../profiles/crt-mqtt5.toml")),
    (
        "sdk-v2-sample",
        include_str!("../../profiles/sdk-v2-sample.toml"),
    ),
    (
        "device-client",
        include_str!("../../profiles/device-client.toml"),
    ),
    (
        "greengrass-fp",
        include_str!("../../profiles/greengrass-fp.toml"),
    ),
];

/// The profile devices follow when a scenario names none.
pub const DEFAULT: &str = "generic";

/// One device behaviour profile (`profiles/README.md` is the field table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// One line: what the profile reproduces.
    pub description: String,
    pub subscriptions: Subscriptions,
    pub payload: Format,
    /// Whether CreateCertificate's PUBACK is awaited as well as its response.
    pub await_create_certificate_puback: bool,
    /// Whether RegisterThing's PUBACK is awaited as well as its response.
    pub await_register_thing_puback: bool,
    pub jitter_seed: JitterSeed,
    pub timeouts: Timeouts,
    pub keep_alive: KeepAlive,
    pub connect_retry: ConnectRetry,
    pub flow_retry: FlowRetry,
    /// Per failure class, `retry` or `fatal`; a class not listed is fatal.
    #[serde(default)]
    pub reaction: BTreeMap<FailureClass, Reaction>,
}

/// When the provisioning response topics are subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Subscriptions {
    /// Both APIs' accepted/rejected topics once, before the first request.
    PerConnection,
    /// A step's two topics before its request, unsubscribed after its response.
    PerStep,
}

/// Where a device's jitter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JitterSeed {
    /// Seeded from the scenario seed and the device's seq: every device draws its own.
    PerDevice,
    /// Seeded from the scenario seed alone: every device draws the same sequence (firmware
    /// that never seeds `rand()`).
    Shared,
}

/// How a backoff wait is drawn from its nominal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// The nominal wait.
    None,
    /// Uniform in [0, nominal].
    Full,
    /// Uniform in [min, min(max, 3 * previous wait)].
    Decorrelated,
}

/// What a failure of a class makes the device do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reaction {
    Retry,
    Fatal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepAlive {
    /// The CONNECT keep-alive.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// How long a PINGREQ may stay unanswered before the session fails (class timeout).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ping_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRetry {
    /// Connects in all per connection (1 = no retry).
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff_min: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff_max: Duration,
    pub jitter: Jitter,
    /// A session that lasted this long starts the backoff from `backoff_min` again.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reset_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRetry {
    /// Whole-flow attempts in all (1 = no retry).
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub delay_max: Duration,
    pub jitter: Jitter,
    /// A new key and CSR (so a new certificate) per attempt in csr mode; `false` reuses the
    /// first attempt's.
    pub new_key: bool,
}

/// The n-th wait (n = 1, 2, ...) of a backoff from `min` to `max`: nominal
/// `min(max, min * 2^(n-1))`; `unit` is a uniform sample in [0, 1) and `previous` the wait
/// before (for decorrelated jitter; `min` before the first).
pub fn backoff(
    n: u32,
    (min, max): (Duration, Duration),
    jitter: Jitter,
    previous: Duration,
    unit: f64,
) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    match jitter {
        Jitter::None | Jitter::Full => {
            let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
            let nominal = min.saturating_mul(factor).min(max);
            if jitter == Jitter::Full {
                nominal.mul_f64(unit)
            } else {
                nominal
            }
        }
        Jitter::Decorrelated => {
            let top = previous.max(min).saturating_mul(3).min(max).max(min);
            min + (top - min).mul_f64(unit)
        }
    }
}

/// A uniform sample in [0, 1) from a 64-bit state (SplitMix64). Hand-written: the flow keeps
/// its jitter source inline, and 8 bytes of state cost every device's future less than any of
/// `rand`'s generators (StdRng is ~300 bytes); jitter needs no cryptographic quality.
pub fn unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (mix(*state) >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64's finaliser: a well-spread 64-bit value from any (for seeding [`unit`]).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Profile {
    /// Whether a failure of `class` is retried.
    pub fn retries(&self, class: FailureClass) -> bool {
        self.reaction.get(&class) == Some(&Reaction::Retry)
    }

    /// The wait before the whole-flow attempt after `attempt` (1-based) that failed with
    /// `class`, or `None` when the device gives up; `unit` draws a uniform sample in [0, 1)
    /// (only when the device retries).
    pub fn flow_pause(
        &self,
        class: FailureClass,
        attempt: u32,
        previous: Duration,
        unit: impl FnOnce() -> f64,
    ) -> Option<Duration> {
        let r = &self.flow_retry;
        (attempt < r.attempts && self.retries(class))
            .then(|| backoff(attempt, (r.delay, r.delay_max), r.jitter, previous, unit()))
    }

    /// The wait before connect `n + 1` after `n` connects failed with `class` (the backoff's
    /// `step`-th wait), or `None` when the connection gives up.
    pub fn connect_pause(
        &self,
        class: FailureClass,
        connects: u32,
        step: u32,
        previous: Duration,
        unit: impl FnOnce() -> f64,
    ) -> Option<Duration> {
        let r = &self.connect_retry;
        (connects < r.attempts && self.retries(class)).then(|| {
            backoff(
                step,
                (r.backoff_min, r.backoff_max),
                r.jitter,
                previous,
                unit(),
            )
        })
    }

    /// The state device `seq`'s jitter source starts from: its own (from the scenario `seed`
    /// and its seq) or, with `jitter_seed = "shared"`, the fleet's one (every device draws the
    /// same sequence).
    pub fn jitter_state(&self, seed: u64, seq: u64) -> u64 {
        match self.jitter_seed {
            JitterSeed::PerDevice => mix(seed.wrapping_add(mix(seq))),
            JitterSeed::Shared => mix(seed),
        }
    }

    /// The built-in profile `name`.
    pub fn builtin(name: &str) -> Option<Profile> {
        let table = builtin_table(name)?;
        Some(
            toml::Value::Table(table)
                .try_into()
                .expect("built-in profiles parse (a unit test holds them)"),
        )
    }

    /// The generic profile (every device's behaviour unless a scenario picks another).
    pub fn generic() -> Profile {
        Self::builtin(DEFAULT).expect("generic is built in")
    }

    /// The checks serde cannot express; messages name the field under `at`.
    pub fn check(&self, at: &str) -> Result<(), String> {
        let c = &self.connect_retry;
        let f = &self.flow_retry;
        if c.attempts == 0 {
            return Err(format!("{at}.connect_retry.attempts: must be at least 1"));
        }
        if f.attempts == 0 {
            return Err(format!("{at}.flow_retry.attempts: must be at least 1"));
        }
        if c.backoff_min > c.backoff_max {
            return Err(format!(
                "{at}.connect_retry.backoff_min: more than backoff_max"
            ));
        }
        if f.delay > f.delay_max {
            return Err(format!("{at}.flow_retry.delay: more than delay_max"));
        }
        if self.keep_alive.interval.as_secs() > u64::from(u16::MAX) {
            return Err(format!(
                "{at}.keep_alive.interval: at most 65535 s (MQTT's keep-alive field)"
            ));
        }
        if self.keep_alive.ping_timeout.is_zero() {
            return Err(format!("{at}.keep_alive.ping_timeout: must be positive"));
        }
        Ok(())
    }
}

/// The names of the built-in profiles, in their order.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

/// The shipped text of the built-in profile `name`.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn builtin_table(name: &str) -> Option<toml::Table> {
    builtin_text(name).map(|t| toml::from_str(t).expect("built-in profiles are TOML"))
}

/// "NAME is no built-in profile (the built-ins: ...)".
pub fn unknown(name: &str) -> String {
    format!(
        "{name:?} is no built-in profile (the built-ins: {})",
        names().collect::<Vec<_>>().join(", ")
    )
}

/// The profile a scenario's `[devices.profile]` table makes: its `base` (default `generic`)
/// with the table's other fields merged in (tables deeply, the rest replaced). Errors name the
/// field as `at.<field>`.
pub fn resolve(overrides: &toml::Table, at: &str) -> Result<Profile, String> {
    let base = match overrides.get("base") {
        None => DEFAULT,
        Some(toml::Value::String(name)) => name.as_str(),
        Some(other) => {
            return Err(format!(
                "{at}.base: expected the name of a built-in profile, got {}",
                other.type_str()
            ));
        }
    };
    let mut table = builtin_table(base).ok_or_else(|| format!("{at}.base: {}", unknown(base)))?;
    let mut fields = overrides.clone();
    fields.remove("base");
    merge(&mut table, fields, at)?;
    let profile: Profile = toml::Value::Table(table).try_into().map_err(|e| {
        let message = e.to_string();
        format!("{at}: {}", message.trim_end())
    })?;
    profile.check(at)?;
    Ok(profile)
}

/// Merge `over` into `into`: a field every profile has, or a reaction class. An unknown field
/// is refused here, naming its whole path (serde would name the field only).
fn merge(into: &mut toml::Table, over: toml::Table, at: &str) -> Result<(), String> {
    for (key, value) in over {
        let path = format!("{at}.{key}");
        let reaction = at.ends_with(".reaction");
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(sub)) => {
                merge(inner, sub, &path)?;
            }
            (Some(slot), value) => *slot = value,
            (None, value) if reaction => {
                if FailureClass::failed(&key).is_none() {
                    return Err(format!(
                        "{path}: no failure class {key:?} (docs/results.md, Failure reasons)"
                    ));
                }
                into.insert(key, value);
            }
            (None, _) => {
                let known: Vec<&str> = into.keys().map(String::as_str).collect();
                return Err(format!(
                    "{path}: unknown field (known here: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_parses_names_itself_and_passes_its_checks() {
        assert_eq!(BUILTINS.len(), 8);
        for (name, text) in BUILTINS {
            let table: toml::Table = toml::from_str(text).unwrap();
            let profile: Profile = toml::Value::Table(table.clone())
                .try_into()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(profile.name, *name);
            profile.check(name).unwrap();
            // Every profile sets every field, so a profile reads whole (profiles/README.md).
            for field in [
                "subscriptions",
                "payload",
                "await_create_certificate_puback",
                "await_register_thing_puback",
                "jitter_seed",
                "timeouts",
                "keep_alive",
                "connect_retry",
                "flow_retry",
                "reaction",
            ] {
                assert!(table.contains_key(field), "{name}: {field}");
            }
            assert_eq!(Profile::builtin(name), Some(profile));
        }
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"))
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                (path.extension()? == "toml").then(|| path.file_stem().unwrap().to_owned())
            })
            .count();
        assert_eq!(files, BUILTINS.len(), "every file in profiles/ is built in");
    }

    #[test]
    fn the_generic_profile_is_todays_device() {
        let g = Profile::generic();
        assert_eq!(g.timeouts.connect, Timeouts::default().connect);
        assert_eq!(
            g.timeouts.register_thing,
            Timeouts::default().register_thing
        );
        assert_eq!(g.keep_alive.interval, Duration::from_secs(30));
        assert_eq!(g.flow_retry.attempts, 1);
        assert!(g.retries(FailureClass::Throttled) && g.retries(FailureClass::Timeout));
        assert!(!g.retries(FailureClass::Rejected));
    }

    #[test]
    fn overrides_merge_into_the_base_and_errors_name_the_field() {
        let t = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
        let p = resolve(
            &t("base = \"embedded-c-demo\"\nflow_retry.attempts = 5\nreaction.rejected = \"fatal\""),
            "devices.profile",
        )
        .unwrap();
        assert_eq!(p.flow_retry.attempts, 5);
        assert_eq!(p.flow_retry.delay, Duration::from_secs(5));
        assert!(!p.retries(FailureClass::Rejected) && p.retries(FailureClass::Timeout));
        assert_eq!(resolve(&t(""), "p").unwrap(), Profile::generic());
        for (text, needle) in [
            (
                "flow_retry.attmpts = 2",
                "p.flow_retry.attmpts: unknown field",
            ),
            ("colour = 2", "p.colour: unknown field"),
            (
                "reaction.slow = \"retry\"",
                "p.reaction.slow: no failure class",
            ),
            ("base = \"nope\"", "p.base: \"nope\" is no built-in profile"),
            ("flow_retry.attempts = \"x\"", "p: invalid type"),
            ("reaction.timeout = \"maybe\"", "p: unknown variant `maybe`"),
            (
                "flow_retry.attempts = 0",
                "p.flow_retry.attempts: must be at least 1",
            ),
        ] {
            let e = resolve(&t(text), "p").unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_jitters_within_its_bounds() {
        let s = Duration::from_secs;
        let b = |n, j, u| backoff(n, (s(1), s(128)), j, s(0), u);
        let none: Vec<_> = (1..=9).map(|n| b(n, Jitter::None, 0.7).as_secs()).collect();
        assert_eq!(none, [1, 2, 4, 8, 16, 32, 64, 128, 128]);
        assert_eq!(b(3, Jitter::Full, 0.5), s(2));
        assert_eq!(b(3, Jitter::Full, 0.0), s(0));
        let d = backoff(2, (s(1), s(10)), Jitter::Decorrelated, s(2), 1.0);
        assert_eq!(d, s(6));
        let d = backoff(9, (s(1), s(10)), Jitter::Decorrelated, s(9), 1.0);
        assert_eq!(d, s(10));
        let mut state = 7;
        for _ in 0..1000 {
            let u = unit(&mut state);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
