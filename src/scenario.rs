//! Scenario files: the TOML model, validation with errors naming file, line and field, per-device
//! parameter generators, and arrival schedules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::CertificateMode;
use crate::mock::MockSettings;
use crate::pki::KeyAlgorithm;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub set: toml::Table,
}

/// A rate level is sustainable when at most `max_throttled_fraction` of its arrivals were
/// throttled and completions reached `min_completion_ratio` of the offered rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    pub max_throttled_fraction: f64,
    pub min_completion_ratio: f64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_throttled_fraction: 0.01,
            min_completion_ratio: 0.9,
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_max_in_flight() -> usize {
    1000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// The embedded mock, started in process on a loopback port.
    Mock {
        #[serde(default)]
        mock: Box<MockSettings>,
        /// PKI directory (created when missing); default: a fresh temporary one per run.
        #[serde(default)]
        pki: Option<PathBuf>,
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
    },
}

fn default_port() -> u16 {
    8883
}

impl Default for Target {
    fn default() -> Self {
        Target::Mock {
            mock: Box::default(),
            pki: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    /// After registration: `disconnect` (default), `stay` connected, or publish `telemetry`.
    #[serde(default)]
    pub after: crate::device::After,
}

/// Whole-flow retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before attempt n+1 is uniform in [0, min(max_delay, base_delay * 2^(n-1))].
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Failure classes that are retried (see the README's failure taxonomy).
    pub on: Vec<String>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 1,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            on: vec!["throttled".into(), "timeout".into()],
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

    pub fn retries(&self, class: &str, attempt: u32) -> bool {
        attempt < self.max_attempts && self.on.iter().any(|c| c == class)
    }
}

fn default_client_id() -> String {
    "fleetstorm-{seq:06}".into()
}
fn default_template() -> String {
    crate::mock::template::SEED_TEMPLATE_NAME.into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    #[serde(with = "humantime_serde")]
    pub subscribe: Duration,
    #[serde(with = "humantime_serde")]
    pub create_certificate: Duration,
    #[serde(with = "humantime_serde")]
    pub register_thing: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        let t = crate::device::Timeouts::default();
        TimeoutSettings {
            connect: t.connect,
            subscribe: t.subscribe,
            create_certificate: t.create_certificate,
            register_thing: t.register_thing,
        }
    }
}

impl From<TimeoutSettings> for crate::device::Timeouts {
    fn from(t: TimeoutSettings) -> Self {
        crate::device::Timeouts {
            connect: t.connect,
            subscribe: t.subscribe,
            create_certificate: t.create_certificate,
            register_thing: t.register_thing,
        }
    }
}

/// One `[[schedule]]` entry as written: the executor and its fields. Kept flat (rather than a
/// tagged enum) so parse errors point at the exact line of the faulty field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub executor: Executor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<RampStage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_step: Option<f64>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub step_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
}

/// k6-style executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Executor {
    ConstantArrivalRate,
    RampingArrivalRate,
    Burst,
    RampingConcurrency,
    Step,
}

impl Executor {
    /// The name as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate => "constant-arrival-rate",
            Executor::RampingArrivalRate => "ramping-arrival-rate",
            Executor::Burst => "burst",
            Executor::RampingConcurrency => "ramping-concurrency",
            Executor::Step => "step",
        }
    }
}

