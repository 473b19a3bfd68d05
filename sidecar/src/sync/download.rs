//! Downloading one store's content: chunk manifest, then chunks from every peer that holds the
//! content, several in flight per peer, each verified before it is written.
//!
//! The partial file, its manifest and the list of verified chunks live in the temporary folder,
//! so an interrupted download resumes: chunks recorded as verified are checked again against the
//! manifest (cheap, and safe after a crash) and only the rest is fetched. A peer that serves a bad
//! chunk or manifest is reported for a ban and its chunks go to the other peers. The decisions
//! (which chunk next, which peer to give up) are [`ChunkPlan`]'s; this module does the IO.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use parking_lot::Mutex;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

use super::chunk_maps::MAX_MAPPED_SIZE;
use super::chunk_plan::{AfterFailure, ChunkPlan, Failure};
use super::client::{ClientError, SyncClient};
use super::delta::{
    OlderFile, PieceSource, copy_older_pieces, older_chunk_map, plan_moved, reuse_older_chunks,
    verify_chunks, worth_mapping,
};
use super::metrics::{Direction, SyncMetrics};
use super::stream_pool::StreamPool;
use super::swarming::{FETCHING_NOTICES, PartialContent, Serving, Swarming, count_bits};
use crate::store::cdc::ContentChunk;
use crate::store::disk::{self, DiskError};
use crate::store::hash::{
    self, CHUNK_SIZE, ChainingValue, Hash32, chunk_count, chunk_len, verify_chunk, verify_manifest,
};
use crate::store::part_file::{ChunkBuffer, PartFile};

/// Rounds of chunk fetching before a download gives up (a round ends when every worker stopped;
/// chunks handed back by a failing peer are retried by the others in the next round).
const MAX_ROUNDS: usize = 4;
/// New streams a worker opens to its peer after a stream failed, before it gives the peer up.
const MAX_STREAM_REOPENS: usize = 3;
/// Pause before reopening a failed stream, times the attempt number.
const REOPEN_BACKOFF: Duration = Duration::from_millis(25);
/// Peers asked for a chunk map before giving delta sync up.
const MAP_PEERS: usize = 3;
/// How often a download looks for peers that fetch the same version (chunk swarming), and how
/// often a worker asks such a peer again what it has when it has nothing this node lacks.
const SWARM_POLL: Duration = Duration::from_millis(100);
/// Workers that pull from one peer fetching the same version (each holds a chunk buffer).
const WORKERS_PER_RECEIVER: usize = 2;
/// Peers fetching the same version that one download pulls from.
const MAX_RECEIVERS: usize = 4;
/// Downloads of fewer missing chunks neither tell their peers nor pull from other receivers:
/// they are over before swapping chunks could pay for its messages.
const MIN_SWARM_CHUNKS: u64 = 8;
/// A peer fetching the same version is left once it has verified no new chunk for this long.
const RECEIVER_STALL: Duration = Duration::from_secs(5);

/// Whom a worker pulls chunks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A peer that holds the whole version.
    Holder,
    /// A peer that downloads the version too: only the chunks its bitmap shows.
    Receiver,
}

/// What a worker knows of a receiver's verified chunks.
struct ReceiverChunks {
    have: Vec<u8>,
    cursor: u64,
    grew_at: tokio::time::Instant,
}

/// How downloads are made.
#[derive(Clone, Debug)]
pub struct DownloadConfig {
    pub protocol: StreamProtocol,
    pub tmp_dir: PathBuf,
    /// Space that must stay free on the disk of `tmp_dir` (for the error a full disk gives).
    pub min_free_bytes: u64,
    /// Concurrent requests (streams) per peer and download.
    pub streams_per_peer: usize,
    /// Bound on opening a stream and on every request.
    pub request_timeout: Duration,
}

/// What to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadTarget {
    pub name: String,
    pub size: u64,
    pub hash: Hash32,
    /// The older version in the data folder, whose shared chunks are copied, not fetched.
    pub older: Option<OlderFile>,
}

/// A complete, verified and fsynced download, still in the temporary folder.
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    pub manifest: Vec<ChainingValue>,
    /// Bytes reused from an earlier, interrupted attempt.
    pub resumed_bytes: u64,
    /// Bytes fetched from peers in this attempt.
    pub fetched_bytes: u64,
    /// Bytes copied from the older version of the store (see [`crate::sync::delta`]).
    pub reused_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no peer served a valid chunk manifest for store {name}: {last_error}")]
    NoManifest { name: String, last_error: String },
    #[error(
        "download of store {name} stopped with {missing} of {total} chunks missing: {last_error}"
    )]
    Incomplete {
        name: String,
        missing: u64,
        total: u64,
        last_error: String,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("writing the download of store {name} to {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DownloadError {
    /// Short label for the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoManifest { .. } => "no_manifest",
            Self::Incomplete { .. } => "incomplete",
            Self::Disk(DiskError::InsufficientSpace { .. }) => "disk_full",
            Self::Disk(_) | Self::Io { .. } => "io",
        }
    }
}

/// Files of one partial download in the temporary folder.
#[derive(Clone, Debug)]
pub struct PartialFiles {
    pub part: PathBuf,
    pub manifest: PathBuf,
    pub done: PathBuf,
}

impl PartialFiles {
    pub fn new(tmp_dir: &Path, name: &str, hash: &Hash32) -> Self {
        let stem = format!("{name}.{}", hash::to_hex(hash));
        Self {
            part: tmp_dir.join(format!("{stem}.part")),
            manifest: tmp_dir.join(format!("{stem}.manifest")),
            done: tmp_dir.join(format!("{stem}.done")),
        }
    }

    /// Removes every file of the partial download.
    pub fn remove(&self) {
        for path in [&self.part, &self.manifest, &self.done] {
            let _ = fs::remove_file(path);
        }
    }

    /// Removes the bookkeeping files once the part file was installed.
    pub fn remove_records(&self) {
        let _ = fs::remove_file(&self.manifest);
        let _ = fs::remove_file(&self.done);
    }
}

