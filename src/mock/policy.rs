//! AWS IoT policy documents: parsing, and the evaluation the mock runs on every CONNECT,
//! PUBLISH, SUBSCRIBE and delivery (spec §4).
//!
//! Documents are parsed once and compiled ([`PolicyDocument::parse`]): actions become a bit mask
//! of the four MQTT actions, resources become glob patterns split into literal, `?` and variable
//! units around the `*`s. [`evaluate`] then does bit tests and allocation-free matching.
//!
//! Semantics (IAM's, as AWS IoT Core uses them):
//! - Any matching `Deny` in any attached document wins, then any matching `Allow`, else the
//!   request is implicitly denied.
//! - Actions match case-insensitively, with `*` and `?` globs (`iot:*`, `*`, `iot:Pub*`). Other
//!   actions (`iot:UpdateThingShadow`, `s3:GetObject`) are accepted and never match ours.
//! - Resources match case-sensitively: `*` matches any sequence (including `/` and nothing), `?`
//!   exactly one character. MQTT's `+` and `#` are literal characters.
//! - Policy variables (`${iot:ClientId}`, `${iot:Connection.Thing.ThingName}`,
//!   `${iot:CertificateId}`) and the escapes `${*}`, `${?}`, `${$}` are recognised only when the
//!   document says `"Version": "2012-10-17"`. As in IAM, a document without `Version` or with
//!   `2008-10-17` treats `${...}` as literal text. A substituted value is literal text (a client
//!   ID of `*` matches only `*`). A variable without a value (no thing attached, or any variable
//!   this mock does not know) makes that resource entry match nothing.
//! - `NotAction` / `NotResource`: the statement applies when the action / resource matches none
//!   of the listed patterns.
//! - `Condition` is parsed and checked for shape but **not evaluated**: a statement that has one
//!   never applies. For an Allow that means the mock is stricter than AWS; for a Deny it is
//!   laxer. Policies used against the mock should not rely on conditions.

use std::fmt;

use serde_json::{Map, Value};

/// The four MQTT actions the mock authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
    ];

    /// The IAM action name, e.g. `iot:Connect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "iot:Connect",
            Action::Publish => "iot:Publish",
            Action::Subscribe => "iot:Subscribe",
            Action::Receive => "iot:Receive",
        }
    }

    fn lowercase(self) -> &'static str {
        match self {
            Action::Connect => "iot:connect",
            Action::Publish => "iot:publish",
            Action::Subscribe => "iot:subscribe",
            Action::Receive => "iot:receive",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Connect => 1,
            Action::Publish => 2,
            Action::Subscribe => 4,
            Action::Receive => 8,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault in a policy document, located by the JSON pointer (RFC 6901) of the offending value;
/// the empty pointer is the whole document.
#[derive(Debug, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct PolicyError {
    pub pointer: String,
    pub message: String,
}

impl PolicyError {
    fn new(pointer: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Where the mock lives, used to build resource ARNs: `arn:aws:iot:{region}:{account}:{kind}/{name}`.
#[derive(Debug, Clone)]
pub struct ArnContext {
    pub region: String,
    pub account: String,
}

impl ArnContext {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> ArnContext {
        ArnContext {
            region: region.into(),
            account: account.into(),
        }
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:iot:{}:{}:{kind}/{name}", self.region, self.account)
    }

    /// `arn:aws:iot:{region}:{account}:client/{client_id}`
    pub fn client_arn(&self, client_id: &str) -> String {
        self.arn("client", client_id)
    }

    /// `arn:aws:iot:{region}:{account}:topic/{topic}`
    pub fn topic_arn(&self, topic: &str) -> String {
        self.arn("topic", topic)
    }

    /// `arn:aws:iot:{region}:{account}:topicfilter/{filter}`
    pub fn topic_filter_arn(&self, filter: &str) -> String {
        self.arn("topicfilter", filter)
    }

    /// The resource an action is checked against: Connect → `client/`, Publish and Receive →
    /// `topic/`, Subscribe → `topicfilter/`.
    pub fn resource_for(&self, action: Action, name: &str) -> String {
        match action {
            Action::Connect => self.client_arn(name),
            Action::Publish | Action::Receive => self.topic_arn(name),
            Action::Subscribe => self.topic_filter_arn(name),
        }
    }
}

/// Values for policy variables of the requesting connection.
#[derive(Debug, Clone, Default)]
pub struct PolicyVars<'a> {
    pub client_id: &'a str,
    pub thing_name: Option<&'a str>,
    pub certificate_id: Option<&'a str>,
}

/// A parsed and compiled policy document.
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    version: PolicyVersion,
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyVersion {
    /// `2008-10-17`, or no `Version`: `${...}` is literal text.
    V2008,
    /// `2012-10-17`: policy variables are substituted.
    V2012,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    /// Bits of the actions this statement applies to (`NotAction` already inverted). Zero when
    /// the statement has a `Condition`, which the mock does not evaluate: it never applies.
    actions: u8,
    resources: ResourceSet,
}

#[derive(Debug, Clone)]
struct ResourceSet {
    patterns: Vec<Pattern>,
    /// `NotResource`: applies when no pattern matches.
    negated: bool,
}

impl ResourceSet {
    fn applies(&self, arn: &str, vars: &PolicyVars<'_>) -> bool {
        self.patterns.iter().any(|p| p.matches(arn, vars)) != self.negated
    }
}

#[derive(Debug, Clone)]
enum Pattern {
    /// Exactly `*`.
    Any,
    /// The pieces between the `*`s. Never empty; one chunk means no `*` at all.
    Glob(Vec<Vec<Unit>>),
}

#[derive(Debug, Clone)]
enum Unit {
    Lit(Box<str>),
    /// `?`: exactly one character.
    One,
    Var(Variable),
}

#[derive(Debug, Clone)]
enum Variable {
    ClientId,
    ThingName,
    CertificateId,
    /// Any other `${...}`: never has a value here.
    Unknown,
}

impl Variable {
    fn from_name(name: &str) -> Variable {
        if name.eq_ignore_ascii_case("iot:ClientId") {
            Variable::ClientId
        } else if name.eq_ignore_ascii_case("iot:Connection.Thing.ThingName") {
            Variable::ThingName
        } else if name.eq_ignore_ascii_case("iot:CertificateId") {
            Variable::CertificateId
        } else {
            Variable::Unknown
        }
    }

