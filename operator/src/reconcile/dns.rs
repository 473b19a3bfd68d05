//! external-dns: annotations on the bootstrap Service, or a `DNSEndpoint` object.

use std::collections::BTreeMap;

use kube::{api::DynamicObject, core::ObjectMeta};
use serde_json::json;

use super::apis::dns_endpoint_resource;
use crate::crd::DnsSpec;

/// Both prefixes, because external-dns 0.22 moved from the first to the second.
pub const DEFAULT_PREFIXES: [&str; 2] = [
    "external-dns.alpha.kubernetes.io/",
    "external-dns.kubernetes.io/",
];

fn prefixes(dns: &DnsSpec) -> Vec<&str> {
    match &dns.annotation_prefix {
        Some(prefix) => vec![prefix.as_str()],
        None => DEFAULT_PREFIXES.to_vec(),
    }
}

/// The settings that apply to every record, as `(annotation suffix, value)`.
fn record_settings(dns: &DnsSpec) -> Vec<(&'static str, String)> {
    let mut settings = Vec::new();
    if let Some(ttl) = dns.ttl {
        settings.push(("ttl", ttl.to_string()));
    }
    if let Some(id) = &dns.set_identifier {
        settings.push(("set-identifier", id.clone()));
    }
    if let Some(weight) = dns.weight {
        settings.push(("aws-weight", weight.to_string()));
    }
    if let Some(failover) = dns.failover {
        settings.push(("aws-failover", failover.as_str().to_string()));
    }
    if let Some(id) = &dns.health_check_id {
        settings.push(("aws-health-check-id", id.clone()));
    }
    settings
}

/// external-dns annotations that publish `hostnames` for a Service.
pub fn annotations(dns: &DnsSpec, hostnames: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if hostnames.is_empty() {
        return out;
    }
    let mut values = vec![("hostname", hostnames.join(","))];
    values.extend(record_settings(dns));
    for prefix in prefixes(dns) {
        for (suffix, value) in &values {
            out.insert(format!("{prefix}{suffix}"), value.clone());
        }
    }
    out
}

/// An address the bootstrap Service answers on, read from its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsTarget {
    Ip(String),
    Hostname(String),
}

/// A `DNSEndpoint` with an A/AAAA or CNAME record per hostname, and a TXT `_dnsaddr.<hostname>`
/// record (`dnsaddr=/dns4/<hostname>/tcp/<port>`) so libp2p tools can find the registry from DNS.
pub fn dns_endpoint(
    dns: &DnsSpec,
    meta: ObjectMeta,
    targets: &[DnsTarget],
    port: i32,
) -> DynamicObject {
    let provider_specific: Vec<_> = [
        dns.weight
            .map(|w| json!({"name": "aws/weight", "value": w.to_string()})),
        dns.failover
            .map(|f| json!({"name": "aws/failover", "value": f.as_str()})),
        dns.health_check_id
            .as_ref()
            .map(|id| json!({"name": "aws/health-check-id", "value": id})),
    ]
    .into_iter()
    .flatten()
    .collect();
    let record = |name: String, record_type: &str, targets: Vec<String>| {
        let mut endpoint = json!({"dnsName": name, "recordType": record_type, "targets": targets});
        if let Some(ttl) = dns.ttl {
            endpoint["recordTTL"] = json!(ttl);
        }
        if let Some(id) = &dns.set_identifier {
            endpoint["setIdentifier"] = json!(id);
        }
        if !provider_specific.is_empty() {
            endpoint["providerSpecific"] = json!(provider_specific);
        }
        endpoint
    };
    let ipv4: Vec<String> = ip_targets(targets, false);
    let ipv6: Vec<String> = ip_targets(targets, true);
    let hostnames: Vec<String> = targets
        .iter()
        .filter_map(|t| match t {
            DnsTarget::Hostname(h) => Some(h.clone()),
            DnsTarget::Ip(_) => None,
        })
        .collect();
    let mut endpoints = Vec::new();
    for name in &dns.hostnames {
        if !ipv4.is_empty() {
            endpoints.push(record(name.clone(), "A", ipv4.clone()));
        }
        if !ipv6.is_empty() {
            endpoints.push(record(name.clone(), "AAAA", ipv6.clone()));
        }
        // A CNAME cannot share its name with other records: only when there is no address.
        if ipv4.is_empty() && ipv6.is_empty() && !hostnames.is_empty() {
            endpoints.push(record(name.clone(), "CNAME", hostnames[..1].to_vec()));
        }
        endpoints.push(record(
            format!("_dnsaddr.{name}"),
            "TXT",
            vec![format!("dnsaddr=/dns4/{name}/tcp/{port}")],
        ));
    }
    let mut object = DynamicObject::new(
        meta.name.as_deref().unwrap_or_default(),
        &dns_endpoint_resource(),
    );
    object.metadata = meta;
    object.data = json!({"spec": {"endpoints": endpoints}});
    object
}

fn ip_targets(targets: &[DnsTarget], v6: bool) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| match t {
            DnsTarget::Ip(ip) if ip.contains(':') == v6 => Some(ip.clone()),
            _ => None,
        })
        .collect()
}
