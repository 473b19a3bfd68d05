//! Federation: pulls signed records and removals from sibling bootstrap servers and merges those
//! that verify, by the same rules as `POST /register` (newer timestamp wins). A relay is never
//! trusted: a forged or tampered record fails verification and is dropped and counted.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::state::AppState;
use crate::api::{MAX_RECORDS_LIMIT, RecordsQuery, RecordsResponse};
use crate::client::{ClientError, RegistryClient};
use crate::metrics::{FederationResult, Metrics, PullResult};
use crate::registry::{RegistryError, Source};
use dig_core::clock::now_ms;

/// Most pages pulled from one sibling per round, so one busy sibling cannot monopolise a round.
const MAX_PAGES_PER_ROUND: usize = 100;

/// One sibling server and where its feed was last read.
pub struct Sibling {
    client: RegistryClient,
    epoch: Option<String>,
    cursor: u64,
}

/// What one pull round merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullSummary {
    pub accepted: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub rejected: u64,
}

impl Sibling {
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let mut builder = RegistryClient::builder(url);
        if let Some(pem) = ca_pem {
            builder = builder.root_certificate_pem(pem);
        }
        Ok(Self {
            client: builder.build()?,
            epoch: None,
            cursor: 0,
        })
    }

    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    /// Pulls every change since the last round and merges it into `state`.
    pub async fn pull(&mut self, state: &AppState) -> Result<PullSummary, ClientError> {
        let mut summary = PullSummary::default();
        for _ in 0..MAX_PAGES_PER_ROUND {
            let page = self
                .client
                .records(&RecordsQuery {
                    after: Some(self.cursor),
                    limit: Some(MAX_RECORDS_LIMIT),
                })
                .await?;
            if self.epoch.as_deref() != Some(page.epoch.as_str()) {
                // The sibling restarted (or is new): its cursors mean nothing any more.
                let restarted = self.epoch.is_some();
                self.epoch = Some(page.epoch.clone());
                self.cursor = 0;
                if restarted {
                    continue;
                }
            }
            let more = page.more;
            self.cursor = page.next_cursor;
            merge_page(state, self.url(), page, &mut summary);
            if !more {
                break;
            }
        }
        Ok(summary)
    }
}

fn classify(result: &Result<(), RegistryError>) -> FederationResult {
    match result {
        Ok(()) => FederationResult::Accepted,
        Err(RegistryError::NotNewer { .. }) => FederationResult::Unchanged,
        Err(RegistryError::StaleTimestamp { .. }) => FederationResult::Stale,
        Err(_) => FederationResult::Rejected,
    }
}

fn merge_page(state: &AppState, url: &str, page: RecordsResponse, summary: &mut PullSummary) {
    let metrics = state.metrics();
    let mut count = |result: Result<(), RegistryError>, peer_id: &str| {
        let label = classify(&result);
        Metrics::count_result(&metrics.federation_records, label);
        match label {
            FederationResult::Accepted => summary.accepted += 1,
            FederationResult::Unchanged => summary.unchanged += 1,
            FederationResult::Stale => summary.stale += 1,
            FederationResult::Rejected => {
                summary.rejected += 1;
                if let Err(error) = result {
                    tracing::warn!(sibling = url, peer_id, "dropped relayed record: {error}");
                }
            }
        }
    };
    for record in &page.records {
        let result = state.accept_record(record, Source::Federated).map(|_| ());
        count(result, &record.record.peer_id);
    }
    for removal in &page.removals {
        let result = state.accept_removal(removal, Source::Federated).map(|_| ());
        count(result, &removal.request.peer_id);
    }
}

/// How the pulls of one sibling went: an entry of `GET /federation`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiblingStatus {
    /// The sibling's base URL (`--peer-bootstrap`).
    pub url: String,
    /// Epoch of its feed at the last successful pull (changes when it restarts).
    pub epoch: Option<String>,
    /// Position reached in its feed.
    pub cursor: u64,
    pub pulls_ok: u64,
    pub pulls_failed: u64,
    /// Unix ms of the last pull, successful or not.
    pub last_pull_ms: Option<u64>,
    /// Unix ms of the last successful pull.
    pub last_success_ms: Option<u64>,
    /// Why the last pull failed, while it is the latest outcome.
    pub last_error: Option<String>,
    /// Relayed records and removals since start, by what became of them.
    pub accepted: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub rejected: u64,
}

/// Answer of `GET /federation`: the siblings this server pulls from, by URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederationResponse {
    /// Seconds between two pulls of a sibling.
    pub interval_seconds: u64,
    pub siblings: Vec<SiblingStatus>,
}

/// The status of every sibling, updated after each pull.
#[derive(Default)]
pub struct FederationStatus {
    siblings: Mutex<BTreeMap<String, SiblingStatus>>,
    interval_seconds: Mutex<u64>,
}

impl FederationStatus {
    fn add(&self, url: &str, interval: Duration) {
        *self.interval_seconds.lock() = interval.as_secs();
        self.siblings.lock().insert(
            url.to_owned(),
            SiblingStatus {
                url: url.to_owned(),
                ..SiblingStatus::default()
            },
        );
    }

    fn record(&self, sibling: &Sibling, outcome: &Result<PullSummary, ClientError>) {
        let now = now_ms();
        let mut siblings = self.siblings.lock();
        let status = siblings.entry(sibling.url().to_owned()).or_default();
        status.url = sibling.url().to_owned();
        status.last_pull_ms = Some(now);
        status.epoch = sibling.epoch.clone();
        status.cursor = sibling.cursor;
        match outcome {
            Ok(summary) => {
                status.pulls_ok += 1;
                status.last_success_ms = Some(now);
                status.last_error = None;
                status.accepted += summary.accepted;
                status.unchanged += summary.unchanged;
                status.stale += summary.stale;
                status.rejected += summary.rejected;
            }
            Err(error) => {
                status.pulls_failed += 1;
                status.last_error = Some(error.to_string());
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

/// Pulls `sibling` every `interval` until the task is cancelled.
pub async fn pull_forever(state: AppState, mut sibling: Sibling, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    state.metrics().add_sibling(sibling.url());
    state.federation().add(sibling.url(), interval);
    loop {
        ticker.tick().await;
        let outcome = sibling.pull(&state).await;
        state.federation().record(&sibling, &outcome);
        match outcome {
            Ok(summary) => {
                state.metrics().count_pull(sibling.url(), PullResult::Ok);
                if summary != PullSummary::default() {
                    tracing::debug!(sibling = sibling.url(), ?summary, "federation pull");
                }
            }
            Err(e) => {
                state.metrics().count_pull(sibling.url(), PullResult::Error);
                tracing::warn!(sibling = sibling.url(), "federation pull failed: {e}");
            }
        }
    }
}
