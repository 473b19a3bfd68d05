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
