//! Thing groups (static ones) and thing types.

use serde_json::{Value, json};

use super::things::{attribute_payload, checked, optional_name, thing_id};
use super::{ApiError, Call, Reply, next_token, put};
use crate::mock::State;
use crate::mock::registry::{GroupRecord, TypeRecord};

fn group_arn(state: &State, name: &str) -> String {
    state.iot_arn("thinggroup", name)
}

fn type_arn(state: &State, name: &str) -> String {
    state.iot_arn("thingtype", name)
}

/// An optional string member of an object, `path` naming it in the refusal.
fn optional_text(
    object: &serde_json::Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<(), ApiError> {
    match object.get(key) {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid(format!("{path}.{key} must be a string"))),
    }
}

/// `thingGroupProperties`: `{thingGroupDescription, attributePayload}`, checked and kept as
/// given (less `attributePayload.merge`, an update flag).
fn group_properties(body: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
    const FIELD: &str = "thingGroupProperties";
    let mut props = match body.get(FIELD) {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(ApiError::invalid(format!("{FIELD} must be an object"))),
    };
    optional_text(&props, "thingGroupDescription", FIELD)?;
    if let Some((attributes, _)) = attribute_payload(
        props.get("attributePayload"),
        "thingGroupProperties.attributePayload",
    )? {
        props.insert(
            "attributePayload".into(),
            json!({ "attributes": attributes }),
        );
    }
    Ok(Value::Object(props))
}

/// POST /thing-groups/{thingGroupName}
pub(super) fn create_group(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingGroupName", name)?;
    let body = call.json()?;
    let parent = optional_name(&body, "parentGroupName")?;
    let properties = group_properties(&body)?;
    state
        .registry
        .create_thing_group(name, parent.as_deref(), properties)
        .map_err(|r| {
            let mut e = ApiError::from(r);
            if e.code == "ResourceAlreadyExistsException" {
                e = ApiError::already_exists(
                    e.message,
                    &thing_id(&format!("group:{name}")),
                    &group_arn(state, name),
                );
            }
            e
        })?;
    Ok(Some(json!({
        "thingGroupName": name,
        "thingGroupArn": group_arn(state, name),
        "thingGroupId": thing_id(&format!("group:{name}")),
    })))
}

/// GET /thing-groups/{thingGroupName}
pub(super) fn describe_group(state: &State, name: &str) -> Reply {
    let name = checked("thingGroupName", name)?;
    let (group, ancestors): (GroupRecord, Vec<String>) = state.registry.thing_group(name)?;
    let mut metadata = serde_json::Map::new();
    put(
        &mut metadata,
        "parentGroupName",
        group.parent.clone().map(Value::from),
    );
    if !ancestors.is_empty() {
        let chain: Vec<Value> = ancestors
            .iter()
            .map(|a| json!({ "groupName": a, "groupArn": group_arn(state, a) }))
            .collect();
        metadata.insert("rootToParentThingGroups".into(), Value::Array(chain));
    }
    metadata.insert("creationDate".into(), json!(group.created));
    Ok(Some(json!({
        "thingGroupName": name,
        "thingGroupId": thing_id(&format!("group:{name}")),
        "thingGroupArn": group_arn(state, name),
        "version": group.version,
        "thingGroupProperties": group.properties,
        "thingGroupMetadata": metadata,
    })))
}

