//! The saved index: for every store the winning signed version this node knows, its owner, its
//! content (or a tombstone) and the file metadata seen when the local file was last hashed. Kept
//! in `<state>/index.json` (a snapshot, written atomically) and `<state>/index.journal` (the
//! entries changed since, appended: see [`super::journal`]), so a restart neither re-announces
//! everything nor mistakes an installed file for a local change, and a save costs what changed.
//!
//! Format 3 (this one) is format 2 plus the snapshot's journal epoch. Format 2 keeps every
//! version's signature and owner. A format 1 file (no `format` field, versions unsigned) still
//! loads: its entries become *legacy* entries, which keep their version and content (so the files
//! they describe are not taken for local changes) but are never relayed; the node re-signs the
//! ones it made itself, and any signed version replaces the others. An older dig-sidecar refuses
//! a format 3 index (it would miss the journal's changes) with [`IndexError::Format`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Write};
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::{self, ChainingValue, ContentDigest, Hash32};
use super::name::is_valid_store_name;
use super::record::{ContentId, Signature, SignedVersion, VersionRecord, parse_canonical_peer_id};
use super::version::Version;

/// The index format this code writes.
pub const INDEX_FORMAT: u32 = 3;

/// Errors loading or saving the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read the store index {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the store index {path} has format {format}; this dig-sidecar reads formats 1 to 3 (a newer version wrote it)"
    )]
    Format { path: PathBuf, format: u32 },
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

    pub fn id(&self) -> ContentId {
        ContentId {
            size: self.size,
            hash: self.hash,
        }
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

impl From<ContentId> for Content {
    fn from(id: ContentId) -> Self {
        Self {
            size: id.size,
            hash: id.hash,
            chunks: None,
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

    /// True when the open `file` is still the one this describes (size, times, inode): its bytes
    /// are the ones hashed when it was recorded.
    pub fn describes(&self, file: &File) -> bool {
        file.metadata()
            .is_ok_and(|m| Self::from_metadata(&m) == *self)
    }

    /// Opens `path` only if it is still the file this describes.
    pub fn open_unchanged(&self, path: &Path) -> Option<File> {
        let file = File::open(path).ok()?;
        self.describes(&file).then_some(file)
    }
}

/// One store in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// The newest accepted version of this store (the winner).
    pub version: Version,
    /// `None` is a tombstone: the store was deleted at `version`.
    pub content: Option<Content>,
    /// The version this one replaced where it was made.
    #[serde(default, alias = "previous", skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Version>,
    /// The store's owner (peer id): the origin of its first accepted version. `None` only for a
    /// legacy (format 1) entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner as the version's maker named it (part of what the signature covers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_owner: Option<String>,
    /// The origin's signature over the version record; `None` for a legacy entry, which is never
    /// relayed to peers.
    #[serde(
        default,
        with = "base64_signature",
        skip_serializing_if = "Option::is_none"
    )]
    pub signature: Option<Signature>,
    /// The creation (first version) this node accepted, when it saw one: concurrent creations are
    /// compared with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation: Option<Version>,
    /// Until when (ms, this node's clock) a concurrent creation may still take the store over.
    #[serde(default)]
    pub contest_until_ms: u64,
    /// When this node accepted `version` (ms): tombstones are pruned by this age.
    #[serde(default)]
    pub accepted_ms: u64,
    /// Set when the file in the data folder holds exactly `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalMeta>,
    /// Metadata of an older version still in the data folder while the newer one downloads: that
    /// file is not a local change, and may be replaced without keeping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<LocalMeta>,
    /// The chunk manifest of that older file, when known: a download reuses the chunks the new
    /// version shares with it (see `sync::delta`).
    #[serde(
        default,
        with = "hex_manifest",
        skip_serializing_if = "Option::is_none"
    )]
    pub superseded_chunks: Option<Vec<ChainingValue>>,
}

impl IndexEntry {
    /// The entry of a newly accepted signed version (nothing held yet).
    pub fn from_signed(signed: &SignedVersion, owner: String, now_ms: u64) -> Self {
        let record = &signed.record;
        Self {
            version: record.version.clone(),
            content: record.content.map(Content::from),
            replaces: record.replaces.clone(),
            owner: Some(owner),
            signed_owner: Some(record.owner.clone()),
            signature: Some(signed.signature),
            creation: record.is_creation().then(|| record.version.clone()),
            contest_until_ms: 0,
            accepted_ms: now_ms,
            local: None,
            superseded: None,
            superseded_chunks: None,
        }
    }

