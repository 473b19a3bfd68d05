//! What a DigNetwork's `spec.dns` asks of AWS: health checks, records and alarms. Pure.

use super::model::{
    Alarm, FailoverRole, HealthCheckConfig, RecordKey, RecordType, Routing, Target, quote_txt,
};
use crate::crd::{DnsSpec, Failover, HealthCheckSpec};

/// TTL of records whose spec names none (external-dns's default too).
pub const DEFAULT_TTL: i64 = 300;
/// Name prefix of the TXT record that records who owns a hostname's records.
pub const OWNER_PREFIX: &str = "_dig-owner.";
/// Name prefix of the libp2p bootstrap TXT record.
pub const DNSADDR_PREFIX: &str = "_dnsaddr.";
/// Longest TXT string Route53 accepts.
pub const MAX_TXT_STRING: usize = 255;

/// The DigNetwork the AWS objects belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `--route53-owner-id`: tells this operator's records from another cluster's.
    pub owner_id: String,
}

impl Owner {
    /// The value of the `_dig-owner` TXT record (quoted).
    pub fn txt_value(&self) -> String {
        quote_txt(&format!(
            "heritage=dig-operator,dig-operator/owner={},dig-operator/resource=dignetwork/{}/{}",
            self.owner_id, self.namespace, self.name
        ))
    }

    /// Every health check made for this DigNetwork has a caller reference starting with this.
    pub fn caller_reference_prefix(&self) -> String {
        format!("dig/{}/", self.uid)
    }

    /// Every alarm made for this DigNetwork has a name starting with this.
    pub fn alarm_prefix(&self) -> String {
        format!("dig-{}-", self.uid)
    }

    /// Set identifier when `spec.dns.setIdentifier` is unset.
    pub fn default_set_identifier(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the reconciler knows that the spec does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsFacts {
    /// Addresses of the bootstrap Service (load balancer ingress, else cluster IP).
    pub targets: Vec<Target>,
    /// `dnsaddr=` values of the exposed nodes (unquoted).
    pub dnsaddr: Vec<String>,
}

/// A health check wanted for one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredHealthCheck {
    pub config: HealthCheckConfig,
}

/// A record set wanted, tied to the health check of `health_check` (an address) if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRecord {
    pub key: RecordKey,
    pub ttl: i64,
    pub values: Vec<String>,
    pub routing: Routing,
    pub health_check: Option<Target>,
}

/// The records of one hostname, written in one Route53 change batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredHostname {
    pub hostname: String,
    /// The ownership key of the records: every record set of this hostname carries it, or
    /// `<set identifier>/<address>` for one-address records.
    pub set_identifier: String,
    pub owner: DesiredRecord,
    pub records: Vec<DesiredRecord>,
}

/// Everything `spec.dns` asks of AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredDns {
    pub health_checks: Vec<DesiredHealthCheck>,
    pub hostnames: Vec<DesiredHostname>,
    pub alarm: Option<AlarmSettings>,
    /// The address whose health check id goes into the external-dns annotations.
    pub external_dns_health_check: Option<Target>,
    /// Hosted zone id from the spec, if any.
    pub hosted_zone_id: Option<String>,
}

/// Settings shared by every alarm of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmSettings {
    pub evaluation_periods: i32,
    pub actions: Vec<String>,
}

impl DesiredDns {
    /// True when the network makes nothing in AWS.
    pub fn is_empty(&self) -> bool {
        self.health_checks.is_empty() && self.hostnames.is_empty()
    }

    /// The alarm of the health check `health_check_id` of `target`.
    pub fn alarm_for(
        &self,
        owner: &Owner,
        target: &Target,
        health_check_id: &str,
        path: &str,
    ) -> Option<Alarm> {
        let settings = self.alarm.as_ref()?;
        Some(Alarm {
            name: alarm_name(owner, target),
            description: format!(
                "DigNetwork {}/{}: Route53 health check {health_check_id} of the bootstrap registry at {target} ({path}) is failing",
                owner.namespace, owner.name
            ),
            health_check_id: health_check_id.to_string(),
            evaluation_periods: settings.evaluation_periods,
            actions: settings.actions.clone(),
        })
    }
}

