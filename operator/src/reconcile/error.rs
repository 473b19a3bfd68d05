//! The operator's error type. Each variant has a metric label and an event reason. Kubernetes
//! client errors are boxed: they are large and errors are the rare path.

use super::validate::InvalidSpec;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec (or what it refers to) is wrong: reported as `Degraded`, retried only on a change.
    #[error("invalid spec of {object}: {source}")]
    InvalidSpec { object: String, source: InvalidSpec },

    #[error("reading {what} for {object} failed: {source}")]
    Read {
        what: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("server-side apply of {kind} {name} for {object} failed: {source}")]
    Apply {
        kind: String,
        name: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("deleting {kind} {name} no longer wanted by {object} failed: {source}")]
    Prune {
        kind: String,
        name: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("updating the status of {object} failed: {source}")]
    Status {
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("growing PersistentVolumeClaim {claim} to {size} for {object} failed: {source}")]
    Resize {
        claim: String,
        size: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error(
        "deleting StatefulSet {name} (pods orphaned) to re-create it with grown claims for {object} failed: {source}"
    )]
    Recreate {
        name: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error(
        "StatefulSet {name} of {object}, deleted to be re-created with grown claims, was still there after {waited:?}"
    )]
    RecreateTimeout {
        name: String,
        object: String,
        waited: std::time::Duration,
    },

    #[error("patching the drain annotation of pod {pod} for {object} failed: {source}")]
    Drain {
        pod: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("the {kind} {name} returned by the API server does not decode: {source}")]
    Decode {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// For `map_err`: a failed read of `what` while reconciling `object`.
    pub fn reading(what: String, object: &str) -> impl FnOnce(kube::Error) -> Error + use<> {
        let object = object.to_string();
        move |source| Error::Read {
            what,
            object,
            source: Box::new(source),
        }
    }

    /// Label of the `errors` metric.
    pub fn metric_label(&self) -> String {
        match self {
            Self::InvalidSpec { source, .. } => {
                format!("invalid_spec_{}", source.reason.to_lowercase())
            }
            Self::Read { .. } => "read".to_string(),
            Self::Apply { .. } => "apply".to_string(),
            Self::Prune { .. } => "prune".to_string(),
            Self::Status { .. } => "status".to_string(),
            Self::Decode { .. } => "decode".to_string(),
            Self::Resize { .. } => "resize".to_string(),
            Self::Drain { .. } => "drain".to_string(),
            Self::Recreate { .. } | Self::RecreateTimeout { .. } => "recreate".to_string(),
        }
    }

    /// Reason of the Warning event users see.
    pub fn event_reason(&self) -> &str {
        match self {
            Self::InvalidSpec { source, .. } => source.reason,
            Self::Read { .. } => "ReadFailed",
            Self::Apply { .. } => "ApplyFailed",
            Self::Prune { .. } => "PruneFailed",
            Self::Status { .. } => "StatusUpdateFailed",
            Self::Decode { .. } => "DecodeFailed",
            Self::Resize { .. } => "ResizeFailed",
            Self::Drain { .. } => "DrainFailed",
            Self::Recreate { .. } | Self::RecreateTimeout { .. } => "RecreateFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