    /// Records the older file still in the data folder (`None`: there is none), with its chunk
    /// manifest when known.
    pub fn set_superseded(&mut self, meta: Option<LocalMeta>, chunks: Option<Vec<ChainingValue>>) {
        self.superseded_chunks = chunks.filter(|_| meta.is_some());
        self.superseded = meta;
    }

    pub fn is_tombstone(&self) -> bool {
        self.content.is_none()
    }

    /// True when the data folder holds this entry's content.
    pub fn is_held(&self) -> bool {
        self.content.is_some() && self.local.is_some()
    }

    /// True for an unsigned entry loaded from a format 1 index.
    pub fn is_legacy(&self) -> bool {
        self.signature.is_none()
    }

    /// The record this entry's version was signed over.
    pub fn record(&self, name: &str) -> VersionRecord {
        VersionRecord {
            name: name.to_owned(),
            version: self.version.clone(),
            owner: self
                .signed_owner
                .clone()
                .or_else(|| self.owner.clone())
                .unwrap_or_else(|| self.version.origin.clone()),
            content: self.content.as_ref().map(Content::id),
            replaces: self.replaces.clone(),
        }
    }

    /// The signed record, to relay to peers; `None` for a legacy entry.
    pub fn signed(&self, name: &str) -> Option<SignedVersion> {
        Some(SignedVersion {
            record: self.record(name),
            signature: self.signature?,
        })
    }

    /// True when `signed` is exactly the version this entry holds (same signature), so it needs
    /// no second verification.
    pub fn holds_record(&self, signed: &SignedVersion) -> bool {
        self.signature.as_ref() == Some(&signed.signature)
            && self.version == signed.record.version
            && self.record(&signed.record.name) == signed.record
    }

    /// Whether the holdings digest covers this entry: held content and tombstones count, wanted
    /// content not.
    pub fn is_holding(&self) -> bool {
        self.is_held() || self.is_tombstone()
    }

    /// The fingerprint part of this version, whether or not its content is here yet (only held
    /// content and tombstones count in the holdings fingerprint).
    fn version_part(&self, name: &str) -> Hash32 {
        let what = match &self.content {
            Some(content) => content.hash_hex(),
            None => "tombstone".to_owned(),
        };
        let line = format!(
            "{name}\n{}\n{}\n{what}\n",
            self.version.lamport, self.version.origin
        );
        *blake3::hash(line.as_bytes()).as_bytes()
    }
}

/// The count and XOR of the digest parts of a run of entries (a range of the holdings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeFingerprint {
    pub count: u64,
    pub xor: Hash32,
}

impl RangeFingerprint {
    pub fn add(&mut self, part: &Hash32) {
        self.count += 1;
        self.xor
            .iter_mut()
            .zip(part)
            .for_each(|(acc, byte)| *acc ^= byte);
    }
}

/// An entry with its fingerprint part, hashed once when it enters the index: a range fingerprint
/// then costs an XOR per entry, not a hash (a pass over a million stores takes about 70 ms).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    entry: IndexEntry,
    part: Hash32,
}

impl Slot {
    fn new(name: &str, entry: IndexEntry) -> Self {
        let part = entry.version_part(name);
        Self { entry, part }
    }

    /// The part of the holdings fingerprint: held content and tombstones count, wanted content
    /// not.
    fn holding_part(&self) -> Option<&Hash32> {
        self.entry.is_holding().then_some(&self.part)
    }
}

/// All stores this node knows about.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreIndex {
    #[serde(default = "legacy_format")]
    format: u32,
    /// The journal lines that belong to this snapshot carry this epoch; a new snapshot takes the
    /// next one, so lines it already includes are never replayed over it.
    #[serde(default)]
    epoch: u64,
    #[serde(with = "slots")]
    entries: BTreeMap<String, Slot>,
    /// Stores changed since the last [`StoreIndex::take_changes`] (what the next journal append
    /// writes).
    #[serde(skip)]
    changed: BTreeSet<String>,
    /// XOR of the fingerprint parts of every entry, kept up to date on every change (so a
    /// digest request costs nothing, whatever the number of stores).
    #[serde(skip)]
    fingerprint: Hash32,
    #[serde(skip)]
    holdings: u64,
    /// Stores held and their bytes, kept up to date like the fingerprint.
    #[serde(skip)]
    held: (u64, u64),
}

