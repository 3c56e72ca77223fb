//! Resource and action glob patterns with policy variables, compiled once and matched without
//! allocation.

use super::PolicyVars;

#[derive(Debug, Clone)]
pub(super) enum Pattern {
    /// Exactly `*`.
    Any,
    /// The pieces between the `*`s. Never empty; one chunk means no `*` at all.
    Glob(Vec<Vec<Unit>>),
}

#[derive(Debug, Clone)]
pub(super) enum Unit {
    Lit(Box<str>),
    /// `?`: exactly one character.
    One,
    Var(Variable),
}

#[derive(Debug, Clone)]
pub(super) enum Variable {
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
    pub(super) fn compile(text: &str, variables: bool) -> Pattern {
        if text == "*" {
            return Pattern::Any;
        }
        let mut chunks: Vec<Vec<Unit>> = vec![Vec::new()];
        let mut lit = String::new();
        let mut rest = text;
        loop {
            if variables
                && let Some((name, after)) = rest.strip_prefix("${").and_then(|r| r.split_once('}'))
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

    pub(super) fn matches(&self, text: &str, vars: &PolicyVars<'_>) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Glob(chunks) => glob_matches(chunks, text, vars),
        }
    }
}

fn flush_literal(chunks: &mut [Vec<Unit>], lit: &mut String) {
    if !lit.is_empty()
        && let Some(chunk) = chunks.last_mut()
    {
        chunk.push(Unit::Lit(std::mem::take(lit).into_boxed_str()));
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use super::*;
    use serde_json::json;

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
