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

/// POST /policies/{policyName}
pub(super) fn create(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    let body = call.json()?;
    let text = match body.get("policyDocument") {
        Some(Value::String(t)) => t,
        _ => return Err(ApiError::invalid("policyDocument is required")),
    };
    let json: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::malformed_policy(format!("Policy document is not JSON: {e}")))?;
    let document =
        PolicyDocument::parse(&json).map_err(|e| ApiError::malformed_policy(e.to_string()))?;
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

/// GET /policies/{policyName}
pub(super) fn get(state: &State, name: &str) -> Reply {
    let json = state
        .registry
        .policy_json(name)
        .ok_or_else(|| ApiError::not_found(format!("Policy {name} does not exist.")))?;
    Ok(Some(json!({
        "policyName": name,
        "policyArn": state.iot_arn("policy", name),
        "policyDocument": json.to_string(),
        "defaultVersionId": "1",
        "generationId": "1",
    })))
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
