//! Test helpers shared by the policy unit tests: a fixed ARN context, parsing that must succeed
//! or fail, and decisions for a client ID or topic.

use serde_json::Value;

use super::pattern::Pattern;
use super::{
    Action, ArnContext, Decision, PolicyDocument, PolicyError, PolicyVars, claim_policy_json,
    evaluate,
};

pub(super) fn ctx() -> ArnContext {
    ArnContext::new("us-east-1", "123456789012")
}

pub(super) fn vars(client_id: &str) -> PolicyVars<'_> {
    PolicyVars {
        client_id,
        thing_name: None,
        certificate_id: None,
    }
}

pub(super) fn doc(value: Value) -> PolicyDocument {
    match PolicyDocument::parse(&value) {
        Ok(d) => d,
        Err(e) => panic!("policy should parse: {e}"),
    }
}

pub(super) fn err(value: Value) -> PolicyError {
    match PolicyDocument::parse(&value) {
        Ok(_) => panic!("policy should not parse: {value}"),
        Err(e) => e,
    }
}

/// Decision for `action` on `name` (client ID or topic / filter) under `docs`.
pub(super) fn check(
    docs: &[&PolicyDocument],
    action: Action,
    name: &str,
    v: &PolicyVars<'_>,
) -> Decision {
    evaluate(
        docs.iter().copied(),
        action,
        &ctx().resource_for(action, name),
        v,
    )
}

pub(super) fn claim() -> PolicyDocument {
    doc(claim_policy_json(&ctx(), "FleetProvisioningTemplate"))
}

pub(super) fn allowed(d: &PolicyDocument, action: Action, name: &str) -> bool {
    check(&[d], action, name, &vars("device-1")).is_allowed()
}

/// Resource glob match through the public path, with variables on.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    Pattern::compile(pattern, true).matches(text, &vars("c"))
}

impl PolicyDocument {
    /// Parse a policy document from JSON text.
    pub(crate) fn from_json_str(s: &str) -> Result<PolicyDocument, PolicyError> {
        let value: Value = serde_json::from_str(s)
            .map_err(|e| PolicyError::new("", format!("invalid JSON: {e}")))?;
        Self::parse(&value)
    }

    /// Number of statements in the document.
    pub(crate) fn statement_count(&self) -> usize {
        self.statements.len()
    }
}