    fn resolve<'v>(&self, vars: &PolicyVars<'v>) -> Option<&'v str> {
        match self {
            Variable::ClientId => Some(vars.client_id),
            Variable::ThingName => vars.thing_name,
            Variable::CertificateId => vars.certificate_id,
            Variable::Unknown => None,
        }
    }
}

impl Pattern {
    /// Compile a glob; with `variables`, `${...}` is a policy variable or escape.
    fn compile(text: &str, variables: bool) -> Pattern {
        if text == "*" {
            return Pattern::Any;
        }
        let mut chunks: Vec<Vec<Unit>> = vec![Vec::new()];
        let mut lit = String::new();
        let mut rest = text;
        loop {
            if variables {
                if let Some((name, after)) = rest.strip_prefix("${").and_then(|r| r.split_once('}'))
                {
                    rest = after;
                    match name {
                        "*" => lit.push('*'),
                        "?" => lit.push('?'),
                        "$" => lit.push('$'),
                        _ => push_unit(&mut chunks, &mut lit, Unit::Var(Variable::from_name(name))),
                    }
                    continue;
                }
            }
            let mut chars = rest.chars();
            let Some(c) = chars.next() else { break };
            rest = chars.as_str();
            match c {
                '*' => {
                    flush_literal(&mut chunks, &mut lit);
                    chunks.push(Vec::new());
                }
                '?' => push_unit(&mut chunks, &mut lit, Unit::One),
                _ => lit.push(c),
            }
        }
        flush_literal(&mut chunks, &mut lit);
        Pattern::Glob(chunks)
    }

    fn matches(&self, text: &str, vars: &PolicyVars<'_>) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Glob(chunks) => glob_matches(chunks, text, vars),
        }
    }
}

fn flush_literal(chunks: &mut [Vec<Unit>], lit: &mut String) {
    if !lit.is_empty() {
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(Unit::Lit(std::mem::take(lit).into_boxed_str()));
        }
    }
}

fn push_unit(chunks: &mut [Vec<Unit>], lit: &mut String, unit: Unit) {
    flush_literal(chunks, lit);
    if let Some(chunk) = chunks.last_mut() {
        chunk.push(unit);
    }
}

/// Star-separated glob match. The first chunk is anchored at the start, the last at the end, and
/// each middle chunk takes its leftmost match in between: greedy-leftmost is optimal for `*`
/// globs, so this is O(len(text) × len(pattern)) with no backtracking across stars.
fn glob_matches(chunks: &[Vec<Unit>], text: &str, vars: &PolicyVars<'_>) -> bool {
    let Some((first, rest)) = chunks.split_first() else {
        return text.is_empty();
    };
    let Some((last, middle)) = rest.split_last() else {
        return match_at(first, text, 0, vars) == Some(text.len());
    };
    let Some(mut cur) = match_at(first, text, 0, vars) else {
        return false;
    };
    // The last chunk has a fixed length in characters, so it can only start at one place.
    let Some(tail) = chunk_chars(last, vars).and_then(|n| start_of_last_chars(text, n)) else {
        return false;
    };
    if tail < cur || match_at(last, text, tail, vars) != Some(text.len()) {
        return false;
    }
    let Some(window) = text.get(..tail) else {
        return false;
    };
    for chunk in middle {
        match find_leftmost(chunk, window, cur, vars) {
            Some(end) => cur = end,
            None => return false,
        }
    }
    true
}

/// Match `chunk` at byte `pos` of `text`; the end of the match.
fn match_at(chunk: &[Unit], text: &str, mut pos: usize, vars: &PolicyVars<'_>) -> Option<usize> {
    for unit in chunk {
        let rest = text.get(pos..)?;
        let len = match unit {
            Unit::Lit(s) => rest.starts_with(&**s).then_some(s.len())?,
            Unit::One => rest.chars().next()?.len_utf8(),
            Unit::Var(v) => {
                let value = v.resolve(vars)?;
                rest.starts_with(value).then_some(value.len())?
            }
        };
        pos += len;
    }
    Some(pos)
}

/// Length of what `chunk` matches, in characters; `None` if a variable has no value.
fn chunk_chars(chunk: &[Unit], vars: &PolicyVars<'_>) -> Option<usize> {
    chunk.iter().try_fold(0usize, |n, unit| {
        Some(
            n + match unit {
                Unit::Lit(s) => s.chars().count(),
                Unit::One => 1,
                Unit::Var(v) => v.resolve(vars)?.chars().count(),
            },
        )
    })
}

/// Byte offset where the last `n` characters of `text` start.
fn start_of_last_chars(text: &str, n: usize) -> Option<usize> {
    match n {
        0 => Some(text.len()),
        _ => text.char_indices().rev().nth(n - 1).map(|(i, _)| i),
    }
}

