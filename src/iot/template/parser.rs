//! Parsing of a template's sections (Parameters, Mappings, Resources, DeviceConfiguration) into
//! the typed model, and the JSON-pointer helpers every parse fault is reported with.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    CertificateResource, Expr, JsonExpr, Mappings, OverrideAction, PolicyResource, PolicySource,
    Resources, TemplateError, ThingOverrides, ThingResource, parse_status,
    policy_name_for_document, thing_name_fault, valid_thing_name,
};

pub(super) fn fault(pointer: &str, message: impl Into<String>) -> TemplateError {
    TemplateError {
        pointer: pointer.to_string(),
        message: message.into(),
    }
}

/// The pointer of member `key` of the value at `pointer` (RFC 6901 escaping).
pub(super) fn child(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

pub(super) fn element(pointer: &str, index: usize) -> String {
    format!("{pointer}/{index}")
}

pub(super) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn object<'v>(
    v: &'v Value,
    pointer: &str,
    what: &str,
) -> Result<&'v Map<String, Value>, TemplateError> {
    v.as_object().ok_or_else(|| {
        fault(
            pointer,
            format!("{what} must be an object, not {}", describe(v)),
        )
    })
}

pub(super) fn literal_string<'v>(
    v: &'v Value,
    pointer: &str,
    what: &str,
) -> Result<&'v str, TemplateError> {
    v.as_str().ok_or_else(|| {
        fault(
            pointer,
            format!("{what} must be a string, not {}", describe(v)),
        )
    })
}

/// The arguments of an intrinsic function, which must be an array of exactly `N` values.
pub(super) fn arguments<'v, const N: usize>(
    v: &'v Value,
    pointer: &str,
    function: &str,
    shape: &str,
) -> Result<&'v [Value; N], TemplateError> {
    v.as_array()
        .and_then(|args| <&[Value; N]>::try_from(args.as_slice()).ok())
        .ok_or_else(|| fault(pointer, format!("{function} takes {shape}")))
}