impl PhaseSpec {
    /// The phase this entry describes; errors name the field (`at` is e.g. `schedule[0]`).
    pub fn to_phase(&self, at: &str) -> Result<Phase, String> {
        let allowed: &[&str] = match self.executor {
            Executor::ConstantArrivalRate => &["rate", "duration"],
            Executor::RampingArrivalRate => &["start_rate", "stages"],
            Executor::Burst => &["count"],
            Executor::RampingConcurrency => &["start", "stages"],
            Executor::Step => &["start_rate", "rate_step", "step_duration", "steps"],
        };
        let present = [
            ("rate", self.rate.is_some()),
            ("duration", self.duration.is_some()),
            ("start_rate", self.start_rate.is_some()),
            ("start", self.start.is_some()),
            ("stages", self.stages.is_some()),
            ("count", self.count.is_some()),
            ("rate_step", self.rate_step.is_some()),
            ("step_duration", self.step_duration.is_some()),
            ("steps", self.steps.is_some()),
        ];
        let name = serde_json::to_value(self.executor)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        for (field, is_set) in present {
            if is_set && !allowed.contains(&field) {
                return Err(format!(
                    "{at}.{field}: not a field of the {name} executor (it takes {})",
                    allowed.join(", ")
                ));
            }
        }
        let need = |field: &str| format!("{at}.{field}: required by the {name} executor");
        Ok(match self.executor {
            Executor::ConstantArrivalRate => Phase::ConstantArrivalRate {
                rate: self.rate.ok_or_else(|| need("rate"))?,
                duration: self.duration.ok_or_else(|| need("duration"))?,
            },
            Executor::RampingArrivalRate => Phase::RampingArrivalRate {
                start_rate: self.start_rate.unwrap_or(0.0),
                stages: self.stages.clone().ok_or_else(|| need("stages"))?,
            },
            Executor::Burst => Phase::Burst {
                count: self.count.ok_or_else(|| need("count"))?,
            },
            Executor::RampingConcurrency => Phase::RampingConcurrency {
                start: self.start.unwrap_or(0.0),
                stages: self.stages.clone().ok_or_else(|| need("stages"))?,
            },
            Executor::Step => Phase::Step {
                start_rate: self.start_rate.ok_or_else(|| need("start_rate"))?,
                rate_step: self.rate_step.ok_or_else(|| need("rate_step"))?,
                step_duration: self.step_duration.ok_or_else(|| need("step_duration"))?,
                steps: self.steps.ok_or_else(|| need("steps"))?,
            },
        })
    }
}

/// One phase of the schedule, validated.
#[derive(Debug, Clone)]
pub enum Phase {
    /// `rate` arrivals per second for `duration`.
    ConstantArrivalRate { rate: f64, duration: Duration },
    /// Rate moves linearly from `start_rate` through each stage's `target` over its `duration`.
    RampingArrivalRate {
        start_rate: f64,
        stages: Vec<RampStage>,
    },
    /// `count` devices at once (the power-restored herd).
    Burst { count: u64 },
    /// Closed model: keep a number of devices in flight, ramping linearly from `start` through
    /// each stage's `target`; a device starts as soon as another ends.
    RampingConcurrency { start: f64, stages: Vec<RampStage> },
    /// `steps` constant-rate levels of `step_duration` each: `start_rate`, `start_rate +
    /// rate_step`, ... (the throttle-limit probe).
    Step {
        start_rate: f64,
        rate_step: f64,
        step_duration: Duration,
        steps: u32,
    },
}

