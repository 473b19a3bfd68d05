//! Custom resource types (`dig.net/v1alpha1`). Their doc comments are the descriptions users read
//! with `kubectl explain`; `crdgen` writes them to `crds/`.

pub mod common;
pub mod labels;
pub mod network;
pub mod node;
pub mod route53;
pub mod status;

pub use common::{
    ClaimRetention, ClaimRetentionPolicy, Exposure, ExposureType, Scheduling, SecretKeyRef, Storage,
};
pub use network::{
    BootstrapSpec, DigNetwork, DigNetworkSpec, DnsMode, DnsSpec, Failover, NETWORK_ID_PATTERN,
    NodesSpec, Replication, ServiceType, WRITER_PATTERN, WritePolicy,
};
pub use node::{DigNode, DigNodeSpec, NetworkRef};
pub use route53::{AlarmSpec, HealthCheckProtocol, HealthCheckSpec, Route53Spec};
pub use status::{BootstrapEndpoint, DigNetworkStatus, DigNodeStatus, DnsStatus};

/// API group of the custom resources.
pub const GROUP: &str = "dig.net";