fn legacy_format() -> u32 {
    1
}

/// Two indexes are equal when they hold the same entries under the same epoch (the rest follows
/// from the entries, or is not saved).
impl PartialEq for StoreIndex {
    fn eq(&self, other: &Self) -> bool {
        self.epoch == other.epoch && self.entries == other.entries
    }
}

impl Eq for StoreIndex {}

impl Default for StoreIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreIndex {
    pub fn new() -> Self {
        Self {
            format: INDEX_FORMAT,
            epoch: 0,
            entries: BTreeMap::new(),
            changed: BTreeSet::new(),
            fingerprint: [0; 32],
            holdings: 0,
            held: (0, 0),
        }
    }

    /// Loads the index; a missing file is an empty index. Entries with invalid names or peer ids
    /// are dropped (the file is ours, but a bad entry must not reach a path or the wire).
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(IndexError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let index: StoreIndex =
            serde_json::from_reader(BufReader::new(file)).map_err(|e| IndexError::Read {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
        if index.format > INDEX_FORMAT {
            return Err(IndexError::Format {
                path: path.to_owned(),
                format: index.format,
            });
        }
        let mut index = index.checked();
        let journal = super::journal::path_for(path);
        let changes =
            super::journal::read::<IndexEntry>(&journal, index.epoch).map_err(|source| {
                IndexError::Read {
                    path: journal,
                    source,
                }
            })?;
        for (name, entry) in changes {
            match entry {
                Some(entry) => {
                    index.insert_checked(name, entry);
                }
                None => {
                    index.remove(&name);
                }
            }
        }
        index.changed.clear();
        Ok(index)
    }

    /// Parses index bytes the way [`StoreIndex::load`] reads a file (for tests of the decoder).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let index: StoreIndex = serde_json::from_slice(bytes)?;
        Ok(index.checked())
    }

    fn checked(mut self) -> Self {
        let entries = std::mem::take(&mut self.entries);
        self.format = INDEX_FORMAT;
        for (name, slot) in entries {
            self.insert_slot_checked(name, slot);
        }
        self.changed.clear();
        self
    }

    /// Inserts an entry read from disk, unless its name or a peer id in it is invalid (the file
    /// is ours, but a bad entry must not reach a path or the wire); true when inserted.
    fn insert_checked(&mut self, name: String, entry: IndexEntry) -> bool {
        let slot = Slot::new(&name, entry);
        self.insert_slot_checked(name, slot)
    }

    fn insert_slot_checked(&mut self, name: String, slot: Slot) -> bool {
        let entry = &slot.entry;
        let peers_ok = parse_canonical_peer_id(&entry.version.origin).is_some()
            && entry
                .owner
                .iter()
                .all(|o| parse_canonical_peer_id(o).is_some())
            && entry
                .signed_owner
                .iter()
                .all(|o| parse_canonical_peer_id(o).is_some())
            && entry
                .replaces
                .iter()
                .all(|v| parse_canonical_peer_id(&v.origin).is_some());
        let ok = is_valid_store_name(&name) && peers_ok;
        if ok {
            self.insert_slot(name, slot);
        }
        ok
    }

    /// Writes the index as a snapshot, atomically (temporary file, fsync, rename, fsync of the
    /// folder), then drops the journal of earlier epochs. Call [`StoreIndex::begin_snapshot`]
    /// on the index first, so the journal lines of the snapshot it replaces are not replayed.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        // Streamed to the file: a snapshot of a large index is never held as one buffer.
        write_atomic_with(path, |file| {
            serde_json::to_writer(file, self).map_err(io::Error::other)
        })
        .map_err(|source| IndexError::Write {
            path: path.to_owned(),
            source,
        })?;
        let journal = super::journal::path_for(path);
        match fs::remove_file(&journal) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IndexError::Write {
                path: journal,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Starts a new journal epoch for a snapshot of this index; the changes so far are in it.
    pub fn begin_snapshot(&mut self) {
        self.epoch += 1;
        self.changed.clear();
    }

    /// The journal epoch of the snapshot this index was last saved as (or is being saved as).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Stores changed since the last call (or the last snapshot), with their entries now
    /// (`None`: removed).
    pub fn take_changes(&mut self) -> Vec<(String, Option<IndexEntry>)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|name| {
                let entry = self.entries.get(&name).map(|slot| slot.entry.clone());
                (name, entry)
            })
            .collect()
    }

