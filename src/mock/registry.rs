//! The mock's registry: certificates, things, policies, ownership tokens.
//!
//! One mutex guards it; every critical section is a few map operations, so contention stays far
//! below the TLS and signing costs that dominate a provisioning flow. With a journal
//! ([`journal`]) every change is also appended to `registry.log` in the PKI directory, so a
//! restarted mock knows every certificate it issued before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod account;
pub mod control;
pub mod journal;
mod names;
mod versions;

pub use account::{AttributePayload, ThingUpdate};

pub use crate::mock_settings::RegistryMode;
pub use names::Names;

use crate::iot::policy::PolicyDocument;
use crate::iot::template::{OverrideAction, Rendered, ThingSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingActivation,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateRecord {
    pub certificate_id: String,
    /// Kept for the pre-provisioning hook's event and DescribeCertificate; not written to
    /// registry.json. A compact registry drops it once the certificate is activated.
    #[serde(skip)]
    pub certificate_pem: String,
    pub status: CertificateStatus,
    /// The claim certificate whose connection created it (None for the claim itself, and in a
    /// compact registry).
    #[serde(serialize_with = "serialize_creator")]
    pub created_by: Option<Arc<str>>,
    pub policies: Names,
    pub things: Names,
    #[serde(serialize_with = "serialize_time")]
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThingRecord {
    pub thing_name: String,
    /// Attributes, groups, type and billing group: empty in a compact registry.
    pub attributes: BTreeMap<String, String>,
    pub thing_groups: Names,
    pub thing_type_name: Option<String>,
    pub billing_group: Option<String>,
    pub certificates: Names,
    /// Raised by every UpdateThing (DescribeThing's `version`, UpdateThing's `expectedVersion`).
    #[serde(default = "first_version")]
    pub version: u64,
}

fn first_version() -> u64 {
    1
}

/// A thing group: its properties as CreateThingGroup gave them (`thingGroupProperties`), its
/// parent, creation time and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupRecord {
    pub parent: Option<String>,
    pub properties: Value,
    pub created: f64,
    pub version: u64,
}

impl Default for GroupRecord {
    fn default() -> GroupRecord {
        GroupRecord::new(None, Value::Object(Default::default()))
    }
}

impl GroupRecord {
    pub fn new(parent: Option<String>, properties: Value) -> GroupRecord {
        GroupRecord {
            parent,
            properties,
            created: journal::unix_seconds(SystemTime::now()),
            version: 1,
        }
    }
}

/// A thing type: its properties as CreateThingType gave them (`thingTypeProperties`), whether
/// and since when it is deprecated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TypeRecord {
    pub properties: Value,
    pub created: f64,
    pub deprecated: Option<f64>,
}

impl Default for TypeRecord {
    fn default() -> TypeRecord {
        TypeRecord {
            properties: Value::Object(Default::default()),
            created: journal::unix_seconds(SystemTime::now()),
            deprecated: None,
        }
    }
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub id: u32,
    pub document: Value,
    pub created: f64,
}

/// Every version of one policy, which is the default, and the next version ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersions {
    pub default: u32,
    pub next: u32,
    pub versions: Vec<PolicyVersion>,
}

impl PolicyVersions {
    pub(super) fn get(&self, id: u32) -> Option<&PolicyVersion> {
        self.versions.iter().find(|v| v.id == id)
    }
}

/// What a connection needs to know about its certificate, taken once at CONNECT.
#[derive(Clone)]
pub struct Identity {
    pub certificate_id: String,
    pub policies: Vec<Arc<PolicyDocument>>,
    pub thing_name: Option<String>,
}

/// Why a certificate may not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRefusal {
    Unknown,
    NotActive(CertificateStatus),
}

struct TokenRecord {
    certificate_id: String,
    expires_at: Instant,
}

#[derive(Default)]
struct Inner {
    mode: RegistryMode,
    certificates: HashMap<String, CertificateRecord>,
    things: HashMap<String, ThingRecord>,
    policies: HashMap<String, (Arc<PolicyDocument>, serde_json::Value)>,
    thing_groups: BTreeMap<String, GroupRecord>,
    thing_types: BTreeMap<String, TypeRecord>,
    /// Every version of a policy whose versions the control plane changed; a policy not here
    /// has its one version 1 (`policies` holds the default version's document).
    policy_versions: HashMap<String, PolicyVersions>,
    /// Provisioning templates created, updated (`Some`, as the control plane describes them) or
    /// deleted (`None`) over REST: kept only to be journaled and handed back at start.
    templates: BTreeMap<String, Option<serde_json::Value>>,
    tokens: HashMap<String, TokenRecord>,
    /// Journal lines not yet written (only with a journal).
    log: Option<Vec<u8>>,
    /// The claim certificate IDs seen, shared by every certificate they created.
    creators: Vec<Arc<str>>,
    /// The policy set last attached, shared by every certificate that gets the same.
    last_policies: Option<Names>,
}

