//! AWS IoT policy documents: parsing, and the evaluation the mock runs on every CONNECT,
//! PUBLISH, SUBSCRIBE and delivery (`spec/aws-fleet-provisioning.md` §4).
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
//!
//! Layout: this module holds the model, the evaluation and the claim policy; `document` parses
//! and compiles documents, `pattern` compiles and matches resource and action globs.

mod document;
mod pattern;
#[cfg(test)]
mod testkit;

use std::fmt;

use serde_json::Value;

use pattern::Pattern;

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

impl PolicyDocument {
    /// Whether `${...}` policy variables are substituted (`"Version": "2012-10-17"`).
    pub fn uses_variables(&self) -> bool {
        self.version == PolicyVersion::V2012
    }

    /// Evaluate this document alone (see [`evaluate`]).
    pub fn evaluate(&self, action: Action, resource_arn: &str, vars: &PolicyVars<'_>) -> Decision {
        evaluate(std::iter::once(self), action, resource_arn, vars)
    }
}

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

/// The claim policy of `spec/aws-fleet-provisioning.md` §4 (the seed's
/// `fleet-provisioning-policy.json`) for `template_name`, plus the
/// `$aws/certificates/create-from-csr/*` resources the CSR flow needs
/// (`spec/aws-fleet-provisioning.md` §4 "CSR gap"), for Publish/Receive (`topic/`) and Subscribe
/// (`topicfilter/`). Region, account and template name come in literally (any `*`, `?`, `$` in them
/// is escaped).
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
    use super::testkit::*;
    use super::*;
    use serde_json::json;

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
}