/// Alarm names are keyed by address, so a replaced health check keeps its alarm.
pub fn alarm_name(owner: &Owner, target: &Target) -> String {
    let hash = blake3::hash(target.as_str().as_bytes()).to_hex();
    format!("{}{}", owner.alarm_prefix(), &hash[..12])
}

/// Whether `spec.dns` makes anything in AWS (and so needs the finalizer).
pub fn uses_aws(dns: Option<&DnsSpec>) -> bool {
    dns.is_some_and(|d| d.route53.is_some() || d.health_check.is_some())
}

fn routing(dns: &DnsSpec) -> Option<Routing> {
    match (dns.weight, dns.failover) {
        (Some(weight), _) => Some(Routing::Weighted(weight)),
        (None, Some(Failover::Primary)) => Some(Routing::Failover(FailoverRole::Primary)),
        (None, Some(Failover::Secondary)) => Some(Routing::Failover(FailoverRole::Secondary)),
        (None, None) => None,
    }
}

fn health_check_config(spec: &HealthCheckSpec, target: &Target, port: i32) -> HealthCheckConfig {
    let mut regions = spec.regions.clone();
    regions.sort();
    regions.dedup();
    HealthCheckConfig {
        target: target.clone(),
        protocol: spec.protocol.as_str(),
        port: spec.port.unwrap_or(port),
        path: spec.path.clone(),
        request_interval: spec.request_interval,
        failure_threshold: spec.failure_threshold,
        regions,
    }
}

/// The desired AWS objects of a DigNetwork. `bootstrap_port` is the registry's port.
pub fn desired(
    dns: Option<&DnsSpec>,
    owner: &Owner,
    facts: &DnsFacts,
    bootstrap_port: i32,
) -> DesiredDns {
    let Some(dns) = dns.filter(|d| uses_aws(Some(d))) else {
        return DesiredDns::default();
    };
    let check_spec = dns.health_check.clone().unwrap_or_default();
    let mut targets = facts.targets.clone();
    targets.sort();
    targets.dedup();
    let route53_hostnames: &[String] = dns
        .route53
        .as_ref()
        .map(|r| r.hostnames.as_slice())
        .unwrap_or_default();
    // Every address when the operator writes records itself; for external-dns alone, the first
    // one: its annotation carries one health check id for all the records it makes.
    let checked: Vec<Target> = if !route53_hostnames.is_empty() {
        targets.clone()
    } else {
        targets.iter().take(1).cloned().collect()
    };
    let health_checks = checked
        .iter()
        .map(|target| DesiredHealthCheck {
            config: health_check_config(&check_spec, target, bootstrap_port),
        })
        .collect();
    let external_dns_health_check = (dns.health_check.is_some() && !dns.hostnames.is_empty())
        .then(|| targets.first().cloned())
        .flatten();
    let set_identifier = dns
        .set_identifier
        .clone()
        .unwrap_or_else(|| owner.default_set_identifier());
    let hostnames = route53_hostnames
        .iter()
        .map(|hostname| {
            hostname_records(
                hostname,
                &set_identifier,
                routing(dns),
                dns.ttl.unwrap_or(DEFAULT_TTL),
                &targets,
                &facts.dnsaddr,
                owner,
            )
        })
        .collect();
    let alarm = check_spec.alarm.enabled.then(|| AlarmSettings {
        evaluation_periods: check_spec.alarm.evaluation_periods,
        actions: check_spec.alarm.sns_topic_arn.iter().cloned().collect(),
    });
    DesiredDns {
        health_checks,
        hostnames,
        alarm,
        external_dns_health_check,
        hosted_zone_id: dns.route53.as_ref().and_then(|r| r.hosted_zone_id.clone()),
    }
}

