//! Which `…/rejected` codes count as throttled or hook denied: a scenario's `[target.classify]`.
//!
//! AWS publishes no list of fleet-provisioning error codes (`spec/aws-fleet-provisioning.md` §1.5):
//! the payload of a throttled request has never been captured, and the hook's "ACCESS_DENIED" wire
//! code is unconfirmed. The defaults below are therefore guesses, and a scenario run against real
//! AWS can replace them once `failures.csv` (which keeps every rejection's raw `statusCode`,
//! `errorCode` and `errorMessage`) shows what the endpoint really sends.
//!
//! Each entry is `STATUS`, `CODE` or `STATUS:CODE`: a 3-digit `statusCode`, an `errorCode`
//! compared case-insensitively in which `*` matches any run of characters, or both. A class
//! given in the scenario replaces that class's defaults (`throttled = []` turns it off); a class
//! left out keeps them. Throttled is checked first; hook denied applies to RegisterThing only
//! (the only request a pre-provisioning hook sees). Anything else stays `rejected`.

use serde::{Deserialize, Serialize};

/// `[target.classify]` as written in the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Classify {
    /// Rejections labelled `throttled.<stage>`. Default (a guess): `["429", "*Throttl*"]`.
    pub throttled: Vec<String>,
    /// RegisterThing rejections labelled `hook_denied[.cause]`. Default (a guess):
    /// `["403:AccessDenied"]`.
    pub hook_denied: Vec<String>,
}

impl Default for Classify {
    fn default() -> Self {
        Classify {
            throttled: vec!["429".into(), "*Throttl*".into()],
            hook_denied: vec!["403:AccessDenied".into()],
        }
    }
}

impl Classify {
    pub fn is_default(&self) -> bool {
        *self == Classify::default()
    }

    /// Check and compile the entries; errors name the field (`target.classify.throttled[1]`).
    pub fn rules(&self) -> Result<Rules, String> {
        let compile = |class: &str, entries: &[String]| {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Matcher::parse(e).map_err(|m| format!("target.classify.{class}[{i}]: {m}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Rules {
            throttled: compile("throttled", &self.throttled)?,
            hook_denied: compile("hook_denied", &self.hook_denied)?,
        })
    }
}

/// What a rejection is, by its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Throttled,
    HookDenied,
    Rejected,
}

/// Compiled `[target.classify]`.
#[derive(Debug, Clone)]
pub struct Rules {
    throttled: Vec<Matcher>,
    hook_denied: Vec<Matcher>,
}

impl Default for Rules {
    fn default() -> Self {
        Classify::default()
            .rules()
            .expect("the default classification entries are valid")
    }
}

impl Rules {
    /// The class of a rejection with these codes; `register_thing`: the rejected request was
    /// RegisterThing.
    pub fn class(&self, status: u16, code: &str, register_thing: bool) -> Class {
        let any = |ms: &[Matcher]| ms.iter().any(|m| m.matches(status, code));
        if any(&self.throttled) {
            Class::Throttled
        } else if register_thing && any(&self.hook_denied) {
            Class::HookDenied
        } else {
            Class::Rejected
        }
    }
}

/// One entry: a status code, an error-code glob, or both.
#[derive(Debug, Clone)]
struct Matcher {
    status: Option<u16>,
    /// Lowercased and split at `*`: the code starts with the first piece, ends with the last,
    /// and contains the others in order.
    code: Option<Vec<String>>,
}

impl Matcher {
    fn parse(entry: &str) -> Result<Matcher, String> {
        let entry = entry.trim();
        let (status, code) = match entry.split_once(':') {
            Some((s, c)) => (Some(s), Some(c)),
            None if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(entry), None)
            }
            None => (None, Some(entry)),
        };
        let status = status
            .map(|s| match s.parse::<u16>() {
                Ok(n) if s.len() == 3 && (100..=599).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{entry:?}: the status code must be 3 digits (100-599), e.g. \"429\" or \"403:AccessDenied\""
                )),
            })
            .transpose()?;
        let code = code
            .map(|c| {
                let ok = |b: u8| b.is_ascii_alphanumeric() || b"_.*-".contains(&b);
                if c.is_empty() || !c.bytes().all(ok) {
                    Err(format!(
                        "{entry:?}: the error code must be letters, digits, '_', '.', '-' and '*' wildcards, e.g. \"ThrottlingException\" or \"*Throttl*\""
                    ))
                } else {
                    Ok(c.to_ascii_lowercase().split('*').map(String::from).collect())
                }
            })
            .transpose()?;
        Ok(Matcher { status, code })
    }

    fn matches(&self, status: u16, code: &str) -> bool {
        self.status.is_none_or(|s| s == status)
            && self
                .code
                .as_ref()
                .is_none_or(|pieces| glob(pieces, &code.to_ascii_lowercase()))
    }
}

/// `text` matches the `*`-separated `pieces` (a single piece: equality).
fn glob(pieces: &[String], text: &str) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return false;
    };
    if pieces.len() == 1 {
        return text == first;
    }
    if text.len() < first.len() + last.len()
        || !text.starts_with(first.as_str())
        || !text.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_the_documented_guesses() {
        let r = Rules::default();
        assert_eq!(r.class(429, "Anything", false), Class::Throttled);
        assert_eq!(r.class(400, "ThrottlingException", false), Class::Throttled);
        assert_eq!(r.class(403, "accessdenied", true), Class::HookDenied);
        // A hook sees only RegisterThing.
        assert_eq!(r.class(403, "AccessDenied", false), Class::Rejected);
        assert_eq!(r.class(400, "InvalidParameters", true), Class::Rejected);
    }

    #[test]
    fn scenario_entries_replace_a_class_and_match_status_code_or_both() {
        let c = Classify {
            throttled: vec!["503".into(), "Slow*Down".into()],
            hook_denied: vec!["400:Denied*".into()],
        };
        let c: Classify = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        let r = c.rules().unwrap();
        assert_eq!(r.class(503, "x", false), Class::Throttled);
        assert_eq!(r.class(400, "SlowPleaseDown", false), Class::Throttled);
        assert_eq!(r.class(400, "SlowDownNow", false), Class::Rejected);
        // The default 429 is gone once `throttled` is given.
        assert_eq!(r.class(429, "TooMany", false), Class::Rejected);
        assert_eq!(r.class(400, "DeniedByHook", true), Class::HookDenied);
        assert_eq!(r.class(403, "DeniedByHook", true), Class::Rejected);
        // Only `hook_denied` given: `throttled` keeps its defaults.
        let only: Classify = toml::from_str("hook_denied = [\"403\"]").unwrap();
        let r = only.rules().unwrap();
        assert_eq!(r.class(429, "x", true), Class::Throttled);
        assert_eq!(r.class(403, "Whatever", true), Class::HookDenied);
        let off: Classify = toml::from_str("throttled = []").unwrap();
        assert_eq!(off.rules().unwrap().class(429, "x", false), Class::Rejected);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        for (entry, field) in [
            ("42", "throttled[0]"),
            ("700:X", "throttled[0]"),
            ("", "throttled[0]"),
            ("403:", "throttled[0]"),
            ("Throttling Exception", "throttled[0]"),
            ("*:Forbidden", "throttled[0]"),
        ] {
            let c = Classify {
                throttled: vec![entry.into()],
                ..Classify::default()
            };
            let e = c.rules().unwrap_err();
            assert!(e.contains(&format!("target.classify.{field}")), "{e}");
        }
        let e = toml::from_str::<Classify>("throttle = [\"429\"]").unwrap_err();
        assert!(e.to_string().contains("throttle"), "{e}");
    }
}
