//! Reading a scenario file (`--set`/variant overrides, TOML errors, paths) and building its
//! [`Plan`]: the semantic checks, which compile on the way what the run uses.
//!
//! Errors name the file, line and field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::schedule::{MAX_RATE, MAX_SCHEDULE, MAX_STEPS};
use super::{Pattern, Phase, Plan, ProfileChoice, RampStage, Scenario, ScenarioError, Target};
use crate::metrics::Threshold;

/// One override of the file: a `--set path=value` argument or an entry of a variant's `set`,
/// with the label its errors carry.
#[derive(Clone)]
struct Override {
    label: String,
    keys: Vec<String>,
    value: toml::Value,
}

impl Override {
    /// `path=value` from `--set`.
    fn from_set(set: &str) -> Result<Override, String> {
        let (keys, value) = parse_set(set)?;
        Ok(Override {
            label: format!("--set {set}"),
            keys,
            value,
        })
    }

    fn apply(&self, doc: &mut toml::Table) -> Result<(), String> {
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        if let ["devices", "profile", _, ..] = keys.as_slice() {
            profile_as_table(doc);
        }
        set_in_table(doc, &keys, self.value.clone()).map_err(|m| format!("{}: {m}", self.label))
    }
}

impl Scenario {
    /// Read a scenario file and build its plan; `sets` are `path=value` overrides applied
    /// first.
    pub fn load(path: &Path, sets: &[String]) -> Result<Plan, ScenarioError> {
        let (text, doc, overrides) = Self::read(path, sets)?;
        Self::build(path, &text, &doc, &overrides)
    }