/// Leftmost match of `chunk` in `window` at or after byte `from`; the end of the match.
fn find_leftmost(
    chunk: &[Unit],
    window: &str,
    mut from: usize,
    vars: &PolicyVars<'_>,
) -> Option<usize> {
    loop {
        if let Some(Unit::Lit(s)) = chunk.first() {
            from += window.get(from..)?.find(&**s)?;
        }
        if let Some(end) = match_at(chunk, window, from, vars) {
            return Some(end);
        }
        from += window.get(from..)?.chars().next()?.len_utf8();
    }
}

/// RFC 6901 pointer of `key` under `base`.
fn child(base: &str, key: &str) -> String {
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn index(base: &str, i: usize) -> String {
    format!("{base}/{i}")
}

const DOCUMENT_KEYS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    pointer: &str,
) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(PolicyError::new(
            &child(pointer, key),
            format!(
                "unknown key {key:?} (expected one of {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

impl PolicyDocument {
    /// Parse and compile a policy document given as a JSON object, or as a JSON string holding
    /// the document (templates may write `PolicyDocument` either way).
    pub fn parse(value: &Value) -> Result<PolicyDocument, PolicyError> {
        match value {
            Value::String(text) => {
                let inner: Value = serde_json::from_str(text).map_err(|e| {
                    PolicyError::new("", format!("policy document string is not valid JSON: {e}"))
                })?;
                Self::parse_object(&inner)
            }
            other => Self::parse_object(other),
        }
    }

    /// Parse a policy document from JSON text.
    pub fn from_json_str(s: &str) -> Result<PolicyDocument, PolicyError> {
        let value: Value = serde_json::from_str(s)
            .map_err(|e| PolicyError::new("", format!("invalid JSON: {e}")))?;
        Self::parse(&value)
    }

    fn parse_object(value: &Value) -> Result<PolicyDocument, PolicyError> {
        let Value::Object(obj) = value else {
            return Err(PolicyError::new(
                "",
                "a policy document must be a JSON object",
            ));
        };
        check_keys(obj, DOCUMENT_KEYS, "")?;
        let version = match obj.get("Version") {
            None => PolicyVersion::V2008,
            Some(Value::String(v)) if v == "2012-10-17" => PolicyVersion::V2012,
            Some(Value::String(v)) if v == "2008-10-17" => PolicyVersion::V2008,
            Some(_) => {
                return Err(PolicyError::new(
                    "/Version",
                    "must be \"2012-10-17\" or \"2008-10-17\"",
                ));
            }
        };
        if let Some(id) = obj.get("Id") {
            if !id.is_string() {
                return Err(PolicyError::new("/Id", "must be a string"));
            }
        }
        let variables = version == PolicyVersion::V2012;
        let statements = match obj.get("Statement") {
            None => return Err(PolicyError::new("/Statement", "required key is missing")),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, s)| parse_statement(s, &index("/Statement", i), variables))
                .collect::<Result<Vec<_>, _>>()?,
            Some(s @ Value::Object(_)) => vec![parse_statement(s, "/Statement", variables)?],
            Some(_) => {
                return Err(PolicyError::new(
                    "/Statement",
                    "must be a statement object or a list of them",
                ));
            }
        };
        Ok(PolicyDocument {
            version,
            statements,
        })
    }

    /// Number of statements in the document.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// Whether `${...}` policy variables are substituted (`"Version": "2012-10-17"`).
    pub fn uses_variables(&self) -> bool {
        self.version == PolicyVersion::V2012
    }

    /// Evaluate this document alone (see [`evaluate`]).
    pub fn evaluate(&self, action: Action, resource_arn: &str, vars: &PolicyVars<'_>) -> Decision {
        evaluate(std::iter::once(self), action, resource_arn, vars)
    }
}

fn parse_statement(
    value: &Value,
    pointer: &str,
    variables: bool,
) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = value else {
        return Err(PolicyError::new(
            pointer,
            "a statement must be a JSON object",
        ));
    };
    check_keys(obj, STATEMENT_KEYS, pointer)?;
    if let Some(sid) = obj.get("Sid") {
        if !sid.is_string() {
            return Err(PolicyError::new(&child(pointer, "Sid"), "must be a string"));
        }
    }
    let effect = match obj.get("Effect") {
        None => {
            return Err(PolicyError::new(
                &child(pointer, "Effect"),
                "required key is missing",
            ));
        }
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => {
            return Err(PolicyError::new(
                &child(pointer, "Effect"),
                "must be \"Allow\" or \"Deny\"",
            ));
        }
    };

    let (key, negated, list) = pick(obj, pointer, "Action", "NotAction")?;
    let mut mask = 0u8;
    for (i, pattern) in list.iter().enumerate() {
        let at = || index(&child(pointer, key), i);
        let pattern = pattern.ok_or_else(|| PolicyError::new(&at(), "must be a string"))?;
        if pattern != "*" && !pattern.contains(':') {
            return Err(PolicyError::new(
                &at(),
                format!(
                    "action {pattern:?} must be \"*\" or \"service:action\", e.g. \"iot:Publish\""
                ),
            ));
        }
        let glob = Pattern::compile(&pattern.to_lowercase(), false);
        for action in Action::ALL {
            if glob.matches(action.lowercase(), &PolicyVars::default()) {
                mask |= action.bit();
            }
        }
    }
    if negated {
        mask = !mask & Action::ALL.iter().fold(0, |m, a| m | a.bit());
    }

    let (key, negated, list) = pick(obj, pointer, "Resource", "NotResource")?;
    let mut patterns = Vec::with_capacity(list.len());
    for (i, pattern) in list.iter().enumerate() {
        let at = || index(&child(pointer, key), i);
        let pattern = pattern.ok_or_else(|| PolicyError::new(&at(), "must be a string"))?;
        if pattern != "*" && !pattern.starts_with("arn:") {
            return Err(PolicyError::new(
                &at(),
                format!("resource {pattern:?} must be \"*\" or an ARN (\"arn:aws:iot:...\")"),
            ));
        }
        patterns.push(Pattern::compile(pattern, variables));
    }

    if let Some(condition) = obj.get("Condition") {
        check_condition(condition, &child(pointer, "Condition"))?;
        // The mock does not evaluate conditions: a conditional statement never applies.
        mask = 0;
    }

    Ok(Statement {
        effect,
        actions: mask,
        resources: ResourceSet { patterns, negated },
    })
}

