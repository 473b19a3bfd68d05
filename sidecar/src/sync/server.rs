//! Serving the sync protocol: digests, inventories, manifests, chunks, chunk maps and byte ranges
//! of what this node holds.
//!
//! Chunks are read straight from the data folder. The file's metadata is checked against the
//! index before and after the read, so bytes of a file that changed since it was hashed are never
//! served as the old content (an honest node never serves a chunk that fails verification).
//!
//! Every resource a peer can make the server hold is capped per peer and in all: open streams
//! ([`MAX_STREAMS_PER_PEER`], [`MAX_SERVED_STREAMS`]), chunk reads in flight, each holding a
//! 1 MiB buffer ([`MAX_READS_PER_PEER`], [`MAX_CHUNK_READS`]), inventories being sent
//! ([`MAX_INVENTORIES`]), and every write to a peer has a time limit ([`WRITE_TIMEOUT`]), so one
//! peer that stops reading cannot keep a slot.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::announce::WireEntry;
use super::chunk_maps::{ChunkMaps, MapSource};
use super::holder_notices::NoticeQueue;
use super::metrics::{Direction, SyncMetrics};
use super::protocol::{
    MAX_HOLDING_BYTES, RefusalKind, Request, ResponseHeader, read_body, read_header, write_header,
};
use super::reconcile::{self, MAX_ASK_BYTES, RangeAsk};
use super::swarming::{self, PartialContent, Swarming};
use crate::store::cdc;
use crate::store::hash::{self, CHUNK_SIZE, Hash32, chunk_count, chunk_len};
use crate::store::name::store_path;
use crate::store::{LocalMeta, StoreIndex, is_valid_store_name};

/// Sync streams served at once, all peers together.
pub const MAX_SERVED_STREAMS: usize = 512;
/// Sync streams one peer may have open at once (an honest node uses at most 8 per download and
/// keeps up to 16 idle).
pub const MAX_STREAMS_PER_PEER: usize = 64;
/// Chunk reads (each with a 1 MiB buffer) in flight, all peers together.
pub const MAX_CHUNK_READS: usize = 64;
/// Chunk reads in flight for one peer.
pub const MAX_READS_PER_PEER: usize = 16;
/// Inventories serialised and sent at once.
pub const MAX_INVENTORIES: usize = 4;
/// A stream that sends no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Every response must be written (and flushed) within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunk buffers kept for reuse when idle.
const POOLED_BUFFERS: usize = 16;

/// Read access to the index the server serves.
pub trait IndexSource: Send + Sync + 'static {
    fn index(&self) -> MappedRwLockReadGuard<'_, StoreIndex>;

    /// True while the node drains (peers then do not count its copies).
    fn draining(&self) -> bool {
        false
    }
}

impl IndexSource for RwLock<StoreIndex> {
    fn index(&self) -> MappedRwLockReadGuard<'_, StoreIndex> {
        RwLockReadGuard::map(self.read(), |index| index)
    }
}

/// What the server needs.
pub struct ServeContext {
    pub index: Arc<dyn IndexSource>,
    pub data_dir: PathBuf,
    pub metrics: SyncMetrics,
    /// Test-only fault injection: flip bytes in every served chunk.
    pub corrupt_chunks: bool,
    slots: Mutex<Slots>,
    reads: Arc<Semaphore>,
    inventories: Arc<Semaphore>,
    buffers: Mutex<Vec<Vec<u8>>>,
    chunk_maps: ChunkMaps,
    /// Where holder notices go; none: they are refused as not taken here.
    notices: Option<NoticeQueue>,
    /// Running downloads whose verified chunks are served, and fetching notices.
    swarming: Swarming,
}

#[derive(Default)]
struct Slots {
    streams: usize,
    peers: HashMap<PeerId, PeerSlots>,
}

struct PeerSlots {
    streams: usize,
    reads: Arc<Semaphore>,
}

/// One served stream's place in the caps; released when dropped.
struct StreamSlot {
    context: Arc<ServeContext>,
    peer: PeerId,
    reads: Arc<Semaphore>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut slots = self.context.slots.lock();
        slots.streams -= 1;
        if let Some(peer) = slots.peers.get_mut(&self.peer) {
            peer.streams -= 1;
            if peer.streams == 0 {
                slots.peers.remove(&self.peer);
            }
        }
    }
}

