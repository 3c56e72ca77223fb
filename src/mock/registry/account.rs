//! Things created and updated over the control plane, thing groups and thing types.
//!
//! As in [`super::control`], each operation takes the registry's one lock once and checks
//! everything before it changes anything. Group membership lives on the thing
//! ([`ThingRecord::thing_groups`]); a group's listing walks the things.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use super::control::{Page, Refusal, thing_not_found};
use super::journal::{Line, unix_seconds};
use super::{
    ApplyError, GroupRecord, Inner, Names, Registry, RegistryMode, ThingRecord, TypeRecord,
};
use crate::iot::template::{OverrideAction, ThingSpec};

/// An `attributePayload`: the attributes and whether they merge (an empty value then removes
/// its attribute).
pub type AttributePayload = (BTreeMap<String, String>, bool);

/// What UpdateThing changes.
#[derive(Debug, Default, Clone)]
pub struct ThingUpdate {
    pub thing_type_name: Option<String>,
    pub remove_thing_type: bool,
    pub attributes: Option<AttributePayload>,
    pub expected_version: Option<u64>,
}

fn group_not_found(name: &str) -> Refusal {
    Refusal::NotFound(format!("Thing group {name} does not exist."))
}

fn type_not_found(name: &str) -> Refusal {
    Refusal::NotFound(format!("Thing type {name} does not exist."))
}

impl Inner {
    /// A thing type a thing may take: it exists and is not deprecated.
    fn usable_type(&self, name: &str) -> Result<(), Refusal> {
        match self.thing_types.get(name) {
            None => Err(type_not_found(name)),
            // UNCONFIRMED: AWS's code and wording for a deprecated type; its docs say only that
            // no new things can be associated with one.
            Some(t) if t.deprecated.is_some() => Err(Refusal::InvalidRequest(format!(
                "Thing type {name} is deprecated: no new things can be associated with it."
            ))),
            Some(_) => Ok(()),
        }
    }

    /// RegisterThing: the groups and type a rendered thing would get must exist (the type not
    /// deprecated); what OverrideSettings leave untouched on an existing thing is not checked.
    /// UNCONFIRMED: AWS's code for this (400 `InvalidParameters`, as for a missing policy).
    pub(super) fn check_groups_and_type(&self, spec: &ThingSpec) -> Result<(), ApplyError> {
        let existing = self.things.contains_key(&spec.thing_name);
        let applies = |o: OverrideAction| {
            !existing || matches!(o, OverrideAction::Replace | OverrideAction::Merge)
        };
        let refuse = |message: String| ApplyError {
            status: 400,
            code: "InvalidParameters",
            message,
        };
        if applies(spec.overrides.thing_groups) {
            for group in &spec.thing_groups {
                if !self.thing_groups.contains_key(group) {
                    return Err(refuse(format!("Thing group {group} does not exist.")));
                }
            }
        }
        if let Some(t) = &spec.thing_type_name
            && applies(spec.overrides.thing_type_name)
        {
            self.usable_type(t)
                .map_err(|r| refuse(r.message().to_string()))?;
        }
        Ok(())
    }

    fn log_group(&mut self, name: &str) {
        if let Some(record) = self.thing_groups.get(name).cloned() {
            self.log_line(&Line::Group {
                name,
                record: &record,
            });
        }
    }

    fn log_type(&mut self, name: &str) {
        if let Some(record) = self.thing_types.get(name).cloned() {
            self.log_line(&Line::ThingType {
                name,
                record: &record,
            });
        }
    }

    /// `name`'s ancestors, root first.
    pub(super) fn ancestors(&self, name: &str) -> Vec<String> {
        let mut chain = Vec::new();
        let mut at = self.thing_groups.get(name).and_then(|g| g.parent.clone());
        while let Some(parent) = at {
            if chain.contains(&parent) {
                break;
            }
            at = self
                .thing_groups
                .get(&parent)
                .and_then(|g| g.parent.clone());
            chain.push(parent);
        }
        chain.reverse();
        chain
    }
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotFound(m)
            | Refusal::AlreadyExists(m)
            | Refusal::DeleteConflict(m)
            | Refusal::CertificateState(m)
            | Refusal::InvalidRequest(m)
            | Refusal::VersionConflict(m)
            | Refusal::VersionsLimit(m) => m,
        }
    }
}