/// Makes downloads; cheap to clone.
#[derive(Clone)]
pub struct Downloader {
    control: libp2p_stream::Control,
    config: DownloadConfig,
    metrics: SyncMetrics,
    bans: mpsc::UnboundedSender<(PeerId, String)>,
    pool: Arc<StreamPool>,
    swarming: Swarming,
}

/// One multi-chunk download in progress: its plan, and what its workers share.
struct Transfer<'a> {
    target: &'a DownloadTarget,
    files: PartialFiles,
    plan: Mutex<ChunkPlan>,
    manifest: Arc<Vec<ChainingValue>>,
    file: Arc<PartFile>,
    progress: Arc<AtomicU64>,
    fetched: AtomicU64,
    /// What peers may fetch of this download while it runs.
    serving: Serving,
}

impl Downloader {
    /// `bans` receives `(peer, reason)` for every peer that served bad data.
    pub fn new(
        control: libp2p_stream::Control,
        config: DownloadConfig,
        metrics: SyncMetrics,
        bans: mpsc::UnboundedSender<(PeerId, String)>,
        swarming: Swarming,
    ) -> Self {
        Self {
            control,
            config,
            metrics,
            bans,
            pool: Arc::default(),
            swarming,
        }
    }

    /// Closes idle streams that are too old, and every idle stream to `gone` (a peer that
    /// disconnected); forgets what `gone` said it fetches, and fetching notices too old to count.
    pub fn expire_idle_streams(&self, gone: Option<&PeerId>) {
        self.pool.expire(gone);
        self.swarming.forget(gone, std::time::Instant::now());
    }

    async fn open(&self, peer: PeerId) -> Result<SyncClient, ClientError> {
        let mut control = self.control.clone();
        SyncClient::open(
            &mut control,
            peer,
            self.config.protocol.clone(),
            self.config.request_timeout,
        )
        .await
    }

    /// An idle stream to `peer`, or a new one.
    async fn client(&self, peer: PeerId) -> Result<SyncClient, ClientError> {
        match self.pool.take(&peer) {
            Some(client) => Ok(client),
            None => self.open(peer).await,
        }
    }

    pub fn config(&self) -> &DownloadConfig {
        &self.config
    }

