//! Custom resource types (`dig.net/v1alpha1`). Their doc comments are the descriptions users read
//! with `kubectl explain`; `crdgen` writes them to `crds/`.

pub mod common;
pub mod labels;
pub mod network;
pub mod node;
pub mod status;

pub use common::{Exposure, ExposureType, Scheduling, SecretKeyRef, Storage};
pub use network::{
    BootstrapSpec, DigNetwork, DigNetworkSpec, DnsMode, DnsSpec, Failover, NETWORK_ID_PATTERN,
    NodesSpec, ServiceType,
};
pub use node::{DigNode, DigNodeSpec, NetworkRef};
pub use status::{BootstrapEndpoint, DigNetworkStatus, DigNodeStatus};

/// API group of the custom resources.
pub const GROUP: &str = "dig.net";