impl Inner {
    /// The one shared copy of claim certificate ID `id`.
    fn creator(&mut self, id: &str) -> Arc<str> {
        if let Some(c) = self.creators.iter().find(|c| ***c == *id) {
            return c.clone();
        }
        let c: Arc<str> = id.into();
        self.creators.push(c.clone());
        c
    }
}

#[derive(Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    journal: Option<journal::Journal>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Empty,
    Unknown,
    Expired,
}

/// Why applying a rendered template failed: `(status, errorCode, message)` for the rejected topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct RegistryCounts {
    /// Things registered.
    pub things: usize,
    /// Certificates issued, in any status.
    pub certificates: usize,
    /// Of them, ACTIVE.
    pub active_certificates: usize,
    /// Of them, PENDING_ACTIVATION.
    pub pending_certificates: usize,
    /// Policies.
    pub policies: usize,
}

fn lock_inner(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // for a test endpoint; keep serving.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// An in-memory registry (nothing persisted) keeping what `mode` says.
    pub fn new(mode: RegistryMode) -> Registry {
        let registry = Registry::default();
        registry.lock().mode = mode;
        registry
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    pub fn mode(&self) -> RegistryMode {
        self.lock().mode
    }

    pub fn add_policy(&self, name: &str, document: PolicyDocument, json: serde_json::Value) {
        let mut inner = self.lock();
        inner.log_policy(name, &json);
        inner.forget_versions(name);
        inner
            .policies
            .insert(name.to_string(), (Arc::new(document), json));
    }

    /// A thing group that exists from the start (the settings' `thing_groups`).
    pub fn add_thing_group(&self, name: &str) {
        let mut inner = self.lock();
        if !inner.thing_groups.contains_key(name) {
            let record = GroupRecord::new(None, serde_json::json!({}));
            inner.log_line(&journal::Line::Group {
                name,
                record: &record,
            });
            inner.thing_groups.insert(name.to_string(), record);
        }
    }

    /// Register a certificate created outside the provisioning API (the claim certificate).
    pub fn add_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
        policies: &[&str],
    ) {
        let mut inner = self.lock();
        let previous = inner.certificates.get(certificate_id);
        let record = CertificateRecord {
            certificate_id: certificate_id.to_string(),
            certificate_pem: String::new(),
            status,
            created_by: None,
            policies: policies.iter().collect(),
            // A restarted mock keeps the things a control-plane call attached to it.
            things: previous.map(|c| c.things.clone()).unwrap_or_default(),
            created_at: previous.map_or_else(SystemTime::now, |c| c.created_at),
        };
        inner.log_cert(&record, None);
        inner
            .certificates
            .insert(certificate_id.to_string(), record);
    }

    pub fn set_certificate_status(&self, certificate_id: &str, status: CertificateStatus) -> bool {
        let mut inner = self.lock();
        match inner.certificates.get_mut(certificate_id) {
            Some(c) => {
                c.status = status;
                inner.log_cert_id(certificate_id);
                true
            }
            None => false,
        }
    }

    /// The identity of a connecting certificate, if it may connect.
    pub fn identity(&self, certificate_id: &str) -> Result<Identity, IdentityRefusal> {
        let inner = self.lock();
        let cert = inner
            .certificates
            .get(certificate_id)
            .ok_or(IdentityRefusal::Unknown)?;
        if cert.status != CertificateStatus::Active {
            return Err(IdentityRefusal::NotActive(cert.status));
        }
        Ok(Identity {
            certificate_id: certificate_id.to_string(),
            policies: cert
                .policies
                .iter()
                .filter_map(|p| inner.policies.get(p).map(|(doc, _)| doc.clone()))
                .collect(),
            thing_name: cert.things.iter().next().map(str::to_string),
        })
    }

    /// Record a certificate issued by CreateKeysAndCertificate / CreateCertificateFromCsr and hand
    /// out its ownership token.
    pub fn add_pending_certificate(
        &self,
        certificate_id: &str,
        certificate_pem: &str,
        created_by: &str,
        token: &str,
        ttl: Duration,
    ) {
        let mut inner = self.lock();
        let now = Instant::now();
        sweep_expired(&mut inner, now);
        let created_by = match inner.mode {
            RegistryMode::Full => Some(inner.creator(created_by)),
            RegistryMode::Compact => None,
        };
        let record = CertificateRecord {
            certificate_id: certificate_id.to_string(),
            certificate_pem: certificate_pem.to_string(),
            status: CertificateStatus::PendingActivation,
            created_by,
            policies: Names::default(),
            things: Names::default(),
            created_at: SystemTime::now(),
        };
        inner.log_cert(&record, Some((token, SystemTime::now() + ttl)));
        inner
            .certificates
            .insert(certificate_id.to_string(), record);
        inner.tokens.insert(
            token.to_string(),
            TokenRecord {
                certificate_id: certificate_id.to_string(),
                expires_at: now + ttl,
            },
        );
    }

    /// The certificate a token belongs to, without consuming it.
    pub fn check_token(&self, token: &str) -> Result<String, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        let inner = self.lock();
        let record = inner.tokens.get(token).ok_or(TokenError::Unknown)?;
        if Instant::now() >= record.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(record.certificate_id.clone())
    }

    /// Apply a rendered template for the certificate behind `token`, consuming the token.
    /// All checks happen before any change, so a failure leaves the registry untouched.
    pub fn apply(&self, token: &str, rendered: &Rendered) -> Result<(), ApplyError> {
        let mut inner = self.lock();
        let certificate_id = match inner.tokens.get(token) {
            Some(t) if Instant::now() < t.expires_at => t.certificate_id.clone(),
            _ => {
                return Err(ApplyError {
                    status: 400,
                    code: "InvalidCertificateOwnershipToken",
                    message: "Certificate ownership token is invalid or has already been used."
                        .into(),
                });
            }
        };
        for policy in &rendered.policies {
            if policy.document.is_none() && !inner.policies.contains_key(&policy.policy_name) {
                return Err(ApplyError {
                    status: 400,
                    code: "InvalidParameters",
                    message: format!("Policy {} does not exist.", policy.policy_name),
                });
            }
        }
        if let Some(thing) = &rendered.thing {
            inner.check_groups_and_type(thing)?;
            if inner.mode == RegistryMode::Full {
                // A compact registry keeps no attributes, groups or type to compare.
                check_thing_conflicts(inner.things.get(&thing.thing_name), thing)?;
            }
        }

        inner.tokens.remove(token);
        let status = match rendered.certificate.as_ref().map(|c| c.status) {
            Some(crate::iot::template::CertificateStatusSpec::Inactive) => {
                CertificateStatus::Inactive
            }
            _ => CertificateStatus::Active,
        };
        for policy in &rendered.policies {
            if let Some(doc) = &policy.document
                && !inner.policies.contains_key(&policy.policy_name)
            {
                // Documents were validated when the template was loaded.
                if let Ok(parsed) = PolicyDocument::parse(doc) {
                    inner.log_policy(&policy.policy_name, doc);
                    inner
                        .policies
                        .insert(policy.policy_name.clone(), (Arc::new(parsed), doc.clone()));
                }
            }
        }
        // Every device of a template gets the same policies: one shared set for all of them.
        let policy_names =
            inner.shared_policies(rendered.policies.iter().map(|p| &p.policy_name).collect());
        let compact = inner.mode == RegistryMode::Compact;
        if let Some(thing) = &rendered.thing {
            upsert_thing(&mut inner.things, thing, &certificate_id, compact);
        }
        let Some(cert) = inner.certificates.get_mut(&certificate_id) else {
            return Ok(());
        };
        cert.status = status;
        cert.policies = if cert.policies.is_empty() {
            policy_names
        } else {
            cert.policies.union(&policy_names)
        };
        if let Some(thing) = &rendered.thing {
            cert.things.insert(&thing.thing_name);
        }
        if compact {
            // Kept while pending for the hook's event; an active certificate needs only its ID.
            cert.certificate_pem = String::new();
        }
        inner.log_cert_id(&certificate_id);
        if let Some(thing) = &rendered.thing {
            inner.log_thing(&thing.thing_name);
        }
        Ok(())
    }

    /// The certificate and expiry of every unused ownership token.
    pub fn token_expiries(&self) -> Vec<(String, Instant)> {
        self.lock()
            .tokens
            .values()
            .map(|t| (t.certificate_id.clone(), t.expires_at))
            .collect()
    }

    /// Delete what the sweep at each new certificate deletes, as of `now`: every pending
    /// certificate whose token has expired. Returns how many certificates went.
    pub fn expire_tokens(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let before = inner.certificates.len();
        sweep_expired(&mut inner, now);
        before - inner.certificates.len()
    }

    pub fn thing(&self, name: &str) -> Option<ThingRecord> {
        self.lock().things.get(name).cloned()
    }

    pub fn certificate_pem(&self, certificate_id: &str) -> Option<String> {
        self.lock()
            .certificates
            .get(certificate_id)
            .map(|c| c.certificate_pem.clone())
    }

    pub fn certificate(&self, certificate_id: &str) -> Option<CertificateRecord> {
        self.lock().certificates.get(certificate_id).cloned()
    }

    pub fn counts(&self) -> RegistryCounts {
        let inner = self.lock();
        let count = |s| {
            inner
                .certificates
                .values()
                .filter(|c| c.status == s)
                .count()
        };
        RegistryCounts {
            things: inner.things.len(),
            certificates: inner.certificates.len(),
            active_certificates: count(CertificateStatus::Active),
            pending_certificates: count(CertificateStatus::PendingActivation),
            policies: inner.policies.len(),
        }
    }

    /// The registry as written to `registry.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let inner = self.lock();
        let mut things: Vec<_> = inner.things.values().collect();
        things.sort_by(|a, b| a.thing_name.cmp(&b.thing_name));
        let mut certs: Vec<_> = inner.certificates.values().collect();
        certs.sort_by_key(|c| c.created_at);
        let policies: BTreeMap<_, _> = inner
            .policies
            .iter()
            .map(|(name, (_, json))| (name.clone(), json.clone()))
            .collect();
        serde_json::json!({
            "things": things,
            "certificates": certs,
            "policies": policies,
            "thingGroups": inner.thing_groups.keys().collect::<Vec<_>>(),
        })
    }
}

