//! Versions from peers on their way to the engine: gossip announcements and inventories are
//! decoded, records the index already holds pass unchanged, the others have their signatures
//! verified (off the event loop when there are many), and what failed is counted by reason.

use std::sync::Arc;
use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::{Input, Shared};
use crate::store::record::SignedVersion;
use crate::sync::announce::{Announcement, WireEntry, count_failures, decode_entries};
use crate::sync::client::{ClientError, SyncClient};
use crate::sync::engine::{Event, Reject, VerifiedVersion, Via};
use crate::sync::holder_notices::HolderNotice;
use crate::sync::metrics::{ExchangeOutcome, SyncMetrics};
use crate::sync::reconcile::{ReconcileError, Reconciler};

/// Records verified inline below this count; above it, on a blocking thread.
const INLINE_VERIFY: usize = 8;

/// The engine events of one announcement from `source`: a gossip message (`source` is
/// gossipsub's signed publisher) or a direct peer's holder notice (`source` is the peer at the
/// other end of the stream).
pub(super) async fn announcement(
    shared: &Arc<Shared>,
    source: PeerId,
    via: Via,
    data: &[u8],
) -> Vec<Event> {
    match Announcement::decode(data) {
        Ok(entries) => checked(shared, source, via, entries).await,
        Err(error) => {
            tracing::debug!(%source, ?via, %error, "undecodable store announcement");
            vec![Event::Rejected {
                from: source,
                via,
                reasons: vec![(Reject::Malformed, 1)],
            }]
        }
    }
}

/// Verifies holder notices as they come and passes what they bring to the engine; a notice's
/// place in the server's queue is released once its events are sent.
pub(super) fn take_holder_notices(
    shared: Arc<Shared>,
    mut notices: mpsc::Receiver<HolderNotice>,
    inputs: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let notice = tokio::select! {
                _ = cancel.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(notice) => notice,
                    None => return,
                },
            };
            for event in announcement(&shared, notice.from, Via::Notice, &notice.body).await {
                if inputs.send(Input::Engine(event)).is_err() {
                    return;
                }
            }
        }
    });
}

/// Decodes and verifies entries from `from`; records the index holds are not verified again.
async fn checked(
    shared: &Arc<Shared>,
    from: PeerId,
    via: Via,
    entries: Vec<WireEntry>,
) -> Vec<Event> {
    let decoded = decode_entries(&entries);
    drop(entries);
    let mut rejected = decoded.rejected;
    let (known, unknown): (Vec<SignedVersion>, Vec<SignedVersion>) = {
        let engine = shared.engine.read();
        decoded
            .records
            .into_iter()
            .partition(|record| engine.knows(record))
    };
    let mut records: Vec<VerifiedVersion> = known.into_iter().map(VerifiedVersion::known).collect();
    let (keyed, mut failed) = shared.keys.lock().checked_keys(unknown);
    if keyed.len() <= INLINE_VERIFY {
        records.extend(VerifiedVersion::check_signatures(keyed, &mut failed));
    } else {
        let checked = tokio::task::spawn_blocking(move || {
            let verified = VerifiedVersion::check_signatures(keyed, &mut failed);
            (verified, failed)
        })
        .await;
        match checked {
            Ok((verified, more_failed)) => {
                records.extend(verified);
                failed = more_failed;
            }
            Err(error) => {
                tracing::warn!(%from, %error, "verifying signatures failed");
                failed = Vec::new();
            }
        }
    }
    count_failures(&mut rejected, &failed);
    let mut events = Vec::new();
    if !rejected.is_empty() {
        events.push(Event::Rejected {
            from,
            via,
            reasons: rejected,
        });
    }
    if !records.is_empty() {
        events.push(Event::Remote { from, via, records });
    }
    events
}

/// Compares inventories with `peer` in its own task; the records, the rejections and the end of
/// the exchange come back as inputs. Digests first; when they differ, range-based reconciliation
/// (what differs, see `reconcile`), or the peer's full list when this node drains (coverage is
/// counted from full lists) or the peer predates reconciliation.
pub(super) fn exchange_inventory(
    shared: Arc<Shared>,
    mut control: libp2p_stream::Control,
    protocol: StreamProtocol,
    timeout: Duration,
    inputs: mpsc::UnboundedSender<Input>,
    metrics: SyncMetrics,
    peer: PeerId,
) {
    tokio::spawn(async move {
        let exchange = Exchange {
            shared: &shared,
            inputs: &inputs,
            metrics: &metrics,
            peer,
        };
        match exchange.run(&mut control, protocol, timeout).await {
            Ok(outcome) => metrics.inventory_exchange(outcome),
            Err(ClientError::Unexpected { detail, .. }) => {
                tracing::debug!(%peer, %detail, "peer sent an invalid inventory");
                let _ = inputs.send(Input::Engine(Event::Rejected {
                    from: peer,
                    via: Via::Inventory,
                    reasons: vec![(Reject::Malformed, 1)],
                }));
            }
            Err(ClientError::Open { reason, .. }) if reason.contains("not support") => {
                tracing::info!(%peer, %reason, "peer does not speak this node's sync protocol (an older dig-sidecar?); no stores are exchanged with it");
            }
            Err(error) => tracing::debug!(%peer, %error, "inventory exchange failed"),
        }
        let _ = inputs.send(Input::Engine(Event::InventoryDone(peer)));
    });
}

