//! Serving the sync protocol: digests, inventories, manifests and chunks of what this node holds.
//!
//! Chunks are read straight from the data folder. The file's metadata is checked against the
//! index before and after the read, so bytes of a file that changed since it was hashed are never
//! served as the old content (an honest node never serves a chunk that fails verification).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use parking_lot::RwLock;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::announce::WireEntry;
use super::metrics::{Direction, SyncMetrics};
use super::protocol::{RefusalKind, Request, ResponseHeader, read_header, write_header};
use crate::store::hash::{self, CHUNK_SIZE, chunk_count, chunk_len};
use crate::store::name::store_path;
use crate::store::{LocalMeta, StoreIndex, is_valid_store_name};

/// The index, shared between the replicator (the only writer) and the server and anti-entropy.
pub type SharedIndex = Arc<RwLock<StoreIndex>>;

/// A stream that sends no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server needs.
pub struct ServeContext {
    pub index: SharedIndex,
    pub data_dir: PathBuf,
    pub metrics: SyncMetrics,
    /// Test-only fault injection: flip bytes in every served chunk.
    pub corrupt_chunks: bool,
    /// Bounds the number of streams served at once.
    pub streams: Arc<Semaphore>,
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
        let Ok(permit) = context.streams.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many sync streams; refusing one");
            continue;
        };
        let context = context.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = serve_stream(peer, stream, &context) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "sync stream ended with an error");
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Answers requests on one stream until the peer closes it.
pub async fn serve_stream(
    peer: PeerId,
    mut stream: Stream,
    context: &ServeContext,
) -> io::Result<()> {
    // One buffer per stream, allocated here rather than in the blocking thread that fills it:
    // chunks read in whichever blocking thread is free would spread 1 MiB allocations over
    // every thread's malloc arena and grow the resident memory with the number of threads.
    let mut data = Vec::new();
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
                let (digest, count) = context.index.read().holdings_digest();
                write_header(
                    &mut stream,
                    &ResponseHeader::Digest {
                        digest: hash::to_hex(&digest),
                        count,
                    },
                )
                .await?;
            }
            Request::Inventory => {
                let entries: Vec<WireEntry> = {
                    let index = context.index.read();
                    index
                        .entries
                        .iter()
                        .filter(|(_, e)| e.is_held() || e.is_tombstone())
                        .map(|(name, e)| WireEntry::from_index(name, e))
                        .collect()
                };
                let body = serde_json::to_vec(&entries).map_err(io::Error::other)?;
                write_header(
                    &mut stream,
                    &ResponseHeader::Inventory {
                        len: body.len() as u64,
                    },
                )
                .await?;
                stream.write_all(&body).await?;
            }
            Request::Manifest { name, hash } => match held_content(context, &name, &hash, true) {
                Ok(held) => {
                    let body = hash::manifest_to_bytes(&held.chunks);
                    write_header(
                        &mut stream,
                        &ResponseHeader::Manifest {
                            len: body.len() as u64,
                        },
                    )
                    .await?;
                    stream.write_all(&body).await?;
                }
                Err(refusal) => write_header(&mut stream, &refusal).await?,
            },
            Request::Chunk { name, hash, index } => {
                let (result, buffer) = read_chunk(context, &name, &hash, index, data).await;
                data = buffer;
                match result {
                    Ok(()) => {
                        if context.corrupt_chunks && !data.is_empty() {
                            let middle = data.len() / 2;
                            data[middle] ^= 0xff;
                        }
                        write_header(
                            &mut stream,
                            &ResponseHeader::Chunk {
                                len: data.len() as u64,
                            },
                        )
                        .await?;
                        stream.write_all(&data).await?;
                        context
                            .metrics
                            .add_bytes(Direction::Sent, data.len() as u64);
                        let last = chunk_count(held_size(context, &name)).saturating_sub(1);
                        if index == last {
                            context.metrics.add_file(Direction::Sent);
                        }
                        tracing::trace!(%peer, %name, index, "served chunk");
                    }
                    Err(refusal) => write_header(&mut stream, &refusal).await?,
                }
            }
        }
        stream.flush().await?;
    }
}

struct Held {
    path: PathBuf,
    size: u64,
    local: LocalMeta,
    chunks: Vec<[u8; 32]>,
}

fn refused(kind: RefusalKind, message: String) -> ResponseHeader {
    ResponseHeader::Refused { kind, message }
}

fn held_size(context: &ServeContext, name: &str) -> u64 {
    context
        .index
        .read()
        .entries
        .get(name)
        .and_then(|e| e.content.as_ref())
        .map_or(0, |c| c.size)
}

/// What this node holds of `name` at `hash_hex`; `chunks` is filled only `with_chunks`.
fn held_content(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
    with_chunks: bool,
) -> Result<Held, ResponseHeader> {
    if !is_valid_store_name(name) {
        return Err(refused(
            RefusalKind::BadRequest,
            format!("invalid store name {name:?}"),
        ));
    }
    let Some(hash) = hash::from_hex(hash_hex) else {
        return Err(refused(
            RefusalKind::BadRequest,
            format!("invalid hash {hash_hex:?}"),
        ));
    };
    let not_found = || {
        refused(
            RefusalKind::NotFound,
            format!("store {name} with hash {hash_hex} is not held here"),
        )
    };
    let index = context.index.read();
    let entry = index.entries.get(name).ok_or_else(not_found)?;
    match (&entry.content, entry.local) {
        (Some(content), Some(local)) if content.hash == hash => Ok(Held {
            path: store_path(&context.data_dir, name).ok_or_else(not_found)?,
            size: content.size,
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

/// Reads chunk `index` of the held content into `data` (resized to the chunk's length); the
/// buffer comes back whatever happens.
async fn read_chunk(
    context: &ServeContext,
    name: &str,
    hash_hex: &str,
    index: u64,
    mut data: Vec<u8>,
) -> (Result<(), ResponseHeader>, Vec<u8>) {
    let held = match held_content(context, name, hash_hex, false) {
        Ok(held) => held,
        Err(refusal) => return (Err(refusal), data),
    };
    if index >= chunk_count(held.size) {
        let refusal = refused(
            RefusalKind::BadRequest,
            format!(
                "chunk {index} out of range for store {name} of {} bytes",
                held.size
            ),
        );
        return (Err(refusal), data);
    }
    data.resize(chunk_len(held.size, index) as usize, 0);
    let name = name.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let changed = || {
            refused(
                RefusalKind::NotFound,
                format!("store {name} changed on disk since it was hashed"),
            )
        };
        let result = (|| {
            let file = File::open(&held.path).map_err(|_| changed())?;
            let unchanged = |file: &File| {
                file.metadata()
                    .map(|m| LocalMeta::from_metadata(&m) == held.local)
                    .unwrap_or(false)
            };
            if !unchanged(&file) {
                return Err(changed());
            }
            file.read_exact_at(&mut data, index * CHUNK_SIZE)
                .map_err(|_| changed())?;
            if !unchanged(&file) {
                return Err(changed());
            }
            Ok(())
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
