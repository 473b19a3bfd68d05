//! What nodes tell each other about stores: gossip announcements and inventory lists share one
//! compact JSON entry, validated before anything in it is used.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::store::hash::{self, Hash32};
use crate::store::{IndexEntry, Version, is_valid_store_name};

/// Most entries accepted in one announcement or inventory.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Gossip messages are kept below this size (gossipsub's default limit is 64 KiB).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 60 * 1024;

/// One store as it travels: name, version, and content (size and BLAKE3 hash; the hash commits to
/// the chunk manifest). No hash means a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "l")]
    pub lamport: u64,
    #[serde(rename = "o")]
    pub origin: String,
    #[serde(rename = "s", default)]
    pub size: u64,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The version this one replaced on its origin (lamport, origin), when made there.
    #[serde(rename = "pl", default, skip_serializing_if = "Option::is_none")]
    pub previous_lamport: Option<u64>,
    #[serde(rename = "po", default, skip_serializing_if = "Option::is_none")]
    pub previous_origin: Option<String>,
}

/// A gossip message: the publisher says it holds these versions (or tombstones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The peer that holds the stores (the publisher; gossip may relay through others).
    #[serde(rename = "p")]
    pub holder: String,
    #[serde(rename = "e")]
    pub entries: Vec<WireEntry>,
}

/// A validated remote entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    pub name: String,
    pub version: Version,
    /// `(size, hash)`; `None` for a tombstone.
    pub content: Option<(u64, Hash32)>,
    /// The version this one replaced where it was made.
    pub previous: Option<Version>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    #[error("invalid store name {0:?} from a peer")]
    BadName(String),
    #[error("invalid origin peer id {origin:?} for store {name}")]
    BadOrigin { name: String, origin: String },
    #[error("invalid BLAKE3 hash {hash:?} for store {name}")]
    BadHash { name: String, hash: String },
    #[error("tombstone for store {0} carries a size")]
    TombstoneWithSize(String),
    #[error("undecodable announcement: {0}")]
    Decode(String),
    #[error("announcement holder {0:?} is not a peer id")]
    BadHolder(String),
    #[error("too many entries: {0}")]
    TooMany(usize),
}

impl WireEntry {
    /// The wire form of an index entry.
    pub fn from_index(name: &str, entry: &IndexEntry) -> Self {
        Self {
            name: name.to_owned(),
            lamport: entry.version.lamport,
            origin: entry.version.origin.clone(),
            size: entry.content.as_ref().map_or(0, |c| c.size),
            hash: entry.content.as_ref().map(|c| c.hash_hex()),
            previous_lamport: entry.previous.as_ref().map(|v| v.lamport),
            previous_origin: entry.previous.as_ref().map(|v| v.origin.clone()),
        }
    }

    /// Checks every field that came from the network.
    pub fn validate(&self) -> Result<RemoteEntry, AnnounceError> {
        if !is_valid_store_name(&self.name) {
            return Err(AnnounceError::BadName(self.name.clone()));
        }
        if self.origin.parse::<PeerId>().is_err() {
            return Err(AnnounceError::BadOrigin {
                name: self.name.clone(),
                origin: self.origin.clone(),
            });
        }
        let content = match &self.hash {
            Some(text) => {
                let hash = (text.len() == 64)
                    .then(|| hash::from_hex(text))
                    .flatten()
                    .ok_or_else(|| AnnounceError::BadHash {
                        name: self.name.clone(),
                        hash: text.clone(),
                    })?;
                Some((self.size, hash))
            }
            None if self.size != 0 => {
                return Err(AnnounceError::TombstoneWithSize(self.name.clone()));
            }
            None => None,
        };
        let previous = match (self.previous_lamport, &self.previous_origin) {
            (Some(lamport), Some(origin)) if origin.parse::<PeerId>().is_ok() => {
                Some(Version::new(lamport, origin.clone()))
            }
            (None, None) => None,
            _ => {
                return Err(AnnounceError::BadOrigin {
                    name: self.name.clone(),
                    origin: self.previous_origin.clone().unwrap_or_default(),
                });
            }
        };
        Ok(RemoteEntry {
            name: self.name.clone(),
            version: Version::new(self.lamport, self.origin.clone()),
            content,
            previous,
        })
    }
}

