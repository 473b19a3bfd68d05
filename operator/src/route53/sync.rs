//! One sync of a DigNetwork's AWS objects: read what AWS holds, ask the planner, make the
//! changes, in the order that keeps every record valid: health checks first (records point at
//! them), then the records of each hostname (one atomic change batch each), then the alarms, and
//! last the health checks no record uses any more.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    client::{AwsClient, AwsError, AwsErrorKind},
    desired::{DNSADDR_PREFIX, DesiredDns, OWNER_PREFIX, Owner},
    model::{HealthCheckConfig, HostedZone, Target},
    plan::{plan_alarms, plan_health_checks, plan_hostname},
    zones::ZoneCache,
};
use crate::crd::status::{DnsStatus, HealthCheckRef, RecordRef};

/// A problem that left one hostname (not the whole sync) undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostnameProblem {
    /// Condition/event reason: `RecordConflict`, or the AWS error's.
    pub reason: &'static str,
    pub message: String,
}

/// The result of a sync that reached its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub status: DnsStatus,
    pub problems: Vec<HostnameProblem>,
    /// Health check ids by address.
    pub health_checks: BTreeMap<Target, String>,
    /// AWS calls that changed something (for the event).
    pub changes: Vec<String>,
}

impl SyncReport {
    /// Records an error of one hostname, unless it would fail every further call too (then it
    /// ends the sync).
    fn hostname_failed(&mut self, error: AwsError) -> Result<(), AwsError> {
        if is_fatal(&error) {
            return Err(error);
        }
        self.problems.push(HostnameProblem {
            reason: error.kind.reason(),
            message: error.to_string(),
        });
        Ok(())
    }

    /// Every problem's message, for the condition and the event.
    pub fn problems_message(&self) -> String {
        self.problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn caller_reference(owner: &Owner, config: &HealthCheckConfig) -> String {
    let hash = blake3::hash(config.target.as_str().as_bytes()).to_hex();
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    // Unique per creation (Route53 refuses a reference used before, even by a deleted check),
    // at most 64 characters: `dig/` + uid (36) + `/` + 8 + `/` + at most 13 digits.
    format!("{}{}/{millis}", owner.caller_reference_prefix(), &hash[..8])
}

/// Syncs one DigNetwork. `previous_hostnames` are hostnames an earlier sync wrote (from the
/// status), so that records of a hostname removed from the spec are deleted too. An AWS error
/// that would fail every further call (throttling, credentials, permissions) ends the sync;
/// a problem of one hostname (its zone, a conflict, a refused batch) is reported and the rest
/// goes on.
pub async fn sync(
    client: &AwsClient,
    zones: &ZoneCache,
    owner: &Owner,
    desired: &DesiredDns,
    previous_hostnames: &[String],
) -> Result<SyncReport, AwsError> {
    let mut report = SyncReport::default();
    let observed = client
        .health_checks(&owner.caller_reference_prefix())
        .await?;
    let plan = plan_health_checks(&desired.health_checks, &observed);
    let mut ids = plan.keep.clone();
    for (id, version, config) in &plan.update {
        client.update_health_check(id, *version, config).await?;
        report
            .changes
            .push(format!("updated health check {id} of {}", config.target));
    }
    for config in &plan.create {
        let name = format!(
            "dig {}/{} bootstrap {}",
            owner.namespace, owner.name, config.target
        );
        let id = client
            .create_health_check(config, &caller_reference(owner, config), &name)
            .await?;
        report
            .changes
            .push(format!("created health check {id} of {}", config.target));
        ids.insert(config.target.clone(), id);
    }

    let mut hostnames: BTreeSet<&str> = desired
        .hostnames
        .iter()
        .map(|h| h.hostname.as_str())
        .collect();
    hostnames.extend(previous_hostnames.iter().map(String::as_str));
    let owner_value = owner.txt_value();
    for hostname in hostnames {
        let wanted = desired.hostnames.iter().find(|h| h.hostname == hostname);
        let zone = match zones
            .zone_for(client, hostname, desired.hosted_zone_id.as_deref())
            .await
        {
            Ok(zone) => zone,
            Err(error) => {
                report.hostname_failed(error)?;
                continue;
            }
        };
        let mut observed = Vec::new();
        for name in [
            hostname.to_string(),
            format!("{DNSADDR_PREFIX}{hostname}"),
            format!("{OWNER_PREFIX}{hostname}"),
        ] {
            observed.extend(client.record_sets_named(&zone, &name).await?);
        }
        let plan = plan_hostname(hostname, wanted, &observed, &owner_value, &ids);
        if let Some(conflict) = &plan.conflict {
            report.problems.push(HostnameProblem {
                reason: "RecordConflict",
                message: conflict.clone(),
            });
        }
        if !plan.changes.is_empty() {
            let comment = format!(
                "dig-operator: DigNetwork {}/{}",
                owner.namespace, owner.name
            );
            match client
                .change_record_sets(&zone, &plan.changes, &comment)
                .await
            {
                Ok(()) => report.changes.push(format!(
                    "{} record change(s) for {hostname} in hosted zone {}",
                    plan.changes.len(),
                    zone.id
                )),
                Err(error) => {
                    report.hostname_failed(error)?;
                    continue;
                }
            }
        }
        report
            .status
            .records
            .extend(plan.owned.iter().map(|r| record_ref(&zone, r)));
    }

    let path = desired
        .health_checks
        .first()
        .map(|h| h.config.path.clone())
        .unwrap_or_default();
    let wanted_alarms: Vec<_> = desired
        .health_checks
        .iter()
        .filter_map(|h| {
            let id = ids.get(&h.config.target)?;
            desired.alarm_for(owner, &h.config.target, id, &path)
        })
        .collect();
    let observed_alarms = client.alarms(&owner.alarm_prefix()).await?;
    let alarms = plan_alarms(&wanted_alarms, &observed_alarms);
    for alarm in &alarms.put {
        client.put_alarm(alarm).await?;
        report.changes.push(format!("put alarm {}", alarm.name));
    }
    if !alarms.delete.is_empty() {
        client.delete_alarms(&alarms.delete).await?;
        report
            .changes
            .push(format!("deleted alarm(s) {}", alarms.delete.join(", ")));
    }
    for id in &plan.delete {
        client.delete_health_check(id).await?;
        report.changes.push(format!("deleted health check {id}"));
    }

    ids.retain(|target, _| {
        desired
            .health_checks
            .iter()
            .any(|h| &h.config.target == target)
    });
    report.status.health_checks = ids
        .iter()
        .map(|(target, id)| HealthCheckRef {
            address: target.to_string(),
            id: id.clone(),
        })
        .collect();
    report.status.alarms = wanted_alarms.iter().map(|a| a.name.clone()).collect();
    report.health_checks = ids;
    Ok(report)
}

/// Errors after which further calls would fail the same way.
fn is_fatal(error: &AwsError) -> bool {
    matches!(
        error.kind,
        AwsErrorKind::Throttled
            | AwsErrorKind::InvalidCredentials
            | AwsErrorKind::AccessDenied
            | AwsErrorKind::Unreachable
    )
}

fn record_ref(zone: &HostedZone, record: &super::model::RecordSet) -> RecordRef {
    RecordRef {
        hosted_zone_id: zone.id.clone(),
        name: record.key.name.clone(),
        type_: record.key.type_.to_string(),
        set_identifier: record.key.set_identifier.clone(),
    }
}