impl ServeContext {
    pub fn new(
        index: Arc<dyn IndexSource>,
        data_dir: PathBuf,
        metrics: SyncMetrics,
        corrupt_chunks: bool,
        notices: Option<NoticeQueue>,
        swarming: Swarming,
    ) -> Arc<Self> {
        Arc::new(Self {
            index,
            data_dir,
            metrics,
            corrupt_chunks,
            slots: Mutex::new(Slots::default()),
            reads: Arc::new(Semaphore::new(MAX_CHUNK_READS)),
            inventories: Arc::new(Semaphore::new(MAX_INVENTORIES)),
            buffers: Mutex::new(Vec::new()),
            chunk_maps: ChunkMaps::default(),
            notices,
            swarming,
        })
    }

    /// A place for one more stream of `peer`, if the caps allow it.
    fn stream_slot(self: &Arc<Self>, peer: PeerId) -> Option<StreamSlot> {
        let mut slots = self.slots.lock();
        if slots.streams >= MAX_SERVED_STREAMS {
            return None;
        }
        let entry = slots.peers.entry(peer).or_insert_with(|| PeerSlots {
            streams: 0,
            reads: Arc::new(Semaphore::new(MAX_READS_PER_PEER)),
        });
        if entry.streams >= MAX_STREAMS_PER_PEER {
            return None;
        }
        entry.streams += 1;
        let reads = entry.reads.clone();
        slots.streams += 1;
        Some(StreamSlot {
            context: self.clone(),
            peer,
            reads,
        })
    }

    /// Streams open now (all peers) and for one peer.
    pub fn open_streams(&self, peer: &PeerId) -> (usize, usize) {
        let slots = self.slots.lock();
        (
            slots.streams,
            slots.peers.get(peer).map_or(0, |p| p.streams),
        )
    }

    fn take_buffer(&self) -> Vec<u8> {
        self.buffers.lock().pop().unwrap_or_default()
    }

    fn return_buffer(&self, buffer: Vec<u8>) {
        let mut pool = self.buffers.lock();
        if pool.len() < POOLED_BUFFERS && buffer.capacity() <= CHUNK_SIZE as usize {
            pool.push(buffer);
        }
    }
}

/// Accepts sync streams until `cancel` fires.
pub async fn run_server(
    mut incoming: libp2p_stream::IncomingStreams,
    context: Arc<ServeContext>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = incoming.next() => next,
        };
        let Some((peer, stream)) = next else { return };
        let Some(slot) = context.stream_slot(peer) else {
            context.metrics.streams_refused.inc();
            tracing::debug!(%peer, "too many sync streams; refusing one");
            continue;
        };
        let context = context.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = serve_stream(peer, stream, &context, &slot.reads) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "sync stream ended with an error");
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Writes with [`WRITE_TIMEOUT`].
async fn timed<F: std::future::Future<Output = io::Result<()>>>(write: F) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer did not take a response within {WRITE_TIMEOUT:?}"),
            )
        })?
}

/// Writes a response header and the body it announces, within [`WRITE_TIMEOUT`].
async fn respond(stream: &mut Stream, header: &ResponseHeader, body: &[u8]) -> io::Result<()> {
    timed(async {
        write_header(stream, header).await?;
        stream.write_all(body).await
    })
    .await
}