impl Announcement {
    /// Decodes and validates a gossip message: the holder and every entry.
    pub fn decode(data: &[u8]) -> Result<(PeerId, Vec<RemoteEntry>), AnnounceError> {
        let message: Announcement =
            serde_json::from_slice(data).map_err(|e| AnnounceError::Decode(e.to_string()))?;
        let holder = message
            .holder
            .parse::<PeerId>()
            .map_err(|_| AnnounceError::BadHolder(message.holder.clone()))?;
        if message.entries.len() > MAX_ENTRIES {
            return Err(AnnounceError::TooMany(message.entries.len()));
        }
        let entries = message
            .entries
            .iter()
            .map(WireEntry::validate)
            .collect::<Result<_, _>>()?;
        Ok((holder, entries))
    }

    /// Splits entries into messages that each stay under the gossip size limit.
    pub fn encode_batches(holder: &PeerId, entries: &[WireEntry]) -> Vec<Vec<u8>> {
        let holder = holder.to_base58();
        let mut messages = Vec::new();
        let mut batch: Vec<WireEntry> = Vec::new();
        let mut batch_bytes = 0;
        for entry in entries {
            // Every entry is well below the limit: names are at most 128 bytes.
            let entry_bytes = serde_json::to_vec(entry).map_or(512, |b| b.len() + 1);
            if !batch.is_empty() && batch_bytes + entry_bytes > MAX_ANNOUNCEMENT_BYTES - 128 {
                messages.push(Self::encode(&holder, std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            batch_bytes += entry_bytes;
            batch.push(entry.clone());
        }
        if !batch.is_empty() {
            messages.push(Self::encode(&holder, batch));
        }
        messages
    }

    fn encode(holder: &str, entries: Vec<WireEntry>) -> Vec<u8> {
        serde_json::to_vec(&Announcement {
            holder: holder.to_owned(),
            entries,
        })
        .expect("announcements always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, origin: &PeerId) -> WireEntry {
        WireEntry {
            name: name.into(),
            lamport: 3,
            origin: origin.to_base58(),
            size: 10,
            hash: Some(hash::to_hex(blake3::hash(b"x").as_bytes())),
            previous_lamport: None,
            previous_origin: None,
        }
    }

    #[test]
    fn announcements_round_trip_in_batches_under_the_size_limit() {
        let peer = PeerId::random();
        let entries: Vec<_> = (0..3000)
            .map(|i| entry(&format!("store-{i}"), &peer))
            .collect();
        let messages = Announcement::encode_batches(&peer, &entries);
        assert!(messages.len() > 1);
        let mut decoded = Vec::new();
        for message in &messages {
            assert!(message.len() <= MAX_ANNOUNCEMENT_BYTES, "{}", message.len());
            let (holder, list) = Announcement::decode(message).unwrap();
            assert_eq!(holder, peer);
            decoded.extend(list);
        }
        assert_eq!(decoded.len(), 3000);
        assert_eq!(decoded[7].name, "store-7");
        assert_eq!(decoded[7].version, Version::new(3, peer.to_base58()));
    }

    #[test]
    fn hostile_fields_are_rejected() {
        let peer = PeerId::random();
        let mut bad_name = entry("../../etc/passwd", &peer);
        assert!(matches!(
            bad_name.validate(),
            Err(AnnounceError::BadName(_))
        ));
        bad_name.name = "ok/../x".into();
        assert!(bad_name.validate().is_err());
        let mut bad_origin = entry("s", &peer);
        bad_origin.origin = "not-a-peer".into();
        assert!(matches!(
            bad_origin.validate(),
            Err(AnnounceError::BadOrigin { .. })
        ));
        let mut bad_hash = entry("s", &peer);
        bad_hash.hash = Some("zz".repeat(32));
        assert!(matches!(
            bad_hash.validate(),
            Err(AnnounceError::BadHash { .. })
        ));
        let mut tombstone = entry("s", &peer);
        tombstone.hash = None;
        assert!(matches!(
            tombstone.validate(),
            Err(AnnounceError::TombstoneWithSize(_))
        ));
        tombstone.size = 0;
        assert_eq!(tombstone.validate().unwrap().content, None);
        assert!(Announcement::decode(b"{\"p\":\"x\",\"e\":[]}").is_err());
        assert!(Announcement::decode(b"garbage").is_err());
    }
}
