//! Parsing of policy documents (JSON) into compiled statements; every fault names the JSON
//! pointer of the offending value.

use serde_json::{Map, Value};

use super::pattern::Pattern;
use super::{
    Action, Effect, PolicyDocument, PolicyError, PolicyVars, PolicyVersion, ResourceSet, Statement,
};

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
        if let Some(id) = obj.get("Id")
            && !id.is_string()
        {
            return Err(PolicyError::new("/Id", "must be a string"));
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
    if let Some(sid) = obj.get("Sid")
        && !sid.is_string()
    {
        return Err(PolicyError::new(&child(pointer, "Sid"), "must be a string"));
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
#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use serde_json::json;

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
}