/// Answers requests on one stream until the peer closes it.
async fn serve_stream(
    peer: PeerId,
    mut stream: Stream,
    context: &Arc<ServeContext>,
    peer_reads: &Arc<Semaphore>,
) -> io::Result<()> {
    loop {
        let request: Request =
            match tokio::time::timeout(IDLE_TIMEOUT, read_header(&mut stream)).await {
                Err(_) => return Ok(()),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(request))) => request,
                Ok(Err(e)) => return Err(e),
            };
        match request {
            Request::Digest => {
                let (digest, count) = context.index.index().holdings_digest();
                let header = ResponseHeader::Digest {
                    digest: hash::to_hex(&digest),
                    count,
                    draining: context.index.draining(),
                };
                timed(write_header(&mut stream, &header)).await?;
            }
            Request::Inventory => {
                let _permit = context
                    .inventories
                    .acquire()
                    .await
                    .map_err(io::Error::other)?;
                let entries: Vec<WireEntry> = {
                    let index = context.index.index();
                    index
                        .iter()
                        .filter(|(_, e)| e.is_held() || e.is_tombstone())
                        .filter_map(|(name, e)| e.signed(name))
                        .map(|signed| WireEntry::from_signed(&signed))
                        .collect()
                };
                let body = serde_json::to_vec(&entries).map_err(io::Error::other)?;
                drop(entries);
                let header = ResponseHeader::Inventory {
                    len: body.len() as u64,
                };
                respond(&mut stream, &header, &body).await?;
            }
            Request::Manifest { name, hash } => match held_content(context, &name, &hash, true) {
                Ok(held) => {
                    let body = hash::manifest_to_bytes(&held.chunks);
                    let header = ResponseHeader::Manifest {
                        len: body.len() as u64,
                    };
                    respond(&mut stream, &header, &body).await?;
                }
                Err(refusal) => timed(write_header(&mut stream, &refusal)).await?,
            },
            Request::Chunk { name, hash, index } => {
                let span = Span::Chunk(index);
                serve_span(peer, &mut stream, context, peer_reads, &name, &hash, span).await?;
            }
            Request::Range {
                name,
                hash,
                offset,
                len,
            } => {
                let span = Span::Range { offset, len };
                serve_span(peer, &mut stream, context, peer_reads, &name, &hash, span).await?;
            }
            Request::Reconcile { len } => {
                if !answer_ranges(&mut stream, context, len).await? {
                    // The body was not read: the stream's framing is lost.
                    return Ok(());
                }
            }
            Request::Holding { len } => {
                if !take_notice(peer, &mut stream, context, len).await? {
                    // The body was not read: the stream's framing is lost.
                    return Ok(());
                }
            }
            Request::Fetching { name, hash } => {
                let answer = note_fetching(peer, context, &name, &hash);
                timed(write_header(&mut stream, &answer)).await?;
            }
            Request::Have { name, hash } => match verified_chunks(context, &name, &hash) {
                Ok(body) => {
                    let header = ResponseHeader::Have {
                        len: body.len() as u64,
                    };
                    respond(&mut stream, &header, &body).await?;
                }
                Err(refusal) => timed(write_header(&mut stream, &refusal)).await?,
            },
            Request::ChunkMap { name, hash } => {
                let response = match held_content(context, &name, &hash, false) {
                    Ok(held) => context
                        .chunk_maps
                        .get(MapSource {
                            path: held.path,
                            size: held.size,
                            hash: held.hash,
                            local: held.local,
                        })
                        .await
                        .map_err(|message| refused(RefusalKind::NotFound, message)),
                    Err(refusal) => Err(refusal),
                };
                match response {
                    Ok(body) => {
                        let header = ResponseHeader::ChunkMap {
                            len: body.len() as u64,
                            scheme: cdc::SCHEME.to_owned(),
                        };
                        respond(&mut stream, &header, &body).await?;
                    }
                    Err(refusal) => timed(write_header(&mut stream, &refusal)).await?,
                }
            }
        }
        timed(stream.flush()).await?;
    }
}

/// Answers a range-based reconciliation request of `len` bytes (see `reconcile`). A body over
/// [`MAX_ASK_BYTES`] is refused unread and false returned: the caller closes the stream. At most
/// [`MAX_INVENTORIES`] answers (or inventories) are computed at once.
async fn answer_ranges(
    stream: &mut Stream,
    context: &Arc<ServeContext>,
    len: u64,
) -> io::Result<bool> {
    if len > MAX_ASK_BYTES {
        let refusal = refused(
            RefusalKind::BadRequest,
            format!("reconcile request of {len} bytes; at most {MAX_ASK_BYTES}"),
        );
        timed(write_header(stream, &refusal)).await?;
        return Ok(false);
    }
    let mut body = Vec::new();
    read_within(stream, len, MAX_ASK_BYTES, &mut body, "reconcile request").await?;
    let asks = serde_json::from_slice::<Vec<RangeAsk>>(&body)
        .map_err(|e| e.to_string())
        .and_then(|asks| {
            reconcile::check_asks(&asks)
                .map(|()| asks)
                .map_err(|e| e.to_string())
        });
    let asks = match asks {
        Ok(asks) => asks,
        Err(message) => {
            let refusal = refused(
                RefusalKind::BadRequest,
                format!("bad reconcile request: {message}"),
            );
            timed(write_header(stream, &refusal)).await?;
            return Ok(true);
        }
    };
    let _permit = context
        .inventories
        .acquire()
        .await
        .map_err(io::Error::other)?;
    let answers = reconcile::answer(&context.index.index(), &asks);
    let body = serde_json::to_vec(&answers).map_err(io::Error::other)?;
    drop(answers);
    let header = ResponseHeader::Reconcile {
        len: body.len() as u64,
    };
    respond(stream, &header, &body).await?;
    Ok(true)
}