    /// Downloads `target` from `peers` (holders) into the temporary folder. `neighbours` are
    /// other connected peers, told of a multi-chunk download so that those fetching the same
    /// version can swap chunks with this node (see [`super::swarming`]). `progress` counts
    /// verified bytes (resumed ones included).
    pub async fn download(
        &self,
        target: &DownloadTarget,
        peers: &[PeerId],
        neighbours: &[PeerId],
        progress: Arc<AtomicU64>,
    ) -> Result<Downloaded, DownloadError> {
        if target.size <= CHUNK_SIZE {
            return self.download_single_chunk(target, peers, progress).await;
        }
        let files = PartialFiles::new(&self.config.tmp_dir, &target.name, &target.hash);
        let io_error = |path: &Path, source: io::Error| DownloadError::Io {
            name: target.name.clone(),
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(&self.config.tmp_dir).map_err(|e| io_error(&self.config.tmp_dir, e))?;
        let mut plan = ChunkPlan::new(vec![0; chunk_count(target.size) as usize]);
        let manifest = Arc::new(self.manifest(target, peers, &files, &mut plan).await?);
        let total = chunk_count(target.size);

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&files.part)
            .map_err(|e| io_error(&files.part, e))?;
        let (file, done, resumed_bytes, reused_bytes) = {
            let resume_files = files.clone();
            let size = target.size;
            let manifest = manifest.clone();
            let older = target.older.clone();
            tokio::task::spawn_blocking(move || {
                let (file, mut done, resumed) = resume(file, &resume_files, size, &manifest)?;
                let reused = match &older {
                    Some(older) => reuse_older_chunks(older, &file, size, &manifest, &mut done)?,
                    None => 0,
                };
                if reused > 0 {
                    persist_done(&done, &resume_files);
                }
                io::Result::Ok((
                    PartFile::new(file, &resume_files.part),
                    done,
                    resumed,
                    reused,
                ))
            })
            .await
            .map_err(|e| io_error(&files.part, io::Error::other(e)))?
            .map_err(|e| io_error(&files.part, e))?
        };
        if resumed_bytes > 0 {
            tracing::info!(
                store = %target.name,
                resumed_bytes,
                total_bytes = target.size,
                "resuming an interrupted download from verified chunks"
            );
            self.metrics.resumed_bytes.inc_by(resumed_bytes);
        }
        tracing::debug!(
            store = %target.name,
            direct_io = file.is_direct(),
            "writing chunks of a multi-chunk download"
        );
        let mut done = done;
        let (moved_bytes, moved_fetched) = match &target.older {
            Some(older) if worth_mapping(older.meta.size, &done) => {
                self.reuse_moved_bytes(target, peers, older, file.file(), &manifest, &mut done)
                    .await
            }
            _ => (0, 0),
        };
        if moved_bytes > 0 {
            persist_done(&done, &files);
        }
        let reused_bytes = reused_bytes + moved_bytes;
        if reused_bytes > 0 {
            tracing::debug!(
                store = %target.name,
                reused_bytes,
                total_bytes = target.size,
                "reusing the chunks the older version shares"
            );
            self.metrics.reused_bytes.inc_by(reused_bytes);
        }
        progress.store(
            resumed_bytes + reused_bytes + moved_fetched,
            Ordering::Relaxed,
        );
        let remaining = target.size - resumed_bytes - reused_bytes - moved_fetched;
        let serving = self.swarming.serve(
            &target.name,
            target.hash,
            PartialContent::new(files.part.clone(), target.size, &done),
        );
        // Peers caught or given up while the manifest was fetched stay out.
        plan.reset_chunks(done);
        if plan.missing() > 1 {
            plan.start_at(rand::thread_rng().gen_range(0..total));
        }
        let swarm = plan.missing() >= MIN_SWARM_CHUNKS;
        if swarm {
            self.tell_fetching(target, neighbours);
        }
        let transfer = Transfer {
            target,
            files: files.clone(),
            plan: Mutex::new(plan),
            manifest: manifest.clone(),
            file: Arc::new(file),
            progress,
            fetched: AtomicU64::new(moved_fetched),
            serving,
        };

        for _ in 0..MAX_ROUNDS {
            let workers = {
                let mut plan = transfer.plan.lock();
                if plan.missing() == 0 {
                    break;
                }
                plan.start_round(peers, self.config.streams_per_peer)
            };
            if workers.is_empty() {
                break;
            }
            self.run_round(workers, peers, swarm, &transfer).await;
            persist_done(&transfer.plan.lock().done_flags(), &files);
            if let Some(error) = transfer.plan.lock().take_fatal() {
                return Err(match error.raw_os_error() {
                    Some(code) if code == nix::libc::ENOSPC => {
                        DownloadError::Disk(DiskError::InsufficientSpace {
                            path: self.config.tmp_dir.clone(),
                            needed: remaining,
                            reserve: self.config.min_free_bytes,
                            available: disk::available_bytes(&self.config.tmp_dir).unwrap_or(0),
                        })
                    }
                    _ => io_error(&files.part, error),
                });
            }
        }

        let (missing, last_error) = {
            let plan = transfer.plan.lock();
            (plan.missing(), plan.last_error())
        };
        if missing > 0 {
            return Err(DownloadError::Incomplete {
                name: target.name.clone(),
                missing,
                total,
                last_error,
            });
        }
        let file = transfer.file.clone();
        tokio::task::spawn_blocking(move || file.sync())
            .await
            .map_err(|e| io_error(&files.part, io::Error::other(e)))?
            .map_err(|e| io_error(&files.part, e))?;
        Ok(Downloaded {
            path: files.part,
            manifest: Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone()),
            resumed_bytes,
            fetched_bytes: transfer.fetched.load(Ordering::Relaxed),
            reused_bytes,
        })
    }

    /// Builds missing chunks from bytes the older file holds at other offsets (an insertion
    /// moved them), by matching its chunk map with a peer's, and fetches the rest of those chunks
    /// by range. Marks the chunks that verify in `done`; returns the bytes copied and fetched.
    /// Anything that fails (an older peer without chunk maps, a broken stream, a lying map) only
    /// leaves chunks for the whole-chunk fetch.
    async fn reuse_moved_bytes(
        &self,
        target: &DownloadTarget,
        peers: &[PeerId],
        older: &OlderFile,
        part: &File,
        manifest: &Arc<Vec<ChainingValue>>,
        done: &mut [u8],
    ) -> (u64, u64) {
        if target.size.max(older.meta.size) > MAX_MAPPED_SIZE {
            return (0, 0);
        }
        let (Ok(part), older) = (part.try_clone(), older.clone()) else {
            return (0, 0);
        };
        let part = Arc::new(part);
        // The older file is cut while a peer cuts (or finds) the new version's map.
        let older_map = {
            let older = older.clone();
            async move {
                tokio::task::spawn_blocking(move || older_chunk_map(&older))
                    .await
                    .ok()
                    .flatten()
            }
        };
        let (older_map, found) = tokio::join!(older_map, self.peer_chunk_map(target, peers));
        let Some((mut client, new_map)) = found else {
            return (0, 0);
        };
        let Some(older_map) = older_map else {
            self.pool.put(client);
            return (0, 0);
        };
        let builds = plan_moved(&older_map, &new_map, target.size, done);
        if builds.is_empty() {
            self.pool.put(client);
            return (0, 0);
        }
        let copied = {
            let (older, part, builds) = (older.clone(), part.clone(), builds.clone());
            tokio::task::spawn_blocking(move || copy_older_pieces(&older, &part, &builds)).await
        };
        if !matches!(copied, Ok(Ok(true))) {
            self.pool.put(client);
            return (0, 0);
        }
        let mut built = Vec::with_capacity(builds.len());
        let mut fetched = 0;
        let mut clean = true;
        'builds: for build in &builds {
            for piece in build
                .pieces
                .iter()
                .filter(|p| p.source == PieceSource::Peer)
            {
                let mut bytes = vec![0u8; piece.len as usize];
                let result = client
                    .range(&target.name, &target.hash, piece.offset, &mut bytes)
                    .await;
                if let Err(error) = result {
                    tracing::debug!(store = %target.name, %error, "range fetch failed");
                    clean = false;
                    break 'builds;
                }
                if part.write_all_at(&bytes, piece.offset).is_err() {
                    break 'builds;
                }
                fetched += piece.len;
                self.metrics.add_bytes(Direction::Received, piece.len);
            }
            built.push(build.index);
        }
        if clean {
            self.pool.put(client);
        } else {
            client.close().await;
        }
        let verified = {
            let (part, manifest, size) = (part.clone(), manifest.clone(), target.size);
            tokio::task::spawn_blocking(move || verify_chunks(&part, size, &manifest, &built))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        let mut reused = 0;
        let mut kept_fetched = 0;
        for index in verified {
            let Some(build) = builds.iter().find(|b| b.index == index) else {
                continue;
            };
            done[index as usize] = 1;
            let from_peer = build.peer_bytes();
            reused += chunk_len(target.size, index) - from_peer;
            kept_fetched += from_peer;
        }
        if kept_fetched < fetched {
            tracing::info!(
                store = %target.name,
                wasted_bytes = fetched - kept_fetched,
                "chunks built from a chunk map failed verification; they are fetched whole"
            );
        }
        (reused, kept_fetched)
    }

    /// The new version's chunk map from the first of a few peers that serves one, with the
    /// stream it came on.
    async fn peer_chunk_map(
        &self,
        target: &DownloadTarget,
        peers: &[PeerId],
    ) -> Option<(SyncClient, Vec<ContentChunk>)> {
        for &peer in peers.iter().take(MAP_PEERS) {
            let Ok(mut client) = self.client(peer).await else {
                continue;
            };
            match client
                .chunk_map(&target.name, &target.hash, target.size)
                .await
            {
                Ok(map) => return Some((client, map)),
                // The stream may hold an unread answer: it is not reused.
                Err(error) => tracing::debug!(store = %target.name, %error, "no chunk map"),
            }
        }
        None
    }

    /// The manifest, from the saved copy or from a peer, always checked against the file hash.
    async fn manifest(
        &self,
        target: &DownloadTarget,
        peers: &[PeerId],
        files: &PartialFiles,
        plan: &mut ChunkPlan,
    ) -> Result<Vec<ChainingValue>, DownloadError> {
        if let Ok(bytes) = fs::read(&files.manifest)
            && let Some(manifest) = hash::manifest_from_bytes(&bytes)
            && verify_manifest(target.size, &target.hash, &manifest)
        {
            return Ok(manifest);
        }
        for peer in peers {
            let result = async {
                let mut client = self.client(*peer).await?;
                let manifest = client
                    .manifest(&target.name, &target.hash, target.size)
                    .await;
                if manifest.is_ok() {
                    self.pool.put(client);
                }
                manifest
            }
            .await;
            match result {
                Ok(manifest) if verify_manifest(target.size, &target.hash, &manifest) => {
                    crate::store::index::write_atomic(
                        &files.manifest,
                        &hash::manifest_to_bytes(&manifest),
                    )
                    .map_err(|source| DownloadError::Io {
                        name: target.name.clone(),
                        path: files.manifest.clone(),
                        source,
                    })?;
                    return Ok(manifest);
                }
                Ok(_) => {
                    let reason =
                        format!("manifest of store {} does not match its hash", target.name);
                    if plan.caught(*peer, reason.clone()) {
                        self.report_bad_peer(*peer, &reason);
                    }
                }
                Err(e) => plan.give_up(*peer, e.to_string()),
            }
        }
        Err(DownloadError::NoManifest {
            name: target.name.clone(),
            last_error: plan.last_error(),
        })
    }

    fn report_bad_peer(&self, peer: PeerId, reason: &str) {
        self.metrics.verification_failures.inc();
        tracing::warn!(%peer, reason, "peer served data that failed verification; banning it");
        let _ = self.bans.send((peer, reason.to_owned()));
    }

    /// A store of at most one chunk: no manifest (the chunk's hash is the file hash) and nothing
    /// to resume. Peers are asked in turn until one serves bytes that verify; then one blocking
    /// call writes the file and fsyncs it, so a burst of small stores costs one thread hand-off
    /// per store.
    async fn download_single_chunk(
        &self,
        target: &DownloadTarget,
        peers: &[PeerId],
        progress: Arc<AtomicU64>,
    ) -> Result<Downloaded, DownloadError> {
        let files = PartialFiles::new(&self.config.tmp_dir, &target.name, &target.hash);
        // The size is the signed record's, at most one chunk: never a peer's claim.
        let mut data = vec![0u8; target.size as usize];
        let mut last_error = "no peer holds this version".to_owned();
        let mut verified = false;
        if target.size == 0 {
            verified = target.hash == *blake3::hash(b"").as_bytes();
            if !verified {
                last_error = "an empty store announced with the hash of non-empty content".into();
            }
        }
        for peer in peers.iter().filter(|_| target.size > 0) {
            if let Err(e) = self.fetch_single_chunk(*peer, target, &mut data).await {
                last_error = e.to_string();
                continue;
            }
            if verify_chunk(target.size, 0, &data, &[target.hash]) {
                verified = true;
                break;
            }
            let reason = format!(
                "chunk 0 of store {} failed BLAKE3 verification",
                target.name
            );
            last_error = format!("{peer}: {reason}");
            self.report_bad_peer(*peer, &reason);
        }
        if !verified {
            return Err(DownloadError::Incomplete {
                name: target.name.clone(),
                missing: chunk_count(target.size),
                total: chunk_count(target.size),
                last_error,
            });
        }
        let (tmp_dir, reserve, path, name) = (
            self.config.tmp_dir.clone(),
            self.config.min_free_bytes,
            files.part.clone(),
            target.name.clone(),
        );
        let size = target.size;
        let written = tokio::task::spawn_blocking(move || {
            write_synced(&tmp_dir, &path, &data).map_err(|source| match source.raw_os_error() {
                Some(code) if code == nix::libc::ENOSPC => {
                    DownloadError::Disk(DiskError::InsufficientSpace {
                        needed: size,
                        reserve,
                        available: disk::available_bytes(&tmp_dir).unwrap_or(0),
                        path: tmp_dir.clone(),
                    })
                }
                _ => DownloadError::Io { name, path, source },
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(DownloadError::Io {
                name: target.name.clone(),
                path: files.part.clone(),
                source: io::Error::other(e),
            })
        });
        if let Err(error) = written {
            files.remove();
            return Err(error);
        }
        progress.store(target.size, Ordering::Relaxed);
        self.metrics.add_bytes(Direction::Received, target.size);
        Ok(Downloaded {
            path: files.part,
            manifest: if target.size == 0 {
                Vec::new()
            } else {
                vec![target.hash]
            },
            resumed_bytes: 0,
            fetched_bytes: target.size,
            reused_bytes: 0,
        })
    }

    /// Chunk 0 of `target` from `peer` into `data` (not verified here). A pooled stream the peer
    /// has meanwhile closed is replaced by a fresh one at once; a fresh stream that fails (a peer
    /// under load drops inbound streams it cannot accept fast enough) is reopened a few times
    /// after a short pause.
    async fn fetch_single_chunk(
        &self,
        peer: PeerId,
        target: &DownloadTarget,
        data: &mut [u8],
    ) -> Result<(), ClientError> {
        let mut reopens = 0;
        loop {
            let pooled = self.pool.take(&peer);
            let from_pool = pooled.is_some();
            let mut client = match pooled {
                Some(client) => client,
                None => self.open(peer).await?,
            };
            match client.chunk(&target.name, &target.hash, 0, data).await {
                Ok(()) => {
                    self.pool.put(client);
                    return Ok(());
                }
                Err(ClientError::Io { .. }) if from_pool => self.pool.expire(Some(&peer)),
                Err(ClientError::Io { .. }) if reopens < MAX_STREAM_REOPENS => {
                    reopens += 1;
                    tokio::time::sleep(REOPEN_BACKOFF * reopens as u32).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the workers of one round until all stopped, and (with `swarm`) adds workers for up
    /// to [`MAX_RECEIVERS`] peers that say they fetch the same version meanwhile.
    async fn run_round(
        &self,
        workers: Vec<PeerId>,
        holders: &[PeerId],
        swarm: bool,
        transfer: &Transfer<'_>,
    ) {
        let target = transfer.target;
        let mut running: FuturesUnordered<_> = workers
            .into_iter()
            .map(|peer| self.worker(peer, Source::Holder, transfer).boxed())
            .collect();
        let mut joined: Vec<PeerId> = holders.to_vec();
        let mut poll = tokio::time::interval(SWARM_POLL);
        loop {
            tokio::select! {
                next = running.next() => if next.is_none() { break },
                _ = poll.tick(), if swarm && joined.len() < holders.len() + MAX_RECEIVERS => {
                    let now = std::time::Instant::now();
                    for peer in self.swarming.fetchers(&target.name, &target.hash, now) {
                        if joined.contains(&peer)
                            || joined.len() >= holders.len() + MAX_RECEIVERS
                            || !transfer.plan.lock().is_usable(&peer)
                        {
                            continue;
                        }
                        joined.push(peer);
                        for _ in 0..WORKERS_PER_RECEIVER {
                            transfer.plan.lock().add_worker(peer);
                            running.push(self.worker(peer, Source::Receiver, transfer).boxed());
                        }
                    }
                }
            }
        }
    }

    /// Tells up to [`FETCHING_NOTICES`] random `neighbours` that this node fetches `target`, in
    /// the background (a peer from before swarming refuses: it only cannot swap chunks).
    fn tell_fetching(&self, target: &DownloadTarget, neighbours: &[PeerId]) {
        let mut chosen = neighbours.to_vec();
        chosen.shuffle(&mut rand::thread_rng());
        chosen.truncate(FETCHING_NOTICES);
        for peer in chosen {
            let downloader = self.clone();
            let (name, hash) = (target.name.clone(), target.hash);
            tokio::spawn(async move {
                let told = async {
                    let mut client = downloader.client(peer).await?;
                    client.fetching(&name, &hash).await?;
                    downloader.pool.put(client);
                    Ok::<_, ClientError>(())
                };
                if let Err(error) = told.await {
                    tracing::debug!(%peer, store = %name, %error, "fetching notice not delivered");
                }
            });
        }
    }

    /// The next chunk to fetch from a peer that downloads the same version: one its bitmap
    /// shows and no worker fetches. Asks it again every [`SWARM_POLL`] while there is none;
    /// `None` once nothing is missing, or the peer verified nothing new for [`RECEIVER_STALL`].
    async fn next_from_receiver(
        &self,
        client: &mut SyncClient,
        transfer: &Transfer<'_>,
        chunks: &mut Option<ReceiverChunks>,
    ) -> Result<Option<u64>, ClientError> {
        let target = transfer.target;
        let peer = client.peer();
        loop {
            if let Some(known) = chunks.as_mut() {
                let next = {
                    let mut plan = transfer.plan.lock();
                    match plan.next_chunk_in(&peer, &known.have, &mut known.cursor) {
                        Some(index) => Some(Some(index)),
                        None if plan.missing() == 0
                            || !plan.is_usable(&peer)
                            || known.grew_at.elapsed() >= RECEIVER_STALL =>
                        {
                            Some(None)
                        }
                        None => None,
                    }
                };
                if let Some(next) = next {
                    return Ok(next);
                }
                tokio::time::sleep(SWARM_POLL).await;
            }
            let have = client.have(&target.name, &target.hash, target.size).await?;
            let now = tokio::time::Instant::now();
            match chunks {
                Some(known) => {
                    if count_bits(&have) > count_bits(&known.have) {
                        known.grew_at = now;
                    }
                    known.have = have;
                }
                None => {
                    *chunks = Some(ReceiverChunks {
                        have,
                        cursor: rand::thread_rng().gen_range(0..chunk_count(target.size)),
                        grew_at: now,
                    })
                }
            }
        }
    }

    /// Pulls chunks from one peer until the plan says stop.
    async fn worker(&self, peer: PeerId, source: Source, transfer: &Transfer<'_>) {
        let target = transfer.target;
        let mut client = match self.client(peer).await {
            Ok(client) => client,
            Err(e) => {
                transfer
                    .plan
                    .lock()
                    .worker_gave_up(peer, Some(e.to_string()));
                return;
            }
        };
        let mut buffer = ChunkBuffer::new(chunk_len(target.size, 0) as usize);
        let mut reopens = 0;
        // Only a stream whose last exchange completed cleanly goes back to the pool.
        let mut reusable = true;
        let mut receiver_chunks = None;
        loop {
            let next = match source {
                Source::Holder => transfer.plan.lock().next_chunk(&peer),
                Source::Receiver => {
                    match self
                        .next_from_receiver(&mut client, transfer, &mut receiver_chunks)
                        .await
                    {
                        Ok(next) => next,
                        Err(e) => {
                            transfer
                                .plan
                                .lock()
                                .worker_gave_up(peer, Some(e.to_string()));
                            client.close().await;
                            return;
                        }
                    }
                }
            };
            let Some(index) = next else {
                break;
            };
            let expected_len = chunk_len(target.size, index);
            let out = buffer
                .fill(expected_len as usize)
                .expect("no chunk is longer than the first one");
            if let Err(e) = client.chunk(&target.name, &target.hash, index, out).await {
                reusable = false;
                // A stream can die with its connection while the peer stays reachable over
                // another one (simultaneous dials), or a pooled stream may have been closed by
                // the peer; anything else means this peer cannot serve the version.
                let failure = match e {
                    ClientError::Io { .. }
                    | ClientError::Timeout { .. }
                    | ClientError::Open { .. } => Failure::Stream(e.to_string()),
                    _ => Failure::Refused(e.to_string()),
                };
                let after = transfer.plan.lock().failed(peer, index, failure);
                if after != AfterFailure::Reopen {
                    break;
                }
                if reopens >= MAX_STREAM_REOPENS {
                    transfer.plan.lock().worker_gave_up(peer, None);
                    return;
                }
                reopens += 1;
                // A peer under load drops inbound streams it cannot accept fast enough.
                tokio::time::sleep(REOPEN_BACKOFF * reopens as u32).await;
                match self.open(peer).await {
                    Ok(fresh) => {
                        client = fresh;
                        reusable = true;
                        continue;
                    }
                    Err(e) => {
                        transfer
                            .plan
                            .lock()
                            .worker_gave_up(peer, Some(e.to_string()));
                        return;
                    }
                }
            }
            let verify_and_write = {
                let manifest = transfer.manifest.clone();
                let file = transfer.file.clone();
                let size = target.size;
                move || {
                    let data = buffer.as_slice();
                    if !verify_chunk(size, index, data, &manifest) {
                        return (Ok(false), buffer);
                    }
                    let written = file.write_at(data, index * CHUNK_SIZE).map(|()| true);
                    (written, buffer)
                }
            };
            let (result, returned) = match tokio::task::spawn_blocking(verify_and_write).await {
                Ok(pair) => pair,
                Err(e) => {
                    transfer
                        .plan
                        .lock()
                        .failed(peer, index, Failure::Disk(io::Error::other(e)));
                    return;
                }
            };
            buffer = returned;
            match result {
                Ok(true) => {
                    transfer.serving.content.mark(index);
                    transfer.progress.fetch_add(expected_len, Ordering::Relaxed);
                    transfer.fetched.fetch_add(expected_len, Ordering::Relaxed);
                    self.metrics.add_bytes(Direction::Received, expected_len);
                    if source == Source::Receiver {
                        self.metrics.swarmed_bytes.inc_by(expected_len);
                    }
                    let flags = {
                        let mut plan = transfer.plan.lock();
                        plan.verified(index).then(|| plan.done_flags())
                    };
                    if let Some(flags) = flags {
                        persist_done(&flags, &transfer.files);
                    }
                }
                Ok(false) => {
                    let reason = format!(
                        "chunk {index} of store {} failed BLAKE3 verification",
                        target.name
                    );
                    let after = transfer
                        .plan
                        .lock()
                        .failed(peer, index, Failure::Corrupt(reason));
                    match after {
                        AfterFailure::Ban(reason) => self.report_bad_peer(peer, &reason),
                        _ => {
                            self.metrics.verification_failures.inc();
                        }
                    }
                    return;
                }
                Err(e) => {
                    transfer.plan.lock().failed(peer, index, Failure::Disk(e));
                    break;
                }
            }
        }
        if reusable {
            self.pool.put(client);
        } else {
            client.close().await;
        }
    }
}

/// Opens the partial file at the right size and keeps the chunks recorded as verified that still
/// verify. Returns the file, one byte per chunk (1 = verified) and the bytes reused.
fn resume(
    file: File,
    files: &PartialFiles,
    size: u64,
    manifest: &[ChainingValue],
) -> io::Result<(File, Vec<u8>, u64)> {
    let total = chunk_count(size) as usize;
    let mut done = fs::read(&files.done).unwrap_or_default();
    if file.metadata()?.len() != size || done.len() != total {
        file.set_len(0)?;
        file.set_len(size)?;
        done = vec![0; total];
    }
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    let mut resumed = 0;
    for index in 0..total as u64 {
        if done[index as usize] == 0 {
            continue;
        }
        let len = chunk_len(size, index) as usize;
        let ok = file
            .read_exact_at(&mut buffer[..len], index * CHUNK_SIZE)
            .is_ok()
            && verify_chunk(size, index, &buffer[..len], manifest);
        if ok {
            resumed += len as u64;
        } else {
            done[index as usize] = 0;
        }
    }
    Ok((file, done, resumed))
}

/// Writes `data` as the new file `path` (in `tmp_dir`, recreated if it vanished) and fsyncs it.
fn write_synced(tmp_dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = match File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(tmp_dir)?;
            File::create(path)?
        }
        result => result?,
    };
    file.write_all(data)?;
    file.sync_data()
}

/// Rewrites the record of verified chunks (temporary file + rename, so a kill leaves the old or
/// the new record; resume re-verifies anyway, so no fsync is needed).
fn persist_done(flags: &[u8], files: &PartialFiles) {
    let tmp = files.done.with_extension("done.tmp");
    let result = fs::write(&tmp, flags).and_then(|()| fs::rename(&tmp, &files.done));
    if let Err(error) = result {
        tracing::warn!(path = %files.done.display(), %error, "cannot record verified chunks");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::hash::digest_reader;
    use crate::store::index::{IndexEntry, LocalMeta, StoreIndex};
    use crate::store::record::tests::record;
    use crate::sync::protocol::sync_protocol;
    use crate::sync::server::{ServeContext, run_server};
    use futures::StreamExt;
    use libp2p::Multiaddr;
    use libp2p::identity::Keypair;
    use libp2p::swarm::SwarmEvent;
    use tokio_util::sync::CancellationToken;

    pub(crate) const NET: &str = "unit";

    /// A minimal swarm (TCP loopback, noise, yamux, libp2p-stream) connected to `dial`.
    pub(crate) async fn swarm_node(
        dial: &[Multiaddr],
    ) -> (PeerId, Multiaddr, libp2p_stream::Control) {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let address = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        for target in dial {
            swarm.dial(target.clone()).unwrap();
        }
        let mut connected = 0;
        while connected < dial.len() {
            let event = tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some())
                .await
                .expect("connection within 10 s");
            if let SwarmEvent::ConnectionEstablished { .. } = event {
                connected += 1;
            }
        }
        let peer = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        (peer, address, control)
    }

    /// A node that serves `content` as store `name`.
    pub(crate) async fn serving_node(
        name: &str,
        content: &[u8],
        corrupt: bool,
    ) -> (PeerId, Multiaddr, tempfile::TempDir) {
        let (peer, address, mut control) = swarm_node(&[]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.dig"));
        fs::write(&path, content).unwrap();
        let digest = digest_reader(content).unwrap();
        let key = Keypair::generate_ed25519();
        let signed = record(&key, name, 1).sign(&key).unwrap();
        let mut entry = IndexEntry::from_signed(&signed, signed.record.owner.clone(), 0);
        entry.content = Some(digest.into());
        entry.local = Some(LocalMeta::of_path(&path).unwrap());
        let mut index = StoreIndex::new();
        index.insert(name.to_owned(), entry);
        let context = ServeContext::new(
            Arc::new(parking_lot::RwLock::new(index)),
            dir.path().to_owned(),
            SyncMetrics::unregistered(),
            corrupt,
            None,
            Swarming::default(),
        );
        let incoming = control.accept(sync_protocol(NET)).unwrap();
        tokio::spawn(run_server(incoming, context, CancellationToken::new()));
        (peer, address, dir)
    }

    /// A node that holds nothing but is downloading `content` as store `name`, with the chunks
    /// `verified` written and marked (the rest of its part file is zeros).
    async fn receiving_node(
        name: &str,
        content: &[u8],
        verified: &[u64],
    ) -> (PeerId, Multiaddr, tempfile::TempDir, Serving) {
        let (peer, address, mut control) = swarm_node(&[]).await;
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part");
        let mut bytes = vec![0u8; content.len()];
        for index in verified {
            let span = (*index * CHUNK_SIZE) as usize
                ..(((*index + 1) * CHUNK_SIZE) as usize).min(content.len());
            bytes[span.clone()].copy_from_slice(&content[span]);
        }
        fs::write(&part, &bytes).unwrap();
        let size = content.len() as u64;
        let swarming = Swarming::default();
        let hash = digest_reader(content).unwrap().hash;
        let serving = swarming.serve(
            name,
            hash,
            PartialContent::new(part, size, &vec![0; chunk_count(size) as usize]),
        );
        for index in verified {
            serving.content.mark(*index);
        }
        let context = ServeContext::new(
            Arc::new(parking_lot::RwLock::new(StoreIndex::new())),
            dir.path().to_owned(),
            SyncMetrics::unregistered(),
            false,
            None,
            swarming,
        );
        let incoming = control.accept(sync_protocol(NET)).unwrap();
        tokio::spawn(run_server(incoming, context, CancellationToken::new()));
        (peer, address, dir, serving)
    }

    pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 131 + seed as usize) % 253) as u8)
            .collect()
    }

    fn downloader(
        control: libp2p_stream::Control,
        tmp: &Path,
        min_free_bytes: u64,
    ) -> (
        Downloader,
        mpsc::UnboundedReceiver<(PeerId, String)>,
        SyncMetrics,
    ) {
        let (bans, banned) = mpsc::unbounded_channel();
        let metrics = SyncMetrics::unregistered();
        let config = DownloadConfig {
            protocol: sync_protocol(NET),
            tmp_dir: tmp.to_owned(),
            min_free_bytes,
            streams_per_peer: 4,
            request_timeout: Duration::from_secs(20),
        };
        (
            Downloader::new(control, config, metrics.clone(), bans, Swarming::default()),
            banned,
            metrics,
        )
    }

    fn target(name: &str, content: &[u8]) -> DownloadTarget {
        DownloadTarget {
            name: name.into(),
            size: content.len() as u64,
            hash: *blake3::hash(content).as_bytes(),
            older: None,
        }
    }

    #[tokio::test]
    async fn downloads_a_multi_chunk_file_and_verifies_it() {
        let content = pattern(5 * CHUNK_SIZE as usize + 1234, 1);
        let (server, address, _dir) = serving_node("big", &content, false).await;
        let (_me, _, control) = swarm_node(&[address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (downloader, _bans, _) = downloader(control, tmp.path(), 0);
        let progress = Arc::new(AtomicU64::new(0));
        let done = downloader
            .download(&target("big", &content), &[server], &[], progress.clone())
            .await
            .unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), content);
        assert_eq!(done.fetched_bytes, content.len() as u64);
        assert_eq!(done.resumed_bytes, 0);
        assert_eq!(progress.load(Ordering::Relaxed), content.len() as u64);
    }

    #[tokio::test]
    async fn small_and_empty_files_need_no_manifest_request() {
        for content in [Vec::new(), pattern(1000, 2)] {
            let (server, address, _dir) = serving_node("small", &content, false).await;
            let (_me, _, control) = swarm_node(&[address]).await;
            let tmp = tempfile::tempdir().unwrap();
            let (downloader, _bans, _) = downloader(control, tmp.path(), 0);
            let done = downloader
                .download(&target("small", &content), &[server], &[], Arc::default())
                .await
                .unwrap();
            assert_eq!(fs::read(&done.path).unwrap(), content);
        }
    }

    #[tokio::test]
    async fn a_bad_chunk_bans_its_peer_and_the_file_comes_from_an_honest_one() {
        let content = pattern(4 * CHUNK_SIZE as usize + 7, 3);
        let (liar, liar_address, _d1) = serving_node("s", &content, true).await;
        let (honest, honest_address, _d2) = serving_node("s", &content, false).await;
        let (_me, _, control) = swarm_node(&[liar_address, honest_address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (downloader, mut bans, metrics) = downloader(control, tmp.path(), 0);
        let done = downloader
            .download(&target("s", &content), &[liar, honest], &[], Arc::default())
            .await
            .unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), content);
        let (banned, reason) = bans.try_recv().expect("the corrupting peer is reported");
        assert_eq!(banned, liar);
        assert!(reason.contains("failed BLAKE3 verification"), "{reason}");
        assert!(bans.try_recv().is_err(), "the honest peer is not banned");
        assert!(metrics.verification_failures.get() >= 1);
    }

    #[tokio::test]
    async fn chunks_come_from_a_peer_that_downloads_the_same_version_and_only_verified_ones() {
        let content = pattern(20 * CHUNK_SIZE as usize + 11, 4);
        // The only holder corrupts every chunk (it serves the manifest): it is banned at once,
        // so every chunk that arrives comes from the other receiver, which has the even ones.
        let (liar, liar_address, _d1) = serving_node("s", &content, true).await;
        let even: Vec<u64> = (0..=20).step_by(2).collect();
        let (receiver, receiver_address, _d2, serving) = receiving_node("s", &content, &even).await;
        let (_me, _, control) = swarm_node(&[liar_address, receiver_address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (downloader, _bans, metrics) = downloader(control, tmp.path(), 0);
        let wanted = target("s", &content);
        let now = std::time::Instant::now();
        assert!(
            downloader
                .swarming
                .note_fetching(receiver, "s", wanted.hash, now)
        );

        let error = downloader
            .download(&wanted, &[liar], &[receiver], Arc::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, DownloadError::Incomplete { missing: 10, .. }),
            "the 10 odd chunks were never verified by the receiver: {error}"
        );
        let even_bytes = 10 * CHUNK_SIZE + 11;
        assert_eq!(metrics.swarmed_bytes.get(), even_bytes);

        // The other receiver verifies the rest: the next attempt resumes and completes.
        let part = fs::OpenOptions::new()
            .write(true)
            .open(&serving.content.path)
            .unwrap();
        part.write_all_at(&content, 0).unwrap();
        for index in (1..20).step_by(2) {
            serving.content.mark(index);
        }
        let done = downloader
            .download(&wanted, &[liar], &[receiver], Arc::default())
            .await
            .unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), content);
        assert_eq!(done.resumed_bytes, even_bytes);
        assert_eq!(metrics.swarmed_bytes.get(), content.len() as u64);
    }

    #[tokio::test]
    async fn a_bad_single_chunk_bans_its_peer_and_an_honest_peer_serves_the_store() {
        let content = pattern(3000, 9);
        let (liar, liar_address, _d1) = serving_node("one", &content, true).await;
        let (honest, honest_address, _d2) = serving_node("one", &content, false).await;
        let (_me, _, control) = swarm_node(&[liar_address, honest_address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (fetcher, mut bans, metrics) = downloader(control, tmp.path(), 0);
        let progress = Arc::new(AtomicU64::new(0));
        let done = fetcher
            .download(
                &target("one", &content),
                &[liar, honest],
                &[],
                progress.clone(),
            )
            .await
            .unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), content);
        assert_eq!(done.manifest, vec![*blake3::hash(&content).as_bytes()]);
        assert_eq!(progress.load(Ordering::Relaxed), content.len() as u64);
        assert_eq!(bans.try_recv().unwrap().0, liar);
        assert!(bans.try_recv().is_err(), "the honest peer is not banned");
        assert_eq!(metrics.verification_failures.get(), 1);

        // Only a liar: no file, and nothing left in the temporary folder.
        let (liar, address, _d3) = serving_node("one", &content, true).await;
        let (_me, _, control) = swarm_node(&[address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (fetcher, _bans, _) = downloader(control, tmp.path(), 0);
        let err = fetcher
            .download(&target("one", &content), &[liar], &[], Arc::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Incomplete { .. }), "{err}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn only_a_corrupting_peer_means_no_file_at_all() {
        let content = pattern(2 * CHUNK_SIZE as usize + 7, 4);
        let (liar, address, _d) = serving_node("s", &content, true).await;
        let (_me, _, control) = swarm_node(&[address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (downloader, mut bans, _) = downloader(control, tmp.path(), 0);
        let err = downloader
            .download(&target("s", &content), &[liar], &[], Arc::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Incomplete { .. }), "{err}");
        assert_eq!(bans.try_recv().unwrap().0, liar);
    }

    #[tokio::test]
    async fn an_interrupted_download_resumes_from_its_verified_chunks() {
        let content = pattern(6 * CHUNK_SIZE as usize + 99, 5);
        let (server, address, _dir) = serving_node("r", &content, false).await;
        let (_me, _, control) = swarm_node(&[address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let wanted = target("r", &content);
        // The state a killed download leaves: the partial file with chunks 0..3 written, chunk 3
        // recorded as done but holding garbage, and the manifest.
        let files = PartialFiles::new(tmp.path(), "r", &wanted.hash);
        let mut partial = vec![0u8; content.len()];
        let three = 3 * CHUNK_SIZE as usize;
        partial[..three].copy_from_slice(&content[..three]);
        partial[three] = 0xAA;
        fs::write(&files.part, &partial).unwrap();
        fs::write(&files.done, [1, 1, 1, 1, 0, 0, 0]).unwrap();
        let digest = digest_reader(&content[..]).unwrap();
        fs::write(&files.manifest, hash::manifest_to_bytes(&digest.chunks)).unwrap();

        let (downloader, _bans, metrics) = downloader(control, tmp.path(), 0);
        let done = downloader
            .download(&wanted, &[server], &[], Arc::default())
            .await
            .unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), content);
        assert_eq!(done.resumed_bytes, 3 * CHUNK_SIZE);
        assert_eq!(done.fetched_bytes, content.len() as u64 - 3 * CHUNK_SIZE);
        assert_eq!(metrics.resumed_bytes.get(), 3 * CHUNK_SIZE);
    }

    #[tokio::test]
    async fn a_peer_without_the_content_leads_to_a_clear_error() {
        let content = pattern(3 * CHUNK_SIZE as usize, 7);
        let other = pattern(3 * CHUNK_SIZE as usize, 8);
        let (server, address, _dir) = serving_node("x", &other, false).await;
        let (_me, _, control) = swarm_node(&[address]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (downloader, mut bans, _) = downloader(control, tmp.path(), 0);
        let err = downloader
            .download(&target("x", &content), &[server], &[], Arc::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::NoManifest { .. }), "{err}");
        assert!(err.to_string().contains("not held"), "{err}");
        assert!(bans.try_recv().is_err(), "refusing is not misbehaving");
    }
}
