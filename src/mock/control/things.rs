//! Things and their principals, and DescribeEndpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value, json};
use sha2::Digest;

use super::{ApiError, Call, Reply, certificate_id_of, next_token, page_sorted, put};
use crate::mock::State;
use crate::mock::registry::control::{ThingFilter, thing_not_found};
use crate::mock::registry::{AttributePayload, ThingRecord, ThingUpdate};

/// A stable UUID-shaped thing ID derived from the name (the registry keeps no IDs).
pub(super) fn thing_id(name: &str) -> String {
    let h = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// botocore `ThingName`, `ThingGroupName`, `ThingTypeName`, `BillingGroupName`: 1-128
/// characters of `[a-zA-Z0-9:_-]`; `field` names the member in the refusal.
pub(super) fn checked<'a>(field: &str, name: &'a str) -> Result<&'a str, ApiError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid {field} {name:?}: 1-128 characters of [a-zA-Z0-9:_-]"
        )))
    }
}

fn checked_name(name: &str) -> Result<&str, ApiError> {
    checked("thingName", name)
}

/// An optional string member of a JSON body, checked as a registry name.
pub(super) fn optional_name(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(checked(field, s)?.to_string())),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a string"))),
    }
}

/// `attributePayload` (`{"attributes": {NAME: VALUE}, "merge": BOOL}`) under `field`: the
/// attributes and the merge flag.
pub(super) fn attribute_payload(
    value: Option<&Value>,
    field: &str,
) -> Result<Option<AttributePayload>, ApiError> {
    let payload = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ApiError::invalid(format!("{field} must be an object"))),
    };
    let mut attributes = BTreeMap::new();
    match payload.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Value::String(v) = v else {
                    return Err(ApiError::invalid(format!(
                        "{field}.attributes.{k} must be a string"
                    )));
                };
                attributes.insert(k.clone(), v.clone());
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{field}.attributes must be an object of strings"
            )));
        }
    }
    let merge = match payload.get("merge") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{field}.merge must be a boolean"
            )));
        }
    };
    Ok(Some((attributes, merge)))
}

/// A thing's ARN, ID and name, as CreateThing answers.
fn created(state: &State, name: &str) -> Value {
    json!({
        "thingName": name,
        "thingArn": state.iot_arn("thing", name),
        "thingId": thing_id(name),
    })
}

/// POST /things/{thingName}
pub(super) fn create(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    let body = call.json()?;
    let thing_type = optional_name(&body, "thingTypeName")?;
    let billing = optional_name(&body, "billingGroupName")?;
    let attributes = attribute_payload(body.get("attributePayload"), "attributePayload")?
        .map(|(a, _)| a)
        .unwrap_or_default();
    state
        .registry
        .create_thing(name, thing_type.as_deref(), attributes, billing.as_deref())?;
    Ok(Some(created(state, name)))
}

/// PATCH /things/{thingName}
pub(super) fn update(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    let body = call.json()?;
    let expected_version = match body.get("expectedVersion") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::invalid("expectedVersion must be a whole number"))?,
        ),
    };
    let remove_thing_type = match body.get("removeThingType") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("removeThingType must be a boolean")),
    };
    let update = ThingUpdate {
        thing_type_name: optional_name(&body, "thingTypeName")?,
        remove_thing_type,
        attributes: attribute_payload(body.get("attributePayload"), "attributePayload")?,
        expected_version,
    };
    state.registry.update_thing(name, &update)?;
    Ok(None)
}

/// GET /things/{thingName}/principals-v2?thingPrincipalType=&nextToken=&maxResults=
/// (ListThingPrincipalsV2). The mock attaches every principal NON_EXCLUSIVE_THING.
pub(super) fn principals_v2(state: &State, name: &str, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 25)?;
    let thing = state
        .registry
        .thing(checked_name(name)?)
        .ok_or_else(|| ApiError::from(thing_not_found(name)))?;
    let exclusive = match call.query("thingPrincipalType") {
        None | Some("NON_EXCLUSIVE_THING") => false,
        Some("EXCLUSIVE_THING") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid thingPrincipalType {other:?}: EXCLUSIVE_THING or NON_EXCLUSIVE_THING"
            )));
        }
    };
    let mut arns: Vec<String> = if exclusive {
        Vec::new()
    } else {
        thing
            .certificates
            .iter()
            .map(|id| state.certificate_arn(id))
            .collect()
    };
    arns.sort();
    let (page, token) = page_sorted(arns, &paging);
    let objects: Vec<Value> = page
        .into_iter()
        .map(|p| json!({ "principal": p, "thingPrincipalType": "NON_EXCLUSIVE_THING" }))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("thingPrincipalObjects".into(), Value::Array(objects));
    put(&mut out, "nextToken", token.map(Value::from));
    Ok(Some(Value::Object(out)))
}

fn principal(call: &Call) -> Result<String, ApiError> {
    call.headers
        .get("x-amzn-principal")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid("principal (header x-amzn-principal) is required"))
}

fn attribute_map(thing: &ThingRecord) -> Value {
    json!(thing.attributes)
}