impl Phase {
    fn duration(&self) -> Duration {
        match self {
            Phase::ConstantArrivalRate { duration, .. } => *duration,
            Phase::RampingArrivalRate { stages, .. } | Phase::RampingConcurrency { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
            Phase::Burst { .. } => Duration::ZERO,
            Phase::Step {
                step_duration,
                steps,
                ..
            } => *step_duration * *steps,
        }
    }

    /// The offered arrival rate `t` into this phase (open phases with a rate only).
    fn rate_at(&self, t: Duration) -> Option<f64> {
        match self {
            Phase::ConstantArrivalRate { rate, .. } => Some(*rate),
            Phase::RampingArrivalRate { start_rate, stages } => Some(
                Ramp {
                    start: *start_rate,
                    stages: stages.clone(),
                }
                .at(t),
            ),
            Phase::Step {
                start_rate,
                rate_step,
                step_duration,
                steps,
            } => {
                let k = (t.as_secs_f64() / step_duration.as_secs_f64()).floor() as u32;
                Some(start_rate + rate_step * f64::from(k.min(steps.saturating_sub(1))))
            }
            Phase::Burst { .. } | Phase::RampingConcurrency { .. } => None,
        }
    }
}

/// A phase turned into what the scheduler does.
#[derive(Debug, Clone)]
pub enum PlannedPhase {
    /// Arrival offsets from the start of the run.
    Open(Vec<Duration>),
    /// Keep `ramp.at(t)` devices in flight from `begin` for `ramp.duration()`.
    Closed { begin: Duration, ramp: Ramp },
}

/// A piecewise-linear level over time.
#[derive(Debug, Clone)]
pub struct Ramp {
    pub start: f64,
    pub stages: Vec<RampStage>,
}

impl Ramp {
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The level `t` after the ramp began.
    pub fn at(&self, t: Duration) -> f64 {
        let mut from = self.start;
        let mut elapsed = Duration::ZERO;
        for s in &self.stages {
            if t < elapsed + s.duration {
                let f = (t - elapsed).as_secs_f64() / s.duration.as_secs_f64();
                return from + (s.target - from) * f;
            }
            elapsed += s.duration;
            from = s.target;
        }
        from
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampStage {
    pub target: f64,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Scenario {
    /// Read and validate a scenario file; `sets` are `path=value` overrides applied first.
    pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, ScenarioError> {
        let (text, doc) = Self::read(path, sets)?;
        Self::from_doc(path, &text, &doc, sets.is_empty())
    }

    /// The scenario, or one scenario per `[[variants]]` entry (each with its overrides applied
    /// on top of the file and `sets`).
    pub fn load_variants(path: &Path, sets: &[String]) -> Result<Vec<Scenario>, ScenarioError> {
        let base = Self::load(path, sets)?;
        if base.variants.is_empty() {
            return Ok(vec![base]);
        }
        let (text, mut doc) = Self::read(path, sets)?;
        doc.remove("variants");
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, variant) in base.variants.iter().enumerate() {
            let err = |message: String| ScenarioError {
                file: path.display().to_string(),
                message: format!("variants[{i}] ({}): {message}", variant.name),
            };
            if !seen.insert(variant.name.clone()) || variant.name.is_empty() {
                return Err(err("variant names must be unique and not empty".into()));
            }
            let mut vdoc = doc.clone();
            for (key, value) in flatten(&variant.set) {
                let keys: Vec<&str> = key.split('.').collect();
                let mut root = toml::Value::Table(std::mem::take(&mut vdoc));
                let result = set_path(&mut root, &keys, value);
                if let toml::Value::Table(t) = root {
                    vdoc = t;
                }
                result.map_err(|m| err(format!("set.{key}: {m}")))?;
            }
            let mut scenario =
                Self::from_doc(path, &text, &vdoc, false).map_err(|e| err(e.message))?;
            scenario.variant = Some(variant.name.clone());
            out.push(scenario);
        }
        Ok(out)
    }

    fn read(path: &Path, sets: &[String]) -> Result<(String, toml::Table), ScenarioError> {
        let err = |message: String| ScenarioError {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| err(crate::toml_error_message(&text, &e)))?;
        for set in sets {
            apply_set(&mut doc, set).map_err(|m| err(format!("--set {set}: {m}")))?;
        }
        Ok((text, doc))
    }

    fn from_doc(
        path: &Path,
        text: &str,
        doc: &toml::Table,
        pristine: bool,
    ) -> Result<Scenario, ScenarioError> {
        let err = |message: String| ScenarioError {
            file: path.display().to_string(),
            message,
        };
        // `[target]` without `kind` means the embedded mock.
        let mut doc = doc.clone();
        let mut pristine = pristine;
        if let Some(toml::Value::Table(target)) = doc.get_mut("target")
            && !target.contains_key("kind")
        {
            target.insert("kind".into(), toml::Value::String("mock".into()));
            pristine = false;
        }
        // Parse the original text when nothing was overridden so errors point at its lines;
        // otherwise re-serialise (the line then refers to the merged document, shown in the error).
        let merged = if pristine {
            text.to_string()
        } else {
            toml::to_string(&doc).map_err(|e| err(e.to_string()))?
        };
        let mut scenario: Scenario =
            toml::from_str(&merged).map_err(|e| err(crate::toml_error_message(&merged, &e)))?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into());
        }
        let base = path.parent().unwrap_or(Path::new("."));
        scenario.resolve_paths(base);
        scenario.validate().map_err(err)?;
        Ok(scenario)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.target {
            Target::Mock { mock, pki } => {
                mock.base_dir = base.to_path_buf();
                mock.templates.values_mut().for_each(fix);
                if let Some(p) = pki {
                    fix(p);
                }
            }
            Target::Endpoint {
                ca,
                claim_cert,
                claim_key,
                ..
            } => {
                fix(ca);
                fix(claim_cert);
                fix(claim_key);
            }
        }
    }

