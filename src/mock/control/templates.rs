//! Provisioning templates: the run-time store devices provision with, and its REST handlers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{ApiError, Call, Reply, epoch, next_token, put};
use crate::iot::policy::ArnContext;
use crate::iot::template::Template;
use crate::mock::State;

/// A template and what DescribeProvisioningTemplate says about it.
#[derive(Clone)]
struct Stored {
    template: Arc<Template>,
    body: String,
    description: Option<String>,
    enabled: bool,
    role_arn: Option<String>,
    hook: Option<Value>,
    kind: String,
    created: SystemTime,
    modified: SystemTime,
}

/// Why a device cannot provision with a template name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Missing,
    Disabled,
}

/// The templates by name: the built-in seed template and those of the settings at start, then
/// whatever the control plane creates, updates or deletes. Devices take a read lock per
/// RegisterThing; only control-plane changes write.
pub struct TemplateStore {
    map: RwLock<BTreeMap<String, Stored>>,
}

impl TemplateStore {
    /// The templates loaded at start (`bodies` holds their JSON text), all enabled.
    pub fn new(
        templates: BTreeMap<String, Arc<Template>>,
        bodies: &BTreeMap<String, String>,
    ) -> TemplateStore {
        let now = SystemTime::now();
        let map = templates
            .into_iter()
            .map(|(name, template)| {
                let body = bodies.get(&name).cloned().unwrap_or_default();
                let stored = Stored {
                    template,
                    body,
                    description: None,
                    enabled: true,
                    role_arn: None,
                    hook: None,
                    kind: "FLEET_PROVISIONING".into(),
                    created: now,
                    modified: now,
                };
                (name, stored)
            })
            .collect();
        TemplateStore {
            map: RwLock::new(map),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Stored>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Stored>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The template RegisterThing uses: it must exist, be enabled, and be a fleet template.
    pub fn for_provisioning(&self, name: &str) -> Result<Arc<Template>, Unusable> {
        match self.read().get(name) {
            None => Err(Unusable::Missing),
            Some(s) if !s.enabled || s.kind != "FLEET_PROVISIONING" => Err(Unusable::Disabled),
            Some(s) => Ok(s.template.clone()),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Serve what earlier mocks on the registry's directory journaled: templates created or
    /// updated over REST replace those of the same name loaded at start, deleted ones go. A
    /// journaled template that no longer loads (a template rule of a later version) is skipped
    /// with a warning naming it.
    pub fn restore(&self, journaled: Vec<(String, Option<Value>)>, arn: &ArnContext) {
        let mut map = self.write();
        for (name, record) in journaled {
            match record {
                None => {
                    map.remove(&name);
                }
                Some(record) => match from_record(&name, &record, arn) {
                    Ok(stored) => {
                        map.insert(name, stored);
                    }
                    Err(e) => tracing::warn!("journaled template {name} not restored: {e}"),
                },
            }
        }
    }
}

/// A stored template as the journal keeps it.
fn record(stored: &Stored) -> Value {
    json!({
        "body": stored.body,
        "description": stored.description,
        "enabled": stored.enabled,
        "role_arn": stored.role_arn,
        "hook": stored.hook,
        "kind": stored.kind,
        "created": epoch(stored.created),
        "modified": epoch(stored.modified),
    })
}

fn from_record(name: &str, r: &Value, arn: &ArnContext) -> Result<Stored, String> {
    let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
    let time = |key: &str| {
        let secs = r.get(key).and_then(Value::as_f64).unwrap_or_default();
        UNIX_EPOCH + Duration::try_from_secs_f64(secs).unwrap_or_default()
    };
    let body = text("body").ok_or("no body")?;
    let template =
        crate::mock::load_template(name, "templateBody", &body, arn).map_err(|e| e.to_string())?;
    Ok(Stored {
        template,
        body,
        description: text("description"),
        enabled: r.get("enabled").and_then(Value::as_bool).unwrap_or(false),
        role_arn: text("role_arn"),
        hook: r.get("hook").filter(|h| h.is_object()).cloned(),
        kind: text("kind").unwrap_or_else(|| "FLEET_PROVISIONING".into()),
        created: time("created"),
        modified: time("modified"),
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The provisioning template {name} does not exist."))
}

fn optional_string(
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{key} must be a string"))),
    }
}

fn optional_bool(
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(format!("{key} must be a boolean"))),
    }
}

/// `preProvisioningHook`: `{targetArn, payloadVersion}`. Stored and described; the mock runs the
/// hooks of its settings (`[hooks.NAME]`), never a Lambda named here.
fn hook(body: &serde_json::Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match body.get("preProvisioningHook") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(h)) => {
            if !h.get("targetArn").is_some_and(Value::is_string) {
                return Err(ApiError::invalid(
                    "preProvisioningHook.targetArn is required",
                ));
            }
            let mut hook = h.clone();
            hook.entry("payloadVersion")
                .or_insert_with(|| Value::String("2020-04-01".into()));
            Ok(Some(Value::Object(hook)))
        }
        Some(_) => Err(ApiError::invalid("preProvisioningHook must be an object")),
    }
}

/// POST /provisioning-templates
pub(super) fn create(state: &State, call: &Call) -> Reply {
    let body = call.json()?;
    let name = optional_string(&body, "templateName")?
        .ok_or_else(|| ApiError::invalid("templateName is required"))?;
    if !crate::protocol::valid_template_name(&name) {
        return Err(ApiError::invalid(format!(
            "Invalid templateName {name:?}: 1-36 characters of [0-9A-Za-z_-]"
        )));
    }
    let text = optional_string(&body, "templateBody")?
        .ok_or_else(|| ApiError::invalid("templateBody is required"))?;
    let role_arn = optional_string(&body, "provisioningRoleArn")?
        .ok_or_else(|| ApiError::invalid("provisioningRoleArn is required"))?;
    let kind = optional_string(&body, "type")?.unwrap_or_else(|| "FLEET_PROVISIONING".into());
    if kind != "FLEET_PROVISIONING" && kind != "JITP" {
        return Err(ApiError::invalid(format!(
            "Invalid type {kind:?}: FLEET_PROVISIONING or JITP"
        )));
    }
    let hook = hook(&body)?;
    if hook.is_some() && kind != "FLEET_PROVISIONING" {
        return Err(ApiError::invalid(
            "A pre-provisioning hook is allowed on FLEET_PROVISIONING templates only",
        ));
    }
    let template = crate::mock::load_template(&name, "templateBody", &text, &state.arn)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let arn = state.iot_arn("provisioningtemplate", &name);
    let now = SystemTime::now();
    let stored = Stored {
        template,
        body: text,
        description: optional_string(&body, "description")?,
        // AWS creates templates disabled unless asked (`--enabled`).
        enabled: optional_bool(&body, "enabled")?.unwrap_or(false),
        role_arn: Some(role_arn),
        hook,
        kind,
        created: now,
        modified: now,
    };
    {
        let mut map = state.templates.write();
        if map.contains_key(&name) {
            return Err(ApiError::already_exists(
                format!(
                    "Template {name} already exists{}",
                    state
                        .preloaded
                        .collision_note(crate::mock::PreloadedKind::Template, &name)
                ),
                &name,
                &arn,
            ));
        }
        state
            .registry
            .journal_template(&name, Some(&record(&stored)));
        map.insert(name.clone(), stored);
    }
    Ok(Some(json!({
        "templateArn": arn,
        "templateName": name,
        "defaultVersionId": 1,
    })))
}

/// GET /provisioning-templates/{templateName}
pub(super) fn describe(state: &State, name: &str) -> Reply {
    let stored = state
        .templates
        .read()
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(name))?;
    let mut out = summary(state, name, &stored);
    out.insert("defaultVersionId".into(), json!(1));
    out.insert("templateBody".into(), json!(stored.body));
    put(
        &mut out,
        "provisioningRoleArn",
        stored.role_arn.map(Value::from),
    );
    put(&mut out, "preProvisioningHook", stored.hook);
    Ok(Some(Value::Object(out)))
}