    /// The scenario's plan, or one per `[[variants]]` entry (each with its overrides applied
    /// on top of the file and `sets`).
    pub fn load_variants(path: &Path, sets: &[String]) -> Result<Vec<Plan>, ScenarioError> {
        let base = Self::load(path, sets)?;
        if base.variants.is_empty() {
            return Ok(vec![base]);
        }
        let (text, mut doc, overrides) = Self::read(path, sets)?;
        doc.remove("variants");
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, variant) in base.variants.iter().enumerate() {
            let err = |message: String| {
                file_error(path)(format!("variants[{i}] ({}): {message}", variant.name))
            };
            if !seen.insert(variant.name.clone()) || variant.name.is_empty() {
                return Err(err("variant names must be unique and not empty".into()));
            }
            let mut all = overrides.clone();
            all.extend(
                flatten(&variant.set)
                    .into_iter()
                    .map(|(key, value)| Override {
                        label: format!("set.{key}"),
                        keys: key.split('.').map(str::to_string).collect(),
                        value,
                    }),
            );
            let mut plan = Self::build(path, &text, &doc, &all).map_err(|e| err(e.message))?;
            plan.scenario.variant = Some(variant.name.clone());
            out.push(plan);
        }
        Ok(out)
    }

    /// The file's text, its document and the `--set` overrides (not yet applied).
    fn read(
        path: &Path,
        sets: &[String],
    ) -> Result<(String, toml::Table, Vec<Override>), ScenarioError> {
        let err = file_error(path);
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let doc: toml::Table =
            toml::from_str(&text).map_err(|e| err(crate::toml_error_message(&text, &e)))?;
        let overrides = sets
            .iter()
            .map(|set| Override::from_set(set).map_err(|m| err(format!("--set {set}: {m}"))))
            .collect::<Result<_, _>>()?;
        Ok((text, doc, overrides))
    }

    /// The plan of the scenario the file's document says once `overrides` are applied. A value
    /// an override brought in that does not fit is reported against that override, not a line
    /// of the file (the overridden document has no lines a reader could find).
    fn build(
        path: &Path,
        text: &str,
        doc: &toml::Table,
        overrides: &[Override],
    ) -> Result<Plan, ScenarioError> {
        let err = file_error(path);
        let mut merged = doc.clone();
        for o in overrides {
            o.apply(&mut merged).map_err(&err)?;
        }
        let scenario = match parse(&merged, overrides.is_empty().then_some(text)) {
            Ok(scenario) => scenario,
            Err((located, _)) if overrides.is_empty() => return Err(err(located)),
            Err((located, _)) => {
                // Blame the override after which the document stopped parsing for good (the
                // file itself, at its line, when it never parsed): an override may also supply
                // what the file lacks.
                let mut blame = parse(doc, Some(text)).err().map(|(at_line, _)| at_line);
                let mut partial = doc.clone();
                for o in overrides {
                    o.apply(&mut partial).map_err(&err)?;
                    match parse(&partial, None) {
                        Ok(_) => blame = None,
                        Err((_, cause)) if blame.is_none() => {
                            blame = Some(format!("{}: {cause}", o.label));
                        }
                        Err(_) => {}
                    }
                }
                return Err(err(blame.unwrap_or(located)));
            }
        };
        scenario.finish(path).map_err(err)
    }

    /// Name, paths and plan of a parsed scenario read from `path`.
    fn finish(mut self, path: &Path) -> Result<Plan, String> {
        if self.name.is_empty() {
            self.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into());
        }
        let base = path.parent().unwrap_or(Path::new("."));
        self.resolve_paths(base);
        Plan::new(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.target {
            Target::Mock { mock, pki, .. } => {
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
}

impl Plan {
    /// The plan of `scenario` (its paths resolved): the checks serde cannot express, in the
    /// order of the file, compiling on the way what the run uses; messages name the field. The
    /// one place a scenario's phases, thresholds, patterns and classification are parsed.
    pub fn new(scenario: Scenario) -> Result<Plan, String> {
        let s = &scenario;
        if s.devices.count == 0 {
            return Err("devices.count: must be at least 1".into());
        }
        if s.max_in_flight == 0 {
            return Err("max_in_flight: must be at least 1".into());
        }
        if !crate::protocol::valid_template_name(&s.devices.template) {
            return Err(format!(
                "devices.template: invalid template name {:?}",
                s.devices.template
            ));
        }
        s.check_template()?;
        let client_id =
            Pattern::parse(&s.devices.client_id).map_err(|e| format!("devices.client_id: {e}"))?;
        if !s.devices.client_id.contains("{seq") && !s.devices.client_id.contains("{uuid}") {
            return Err("devices.client_id: must contain {seq} or {uuid} so client IDs are unique (AWS disconnects duplicates)".into());
        }
        let parameters = s
            .devices
            .parameters
            .iter()
            .map(|(name, pattern)| match Pattern::parse(pattern) {
                Ok(p) => Ok((name.clone(), p)),
                Err(e) => Err(format!("devices.parameters.{name}: {e}")),
            })
            .collect::<Result<_, _>>()?;
        let after = &s.devices.after;
        if after.action == crate::device::AfterAction::Telemetry && after.interval.is_zero() {
            return Err(
                "devices.after.interval: must be positive (the time between publishes)".into(),
            );
        }
        let profile = Arc::new(s.devices.resolve_profile()?);
        if s.schedule.is_empty() {
            return Err("schedule: at least one phase is required".into());
        }
        let mut phases = Vec::with_capacity(s.schedule.len());
        let mut planned = std::time::Duration::ZERO;
        for (i, spec) in s.schedule.iter().enumerate() {
            let at = format!("schedule[{i}]");
            let phase = spec.to_phase(&at)?;
            check_phase(&at, &phase)?;
            let begin = planned;
            planned = phase
                .checked_duration()
                .and_then(|d| planned.checked_add(d))
                .filter(|t| *t <= MAX_SCHEDULE)
                .ok_or_else(|| {
                    format!(
                        "{at}: the schedule would last longer than {} days, the most a run may (see docs/scenarios.md, What is refused)",
                        MAX_SCHEDULE.as_secs() / 86_400
                    )
                })?;
            phases.push((begin, phase));
        }
        let classify = Arc::new(s.target.classify().rules()?);
        if let Target::Endpoint {
            account: Some(account),
            ..
        } = &s.target
            && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "target.account: {account:?} is not an AWS account ID (12 digits)"
            ));
        }
        let thresholds = parse_thresholds(&s.thresholds)?;
        Ok(Plan {
            scenario,
            phases,
            thresholds,
            client_id,
            parameters,
            classify,
            profile,
        })
    }
}