    /// Semantic checks serde cannot express; messages name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.devices.count == 0 {
            return Err("devices.count: must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight: must be at least 1".into());
        }
        if !crate::protocol::valid_template_name(&self.devices.template) {
            return Err(format!(
                "devices.template: invalid template name {:?}",
                self.devices.template
            ));
        }
        Pattern::parse(&self.devices.client_id).map_err(|e| format!("devices.client_id: {e}"))?;
        if !self.devices.client_id.contains("{seq") && !self.devices.client_id.contains("{uuid}") {
            return Err("devices.client_id: must contain {seq} or {uuid} so client IDs are unique (AWS disconnects duplicates)".into());
        }
        for (name, pattern) in &self.devices.parameters {
            Pattern::parse(pattern).map_err(|e| format!("devices.parameters.{name}: {e}"))?;
        }
        if self.devices.retry.max_attempts == 0 {
            return Err("devices.retry.max_attempts: must be at least 1".into());
        }
        for (i, class) in self.devices.retry.on.iter().enumerate() {
            if !crate::device::FailureReason::CLASSES.contains(&class.as_str()) {
                return Err(format!(
                    "devices.retry.on[{i}]: unknown failure class {class:?} (one of {})",
                    crate::device::FailureReason::CLASSES.join(", ")
                ));
            }
        }
        if self.schedule.is_empty() {
            return Err("schedule: at least one phase is required".into());
        }
        for (i, spec) in self.schedule.iter().enumerate() {
            let at = format!("schedule[{i}]");
            let phase = spec.to_phase(&at)?;
            match &phase {
                Phase::ConstantArrivalRate { rate, duration } => {
                    check_rate(*rate).map_err(|e| format!("{at}.rate: {e}"))?;
                    if duration.is_zero() {
                        return Err(format!("{at}.duration: must be positive"));
                    }
                }
                Phase::RampingArrivalRate { start_rate, stages } => {
                    if !(start_rate.is_finite() && *start_rate >= 0.0) {
                        return Err(format!("{at}.start_rate: must be a number >= 0"));
                    }
                    check_stages(&at, stages)?;
                }
                Phase::Burst { count } => {
                    if *count == 0 {
                        return Err(format!("{at}.count: must be at least 1"));
                    }
                }
                Phase::Step {
                    start_rate,
                    rate_step,
                    step_duration,
                    steps,
                } => {
                    check_rate(*start_rate).map_err(|e| format!("{at}.start_rate: {e}"))?;
                    if !(rate_step.is_finite() && *rate_step >= 0.0) {
                        return Err(format!("{at}.rate_step: must be a number >= 0"));
                    }
                    if step_duration.is_zero() {
                        return Err(format!("{at}.step_duration: must be positive"));
                    }
                    if *steps == 0 {
                        return Err(format!("{at}.steps: must be at least 1"));
                    }
                }
                Phase::RampingConcurrency { start, stages } => {
                    if !(start.is_finite() && *start >= 0.0) {
                        return Err(format!("{at}.start: must be a number >= 0"));
                    }
                    check_stages(&at, stages)?;
                }
            }
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            crate::metrics::Threshold::parse(t).map_err(|e| format!("thresholds[{i}]: {e}"))?;
        }
        Ok(())
    }

    /// The phases as the scheduler runs them, open arrivals capped at `devices.count`.
    pub fn plan(&self) -> Vec<PlannedPhase> {
        let mut out = Vec::new();
        let mut phase_start = Duration::ZERO;
        let mut open = Vec::new();
        let limit = self.devices.count as usize;
        let mut planned = 0usize;
        let phases = self
            .schedule
            .iter()
            .filter_map(|p| p.to_phase("schedule").ok());
        for phase in &phases.collect::<Vec<_>>() {
            if let Phase::RampingConcurrency { start, stages } = phase {
                if !open.is_empty() {
                    planned += open.len();
                    out.push(PlannedPhase::Open(std::mem::take(&mut open)));
                }
                let ramp = Ramp {
                    start: *start,
                    stages: stages.clone(),
                };
                let d = ramp.duration();
                out.push(PlannedPhase::Closed {
                    begin: phase_start,
                    ramp,
                });
                phase_start += d;
                continue;
            }
            let mut arrivals = self.phase_arrivals(phase, &mut phase_start);
            arrivals.truncate(limit.saturating_sub(planned + open.len()));
            open.extend(arrivals);
        }
        if !open.is_empty() {
            out.push(PlannedPhase::Open(open));
        }
        out
    }

    /// Arrival offsets of the open phases, at most `devices.count` of them.
    pub fn arrivals(&self) -> Vec<Duration> {
        self.plan()
            .into_iter()
            .filter_map(|p| match p {
                PlannedPhase::Open(a) => Some(a),
                PlannedPhase::Closed { .. } => None,
            })
            .flatten()
            .collect()
    }

    fn phase_arrivals(&self, phase: &Phase, phase_start: &mut Duration) -> Vec<Duration> {
        let mut out = Vec::new();
        {
            match phase {
                Phase::ConstantArrivalRate { rate, duration } => {
                    let n = (rate * duration.as_secs_f64()).round() as u64;
                    for k in 0..n {
                        out.push(*phase_start + Duration::from_secs_f64(k as f64 / rate));
                    }
                    *phase_start += *duration;
                }
                Phase::RampingArrivalRate { start_rate, stages } => {
                    let mut from = *start_rate;
                    for stage in stages {
                        ramp_arrivals(&mut out, *phase_start, from, stage.target, stage.duration);
                        *phase_start += stage.duration;
                        from = stage.target;
                    }
                }
                Phase::Burst { count } => {
                    out.extend(std::iter::repeat_n(*phase_start, *count as usize));
                }
                Phase::Step {
                    start_rate,
                    rate_step,
                    step_duration,
                    steps,
                } => {
                    for k in 0..*steps {
                        let rate = start_rate + rate_step * f64::from(k);
                        let n = (rate * step_duration.as_secs_f64()).round() as u64;
                        for i in 0..n {
                            out.push(*phase_start + Duration::from_secs_f64(i as f64 / rate));
                        }
                        *phase_start += *step_duration;
                    }
                }
                Phase::RampingConcurrency { .. } => {}
            }
        }
        out
    }

    /// Planned length of the whole schedule.
    pub fn planned_duration(&self) -> Duration {
        self.schedule
            .iter()
            .filter_map(|p| p.to_phase("schedule").ok())
            .map(|p| p.duration())
            .sum()
    }

    /// The phase running at `t` (schedule time): its index and executor; the last phase once the
    /// schedule is over.
    pub fn phase_at(&self, t: Duration) -> Option<(usize, Executor)> {
        let mut begin = Duration::ZERO;
        for (i, spec) in self.schedule.iter().enumerate() {
            let d = spec.to_phase("schedule").ok()?.duration();
            if t < begin + d || i + 1 == self.schedule.len() {
                return Some((i, spec.executor));
            }
            begin += d;
        }
        None
    }

    /// The offered rate the schedule intends at `t` from the start (None in bursts and closed
    /// phases).
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let mut begin = Duration::ZERO;
        for spec in &self.schedule {
            let phase = spec.to_phase("schedule").ok()?;
            let d = phase.duration();
            if t < begin + d {
                return phase.rate_at(t - begin);
            }
            begin += d;
        }
        None
    }
}