/// A page of group names as `[{groupName, groupArn}]` under `thingGroups`.
fn group_list(state: &State, page: crate::mock::registry::control::Page<String>) -> Reply {
    let last = page.items.last().cloned();
    let groups: Vec<Value> = page
        .items
        .iter()
        .map(|g| json!({ "groupName": g, "groupArn": group_arn(state, g) }))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("thingGroups".into(), Value::Array(groups));
    put(
        &mut out,
        "nextToken",
        next_token(page.more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// GET /thing-groups?parentGroup=&namePrefixFilter=&recursive=&nextToken=&maxResults=
pub(super) fn list_groups(state: &State, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 50)?;
    let parent = call
        .query("parentGroup")
        .map(|p| checked("parentGroup", p))
        .transpose()?;
    let prefix = call
        .query("namePrefixFilter")
        .map(|p| checked("namePrefixFilter", p))
        .transpose()?;
    let recursive = call.flag("recursive", false)?;
    let page = state.registry.thing_groups_page(
        parent,
        recursive,
        prefix,
        paging.after.as_deref(),
        paging.limit,
    )?;
    group_list(state, page)
}

/// DELETE /thing-groups/{thingGroupName}?expectedVersion=
pub(super) fn delete_group(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingGroupName", name)?;
    let expected = call.number("expectedVersion")?;
    state.registry.delete_thing_group(name, expected)?;
    Ok(None)
}

/// The name in `{kind}Name`, or the last part of `{kind}Arn` (`arn:...:KIND/NAME`).
fn name_or_arn(body: &serde_json::Map<String, Value>, kind: &str) -> Result<String, ApiError> {
    if let Some(name) = optional_name(body, &format!("{kind}Name"))? {
        return Ok(name);
    }
    match body.get(&format!("{kind}Arn")) {
        Some(Value::String(arn)) => match arn.rsplit_once('/') {
            Some((_, name)) if arn.starts_with("arn:") => {
                Ok(checked(&format!("{kind}Arn"), name)?.to_string())
            }
            _ => Err(ApiError::invalid(format!("Invalid {kind}Arn {arn:?}"))),
        },
        _ => Err(ApiError::invalid(format!(
            "{kind}Name or {kind}Arn is required"
        ))),
    }
}

/// PUT /thing-groups/addThingToThingGroup and /thing-groups/removeThingFromThingGroup
pub(super) fn membership(state: &State, call: &Call, add: bool) -> Reply {
    let body = call.json()?;
    let group = name_or_arn(&body, "thingGroup")?;
    let thing = name_or_arn(&body, "thing")?;
    state.registry.thing_group_member(&group, &thing, add)?;
    Ok(None)
}

/// GET /thing-groups/{thingGroupName}/things?recursive=&nextToken=&maxResults=
pub(super) fn things_in_group(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingGroupName", name)?;
    let paging = call.paging("nextToken", "maxResults", 50)?;
    let recursive = call.flag("recursive", false)?;
    let page =
        state
            .registry
            .things_in_group(name, recursive, paging.after.as_deref(), paging.limit)?;
    let last = page.items.last().cloned();
    let mut out = serde_json::Map::new();
    out.insert("things".into(), json!(page.items));
    put(
        &mut out,
        "nextToken",
        next_token(page.more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// GET /things/{thingName}/thing-groups?nextToken=&maxResults=
pub(super) fn groups_for_thing(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingName", name)?;
    let paging = call.paging("nextToken", "maxResults", 50)?;
    let page = state
        .registry
        .groups_of_thing(name, paging.after.as_deref(), paging.limit)?;
    group_list(state, page)
}

/// `thingTypeProperties`: `{thingTypeDescription, searchableAttributes, mqtt5Configuration}`,
/// checked and kept as given.
fn type_properties(body: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
    const FIELD: &str = "thingTypeProperties";
    let props = match body.get(FIELD) {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ApiError::invalid(format!("{FIELD} must be an object"))),
    };
    optional_text(props, "thingTypeDescription", FIELD)?;
    match props.get("searchableAttributes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{FIELD}.searchableAttributes must be a list of strings"
            )));
        }
    }
    Ok(Value::Object(props.clone()))
}

fn type_definition(state: &State, name: &str, t: &TypeRecord) -> serde_json::Map<String, Value> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("deprecated".into(), json!(t.deprecated.is_some()));
    put(
        &mut metadata,
        "deprecationDate",
        t.deprecated.map(Value::from),
    );
    metadata.insert("creationDate".into(), json!(t.created));
    let mut out = serde_json::Map::new();
    out.insert("thingTypeName".into(), json!(name));
    out.insert("thingTypeArn".into(), json!(type_arn(state, name)));
    out.insert("thingTypeProperties".into(), t.properties.clone());
    out.insert("thingTypeMetadata".into(), Value::Object(metadata));
    out
}

/// POST /thing-types/{thingTypeName}
pub(super) fn create_type(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingTypeName", name)?;
    let body = call.json()?;
    let properties = type_properties(&body)?;
    let id = thing_id(&format!("type:{name}"));
    state
        .registry
        .create_thing_type(name, properties)
        .map_err(|r| {
            let e = ApiError::from(r);
            if e.code == "ResourceAlreadyExistsException" {
                ApiError::already_exists(e.message, &id, &type_arn(state, name))
            } else {
                e
            }
        })?;
    Ok(Some(json!({
        "thingTypeName": name,
        "thingTypeArn": type_arn(state, name),
        "thingTypeId": id,
    })))
}

/// GET /thing-types/{thingTypeName}
pub(super) fn describe_type(state: &State, name: &str) -> Reply {
    let name = checked("thingTypeName", name)?;
    let t = state.registry.thing_type(name)?;
    let mut out = type_definition(state, name, &t);
    out.insert(
        "thingTypeId".into(),
        json!(thing_id(&format!("type:{name}"))),
    );
    Ok(Some(Value::Object(out)))
}

/// GET /thing-types?thingTypeName=&nextToken=&maxResults=
pub(super) fn list_types(state: &State, call: &Call) -> Reply {
    let paging = call.paging("nextToken", "maxResults", 50)?;
    let only = call
        .query("thingTypeName")
        .map(|n| checked("thingTypeName", n))
        .transpose()?;
    let page = state
        .registry
        .thing_types_page(only, paging.after.as_deref(), paging.limit);
    let last = page.items.last().map(|(n, _)| n.clone());
    let types: Vec<Value> = page
        .items
        .iter()
        .map(|(n, t)| Value::Object(type_definition(state, n, t)))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("thingTypes".into(), Value::Array(types));
    put(
        &mut out,
        "nextToken",
        next_token(page.more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}

/// POST /thing-types/{thingTypeName}/deprecate `{"undoDeprecate": BOOL}`
pub(super) fn deprecate_type(state: &State, name: &str, call: &Call) -> Reply {
    let name = checked("thingTypeName", name)?;
    let undo = match call.json()?.get("undoDeprecate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("undoDeprecate must be a boolean")),
    };
    state.registry.deprecate_thing_type(name, undo)?;
    Ok(None)
}

/// DELETE /thing-types/{thingTypeName}
pub(super) fn delete_type(state: &State, name: &str) -> Reply {
    let name = checked("thingTypeName", name)?;
    state.registry.delete_thing_type(name)?;
    Ok(None)
}
