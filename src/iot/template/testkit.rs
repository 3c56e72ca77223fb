//! Test helpers shared by the template engine's unit tests: minimal template bodies, rendering
//! with a fixed certificate ID, and the pointer a rejected body is reported at.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    PolicySpec, RenderContext, RenderError, Rendered, SEED_TEMPLATE_JSON, Template, TemplateError,
};

pub(super) const CERT_ID: &str = "82e613adb5ecbbd8921073d9e9dee236f6cb41e44c330abbe7d718e978fcbc7c";

pub(super) fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn render(template: &Template, pairs: &[(&str, &str)]) -> Result<Rendered, RenderError> {
    let parameters = params(pairs);
    template.render(&RenderContext {
        parameters: &parameters,
        certificate_id: CERT_ID,
    })
}

pub(super) fn parse(body: &Value) -> Result<Template, TemplateError> {
    Template::parse(&body.to_string())
}

/// The pointer of the fault `body` is rejected with.
pub(super) fn fault_pointer(body: &Value) -> String {
    match parse(body) {
        Ok(_) => panic!("template unexpectedly accepted: {body}"),
        Err(e) => e.pointer,
    }
}

/// A template whose thing name is `expr`, plus `extra` top-level sections.
pub(super) fn named(expr: Value, extra: Value) -> Value {
    let mut body = json!({
        "Parameters": {
            "Name": {"Type": "String"},
            "Serial": {"Type": "String", "Default": "0001"},
            "List": {"Type": "String", "Default": "a,b,c"}
        },
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": expr}}
        }
    });
    if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    body
}

/// Render `expr` as the thing name of a minimal template.
pub(super) fn thing_name(expr: Value, pairs: &[(&str, &str)]) -> Result<String, RenderError> {
    let template = parse(&named(expr, json!({}))).expect("template parses");
    Ok(render(&template, pairs)?
        .thing
        .expect("template has a thing")
        .thing_name)
}

/// Render `expr` as a device-configuration value (no thing-name restrictions).
pub(super) fn config_value(
    expr: Value,
    extra: Value,
    pairs: &[(&str, &str)],
) -> Result<String, RenderError> {
    let mut body = json!({
        "Parameters": {
            "Name": {"Type": "String"},
            "Serial": {"Type": "String", "Default": "0001"},
            "List": {"Type": "String", "Default": "a,b,c"}
        },
        "Resources": {},
        "DeviceConfiguration": {"Value": expr}
    });
    if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    let template = parse(&body).expect("template parses");
    let rendered = render(&template, pairs)?;
    Ok(rendered.device_configuration["Value"]
        .as_str()
        .expect("string value")
        .to_string())
}

pub(super) fn seed() -> Template {
    Template::parse(SEED_TEMPLATE_JSON).expect("seed template parses")
}

pub(super) const SEED_PARAMS: &[(&str, &str)] = &[
    ("DeviceName", "FPC-device-3f1c"),
    ("SerialNumber", "123456"),
    ("DeviceLocation", "Berlin"),
];

pub(super) fn certificate_with(props: Value) -> Value {
    json!({"Resources": {"cert": {"Type": "AWS::IoT::Certificate", "Properties": props}}})
}

pub(super) fn policy_with(props: Value) -> Value {
    json!({
        "Parameters": {"Topic": {"Type": "String", "Default": "t1"}},
        "Resources": {"pol": {"Type": "AWS::IoT::Policy", "Properties": props}}
    })
}

pub(super) fn rendered_policy(body: &Value) -> PolicySpec {
    let rendered = render(&parse(body).expect("parses"), &[]).expect("renders");
    rendered.policies.into_iter().next().expect("one policy")
}

pub(super) fn thing_with_overrides(overrides: Value) -> Value {
    json!({"Resources": {"thing": {
        "Type": "AWS::IoT::Thing",
        "Properties": {"ThingName": "t"},
        "OverrideSettings": overrides
    }}})
}