/// Reads a request body of `len` bytes (at most `limit`) that must arrive within
/// [`WRITE_TIMEOUT`].
async fn read_within(
    stream: &mut Stream,
    len: u64,
    limit: u64,
    body: &mut Vec<u8>,
    what: &str,
) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, read_body(stream, len, limit, body))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("a {what} of {len} bytes did not arrive within {WRITE_TIMEOUT:?}"),
            )
        })?
}

/// Reads a holder notice of `len` bytes into the engine's queue and answers it. Its place in the
/// queue is taken before the body is read; without one (or when the notice is too large) the
/// refusal is sent and false returned, and the caller closes the stream.
async fn take_notice(
    peer: PeerId,
    stream: &mut Stream,
    context: &Arc<ServeContext>,
    len: u64,
) -> io::Result<bool> {
    let reserved = match &context.notices {
        _ if len > MAX_HOLDING_BYTES => Err(refused(
            RefusalKind::BadRequest,
            format!("holder notice of {len} bytes; at most {MAX_HOLDING_BYTES}"),
        )),
        None => Err(refused(
            RefusalKind::NotFound,
            "this node takes no holder notices".to_owned(),
        )),
        Some(queue) => queue
            .reserve(peer)
            .map(|place| (queue, place))
            .ok_or_else(|| {
                refused(
                    RefusalKind::Busy,
                    "too many holder notices from this peer are being handled".to_owned(),
                )
            }),
    };
    let (queue, place) = match reserved {
        Ok(reserved) => reserved,
        Err(refusal) => {
            context.metrics.holder_notices_refused.inc();
            timed(write_header(stream, &refusal)).await?;
            return Ok(false);
        }
    };
    let mut body = Vec::new();
    read_within(stream, len, MAX_HOLDING_BYTES, &mut body, "holder notice").await?;
    let answer = if queue.push(place, body) {
        ResponseHeader::Noted
    } else {
        refused(RefusalKind::NotFound, "replication has stopped".to_owned())
    };
    timed(write_header(stream, &answer)).await?;
    Ok(true)
}

/// Which bytes of a held store a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    /// Chunk `index` of the manifest.
    Chunk(u64),
    /// Any bytes, at most one chunk's worth (the buffer a read may hold).
    Range { offset: u64, len: u64 },
}

impl Span {
    /// The offset and length of the span in a store of `size` bytes, or why it does not fit.
    fn bounds(self, name: &str, size: u64) -> Result<(u64, u64), String> {
        match self {
            Self::Chunk(index) if index < chunk_count(size) => {
                Ok((index * CHUNK_SIZE, chunk_len(size, index)))
            }
            Self::Chunk(index) => Err(format!(
                "chunk {index} out of range for store {name} of {size} bytes"
            )),
            Self::Range { offset, len }
                if len > 0
                    && len <= CHUNK_SIZE
                    && offset.checked_add(len).is_some_and(|end| end <= size) =>
            {
                Ok((offset, len))
            }
            Self::Range { offset, len } => Err(format!(
                "range of {len} bytes at {offset} does not fit store {name} of {size} bytes \
                 (at most {CHUNK_SIZE} bytes, none past the end)"
            )),
        }
    }

    fn is_last_chunk(self, size: u64) -> bool {
        matches!(self, Self::Chunk(index) if index == chunk_count(size).saturating_sub(1))
    }
}

async fn serve_span(
    peer: PeerId,
    stream: &mut Stream,
    context: &Arc<ServeContext>,
    peer_reads: &Arc<Semaphore>,
    name: &str,
    hash: &str,
    span: Span,
) -> io::Result<()> {
    // A buffer only while a read is in flight, within the peer's share and the global cap.
    let permits: (OwnedSemaphorePermit, OwnedSemaphorePermit) = (
        peer_reads
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?,
        context
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?,
    );
    let buffer = context.take_buffer();
    let (result, mut data) = read_span(context, name, hash, span, buffer).await;
    let outcome = match result {
        Ok(size) => {
            if context.corrupt_chunks && !data.is_empty() {
                let middle = data.len() / 2;
                data[middle] ^= 0xff;
            }
            let header = ResponseHeader::Chunk {
                len: data.len() as u64,
            };
            let written = respond(stream, &header, &data).await;
            if written.is_ok() {
                context
                    .metrics
                    .add_bytes(Direction::Sent, data.len() as u64);
                if span.is_last_chunk(size) {
                    context.metrics.add_file(Direction::Sent);
                }
                tracing::trace!(%peer, %name, ?span, "served");
            }
            written
        }
        Err(refusal) => timed(write_header(stream, &refusal)).await,
    };
    context.return_buffer(data);
    drop(permits);
    outcome
}