/// GET /things/{thingName}
pub(super) fn describe(state: &State, name: &str) -> Reply {
    let name = checked_name(name)?;
    let thing = state
        .registry
        .thing(name)
        .ok_or_else(|| ApiError::from(thing_not_found(name)))?;
    let mut out = serde_json::Map::new();
    out.insert("defaultClientId".into(), json!(name));
    out.insert("thingName".into(), json!(name));
    out.insert("thingId".into(), json!(thing_id(name)));
    out.insert("thingArn".into(), json!(state.iot_arn("thing", name)));
    put(
        &mut out,
        "thingTypeName",
        thing.thing_type_name.clone().map(Value::from),
    );
    out.insert("attributes".into(), attribute_map(&thing));
    out.insert("version".into(), json!(thing.version));
    put(
        &mut out,
        "billingGroupName",
        thing.billing_group.clone().map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// DELETE /things/{thingName}?expectedVersion=
pub(super) fn delete(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked_name(name)?;
    state
        .registry
        .delete_thing(name, call.number("expectedVersion")?)?;
    Ok(None)
}

/// GET /things?nextToken=&maxResults=&attributeName=&attributeValue=&thingTypeName=&usePrefixAttributeValue=
pub(super) fn list(state: &State, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 50)?;
    let filter = ThingFilter {
        attribute_name: call.query("attributeName").map(str::to_string),
        attribute_value: call.query("attributeValue").map(str::to_string),
        use_prefix: call.flag("usePrefixAttributeValue", false)?,
        thing_type_name: call.query("thingTypeName").map(str::to_string),
    };
    if filter.use_prefix && filter.attribute_value.is_none() {
        return Err(ApiError::invalid(
            "usePrefixAttributeValue needs attributeName and attributeValue",
        ));
    }
    let page = state
        .registry
        .things_page(&filter, paging.after.as_deref(), paging.limit);
    let last = page.items.last().map(|t| t.thing_name.clone());
    let things: Vec<Value> = page
        .items
        .iter()
        .map(|t| {
            let mut m = serde_json::Map::new();
            m.insert("thingName".into(), json!(t.thing_name));
            put(
                &mut m,
                "thingTypeName",
                t.thing_type_name.clone().map(Value::from),
            );
            m.insert(
                "thingArn".into(),
                json!(state.iot_arn("thing", &t.thing_name)),
            );
            m.insert("attributes".into(), attribute_map(t));
            m.insert("version".into(), json!(t.version));
            Value::Object(m)
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("things".into(), Value::Array(things));
    put(
        &mut out,
        "nextToken",
        next_token(page.more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// GET /things/{thingName}/principals?nextToken=&maxResults=
pub(super) fn principals(state: &State, name: &str, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 25)?;
    let thing = state
        .registry
        .thing(name)
        .ok_or_else(|| ApiError::from(thing_not_found(name)))?;
    let mut arns: Vec<String> = thing
        .certificates
        .iter()
        .map(|id| state.certificate_arn(id))
        .collect();
    arns.sort();
    let (page, token) = page_sorted(arns, &paging);
    let mut out = serde_json::Map::new();
    out.insert("principals".into(), json!(page));
    put(&mut out, "nextToken", token.map(Value::from));
    Ok(Some(Value::Object(out)))
}

/// GET /principals/things?nextToken=&maxResults=, principal in `x-amzn-principal`
/// (ListPrincipalThings).
pub(super) fn principal_things(state: &State, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 25)?;
    let arn = principal(call)?;
    let id = certificate_id_of(&arn)?;
    let names = state.registry.certificate_things(id)?;
    let (page, token) = page_sorted(names, &paging);
    let mut out = serde_json::Map::new();
    out.insert("things".into(), json!(page));
    put(&mut out, "nextToken", token.map(Value::from));
    Ok(Some(Value::Object(out)))
}

/// PUT /things/{thingName}/principals, principal in `x-amzn-principal`.
pub(super) fn attach(state: &State, name: &str, call: &Call) -> Reply {
    let arn = principal(call)?;
    let id = certificate_id_of(&arn)?;
    state.registry.attach_thing_principal(name, id)?;
    Ok(None)
}

/// DELETE /things/{thingName}/principals, principal in `x-amzn-principal`.
pub(super) fn detach(state: &State, name: &str, call: &Call) -> Reply {
    let arn = principal(call)?;
    let id = certificate_id_of(&arn)?;
    state.registry.detach_thing_principal(name, id)?;
    Ok(None)
}

/// GET /endpoint?endpointType=
///
/// AWS answers a host name only; the mock answers the host of its MQTT listener (`localhost`
/// when it listens on every address) for every data endpoint type. The port is the MQTT
/// listener's (the ready line, and the `x-fleetstorm-mqtt-port` header of this response).
pub(super) fn endpoint(mqtt: SocketAddr, call: &Call) -> Reply {
    match call.query("endpointType") {
        None | Some("iot:Data" | "iot:Data-ATS" | "iot:CredentialProvider" | "iot:Jobs") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Endpoint type {other} is not valid: iot:Data, iot:Data-ATS, iot:CredentialProvider or iot:Jobs"
            )));
        }
    }
    let host = if mqtt.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        mqtt.ip().to_string()
    };
    Ok(Some(json!({ "endpointAddress": host })))
}