/// The list under exactly one of `key` / `not_key`: (the key used, negated, entries, each
/// `None` if not a string). A single string stands for a one-entry list.
fn pick<'v>(
    obj: &'v Map<String, Value>,
    pointer: &str,
    key: &'static str,
    not_key: &'static str,
) -> Result<(&'static str, bool, Vec<Option<&'v str>>), PolicyError> {
    let (used, negated, value) = match (obj.get(key), obj.get(not_key)) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::new(
                &child(pointer, not_key),
                format!("{key} and {not_key} cannot both be present"),
            ));
        }
        (Some(v), None) => (key, false, v),
        (None, Some(v)) => (not_key, true, v),
        (None, None) => {
            return Err(PolicyError::new(
                &child(pointer, key),
                format!("required key is missing (or {not_key})"),
            ));
        }
    };
    let at = child(pointer, used);
    let list = match value {
        Value::String(s) => vec![Some(s.as_str())],
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => {
            return Err(PolicyError::new(
                &at,
                "must be a string or a list of strings",
            ));
        }
    };
    if list.is_empty() {
        return Err(PolicyError::new(&at, "must not be empty"));
    }
    if let Some(i) = list.iter().position(|s| s.is_some_and(str::is_empty)) {
        return Err(PolicyError::new(&index(&at, i), "must not be empty"));
    }
    Ok((used, negated, list))
}

/// `{"Operator": {"key": value or [values]}}`; checked for shape only.
fn check_condition(value: &Value, pointer: &str) -> Result<(), PolicyError> {
    let Value::Object(operators) = value else {
        return Err(PolicyError::new(
            pointer,
            "must be an object of condition operators",
        ));
    };
    for (operator, keys) in operators {
        let at = child(pointer, operator);
        let Value::Object(keys) = keys else {
            return Err(PolicyError::new(&at, "must be an object of condition keys"));
        };
        for (key, values) in keys {
            let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
            let ok = match values {
                Value::Array(items) => items.iter().all(scalar),
                v => scalar(v),
            };
            if !ok {
                return Err(PolicyError::new(
                    &child(&at, key),
                    "must be a string, number, boolean or a list of them",
                ));
            }
        }
    }
    Ok(())
}

/// Evaluate all policies attached to an identity: any matching Deny wins, else any matching
/// Allow, else implicit deny.
pub fn evaluate<'d>(
    docs: impl IntoIterator<Item = &'d PolicyDocument>,
    action: Action,
    resource_arn: &str,
    vars: &PolicyVars<'_>,
) -> Decision {
    let bit = action.bit();
    let mut allowed = false;
    for doc in docs {
        for statement in &doc.statements {
            if statement.actions & bit == 0 {
                continue;
            }
            // Once allowed, only a Deny can change the outcome.
            if allowed && statement.effect == Effect::Allow {
                continue;
            }
            if !statement.resources.applies(resource_arn, vars) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Escape `*`, `?` and `$` so the text matches only itself in a `2012-10-17` resource.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            '$' => out.push_str("${$}"),
            c => out.push(c),
        }
    }
    out
}

