//! Policy versions (CreatePolicyVersion, SetDefaultPolicyVersion, ...) and the journal's record
//! of provisioning templates changed over REST.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::control::Refusal;
use super::journal::{Line, unix_seconds};
use super::{Inner, PolicyVersion, PolicyVersions, Registry};
use crate::iot::policy::PolicyDocument;

/// AWS keeps at most five versions of a managed policy (CreatePolicyVersion's reference).
pub const MAX_POLICY_VERSIONS: usize = 5;

fn policy_not_found(name: &str) -> Refusal {
    Refusal::NotFound(format!("Policy {name} does not exist."))
}

fn version_not_found(name: &str, id: u32) -> Refusal {
    // UNCONFIRMED: AWS's wording.
    Refusal::NotFound(format!("Policy {name} has no version {id}."))
}

impl Inner {
    /// The versions of policy `name` (a policy never versioned has its version 1).
    fn versions_of(&self, name: &str) -> Option<PolicyVersions> {
        if let Some(v) = self.policy_versions.get(name) {
            return Some(v.clone());
        }
        let (_, json) = self.policies.get(name)?;
        Some(PolicyVersions {
            default: 1,
            next: 2,
            versions: vec![PolicyVersion {
                id: 1,
                document: json.clone(),
                created: unix_seconds(SystemTime::now()),
            }],
        })
    }

    /// The versions of policy `name`, which has version `id`.
    fn versions_having(&self, name: &str, id: u32) -> Result<PolicyVersions, Refusal> {
        let versions = self
            .versions_of(name)
            .ok_or_else(|| policy_not_found(name))?;
        if versions.get(id).is_none() {
            return Err(version_not_found(name, id));
        }
        Ok(versions)
    }

    /// Store `versions` of `name`, make its default the document devices get, journal it.
    fn set_versions(&mut self, name: &str, versions: PolicyVersions) {
        if let Some(default) = versions.get(versions.default)
            && let Ok(parsed) = PolicyDocument::parse(&default.document)
        {
            self.policies.insert(
                name.to_string(),
                (Arc::new(parsed), default.document.clone()),
            );
        }
        self.log_line(&Line::PolicyVersions {
            name,
            record: &versions,
        });
        self.policy_versions.insert(name.to_string(), versions);
    }

    /// Replay of a journaled version set.
    pub(super) fn replay_versions(&mut self, name: String, versions: PolicyVersions) {
        if let Some(default) = versions.get(versions.default)
            && let Ok(parsed) = PolicyDocument::parse(&default.document)
        {
            self.policies
                .insert(name.clone(), (Arc::new(parsed), default.document.clone()));
        }
        self.policy_versions.insert(name, versions);
    }

    /// A new policy starts with its version 1 only.
    pub(super) fn forget_versions(&mut self, name: &str) {
        self.policy_versions.remove(name);
    }
}

impl Registry {
    /// CreatePolicyVersion: `(version ID, whether it is the default)`.
    pub fn create_policy_version(
        &self,
        name: &str,
        document: Value,
        set_as_default: bool,
    ) -> Result<(u32, bool), Refusal> {
        let mut inner = self.lock();
        let mut versions = inner
            .versions_of(name)
            .ok_or_else(|| policy_not_found(name))?;
        if versions.versions.len() >= MAX_POLICY_VERSIONS {
            return Err(Refusal::VersionsLimit(format!(
                "The policy {name} already has the maximum number of versions ({MAX_POLICY_VERSIONS})"
            )));
        }
        let id = versions.next;
        versions.next += 1;
        versions.versions.push(PolicyVersion {
            id,
            document,
            created: unix_seconds(SystemTime::now()),
        });
        if set_as_default {
            versions.default = id;
        }
        inner.set_versions(name, versions);
        Ok((id, set_as_default))
    }

    /// Every version of a policy, newest first.
    pub fn policy_versions(&self, name: &str) -> Result<PolicyVersions, Refusal> {
        let mut versions = self
            .lock()
            .versions_of(name)
            .ok_or_else(|| policy_not_found(name))?;
        versions.versions.sort_by_key(|v| std::cmp::Reverse(v.id));
        Ok(versions)
    }

    /// One version of a policy and whether it is the default.
    pub fn policy_version(&self, name: &str, id: u32) -> Result<(PolicyVersion, bool), Refusal> {
        let versions = self.lock().versions_having(name, id)?;
        let version = versions
            .get(id)
            .cloned()
            .ok_or_else(|| version_not_found(name, id))?;
        Ok((version, versions.default == id))
    }

    /// SetDefaultPolicyVersion.
    pub fn set_default_policy_version(&self, name: &str, id: u32) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let mut versions = inner.versions_having(name, id)?;
        versions.default = id;
        inner.set_versions(name, versions);
        Ok(())
    }

    /// DeletePolicyVersion: never the default version (AWS: "You cannot delete the default
    /// version of a policy using this action"; UNCONFIRMED: the code, DeleteConflictException
    /// being the model's only conflict for it).
    pub fn delete_policy_version(&self, name: &str, id: u32) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let mut versions = inner.versions_having(name, id)?;
        if versions.default == id {
            return Err(Refusal::DeleteConflict(format!(
                "Cannot delete the default version {id} of policy {name}; use DeletePolicy"
            )));
        }
        versions.versions.retain(|v| v.id != id);
        inner.set_versions(name, versions);
        Ok(())
    }

    /// Whether policy `name` has versions besides its default (DeletePolicy refuses it then).
    pub(super) fn has_other_versions(inner: &Inner, name: &str) -> bool {
        inner
            .policy_versions
            .get(name)
            .is_some_and(|v| v.versions.len() > 1)
    }

    /// Journal a provisioning template created or updated (`Some`, its stored description) or
    /// deleted (`None`) over REST.
    pub fn journal_template(&self, name: &str, record: Option<&Value>) {
        let mut inner = self.lock();
        match record {
            Some(record) => inner.log_line(&Line::Template { name, record }),
            None => inner.log_line(&Line::DropTemplate { name }),
        }
        inner.templates.insert(name.to_string(), record.cloned());
    }

    /// The templates journaled by earlier mocks on this registry's directory, in name order:
    /// `Some` what to serve, `None` deleted.
    pub fn journaled_templates(&self) -> Vec<(String, Option<Value>)> {
        self.lock()
            .templates
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