/// A certificate not activated when its token expires is deleted, as AWS does
/// (`spec/aws-fleet-provisioning.md` §1.6).
fn sweep_expired(inner: &mut Inner, now: Instant) {
    let expired: Vec<(String, String)> = inner
        .tokens
        .iter()
        .filter(|(_, t)| now >= t.expires_at)
        .map(|(k, t)| (k.clone(), t.certificate_id.clone()))
        .collect();
    for (token, cert) in expired {
        inner.tokens.remove(&token);
        if inner
            .certificates
            .get(&cert)
            .is_some_and(|c| c.status == CertificateStatus::PendingActivation)
        {
            inner.certificates.remove(&cert);
            inner.log_line(&journal::Line::DropCert { id: &cert });
        }
    }
}

fn check_thing_conflicts(
    existing: Option<&ThingRecord>,
    spec: &ThingSpec,
) -> Result<(), ApplyError> {
    let Some(existing) = existing else {
        return Ok(());
    };
    let conflict = |what: &str| ApplyError {
        status: 409,
        code: "ResourceConflictsException",
        message: format!(
            "Thing {} already exists with a different {what} and OverrideSettings is FAIL.",
            spec.thing_name
        ),
    };
    let o = &spec.overrides;
    if o.attribute_payload == OverrideAction::Fail && existing.attributes != spec.attributes {
        return Err(conflict("AttributePayload"));
    }
    if o.thing_type_name == OverrideAction::Fail && existing.thing_type_name != spec.thing_type_name
    {
        return Err(conflict("ThingTypeName"));
    }
    let groups: Names = spec.thing_groups.iter().collect();
    if o.thing_groups == OverrideAction::Fail && existing.thing_groups != groups {
        return Err(conflict("ThingGroups"));
    }
    Ok(())
}