    /// How many stores changed since the last [`StoreIndex::take_changes`].
    pub fn changes_pending(&self) -> usize {
        self.changed.len()
    }

    pub fn get(&self, name: &str) -> Option<&IndexEntry> {
        self.entries.get(name).map(|slot| &slot.entry)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &IndexEntry)> {
        self.entries.iter().map(|(name, slot)| (name, &slot.entry))
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// The entries the holdings digest covers (held stores and tombstones) with names from
    /// `lower` (inclusive) to `upper` (exclusive; `None`: to the end), in name order. Nothing
    /// when the bounds are reversed or equal.
    pub fn holdings_in<'a>(
        &'a self,
        lower: &'a str,
        upper: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a IndexEntry)> + 'a {
        self.entries_in(lower, upper)
            .filter(|(_, slot)| slot.entry.is_holding())
            .map(|(name, slot)| (name, &slot.entry))
    }

    /// The names and fingerprint parts of the holdings in the range (see [`Self::holdings_in`]).
    pub fn holding_parts_in<'a>(
        &'a self,
        lower: &'a str,
        upper: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Hash32)> + 'a {
        self.entries_in(lower, upper)
            .filter_map(|(name, slot)| Some((name, slot.holding_part()?)))
    }

    /// Every entry with a name in the range (see [`Self::holdings_in`]).
    fn entries_in<'a>(
        &'a self,
        lower: &'a str,
        upper: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Slot)> + 'a {
        let bounds = match upper {
            Some(upper) if upper <= lower => None,
            _ => Some((
                Bound::Included(lower),
                upper.map_or(Bound::Unbounded, Bound::Excluded),
            )),
        };
        bounds
            .into_iter()
            .flat_map(move |bounds| self.entries.range::<str, _>(bounds))
    }

    /// Like [`Self::range_fingerprint`] over every version this node knows in the range, its
    /// content here or still to fetch: what a peer's holdings are compared with when this node
    /// asks what it lacks (a version it knows and has yet to fetch need not be sent again).
    pub fn known_range_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, Hash32) {
        self.known_range_fingerprint_where(lower, upper, |_, _| true)
    }

    /// [`Self::known_range_fingerprint`] counting only the entries `counts` accepts, and every
    /// holding.
    pub fn known_range_fingerprint_where(
        &self,
        lower: &str,
        upper: Option<&str>,
        counts: impl Fn(&str, &IndexEntry) -> bool,
    ) -> (u64, Hash32) {
        let mut fingerprint = RangeFingerprint::default();
        for (name, slot) in self.entries_in(lower, upper) {
            if slot.entry.is_holding() || counts(name, &slot.entry) {
                fingerprint.add(&slot.part);
            }
        }
        (fingerprint.count, fingerprint.xor)
    }

    /// How many entries [`Self::holdings_in`] the range has, and the XOR of their parts of the
    /// holdings digest: two nodes with the same answer for a range hold the same versions there.
    pub fn range_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, Hash32) {
        let mut fingerprint = RangeFingerprint::default();
        for (_, part) in self.holding_parts_in(lower, upper) {
            fingerprint.add(part);
        }
        (fingerprint.count, fingerprint.xor)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, name: String, entry: IndexEntry) {
        let slot = Slot::new(&name, entry);
        self.insert_slot(name, slot);
    }

    fn insert_slot(&mut self, name: String, slot: Slot) {
        self.remove(&name);
        if let Some(part) = slot.holding_part() {
            toggle(&mut self.fingerprint, part);
            self.holdings += 1;
        }
        let entry = &slot.entry;
        if let Some(content) = entry.content.as_ref().filter(|_| entry.is_held()) {
            self.held.0 += 1;
            self.held.1 += content.size;
        }
        if !self.changed.contains(&name) {
            self.changed.insert(name.clone());
        }
        self.entries.insert(name, slot);
    }

    pub fn remove(&mut self, name: &str) -> Option<IndexEntry> {
        let old = self.entries.remove(name)?;
        if !self.changed.contains(name) {
            self.changed.insert(name.to_owned());
        }
        if let Some(part) = old.holding_part() {
            toggle(&mut self.fingerprint, part);
            self.holdings -= 1;
        }
        let old = old.entry;
        if let Some(content) = old.content.as_ref().filter(|_| old.is_held()) {
            self.held.0 -= 1;
            self.held.1 -= content.size;
        }
        Some(old)
    }

    /// Changes one entry in place (the fingerprint follows).
    pub fn update<R>(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut IndexEntry) -> R,
    ) -> Option<R> {
        let mut entry = self.remove(name)?;
        let result = change(&mut entry);
        self.insert(name.to_owned(), entry);
        Some(result)
    }

    /// Stores held in the data folder, and their bytes.
    pub fn held(&self) -> (u64, u64) {
        self.held
    }

    /// The Lamport value of a new local version of `name`: above its current version, and at
    /// least `now_ms` (a hybrid logical clock: values follow the wall clock, so a far-ahead value
    /// can be told from an honest one, and they never run out). Only the store's own version
    /// counts: version order is per store, so no peer can push the clock of stores it may not
    /// write.
    pub fn next_lamport(&self, name: &str, now_ms: u64) -> u64 {
        let current = self.get(name).map_or(0, |e| e.version.lamport);
        current.saturating_add(1).max(now_ms)
    }

    /// A digest of what this node holds (held stores and tombstones), for anti-entropy: two
    /// nodes with the same digest have nothing to exchange. Returns the digest and the count.
    pub fn holdings_digest(&self) -> (Hash32, u64) {
        (self.fingerprint, self.holdings)
    }
}