/// The first `limit` names after `after`, of names already in order.
fn page_names(
    names: impl Iterator<Item = String>,
    after: Option<&str>,
    limit: usize,
) -> Page<String> {
    let mut rest = names.filter(|n| after.is_none_or(|a| n.as_str() > a));
    let items: Vec<String> = rest.by_ref().take(limit).collect();
    let more = rest.next().is_some();
    Page { items, more }
}

impl Registry {
    /// CreateThing. Idempotent for the same type, attributes and billing group, as AWS documents
    /// it; the same name with another configuration is ResourceAlreadyExistsException.
    pub fn create_thing(
        &self,
        name: &str,
        thing_type: Option<&str>,
        attributes: BTreeMap<String, String>,
        billing_group: Option<&str>,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if let Some(existing) = inner.things.get(name) {
            let compact = inner.mode == RegistryMode::Compact;
            let same = compact
                || (existing.thing_type_name.as_deref() == thing_type
                    && existing.attributes == attributes
                    && existing.billing_group.as_deref() == billing_group);
            return if same {
                Ok(())
            } else {
                Err(Refusal::AlreadyExists(format!(
                    "Thing {name} already exists in account with different attributes"
                )))
            };
        }
        if let Some(t) = thing_type {
            inner.usable_type(t)?;
        }
        if let Some(b) = billing_group {
            // The mock serves no billing groups, so none exists.
            return Err(Refusal::NotFound(format!(
                "Billing group {b} does not exist."
            )));
        }
        let mut record = ThingRecord {
            thing_name: name.to_string(),
            attributes,
            thing_groups: Names::default(),
            thing_type_name: thing_type.map(str::to_string),
            billing_group: None,
            certificates: Names::default(),
            version: 1,
        };
        if inner.mode == RegistryMode::Compact {
            record.strip();
        }
        inner.things.insert(name.to_string(), record);
        inner.log_thing(name);
        Ok(())
    }