/// Takes a fetching notice (chunk swarming) of `peer`.
fn note_fetching(
    peer: PeerId,
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
) -> ResponseHeader {
    let hash = match checked_key(name, hash_hex) {
        Ok(hash) => hash,
        Err(refusal) => return refusal,
    };
    if context
        .swarming
        .note_fetching(peer, name, hash, Instant::now())
    {
        ResponseHeader::Noted
    } else {
        refused(
            RefusalKind::Busy,
            "this node keeps no more fetching notices".to_owned(),
        )
    }
}

/// The bitmap of verified chunks of `name` at `hash_hex`: every chunk of a held store, or those a
/// running download has verified.
fn verified_chunks(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
) -> Result<Vec<u8>, ResponseHeader> {
    match held_content(context, name, hash_hex, false) {
        Ok(held) => Ok(swarming::full_bitmap(held.size)),
        Err(refusal) => {
            let hash = hash::from_hex(hash_hex).ok_or_else(|| refusal.clone())?;
            match context.swarming.partial(name, &hash) {
                Some(partial) => Ok(partial.bitmap()),
                None => Err(refusal),
            }
        }
    }
}

/// A valid store name and hash, or the refusal that says which is not.
fn checked_key(name: &str, hash_hex: &str) -> Result<Hash32, ResponseHeader> {
    if !is_valid_store_name(name) {
        return Err(refused(
            RefusalKind::BadRequest,
            format!(
                "invalid store name {:?}",
                name.chars().take(140).collect::<String>()
            ),
        ));
    }
    hash::from_hex(hash_hex).ok_or_else(|| {
        refused(
            RefusalKind::BadRequest,
            format!(
                "invalid hash {:?}",
                hash_hex.chars().take(70).collect::<String>()
            ),
        )
    })
}

struct Held {
    path: PathBuf,
    size: u64,
    hash: Hash32,
    local: LocalMeta,
    chunks: Vec<[u8; 32]>,
}

fn refused(kind: RefusalKind, message: String) -> ResponseHeader {
    ResponseHeader::Refused { kind, message }
}

/// What this node holds of `name` at `hash_hex`; `chunks` is filled only `with_chunks`.
fn held_content(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
    with_chunks: bool,
) -> Result<Held, ResponseHeader> {
    let hash = checked_key(name, hash_hex)?;
    let not_found = || {
        refused(
            RefusalKind::NotFound,
            format!("store {name} with hash {hash_hex} is not held here"),
        )
    };
    let index = context.index.index();
    let entry = index.get(name).ok_or_else(not_found)?;
    match (&entry.content, entry.local) {
        (Some(content), Some(local)) if content.hash == hash => Ok(Held {
            path: store_path(&context.data_dir, name).ok_or_else(not_found)?,
            size: content.size,
            hash,
            local,
            // The manifest is copied only for a manifest request, not for every chunk.
            chunks: match &content.chunks {
                Some(chunks) if with_chunks => chunks.clone(),
                Some(_) => Vec::new(),
                None => return Err(not_found()),
            },
        }),
        _ => Err(not_found()),
    }
}

/// Reads `span` of the held content into `data` (resized to the span's length); returns the
/// store's size. The buffer comes back whatever happens.
async fn read_span(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
    span: Span,
    mut data: Vec<u8>,
) -> (Result<u64, ResponseHeader>, Vec<u8>) {
    let held = match held_content(context, name, hash_hex, false) {
        Ok(held) => held,
        Err(refusal) => {
            return match partial_chunk(context, name, hash_hex, span) {
                Some((partial, index)) => read_partial_chunk(name, partial, index, data).await,
                None => (Err(refusal), data),
            };
        }
    };
    let (offset, len) = match span.bounds(name, held.size) {
        Ok(bounds) => bounds,
        Err(message) => return (Err(refused(RefusalKind::BadRequest, message)), data),
    };
    data.resize(len as usize, 0);
    let name = name.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let changed = || {
            refused(
                RefusalKind::NotFound,
                format!("store {name} changed on disk since it was hashed"),
            )
        };
        let result = (|| {
            let file = held.local.open_unchanged(&held.path).ok_or_else(changed)?;
            file.read_exact_at(&mut data, offset)
                .map_err(|_| changed())?;
            if !held.local.describes(&file) {
                return Err(changed());
            }
            Ok(held.size)
        })();
        (result, data)
    })
    .await;
    match read {
        Ok(pair) => pair,
        Err(e) => (
            Err(refused(
                RefusalKind::NotFound,
                format!("chunk read task failed: {e}"),
            )),
            Vec::new(),
        ),
    }
}

