//! The AWS IoT provisioning template engine (fleet provisioning).
//!
//! A template body is parsed and validated once by [`Template::parse`] into a small typed
//! expression tree; [`Template::render`] then evaluates that tree for each RegisterThing request.
//! Every structural fault found while parsing carries the RFC 6901 JSON pointer of the offending
//! value. Facts follow `spec/aws-fleet-provisioning.md` §2.
//!
//! Intrinsic functions are typed when the template is parsed: `Ref`, `Fn::Join`, `Fn::Select`,
//! `Fn::FindInMap` and `Fn::Sub` yield a string and `Fn::Split` yields a list of strings, so a
//! list where a string is required (or the reverse) is a parse error rather than a render error.
//!
//! Layout: this module holds the model (public types, the parsed expression tree) and the public
//! API; `parser` parses the template's sections, `intrinsics` its intrinsic functions, and
//! `evaluator` renders a parsed template for one request.

mod evaluator;
mod intrinsics;
mod parser;
#[cfg(test)]
mod testkit;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use evaluator::Evaluator;
use parser::{Parser, check_keys, fault, parse_mappings, parse_parameters};

/// Name under which the mock always offers the seed template.
pub const SEED_TEMPLATE_NAME: &str = "FleetProvisioningTemplate";

/// The seed tutorial's `fleet-provisioning-template.json` (`spec/aws-fleet-provisioning.md` §8).
pub const SEED_TEMPLATE_JSON: &str = r#"{
  "Parameters": {
    "SerialNumber": { "Type": "String" },
    "DeviceLocation": { "Type": "String" },
    "DeviceName": { "Type": "String" }
  },
  "Mappings": {
    "LocationTable": {
      "Berlin": { "LocationUrl": "https://www.berlin.de" },
      "Seattle": { "LocationUrl": "https://www.seattle.gov" }
    }
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": { "Ref": "DeviceName" },
        "AttributePayload": { "version": "v1", "serialNumber": { "Ref": "SerialNumber" } },
        "ThingGroups": ["fleet-provisioning-group"]
      },
      "OverrideSettings": {
        "AttributePayload": "MERGE",
        "ThingTypeName": "REPLACE",
        "ThingGroups": "DO_NOTHING"
      }
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {
        "CertificateId": { "Ref": "AWS::IoT::Certificate::Id" },
        "Status": "Active"
      }
    },
    "policy": {
      "Type": "AWS::IoT::Policy",
      "Properties": {
        "PolicyDocument": {
          "Version": "2012-10-17",
          "Statement": [{ "Effect": "Allow", "Action": ["*"], "Resource": ["*"] }]
        }
      }
    }
  },
  "DeviceConfiguration": {
    "FallbackUrl": "https://www.example.com/test-site",
    "LocationUrl": { "Fn::FindInMap": ["LocationTable", { "Ref": "DeviceLocation" }, "LocationUrl"] }
  }
}"#;

/// `CreateProvisioningTemplate.templateBody` is at most 10,240 characters (botocore `iot` model).
pub const MAX_TEMPLATE_CHARS: usize = 10_240;

/// The only pseudo-parameter of fleet provisioning: the ID of the certificate being provisioned.
pub const CERTIFICATE_ID_PARAMETER: &str = "AWS::IoT::Certificate::Id";

const THING_NAME_MAX_CHARS: usize = 128;

// ------------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------------

/// A parsed, validated provisioning template, ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    /// Declared parameters and their defaults.
    parameters: BTreeMap<String, Option<String>>,
    mappings: Mappings,
    resources: Resources,
    device_configuration: Vec<(String, Expr)>,
}

/// A structural fault in a template body.
#[derive(Debug, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct TemplateError {
    /// RFC 6901 JSON pointer of the offending value; `""` for the whole body.
    pub pointer: String,
    pub message: String,
}

/// Inputs of one RegisterThing evaluation.
pub struct RenderContext<'a> {
    /// Request parameters (with pre-provisioning hook overrides already applied).
    pub parameters: &'a BTreeMap<String, String>,
    /// Value of the pseudo-parameter `AWS::IoT::Certificate::Id`.
    pub certificate_id: &'a str,
}