    /// UpdateThing.
    pub fn update_thing(&self, name: &str, update: &ThingUpdate) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let thing = inner
            .things
            .get(name)
            .ok_or_else(|| thing_not_found(name))?;
        if update.remove_thing_type && update.thing_type_name.is_some() {
            return Err(Refusal::InvalidRequest(
                "thingTypeName and removeThingType cannot both be given.".into(),
            ));
        }
        if let Some(v) = update.expected_version
            && v != thing.version
        {
            return Err(Refusal::VersionConflict(format!(
                "The version for thing {name} does not match the expected version."
            )));
        }
        if let Some(t) = &update.thing_type_name {
            inner.usable_type(t)?;
        }
        let compact = inner.mode == RegistryMode::Compact;
        let Some(thing) = inner.things.get_mut(name) else {
            return Err(thing_not_found(name));
        };
        if !compact {
            if let Some(t) = &update.thing_type_name {
                thing.thing_type_name = Some(t.clone());
            }
            if update.remove_thing_type {
                thing.thing_type_name = None;
            }
            match &update.attributes {
                Some((attributes, true)) => {
                    for (k, v) in attributes {
                        if v.is_empty() {
                            thing.attributes.remove(k);
                        } else {
                            thing.attributes.insert(k.clone(), v.clone());
                        }
                    }
                }
                Some((attributes, false)) => thing.attributes = attributes.clone(),
                None => {}
            }
        }
        thing.version += 1;
        inner.log_thing(name);
        Ok(())
    }

    /// CreateThingGroup. Idempotent for the same parent and properties (AWS answers the same
    /// group again); other properties are ResourceAlreadyExistsException.
    pub fn create_thing_group(
        &self,
        name: &str,
        parent: Option<&str>,
        properties: Value,
    ) -> Result<GroupRecord, Refusal> {
        let mut inner = self.lock();
        if let Some(existing) = inner.thing_groups.get(name) {
            return if existing.parent.as_deref() == parent && existing.properties == properties {
                Ok(existing.clone())
            } else {
                Err(Refusal::AlreadyExists(format!(
                    "Thing Group {name} already exists in current account with different properties"
                )))
            };
        }
        if let Some(p) = parent
            && !inner.thing_groups.contains_key(p)
        {
            // UNCONFIRMED: CreateThingGroup's model lists no ResourceNotFoundException.
            return Err(Refusal::InvalidRequest(format!(
                "Parent thing group {p} does not exist."
            )));
        }
        let record = GroupRecord::new(parent.map(str::to_string), properties);
        inner.thing_groups.insert(name.to_string(), record.clone());
        inner.log_group(name);
        Ok(record)
    }

    /// A thing group and its ancestors (root first).
    pub fn thing_group(&self, name: &str) -> Result<(GroupRecord, Vec<String>), Refusal> {
        let inner = self.lock();
        let record = inner
            .thing_groups
            .get(name)
            .cloned()
            .ok_or_else(|| group_not_found(name))?;
        Ok((record, inner.ancestors(name)))
    }

    /// ListThingGroups: by name, optionally the children of `parent` (every descendant with
    /// `recursive`) and names starting with `prefix`.
    pub fn thing_groups_page(
        &self,
        parent: Option<&str>,
        recursive: bool,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, Refusal> {
        let inner = self.lock();
        if let Some(p) = parent
            && !inner.thing_groups.contains_key(p)
        {
            return Err(group_not_found(p));
        }
        let names = inner
            .thing_groups
            .iter()
            .filter(|(name, g)| match parent {
                None => true,
                Some(p) if recursive => inner.ancestors(name).iter().any(|a| a == p),
                Some(p) => g.parent.as_deref() == Some(p),
            })
            .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
            .map(|(name, _)| name.clone());
        Ok(page_names(names, after, limit))
    }

    /// DeleteThingGroup. A group that does not exist is deleted already (the model lists no
    /// ResourceNotFoundException); its things leave it.
    pub fn delete_thing_group(&self, name: &str, expected: Option<u64>) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let Some(group) = inner.thing_groups.get(name) else {
            return Ok(());
        };
        if let Some(v) = expected
            && v != group.version
        {
            return Err(Refusal::VersionConflict(format!(
                "The version for thing group {name} does not match the expected version."
            )));
        }
        if inner
            .thing_groups
            .values()
            .any(|g| g.parent.as_deref() == Some(name))
        {
            // UNCONFIRMED: AWS's wording.
            return Err(Refusal::InvalidRequest(format!(
                "Cannot delete thing group {name} when there are still child groups attached to it"
            )));
        }
        inner.thing_groups.remove(name);
        inner.log_line(&Line::DropGroup { name });
        let members: Vec<String> = inner
            .things
            .values()
            .filter(|t| t.thing_groups.contains(name))
            .map(|t| t.thing_name.clone())
            .collect();
        for thing in members {
            if let Some(t) = inner.things.get_mut(&thing) {
                t.thing_groups.remove(name);
            }
            inner.log_thing(&thing);
        }
        Ok(())
    }

    /// AddThingToThingGroup (`add`) or RemoveThingFromThingGroup.
    pub fn thing_group_member(&self, group: &str, thing: &str, add: bool) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if !inner.thing_groups.contains_key(group) {
            return Err(group_not_found(group));
        }
        let compact = inner.mode == RegistryMode::Compact;
        let record = inner
            .things
            .get_mut(thing)
            .ok_or_else(|| thing_not_found(thing))?;
        if compact {
            // A compact registry keeps no group membership.
            return Ok(());
        }
        let changed = if add {
            record.thing_groups.insert(group)
        } else {
            record.thing_groups.remove(group)
        };
        if changed {
            inner.log_thing(thing);
        }
        Ok(())
    }

    /// ListThingsInThingGroup (`recursive`: things of the group's descendants too).
    pub fn things_in_group(
        &self,
        group: &str,
        recursive: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, Refusal> {
        let inner = self.lock();
        if !inner.thing_groups.contains_key(group) {
            return Err(group_not_found(group));
        }
        let mut groups = vec![group.to_string()];
        if recursive {
            groups.extend(
                inner
                    .thing_groups
                    .keys()
                    .filter(|g| inner.ancestors(g).iter().any(|a| a == group))
                    .cloned(),
            );
        }
        let mut names: Vec<String> = inner
            .things
            .values()
            .filter(|t| groups.iter().any(|g| t.thing_groups.contains(g)))
            .map(|t| t.thing_name.clone())
            .collect();
        names.sort();
        Ok(page_names(names.into_iter(), after, limit))
    }

    /// ListThingGroupsForThing.
    pub fn groups_of_thing(
        &self,
        thing: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, Refusal> {
        let inner = self.lock();
        let record = inner
            .things
            .get(thing)
            .ok_or_else(|| thing_not_found(thing))?;
        let names: Vec<String> = record.thing_groups.iter().map(str::to_string).collect();
        Ok(page_names(names.into_iter(), after, limit))
    }

    /// CreateThingType. UNCONFIRMED: whether AWS answers an identical second create with
    /// success; the mock refuses every existing name, as the model's
    /// ResourceAlreadyExistsException says it can.
    pub fn create_thing_type(&self, name: &str, properties: Value) -> Result<TypeRecord, Refusal> {
        let mut inner = self.lock();
        if inner.thing_types.contains_key(name) {
            return Err(Refusal::AlreadyExists(format!(
                "Thing type {name} already exists."
            )));
        }
        let record = TypeRecord {
            properties,
            ..TypeRecord::default()
        };
        inner.thing_types.insert(name.to_string(), record.clone());
        inner.log_type(name);
        Ok(record)
    }

    pub fn thing_type(&self, name: &str) -> Result<TypeRecord, Refusal> {
        self.lock()
            .thing_types
            .get(name)
            .cloned()
            .ok_or_else(|| type_not_found(name))
    }

    /// ListThingTypes (`only`: the one type of that name).
    pub fn thing_types_page(
        &self,
        only: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Page<(String, TypeRecord)> {
        let inner = self.lock();
        let mut rest = inner
            .thing_types
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a));
        let items: Vec<(String, TypeRecord)> = rest
            .by_ref()
            .take(limit)
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let more = rest.next().is_some();
        Page { items, more }
    }

    /// DeprecateThingType (`undo`: undeprecate).
    pub fn deprecate_thing_type(&self, name: &str, undo: bool) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let record = inner
            .thing_types
            .get_mut(name)
            .ok_or_else(|| type_not_found(name))?;
        record.deprecated = if undo {
            None
        } else {
            Some(unix_seconds(SystemTime::now()))
        };
        inner.log_type(name);
        Ok(())
    }

    /// DeleteThingType: only a deprecated type no thing has (AWS's documented order:
    /// deprecate, move the things off it, delete). AWS also waits five minutes after the
    /// deprecation; the mock does not. UNCONFIRMED: AWS's wording of both refusals.
    pub fn delete_thing_type(&self, name: &str) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let record = inner
            .thing_types
            .get(name)
            .ok_or_else(|| type_not_found(name))?;
        if record.deprecated.is_none() {
            return Err(Refusal::InvalidRequest(format!(
                "Can not delete thing type {name}: it is not deprecated (DeprecateThingType first)."
            )));
        }
        if inner
            .things
            .values()
            .any(|t| t.thing_type_name.as_deref() == Some(name))
        {
            return Err(Refusal::InvalidRequest(format!(
                "Can not delete thing type {name}: things are still associated with it."
            )));
        }
        inner.thing_types.remove(name);
        inner.log_line(&Line::DropThingType { name });
        Ok(())
    }
}
