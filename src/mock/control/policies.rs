//! Policies: create, get, delete, list, and their attachment to certificates.

use serde_json::{Value, json};

use super::{ApiError, Call, Reply, certificate_id_of, page_sorted, put};
use crate::iot::policy::PolicyDocument;
use crate::mock::State;

/// botocore `PolicyName`: 1-128 characters of `[\w+=,.@-]`.
fn checked_name(name: &str) -> Result<&str, ApiError> {
    let ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid policyName {name:?}: 1-128 characters of [\\w+=,.@-]"
        )))
    }
}

fn target(call: &Call) -> Result<String, ApiError> {
    match call.json()?.get("target") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(ApiError::invalid("target is required")),
    }
}

/// The body's `policyDocument`: its text, JSON and parsed policy; a document that is not a
/// policy is MalformedPolicyException.
fn policy_document(call: &Call) -> Result<(String, Value, PolicyDocument), ApiError> {
    let body = call.json()?;
    let text = match body.get("policyDocument") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ApiError::invalid("policyDocument is required")),
    };
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::malformed_policy(format!("Policy document is not JSON: {e}")))?;
    let document =
        PolicyDocument::parse(&json).map_err(|e| ApiError::malformed_policy(e.to_string()))?;
    Ok((text, json, document))
}

/// POST /policies/{policyName}
pub(super) fn create(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    let (text, json, document) = policy_document(call)?;
    let arn = state.iot_arn("policy", name);
    state
        .registry
        .create_policy(name, document, json)
        .map_err(|_| {
            let note = state
                .preloaded
                .collision_note(crate::mock::PreloadedKind::Policy, name);
            ApiError::already_exists(format!("Policy {name} already exists.{note}"), name, &arn)
        })?;
    Ok(Some(json!({
        "policyName": name,
        "policyArn": arn,
        "policyDocument": text,
        "policyVersionId": "1",
    })))
}

/// GET /policies/{policyName}: the default version's document.
pub(super) fn get(state: &State, name: &str) -> Reply {
    let versions = state.registry.policy_versions(name)?;
    let default = versions
        .versions
        .iter()
        .find(|v| v.id == versions.default)
        .ok_or_else(|| ApiError::internal(format!("policy {name} has no default version")))?;
    let first = versions
        .versions
        .iter()
        .map(|v| v.created)
        .fold(f64::MAX, f64::min);
    Ok(Some(json!({
        "policyName": name,
        "policyArn": state.iot_arn("policy", name),
        "policyDocument": default.document.to_string(),
        "defaultVersionId": versions.default.to_string(),
        "creationDate": first,
        "lastModifiedDate": default.created,
        "generationId": versions.default.to_string(),
    })))
}

/// botocore `PolicyVersionId`: digits.
fn version_id(id: &str) -> Result<u32, ApiError> {
    id.parse::<u32>()
        .ok()
        .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::invalid(format!("Invalid policyVersionId {id:?}: digits")))
}

/// POST /policies/{policyName}/version?setAsDefault=
pub(super) fn create_version(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    let set_as_default = call.flag("setAsDefault", false)?;
    let (text, json, _) = policy_document(call)?;
    let (id, default) = state
        .registry
        .create_policy_version(name, json, set_as_default)?;
    Ok(Some(json!({
        "policyArn": state.iot_arn("policy", name),
        "policyDocument": text,
        "policyVersionId": id.to_string(),
        "isDefaultVersion": default,
    })))
}

/// GET /policies/{policyName}/version (not paged: at most five versions).
pub(super) fn list_versions(state: &State, name: &str) -> Reply {
    let name = checked_name(name)?;
    let versions = state.registry.policy_versions(name)?;
    let list: Vec<Value> = versions
        .versions
        .iter()
        .map(|v| {
            json!({
                "versionId": v.id.to_string(),
                "isDefaultVersion": v.id == versions.default,
                "createDate": v.created,
            })
        })
        .collect();
    Ok(Some(json!({ "policyVersions": list })))
}

