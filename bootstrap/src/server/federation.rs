//! Federation: pulls signed records and removals from sibling bootstrap servers and merges those
//! that verify, by the same rules as `POST /register` (newer timestamp wins). A relay is never
//! trusted: a forged or tampered record fails verification and is dropped and counted.
//!
//! One `--peer-bootstrap` URL may name several replicas (a Kubernetes headless Service resolves to
//! every replica, this one included): each round resolves the name again and pulls every address
//! on its own, so each replica federates with each of the others. A feed whose `epoch` is this
//! server's own is this server: that address is skipped from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::federation_status::{PullSummary, ReplicaStatus, RoundSummary, sibling_label};
use super::state::AppState;
use crate::api::{MAX_RECORDS_LIMIT, RecordsQuery, RecordsResponse};
use crate::client::{ClientError, RegistryClient};
use crate::metrics::{FederationResult, Metrics, PullResult};
use crate::registry::{RegistryError, Source};

/// Most pages pulled from one sibling per round, so one busy sibling cannot monopolise a round.
const MAX_PAGES_PER_ROUND: usize = 100;

/// Most addresses one name may resolve to that are pulled (one per replica of a registry).
const MAX_ADDRESSES_PER_SIBLING: usize = 64;

/// One sibling server and where its feed was last read.
pub struct Sibling {
    client: RegistryClient,
    epoch: Option<String>,
    cursor: u64,
}

impl Sibling {
    /// A sibling at `url`, trusting `ca_pem` too, whose answers may be `max_response_bytes` long.
    pub fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        max_response_bytes: u64,
    ) -> Result<Self, ClientError> {
        Self::with_address(url, None, ca_pem, max_response_bytes)
    }

    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    /// A client of the sibling at `url`, or of its replica at `address`.
    fn with_address(
        url: &str,
        address: Option<SocketAddr>,
        ca_pem: Option<&[u8]>,
        max_response_bytes: u64,
    ) -> Result<Self, ClientError> {
        let mut builder = RegistryClient::builder(url).max_response_bytes(max_response_bytes);
        if let Some(address) = address {
            builder = builder.connect_to(address);
        }
        if let Some(pem) = ca_pem {
            builder = builder.root_certificate_pem(pem);
        }
        Ok(Self {
            client: builder.build()?,
            epoch: None,
            cursor: 0,
        })
    }

    /// Pulls every change since the last round and merges it into `state`; `Pulled::Own` (and
    /// nothing merged) when the feed is this server's own.
    pub async fn pull(&mut self, state: &AppState) -> Result<Pulled, ClientError> {
        let mut summary = PullSummary::default();
        for _ in 0..MAX_PAGES_PER_ROUND {
            let page = self
                .client
                .records(&RecordsQuery {
                    after: Some(self.cursor),
                    limit: Some(MAX_RECORDS_LIMIT),
                })
                .await?;
            if page.epoch == state.epoch() {
                return Ok(Pulled::Own);
            }
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
        Ok(Pulled::Merged(summary))
    }
}

/// What one pull of one address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pulled {
    Merged(PullSummary),
    /// The address is this server.
    Own,
}

/// Every replica behind one `--peer-bootstrap` URL, each pulled on its own.
pub struct SiblingSet {
    url: url::Url,
    label: String,
    ca_pem: Option<Vec<u8>>,
    max_response_bytes: u64,
    replicas: BTreeMap<SocketAddr, Sibling>,
    own: BTreeSet<SocketAddr>,
}