impl super::Devices {
    /// The profile these devices follow: `profile` (a built-in's name, or a table of
    /// overrides on a `base`), then the fields given in `[devices.timeouts]` and `payload`,
    /// then, for the generic profile only, `[devices.retry]`. Errors name the field.
    fn resolve_profile(&self) -> Result<crate::device::Profile, String> {
        use crate::device::profile;
        const AT: &str = "devices.profile";
        let (mut p, base) = match &self.profile {
            None => (crate::device::Profile::generic(), profile::DEFAULT),
            Some(ProfileChoice::Name(name)) => (
                crate::device::Profile::builtin(name)
                    .ok_or_else(|| format!("{AT}: {}", profile::unknown(name)))?,
                name.as_str(),
            ),
            Some(ProfileChoice::Custom(table)) => (
                profile::resolve(table, AT)?,
                table
                    .get("base")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(profile::DEFAULT),
            ),
        };
        self.timeouts.apply(&mut p.timeouts);
        if let Some(format) = self.payload {
            p.payload = format;
        }
        if let Some(retry) = &self.retry {
            if base != profile::DEFAULT {
                return Err(format!(
                    "devices.retry: only the generic profile takes [devices.retry]; profile {base:?} retries as its flow_retry and reaction say: set devices.profile.flow_retry / devices.profile.reaction instead"
                ));
            }
            if retry.max_attempts == 0 {
                return Err("devices.retry.max_attempts: must be at least 1".into());
            }
            retry.apply(&mut p);
        }
        Ok(p)
    }
}

/// A scenario's `thresholds`, parsed (`merge` judges a run folder's `scenario.toml` by them).
pub fn parse_thresholds(exprs: &[String]) -> Result<Vec<Threshold>, String> {
    exprs
        .iter()
        .enumerate()
        .map(|(i, t)| Threshold::parse(t).map_err(|e| format!("thresholds[{i}]: {e}")))
        .collect()
}

/// A phase's fields in range; messages name the field.
fn check_phase(at: &str, phase: &Phase) -> Result<(), String> {
    match phase {
        Phase::ConstantArrivalRate { rate, duration } => {
            check_rate(*rate).map_err(|e| format!("{at}.rate: {e}"))?;
            if duration.is_zero() {
                return Err(format!("{at}.duration: must be positive"));
            }
        }
        Phase::RampingArrivalRate { start_rate, stages } => {
            check_non_negative(*start_rate)
                .and_then(|()| check_max_rate(*start_rate))
                .map_err(|e| format!("{at}.start_rate: {e}"))?;
            check_stages(at, stages, check_max_rate)?;
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
            check_non_negative(*rate_step).map_err(|e| format!("{at}.rate_step: {e}"))?;
            if step_duration.is_zero() {
                return Err(format!("{at}.step_duration: must be positive"));
            }
            if *steps == 0 || *steps > MAX_STEPS {
                return Err(format!("{at}.steps: must be 1 to {MAX_STEPS}"));
            }
            let top = start_rate + rate_step * f64::from(steps - 1);
            check_max_rate(top).map_err(|e| {
                format!("{at}.rate_step: the last step offers {top} arrivals/s: {e}")
            })?;
        }
        Phase::RampingConcurrency { start, stages } => {
            check_non_negative(*start).map_err(|e| format!("{at}.start: {e}"))?;
            check_stages(at, stages, |_| Ok(()))?;
        }
    }
    Ok(())
}

