//! Federation: pulls signed records and removals from sibling bootstrap servers and merges those
//! that verify, by the same rules as `POST /register` (newer timestamp wins). A relay is never
//! trusted: a forged or tampered record fails verification and is dropped and counted.

use std::time::Duration;

use crate::api::{MAX_RECORDS_LIMIT, RecordsQuery, RecordsResponse};
use crate::client::{ClientError, RegistryClient};
use crate::metrics::{FederationResult, Metrics, PullResult};
use crate::registry::{RegistryError, Source};
use crate::server::AppState;

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
    pub full: u64,
    pub rejected: u64,
}

impl Sibling {
    /// A sibling at `url`, trusting `ca_pem` too, whose answers may be `max_response_bytes` long.
    pub fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        max_response_bytes: u64,
    ) -> Result<Self, ClientError> {
        let mut builder = RegistryClient::builder(url).max_response_bytes(max_response_bytes);
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
        Err(e) if e.is_capacity() => FederationResult::Full,
        Err(_) => FederationResult::Rejected,
    }
}

/// Merges one page pulled from the sibling at `url` into `state`, counting each entry in `summary`.
pub fn merge_page(state: &AppState, url: &str, page: RecordsResponse, summary: &mut PullSummary) {
    let metrics = state.metrics();
    let mut count = |result: Result<(), RegistryError>, peer_id: &str| {
        let label = classify(&result);
        Metrics::count_result(&metrics.federation_records, label);
        match label {
            FederationResult::Accepted => summary.accepted += 1,
            FederationResult::Unchanged => summary.unchanged += 1,
            FederationResult::Stale => summary.stale += 1,
            FederationResult::Full => summary.full += 1,
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

/// Pulls `sibling` every `interval` until the task is cancelled.
pub async fn pull_forever(state: AppState, mut sibling: Sibling, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    state.metrics().add_sibling(sibling.url());
    loop {
        ticker.tick().await;
        match sibling.pull(&state).await {
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