fn summary(state: &State, name: &str, stored: &Stored) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "templateArn".into(),
        json!(state.iot_arn("provisioningtemplate", name)),
    );
    out.insert("templateName".into(), json!(name));
    put(
        &mut out,
        "description",
        stored.description.clone().map(Value::from),
    );
    out.insert("creationDate".into(), json!(epoch(stored.created)));
    out.insert("lastModifiedDate".into(), json!(epoch(stored.modified)));
    out.insert("enabled".into(), json!(stored.enabled));
    out.insert("type".into(), json!(stored.kind));
    out
}

/// GET /provisioning-templates
pub(super) fn list(state: &State, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 25)?;
    let map = state.templates.read();
    let mut rest = map
        .iter()
        .filter(|(name, _)| paging.after.as_ref().is_none_or(|a| *name > a));
    let page: Vec<(&String, &Stored)> = rest.by_ref().take(paging.limit).collect();
    let more = rest.next().is_some();
    let last = page.last().map(|(name, _)| (*name).clone());
    let templates: Vec<Value> = page
        .into_iter()
        .map(|(name, stored)| Value::Object(summary(state, name, stored)))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("templates".into(), Value::Array(templates));
    put(
        &mut out,
        "nextToken",
        next_token(more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// PATCH /provisioning-templates/{templateName}
pub(super) fn update(state: &State, name: &str, call: &Call) -> Reply {
    let body = call.json()?;
    let description = optional_string(&body, "description")?;
    let enabled = optional_bool(&body, "enabled")?;
    let role_arn = optional_string(&body, "provisioningRoleArn")?;
    let new_hook = hook(&body)?;
    let remove_hook = optional_bool(&body, "removePreProvisioningHook")?.unwrap_or(false);
    match body.get("defaultVersionId") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(1) => {}
        Some(v) => {
            return Err(ApiError::not_found(format!(
                "Version {v} of template {name} does not exist (the mock keeps version 1 only)"
            )));
        }
    }
    if new_hook.is_some() && remove_hook {
        return Err(ApiError::invalid(
            "preProvisioningHook and removePreProvisioningHook cannot both be given",
        ));
    }
    let mut map = state.templates.write();
    let stored = map.get_mut(name).ok_or_else(|| not_found(name))?;
    if let Some(d) = description {
        stored.description = Some(d);
    }
    if let Some(e) = enabled {
        stored.enabled = e;
    }
    if let Some(r) = role_arn {
        stored.role_arn = Some(r);
    }
    if new_hook.is_some() {
        stored.hook = new_hook;
    }
    if remove_hook {
        stored.hook = None;
    }
    stored.modified = SystemTime::now();
    state.registry.journal_template(name, Some(&record(stored)));
    Ok(None)
}

/// DELETE /provisioning-templates/{templateName}
pub(super) fn delete(state: &State, name: &str) -> Reply {
    let mut map = state.templates.write();
    match map.remove(name) {
        Some(_) => {
            state.registry.journal_template(name, None);
            Ok(None)
        }
        None => Err(not_found(name)),
    }
}