/// The claim policy of spec §4 (the seed's `fleet-provisioning-policy.json`) for `template_name`,
/// plus the `$aws/certificates/create-from-csr/*` resources the CSR flow needs (spec §4 "CSR
/// gap"), for Publish/Receive (`topic/`) and Subscribe (`topicfilter/`). Region, account and
/// template name come in literally (any `*`, `?`, `$` in them is escaped).
pub fn claim_policy_json(ctx: &ArnContext, template_name: &str) -> Value {
    let prefix = format!(
        "arn:aws:iot:{}:{}",
        escape_glob(&ctx.region),
        escape_glob(&ctx.account)
    );
    let template = escape_glob(template_name);
    let resources = |kind: &str| {
        vec![
            format!("{prefix}:{kind}/$aws/certificates/create/*"),
            format!("{prefix}:{kind}/$aws/certificates/create-from-csr/*"),
            format!("{prefix}:{kind}/$aws/provisioning-templates/{template}/provision/*"),
        ]
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": ["iot:Connect"], "Resource": "*" },
            { "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": resources("topic") },
            { "Effect": "Allow", "Action": "iot:Subscribe", "Resource": resources("topicfilter") },
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ArnContext {
        ArnContext::new("us-east-1", "123456789012")
    }

    fn vars(client_id: &str) -> PolicyVars<'_> {
        PolicyVars {
            client_id,
            thing_name: None,
            certificate_id: None,
        }
    }

    fn doc(value: Value) -> PolicyDocument {
        match PolicyDocument::parse(&value) {
            Ok(d) => d,
            Err(e) => panic!("policy should parse: {e}"),
        }
    }

    fn err(value: Value) -> PolicyError {
        match PolicyDocument::parse(&value) {
            Ok(_) => panic!("policy should not parse: {value}"),
            Err(e) => e,
        }
    }

    /// Decision for `action` on `name` (client ID or topic / filter) under `docs`.
    fn check(docs: &[&PolicyDocument], action: Action, name: &str, v: &PolicyVars<'_>) -> Decision {
        evaluate(
            docs.iter().copied(),
            action,
            &ctx().resource_for(action, name),
            v,
        )
    }

    fn claim() -> PolicyDocument {
        doc(claim_policy_json(&ctx(), "FleetProvisioningTemplate"))
    }

    fn allowed(d: &PolicyDocument, action: Action, name: &str) -> bool {
        check(&[d], action, name, &vars("device-1")).is_allowed()
    }

    /// Resource glob match through the public path, with variables on.
    fn glob(pattern: &str, text: &str) -> bool {
        Pattern::compile(pattern, true).matches(text, &vars("c"))
    }

    #[test]
    fn arns_use_the_right_kind_per_action() {
        let c = ctx();
        assert_eq!(
            c.client_arn("abc"),
            "arn:aws:iot:us-east-1:123456789012:client/abc"
        );
        assert_eq!(
            c.topic_arn("a/b"),
            "arn:aws:iot:us-east-1:123456789012:topic/a/b"
        );
        assert_eq!(
            c.topic_filter_arn("a/#"),
            "arn:aws:iot:us-east-1:123456789012:topicfilter/a/#"
        );
        assert_eq!(c.resource_for(Action::Connect, "x"), c.client_arn("x"));
        assert_eq!(c.resource_for(Action::Publish, "x"), c.topic_arn("x"));
        assert_eq!(c.resource_for(Action::Receive, "x"), c.topic_arn("x"));
        assert_eq!(
            c.resource_for(Action::Subscribe, "x"),
            c.topic_filter_arn("x")
        );
        assert_eq!(Action::Subscribe.as_str(), "iot:Subscribe");
        assert_eq!(Action::Receive.to_string(), "iot:Receive");
    }

    #[test]
    fn claim_policy_json_has_the_spec_shape() {
        let v = claim_policy_json(&ctx(), "FleetProvisioningTemplate");
        assert_eq!(v["Version"], "2012-10-17");
        assert_eq!(v["Statement"][0]["Resource"], "*");
        assert_eq!(
            v["Statement"][1]["Action"],
            json!(["iot:Publish", "iot:Receive"])
        );
        assert_eq!(v["Statement"][2]["Action"], "iot:Subscribe");
        assert_eq!(
            v["Statement"][1]["Resource"],
            json!([
                "arn:aws:iot:us-east-1:123456789012:topic/$aws/certificates/create/*",
                "arn:aws:iot:us-east-1:123456789012:topic/$aws/certificates/create-from-csr/*",
                "arn:aws:iot:us-east-1:123456789012:topic/$aws/provisioning-templates/FleetProvisioningTemplate/provision/*",
            ])
        );
        assert_eq!(
            v["Statement"][2]["Resource"][2],
            "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/provisioning-templates/FleetProvisioningTemplate/provision/*"
        );
        // Round-trips through text.
        let text = v.to_string();
        assert!(PolicyDocument::from_json_str(&text).is_ok());
    }

    #[test]
    fn claim_policy_allows_connect_for_any_client_id() {
        let d = claim();
        for id in ["device-1", "", "mqtt5-sample-0a1b", "weird/id+#"] {
            assert_eq!(
                check(&[&d], Action::Connect, id, &vars(id)),
                Decision::Allow,
                "{id}"
            );
        }
    }

    #[test]
    fn claim_policy_allows_the_provisioning_publishes() {
        let d = claim();
        for topic in [
            "$aws/certificates/create/json",
            "$aws/certificates/create/cbor",
            "$aws/certificates/create-from-csr/json",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json",
        ] {
            assert!(allowed(&d, Action::Publish, topic), "{topic}");
        }
    }

    #[test]
    fn claim_policy_allows_the_response_subscriptions() {
        let d = claim();
        for filter in [
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create/json/rejected",
            "$aws/certificates/create/json/+",
            "$aws/certificates/create-from-csr/json/accepted",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json/accepted",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json/rejected",
        ] {
            assert!(allowed(&d, Action::Subscribe, filter), "{filter}");
        }
    }

    #[test]
    fn claim_policy_allows_receive_on_the_responses() {
        let d = claim();
        for topic in [
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create-from-csr/json/accepted",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json/accepted",
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json/rejected",
        ] {
            assert!(allowed(&d, Action::Receive, topic), "{topic}");
        }
    }

    #[test]
    fn claim_policy_denies_everything_else() {
        let d = claim();
        let denied = [
            (Action::Subscribe, "#"),
            (Action::Subscribe, "$aws/#"),
            (Action::Subscribe, "$aws/certificates/+/json/accepted"),
            (
                Action::Subscribe,
                "$aws/provisioning-templates/Other/provision/json/accepted",
            ),
            (Action::Publish, "device/x"),
            (
                Action::Publish,
                "$aws/provisioning-templates/Other/provision/json",
            ),
            (
                Action::Publish,
                "$aws/provisioning-templates/FleetProvisioningTemplateX/provision/json",
            ),
            (Action::Publish, "$aws/certificates/create"),
            (Action::Receive, "device/x"),
            (
                Action::Receive,
                "$aws/provisioning-templates/Other/provision/json/accepted",
            ),
        ];
        for (action, name) in denied {
            assert_eq!(
                check(&[&d], action, name, &vars("device-1")),
                Decision::ImplicitDeny,
                "{action} {name}"
            );
        }
        // The right topic in another region's or account's ARN is not ours.
        let other = ArnContext::new("eu-west-1", "123456789012");
        let arn = other.topic_arn("$aws/certificates/create/json");
        assert_eq!(
            evaluate([&d], Action::Publish, &arn, &vars("d")),
            Decision::ImplicitDeny
        );
        // Subscribe is checked against topicfilter/, not topic/.
        let arn = ctx().topic_arn("$aws/certificates/create/json/accepted");
        assert_eq!(
            evaluate([&d], Action::Subscribe, &arn, &vars("d")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn claim_policy_for_another_template_names_that_template() {
        let d = doc(claim_policy_json(&ctx(), "Other"));
        assert!(allowed(
            &d,
            Action::Publish,
            "$aws/provisioning-templates/Other/provision/json"
        ));
        assert!(!allowed(
            &d,
            Action::Publish,
            "$aws/provisioning-templates/FleetProvisioningTemplate/provision/json"
        ));
        // Glob characters in the name are literal.
        let d = doc(claim_policy_json(&ctx(), "T*"));
        assert!(allowed(
            &d,
            Action::Publish,
            "$aws/provisioning-templates/T*/provision/json"
        ));
        assert!(!allowed(
            &d,
            Action::Publish,
            "$aws/provisioning-templates/Tx/provision/json"
        ));
    }

    #[test]
    fn explicit_deny_beats_allow_in_one_and_across_documents() {
        let allow_all = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}));
        let deny_x = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:us-east-1:123456789012:topic/x/*"}]}));
        let v = vars("c");
        assert_eq!(
            check(&[&allow_all, &deny_x], Action::Publish, "x/1", &v),
            Decision::ExplicitDeny
        );
        assert_eq!(
            check(&[&deny_x, &allow_all], Action::Publish, "x/1", &v),
            Decision::ExplicitDeny
        );
        assert_eq!(
            check(&[&allow_all, &deny_x], Action::Publish, "y/1", &v),
            Decision::Allow
        );
        assert_eq!(
            check(&[&allow_all, &deny_x], Action::Receive, "x/1", &v),
            Decision::Allow
        );
        assert_eq!(
            check(&[&deny_x], Action::Publish, "y/1", &v),
            Decision::ImplicitDeny
        );
        assert!(!Decision::ExplicitDeny.is_allowed());
        assert!(!Decision::ImplicitDeny.is_allowed());
        assert!(Decision::Allow.is_allowed());
        assert_eq!(check(&[], Action::Connect, "c", &v), Decision::ImplicitDeny);

        let both = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/bad-*"}]}));
        assert_eq!(
            both.evaluate(Action::Connect, &ctx().client_arn("bad-1"), &v),
            Decision::ExplicitDeny
        );
        assert_eq!(
            both.evaluate(Action::Connect, &ctx().client_arn("good"), &v),
            Decision::Allow
        );
    }

    #[test]
    fn not_action_applies_to_every_other_action() {
        let d = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "NotAction": ["iot:Publish", "iot:Receive"], "Resource": "*"}]}));
        assert!(allowed(&d, Action::Connect, "c"));
        assert!(allowed(&d, Action::Subscribe, "a/b"));
        assert!(!allowed(&d, Action::Publish, "a/b"));
        assert!(!allowed(&d, Action::Receive, "a/b"));

        // NotAction: "*" leaves nothing; NotAction of another service leaves everything.
        let none =
            doc(json!({"Statement": {"Effect": "Allow", "NotAction": "*", "Resource": "*"}}));
        let all =
            doc(json!({"Statement": {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}}));
        for a in Action::ALL {
            assert!(!allowed(&none, a, "t"), "{a}");
            assert!(allowed(&all, a, "t"), "{a}");
        }
    }

    #[test]
    fn not_resource_applies_to_every_other_resource() {
        let d = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Publish",
             "NotResource": ["arn:aws:iot:us-east-1:123456789012:topic/ok/*"]}]}));
        assert!(allowed(&d, Action::Publish, "ok/1"));
        assert_eq!(
            check(&[&d], Action::Publish, "other", &vars("c")),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn client_id_variable_is_substituted() {
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["iot:Publish", "iot:Connect"],
            "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/device/${iot:ClientId}",
                         "arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"]}]}),
        );
        assert_eq!(
            check(&[&d], Action::Publish, "device/abc", &vars("abc")),
            Decision::Allow
        );
        assert_eq!(
            check(&[&d], Action::Publish, "device/xyz", &vars("abc")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&[&d], Action::Publish, "device/abcd", &vars("abc")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&[&d], Action::Connect, "abc", &vars("abc")),
            Decision::Allow
        );
        // The substituted value is literal text, not a glob.
        assert_eq!(
            check(&[&d], Action::Publish, "device/xyz", &vars("*")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&[&d], Action::Publish, "device/*", &vars("*")),
            Decision::Allow
        );
        // Variable names are case-insensitive.
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/${IOT:clientid}/*"}}),
        );
        assert!(check(&[&d], Action::Publish, "abc/t", &vars("abc")).is_allowed());
    }

    #[test]
    fn thing_name_variable_without_a_thing_matches_nothing() {
        let allow = doc(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": "arn:aws:iot:us-east-1:123456789012:topic/things/${iot:Connection.Thing.ThingName}/*"}]}),
        );
        let no_thing = vars("c");
        let thing = PolicyVars {
            client_id: "c",
            thing_name: Some("t1"),
            certificate_id: None,
        };
        assert_eq!(
            check(&[&allow], Action::Publish, "things/t1/x", &no_thing),
            Decision::ImplicitDeny
        );
        // Not even the text that an empty substitution would give.
        assert_eq!(
            check(&[&allow], Action::Publish, "things//x", &no_thing),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&[&allow], Action::Publish, "things/t1/x", &thing),
            Decision::Allow
        );
        assert_eq!(
            check(&[&allow], Action::Publish, "things/t2/x", &thing),
            Decision::ImplicitDeny
        );

        // An unresolved variable in a Deny does not deny.
        let deny = doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}*"}]}));
        assert_eq!(
            check(&[&deny], Action::Publish, "x", &no_thing),
            Decision::Allow
        );
        assert_eq!(
            check(&[&deny], Action::Publish, "t1/x", &thing),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn certificate_id_and_unknown_variables() {
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": ["arn:aws:iot:*:*:topic/cert/${iot:CertificateId}",
                         "arn:aws:iot:*:*:topic/attr/${iot:Connection.Thing.Attributes[x]}"]}]}),
        );
        let v = PolicyVars {
            client_id: "c",
            thing_name: Some("t"),
            certificate_id: Some("ab12"),
        };
        assert!(check(&[&d], Action::Publish, "cert/ab12", &v).is_allowed());
        assert!(!check(&[&d], Action::Publish, "cert/ab13", &v).is_allowed());
        assert!(!check(&[&d], Action::Publish, "cert/ab12", &vars("c")).is_allowed());
        assert!(!check(&[&d], Action::Publish, "attr/", &v).is_allowed());
        assert!(
            !check(
                &[&d],
                Action::Publish,
                "attr/${iot:Connection.Thing.Attributes[x]}",
                &v
            )
            .is_allowed()
        );
    }

    #[test]
    fn escapes_are_literal_characters() {
        assert!(glob("arn:x/a${*}b", "arn:x/a*b"));
        assert!(!glob("arn:x/a${*}b", "arn:x/axb"));
        assert!(glob("arn:x/a${?}b", "arn:x/a?b"));
        assert!(!glob("arn:x/a${?}b", "arn:x/axb"));
        assert!(glob("arn:x/${$}{iot:ClientId}", "arn:x/${iot:ClientId}"));
        assert!(!glob("arn:x/${$}{iot:ClientId}", "arn:x/c"));
        assert!(glob("arn:x/${iot:ClientId}", "arn:x/c"));
        // `$` not followed by `{`, and an unclosed `${`, are literal.
        assert!(glob("arn:x/$aws/*", "arn:x/$aws/things"));
        assert!(glob("arn:x/${oops", "arn:x/${oops"));
    }

    #[test]
    fn variables_are_literal_without_version_2012() {
        for version in [None, Some("2008-10-17")] {
            let mut v = json!({"Statement": {"Effect": "Allow", "Action": "iot:Publish",
                "Resource": "arn:aws:iot:*:*:topic/d/${iot:ClientId}"}});
            if let Some(version) = version {
                v["Version"] = json!(version);
            }
            let d = doc(v);
            assert!(!d.uses_variables());
            assert!(!check(&[&d], Action::Publish, "d/abc", &vars("abc")).is_allowed());
            assert!(check(&[&d], Action::Publish, "d/${iot:ClientId}", &vars("abc")).is_allowed());
        }
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/room-?/t?"}}),
        );
        assert!(allowed(&d, Action::Publish, "room-1/t2"));
        assert!(allowed(&d, Action::Publish, "room-é/t/"));
        assert!(!allowed(&d, Action::Publish, "room-/t2"));
        assert!(!allowed(&d, Action::Publish, "room-12/t2"));
        assert!(!allowed(&d, Action::Publish, "room-1/t"));
        assert!(glob("arn:?", "arn:é"));
        assert!(glob("arn:*?", "arn:é"));
        assert!(!glob("arn:*??", "arn:é"));
        assert!(glob("arn:*?x*?", "arn:éxé"));
    }

    #[test]
    fn star_crosses_slashes_and_mqtt_wildcards_are_literal() {
        assert!(glob("arn:x/*", "arn:x/"));
        assert!(glob("arn:x/*", "arn:x/a/b/c"));
        assert!(glob("arn:*/c", "arn:x/a/b/c"));
        assert!(!glob("arn:x/*", "arn:y/a"));
        assert!(!glob("arn:x/A*", "arn:x/a"), "case-sensitive");
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": "iot:Subscribe", "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/a/+"}}),
        );
        assert!(allowed(&d, Action::Subscribe, "a/+"));
        assert!(!allowed(&d, Action::Subscribe, "a/b"));
        assert!(!allowed(&d, Action::Subscribe, "a/#"));
    }

    #[test]
    fn action_globs_and_case() {
        let cases: [(&str, &[Action]); 8] = [
            ("iot:*", &Action::ALL),
            ("*", &Action::ALL),
            ("IOT:PUBLISH", &[Action::Publish]),
            ("iot:Pub*", &[Action::Publish]),
            ("iot:?eceive", &[Action::Receive]),
            ("iot:*scribe", &[Action::Subscribe]),
            ("iot:UpdateThingShadow", &[]),
            ("s3:*", &[]),
        ];
        for (pattern, expected) in cases {
            let d = doc(json!({"Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": pattern, "Resource": "*"}}));
            for a in Action::ALL {
                assert_eq!(allowed(&d, a, "t"), expected.contains(&a), "{pattern} {a}");
            }
        }
    }

    #[test]
    fn single_statement_object_and_single_strings() {
        let d = doc(
            json!({"Version": "2012-10-17", "Statement": {"Sid": "one", "Effect": "Allow",
            "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:123456789012:topic/a"}}),
        );
        assert_eq!(d.statement_count(), 1);
        assert!(allowed(&d, Action::Publish, "a"));
        assert!(!allowed(&d, Action::Publish, "b"));
        assert!(!allowed(&d, Action::Receive, "a"));
    }

    #[test]
    fn parse_accepts_a_json_string_and_text() {
        let inner = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;
        let d = doc(Value::String(inner.to_string()));
        assert!(allowed(&d, Action::Connect, "c"));
        let d = match PolicyDocument::from_json_str(inner) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert!(allowed(&d, Action::Connect, "c"));
        // A JSON text that is itself a string holding the document.
        assert!(PolicyDocument::from_json_str(&Value::String(inner.into()).to_string()).is_ok());

        let e = err(Value::String("{not json".into()));
        assert_eq!(e.pointer, "");
        assert!(PolicyDocument::from_json_str("{").is_err());
        assert_eq!(err(json!([1])).pointer, "");
        assert_eq!(err(Value::String("\"nested\"".into())).pointer, "");
    }

    #[test]
    fn parse_errors_name_the_pointer() {
        let good = json!({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"});
        let cases = [
            (
                json!({"Statement": [good, {"Action": "iot:Connect", "Resource": "*"}]}),
                "/Statement/1/Effect",
            ),
            (
                json!({"Statement": [good, {"Effect": "allow", "Action": "iot:Connect", "Resource": "*"}]}),
                "/Statement/1/Effect",
            ),
            (json!({"Version": "2012-10-17"}), "/Statement"),
            (json!({"Statement": 3}), "/Statement"),
            (json!({"Statement": [good, 3]}), "/Statement/1"),
            (
                json!({"Version": "2019-01-01", "Statement": [good]}),
                "/Version",
            ),
            (json!({"Version": 2012, "Statement": [good]}), "/Version"),
            (json!({"Statement": [good], "Extra": 1}), "/Extra"),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Principal": "*"}]}),
                "/Statement/0/Principal",
            ),
            (
                json!({"Statement": {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "a/b~": 1}}),
                "/Statement/a~1b~0",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Resource": "*"}]}),
                "/Statement/0/Action",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "iot:Connect"}]}),
                "/Statement/0/Resource",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "*", "Resource": "*"}]}),
                "/Statement/0/NotAction",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"}]}),
                "/Statement/0/NotResource",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": ["iot:Connect", 7], "Resource": "*"}]}),
                "/Statement/0/Action/1",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}),
                "/Statement/0/Action",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": {"a": 1}, "Resource": "*"}]}),
                "/Statement/0/Action",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "Connect", "Resource": "*"}]}),
                "/Statement/0/Action/0",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "NotAction": ["iot:Connect", ""], "Resource": "*"}]}),
                "/Statement/0/NotAction/1",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": ["*", "topic/a"]}]}),
                "/Statement/0/Resource/1",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": [null]}]}),
                "/Statement/0/NotResource/0",
            ),
            (
                json!({"Statement": [{"Sid": 1, "Effect": "Allow", "Action": "*", "Resource": "*"}]}),
                "/Statement/0/Sid",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": "x"}]}),
                "/Statement/0/Condition",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"StringEquals": {"iot:ClientId": {"x": 1}}}}]}),
                "/Statement/0/Condition/StringEquals/iot:ClientId",
            ),
        ];
        for (value, pointer) in cases {
            let e = err(value.clone());
            assert_eq!(e.pointer, pointer, "{value} -> {e}");
            assert!(!e.message.is_empty());
            assert_eq!(e.to_string(), format!("{pointer}: {}", e.message));
        }
    }

    #[test]
    fn conditional_statements_parse_but_never_apply() {
        let d = doc(json!({"Version": "2012-10-17", "Id": "p", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*",
             "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}]}));
        assert!(!allowed(&d, Action::Connect, "c"));
        assert!(allowed(&d, Action::Publish, "t"));
    }

    #[test]
    fn pathological_patterns_finish() {
        let text = format!("arn:{}", "a".repeat(20_000));
        assert!(!glob("arn:a*a*a*a*a*a*a*b", &text));
        assert!(glob("arn:a*a*a*a*a*a*a*a", &text));
        assert!(!glob("arn:*a*a*a*a*a*a*a*b*", &text));
        let with_b = format!("{text}b");
        assert!(glob("arn:a*a*a*a*a*a*a*b", &with_b));
        assert!(!glob("arn:*aaaaaaaaaaaaaaaaaaaaaab*a", &with_b));
        assert!(!glob("arn:*?????????????????????b*", &text));
    }

    /// Reference matcher: plain recursion over characters (exponential, but fine for tiny inputs).
    fn naive(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| naive(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && naive(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && naive(rest, &t[1..]),
        }
    }

    #[test]
    fn glob_agrees_with_a_naive_matcher() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let pattern_alphabet = ['a', 'b', 'é', '*', '?', '/'];
        let text_alphabet = ['a', 'b', 'é', '/'];
        for _ in 0..20_000 {
            let plen = next(8) as usize;
            let tlen = next(10) as usize;
            let p: String = (0..plen)
                .map(|_| pattern_alphabet[next(6) as usize])
                .collect();
            let t: String = (0..tlen).map(|_| text_alphabet[next(4) as usize]).collect();
            let expected = naive(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            );
            let compiled = Pattern::compile(&p, true);
            assert_eq!(compiled.matches(&t, &vars("c")), expected, "{p:?} vs {t:?}");
        }
    }
}
