//! What the registry answers a record or a removal: where it came from, what became of it, and
//! why it was refused.

use crate::record::RecordError;

/// Where a record came from: its own node, or relayed by a sibling bootstrap server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Direct,
    Federated,
}

/// Why the registry refused a verified record or removal.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{field}: {timestamp_ms} is {age_ms} ms old, more than the allowed {limit_ms} ms")]
    StaleTimestamp {
        field: &'static str,
        timestamp_ms: u64,
        age_ms: u64,
        limit_ms: u64,
    },
    #[error(
        "{field}: {timestamp_ms} is {ahead_ms} ms ahead of the server clock, more than the allowed {limit_ms} ms"
    )]
    FutureTimestamp {
        field: &'static str,
        timestamp_ms: u64,
        ahead_ms: u64,
        limit_ms: u64,
    },
    #[error(
        "{field}: {timestamp_ms} is not newer than the {held} held for this peer ({held_ms}); replayed or reordered"
    )]
    NotNewer {
        field: &'static str,
        timestamp_ms: u64,
        held: &'static str,
        held_ms: u64,
    },
    #[error("{field}: network {network_id:?} is not served here (served: {served})")]
    WrongNetwork {
        field: &'static str,
        network_id: String,
        served: String,
    },
    #[error("registry is full: {max_peers} live peers (--max-peers); retry after records expire")]
    Full { max_peers: usize },
    #[error(
        "registry memory is full: this record needs {needed_bytes} bytes and {held_bytes} of the \
         {max_bytes} allowed (--max-state-bytes) are held; retry after records expire"
    )]
    MemoryFull {
        needed_bytes: usize,
        held_bytes: usize,
        max_bytes: usize,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl RegistryError {
    /// The JSON path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            Self::StaleTimestamp { field, .. }
            | Self::FutureTimestamp { field, .. }
            | Self::NotNewer { field, .. }
            | Self::WrongNetwork { field, .. } => field,
            Self::Full { .. } => "record.peerId",
            Self::MemoryFull { .. } => "record",
            Self::Record(e) => e.field(),
        }
    }

    /// Machine-readable code, the `error` member of the API error and a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::NotNewer { .. } => "replayed_record",
            Self::WrongNetwork { .. } => "wrong_network",
            Self::Full { .. } => "registry_full",
            Self::MemoryFull { .. } => "registry_memory_full",
            Self::Record(e) => e.code(),
        }
    }

    /// A refusal for lack of room rather than of the input itself: retrying later may succeed.
    pub fn is_capacity(&self) -> bool {
        matches!(self, Self::Full { .. } | Self::MemoryFull { .. })
    }
}

/// Result of an accepted record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Created { expires_at_ms: u64 },
    Refreshed { expires_at_ms: u64 },
}

impl Upserted {
    pub fn expires_at_ms(&self) -> u64 {
        match self {
            Self::Created { expires_at_ms } | Self::Refreshed { expires_at_ms } => *expires_at_ms,
        }
    }
}

/// Result of an accepted removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotFound,
}
