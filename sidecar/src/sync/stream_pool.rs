//! Idle sync streams kept per peer, so a burst of small downloads reuses streams instead of
//! opening (and negotiating) a new one for every file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use parking_lot::Mutex;

use super::client::SyncClient;

/// Streams kept idle per peer; more are closed when returned.
pub const MAX_IDLE_PER_PEER: usize = 16;
/// An idle stream older than this is closed (well before the server's idle timeout, so a
/// reused stream is not one the server is about to drop, and idle streams do not hold the
/// server's stream slots for long).
pub const MAX_IDLE_TIME: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct StreamPool {
    idle: Mutex<HashMap<PeerId, Vec<(SyncClient, Instant)>>>,
}

impl StreamPool {
    /// The most recently used idle stream to `peer`, if one is fresh enough.
    pub fn take(&self, peer: &PeerId) -> Option<SyncClient> {
        let mut idle = self.idle.lock();
        let streams = idle.get_mut(peer)?;
        let found = loop {
            match streams.pop() {
                Some((client, since)) if since.elapsed() < MAX_IDLE_TIME => break Some(client),
                Some(_) => continue,
                None => break None,
            }
        };
        if streams.is_empty() {
            idle.remove(peer);
        }
        found
    }

    /// Keeps a stream whose last exchange completed cleanly for a later download.
    pub fn put(&self, client: SyncClient) {
        let mut idle = self.idle.lock();
        let streams = idle.entry(client.peer()).or_default();
        if streams.len() < MAX_IDLE_PER_PEER {
            streams.push((client, Instant::now()));
        }
    }

    /// Drops every stream idle for longer than [`MAX_IDLE_TIME`], and those to `gone` peers.
    pub fn expire(&self, gone: Option<&PeerId>) {
        let mut idle = self.idle.lock();
        if let Some(peer) = gone {
            idle.remove(peer);
        }
        idle.retain(|_, streams| {
            streams.retain(|(_, since)| since.elapsed() < MAX_IDLE_TIME);
            !streams.is_empty()
        });
    }

    /// Number of idle streams (all peers).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::download::tests::{NET, serving_node, swarm_node};
    use crate::sync::protocol::sync_protocol;

    #[tokio::test]
    async fn returned_streams_are_reused_per_peer_and_dropped_for_a_gone_peer() {
        let (server, address, _dir) = serving_node("s", b"abc", false).await;
        let (_me, _, mut control) = swarm_node(&[address]).await;
        let open = SyncClient::open(
            &mut control,
            server,
            sync_protocol(NET),
            Duration::from_secs(10),
        );
        let pool = StreamPool::default();
        assert!(pool.take(&server).is_none());
        pool.put(open.await.unwrap());
        assert_eq!(pool.idle_count(), 1);
        assert!(pool.take(&PeerId::random()).is_none());
        let mut reused = pool.take(&server).expect("the returned stream");
        assert_eq!(pool.idle_count(), 0);
        // The reused stream still answers.
        reused.digest().await.unwrap();
        pool.put(reused);
        pool.expire(None);
        assert_eq!(pool.idle_count(), 1, "a fresh idle stream is kept");
        pool.expire(Some(&server));
        assert_eq!(pool.idle_count(), 0);
    }
}
