//! What `GET /federation` answers: how the pulls of each `--peer-bootstrap` sibling went, updated
//! after every round. The pulls themselves are in `federation.rs`, which writes here.

use std::collections::BTreeMap;
use std::time::Duration;

use dig_core::clock::now_ms;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The label of a `--peer-bootstrap` URL in metrics, logs and `/ready`.
pub fn sibling_label(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Relayed records and removals, by what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullSummary {
    pub accepted: u64,
    pub unchanged: u64,
    pub stale: u64,
    /// Refused because this registry's memory budget (`--max-state-bytes`) or `--max-peers` is full.
    pub full: u64,
    pub rejected: u64,
}

/// Where the feed of one replica behind a sibling's name was last read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The replica's address (the sibling's name resolves to one per replica).
    pub address: String,
    /// Epoch of its feed at the last successful pull (changes when it restarts).
    pub epoch: Option<String>,
    /// Position reached in its feed.
    pub cursor: u64,
}

/// How the pulls of one sibling went: an entry of `GET /federation`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiblingStatus {
    /// The sibling's base URL (`--peer-bootstrap`).
    pub url: String,
    /// The replicas behind the URL that this server pulls (itself excluded).
    pub replicas: Vec<ReplicaStatus>,
    /// Pulls of a replica that succeeded, and that failed, since start.
    pub pulls_ok: u64,
    pub pulls_failed: u64,
    /// Unix ms of the last round, successful or not.
    pub last_pull_ms: Option<u64>,
    /// Unix ms of the last round in which every replica was pulled.
    pub last_success_ms: Option<u64>,
    /// Why the last round failed, while it is the latest outcome.
    pub last_error: Option<String>,
    /// Relayed records and removals since start, by what became of them.
    pub accepted: u64,
    pub unchanged: u64,
    pub stale: u64,
    /// Refused because this registry was full (`--max-state-bytes` or `--max-peers`).
    pub full: u64,
    pub rejected: u64,
}

/// Answer of `GET /federation`: the siblings this server pulls from, by URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederationResponse {
    /// Seconds between two rounds of pulls of a sibling.
    pub interval_seconds: u64,
    pub siblings: Vec<SiblingStatus>,
}

/// What one round over the replicas behind a sibling's name did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundSummary {
    pub merged: PullSummary,
    /// Replicas pulled without error (this server not counted).
    pub pulled: usize,
    /// Replicas whose pull failed.
    pub failed: usize,
    /// Why the last failed pull of the round failed.
    pub last_error: Option<String>,
}

/// The status of every sibling, updated after each round.
#[derive(Default)]
pub struct FederationStatus {
    siblings: Mutex<BTreeMap<String, SiblingStatus>>,
    interval_seconds: Mutex<u64>,
}

impl FederationStatus {
    pub fn add(&self, url: &str, interval: Duration) {
        *self.interval_seconds.lock() = interval.as_secs();
        self.siblings.lock().insert(
            url.to_owned(),
            SiblingStatus {
                url: url.to_owned(),
                ..SiblingStatus::default()
            },
        );
    }

    /// Records a round; `Err` when the sibling's name did not resolve.
    pub fn record_round(
        &self,
        url: &str,
        replicas: Vec<ReplicaStatus>,
        outcome: Result<&RoundSummary, String>,
    ) {
        let now = now_ms();
        let mut siblings = self.siblings.lock();
        let status = siblings.entry(url.to_owned()).or_default();
        status.url = url.to_owned();
        status.last_pull_ms = Some(now);
        status.replicas = replicas;
        match outcome {
            Ok(round) => {
                status.pulls_ok += round.pulled as u64;
                status.pulls_failed += round.failed as u64;
                status.accepted += round.merged.accepted;
                status.unchanged += round.merged.unchanged;
                status.stale += round.merged.stale;
                status.full += round.merged.full;
                status.rejected += round.merged.rejected;
                if round.failed == 0 {
                    status.last_success_ms = Some(now);
                }
                status.last_error = round.last_error.clone();
            }
            Err(error) => {
                status.pulls_failed += 1;
                status.last_error = Some(error);
            }
        }
    }

    /// The answer of `GET /federation`.
    pub fn response(&self) -> FederationResponse {
        FederationResponse {
            interval_seconds: *self.interval_seconds.lock(),
            siblings: self.siblings.lock().values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_with_a_failed_replica_is_counted_and_not_a_success() {
        let status = FederationStatus::default();
        status.add("http://registry:3000", Duration::from_secs(15));
        let merged = PullSummary {
            accepted: 3,
            ..PullSummary::default()
        };
        status.record_round(
            "http://registry:3000",
            vec![ReplicaStatus {
                address: "10.0.0.2:3000".into(),
                epoch: Some("e1".into()),
                cursor: 7,
            }],
            Ok(&RoundSummary {
                merged,
                pulled: 1,
                failed: 1,
                last_error: Some("10.0.0.3:3000: refused".into()),
            }),
        );
        let response = status.response();
        let sibling = &response.siblings[0];
        assert_eq!((sibling.pulls_ok, sibling.pulls_failed), (1, 1));
        assert_eq!(sibling.accepted, 3);
        assert_eq!(sibling.last_success_ms, None);
        assert_eq!(sibling.replicas[0].cursor, 7);
        assert!(sibling.last_error.as_deref().unwrap().contains("refused"));

        status.record_round(
            "http://registry:3000",
            vec![],
            Ok(&RoundSummary {
                pulled: 2,
                ..RoundSummary::default()
            }),
        );
        let sibling = &status.response().siblings[0];
        assert!(sibling.last_success_ms.is_some());
        assert_eq!(sibling.last_error, None);
        assert_eq!(response.interval_seconds, 15);
    }
}
