//! Rendering: evaluation of a parsed template's expressions for one RegisterThing request.

use serde_json::Value;

use super::{
    CERTIFICATE_ID_PARAMETER, CertificateResource, CertificateSpec, CertificateStatusSpec, Expr,
    IndexExpr, JsonExpr, ListExpr, PolicyResource, PolicySource, PolicySpec, RenderContext,
    RenderError, SubPart, Template, ThingResource, ThingSpec, parse_status,
    policy_name_for_document, thing_name_fault, valid_thing_name,
};

pub(super) struct Evaluator<'t, 'c> {
    pub(super) template: &'t Template,
    pub(super) ctx: &'c RenderContext<'c>,
}

impl Evaluator<'_, '_> {
    /// `Ref`: a request parameter (if declared), then its Default, then a pseudo-parameter.
    fn resolve(&self, name: &str) -> Result<String, RenderError> {
        if let Some(default) = self.template.parameters.get(name) {
            if let Some(value) = self.ctx.parameters.get(name) {
                return Ok(value.clone());
            }
            if let Some(default) = default {
                return Ok(default.clone());
            }
        }
        if name == CERTIFICATE_ID_PARAMETER {
            return Ok(self.ctx.certificate_id.to_string());
        }
        Err(RenderError::UnresolvedReference(name.to_string()))
    }