/// A ramp's stages; `level` checks each target beyond being a number >= 0.
impl Scenario {
    /// Against the embedded mock, the template must be one it offers: the built-in seed
    /// template or one configured in `[target.mock.templates]` (whose file must exist), or
    /// every device would fail later as `disconnected.subscribe`.
    fn check_template(&self) -> Result<(), String> {
        let Target::Mock { mock, .. } = &self.target else {
            return Ok(());
        };
        for (name, file) in &mock.templates {
            if !file.is_file() {
                return Err(format!(
                    "target.mock.templates.{name}: no template file at {}",
                    file.display()
                ));
            }
        }
        let template = &self.devices.template;
        let seed = crate::mock_settings::SEED_TEMPLATE_NAME;
        if template == seed || mock.templates.contains_key(template) {
            return Ok(());
        }
        let known: Vec<&str> = std::iter::once(seed)
            .chain(mock.templates.keys().map(String::as_str))
            .collect();
        Err(format!(
            "devices.template: the mock target has no template {template:?} (it has {}); add it under [target.mock.templates] as {template} = \"FILE.json\"",
            known.join(", ")
        ))
    }
}

fn check_stages(
    at: &str,
    stages: &[RampStage],
    level: impl Fn(f64) -> Result<(), String>,
) -> Result<(), String> {
    if stages.is_empty() {
        return Err(format!("{at}.stages: at least one stage is required"));
    }
    for (j, s) in stages.iter().enumerate() {
        check_non_negative(s.target)
            .and_then(|()| level(s.target))
            .map_err(|e| format!("{at}.stages[{j}].target: {e}"))?;
        if s.duration.is_zero() {
            return Err(format!("{at}.stages[{j}].duration: must be positive"));
        }
    }
    Ok(())
}

fn check_non_negative(value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err("must be a number >= 0".into())
    }
}

fn check_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        check_max_rate(rate)
    } else {
        Err(format!(
            "must be a positive number of arrivals per second, got {rate}"
        ))
    }
}

fn check_max_rate(rate: f64) -> Result<(), String> {
    if rate <= MAX_RATE {
        Ok(())
    } else {
        Err(format!(
            "{rate} arrivals/s is more than one process can offer: at most {MAX_RATE}/s (see docs/scenarios.md, What is refused)"
        ))
    }
}

/// `doc` as a scenario; `text` is the file's text when `doc` is exactly the file, so errors
/// point at its lines (otherwise at the re-serialised document, whose line they show). The
/// error comes located (line, column, source) and bare.
fn parse(doc: &toml::Table, text: Option<&str>) -> Result<Scenario, (String, String)> {
    // `[target]` without `kind` means the embedded mock.
    let mut doc = doc.clone();
    let mut text = text;
    if let Some(toml::Value::Table(target)) = doc.get_mut("target")
        && !target.contains_key("kind")
    {
        target.insert("kind".into(), toml::Value::String("mock".into()));
        text = None;
    }
    let merged = match text {
        Some(text) => text.to_string(),
        None => toml::to_string(&doc).map_err(|e| (e.to_string(), e.to_string()))?,
    };
    toml::from_str(&merged).map_err(|e| {
        let bare = e.message().trim_end().to_string();
        (crate::toml_error_message(&merged, &e), bare)
    })
}

/// `[devices] profile = "NAME"` as the table `{ base = "NAME" }`, so that an override of one
/// of its fields (`--set devices.profile.flow_retry.attempts=5`) applies on top of NAME.
fn profile_as_table(doc: &mut toml::Table) {
    let Some(toml::Value::Table(devices)) = doc.get_mut("devices") else {
        return;
    };
    if let Some(toml::Value::String(name)) = devices.get("profile") {
        let base =
            toml::Table::from_iter([("base".to_string(), toml::Value::String(name.clone()))]);
        devices.insert("profile".into(), toml::Value::Table(base));
    }
}

/// Reports an error in the scenario file at `path`.
fn file_error(path: &Path) -> impl Fn(String) -> ScenarioError + '_ {
    move |message| ScenarioError {
        file: path.display().to_string(),
        message,
    }
}

