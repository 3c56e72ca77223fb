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

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Name under which the mock always offers the seed template.
pub const SEED_TEMPLATE_NAME: &str = "FleetProvisioningTemplate";

/// The seed tutorial's `fleet-provisioning-template.json` (spec §8).
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

    /// Names of the declared parameters, in sorted order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.parameters.keys().map(String::as_str)
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
// Parsing
// ------------------------------------------------------------------------------------------------

fn fault(pointer: &str, message: impl Into<String>) -> TemplateError {
    TemplateError {
        pointer: pointer.to_string(),
        message: message.into(),
    }
}

/// The pointer of member `key` of the value at `pointer` (RFC 6901 escaping).
fn child(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn element(pointer: &str, index: usize) -> String {
    format!("{pointer}/{index}")
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'v>(
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

fn literal_string<'v>(v: &'v Value, pointer: &str, what: &str) -> Result<&'v str, TemplateError> {
    v.as_str().ok_or_else(|| {
        fault(
            pointer,
            format!("{what} must be a string, not {}", describe(v)),
        )
    })
}

/// The arguments of an intrinsic function, which must be an array of exactly `N` values.
fn arguments<'v, const N: usize>(
    v: &'v Value,
    pointer: &str,
    function: &str,
    shape: &str,
) -> Result<&'v [Value; N], TemplateError> {
    v.as_array()
        .and_then(|args| <&[Value; N]>::try_from(args.as_slice()).ok())
        .ok_or_else(|| fault(pointer, format!("{function} takes {shape}")))
}

fn check_keys(
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
fn as_intrinsic<'v>(
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

fn parse_parameters(
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

fn parse_mappings(v: &Value, pointer: &str) -> Result<Mappings, TemplateError> {
    // Mappings may not contain parameters or intrinsic functions (spec §2), at any level.
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

/// Split an `Fn::Sub` string into text and `${Variable}` parts; `${!Text}` stands for `${Text}`.
fn parse_sub(text: &str, pointer: &str) -> Result<Vec<SubPart>, TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(fault(
                pointer,
                format!("unterminated \"${{\" in Fn::Sub string {text:?}"),
            ));
        };
        let inner = &after[..end];
        if let Some(escaped) = inner.strip_prefix('!') {
            literal.push_str("${");
            literal.push_str(escaped);
            literal.push('}');
        } else {
            let name = inner.trim();
            if name.is_empty() {
                return Err(fault(
                    pointer,
                    format!("empty \"${{}}\" in Fn::Sub string {text:?}"),
                ));
            }
            if !literal.is_empty() {
                parts.push(SubPart::Text(std::mem::take(&mut literal)));
            }
            parts.push(SubPart::Variable(name.to_string()));
        }
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(SubPart::Text(literal));
    }
    Ok(parts)
}

struct Parser<'m> {
    mappings: &'m Mappings,
}

