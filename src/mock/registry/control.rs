//! The control plane's reads and changes of the registry: pages, attachments, deletions.
//!
//! Each operation takes the registry's one lock once and checks everything before it changes
//! anything, as `apply` does, so a refused call leaves the registry as it was.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::journal::Line;
use super::{CertificateRecord, CertificateStatus, Names, Registry, ThingRecord};
use crate::iot::policy::PolicyDocument;

/// Why the registry refused a control-plane call; the control plane gives it AWS's error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound(String),
    AlreadyExists(String),
    DeleteConflict(String),
    CertificateState(String),
    InvalidRequest(String),
    /// An `expectedVersion` that is not the current one.
    VersionConflict(String),
    /// A sixth policy version.
    VersionsLimit(String),
}

/// One page of a listing and whether more follows.
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// A certificate as ListCertificates shows it.
#[derive(Debug, Clone)]
pub struct CertificateSummary {
    pub certificate_id: String,
    pub status: CertificateStatus,
    pub created_at: SystemTime,
}

impl CertificateSummary {
    /// The listing order: creation time, then ID (a stable key for markers).
    pub fn order_key(&self) -> String {
        certificate_key(&self.certificate_id, self.created_at)
    }
}

fn certificate_key(id: &str, created_at: SystemTime) -> String {
    let nanos = created_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:024}:{id}")
}

/// Which things ListThings returns.
#[derive(Debug, Default, Clone)]
pub struct ThingFilter {
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    pub use_prefix: bool,
    pub thing_type_name: Option<String>,
}

impl ThingFilter {
    fn matches(&self, thing: &ThingRecord) -> bool {
        if let Some(t) = &self.thing_type_name
            && thing.thing_type_name.as_ref() != Some(t)
        {
            return false;
        }
        match (&self.attribute_name, &self.attribute_value) {
            (Some(name), Some(value)) => thing.attributes.get(name).is_some_and(|v| {
                if self.use_prefix {
                    v.starts_with(value.as_str())
                } else {
                    v == value
                }
            }),
            (Some(name), None) => thing.attributes.contains_key(name),
            _ => true,
        }
    }
}

/// The first `limit` of `items` (sorted by `key`) after `after`, in ascending or descending order.
fn page_of<T, K: Ord>(
    mut items: Vec<(K, T)>,
    after: Option<&K>,
    ascending: bool,
    limit: usize,
) -> Page<T> {
    items.retain(|(k, _)| match after {
        None => true,
        Some(a) if ascending => k > a,
        Some(a) => k < a,
    });
    if ascending {
        items.sort_by(|a, b| a.0.cmp(&b.0));
    } else {
        items.sort_by(|a, b| b.0.cmp(&a.0));
    }
    let more = items.len() > limit;
    items.truncate(limit);
    Page {
        items: items.into_iter().map(|(_, t)| t).collect(),
        more,
    }
}

impl Registry {
    /// Record a certificate issued by the control plane's CreateKeysAndCertificate.
    pub fn add_issued_certificate(
        &self,
        certificate_id: &str,
        pem: &str,
        status: CertificateStatus,
    ) {
        let record = CertificateRecord {
            certificate_id: certificate_id.to_string(),
            certificate_pem: pem.to_string(),
            status,
            created_by: None,
            policies: Names::default(),
            things: Names::default(),
            created_at: SystemTime::now(),
        };
        let mut inner = self.lock();
        inner.log_cert(&record, None);
        inner
            .certificates
            .insert(certificate_id.to_string(), record);
    }

    /// A page of certificates ordered by creation time, after the certificate with order key
    /// `after` (see [`CertificateSummary::order_key`]).
    pub fn certificates_page(
        &self,
        after: Option<&str>,
        ascending: bool,
        limit: usize,
    ) -> Page<CertificateSummary> {
        let items = self
            .lock()
            .certificates
            .values()
            .map(|c| {
                (
                    certificate_key(&c.certificate_id, c.created_at),
                    CertificateSummary {
                        certificate_id: c.certificate_id.clone(),
                        status: c.status,
                        created_at: c.created_at,
                    },
                )
            })
            .collect();
        page_of(items, after.map(str::to_string).as_ref(), ascending, limit)
    }

