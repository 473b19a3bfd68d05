//! The AWS objects the operator makes, as plain values: what the planner compares. Conversions to
//! and from the SDK's types live in `client.rs`.

use std::fmt;

/// The address a health check probes: an IP of the bootstrap Service, or a load balancer's
/// hostname.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Ip(String),
    Hostname(String),
}

impl Target {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ip(ip) | Self::Hostname(ip) => ip,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self, Self::Ip(ip) if ip.contains(':'))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Route53 health check's settings (`HealthCheckConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub target: Target,
    /// `HTTP` or `HTTPS`.
    pub protocol: &'static str,
    pub port: i32,
    pub path: String,
    pub request_interval: i32,
    pub failure_threshold: i32,
    /// Sorted; empty is Route53's default set.
    pub regions: Vec<String>,
}

impl HealthCheckConfig {
    /// Route53 cannot change these on an existing health check: a change means a new one.
    pub fn needs_replacement(&self, observed: &HealthCheckConfig) -> bool {
        self.protocol != observed.protocol
            || self.request_interval != observed.request_interval
            || std::mem::discriminant(&self.target) != std::mem::discriminant(&observed.target)
    }
}

/// A health check as Route53 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub id: String,
    pub caller_reference: String,
    /// `HealthCheckVersion`, which an update must name.
    pub version: i64,
    pub config: HealthCheckConfig,
}

/// Record types the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Txt => "TXT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "A" => Some(Self::A),
            "AAAA" => Some(Self::Aaaa),
            "CNAME" => Some(Self::Cname),
            "TXT" => Some(Self::Txt),
            _ => None,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failover role of a record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverRole {
    Primary,
    Secondary,
}

impl FailoverRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Secondary => "SECONDARY",
        }
    }
}

/// Route53 routing policy of a record set. Every record the operator writes has one, so that it
/// carries a set identifier (its ownership key) and can be tied to a health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    Weighted(i64),
    Failover(FailoverRole),
    MultiValue,
    /// No routing policy (records made by others only).
    Simple,
}

impl Routing {
    /// Route53 cannot turn one routing policy into another with an UPSERT.
    pub fn same_kind(self, other: Routing) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// A record set's identity in a hosted zone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub type_: RecordType,
    pub set_identifier: Option<String>,
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.type_, self.name)?;
        if let Some(id) = &self.set_identifier {
            write!(f, " (set identifier {id:?})")?;
        }
        Ok(())
    }
}

/// A record set. TXT values are kept quoted, as Route53 stores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSet {
    pub key: RecordKey,
    pub ttl: i64,
    pub values: Vec<String>,
    pub routing: Routing,
    pub health_check_id: Option<String>,
}

/// A CloudWatch alarm on a health check's `HealthCheckStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub name: String,
    pub description: String,
    pub health_check_id: String,
    pub evaluation_periods: i32,
    /// SNS topics told on ALARM and on OK.
    pub actions: Vec<String>,
}

/// A hosted zone: id (without `/hostedzone/`) and name (without the trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedZone {
    pub id: String,
    pub name: String,
}

/// Quotes a TXT value for Route53 (`"` and `\` escaped).
pub fn quote_txt(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Lowercase, without the trailing dot: how record names are compared.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