fn check_stages(at: &str, stages: &[RampStage]) -> Result<(), String> {
    if stages.is_empty() {
        return Err(format!("{at}.stages: at least one stage is required"));
    }
    for (j, s) in stages.iter().enumerate() {
        if !(s.target.is_finite() && s.target >= 0.0) {
            return Err(format!("{at}.stages[{j}].target: must be a number >= 0"));
        }
        if s.duration.is_zero() {
            return Err(format!("{at}.stages[{j}].duration: must be positive"));
        }
    }
    Ok(())
}

fn check_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "must be a positive number of arrivals per second, got {rate}"
        ))
    }
}

/// Arrivals of a linear ramp: the k-th arrival is where the integral of the rate reaches k.
fn ramp_arrivals(out: &mut Vec<Duration>, start: Duration, r0: f64, r1: f64, d: Duration) {
    let t_total = d.as_secs_f64();
    let slope = (r1 - r0) / t_total;
    let total = (r0 + r1) / 2.0 * t_total;
    let n = total.floor() as u64;
    for k in 0..n {
        let k = k as f64;
        // Solve r0 t + slope t^2 / 2 = k.
        let t = if slope.abs() < 1e-12 {
            k / r0
        } else {
            (-r0 + (r0 * r0 + 2.0 * slope * k).max(0.0).sqrt()) / slope
        };
        out.push(start + Duration::from_secs_f64(t.clamp(0.0, t_total)));
    }
}