/// Apply `a.b.c=value` to a TOML table (`schedule.0.rate=5` indexes lists). The value is parsed
/// as TOML (number, bool, string, array, inline table), falling back to a plain string.
pub fn apply_set(doc: &mut toml::Table, set: &str) -> Result<(), String> {
    let (keys, value) = parse_set(set)?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    set_in_table(doc, &keys, value)
}

/// The keys and value of `a.b.c=value`.
fn parse_set(set: &str) -> Result<(Vec<String>, toml::Value), String> {
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| "expected path=value".to_string())?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<String> = path.trim().split('.').map(str::to_string).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("empty key in {path:?}"));
    }
    Ok((keys, value))
}

fn set_in_table(doc: &mut toml::Table, keys: &[&str], value: toml::Value) -> Result<(), String> {
    let mut root = toml::Value::Table(std::mem::take(doc));
    let result = set_path(&mut root, keys, value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CertificateMode;

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
        assert!(
            e.contains("set.devices.count: invalid type") && !e.contains("line "),
            "{e}"
        );
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
        assert_eq!(s.scenario().schedule[0].rate, Some(50.0));
        assert_eq!(s.devices.certificate, CertificateMode::Csr);
        let e = Scenario::load(&path, &["devices.count=abc".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("count"), "{e}");
    }

    #[test]
    fn set_errors_name_the_set_argument_not_a_line_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[devices]\ncount = 10\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\n").unwrap();
        for (set, needle) in [
            ("devices.count=abc", "expected u64"),
            ("schedule.0.rate=fast", "expected f64"),
            ("devices.colour=3", "unknown field `colour`"),
            ("schedule.0.duration=soon", "expected a duration"),
            ("devices.certificate=bogus", "unknown variant `bogus`"),
        ] {
            let sets = ["devices.count=3".to_string(), set.to_string()];
            let e = Scenario::load(&path, &sets).unwrap_err().to_string();
            assert!(
                e.contains(&format!("s.toml: --set {set}: ")) && e.contains(needle),
                "{e}"
            );
            assert!(!e.contains("line "), "{e}");
        }
        // A --set may supply what the file lacks; the one that breaks it is still named.
        std::fs::write(
            &path,
            "[devices]\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n",
        )
        .unwrap();
        let sets = [
            "devices.count=3".to_string(),
            "devices.csr_key=dsa".to_string(),
        ];
        let e = Scenario::load(&path, &sets).unwrap_err().to_string();
        assert!(
            e.contains("--set devices.csr_key=dsa: unknown variant"),
            "{e}"
        );
        Scenario::load(&path, &sets[..1]).unwrap();
        // An error of the file itself still points at its line, --set or not.
        std::fs::write(
            &path,
            "[devices]\ncount = 10\ncolour = 3\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n",
        )
        .unwrap();
        let e = Scenario::load(&path, &["devices.count=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("colour"), "{e}");
    }

    #[test]
    fn a_template_the_mock_does_not_have_is_refused_naming_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let body = "[devices]\ncount = 1\ntemplate = \"Mine\"\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n";
        std::fs::write(&path, body).unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(
            e.contains("devices.template")
                && e.contains("\"Mine\"")
                && e.contains("FleetProvisioningTemplate"),
            "{e}"
        );
        let configured = format!("{body}[target.mock.templates]\nMine = \"mine.json\"\n");
        std::fs::write(&path, &configured).unwrap();
        let e = Scenario::load(&path, &[]).unwrap_err().to_string();
        assert!(
            e.contains("target.mock.templates.Mine") && e.contains("mine.json"),
            "{e}"
        );
        std::fs::write(dir.path().join("mine.json"), "{}").unwrap();
        Scenario::load(&path, &[]).unwrap();
        // Another endpoint's templates are its own business.
        let endpoint = format!(
            "{body}[target]\nkind = \"endpoint\"\nhost = \"127.0.0.1\"\nca = \"ca.pem\"\nclaim_cert = \"c.pem\"\nclaim_key = \"k.pem\"\n"
        );
        std::fs::write(&path, endpoint).unwrap();
        Scenario::load(&path, &[]).unwrap();
    }
}