pub(super) fn check_keys(
    obj: &Map<String, Value>,
    pointer: &str,
    allowed: &[&str],
    what: &str,
) -> Result<(), TemplateError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(fault(
            &child(pointer, key),
            format!(
                "unknown {what} {key:?} (expected one of {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// If `v` is shaped like an intrinsic function (an object with a `Ref` or `Fn::` key), its
/// function name and argument. Such an object must have exactly one key.
pub(super) fn as_intrinsic<'v>(
    v: &'v Value,
    pointer: &str,
) -> Result<Option<(&'v str, &'v Value)>, TemplateError> {
    let Some(obj) = v.as_object() else {
        return Ok(None);
    };
    let Some(name) = obj.keys().find(|k| *k == "Ref" || k.starts_with("Fn::")) else {
        return Ok(None);
    };
    if obj.len() != 1 {
        return Err(fault(
            pointer,
            format!("an intrinsic function object ({name}) must have exactly one key"),
        ));
    }
    Ok(obj.get(name.as_str()).map(|arg| (name.as_str(), arg)))
}

pub(super) fn parse_parameters(
    v: &Value,
    pointer: &str,
) -> Result<BTreeMap<String, Option<String>>, TemplateError> {
    let mut parameters = BTreeMap::new();
    for (name, decl) in object(v, pointer, "Parameters")? {
        let p = child(pointer, name);
        if name.is_empty() {
            return Err(fault(&p, "parameter names must not be empty"));
        }
        let decl = object(decl, &p, "a parameter declaration")?;
        check_keys(
            decl,
            &p,
            &["Type", "Default", "Description"],
            "parameter attribute",
        )?;
        let type_pointer = child(&p, "Type");
        match decl.get("Type") {
            None => return Err(fault(&p, "missing required attribute Type")),
            Some(Value::String(t)) if t == "String" => {}
            Some(other) => {
                return Err(fault(
                    &type_pointer,
                    format!("unsupported parameter type {other}; the only type is \"String\""),
                ));
            }
        }
        if let Some(d) = decl.get("Description") {
            literal_string(d, &child(&p, "Description"), "Description")?;
        }
        let default = match decl.get("Default") {
            Some(d) => Some(literal_string(d, &child(&p, "Default"), "Default")?.to_string()),
            None => None,
        };
        parameters.insert(name.clone(), default);
    }
    Ok(parameters)
}

pub(super) fn parse_mappings(v: &Value, pointer: &str) -> Result<Mappings, TemplateError> {
    // Mappings may not contain parameters or intrinsic functions (`spec/aws-fleet-provisioning.md`
    // §2), at any level.
    fn no_intrinsic(v: &Value, pointer: &str) -> Result<(), TemplateError> {
        match as_intrinsic(v, pointer)? {
            Some((name, _)) => Err(fault(
                pointer,
                format!("intrinsic functions ({name}) are not allowed in Mappings"),
            )),
            None => Ok(()),
        }
    }

    let mut mappings = Mappings::new();
    for (map_name, table) in object(v, pointer, "Mappings")? {
        let p1 = child(pointer, map_name);
        no_intrinsic(table, &p1)?;
        let mut rows = BTreeMap::new();
        for (key1, row) in object(table, &p1, "a mapping")? {
            let p2 = child(&p1, key1);
            no_intrinsic(row, &p2)?;
            let mut values = BTreeMap::new();
            for (key2, value) in object(row, &p2, "a mapping entry")? {
                let p3 = child(&p2, key2);
                no_intrinsic(value, &p3)?;
                let value = literal_string(value, &p3, "a mapping value")?;
                values.insert(key2.clone(), value.to_string());
            }
            rows.insert(key1.clone(), values);
        }
        mappings.insert(map_name.clone(), rows);
    }
    Ok(mappings)
}

fn parse_override(
    v: &Value,
    pointer: &str,
    merge_allowed: bool,
) -> Result<OverrideAction, TemplateError> {
    let action = match literal_string(v, pointer, "an override setting")? {
        "DO_NOTHING" => OverrideAction::DoNothing,
        "REPLACE" => OverrideAction::Replace,
        "FAIL" => OverrideAction::Fail,
        "MERGE" if merge_allowed => OverrideAction::Merge,
        "MERGE" => {
            return Err(fault(
                pointer,
                "MERGE is only valid for AttributePayload and ThingGroups",
            ));
        }
        other => {
            return Err(fault(
                pointer,
                format!(
                    "unknown override action {other:?} (expected DO_NOTHING, REPLACE, FAIL or MERGE)"
                ),
            ));
        }
    };
    Ok(action)
}

pub(super) struct Parser<'m> {
    pub(super) mappings: &'m Mappings,
}

impl Parser<'_> {
    pub(super) fn resources(&self, v: &Value, pointer: &str) -> Result<Resources, TemplateError> {
        let Resources {
            mut thing,
            mut certificate,
            mut policies,
        } = Resources::default();
        for (id, resource) in object(v, pointer, "Resources")? {
            let p = child(pointer, id);
            let resource = object(resource, &p, "a resource")?;
            check_keys(
                resource,
                &p,
                &["Type", "Properties", "OverrideSettings"],
                "resource attribute",
            )?;
            let resource_type = match resource.get("Type") {
                Some(t) => literal_string(t, &child(&p, "Type"), "Type")?,
                None => return Err(fault(&p, "missing required attribute Type")),
            };
            let properties = match resource.get("Properties") {
                Some(props) => object(props, &child(&p, "Properties"), "Properties")?,
                None => return Err(fault(&p, "missing required attribute Properties")),
            };
            let overrides = resource.get("OverrideSettings");
            match resource_type {
                "AWS::IoT::Thing" => {
                    if thing.is_some() {
                        return Err(fault(
                            &p,
                            "a template may have only one AWS::IoT::Thing resource",
                        ));
                    }
                    thing = Some(self.thing(id, properties, overrides, &p)?);
                }
                "AWS::IoT::Certificate" => {
                    if certificate.is_some() {
                        return Err(fault(
                            &p,
                            "a template may have only one AWS::IoT::Certificate resource",
                        ));
                    }
                    certificate = Some(self.certificate(id, properties, overrides, &p)?);
                }
                "AWS::IoT::Policy" => {
                    if overrides.is_some() {
                        return Err(fault(
                            &child(&p, "OverrideSettings"),
                            "AWS::IoT::Policy resources have no OverrideSettings",
                        ));
                    }
                    policies.push(self.policy(id, properties, &p)?);
                }
                other => {
                    return Err(fault(
                        &child(&p, "Type"),
                        format!(
                            "unknown resource type {other:?} (expected AWS::IoT::Thing, \
                             AWS::IoT::Certificate or AWS::IoT::Policy)"
                        ),
                    ));
                }
            }
        }
        Ok(Resources {
            thing,
            certificate,
            policies,
        })
    }

    fn thing(
        &self,
        id: &str,
        props: &Map<String, Value>,
        overrides: Option<&Value>,
        pointer: &str,
    ) -> Result<ThingResource, TemplateError> {
        let pp = child(pointer, "Properties");
        check_keys(
            props,
            &pp,
            &[
                "ThingName",
                "AttributePayload",
                "ThingTypeName",
                "ThingGroups",
                "BillingGroup",
            ],
            "AWS::IoT::Thing property",
        )?;
        let name_pointer = child(&pp, "ThingName");
        let name = match props.get("ThingName") {
            Some(v) => self.string(v, &name_pointer, "ThingName")?,
            None => return Err(fault(&pp, "missing required property ThingName")),
        };
        if let Expr::Literal(literal) = &name
            && !valid_thing_name(literal)
        {
            return Err(fault(&name_pointer, thing_name_fault(literal)));
        }
        let mut attributes = Vec::new();
        if let Some(v) = props.get("AttributePayload") {
            let ap = child(&pp, "AttributePayload");
            for (key, value) in object(v, &ap, "AttributePayload")? {
                attributes.push((
                    key.clone(),
                    self.string(value, &child(&ap, key), "an attribute value")?,
                ));
            }
        }
        let optional = |key: &str| {
            props
                .get(key)
                .map(|v| self.string(v, &child(&pp, key), key))
                .transpose()
        };
        let thing_type_name = optional("ThingTypeName")?;
        let billing_group = optional("BillingGroup")?;
        let groups = props
            .get("ThingGroups")
            .map(|v| self.list(v, &child(&pp, "ThingGroups"), "ThingGroups"))
            .transpose()?;

        let mut settings = ThingOverrides::default();
        if let Some(v) = overrides {
            let op = child(pointer, "OverrideSettings");
            let obj = object(v, &op, "OverrideSettings")?;
            check_keys(
                obj,
                &op,
                &["AttributePayload", "ThingTypeName", "ThingGroups"],
                "override setting",
            )?;
            for (key, action) in obj {
                let ptr = child(&op, key);
                match key.as_str() {
                    "AttributePayload" => {
                        settings.attribute_payload = parse_override(action, &ptr, true)?
                    }
                    "ThingGroups" => settings.thing_groups = parse_override(action, &ptr, true)?,
                    _ => settings.thing_type_name = parse_override(action, &ptr, false)?,
                }
            }
        }
        Ok(ThingResource {
            logical_id: id.to_string(),
            name,
            attributes,
            groups,
            thing_type_name,
            billing_group,
            overrides: settings,
        })
    }

    fn certificate(
        &self,
        id: &str,
        props: &Map<String, Value>,
        overrides: Option<&Value>,
        pointer: &str,
    ) -> Result<CertificateResource, TemplateError> {
        let pp = child(pointer, "Properties");
        for other in [
            "CertificateSigningRequest",
            "CertificatePem",
            "CACertificatePem",
        ] {
            if props.contains_key(other) {
                return Err(fault(
                    &child(&pp, other),
                    format!(
                        "{other} cannot be used: only CertificateId can be used with a fleet provisioning template"
                    ),
                ));
            }
        }
        check_keys(
            props,
            &pp,
            &["CertificateId", "Status"],
            "AWS::IoT::Certificate property",
        )?;
        let certificate_id = match props.get("CertificateId") {
            Some(v) => self.string(v, &child(&pp, "CertificateId"), "CertificateId")?,
            None => return Err(fault(&pp, "missing required property CertificateId")),
        };
        let status = match props.get("Status") {
            Some(v) => {
                let sp = child(&pp, "Status");
                let expr = self.string(v, &sp, "Status")?;
                if let Expr::Literal(text) = &expr
                    && parse_status(text).is_none()
                {
                    return Err(fault(
                        &sp,
                        format!(
                            "unknown certificate status {text:?} (expected ACTIVE or INACTIVE)"
                        ),
                    ));
                }
                Some(expr)
            }
            None => None,
        };
        // Status overrides only matter when a certificate is provisioned twice; the mock always
        // provisions a fresh certificate, so they are validated and then not kept.
        if let Some(v) = overrides {
            let op = child(pointer, "OverrideSettings");
            let obj = object(v, &op, "OverrideSettings")?;
            check_keys(obj, &op, &["Status"], "override setting")?;
            if let Some(action) = obj.get("Status") {
                parse_override(action, &child(&op, "Status"), false)?;
            }
        }
        Ok(CertificateResource {
            logical_id: id.to_string(),
            certificate_id,
            status,
        })
    }

    fn policy(
        &self,
        id: &str,
        props: &Map<String, Value>,
        pointer: &str,
    ) -> Result<PolicyResource, TemplateError> {
        let pp = child(pointer, "Properties");
        check_keys(
            props,
            &pp,
            &["PolicyName", "PolicyDocument"],
            "AWS::IoT::Policy property",
        )?;
        let source = match (props.get("PolicyName"), props.get("PolicyDocument")) {
            (Some(name), None) => {
                PolicySource::Named(self.string(name, &child(&pp, "PolicyName"), "PolicyName")?)
            }
            (None, Some(doc)) => self.policy_document(doc, &child(&pp, "PolicyDocument"))?,
            _ => {
                return Err(fault(
                    &pp,
                    "an AWS::IoT::Policy needs exactly one of PolicyName and PolicyDocument",
                ));
            }
        };
        Ok(PolicyResource {
            logical_id: id.to_string(),
            source,
        })
    }

    fn policy_document(&self, v: &Value, pointer: &str) -> Result<PolicySource, TemplateError> {
        let fixed = |document: Value| PolicySource::Fixed {
            name: policy_name_for_document(&document),
            document,
        };
        match v {
            // A JSON-escaped document: literal text, no intrinsic functions inside.
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(document @ Value::Object(_)) => Ok(fixed(document)),
                Ok(other) => Err(fault(
                    pointer,
                    format!(
                        "PolicyDocument must be a JSON object, not {}",
                        describe(&other)
                    ),
                )),
                Err(e) => Err(fault(
                    pointer,
                    format!("PolicyDocument is not valid JSON: {e}"),
                )),
            },
            Value::Object(_) => Ok(match self.json(v, pointer)? {
                JsonExpr::Const(document) => fixed(document),
                JsonExpr::String(e) => PolicySource::DocumentText(e),
                JsonExpr::Strings(_) => {
                    return Err(fault(
                        pointer,
                        "PolicyDocument must be an object, but Fn::Split yields a list",
                    ));
                }
                dynamic => PolicySource::Document(dynamic),
            }),
            other => Err(fault(
                pointer,
                format!(
                    "PolicyDocument must be an object or a JSON string, not {}",
                    describe(other)
                ),
            )),
        }
    }

    pub(super) fn device_configuration(
        &self,
        v: &Value,
        pointer: &str,
    ) -> Result<Vec<(String, Expr)>, TemplateError> {
        let mut entries = Vec::new();
        for (key, value) in object(v, pointer, "DeviceConfiguration")? {
            let p = child(pointer, key);
            let expr = match value {
                // Values are strings on the wire; plain numbers and booleans are taken as text.
                Value::Number(n) => Expr::Literal(n.to_string()),
                Value::Bool(b) => Expr::Literal(b.to_string()),
                Value::Object(_) if as_intrinsic(value, &p)?.is_none() => {
                    return Err(fault(
                        &p,
                        "DeviceConfiguration values must be strings, not nested objects",
                    ));
                }
                _ => self.string(value, &p, "a DeviceConfiguration value")?,
            };
            entries.push((key.clone(), expr));
        }
        Ok(entries)
    }
}
#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn bad_parameter_type_points_at_type() {
        let body = json!({"Parameters": {"Foo": {"Type": "Number"}}, "Resources": {}});
        let err = parse(&body).expect_err("Number is not a type");
        assert_eq!(err.pointer, "/Parameters/Foo/Type");
        assert_eq!(
            err.to_string(),
            format!("/Parameters/Foo/Type: {}", err.message)
        );
        let body =
            json!({"Parameters": {"Foo": {"Type": "String", "Default": 3}}, "Resources": {}});
        assert_eq!(fault_pointer(&body), "/Parameters/Foo/Default");
        let body = json!({"Parameters": {"Foo": {}}, "Resources": {}});
        assert_eq!(fault_pointer(&body), "/Parameters/Foo");
    }

    #[test]
    fn merge_is_only_valid_for_attributes_and_groups() {
        assert_eq!(
            fault_pointer(&thing_with_overrides(json!({"ThingTypeName": "MERGE"}))),
            "/Resources/thing/OverrideSettings/ThingTypeName"
        );
        assert_eq!(
            fault_pointer(&thing_with_overrides(json!({"ThingGroups": "SOMETIMES"}))),
            "/Resources/thing/OverrideSettings/ThingGroups"
        );
        assert_eq!(
            fault_pointer(&thing_with_overrides(json!({"BillingGroup": "REPLACE"}))),
            "/Resources/thing/OverrideSettings/BillingGroup"
        );
        let body =
            thing_with_overrides(json!({"AttributePayload": "MERGE", "ThingGroups": "FAIL"}));
        let thing = render(&parse(&body).expect("parses"), &[])
            .expect("renders")
            .thing
            .expect("thing");
        assert_eq!(
            thing.overrides,
            ThingOverrides {
                attribute_payload: OverrideAction::Merge,
                thing_type_name: OverrideAction::DoNothing,
                thing_groups: OverrideAction::Fail,
            }
        );
    }

    #[test]
    fn unknown_resource_type_and_property_point_at_the_fault() {
        let body = json!({"Resources": {"queue": {"Type": "AWS::SQS::Queue", "Properties": {}}}});
        assert_eq!(fault_pointer(&body), "/Resources/queue/Type");
        let body = json!({"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t", "Color": "red"}}}});
        assert_eq!(fault_pointer(&body), "/Resources/thing/Properties/Color");
        let body = json!({"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {}}}});
        assert_eq!(fault_pointer(&body), "/Resources/thing/Properties");
        let body = json!({"Resources": {"a/b": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": 7}}}});
        assert_eq!(fault_pointer(&body), "/Resources/a~1b/Properties/ThingName");
        let body = json!({"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "bad name"}}}});
        assert_eq!(
            fault_pointer(&body),
            "/Resources/thing/Properties/ThingName"
        );
    }

    #[test]
    fn only_one_thing_and_one_certificate() {
        let thing = json!({"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"}});
        let body = json!({"Resources": {"a": thing, "b": thing}});
        assert_eq!(fault_pointer(&body), "/Resources/b");
        let cert = json!({"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": "c"}});
        let body = json!({"Resources": {"a": cert, "b": cert}});
        assert_eq!(fault_pointer(&body), "/Resources/b");
    }

    #[test]
    fn intrinsic_in_mappings_is_rejected() {
        let body = json!({
            "Parameters": {"X": {"Type": "String"}},
            "Mappings": {"T": {"k": {"v": {"Ref": "X"}}}},
            "Resources": {}
        });
        let err = parse(&body).expect_err("Ref inside Mappings");
        assert_eq!(err.pointer, "/Mappings/T/k/v");
        assert!(err.message.contains("Mappings"), "{err}");
        let body = json!({"Mappings": {"T": {"k": {"Fn::Join": ["", ["a"]]}}}, "Resources": {}});
        assert_eq!(fault_pointer(&body), "/Mappings/T/k");
        let body = json!({"Mappings": {"T": {"k": {"v": 1}}}, "Resources": {}});
        assert_eq!(fault_pointer(&body), "/Mappings/T/k/v");
    }

    #[test]
    fn device_configuration_rejects_nested_values() {
        let body = json!({"Resources": {}, "DeviceConfiguration": {"a": {"b": "c"}}});
        assert_eq!(fault_pointer(&body), "/DeviceConfiguration/a");
        let body = json!({"Resources": {}, "DeviceConfiguration": {"a": ["b"]}});
        assert_eq!(fault_pointer(&body), "/DeviceConfiguration/a");
        let body =
            json!({"Resources": {}, "DeviceConfiguration": {"a": {"Fn::Split": [",", "b,c"]}}});
        assert_eq!(fault_pointer(&body), "/DeviceConfiguration/a");
    }

    #[test]
    fn policy_document_as_escaped_string_equals_the_object_form() {
        let document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]});
        let from_object = rendered_policy(&policy_with(json!({"PolicyDocument": document})));
        let escaped = policy_with(json!({"PolicyDocument": document.to_string()}));
        let from_string = rendered_policy(&escaped);
        assert_eq!(from_string.document.as_ref(), Some(&document));
        assert_eq!(from_string.policy_name, from_object.policy_name);
        assert_eq!(from_string.logical_id, "pol");

        let other = json!({"Version": "2012-10-17", "Statement": []});
        assert_ne!(policy_name_for_document(&other), from_object.policy_name);
        assert_eq!(
            fault_pointer(&policy_with(json!({"PolicyDocument": "[1, 2]"}))),
            "/Resources/pol/Properties/PolicyDocument"
        );
        assert_eq!(
            fault_pointer(&policy_with(json!({"PolicyDocument": "{not json"}))),
            "/Resources/pol/Properties/PolicyDocument"
        );
    }

    #[test]
    fn named_policy_has_no_document() {
        let policy = rendered_policy(&policy_with(
            json!({"PolicyName": {"Fn::Sub": "p-${Topic}"}}),
        ));
        assert_eq!(policy.policy_name, "p-t1");
        assert_eq!(policy.document, None);
        assert_eq!(
            fault_pointer(&policy_with(
                json!({"PolicyName": "p", "PolicyDocument": {}})
            )),
            "/Resources/pol/Properties"
        );
        assert_eq!(
            fault_pointer(&policy_with(json!({}))),
            "/Resources/pol/Properties"
        );
    }
}