/// Apply `a.b.c=value` to a TOML table (`schedule.0.rate=5` indexes lists). The value is parsed
/// as TOML (number, bool, string, array, inline table), falling back to a plain string.
pub fn apply_set(doc: &mut toml::Table, set: &str) -> Result<(), String> {
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| "expected path=value".to_string())?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("empty key in {path:?}"));
    }
    let mut root = toml::Value::Table(std::mem::take(doc));
    let result = set_path(&mut root, &keys, value);
    if let toml::Value::Table(t) = root {
        *doc = t;
    }
    result
}

/// Leaves of a table as `dotted.path = value` (quoted dotted keys and nested tables both work).
fn flatten(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => out.extend(
                flatten(t)
                    .into_iter()
                    .map(|(sub, v)| (format!("{k}.{sub}"), v)),
            ),
            other => out.push((k.clone(), other.clone())),
        }
    }
    out
}

fn set_path(node: &mut toml::Value, keys: &[&str], value: toml::Value) -> Result<(), String> {
    let Some((key, rest)) = keys.split_first() else {
        return Ok(());
    };
    let child = match node {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                t.insert(key.to_string(), value);
                return Ok(());
            }
            t.entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        }
        toml::Value::Array(items) => {
            let idx: usize = key
                .parse()
                .map_err(|_| format!("{key:?}: this is a list, address entries by index"))?;
            let len = items.len();
            let item = items
                .get_mut(idx)
                .ok_or_else(|| format!("index {idx} out of range (the list has {len})"))?;
            if rest.is_empty() {
                *item = value;
                return Ok(());
            }
            item
        }
        _ => return Err(format!("{key:?}: its parent is not a table")),
    };
    set_path(child, rest, value)
}