/// GET /policies/{policyName}/version/{policyVersionId}
pub(super) fn get_version(state: &State, name: &str, id: &str) -> Reply {
    let name = checked_name(name)?;
    let (version, default) = state.registry.policy_version(name, version_id(id)?)?;
    Ok(Some(json!({
        "policyArn": state.iot_arn("policy", name),
        "policyName": name,
        "policyDocument": version.document.to_string(),
        "policyVersionId": version.id.to_string(),
        "isDefaultVersion": default,
        "creationDate": version.created,
        "lastModifiedDate": version.created,
        "generationId": version.id.to_string(),
    })))
}

/// PATCH /policies/{policyName}/version/{policyVersionId}
pub(super) fn set_default_version(state: &State, name: &str, id: &str) -> Reply {
    let name = checked_name(name)?;
    state
        .registry
        .set_default_policy_version(name, version_id(id)?)?;
    Ok(None)
}

/// DELETE /policies/{policyName}/version/{policyVersionId}
pub(super) fn delete_version(state: &State, name: &str, id: &str) -> Reply {
    let name = checked_name(name)?;
    state
        .registry
        .delete_policy_version(name, version_id(id)?)?;
    Ok(None)
}

/// DELETE /policies/{policyName}
pub(super) fn delete(state: &State, name: &str) -> Reply {
    state.registry.delete_policy(name)?;
    Ok(None)
}

/// GET /policies?marker=&pageSize=&isAscendingOrder=
pub(super) fn list(state: &State, call: &Call) -> Reply {
    let paging = call.paging("marker", "pageSize", 25)?;
    let ascending = call.flag("isAscendingOrder", true)?;
    let page = state
        .registry
        .policies_page(paging.after.as_deref(), ascending, paging.limit);
    let last = page.items.last().cloned();
    Ok(Some(policy_list(
        state,
        &page.items,
        super::next_token(page.more, last),
    )))
}

fn policy_list(state: &State, names: &[String], marker: Option<String>) -> Value {
    let policies: Vec<Value> = names
        .iter()
        .map(|n| json!({ "policyName": n, "policyArn": state.iot_arn("policy", n) }))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("policies".into(), Value::Array(policies));
    put(&mut out, "nextMarker", marker.map(Value::from));
    Value::Object(out)
}

/// PUT /target-policies/{policyName} `{"target": ARN}`
pub(super) fn attach(state: &State, name: &str, call: &Call) -> Reply {
    let target = target(call)?;
    let id = certificate_id_of(&target)?;
    state.registry.attach_policy(name, id)?;
    Ok(None)
}

/// POST /target-policies/{policyName} `{"target": ARN}`
pub(super) fn detach(state: &State, name: &str, call: &Call) -> Reply {
    let target = target(call)?;
    let id = certificate_id_of(&target)?;
    state.registry.detach_policy(name, id)?;
    Ok(None)
}

/// POST /attached-policies/{target}?recursive=&marker=&pageSize=
pub(super) fn list_attached(state: &State, target: &str, call: &Call) -> Reply {
    let paging = call.paging("marker", "pageSize", 25)?;
    let id = certificate_id_of(target)?;
    let names = state.registry.certificate_policies(id)?;
    let (page, marker) = page_sorted(names, &paging);
    Ok(Some(policy_list(state, &page, marker)))
}

/// POST /policy-targets/{policyName}?marker=&pageSize=
pub(super) fn targets(state: &State, name: &str, call: &Call) -> Reply {
    let paging = call.paging("marker", "pageSize", 25)?;
    let mut arns: Vec<String> = state
        .registry
        .policy_targets(name)?
        .iter()
        .map(|id| state.certificate_arn(id))
        .collect();
    arns.sort();
    let (page, marker) = page_sorted(arns, &paging);
    let mut out = serde_json::Map::new();
    out.insert("targets".into(), json!(page));
    put(&mut out, "nextMarker", marker.map(Value::from));
    Ok(Some(Value::Object(out)))
}