impl Parser<'_> {
    /// A value where a string is required: a string literal or a string-valued intrinsic.
    fn string(&self, v: &Value, pointer: &str, what: &str) -> Result<Expr, TemplateError> {
        if let Value::String(s) = v {
            return Ok(Expr::Literal(s.clone()));
        }
        match self.intrinsic(v, pointer)? {
            Some(Intrinsic::String(e)) => Ok(e),
            Some(Intrinsic::List(_)) => Err(fault(
                pointer,
                format!("{what} must be a string, but Fn::Split yields a list"),
            )),
            None => Err(fault(
                pointer,
                format!("{what} must be a string, not {}", describe(v)),
            )),
        }
    }

    /// A value where a list of strings is required: an array or `Fn::Split`.
    fn list(&self, v: &Value, pointer: &str, what: &str) -> Result<ListExpr, TemplateError> {
        if let Value::Array(items) = v {
            return items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &element(pointer, i), "a list element"))
                .collect::<Result<_, _>>()
                .map(ListExpr::Literal);
        }
        match self.intrinsic(v, pointer)? {
            Some(Intrinsic::List(l)) => Ok(l),
            Some(Intrinsic::String(_)) => Err(fault(
                pointer,
                format!("{what} must be a list, but this function yields a string"),
            )),
            None => Err(fault(
                pointer,
                format!("{what} must be a list, not {}", describe(v)),
            )),
        }
    }

    /// Arbitrary JSON with intrinsic functions anywhere inside.
    fn json(&self, v: &Value, pointer: &str) -> Result<JsonExpr, TemplateError> {
        if let Some(intrinsic) = self.intrinsic(v, pointer)? {
            return Ok(match intrinsic {
                Intrinsic::String(e) => JsonExpr::String(e),
                Intrinsic::List(l) => JsonExpr::Strings(l),
            });
        }
        let expr = match v {
            Value::Array(items) => {
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.json(item, &element(pointer, i)))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|i| matches!(i, JsonExpr::Const(_))) {
                    JsonExpr::Const(v.clone())
                } else {
                    JsonExpr::Array(items)
                }
            }
            Value::Object(members) => {
                let members = members
                    .iter()
                    .map(|(k, m)| Ok((k.clone(), self.json(m, &child(pointer, k))?)))
                    .collect::<Result<Vec<_>, TemplateError>>()?;
                if members.iter().all(|(_, m)| matches!(m, JsonExpr::Const(_))) {
                    JsonExpr::Const(v.clone())
                } else {
                    JsonExpr::Object(members)
                }
            }
            scalar => JsonExpr::Const(scalar.clone()),
        };
        Ok(expr)
    }

    /// Parse `v` as an intrinsic function if it is shaped like one.
    fn intrinsic(&self, v: &Value, pointer: &str) -> Result<Option<Intrinsic>, TemplateError> {
        let Some((name, arg)) = as_intrinsic(v, pointer)? else {
            return Ok(None);
        };
        let ap = child(pointer, name);
        let intrinsic = match name {
            "Ref" => {
                let target = literal_string(arg, &ap, "the argument of Ref")?;
                if target.is_empty() {
                    return Err(fault(&ap, "Ref needs a parameter name"));
                }
                Intrinsic::String(Expr::Ref(target.to_string()))
            }
            "Fn::Join" => {
                let [delimiter, items] = arguments(arg, &ap, name, "[delimiter, [values...]]")?;
                let delimiter =
                    literal_string(delimiter, &element(&ap, 0), "the Fn::Join delimiter")?;
                let items = self.list(items, &element(&ap, 1), "the Fn::Join values")?;
                Intrinsic::String(Expr::Join {
                    delimiter: delimiter.to_string(),
                    items: Box::new(items),
                })
            }
            "Fn::Select" => {
                let [index, list] = arguments(arg, &ap, name, "[index, [values...]]")?;
                let index = self.index(index, &element(&ap, 0))?;
                let list = self.list(list, &element(&ap, 1), "the Fn::Select values")?;
                Intrinsic::String(Expr::Select {
                    index: Box::new(index),
                    list: Box::new(list),
                })
            }
            "Fn::Split" => {
                let [delimiter, source] = arguments(arg, &ap, name, "[delimiter, string]")?;
                let dp = element(&ap, 0);
                let delimiter = literal_string(delimiter, &dp, "the Fn::Split delimiter")?;
                if delimiter.is_empty() {
                    return Err(fault(&dp, "the Fn::Split delimiter must not be empty"));
                }
                let source = self.string(source, &element(&ap, 1), "the Fn::Split source")?;
                Intrinsic::List(ListExpr::Split {
                    delimiter: delimiter.to_string(),
                    source,
                })
            }
            "Fn::FindInMap" => {
                let [map, key1, key2] = arguments(
                    arg,
                    &ap,
                    name,
                    "[map name, top-level key, second-level key]",
                )?;
                let map = self.string(map, &element(&ap, 0), "the Fn::FindInMap map name")?;
                let key1 =
                    self.string(key1, &element(&ap, 1), "the Fn::FindInMap top-level key")?;
                let key2 =
                    self.string(key2, &element(&ap, 2), "the Fn::FindInMap second-level key")?;
                self.check_literal_lookup(&ap, [&map, &key1, &key2])?;
                Intrinsic::String(Expr::FindInMap(Box::new([map, key1, key2])))
            }
            "Fn::Sub" => Intrinsic::String(self.sub(arg, &ap)?),
            other => {
                return Err(fault(
                    pointer,
                    format!(
                        "unsupported intrinsic function {other} (supported: Ref, Fn::Join, \
                         Fn::Select, Fn::Split, Fn::FindInMap, Fn::Sub)"
                    ),
                ));
            }
        };
        Ok(Some(intrinsic))
    }

    fn index(&self, v: &Value, pointer: &str) -> Result<IndexExpr, TemplateError> {
        let bad = || {
            fault(
                pointer,
                "the Fn::Select index must be a non-negative integer",
            )
        };
        match v {
            Value::Number(n) => {
                let n = n.as_u64().ok_or_else(bad)?;
                usize::try_from(n)
                    .map(IndexExpr::Literal)
                    .map_err(|_| bad())
            }
            Value::String(s) => s.trim().parse().map(IndexExpr::Literal).map_err(|_| bad()),
            _ => Ok(IndexExpr::Dynamic(self.string(
                v,
                pointer,
                "the Fn::Select index",
            )?)),
        }
    }

    /// `Fn::FindInMap` with literal arguments can be checked against `Mappings` right away.
    fn check_literal_lookup(&self, pointer: &str, args: [&Expr; 3]) -> Result<(), TemplateError> {
        let [Expr::Literal(map), key1, key2] = args else {
            return Ok(());
        };
        let Some(table) = self.mappings.get(map) else {
            return Err(fault(
                &element(pointer, 0),
                format!("no mapping named {map:?}"),
            ));
        };
        let Expr::Literal(key1) = key1 else {
            return Ok(());
        };
        let Some(row) = table.get(key1) else {
            return Err(fault(
                &element(pointer, 1),
                format!("mapping {map:?} has no key {key1:?}"),
            ));
        };
        if let Expr::Literal(key2) = key2
            && !row.contains_key(key2)
        {
            return Err(fault(
                &element(pointer, 2),
                format!("mapping {map:?} key {key1:?} has no key {key2:?}"),
            ));
        }
        Ok(())
    }

    fn sub(&self, arg: &Value, pointer: &str) -> Result<Expr, TemplateError> {
        let (text, text_pointer, vars) = match arg {
            Value::String(text) => (text.as_str(), pointer.to_string(), None),
            _ => {
                let shape = "a string or [string, {variable: value, ...}]";
                let [text, vars] = arguments(arg, pointer, "Fn::Sub", shape)?;
                let tp = element(pointer, 0);
                let text = literal_string(text, &tp, "the Fn::Sub string")?;
                let vars = object(vars, &element(pointer, 1), "the Fn::Sub variable map")?;
                (text, tp, Some(vars))
            }
        };
        let parts = parse_sub(text, &text_pointer)?;
        let mut variables = BTreeMap::new();
        let vars_pointer = element(pointer, 1);
        for (name, value) in vars.into_iter().flatten() {
            let expr = self.string(value, &child(&vars_pointer, name), "an Fn::Sub variable")?;
            variables.insert(name.clone(), expr);
        }
        Ok(Expr::Sub { parts, variables })
    }

    fn resources(&self, v: &Value, pointer: &str) -> Result<Resources, TemplateError> {
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

    fn device_configuration(
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

// ------------------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------------------

struct Evaluator<'t, 'c> {
    template: &'t Template,
    ctx: &'c RenderContext<'c>,
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

    fn string(&self, expr: &Expr) -> Result<String, RenderError> {
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

    fn thing(&self, t: &ThingResource) -> Result<ThingSpec, RenderError> {
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

    fn certificate(&self, c: &CertificateResource) -> Result<CertificateSpec, RenderError> {
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

    fn policy(&self, p: &PolicyResource) -> Result<PolicySpec, RenderError> {
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
    use super::*;
    use serde_json::json;

    const CERT_ID: &str = "82e613adb5ecbbd8921073d9e9dee236f6cb41e44c330abbe7d718e978fcbc7c";

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn render(template: &Template, pairs: &[(&str, &str)]) -> Result<Rendered, RenderError> {
        let parameters = params(pairs);
        template.render(&RenderContext {
            parameters: &parameters,
            certificate_id: CERT_ID,
        })
    }

    fn parse(body: &Value) -> Result<Template, TemplateError> {
        Template::parse(&body.to_string())
    }

    /// The pointer of the fault `body` is rejected with.
    fn fault_pointer(body: &Value) -> String {
        match parse(body) {
            Ok(_) => panic!("template unexpectedly accepted: {body}"),
            Err(e) => e.pointer,
        }
    }

    /// A template whose thing name is `expr`, plus `extra` top-level sections.
    fn named(expr: Value, extra: Value) -> Value {
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
    fn thing_name(expr: Value, pairs: &[(&str, &str)]) -> Result<String, RenderError> {
        let template = parse(&named(expr, json!({}))).expect("template parses");
        Ok(render(&template, pairs)?
            .thing
            .expect("template has a thing")
            .thing_name)
    }

    /// Render `expr` as a device-configuration value (no thing-name restrictions).
    fn config_value(
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

    fn seed() -> Template {
        Template::parse(SEED_TEMPLATE_JSON).expect("seed template parses")
    }

    const SEED_PARAMS: &[(&str, &str)] = &[
        ("DeviceName", "FPC-device-3f1c"),
        ("SerialNumber", "123456"),
        ("DeviceLocation", "Berlin"),
    ];

    // ---- seed template ----

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

    // ---- references ----

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

    // ---- intrinsic functions ----

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

    // ---- resources ----

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

    fn certificate_with(props: Value) -> Value {
        json!({"Resources": {"cert": {"Type": "AWS::IoT::Certificate", "Properties": props}}})
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

    fn policy_with(props: Value) -> Value {
        json!({
            "Parameters": {"Topic": {"Type": "String", "Default": "t1"}},
            "Resources": {"pol": {"Type": "AWS::IoT::Policy", "Properties": props}}
        })
    }

    fn rendered_policy(body: &Value) -> PolicySpec {
        let rendered = render(&parse(body).expect("parses"), &[]).expect("renders");
        rendered.policies.into_iter().next().expect("one policy")
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

    // ---- parse errors ----

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

    fn thing_with_overrides(overrides: Value) -> Value {
        json!({"Resources": {"thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {"ThingName": "t"},
            "OverrideSettings": overrides
        }}})
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
    fn unsupported_intrinsic_is_rejected_with_its_pointer() {
        let body = json!({"Resources": {}, "DeviceConfiguration": {
            "Url": {"Fn::If": ["Cond", "a", "b"]}
        }});
        let err = parse(&body).expect_err("Fn::If");
        assert_eq!(err.pointer, "/DeviceConfiguration/Url");
        assert!(
            err.message
                .contains("unsupported intrinsic function Fn::If"),
            "{err}"
        );
        let deep = named(
            json!({"Fn::Join": ["", ["a", {"Fn::GetAtt": ["thing", "Arn"]}]]}),
            json!({}),
        );
        assert_eq!(
            fault_pointer(&deep),
            "/Resources/thing/Properties/ThingName/Fn::Join/1/1"
        );
    }

    #[test]
    fn intrinsic_shapes_are_checked_at_parse_time() {
        let p = "/Resources/thing/Properties/ThingName";
        let cases = [
            (json!({"Ref": 1}), format!("{p}/Ref")),
            (json!({"Ref": "Name", "Extra": 1}), p.to_string()),
            (json!({"Fn::Join": ["-"]}), format!("{p}/Fn::Join")),
            (json!({"Fn::Join": [1, ["a"]]}), format!("{p}/Fn::Join/0")),
            (json!({"Fn::Join": ["", "ab"]}), format!("{p}/Fn::Join/1")),
            (
                json!({"Fn::Join": ["", ["a", 1]]}),
                format!("{p}/Fn::Join/1/1"),
            ),
            (
                json!({"Fn::Select": [-1, ["a"]]}),
                format!("{p}/Fn::Select/0"),
            ),
            (
                json!({"Fn::Select": ["x", ["a"]]}),
                format!("{p}/Fn::Select/0"),
            ),
            (
                json!({"Fn::Select": [0, {"Ref": "Name"}]}),
                format!("{p}/Fn::Select/1"),
            ),
            (json!({"Fn::Split": [",", "a,b"]}), p.to_string()),
            (json!({"Fn::Split": ["", "ab"]}), format!("{p}/Fn::Split/0")),
            (
                json!({"Fn::FindInMap": ["Missing", "a", "b"]}),
                format!("{p}/Fn::FindInMap/0"),
            ),
            (
                json!({"Fn::FindInMap": ["T", "nope", "b"]}),
                format!("{p}/Fn::FindInMap/1"),
            ),
            (
                json!({"Fn::FindInMap": ["T", "k", "nope"]}),
                format!("{p}/Fn::FindInMap/2"),
            ),
            (
                json!({"Fn::FindInMap": ["T", "k"]}),
                format!("{p}/Fn::FindInMap"),
            ),
            (json!({"Fn::Sub": "a-${Name"}), format!("{p}/Fn::Sub")),
            (json!({"Fn::Sub": "a-${}"}), format!("{p}/Fn::Sub")),
            (
                json!({"Fn::Sub": ["${X}", {"X": [1]}]}),
                format!("{p}/Fn::Sub/1/X"),
            ),
            (
                json!({"Fn::Sub": ["${X}", "vars"]}),
                format!("{p}/Fn::Sub/1"),
            ),
            (json!({"Fn::Sub": 5}), format!("{p}/Fn::Sub")),
        ];
        let mappings = json!({"Mappings": {"T": {"k": {"v": "value"}}}});
        for (expr, pointer) in cases {
            let body = named(expr.clone(), mappings.clone());
            assert_eq!(fault_pointer(&body), pointer, "{expr}");
        }
        // The same template with a valid literal lookup parses.
        let ok = named(json!({"Fn::FindInMap": ["T", "k", "v"]}), mappings);
        assert_eq!(
            render(&parse(&ok).expect("parses"), &[])
                .expect("renders")
                .thing
                .expect("thing")
                .thing_name,
            "value"
        );
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
}