impl SiblingSet {
    /// The replicas behind `url`, trusting `ca_pem` too, whose answers may be
    /// `max_response_bytes` long.
    pub fn new(
        url: &url::Url,
        ca_pem: Option<&[u8]>,
        max_response_bytes: u64,
    ) -> Result<Self, ClientError> {
        // Checks the URL and the CA once, before any name is resolved.
        Sibling::new(url.as_str(), ca_pem, max_response_bytes)?;
        Ok(Self {
            label: sibling_label(url),
            url: url.clone(),
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            max_response_bytes,
            replicas: BTreeMap::new(),
            own: BTreeSet::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.label
    }

    /// Replicas currently pulled (other than this server).
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Where the feed of each replica was last read, for `GET /federation`.
    pub fn replica_statuses(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|(address, sibling)| ReplicaStatus {
                address: address.to_string(),
                epoch: sibling.epoch.clone(),
                cursor: sibling.cursor,
            })
            .collect()
    }

    async fn resolve(&self) -> Result<BTreeSet<SocketAddr>, ClientError> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses =
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ClientError::InvalidUrl {
                    url: self.label.clone(),
                    detail: format!("cannot resolve {host}: {e}"),
                })?;
        Ok(addresses.take(MAX_ADDRESSES_PER_SIBLING).collect())
    }

    /// Resolves the name, then pulls each replica behind it except this server; an error only
    /// when the name does not resolve.
    pub async fn pull_round(&mut self, state: &AppState) -> Result<RoundSummary, ClientError> {
        let addresses = self.resolve().await?;
        self.replicas
            .retain(|address, _| addresses.contains(address));
        let mut round = RoundSummary::default();
        for address in addresses.difference(&self.own.clone()) {
            if !self.replicas.contains_key(address) {
                let sibling = Sibling::with_address(
                    self.url.as_str(),
                    Some(*address),
                    self.ca_pem.as_deref(),
                    self.max_response_bytes,
                )?;
                self.replicas.insert(*address, sibling);
            }
            let sibling = self.replicas.get_mut(address).expect("inserted above");
            match sibling.pull(state).await {
                Ok(Pulled::Merged(summary)) => {
                    round.pulled += 1;
                    round.merged.accepted += summary.accepted;
                    round.merged.unchanged += summary.unchanged;
                    round.merged.stale += summary.stale;
                    round.merged.full += summary.full;
                    round.merged.rejected += summary.rejected;
                    state.metrics().count_pull(&self.label, PullResult::Ok);
                }
                Ok(Pulled::Own) => {
                    tracing::info!(
                        sibling = self.label,
                        %address,
                        "this address is this server; not pulling it"
                    );
                    self.replicas.remove(address);
                    self.own.insert(*address);
                }
                Err(e) => {
                    round.failed += 1;
                    round.last_error = Some(format!("{address}: {e}"));
                    state.metrics().count_pull(&self.label, PullResult::Error);
                    tracing::warn!(sibling = self.label, %address, "federation pull failed: {e}");
                }
            }
        }
        state
            .metrics()
            .set_sibling_replicas(&self.label, self.replicas.len());
        Ok(round)
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

/// Until the first complete round, rounds repeat this often (a new replica's readiness waits on it).
const SYNC_RETRY: Duration = Duration::from_secs(1);

/// Pulls every replica of `siblings` every `interval` until the task is cancelled; the first
/// round in which every replica was pulled marks the sibling synced for `/ready`.
pub async fn pull_forever(state: AppState, mut siblings: SiblingSet, interval: Duration) {
    state.metrics().add_sibling(siblings.url());
    state.federation().add(siblings.url(), interval);
    let mut synced = false;
    loop {
        let outcome = siblings.pull_round(&state).await;
        state.federation().record_round(
            siblings.url(),
            siblings.replica_statuses(),
            outcome.as_ref().map_err(ToString::to_string),
        );
        match outcome {
            Ok(round) => {
                if round.merged != PullSummary::default() {
                    tracing::debug!(sibling = siblings.url(), ?round, "federation round");
                }
                if !synced && round.failed == 0 {
                    synced = true;
                    state.readiness().mark_synced(siblings.url());
                    tracing::info!(
                        sibling = siblings.url(),
                        replicas = round.pulled,
                        "pulled every replica of the sibling"
                    );
                }
            }
            Err(e) => {
                state
                    .metrics()
                    .count_pull(siblings.url(), PullResult::Error);
                tracing::warn!(sibling = siblings.url(), "federation round failed: {e}");
            }
        }
        tokio::time::sleep(if synced {
            interval
        } else {
            SYNC_RETRY.min(interval)
        })
        .await;
    }
}