/// Create or update the thing `spec` describes; a compact registry keeps only its name and
/// certificates.
fn upsert_thing(
    things: &mut HashMap<String, ThingRecord>,
    spec: &ThingSpec,
    certificate_id: &str,
    compact: bool,
) {
    let groups: Names = spec.thing_groups.iter().collect();
    match things.get_mut(&spec.thing_name) {
        None => {
            let mut record = ThingRecord {
                thing_name: spec.thing_name.clone(),
                attributes: spec.attributes.clone(),
                thing_groups: groups,
                thing_type_name: spec.thing_type_name.clone(),
                billing_group: spec.billing_group.clone(),
                certificates: [certificate_id].into_iter().collect(),
                version: 1,
            };
            if compact {
                record.strip();
            }
            things.insert(spec.thing_name.clone(), record);
        }
        Some(thing) if compact => {
            thing.certificates.insert(certificate_id);
        }
        Some(thing) => {
            match spec.overrides.attribute_payload {
                OverrideAction::Replace => thing.attributes = spec.attributes.clone(),
                OverrideAction::Merge => thing.attributes.extend(spec.attributes.clone()),
                OverrideAction::DoNothing | OverrideAction::Fail => {}
            }
            if spec.overrides.thing_type_name == OverrideAction::Replace {
                thing.thing_type_name = spec.thing_type_name.clone();
            }
            match spec.overrides.thing_groups {
                OverrideAction::Replace => thing.thing_groups = groups,
                OverrideAction::Merge => thing.thing_groups = thing.thing_groups.union(&groups),
                OverrideAction::DoNothing | OverrideAction::Fail => {}
            }
            thing.certificates.insert(certificate_id);
        }
    }
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    s.serialize_f64(secs)
}

fn serialize_creator<S: serde::Serializer>(c: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    c.as_deref().serialize(s)
}
