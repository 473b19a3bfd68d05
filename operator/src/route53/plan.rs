//! The planner: desired AWS objects against what AWS reports, into the changes to make. Pure: the
//! sync step reads AWS, asks these functions what to do, and does it.
//!
//! Ownership, as external-dns's TXT registry does it: a hostname's records are the operator's only
//! while the TXT record `_dig-owner.<hostname>` with their set identifier names this operator and
//! DigNetwork. A record the operator did not make is never changed or deleted; a wanted name that
//! is taken is a conflict, reported and left alone.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    desired::{DNSADDR_PREFIX, DesiredHealthCheck, DesiredHostname, DesiredRecord, OWNER_PREFIX},
    model::{Alarm, HealthCheck, HealthCheckConfig, RecordSet, RecordType, Target},
};

/// What to do with the health checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCheckPlan {
    /// Health checks to make (their ids are known once made).
    pub create: Vec<HealthCheckConfig>,
    /// `(id, version, new settings)` of health checks to update in place.
    pub update: Vec<(String, i64, HealthCheckConfig)>,
    /// Health checks kept as they are, by address.
    pub keep: BTreeMap<Target, String>,
    /// Ids to delete once no record points at them any more.
    pub delete: Vec<String>,
}

/// Compares the wanted health checks (one per address) with the operator's own ones.
pub fn plan_health_checks(
    desired: &[DesiredHealthCheck],
    observed: &[HealthCheck],
) -> HealthCheckPlan {
    let mut plan = HealthCheckPlan::default();
    let mut observed: Vec<&HealthCheck> = observed.iter().collect();
    observed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for wanted in desired {
        let found = observed
            .iter()
            .find(|o| o.config.target == wanted.config.target && !used.contains(o.id.as_str()));
        match found {
            Some(existing) if existing.config.needs_replacement(&wanted.config) => {
                plan.create.push(wanted.config.clone());
            }
            Some(existing) => {
                used.insert(existing.id.as_str());
                if existing.config != wanted.config {
                    plan.update.push((
                        existing.id.clone(),
                        existing.version,
                        wanted.config.clone(),
                    ));
                }
                plan.keep
                    .insert(wanted.config.target.clone(), existing.id.clone());
            }
            None => plan.create.push(wanted.config.clone()),
        }
    }
    // Health checks of addresses no longer exposed, replaced ones and duplicates.
    plan.delete = observed
        .iter()
        .filter(|o| !used.contains(o.id.as_str()))
        .map(|o| o.id.clone())
        .collect();
    plan
}

/// One change of a Route53 change batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Create(RecordSet),
    Upsert(RecordSet),
    Delete(RecordSet),
}

impl Change {
    pub fn record(&self) -> &RecordSet {
        match self {
            Self::Create(r) | Self::Upsert(r) | Self::Delete(r) => r,
        }
    }
}

/// What to do with one hostname's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostnamePlan {
    /// One change batch, deletions first; empty when everything is as wanted.
    pub changes: Vec<Change>,
    /// Why the hostname was left alone, if it was.
    pub conflict: Option<String>,
    /// The operator's record sets once the changes are made (for the status).
    pub owned: Vec<RecordSet>,
}

