//! Parsing of the intrinsic functions (`Ref`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
//! `Fn::FindInMap`, `Fn::Sub`) into typed string and list expressions.

use std::collections::BTreeMap;

use serde_json::Value;

use super::parser::{
    Parser, arguments, as_intrinsic, child, describe, element, fault, literal_string, object,
};
use super::{Expr, IndexExpr, Intrinsic, JsonExpr, ListExpr, SubPart, TemplateError};

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

impl Parser<'_> {
    /// A value where a string is required: a string literal or a string-valued intrinsic.
    pub(super) fn string(
        &self,
        v: &Value,
        pointer: &str,
        what: &str,
    ) -> Result<Expr, TemplateError> {
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
    pub(super) fn list(
        &self,
        v: &Value,
        pointer: &str,
        what: &str,
    ) -> Result<ListExpr, TemplateError> {
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
    pub(super) fn json(&self, v: &Value, pointer: &str) -> Result<JsonExpr, TemplateError> {
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
}
#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use serde_json::json;

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
}