/// The running download of `name` at `hash_hex` when it has verified the chunk `span` asks for.
fn partial_chunk(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
    span: Span,
) -> Option<(Arc<PartialContent>, u64)> {
    let Span::Chunk(index) = span else {
        return None;
    };
    let hash = hash::from_hex(hash_hex)?;
    let partial = context.swarming.partial(name, &hash)?;
    partial.has(index).then_some((partial, index))
}

/// Reads a verified chunk of a running download from its part file in `tmp/` (written before it
/// was marked, and never rewritten with other bytes: the file holds one content).
async fn read_partial_chunk(
    name: &str,
    partial: Arc<PartialContent>,
    index: u64,
    mut data: Vec<u8>,
) -> (Result<u64, ResponseHeader>, Vec<u8>) {
    data.resize(chunk_len(partial.size, index) as usize, 0);
    let gone = format!("chunk {index} of the download of store {name} is no longer here");
    let read = tokio::task::spawn_blocking(move || {
        let result = std::fs::File::open(&partial.path)
            .and_then(|file| file.read_exact_at(&mut data, index * CHUNK_SIZE));
        (result.map(|()| partial.size), data)
    })
    .await;
    match read {
        Ok((Ok(size), data)) => (Ok(size), data),
        Ok((Err(_), data)) => (Err(refused(RefusalKind::NotFound, gone)), data),
        Err(_) => (Err(refused(RefusalKind::NotFound, gone)), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_capped_per_peer_and_released_when_dropped() {
        let context = ServeContext::new(
            Arc::new(RwLock::new(StoreIndex::new())),
            PathBuf::from("/nonexistent"),
            SyncMetrics::unregistered(),
            false,
            None,
            Swarming::default(),
        );
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let mut held = Vec::new();
        while let Some(slot) = context.stream_slot(flooder) {
            held.push(slot);
        }
        assert_eq!(held.len(), MAX_STREAMS_PER_PEER);
        assert!(
            context.stream_slot(honest).is_some(),
            "other peers still get slots"
        );
        assert_eq!(
            context.open_streams(&flooder),
            (MAX_STREAMS_PER_PEER, MAX_STREAMS_PER_PEER)
        );
        held.clear();
        assert_eq!(context.open_streams(&flooder), (0, 0));
        assert!(
            context.slots.lock().peers.is_empty(),
            "no per-peer state left behind"
        );
    }

    #[test]
    fn spans_must_fit_the_store_and_one_chunk() {
        let size = 3 * CHUNK_SIZE + 10;
        assert_eq!(Span::Chunk(3).bounds("s", size), Ok((3 * CHUNK_SIZE, 10)));
        assert!(Span::Chunk(4).bounds("s", size).is_err());
        let range = |offset, len| Span::Range { offset, len }.bounds("s", size);
        assert_eq!(range(5, CHUNK_SIZE), Ok((5, CHUNK_SIZE)));
        assert_eq!(range(size - 1, 1), Ok((size - 1, 1)));
        for (offset, len) in [
            (0, 0),
            (0, CHUNK_SIZE + 1),
            (size - 1, 2),
            (size, 1),
            (u64::MAX, 1),
            (u64::MAX - 1, CHUNK_SIZE),
        ] {
            let refused = range(offset, len).unwrap_err();
            assert!(refused.contains("does not fit store s"), "{refused}");
        }
    }

    #[test]
    fn the_global_stream_cap_holds_whatever_the_number_of_peers() {
        let context = ServeContext::new(
            Arc::new(RwLock::new(StoreIndex::new())),
            PathBuf::from("/nonexistent"),
            SyncMetrics::unregistered(),
            false,
            None,
            Swarming::default(),
        );
        let mut held = Vec::new();
        for _ in 0..MAX_SERVED_STREAMS / MAX_STREAMS_PER_PEER + 1 {
            let peer = PeerId::random();
            while let Some(slot) = context.stream_slot(peer) {
                held.push(slot);
            }
        }
        assert_eq!(held.len(), MAX_SERVED_STREAMS);
    }
}