/// A parameter or client-ID pattern: literal text with `{seq}`, `{seq:06}`, `{uuid}`,
/// `{pick:a=3,b=1}` (weighted choice) and `{{`/`}}` escapes.
#[derive(Debug, Clone)]
pub struct Pattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Seq {
        width: usize,
    },
    Uuid,
    Pick {
        choices: Vec<(String, u32)>,
        total: u32,
    },
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let end = text[i..]
                        .find('}')
                        .ok_or_else(|| format!("unclosed '{{' at column {}", i + 1))?;
                    let spec = &text[i + 1..i + end];
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_generator(spec)?);
                    while chars.peek().is_some_and(|(j, _)| *j <= i + end) {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched '}}' at column {}", i + 1)),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Pattern { parts })
    }

    /// Render for device number `seq` with the run's random source.
    pub fn render(&self, seq: u64, rng: &mut impl rand::Rng) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Seq { width } => out.push_str(&format!("{seq:0width$}")),
                Part::Uuid => {
                    let b: [u8; 16] = random_bytes(rng);
                    let h = hex::encode(b);
                    out.push_str(&format!(
                        "{}-{}-4{}-{:x}{}-{}",
                        &h[0..8],
                        &h[8..12],
                        &h[13..16],
                        (b[8] & 0x3) | 0x8,
                        &h[17..20],
                        &h[20..32]
                    ));
                }
                Part::Pick { choices, total } => {
                    let mut x = (rng.next_u32() % total) as i64;
                    for (value, weight) in choices {
                        x -= i64::from(*weight);
                        if x < 0 {
                            out.push_str(value);
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

fn random_bytes<const N: usize>(rng: &mut impl rand::Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

fn parse_generator(spec: &str) -> Result<Part, String> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match name {
        "seq" => {
            let width = if arg.is_empty() {
                0
            } else {
                arg.parse()
                    .map_err(|_| format!("{{seq:{arg}}}: width must be a number like 06"))?
            };
            Ok(Part::Seq { width })
        }
        "uuid" if arg.is_empty() => Ok(Part::Uuid),
        "pick" => {
            let mut choices = Vec::new();
            for item in arg.split(',') {
                let (value, weight) = match item.rsplit_once('=') {
                    Some((v, w)) => (
                        v,
                        w.trim().parse::<u32>().map_err(|_| {
                            format!("{{pick}}: weight of {v:?} must be a whole number")
                        })?,
                    ),
                    None => (item, 1),
                };
                if weight > 0 {
                    choices.push((value.trim().to_string(), weight));
                }
            }
            let total: u32 = choices.iter().map(|(_, w)| *w).sum();
            if total == 0 {
                return Err("{pick:...}: needs at least one choice with a positive weight".into());
            }
            Ok(Part::Pick { choices, total })
        }
        other => Err(format!(
            "unknown generator {{{other}}} (known: {{seq}}, {{seq:06}}, {{uuid}}, {{pick:a=3,b=1}})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn patterns_render_sequences_uuids_and_weighted_picks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let p = Pattern::parse("123456{seq:06}").unwrap();
        assert_eq!(p.render(42, &mut rng), "123456000042");
        let u = Pattern::parse("FPC-device-{uuid}")
            .unwrap()
            .render(0, &mut rng);
        assert_eq!(u.len(), "FPC-device-".len() + 36, "{u}");
        assert_eq!(&u["FPC-device-".len() + 14..][..1], "4");
        let pick = Pattern::parse("{pick:Berlin=3,Seattle=1}").unwrap();
        let berlin = (0..4000)
            .filter(|_| pick.render(0, &mut rng) == "Berlin")
            .count();
        assert!((2700..3300).contains(&berlin), "{berlin}");
        assert_eq!(
            Pattern::parse("a{{b}}").unwrap().render(0, &mut rng),
            "a{b}"
        );
        assert!(
            Pattern::parse("{nope}")
                .unwrap_err()
                .contains("unknown generator")
        );
        assert!(Pattern::parse("{seq").is_err());
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let r = RetrySettings {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            on: vec!["throttled".into()],
        };
        assert_eq!(r.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(r.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(r.backoff(9, 1.0), Duration::from_secs(1));
        assert_eq!(r.backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(r.backoff(3, 0.0), Duration::ZERO);
        assert!(r.retries("throttled", 4));
        assert!(!r.retries("throttled", 5));
        assert!(!r.retries("hook_denied", 1));
    }

    #[test]
    fn schedules_produce_the_planned_arrivals() {
        let mut s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 1000
            [[schedule]]
            executor = "constant-arrival-rate"
            rate = 10
            duration = "2s"
            [[schedule]]
            executor = "burst"
            count = 5
            [[schedule]]
            executor = "ramping-arrival-rate"
            start_rate = 0
            stages = [{ target = 20, duration = "2s" }]
            "#,
        )
        .unwrap();
        let a = s.arrivals();
        assert_eq!(a.len(), 20 + 5 + 20);
        assert_eq!(a[1], Duration::from_millis(100));
        assert!(a[20..25].iter().all(|t| *t == Duration::from_secs(2)));
        // The ramp accelerates: later gaps are shorter than earlier ones.
        let ramp = &a[25..];
        assert!(ramp[2] - ramp[1] > ramp[19] - ramp[18]);
        assert!(
            ramp.iter()
                .all(|t| *t >= Duration::from_secs(2) && *t <= Duration::from_secs(4))
        );
        s.devices.count = 7;
        assert_eq!(s.arrivals().len(), 7);
    }

    #[test]
    fn variants_apply_their_overrides_on_top_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            r#"
[devices]
count = 10
[[schedule]]
executor = "burst"
count = 10
[[variants]]
name = "base"
[[variants]]
name = "csr"
set = { "devices.certificate" = "csr", "target.mock.quotas.enabled" = true }
[[variants]]
name = "nested"
[variants.set.devices]
count = 3
"#,
        )
        .unwrap();
        let v = Scenario::load_variants(&path, &[]).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].variant.as_deref(), Some("base"));
        assert_eq!(v[1].devices.certificate, CertificateMode::Csr);
        let Target::Mock { mock, .. } = &v[1].target else {
            panic!()
        };
        assert!(mock.quotas.enabled);
        assert_eq!(v[2].devices.count, 3);
        assert_eq!(v[0].devices.count, 10);
        std::fs::write(&path, "[devices]\ncount = 1\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n[[variants]]\nname = \"x\"\nset = { \"devices.count\" = \"many\" }\n").unwrap();
        let e = Scenario::load_variants(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("variants[0] (x)") && e.contains("count"), "{e}");
    }

    #[test]
    fn a_step_schedule_offers_rising_levels() {
        let s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 1000
            [[schedule]]
            executor = "step"
            start_rate = 2
            rate_step = 2
            step_duration = "2s"
            steps = 3
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.arrivals().len(), 4 + 8 + 12);
        assert_eq!(s.rate_at(Duration::from_millis(500)), Some(2.0));
        assert_eq!(s.rate_at(Duration::from_millis(3500)), Some(4.0));
        assert_eq!(s.rate_at(Duration::from_millis(5999)), Some(6.0));
        assert_eq!(s.rate_at(Duration::from_secs(6)), None);
    }

    #[test]
    fn a_concurrency_phase_is_planned_between_open_phases() {
        let s: Scenario = toml::from_str(
            r#"
            [devices]
            count = 100
            [[schedule]]
            executor = "burst"
            count = 3
            [[schedule]]
            executor = "ramping-concurrency"
            start = 0
            stages = [{ target = 10, duration = "2s" }, { target = 10, duration = "1s" }]
            [[schedule]]
            executor = "burst"
            count = 2
            "#,
        )
        .unwrap();
        let plan = s.plan();
        assert_eq!(plan.len(), 3);
        let PlannedPhase::Closed { begin, ramp } = &plan[1] else {
            panic!("{plan:?}")
        };
        assert_eq!(*begin, Duration::ZERO);
        assert_eq!(ramp.duration(), Duration::from_secs(3));
        assert!((ramp.at(Duration::from_secs(1)) - 5.0).abs() < 1e-9);
        assert!((ramp.at(Duration::from_millis(2500)) - 10.0).abs() < 1e-9);
        let PlannedPhase::Open(last) = &plan[2] else {
            panic!("{plan:?}")
        };
        assert_eq!(last, &vec![Duration::from_secs(3); 2]);
    }

    #[test]
    fn load_reports_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "[devices]\ncount = 10\ncolour = 3\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n",
        )
        .unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains("line 3") && e.contains("colour"),
            "{e}"
        );
        std::fs::write(&path, "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"soon\"\n").unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("line 6") && e.contains("duration"), "{e}");
        std::fs::write(
            &path,
            "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"burst\"\nrate = 5\n",
        )
        .unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("schedule[0].rate") && e.contains("count"), "{e}");
        std::fs::write(
            &path,
            "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"burst\"\n",
        )
        .unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("schedule[0].count: required"), "{e}");
        std::fs::write(&path, "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = -1\nduration = \"1s\"\n").unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("schedule[0].rate"), "{e}");
    }

    #[test]
    fn set_overrides_fields_including_list_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\n").unwrap();
        let s = Scenario::load(
            &path,
            &[
                "devices.count=3".into(),
                "schedule.0.rate=50".into(),
                "devices.certificate=csr".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.devices.count, 3);
        assert_eq!(s.schedule[0].rate, Some(50.0));
        assert_eq!(s.devices.certificate, CertificateMode::Csr);
        let e = Scenario::load(&path, &["devices.count=abc".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("count"), "{e}");
    }
}