    /// UpdateCertificate. PENDING_ACTIVATION is AWS's internal state, never a target; a revoked
    /// certificate stays revoked (UNCONFIRMED: AWS's error for reactivating a revoked one).
    pub fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> Result<(), Refusal> {
        if status == CertificateStatus::PendingActivation {
            return Err(Refusal::InvalidRequest(
                "PENDING_ACTIVATION is not a status a certificate can be set to.".into(),
            ));
        }
        let mut inner = self.lock();
        let cert = inner
            .certificates
            .get_mut(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        if cert.status == CertificateStatus::Revoked && status == CertificateStatus::Active {
            return Err(Refusal::CertificateState(
                "Certificate is revoked and cannot be activated.".into(),
            ));
        }
        cert.status = status;
        inner.log_cert_id(certificate_id);
        Ok(())
    }

    /// DeleteCertificate, refused as AWS refuses it: while ACTIVE, while attached to a thing,
    /// while policies are attached (unless `force`). `arn` names the certificate in messages.
    pub fn delete_certificate(
        &self,
        certificate_id: &str,
        force: bool,
        arn: &str,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let cert = inner
            .certificates
            .get(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        if cert.status == CertificateStatus::Active {
            return Err(Refusal::CertificateState(
                "Certificate must be deactivated (not ACTIVE) before deletion.".into(),
            ));
        }
        if !cert.things.is_empty() {
            return Err(Refusal::DeleteConflict(format!(
                "Things must be detached before deletion (arn: {arn})"
            )));
        }
        if !cert.policies.is_empty() && !force {
            return Err(Refusal::DeleteConflict(format!(
                "Certificate policies must be detached before deletion (arn: {arn})"
            )));
        }
        inner.certificates.remove(certificate_id);
        inner.log_line(&Line::DropCert { id: certificate_id });
        // An unused ownership token of the deleted certificate can no longer register a thing.
        inner
            .tokens
            .retain(|_, t| t.certificate_id != certificate_id);
        Ok(())
    }

    /// CreatePolicy.
    pub fn create_policy(
        &self,
        name: &str,
        document: PolicyDocument,
        json: serde_json::Value,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if inner.policies.contains_key(name) {
            return Err(Refusal::AlreadyExists(format!(
                "Policy {name} already exists."
            )));
        }
        inner.log_policy(name, &json);
        inner.forget_versions(name);
        inner
            .policies
            .insert(name.to_string(), (Arc::new(document), json));
        Ok(())
    }

    /// The document of a policy, as stored.
    pub fn policy_json(&self, name: &str) -> Option<serde_json::Value> {
        self.lock().policies.get(name).map(|(_, json)| json.clone())
    }

    /// A page of policy names in name order after `after`.
    pub fn policies_page(
        &self,
        after: Option<&str>,
        ascending: bool,
        limit: usize,
    ) -> Page<String> {
        let items = self
            .lock()
            .policies
            .keys()
            .map(|k| (k.clone(), k.clone()))
            .collect();
        page_of(items, after.map(str::to_string).as_ref(), ascending, limit)
    }

    /// DeletePolicy: refused while any certificate has it attached.
    pub fn delete_policy(&self, name: &str) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if !inner.policies.contains_key(name) {
            return Err(policy_not_found(name));
        }
        if inner
            .certificates
            .values()
            .any(|c| c.policies.contains(name))
        {
            return Err(Refusal::DeleteConflict(format!(
                "The policy cannot be deleted as the policy is attached to one or more principals (name={name})"
            )));
        }
        if Registry::has_other_versions(&inner, name) {
            // AWS's DeletePolicy reference: non-default versions are deleted first. The code and
            // the message's start are a real response quoted in rebuy-de/aws-nuke#374; its end
            // (cut off there) is the mock's.
            return Err(Refusal::DeleteConflict(format!(
                "The policy cannot be deleted as versions other than the default version exist (name={name}); delete them with DeletePolicyVersion first"
            )));
        }
        inner.policies.remove(name);
        inner.forget_versions(name);
        inner.log_line(&Line::DropPolicy { name });
        Ok(())
    }

    /// AttachPolicy to a certificate; attaching twice is not an error.
    pub fn attach_policy(&self, name: &str, certificate_id: &str) -> Result<(), Refusal> {
        self.certificate_policy(name, certificate_id, true)
    }

    /// DetachPolicy from a certificate; detaching what is not attached is not an error.
    pub fn detach_policy(&self, name: &str, certificate_id: &str) -> Result<(), Refusal> {
        self.certificate_policy(name, certificate_id, false)
    }

    fn certificate_policy(
        &self,
        name: &str,
        certificate_id: &str,
        attach: bool,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if !inner.policies.contains_key(name) {
            return Err(policy_not_found(name));
        }
        let cert = inner
            .certificates
            .get_mut(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        if attach {
            cert.policies.insert(name);
        } else {
            cert.policies.remove(name);
        }
        inner.log_cert_id(certificate_id);
        Ok(())
    }

    /// The policies attached to a certificate, in name order.
    pub fn certificate_policies(&self, certificate_id: &str) -> Result<Vec<String>, Refusal> {
        let inner = self.lock();
        let cert = inner
            .certificates
            .get(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        Ok(cert.policies.iter().map(str::to_string).collect())
    }

    /// The things a certificate is attached to, in name order.
    pub fn certificate_things(&self, certificate_id: &str) -> Result<Vec<String>, Refusal> {
        let inner = self.lock();
        let cert = inner
            .certificates
            .get(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        let mut names: Vec<String> = cert.things.iter().map(str::to_string).collect();
        names.sort();
        Ok(names)
    }

    /// The certificates a policy is attached to, in ID order.
    pub fn policy_targets(&self, name: &str) -> Result<Vec<String>, Refusal> {
        let inner = self.lock();
        if !inner.policies.contains_key(name) {
            return Err(policy_not_found(name));
        }
        let mut ids: Vec<String> = inner
            .certificates
            .values()
            .filter(|c| c.policies.contains(name))
            .map(|c| c.certificate_id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// A page of things in name order after `after`.
    pub fn things_page(
        &self,
        filter: &ThingFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Page<ThingRecord> {
        let inner = self.lock();
        let items: Vec<(&str, &ThingRecord)> = inner
            .things
            .iter()
            .filter(|(_, thing)| filter.matches(thing))
            .map(|(name, thing)| (name.as_str(), thing))
            .collect();
        let page = page_of(items, after.as_ref(), true, limit);
        Page {
            items: page.items.into_iter().cloned().collect(),
            more: page.more,
        }
    }

    /// DeleteThing. A thing that does not exist is deleted already (as AWS documents it); one
    /// with principals attached is refused, as is a stale `expected` version.
    pub fn delete_thing(&self, name: &str, expected: Option<u64>) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let Some(thing) = inner.things.get(name) else {
            return Ok(());
        };
        if let Some(v) = expected
            && v != thing.version
        {
            return Err(Refusal::VersionConflict(format!(
                "The version for thing {name} does not match the expected version."
            )));
        }
        if !thing.certificates.is_empty() {
            return Err(Refusal::InvalidRequest(format!(
                "Cannot delete. Thing {name} is still attached to one or more principals"
            )));
        }
        inner.things.remove(name);
        inner.log_line(&Line::DropThing { name });
        Ok(())
    }

    /// AttachThingPrincipal (a certificate).
    pub fn attach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<(), Refusal> {
        self.thing_principal(thing, certificate_id, true)
    }

    /// DetachThingPrincipal (a certificate); detaching what is not attached is not an error.
    pub fn detach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<(), Refusal> {
        self.thing_principal(thing, certificate_id, false)
    }

    fn thing_principal(
        &self,
        thing: &str,
        certificate_id: &str,
        attach: bool,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if !inner.things.contains_key(thing) {
            return Err(thing_not_found(thing));
        }
        let cert = inner
            .certificates
            .get_mut(certificate_id)
            .ok_or_else(|| certificate_not_found(certificate_id))?;
        if attach {
            cert.things.insert(thing);
        } else {
            cert.things.remove(thing);
        }
        if let Some(t) = inner.things.get_mut(thing) {
            if attach {
                t.certificates.insert(certificate_id);
            } else {
                t.certificates.remove(certificate_id);
            }
        }
        inner.log_cert_id(certificate_id);
        inner.log_thing(thing);
        Ok(())
    }
}

pub fn thing_not_found(name: &str) -> Refusal {
    Refusal::NotFound(format!("Thing {name} cannot be found."))
}

fn certificate_not_found(id: &str) -> Refusal {
    Refusal::NotFound(format!("The certificate {id} does not exist."))
}

fn policy_not_found(name: &str) -> Refusal {
    Refusal::NotFound(format!("Policy {name} does not exist."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::registry::TokenError;
    use std::time::Duration;

    #[test]
    fn a_deleted_pending_certificate_leaves_no_token_to_register_with() {
        let r = Registry::default();
        r.add_pending_certificate("c1", "pem", "claim", "tok", Duration::from_secs(60));
        assert_eq!(r.check_token("tok"), Ok("c1".to_string()));
        r.delete_certificate("c1", false, "arn").unwrap();
        assert_eq!(r.check_token("tok"), Err(TokenError::Unknown));
        assert!(matches!(
            r.delete_certificate("c1", false, "arn"),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn deletes_are_refused_in_aws_order_and_force_skips_policies_only() {
        let r = Registry::default();
        let doc = serde_json::json!({"Version": "2012-10-17", "Statement": []});
        r.create_policy("p", PolicyDocument::parse(&doc).unwrap(), doc.clone())
            .unwrap();
        assert!(matches!(
            r.create_policy("p", PolicyDocument::parse(&doc).unwrap(), doc),
            Err(Refusal::AlreadyExists(_))
        ));
        r.add_issued_certificate("c", "pem", CertificateStatus::Active);
        r.attach_policy("p", "c").unwrap();
        assert!(matches!(
            r.delete_certificate("c", true, "arn"),
            Err(Refusal::CertificateState(_))
        ));
        r.update_certificate_status("c", CertificateStatus::Inactive)
            .unwrap();
        assert!(matches!(
            r.delete_certificate("c", false, "arn"),
            Err(Refusal::DeleteConflict(_))
        ));
        assert!(matches!(
            r.delete_policy("p"),
            Err(Refusal::DeleteConflict(_))
        ));
        assert_eq!(r.policy_targets("p").unwrap(), ["c"]);
        r.delete_certificate("c", true, "arn").unwrap();
        r.delete_policy("p").unwrap();
        assert!(r.policy_json("p").is_none());
    }

    #[test]
    fn pages_continue_after_their_key_in_either_order() {
        let items = || (1..=5).map(|i| (i, i * 10)).collect::<Vec<_>>();
        let first = page_of(items(), None, true, 2);
        assert_eq!((first.items, first.more), (vec![10, 20], true));
        let last = page_of(items(), Some(&4), true, 2);
        assert_eq!((last.items, last.more), (vec![50], false));
        let down = page_of(items(), Some(&4), false, 2);
        assert_eq!((down.items, down.more), (vec![30, 20], true));
    }
}