/// Streams a reconcile request may find closed before the peer counts as predating
/// reconciliation (see [`Exchange::run`]).
const RECONCILE_ATTEMPTS: u32 = 2;

/// One inventory exchange with one peer.
struct Exchange<'a> {
    shared: &'a Arc<Shared>,
    inputs: &'a mpsc::UnboundedSender<Input>,
    metrics: &'a SyncMetrics,
    peer: PeerId,
}

impl Exchange<'_> {
    async fn run(
        &self,
        control: &mut libp2p_stream::Control,
        protocol: StreamProtocol,
        timeout: Duration,
    ) -> Result<ExchangeOutcome, ClientError> {
        let peer = self.peer;
        let mut client = SyncClient::open(control, peer, protocol.clone(), timeout).await?;
        let (theirs, _, peer_draining) = client.digest().await?;
        let (ours, draining) = {
            let engine = self.shared.engine.read();
            (engine.index().holdings_digest().0, engine.is_draining())
        };
        if theirs == ours && !draining {
            client.close().await;
            return Ok(ExchangeOutcome::Equal);
        }
        // A draining node reads the full list even when the digests match: coverage is counted
        // from what the peer itself lists, after the drain began.
        if !draining {
            // A stream closed on the first request is an older peer, or the connection it rode
            // closing under it (a node drops a QUIC connection once a TCP one is up): a second
            // stream, on whatever connection remains, tells the two apart.
            for attempt in 1..=RECONCILE_ATTEMPTS {
                let reconciled = self.reconcile(&mut client).await;
                self.metrics
                    .inventory_bytes_received
                    .inc_by(client.body_bytes());
                match reconciled {
                    Ok(()) => {
                        client.close().await;
                        return Ok(ExchangeOutcome::Reconciled);
                    }
                    Err(Reconciliation::NotSupported) if attempt < RECONCILE_ATTEMPTS => {
                        tracing::debug!(%peer, "stream closed on a reconcile request; trying a new one");
                    }
                    Err(Reconciliation::NotSupported) => {
                        tracing::debug!(%peer, "peer closed the stream on every reconcile request (an older dig-sidecar?); reading its full inventory");
                    }
                    Err(Reconciliation::Failed(error)) => return Err(error),
                }
                client = SyncClient::open(control, peer, protocol.clone(), timeout).await?;
            }
        }
        let entries = client.inventory().await?;
        self.metrics
            .inventory_bytes_received
            .inc_by(client.body_bytes());
        client.close().await;
        if !entries.is_empty() {
            self.send(checked(self.shared, peer, Via::Inventory, entries).await);
        }
        self.send(vec![Event::InventoryComplete {
            peer,
            draining: peer_draining,
        }]);
        Ok(ExchangeOutcome::Full)
    }

    /// Reconciles with the peer, range by range; what it holds that differs goes to the engine
    /// as it arrives.
    async fn reconcile(&self, client: &mut SyncClient) -> Result<(), Reconciliation> {
        let invalid = |error: ReconcileError| {
            Reconciliation::Failed(ClientError::Unexpected {
                peer: self.peer,
                detail: error.to_string(),
            })
        };
        let known = |lower: &str, upper: Option<&str>| {
            self.shared.engine.read().known_fingerprint(lower, upper)
        };
        let mut reconciler = Reconciler::new(&known);
        let mut first = true;
        while let Some(asks) = reconciler.next_asks().map_err(invalid)? {
            let answers = match client.reconcile(&asks).await {
                Ok(answers) => answers,
                Err(ClientError::Io { .. }) if first => return Err(Reconciliation::NotSupported),
                Err(error) => return Err(Reconciliation::Failed(error)),
            };
            first = false;
            let found = reconciler.take(&known, asks, answers).map_err(invalid)?;
            if !found.is_empty() {
                self.send(checked(self.shared, self.peer, Via::Inventory, found).await);
            }
        }
        Ok(())
    }

    fn send(&self, events: Vec<Event>) {
        for event in events {
            let _ = self.inputs.send(Input::Engine(event));
        }
    }
}

/// Why a reconciliation did not complete.
enum Reconciliation {
    /// The peer closed the stream on the first request: it predates reconciliation.
    NotSupported,
    Failed(ClientError),
}