/// XOR is its own inverse: toggling a part twice removes it.
fn toggle(fingerprint: &mut Hash32, part: &Hash32) {
    for (acc, byte) in fingerprint.iter_mut().zip(part) {
        *acc ^= byte;
    }
}

/// The entries saved as a map of name to entry; their fingerprint parts are hashed on load.
mod slots {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{IndexEntry, Slot};

    pub fn serialize<S: Serializer>(
        entries: &BTreeMap<String, Slot>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(entries.iter().map(|(name, slot)| (name, &slot.entry)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Slot>, D::Error> {
        let entries = BTreeMap::<String, IndexEntry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|(name, entry)| {
                let slot = Slot::new(&name, entry);
                (name, slot)
            })
            .collect())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a reader sees the old
/// or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_atomic`] with the content written by `write` through a buffer.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut file = io::BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        write(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
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

mod base64_signature {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::store::record::Signature;

    pub fn serialize<S: Serializer>(
        signature: &Option<Signature>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match signature {
            Some(bytes) => s.serialize_some(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signature>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        crate::store::record::decode_signature(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom("signature is not 64 bytes of base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::record;
    use libp2p::identity::Keypair;
    use proptest::prelude::*;

    fn content(byte: u8) -> Content {
        let digest = hash::digest_reader(&[byte; 100][..]).unwrap();
        digest.into()
    }

    fn meta(inode: u64) -> LocalMeta {
        LocalMeta {
            size: 100,
            mtime_ns: 5,
            ctime_ns: 6,
            inode,
        }
    }

    fn signed_entry(key: &Keypair, name: &str, lamport: u64) -> IndexEntry {
        let signed = record(key, name, lamport).sign(key).unwrap();
        let owner = signed.record.owner.clone();
        IndexEntry::from_signed(&signed, owner, 1000)
    }

    /// An index with `a` and `b`, saved as a snapshot; the index in memory afterwards.
    fn saved_snapshot(path: &Path, key: &Keypair) -> StoreIndex {
        let mut index = StoreIndex::new();
        index.insert("a".into(), signed_entry(key, "a", 1));
        index.insert("b".into(), signed_entry(key, "b", 1));
        index.begin_snapshot();
        index.save(path).unwrap();
        index
    }

    #[test]
    fn changes_appended_to_the_journal_after_a_snapshot_are_there_after_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved_snapshot(&path, &key);
        index.insert("a".into(), signed_entry(&key, "a", 2));
        index.remove("b");
        index.insert("c".into(), signed_entry(&key, "c", 3));
        let changes = index.take_changes();
        assert_eq!(changes.len(), 3, "{changes:?}");
        super::super::journal::append(&path, index.epoch(), &changes).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(loaded.holdings_digest(), index.holdings_digest());
        assert_eq!(loaded.changes_pending(), 0);
    }

    #[test]
    fn a_new_snapshot_drops_the_journal_and_its_stale_lines_are_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved_snapshot(&path, &key);
        index.insert("a".into(), signed_entry(&key, "a", 2));
        let old_epoch = index.epoch();
        let changes = index.take_changes();
        super::super::journal::append(&path, old_epoch, &changes).unwrap();
        index.insert("a".into(), signed_entry(&key, "a", 3));
        index.begin_snapshot();
        index.save(&path).unwrap();
        assert!(!super::super::journal::path_for(&path).exists());
        // A crash between the snapshot's rename and the journal's removal: the old line is
        // still there, and must not bring lamport 2 back over 3.
        super::super::journal::append(&path, old_epoch, &changes).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded.get("a").unwrap().version.lamport, 3);
    }

    #[test]
    fn journal_lines_with_hostile_names_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let index = saved_snapshot(&path, &key);
        let changes = vec![("../escape".to_string(), Some(signed_entry(&key, "x", 4)))];
        super::super::journal::append(&path, index.epoch(), &changes).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert!(!loaded.contains("../escape"));
        assert_eq!(loaded.len(), 2);
    }

    #[test]
    fn index_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = StoreIndex::new();
        let mut held = signed_entry(&key, "s1", 3);
        held.local = Some(meta(7));
        held.content.as_mut().unwrap().chunks = Some(vec![[1; 32]]);
        index.insert("s1".into(), held);
        let mut tombstone = signed_entry(&key, "gone", 9);
        tombstone.content = None;
        index.insert("gone".into(), tombstone);
        index.save(&path).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(loaded.holdings_digest(), index.holdings_digest());
        assert!(!dir.path().join(".index.json.tmp").exists());
        let signed = loaded.get("s1").unwrap().signed("s1").unwrap();
        signed
            .verify(&mut crate::store::record::KeyCache::default())
            .unwrap();
    }

    #[test]
    fn a_format_1_index_loads_as_legacy_entries() {
        let origin = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_base58();
        let v1 = format!(
            r#"{{"highestLamport":4,"entries":{{"s":{{"version":{{"lamport":4,"origin":"{origin}"}},
            "content":{{"size":100,"hash":"{}"}},"previous":{{"lamport":2,"origin":"{origin}"}},
            "local":{{"size":100,"mtimeNs":1,"ctimeNs":1,"inode":1}}}}}}}}"#,
            content(1).hash_hex()
        );
        let index = StoreIndex::from_bytes(v1.as_bytes()).unwrap();
        let entry = index.get("s").unwrap();
        assert!(entry.is_legacy() && entry.is_held());
        assert_eq!(entry.replaces, Some(Version::new(2, origin)));
        assert!(
            entry.signed("s").is_none(),
            "a legacy entry is never relayed"
        );
        assert_eq!(index.holdings_digest().1, 1);
    }

    #[test]
    fn a_newer_format_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        fs::write(&path, br#"{"format":4,"highestLamport":0,"entries":{}}"#).unwrap();
        let err = StoreIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("format 4"), "{err}");
    }

    #[test]
    fn missing_index_is_empty_and_corrupt_index_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert_eq!(StoreIndex::load(&path).unwrap(), StoreIndex::new());
        fs::write(&path, b"{not json").unwrap();
        let err = StoreIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("index.json"), "{err}");
    }

    #[test]
    fn hostile_names_and_peer_ids_in_a_saved_index_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = StoreIndex::new();
        index.insert("../escape".into(), signed_entry(&key, "ok", 1));
        index.insert("ok".into(), signed_entry(&key, "ok", 1));
        let mut bad_owner = signed_entry(&key, "bad", 1);
        bad_owner.owner = Some("not a peer".into());
        index.insert("bad".into(), bad_owner);
        index.save(&path).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded.names().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn next_lamport_is_above_the_stores_version_and_follows_the_clock() {
        let key = Keypair::generate_ed25519();
        let mut index = StoreIndex::new();
        index.insert("s".into(), signed_entry(&key, "s", 41));
        assert_eq!(index.next_lamport("s", 0), 42);
        assert_eq!(index.next_lamport("s", 5_000), 5_000);
        assert_eq!(index.next_lamport("new", 7), 7);
        index.insert("max".into(), signed_entry(&key, "max", u64::MAX));
        assert_eq!(
            index.next_lamport("max", 0),
            u64::MAX,
            "saturates, never wraps"
        );
        assert_eq!(
            index.next_lamport("s", 0),
            42,
            "another store's value does not count"
        );
    }

    #[test]
    fn the_digest_follows_held_content_and_tombstones_only() {
        let key = Keypair::generate_ed25519();
        let mut a = StoreIndex::new();
        let mut held = signed_entry(&key, "s", 1);
        held.local = Some(meta(1));
        a.insert("s".into(), held.clone());
        let mut b = a.clone();
        assert_eq!(a.holdings_digest(), b.holdings_digest());
        // A store b only knows about (not held yet) does not change what b offers.
        b.insert("t".into(), signed_entry(&key, "t", 2));
        assert_eq!(a.holdings_digest(), b.holdings_digest());
        b.update("s", |e| {
            e.version = Version::new(2, e.version.origin.clone())
        });
        assert_ne!(a.holdings_digest(), b.holdings_digest());
        b.update("s", |e| {
            e.version = Version::new(1, e.version.origin.clone())
        });
        assert_eq!(
            a.holdings_digest(),
            b.holdings_digest(),
            "incremental and exact"
        );
        b.remove("s");
        assert_eq!(b.holdings_digest(), StoreIndex::new().holdings_digest());
    }

    #[test]
    fn range_fingerprints_add_up_to_the_digest_and_reversed_bounds_are_empty() {
        let key = Keypair::generate_ed25519();
        let mut index = StoreIndex::new();
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let mut entry = signed_entry(&key, name, i as u64 + 1);
            entry.local = Some(meta(i as u64));
            index.insert(name.into(), entry);
        }
        index.insert("wanted".into(), signed_entry(&key, "wanted", 9));
        let (digest, count) = index.holdings_digest();
        assert_eq!(index.range_fingerprint("", None), (count, digest));
        let (low, high) = (
            index.range_fingerprint("", Some("c")),
            index.range_fingerprint("c", None),
        );
        assert_eq!((low.0, high.0), (2, 2), "the wanted store is not a holding");
        let mut xor = low.1;
        xor.iter_mut().zip(high.1).for_each(|(a, b)| *a ^= b);
        assert_eq!(xor, digest);
        assert_eq!(index.range_fingerprint("c", Some("c")), (0, [0; 32]));
        let (known, _) = index.known_range_fingerprint("", None);
        assert_eq!(known, count + 1, "the wanted store is known");
        assert_eq!(index.range_fingerprint("d", Some("a")), (0, [0; 32]));
        let names: Vec<&String> = index.holdings_in("b", Some("d")).map(|(n, _)| n).collect();
        assert_eq!(names, ["b", "c"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: an index or an error, never a panic, and nothing invalid kept.
        #[test]
        fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(index) = StoreIndex::from_bytes(&bytes) {
                prop_assert!(index.names().all(|n| is_valid_store_name(n)));
            }
        }

        /// JSON-shaped input with arbitrary field values.
        #[test]
        fn loading_arbitrary_entries_keeps_only_valid_ones(
            name in "[ -~]{0,40}",
            origin in "[1-9A-Za-z]{0,60}",
            lamport in any::<u64>(),
            size in any::<u64>(),
            hash in "[0-9a-f]{0,70}",
            signature in "[A-Za-z0-9+/=]{0,100}",
        ) {
            let text = serde_json::json!({
                "format": 2,
                "highestLamport": lamport,
                "entries": { name.clone(): {
                    "version": {"lamport": lamport, "origin": origin},
                    "content": {"size": size, "hash": hash},
                    "signature": signature,
                }}
            })
            .to_string();
            if let Ok(index) = StoreIndex::from_bytes(text.as_bytes()) {
                for (name, entry) in index.iter() {
                    prop_assert!(is_valid_store_name(name));
                    prop_assert!(parse_canonical_peer_id(&entry.version.origin).is_some());
                }
            }
        }
    }
}