/// The records of one hostname.
///
/// | routing | IP addresses | a load balancer hostname |
/// |---|---|---|
/// | weight W | one record per address, `S/<ip>`, weight W, its health check | CNAME `S`, weight W |
/// | failover R | one record of all addresses, `S`, role R, the first address's health check | CNAME `S`, role R |
/// | none | one multivalue record per address, `S/<ip>`, its health check | CNAME `S`, weight 1 |
///
/// The `_dnsaddr` and `_dig-owner` TXT records carry `S` with the routing of the hostname
/// (multivalue when none), so two clusters can each publish their own under one name.
fn hostname_records(
    hostname: &str,
    set_identifier: &str,
    routing: Option<Routing>,
    ttl: i64,
    targets: &[Target],
    dnsaddr: &[String],
    owner: &Owner,
) -> DesiredHostname {
    let key = |name: String, type_: RecordType, set_identifier: &str| RecordKey {
        name,
        type_,
        set_identifier: Some(set_identifier.to_string()),
    };
    let txt_routing = routing.unwrap_or(Routing::MultiValue);
    let mut records = Vec::new();
    let ips: Vec<&Target> = targets
        .iter()
        .filter(|t| matches!(t, Target::Ip(_)))
        .collect();
    let first_target = targets.first().cloned();
    if !ips.is_empty() {
        for type_ in [RecordType::A, RecordType::Aaaa] {
            let of_type: Vec<&Target> = ips
                .iter()
                .copied()
                .filter(|t| t.is_ipv6() == (type_ == RecordType::Aaaa))
                .collect();
            if of_type.is_empty() {
                continue;
            }
            match routing {
                Some(Routing::Failover(role)) => records.push(DesiredRecord {
                    key: key(hostname.to_string(), type_, set_identifier),
                    ttl,
                    values: of_type.iter().map(|t| t.to_string()).collect(),
                    routing: Routing::Failover(role),
                    health_check: of_type.first().map(|t| (*t).clone()),
                }),
                other => {
                    for target in of_type {
                        records.push(DesiredRecord {
                            key: key(
                                hostname.to_string(),
                                type_,
                                &format!("{set_identifier}/{target}"),
                            ),
                            ttl,
                            values: vec![target.to_string()],
                            routing: other.unwrap_or(Routing::MultiValue),
                            health_check: Some(target.clone()),
                        });
                    }
                }
            }
        }
    } else if let Some(target @ Target::Hostname(alias)) = &first_target {
        records.push(DesiredRecord {
            key: key(hostname.to_string(), RecordType::Cname, set_identifier),
            ttl,
            values: vec![alias.clone()],
            // A CNAME cannot be multivalue; a lone weighted record answers like a simple one
            // and still follows its health check.
            routing: routing.unwrap_or(Routing::Weighted(1)),
            health_check: Some(target.clone()),
        });
    }
    let mut dnsaddr_values: Vec<String> = dnsaddr
        .iter()
        .map(|v| quote_txt(v))
        .filter(|v| v.len() <= MAX_TXT_STRING + 2)
        .collect();
    dnsaddr_values.sort();
    dnsaddr_values.dedup();
    if !dnsaddr_values.is_empty() {
        records.push(DesiredRecord {
            key: key(
                format!("{DNSADDR_PREFIX}{hostname}"),
                RecordType::Txt,
                set_identifier,
            ),
            ttl,
            values: dnsaddr_values,
            routing: txt_routing,
            // The region's registry stands for the region: a failed-over hostname also fails
            // its node list over.
            health_check: match txt_routing {
                Routing::MultiValue => None,
                _ => first_target.clone(),
            },
        });
    }
    DesiredHostname {
        hostname: hostname.to_string(),
        set_identifier: set_identifier.to_string(),
        owner: DesiredRecord {
            key: key(
                format!("{OWNER_PREFIX}{hostname}"),
                RecordType::Txt,
                set_identifier,
            ),
            ttl,
            values: vec![owner.txt_value()],
            routing: txt_routing,
            health_check: None,
        },
        records,
    }
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