fn in_family(set_identifier: Option<&str>, family: &str) -> bool {
    set_identifier.is_some_and(|id| {
        id == family
            || id
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The names and types of a hostname's records, other than its owner record.
fn is_hostname_record(record: &RecordSet, hostname: &str) -> bool {
    let dnsaddr = format!("{DNSADDR_PREFIX}{hostname}");
    match record.key.type_ {
        RecordType::A | RecordType::Aaaa | RecordType::Cname => record.key.name == hostname,
        RecordType::Txt => record.key.name == dnsaddr,
    }
}

fn same_record(a: &RecordSet, b: &RecordSet) -> bool {
    let sorted = |r: &RecordSet| {
        let mut values = r.values.clone();
        values.sort();
        values
    };
    a.key == b.key
        && a.ttl == b.ttl
        && a.routing == b.routing
        && a.health_check_id == b.health_check_id
        && sorted(a) == sorted(b)
}

/// A desired record with its health check's id (none when that health check could not be made).
pub fn resolve(record: &DesiredRecord, health_checks: &BTreeMap<Target, String>) -> RecordSet {
    RecordSet {
        key: record.key.clone(),
        ttl: record.ttl,
        values: record.values.clone(),
        routing: record.routing,
        health_check_id: record
            .health_check
            .as_ref()
            .and_then(|target| health_checks.get(target).cloned()),
    }
}

/// Plans one hostname. `desired` is `None` for a hostname no longer wanted (or the DigNetwork
/// being deleted): everything the operator owns there goes. `observed` holds the record sets at
/// `hostname`, `_dnsaddr.<hostname>` and `_dig-owner.<hostname>`; `owner_value` is the operator's
/// quoted owner TXT value.
pub fn plan_hostname(
    hostname: &str,
    desired: Option<&DesiredHostname>,
    observed: &[RecordSet],
    owner_value: &str,
    health_checks: &BTreeMap<Target, String>,
) -> HostnamePlan {
    let owner_name = format!("{OWNER_PREFIX}{hostname}");
    let owner_records: Vec<&RecordSet> = observed
        .iter()
        .filter(|r| r.key.name == owner_name && r.key.type_ == RecordType::Txt)
        .collect();
    let is_ours = |r: &RecordSet| r.values.len() == 1 && r.values[0] == owner_value;
    let mut families: Vec<String> = owner_records
        .iter()
        .filter(|r| is_ours(r))
        .filter_map(|r| r.key.set_identifier.clone())
        .collect();
    let mut conflict = None;
    let mut claim = false;
    if let Some(wanted) = desired {
        let family = wanted.set_identifier.as_str();
        let foreign_owner = owner_records
            .iter()
            .find(|r| r.key.set_identifier.as_deref() == Some(family) && !is_ours(r));
        if let Some(foreign) = foreign_owner {
            conflict = Some(format!(
                "{} says {}: {hostname} (set identifier {family:?}) belongs to another operator or DigNetwork",
                foreign.key,
                foreign.values.join(" ")
            ));
        } else if !families.iter().any(|f| f == family) {
            let taken: Vec<String> = observed
                .iter()
                .filter(|r| {
                    is_hostname_record(r, hostname)
                        && in_family(r.key.set_identifier.as_deref(), family)
                })
                .map(|r| r.key.to_string())
                .collect();
            if taken.is_empty() {
                claim = true;
                families.push(family.to_string());
            } else {
                conflict = Some(format!(
                    "{} already exist(s) without a {owner_name} record naming this DigNetwork: records the operator did not make are left alone",
                    taken.join(", ")
                ));
            }
        }
    }
    let owned_now: Vec<&RecordSet> = observed
        .iter()
        .filter(|r| {
            is_hostname_record(r, hostname)
                && families
                    .iter()
                    .any(|f| in_family(r.key.set_identifier.as_deref(), f))
        })
        .collect();
    let wanted: Vec<RecordSet> = match (desired, &conflict) {
        (Some(d), None) => d
            .records
            .iter()
            .map(|r| resolve(r, health_checks))
            .collect(),
        _ => Vec::new(),
    };
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for record in &wanted {
        match owned_now.iter().find(|o| o.key == record.key) {
            Some(existing) if same_record(existing, record) => {}
            Some(existing) if existing.routing.same_kind(record.routing) => {
                writes.push(Change::Upsert(record.clone()))
            }
            Some(existing) => {
                deletes.push(Change::Delete((*existing).clone()));
                writes.push(Change::Create(record.clone()));
            }
            None => writes.push(Change::Create(record.clone())),
        }
    }
    for existing in &owned_now {
        if !wanted.iter().any(|w| w.key == existing.key) {
            deletes.push(Change::Delete((*existing).clone()));
        }
    }
    // Owner records: the wanted one is made with the records it covers, in the same batch;
    // ours of other set identifiers (the spec's changed) go once their records are gone.
    let wanted_owner = match (desired, &conflict) {
        (Some(d), None) => Some(resolve(&d.owner, health_checks)),
        _ => None,
    };
    for existing in owner_records.iter().filter(|r| is_ours(r)) {
        match &wanted_owner {
            Some(owner) if owner.key == existing.key => {
                if !same_record(existing, owner) {
                    writes.push(Change::Upsert(owner.clone()));
                }
            }
            _ if conflict.is_some()
                && desired.is_some_and(|d| {
                    existing.key.set_identifier.as_deref() == Some(d.set_identifier.as_str())
                }) => {}
            _ => deletes.push(Change::Delete((*existing).clone())),
        }
    }
    if claim && let Some(owner) = &wanted_owner {
        writes.insert(0, Change::Create(owner.clone()));
    }
    let mut owned: Vec<RecordSet> = wanted;
    if conflict.is_none() {
        owned.extend(wanted_owner);
    } else {
        // Left alone: what is ours stays ours (for the status), nothing else is claimed.
        owned = owned_now.into_iter().cloned().collect();
    }
    let mut changes = deletes;
    changes.extend(writes);
    HostnamePlan {
        changes: if conflict.is_some() {
            Vec::new()
        } else {
            changes
        },
        conflict,
        owned,
    }
}

/// What to do with the alarms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmPlan {
    /// Alarms to create or overwrite (PutMetricAlarm is an upsert).
    pub put: Vec<Alarm>,
    /// Names of the operator's alarms no longer wanted.
    pub delete: Vec<String>,
}

/// Compares the wanted alarms with the operator's own ones (found by their name prefix).
pub fn plan_alarms(desired: &[Alarm], observed: &[Alarm]) -> AlarmPlan {
    let normalized = |a: &Alarm| {
        let mut a = a.clone();
        a.actions.sort();
        a
    };
    AlarmPlan {
        put: desired
            .iter()
            .filter(|wanted| !observed.iter().any(|o| normalized(o) == normalized(wanted)))
            .cloned()
            .collect(),
        delete: observed
            .iter()
            .filter(|o| !desired.iter().any(|w| w.name == o.name))
            .map(|o| o.name.clone())
            .collect(),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