    pub(super) fn string(&self, expr: &Expr) -> Result<String, RenderError> {
        match expr {
            Expr::Literal(s) => Ok(s.clone()),
            Expr::Ref(name) => self.resolve(name),
            Expr::Join { delimiter, items } => Ok(self.list(items)?.join(delimiter)),
            Expr::Select { index, list } => {
                let index = match index.as_ref() {
                    IndexExpr::Literal(i) => *i,
                    IndexExpr::Dynamic(e) => {
                        let text = self.string(e)?;
                        text.trim().parse::<usize>().map_err(|_| {
                            RenderError::Invalid(format!(
                                "Fn::Select index {text:?} is not a non-negative integer"
                            ))
                        })?
                    }
                };
                let mut items = self.list(list)?;
                let len = items.len();
                if index >= len {
                    return Err(RenderError::Invalid(format!(
                        "Fn::Select index {index} is out of range for a list of {len} elements"
                    )));
                }
                Ok(items.swap_remove(index))
            }
            Expr::FindInMap(args) => {
                let [map, key1, key2] = args.as_ref();
                let map = self.string(map)?;
                let key1 = self.string(key1)?;
                let key2 = self.string(key2)?;
                self.template
                    .mappings
                    .get(&map)
                    .and_then(|table| table.get(&key1))
                    .and_then(|row| row.get(&key2))
                    .cloned()
                    .ok_or_else(|| {
                        RenderError::Invalid(format!(
                            "Fn::FindInMap: mapping {map:?} has no value for [{key1:?}, {key2:?}]"
                        ))
                    })
            }
            Expr::Sub { parts, variables } => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        SubPart::Text(text) => out.push_str(text),
                        SubPart::Variable(name) => match variables.get(name) {
                            Some(e) => out.push_str(&self.string(e)?),
                            None => out.push_str(&self.resolve(name)?),
                        },
                    }
                }
                Ok(out)
            }
        }
    }

    fn list(&self, expr: &ListExpr) -> Result<Vec<String>, RenderError> {
        match expr {
            ListExpr::Literal(items) => items.iter().map(|e| self.string(e)).collect(),
            ListExpr::Split { delimiter, source } => Ok(self
                .string(source)?
                .split(delimiter.as_str())
                .map(str::to_string)
                .collect()),
        }
    }

    fn json(&self, expr: &JsonExpr) -> Result<Value, RenderError> {
        Ok(match expr {
            JsonExpr::Const(v) => v.clone(),
            JsonExpr::String(e) => Value::String(self.string(e)?),
            JsonExpr::Strings(l) => {
                Value::Array(self.list(l)?.into_iter().map(Value::String).collect())
            }
            JsonExpr::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.json(i))
                    .collect::<Result<_, _>>()?,
            ),
            JsonExpr::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, m)| Ok((k.clone(), self.json(m)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }

    pub(super) fn thing(&self, t: &ThingResource) -> Result<ThingSpec, RenderError> {
        let thing_name = self.string(&t.name)?;
        if !valid_thing_name(&thing_name) {
            return Err(RenderError::Invalid(thing_name_fault(&thing_name)));
        }
        let attributes = t
            .attributes
            .iter()
            .map(|(k, e)| Ok((k.clone(), self.string(e)?)))
            .collect::<Result<_, RenderError>>()?;
        let optional = |e: &Option<Expr>| e.as_ref().map(|e| self.string(e)).transpose();
        Ok(ThingSpec {
            logical_id: t.logical_id.clone(),
            thing_name,
            attributes,
            thing_groups: t
                .groups
                .as_ref()
                .map(|g| self.list(g))
                .transpose()?
                .unwrap_or_default(),
            thing_type_name: optional(&t.thing_type_name)?,
            billing_group: optional(&t.billing_group)?,
            overrides: t.overrides,
        })
    }

    pub(super) fn certificate(
        &self,
        c: &CertificateResource,
    ) -> Result<CertificateSpec, RenderError> {
        let status = match &c.status {
            None => CertificateStatusSpec::Active,
            Some(e) => {
                let text = self.string(e)?;
                parse_status(&text).ok_or_else(|| {
                    RenderError::Invalid(format!(
                        "unknown certificate status {text:?} (expected ACTIVE or INACTIVE)"
                    ))
                })?
            }
        };
        Ok(CertificateSpec {
            logical_id: c.logical_id.clone(),
            certificate_id: self.string(&c.certificate_id)?,
            status,
        })
    }

    pub(super) fn policy(&self, p: &PolicyResource) -> Result<PolicySpec, RenderError> {
        let (policy_name, document) = match &p.source {
            PolicySource::Named(e) => (self.string(e)?, None),
            PolicySource::Fixed { name, document } => (name.clone(), Some(document.clone())),
            PolicySource::Document(e) => {
                let document = self.json(e)?;
                (policy_name_for_document(&document), Some(document))
            }
            PolicySource::DocumentText(e) => {
                let text = self.string(e)?;
                match serde_json::from_str::<Value>(&text) {
                    Ok(document @ Value::Object(_)) => {
                        (policy_name_for_document(&document), Some(document))
                    }
                    _ => {
                        return Err(RenderError::Invalid(format!(
                            "PolicyDocument of {} does not render to a JSON object",
                            p.logical_id
                        )));
                    }
                }
            }
        };
        Ok(PolicySpec {
            logical_id: p.logical_id.clone(),
            policy_name,
            document,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn unresolvable_pseudo_parameter_matches_the_aws_message() {
        let err = config_value(json!({"Ref": "AWS::Region"}), json!({}), &[])
            .expect_err("AWS::Region is not resolvable");
        assert_eq!(err, RenderError::UnresolvedReference("AWS::Region".into()));
        assert_eq!(err.message(), "Cannot resolve reference value: AWS::Region");
        assert_eq!(err.to_string(), err.message());
    }

    #[test]
    fn default_is_used_only_when_the_request_omits_the_parameter() {
        let expr = json!({"Ref": "Serial"});
        assert_eq!(
            config_value(expr.clone(), json!({}), &[]).as_deref(),
            Ok("0001")
        );
        assert_eq!(
            config_value(expr, json!({}), &[("Serial", "9999")]).as_deref(),
            Ok("9999")
        );
    }

    #[test]
    fn undeclared_request_parameters_are_ignored() {
        let err = config_value(json!({"Ref": "Extra"}), json!({}), &[("Extra", "x")])
            .expect_err("Extra is not declared");
        assert_eq!(err, RenderError::UnresolvedReference("Extra".into()));
    }

    #[test]
    fn certificate_id_resolves_declared_or_not() {
        let expr = json!({"Ref": CERTIFICATE_ID_PARAMETER});
        assert_eq!(
            config_value(expr.clone(), json!({}), &[]).as_deref(),
            Ok(CERT_ID)
        );
        let declared = json!({"Parameters": {CERTIFICATE_ID_PARAMETER: {"Type": "String"}}});
        assert_eq!(config_value(expr, declared, &[]).as_deref(), Ok(CERT_ID));
    }

    #[test]
    fn join_concatenates_with_the_delimiter() {
        let expr = json!({"Fn::Join": ["-", ["dev", {"Ref": "Serial"}, "x"]]});
        assert_eq!(thing_name(expr, &[]).as_deref(), Ok("dev-0001-x"));
    }

    #[test]
    fn select_picks_by_number_numeric_string_or_intrinsic() {
        let list = json!(["zero", "one", "two"]);
        assert_eq!(
            thing_name(json!({"Fn::Select": [1, list]}), &[]).as_deref(),
            Ok("one")
        );
        assert_eq!(
            thing_name(json!({"Fn::Select": ["2", list]}), &[]).as_deref(),
            Ok("two")
        );
        let dynamic = json!({"Fn::Select": [{"Ref": "Name"}, list]});
        assert_eq!(
            thing_name(dynamic.clone(), &[("Name", "0")]).as_deref(),
            Ok("zero")
        );
        let err = thing_name(dynamic, &[("Name", "first")]).expect_err("not a number");
        assert!(matches!(err, RenderError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn select_out_of_range_is_invalid() {
        let err =
            thing_name(json!({"Fn::Select": [3, ["a", "b", "c"]]}), &[]).expect_err("index 3 of 3");
        assert!(
            matches!(&err, RenderError::Invalid(m) if m.contains("out of range")),
            "{err:?}"
        );

        let split = json!({"Fn::Select": [{"Ref": "Name"}, {"Fn::Split": [",", {"Ref": "List"}]}]});
        assert_eq!(
            thing_name(split.clone(), &[("Name", "2")]).as_deref(),
            Ok("c")
        );
        let err = thing_name(split, &[("Name", "5")]).expect_err("index 5 of 3");
        assert!(matches!(err, RenderError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn split_feeds_join_and_thing_groups() {
        let expr = json!({"Fn::Join": ["_", {"Fn::Split": [",", {"Ref": "List"}]}]});
        assert_eq!(thing_name(expr, &[]).as_deref(), Ok("a_b_c"));

        let body = json!({
            "Parameters": {"Groups": {"Type": "String"}},
            "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": "t",
                "ThingGroups": {"Fn::Split": ["|", {"Ref": "Groups"}]}
            }}}
        });
        let rendered =
            render(&parse(&body).expect("parses"), &[("Groups", "g1|g2")]).expect("renders");
        assert_eq!(rendered.thing.expect("thing").thing_groups, ["g1", "g2"]);
    }

    #[test]
    fn find_in_map_with_intrinsic_keys() {
        let mappings = json!({"Mappings": {"Table": {"0001": {"Url": "https://one"}, "k": {"Url": "https://k"}}}});
        let expr =
            json!({"Fn::FindInMap": ["Table", {"Ref": "Serial"}, {"Fn::Join": ["", ["U", "rl"]]}]});
        assert_eq!(
            config_value(expr.clone(), mappings.clone(), &[]).as_deref(),
            Ok("https://one")
        );
        let err = config_value(expr, mappings, &[("Serial", "0002")]).expect_err("no row 0002");
        assert!(matches!(err, RenderError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn sub_string_form_resolves_parameters_and_certificate_id() {
        let expr = json!({"Fn::Sub": "dev-${Name}-${ AWS::IoT::Certificate::Id }-${!Literal}$x"});
        assert_eq!(
            config_value(expr, json!({}), &[("Name", "n1")]).as_deref(),
            Ok(format!("dev-n1-{CERT_ID}-${{Literal}}$x").as_str())
        );
    }

    #[test]
    fn sub_list_form_prefers_its_variables() {
        let expr = json!({"Fn::Sub": ["${Prefix}-${Name}-${Serial}", {
            "Prefix": {"Fn::Select": [0, {"Fn::Split": ["/", "pre/fix"]}]},
            "Serial": "override"
        }]});
        assert_eq!(
            config_value(expr, json!({}), &[("Name", "n1")]).as_deref(),
            Ok("pre-n1-override")
        );
    }

    #[test]
    fn sub_with_unknown_name_is_unresolved() {
        let err =
            config_value(json!({"Fn::Sub": "x-${Nope}"}), json!({}), &[]).expect_err("unknown");
        assert_eq!(err, RenderError::UnresolvedReference("Nope".into()));
    }

    #[test]
    fn nested_intrinsics_evaluate_inside_out() {
        let expr = json!({"Fn::Join": ["", [
            {"Fn::Sub": "${Name}-"},
            {"Fn::Select": [1, {"Fn::Split": [",", {"Fn::FindInMap": ["T", {"Ref": "Serial"}, "csv"]}]}]}
        ]]});
        let mappings = json!({"Mappings": {"T": {"0001": {"csv": "x,y,z"}}}});
        assert_eq!(
            config_value(expr, mappings, &[("Name", "n")]).as_deref(),
            Ok("n-y")
        );
    }

    #[test]
    fn invalid_rendered_thing_name_is_rejected() {
        let err = thing_name(json!({"Ref": "Name"}), &[("Name", "bad name!")]).expect_err("space");
        assert!(
            matches!(&err, RenderError::Invalid(m) if m.contains("bad name!")),
            "{err:?}"
        );
        assert!(thing_name(json!({"Ref": "Name"}), &[("Name", "")]).is_err());
        let long = "a".repeat(129);
        assert!(thing_name(json!({"Ref": "Name"}), &[("Name", &long)]).is_err());
        let ok = "a:b_c-D9".to_string() + &"x".repeat(120);
        assert_eq!(thing_name(json!({"Ref": "Name"}), &[("Name", &ok)]), Ok(ok));
    }

    #[test]
    fn certificate_status_is_case_insensitive() {
        for (status, expected) in [
            ("inactive", CertificateStatusSpec::Inactive),
            ("INACTIVE", CertificateStatusSpec::Inactive),
            ("active", CertificateStatusSpec::Active),
        ] {
            let body = certificate_with(
                json!({"CertificateId": {"Ref": CERTIFICATE_ID_PARAMETER}, "Status": status}),
            );
            let rendered = render(&parse(&body).expect("parses"), &[]).expect("renders");
            let cert = rendered.certificate.expect("certificate");
            assert_eq!(cert.status, expected, "{status}");
            assert_eq!(cert.certificate_id, CERT_ID);
        }
        let body = certificate_with(json!({"CertificateId": "abc"}));
        let rendered = render(&parse(&body).expect("parses"), &[]).expect("renders");
        assert_eq!(
            rendered.certificate.expect("certificate").status,
            CertificateStatusSpec::Active
        );
        assert_eq!(
            fault_pointer(&certificate_with(
                json!({"CertificateId": "abc", "Status": "REVOKED"})
            )),
            "/Resources/cert/Properties/Status"
        );
        assert_eq!(
            fault_pointer(&certificate_with(json!({"CertificatePem": "-----BEGIN"}))),
            "/Resources/cert/Properties/CertificatePem"
        );
        assert_eq!(
            fault_pointer(&certificate_with(json!({}))),
            "/Resources/cert/Properties"
        );
    }

    #[test]
    fn policy_document_with_intrinsics_renders_per_request() {
        let body = policy_with(
            json!({"PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "iot:Publish",
                "Resource": {"Fn::Sub": "arn:aws:iot:us-east-1:123456789012:topic/${Topic}"}
            }]}}),
        );
        let policy = rendered_policy(&body);
        let expected = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:us-east-1:123456789012:topic/t1"
        }]});
        assert_eq!(policy.document.as_ref(), Some(&expected));
        assert_eq!(policy.policy_name, policy_name_for_document(&expected));
    }

    #[test]
    fn device_configuration_coerces_scalars_and_is_always_present() {
        let body = json!({"Resources": {}, "DeviceConfiguration": {"n": 5, "b": true, "s": "x"}});
        let rendered = render(&parse(&body).expect("parses"), &[]).expect("renders");
        assert_eq!(
            Value::Object(rendered.device_configuration),
            json!({"n": "5", "b": "true", "s": "x"})
        );

        let empty =
            render(&parse(&json!({"Resources": {}})).expect("parses"), &[]).expect("renders");
        assert!(empty.device_configuration.is_empty());
        assert_eq!(empty.thing, None);
        assert_eq!(empty.certificate, None);
    }
}
