//! The saved index: for every store the newest version this node knows, its content (or a
//! tombstone), and the file metadata seen when the local file was last hashed. Kept in
//! `<state>/index.json`, written atomically, so a restart does not re-announce everything.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::{self, ChainingValue, ContentDigest, Hash32};
use super::name::is_valid_store_name;
use super::version::Version;

/// Errors loading or saving the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read the store index {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the store index {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Content of a version: size, BLAKE3 hash, and (once known) the chunk manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub size: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash32,
    /// Chunk chaining values; known for content held locally, absent for content still to fetch.
    #[serde(
        default,
        with = "hex_manifest",
        skip_serializing_if = "Option::is_none"
    )]
    pub chunks: Option<Vec<ChainingValue>>,
}

impl Content {
    pub fn hash_hex(&self) -> String {
        hash::to_hex(&self.hash)
    }
}

impl From<ContentDigest> for Content {
    fn from(digest: ContentDigest) -> Self {
        Self {
            size: digest.size,
            hash: digest.hash,
            chunks: Some(digest.chunks),
        }
    }
}

/// What the file looked like when it was hashed or installed; a change of any field means the
/// file has to be hashed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalMeta {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

impl LocalMeta {
    pub fn from_metadata(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec(),
            inode: meta.ino(),
        }
    }

    pub fn of_path(path: &Path) -> io::Result<Self> {
        Ok(Self::from_metadata(&fs::metadata(path)?))
    }
}

/// One store in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// The newest version known for this store (the winner).
    pub version: Version,
    /// `None` is a tombstone: the store was deleted at `version`.
    pub content: Option<Content>,
    /// Set when the file in the data folder holds exactly `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalMeta>,
    /// For a version made here: the version it replaced, so other nodes can tell an update of
    /// their version (no conflict) from a concurrent change (conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Version>,
    /// Metadata of an older version still in the data folder while the newer one downloads: that
    /// file is not a local change, and may be replaced without keeping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<LocalMeta>,
}

impl IndexEntry {
    pub fn is_tombstone(&self) -> bool {
        self.content.is_none()
    }

    /// True when the data folder holds this entry's content.
    pub fn is_held(&self) -> bool {
        self.content.is_some() && self.local.is_some()
    }
}

/// All stores this node knows about, and the highest Lamport clock seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreIndex {
    pub highest_lamport: u64,
    pub entries: BTreeMap<String, IndexEntry>,
}