/// Why a template could not be rendered for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// AWS answers 400 `InvalidParameters`, "Cannot resolve reference value: X".
    #[error("Cannot resolve reference value: {0}")]
    UnresolvedReference(String),
    /// Any other evaluation failure (index out of range, missing mapping key, bad thing name...).
    #[error("{0}")]
    Invalid(String),
}

impl RenderError {
    /// The `errorCode` of the rejected response.
    pub fn error_code(&self) -> &'static str {
        "InvalidParameters"
    }

    /// The `errorMessage` of the rejected response.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The resources and device configuration one request provisions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    pub thing: Option<ThingSpec>,
    pub certificate: Option<CertificateSpec>,
    pub policies: Vec<PolicySpec>,
    /// Always present in the response, possibly empty. Values are flat strings.
    pub device_configuration: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThingSpec {
    pub logical_id: String,
    pub thing_name: String,
    pub attributes: BTreeMap<String, String>,
    pub thing_groups: Vec<String>,
    pub thing_type_name: Option<String>,
    pub billing_group: Option<String>,
    pub overrides: ThingOverrides,
}

/// What to do when the thing already exists (`OverrideSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverrideAction {
    #[default]
    DoNothing,
    Replace,
    Fail,
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThingOverrides {
    pub attribute_payload: OverrideAction,
    pub thing_type_name: OverrideAction,
    pub thing_groups: OverrideAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    pub logical_id: String,
    pub certificate_id: String,
    pub status: CertificateStatusSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatusSpec {
    Active,
    Inactive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub logical_id: String,
    /// `PolicyName` given: attach that existing policy. Document without a name: a stable hash of
    /// the canonical document text (see [`policy_name_for_document`]).
    pub policy_name: String,
    /// The document object when the template inlines `PolicyDocument`; `None` for `PolicyName`.
    pub document: Option<Value>,
}

/// The name given to an inline policy document that has no `PolicyName`.
///
/// AWS names such policies after "a hash of the document" (algorithm unpublished). The mock uses
/// FNV-1a 64 over the compact JSON text with object keys sorted, as 16 lowercase hex digits, so the
/// same document always gets the same name whatever the key order in the template.
pub fn policy_name_for_document(document: &Value) -> String {
    let mut text = String::new();
    write_canonical_json(document, &mut text);
    format!("{:016x}", fnv1a_64(text.as_bytes()))
}

impl Template {
    /// Names of the declared parameters, in sorted order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.parameters.keys().map(String::as_str)
    }

    /// Parse and validate a template body. Every structural fault is reported with the JSON
    /// pointer of the offending value (e.g. `/Resources/thing/Properties/ThingName`).
    pub fn parse(json: &str) -> Result<Template, TemplateError> {
        let chars = json.chars().count();
        if chars > MAX_TEMPLATE_CHARS {
            return Err(fault(
                "",
                format!("template body is {chars} characters; the limit is {MAX_TEMPLATE_CHARS}"),
            ));
        }
        let body: Value =
            serde_json::from_str(json).map_err(|e| fault("", format!("invalid JSON: {e}")))?;
        let root = body
            .as_object()
            .ok_or_else(|| fault("", "a template must be a JSON object"))?;
        check_keys(
            root,
            "",
            &["Parameters", "Mappings", "Resources", "DeviceConfiguration"],
            "template section",
        )?;

        let parameters = match root.get("Parameters") {
            Some(v) => parse_parameters(v, "/Parameters")?,
            None => BTreeMap::new(),
        };
        let mappings = match root.get("Mappings") {
            Some(v) => parse_mappings(v, "/Mappings")?,
            None => Mappings::new(),
        };
        let parser = Parser {
            mappings: &mappings,
        };
        let resources = root
            .get("Resources")
            .ok_or_else(|| fault("", "missing required section Resources"))?;
        let resources = parser.resources(resources, "/Resources")?;
        let device_configuration = match root.get("DeviceConfiguration") {
            Some(v) => parser.device_configuration(v, "/DeviceConfiguration")?,
            None => Vec::new(),
        };

        Ok(Template {
            parameters,
            mappings,
            resources,
            device_configuration,
        })
    }

    /// Evaluate the template for one RegisterThing request.
    pub fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        let ev = Evaluator {
            template: self,
            ctx,
        };
        let thing = self
            .resources
            .thing
            .as_ref()
            .map(|t| ev.thing(t))
            .transpose()?;
        let certificate = self
            .resources
            .certificate
            .as_ref()
            .map(|c| ev.certificate(c))
            .transpose()?;
        let policies = self
            .resources
            .policies
            .iter()
            .map(|p| ev.policy(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut device_configuration = Map::new();
        for (key, expr) in &self.device_configuration {
            device_configuration.insert(key.clone(), Value::String(ev.string(expr)?));
        }
        Ok(Rendered {
            thing,
            certificate,
            policies,
            device_configuration,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Parsed form
// ------------------------------------------------------------------------------------------------

/// `Mappings`: map name -> top-level key -> second-level key -> value.
type Mappings = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// An expression that evaluates to a string.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(String),
    Ref(String),
    Join {
        delimiter: String,
        items: Box<ListExpr>,
    },
    Select {
        index: Box<IndexExpr>,
        list: Box<ListExpr>,
    },
    FindInMap(Box<[Expr; 3]>),
    Sub {
        parts: Vec<SubPart>,
        variables: BTreeMap<String, Expr>,
    },
}

/// An expression that evaluates to a list of strings.
#[derive(Debug, Clone, PartialEq)]
enum ListExpr {
    Literal(Vec<Expr>),
    Split { delimiter: String, source: Expr },
}

/// The index argument of `Fn::Select`.
#[derive(Debug, Clone, PartialEq)]
enum IndexExpr {
    Literal(usize),
    Dynamic(Expr),
}

/// A piece of an `Fn::Sub` string.
#[derive(Debug, Clone, PartialEq)]
enum SubPart {
    Text(String),
    Variable(String),
}

/// Arbitrary JSON (a policy document) with intrinsic functions anywhere inside.
#[derive(Debug, Clone, PartialEq)]
enum JsonExpr {
    /// A subtree without intrinsic functions.
    Const(Value),
    String(Expr),
    Strings(ListExpr),
    Array(Vec<JsonExpr>),
    Object(Vec<(String, JsonExpr)>),
}

/// The result type of an intrinsic function.
enum Intrinsic {
    String(Expr),
    List(ListExpr),
}

/// The parsed `Resources` section: at most one thing and one certificate, any number of policies.
#[derive(Debug, Clone, Default)]
struct Resources {
    thing: Option<ThingResource>,
    certificate: Option<CertificateResource>,
    policies: Vec<PolicyResource>,
}

#[derive(Debug, Clone)]
struct ThingResource {
    logical_id: String,
    name: Expr,
    attributes: Vec<(String, Expr)>,
    groups: Option<ListExpr>,
    thing_type_name: Option<Expr>,
    billing_group: Option<Expr>,
    overrides: ThingOverrides,
}

#[derive(Debug, Clone)]
struct CertificateResource {
    logical_id: String,
    certificate_id: Expr,
    /// `None`: ACTIVE.
    status: Option<Expr>,
}

#[derive(Debug, Clone)]
struct PolicyResource {
    logical_id: String,
    source: PolicySource,
}

#[derive(Debug, Clone)]
enum PolicySource {
    /// `PolicyName`: an existing policy.
    Named(Expr),
    /// An inline document without intrinsic functions: name computed once at parse time.
    Fixed { name: String, document: Value },
    /// An inline document object containing intrinsic functions.
    Document(JsonExpr),
    /// An intrinsic function that renders the document as JSON text.
    DocumentText(Expr),
}

// ------------------------------------------------------------------------------------------------
// Rules shared by parsing and rendering
// ------------------------------------------------------------------------------------------------

fn parse_status(text: &str) -> Option<CertificateStatusSpec> {
    if text.eq_ignore_ascii_case("ACTIVE") {
        Some(CertificateStatusSpec::Active)
    } else if text.eq_ignore_ascii_case("INACTIVE") {
        Some(CertificateStatusSpec::Inactive)
    } else {
        None
    }
}

fn valid_thing_name(name: &str) -> bool {
    (1..=THING_NAME_MAX_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

fn thing_name_fault(name: &str) -> String {
    format!("invalid thing name {name:?}: must be 1-128 characters of [a-zA-Z0-9:_-]")
}

// ------------------------------------------------------------------------------------------------
// Policy naming
// ------------------------------------------------------------------------------------------------

/// Compact JSON with object keys sorted, independent of serde_json's map ordering feature.
fn write_canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(members) => {
            let mut members: Vec<_> = members.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(PRIME)
    })
}
#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_template_renders_like_aws() {
        let rendered = render(&seed(), SEED_PARAMS).expect("renders");

        let thing = rendered.thing.expect("thing");
        assert_eq!(thing.logical_id, "thing");
        assert_eq!(thing.thing_name, "FPC-device-3f1c");
        assert_eq!(
            thing.attributes,
            params(&[("version", "v1"), ("serialNumber", "123456")])
        );
        assert_eq!(thing.thing_groups, vec!["fleet-provisioning-group"]);
        assert_eq!(thing.thing_type_name, None);
        assert_eq!(thing.billing_group, None);
        assert_eq!(
            thing.overrides,
            ThingOverrides {
                attribute_payload: OverrideAction::Merge,
                thing_type_name: OverrideAction::Replace,
                thing_groups: OverrideAction::DoNothing,
            }
        );

        let cert = rendered.certificate.expect("certificate");
        assert_eq!(cert.logical_id, "certificate");
        assert_eq!(cert.certificate_id, CERT_ID);
        assert_eq!(cert.status, CertificateStatusSpec::Active);

        let document = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]
        });
        assert_eq!(rendered.policies.len(), 1);
        let policy = &rendered.policies[0];
        assert_eq!(policy.logical_id, "policy");
        assert_eq!(policy.document.as_ref(), Some(&document));
        assert_eq!(policy.policy_name, policy_name_for_document(&document));
        assert_eq!(policy.policy_name.len(), 16);
        assert!(policy.policy_name.bytes().all(|b| b.is_ascii_hexdigit()));

        let expected = json!({
            "FallbackUrl": "https://www.example.com/test-site",
            "LocationUrl": "https://www.berlin.de"
        });
        assert_eq!(Value::Object(rendered.device_configuration), expected);
    }

    #[test]
    fn seed_template_declares_its_three_parameters() {
        let template = seed();
        let names: Vec<&str> = template.parameter_names().collect();
        assert_eq!(names, ["DeviceLocation", "DeviceName", "SerialNumber"]);
    }

    #[test]
    fn seed_template_maps_seattle() {
        let rendered = render(
            &seed(),
            &[
                ("DeviceName", "d"),
                ("SerialNumber", "1"),
                ("DeviceLocation", "Seattle"),
            ],
        )
        .expect("renders");
        assert_eq!(
            rendered.device_configuration["LocationUrl"],
            "https://www.seattle.gov"
        );
    }

    #[test]
    fn missing_parameter_without_default_is_unresolved() {
        let err = render(
            &seed(),
            &[("SerialNumber", "1"), ("DeviceLocation", "Berlin")],
        )
        .expect_err("DeviceName is missing");
        assert_eq!(err, RenderError::UnresolvedReference("DeviceName".into()));
        assert_eq!(err.error_code(), "InvalidParameters");
        assert_eq!(err.message(), "Cannot resolve reference value: DeviceName");
    }

    #[test]
    fn unknown_location_is_an_invalid_lookup() {
        let err = render(
            &seed(),
            &[
                ("DeviceName", "d"),
                ("SerialNumber", "1"),
                ("DeviceLocation", "Paris"),
            ],
        )
        .expect_err("no Paris in LocationTable");
        assert!(
            matches!(&err, RenderError::Invalid(m) if m.contains("Paris")),
            "{err:?}"
        );
        assert_eq!(err.error_code(), "InvalidParameters");
    }

    #[test]
    fn aws_documentation_example_parses_and_renders() {
        let body = r#"{
          "Parameters": {
            "ThingName":      { "Type": "String" },
            "SerialNumber":   { "Type": "String" },
            "DeviceLocation": { "Type": "String", "Default": "Seattle" }
          },
          "Mappings": { "LocationTable": { "Seattle": { "LocationUrl": "https://example.aws" } } },
          "Resources": {
            "thing": {
              "Type": "AWS::IoT::Thing",
              "Properties": {
                "ThingName": { "Ref": "ThingName" },
                "AttributePayload": { "version": "v1", "serialNumber": { "Ref": "SerialNumber" } },
                "ThingTypeName": { "Fn::Join": ["", ["ThingPrefix_", { "Ref": "SerialNumber" }]] },
                "ThingGroups": ["v1-lightbulbs", "WA"],
                "BillingGroup": "LightBulbBillingGroup"
              },
              "OverrideSettings": { "AttributePayload": "MERGE", "ThingTypeName": "REPLACE", "ThingGroups": "DO_NOTHING" }
            },
            "certificate": {
              "Type": "AWS::IoT::Certificate",
              "Properties": { "CertificateId": { "Ref": "AWS::IoT::Certificate::Id" }, "Status": "Active" }
            },
            "policy": {
              "Type": "AWS::IoT::Policy",
              "Properties": { "PolicyDocument": { "Version": "2012-10-17", "Statement": [
                { "Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"] } ] } }
            }
          },
          "DeviceConfiguration": {
            "FallbackUrl": "https://www.example.com/test-site",
            "LocationUrl": { "Fn::FindInMap": ["LocationTable", { "Ref": "DeviceLocation" }, "LocationUrl"] }
          }
        }"#;
        let template = Template::parse(body).expect("AWS example parses");
        let rendered = render(
            &template,
            &[("ThingName", "bulb-1"), ("SerialNumber", "42")],
        )
        .expect("renders with the DeviceLocation default");
        let thing = rendered.thing.expect("thing");
        assert_eq!(thing.thing_name, "bulb-1");
        assert_eq!(thing.thing_type_name.as_deref(), Some("ThingPrefix_42"));
        assert_eq!(thing.thing_groups, ["v1-lightbulbs", "WA"]);
        assert_eq!(
            thing.billing_group.as_deref(),
            Some("LightBulbBillingGroup")
        );
        assert_eq!(
            rendered.device_configuration["LocationUrl"],
            "https://example.aws"
        );
    }

    #[test]
    fn rendered_template_is_reusable_across_requests() {
        let template = seed();
        for i in 0..3 {
            let name = format!("device-{i}");
            let rendered = render(
                &template,
                &[
                    ("DeviceName", &name),
                    ("SerialNumber", "1"),
                    ("DeviceLocation", "Berlin"),
                ],
            )
            .expect("renders");
            assert_eq!(rendered.thing.expect("thing").thing_name, name);
        }
    }

    #[test]
    fn non_json_input_is_reported_at_the_root() {
        let err = Template::parse("{ not json").expect_err("not JSON");
        assert_eq!(err.pointer, "");
        assert!(err.message.contains("invalid JSON"), "{err}");
        assert_eq!(
            Template::parse("[]").err().map(|e| e.pointer),
            Some(String::new())
        );
    }

    #[test]
    fn oversized_body_is_rejected_at_the_root() {
        let padding = " ".repeat(MAX_TEMPLATE_CHARS);
        let body = format!("{{\"Resources\": {{}}}}{padding}");
        let err = Template::parse(&body).expect_err("too large");
        assert_eq!(err.pointer, "");
        assert!(err.message.contains("10240"), "{err}");
        // Exactly at the limit is fine.
        let body = r#"{"Resources":{}}"#;
        let at_limit = format!("{body}{}", " ".repeat(MAX_TEMPLATE_CHARS - body.len()));
        assert!(Template::parse(&at_limit).is_ok());
    }

    #[test]
    fn section_faults_point_at_the_section() {
        assert_eq!(
            fault_pointer(&json!({"Resources": {}, "Conditions": {}})),
            "/Conditions"
        );
        assert_eq!(fault_pointer(&json!({"Parameters": {}})), "");
        assert_eq!(fault_pointer(&json!({"Resources": []})), "/Resources");
    }

    #[test]
    fn policy_name_ignores_key_order_and_matches_fnv1a() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [true, null, "x"]}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"a": [true, null, "x"], "b": 1}"#).expect("json");
        assert_eq!(policy_name_for_document(&a), policy_name_for_document(&b));
        let mut text = String::new();
        write_canonical_json(&a, &mut text);
        assert_eq!(text, r#"{"a":[true,null,"x"],"b":1}"#);
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