impl StoreIndex {
    /// Loads the index; a missing file is an empty index. Entries with invalid names are dropped.
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(IndexError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut index: StoreIndex =
            serde_json::from_slice(&bytes).map_err(|e| IndexError::Read {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
        index.entries.retain(|name, _| is_valid_store_name(name));
        let highest = index.entries.values().map(|e| e.version.lamport).max();
        index.highest_lamport = index.highest_lamport.max(highest.unwrap_or(0));
        Ok(index)
    }

    /// Writes the index atomically: temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec(self).map_err(|e| IndexError::Write {
            path: path.to_owned(),
            source: io::Error::other(e),
        })?;
        write_atomic(path, &bytes).map_err(|source| IndexError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Records that a Lamport value was seen, so the next local change is higher.
    pub fn observe_lamport(&mut self, lamport: u64) {
        self.highest_lamport = self.highest_lamport.max(lamport);
    }

    /// The version a new local change gets: highest seen + 1, origin = this node.
    pub fn next_local_version(&mut self, local_peer: &str) -> Version {
        self.highest_lamport += 1;
        Version::new(self.highest_lamport, local_peer)
    }

    /// A digest of what this node holds (held stores and tombstones), for anti-entropy: two
    /// nodes with the same digest have nothing to exchange.
    pub fn holdings_digest(&self) -> (Hash32, u64) {
        let mut hasher = blake3::Hasher::new();
        let mut count = 0;
        for (name, entry) in &self.entries {
            let hash = match (&entry.content, entry.local) {
                (Some(content), Some(_)) => content.hash_hex(),
                (None, _) => "tombstone".to_owned(),
                (Some(_), None) => continue,
            };
            count += 1;
            hasher.update(
                format!(
                    "{name}\n{}\n{}\n{hash}\n",
                    entry.version.lamport, entry.version.origin
                )
                .as_bytes(),
            );
        }
        (*hasher.finalize().as_bytes(), count)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a reader sees the old
/// or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Makes a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        crate::store::hash::from_hex(&text)
            .ok_or_else(|| D::Error::custom(format!("invalid BLAKE3 hash {text:?}")))
    }
}

mod hex_manifest {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(
        chunks: &Option<Vec<[u8; 32]>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match chunks {
            Some(chunks) => s.serialize_some(&hex::encode(chunks.concat())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<[u8; 32]>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes =
            hex::decode(&text).map_err(|e| D::Error::custom(format!("chunk manifest: {e}")))?;
        crate::store::hash::manifest_from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| D::Error::custom("chunk manifest length is not a multiple of 32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(byte: u8) -> Content {
        let digest = hash::digest_reader(&[byte; 100][..]).unwrap();
        digest.into()
    }

    #[test]
    fn index_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let mut index = StoreIndex::default();
        let version = index.next_local_version("peerA");
        index.entries.insert(
            "s1".into(),
            IndexEntry {
                version,
                content: Some(content(1)),
                local: Some(LocalMeta {
                    size: 100,
                    mtime_ns: 5,
                    ctime_ns: 6,
                    inode: 7,
                }),
                previous: Some(Version::new(1, "peerB")),
                superseded: None,
            },
        );
        index.entries.insert(
            "gone".into(),
            IndexEntry {
                version: Version::new(9, "peerB"),
                content: None,
                local: None,
                previous: None,
                superseded: None,
            },
        );
        index.observe_lamport(9);
        index.save(&path).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(loaded.highest_lamport, 9);
        assert!(!dir.path().join(".index.json.tmp").exists());
    }

    #[test]
    fn missing_index_is_empty_and_corrupt_index_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert_eq!(StoreIndex::load(&path).unwrap(), StoreIndex::default());
        fs::write(&path, b"{not json").unwrap();
        let err = StoreIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("index.json"), "{err}");
    }

    #[test]
    fn hostile_names_in_a_saved_index_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let mut index = StoreIndex::default();
        let entry = IndexEntry {
            version: Version::new(1, "p"),
            content: Some(content(2)),
            local: None,
            previous: None,
            superseded: None,
        };
        index.entries.insert("../escape".into(), entry.clone());
        index.entries.insert("ok".into(), entry);
        index.save(&path).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded.entries.keys().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn next_local_version_is_above_everything_seen() {
        let mut index = StoreIndex::default();
        index.observe_lamport(41);
        assert_eq!(index.next_local_version("me"), Version::new(42, "me"));
        assert_eq!(index.next_local_version("me"), Version::new(43, "me"));
    }

    #[test]
    fn holdings_digest_changes_with_held_content_only() {
        let mut a = StoreIndex::default();
        let held = IndexEntry {
            version: Version::new(1, "p"),
            content: Some(content(3)),
            local: Some(LocalMeta {
                size: 100,
                mtime_ns: 1,
                ctime_ns: 1,
                inode: 1,
            }),
            previous: None,
            superseded: None,
        };
        a.entries.insert("s".into(), held.clone());
        let mut b = a.clone();
        assert_eq!(a.holdings_digest(), b.holdings_digest());
        // A store b only knows about (not held yet) does not change what b offers.
        b.entries.insert(
            "t".into(),
            IndexEntry {
                local: None,
                ..held.clone()
            },
        );
        assert_eq!(a.holdings_digest(), b.holdings_digest());
        b.entries.get_mut("s").unwrap().version = Version::new(2, "p");
        assert_ne!(a.holdings_digest(), b.holdings_digest());
    }
}
