//! The requesting side of the sync protocol: one stream to one peer, one request at a time.

use std::io;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};

use super::announce::WireEntry;
use super::protocol::{
    MAX_INVENTORY_BYTES, RefusalKind, Request, ResponseHeader, read_body, read_header, write_header,
};
use super::reconcile::{MAX_ANSWER_BYTES, RangeAnswer, RangeAsk};
use super::swarming::bitmap_len;
use crate::store::cdc::{self, ContentChunk};
use crate::store::hash::{self, ChainingValue, Hash32, chunk_count};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot open a sync stream to {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("sync request to {peer} failed: {source}")]
    Io {
        peer: PeerId,
        #[source]
        source: io::Error,
    },
    #[error("{peer} refused the request ({kind:?}): {message}")]
    Refused {
        peer: PeerId,
        kind: RefusalKind,
        message: String,
    },
    #[error("{peer} answered with an unexpected message: {detail}")]
    Unexpected { peer: PeerId, detail: String },
    #[error("{peer} did not answer within {0:?}", timeout)]
    Timeout { peer: PeerId, timeout: Duration },
}

/// A sync stream to one peer.
pub struct SyncClient {
    peer: PeerId,
    stream: Stream,
    timeout: Duration,
    /// Bytes of response bodies read so far.
    body_bytes: u64,
}

impl SyncClient {
    /// Opens a stream; `timeout` bounds the open and every later request.
    pub async fn open(
        control: &mut libp2p_stream::Control,
        peer: PeerId,
        protocol: StreamProtocol,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(timeout, control.open_stream(peer, protocol))
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })?
            .map_err(|e| ClientError::Open {
                peer,
                reason: e.to_string(),
            })?;
        Ok(Self {
            peer,
            stream,
            timeout,
            body_bytes: 0,
        })
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Bytes of response bodies read on this stream so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// The digest of what the peer holds, how many entries it covers, and whether the peer
    /// drains.
    pub async fn digest(&mut self) -> Result<(Hash32, u64, bool), ClientError> {
        match self.exchange(&Request::Digest).await? {
            ResponseHeader::Digest {
                digest,
                count,
                draining,
            } => hash::from_hex(&digest)
                .map(|d| (d, count, draining))
                .ok_or_else(|| self.unexpected(format!("bad digest {digest:?}"))),
            other => Err(self.unexpected(format!("{other:?} to a digest request"))),
        }
    }

    /// Everything the peer holds (and its tombstones); entries are validated by the caller.
    pub async fn inventory(&mut self) -> Result<Vec<WireEntry>, ClientError> {
        let len = match self.exchange(&Request::Inventory).await? {
            ResponseHeader::Inventory { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to an inventory request"))),
        };
        let mut body = Vec::new();
        self.body(len, MAX_INVENTORY_BYTES, &mut body).await?;
        super::announce::decode_inventory(&body)
            .map_err(|e| self.unexpected(format!("bad inventory: {e}")))
    }

    /// The chunk manifest of `name` with content `hash` and `size` bytes (not verified here). Its
    /// length is known exactly from the size: any other length is refused unread.
    pub async fn manifest(
        &mut self,
        name: &str,
        hash: &Hash32,
        size: u64,
    ) -> Result<Vec<ChainingValue>, ClientError> {
        let request = Request::Manifest {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
        };
        let len = match self.exchange(&request).await? {
            ResponseHeader::Manifest { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to a manifest request"))),
        };
        let expected = chunk_count(size).saturating_mul(32);
        let body = self
            .exact_body(len, expected, || {
                format!("manifest for store {name} of {size} bytes")
            })
            .await?;
        hash::manifest_from_bytes(&body)
            .ok_or_else(|| self.unexpected(format!("manifest of {len} bytes")))
    }

    /// Chunk `index` of `name`/`hash` into `out`, which has the length the announced size
    /// implies (the bytes are not verified here). A response of another length is an
    /// `Unexpected` error and leaves the stream unusable (its body is not read).
    pub async fn chunk(
        &mut self,
        name: &str,
        hash: &Hash32,
        index: u64,
        out: &mut [u8],
    ) -> Result<(), ClientError> {
        let request = Request::Chunk {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
            index,
        };
        let len = match self.exchange(&request).await? {
            ResponseHeader::Chunk { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to a chunk request"))),
        };
        if len != out.len() as u64 {
            // A length that does not fit the announced size may come from a wrong announcement
            // rather than from this peer: an error, not a reason to ban it.
            return Err(self.unexpected(format!(
                "chunk {index} of store {name} has {len} bytes, the announced size implies {}",
                out.len()
            )));
        }
        self.read_into(out).await
    }

    /// The content-defined chunk map of `name`/`hash` of `size` bytes (a hint: not verified
    /// here, and the bytes it leads to are verified against the manifest). A map cut by another
    /// scheme, or longer than a file of that size can have, is refused unread.
    pub async fn chunk_map(
        &mut self,
        name: &str,
        hash: &Hash32,
        size: u64,
    ) -> Result<Vec<ContentChunk>, ClientError> {
        let request = Request::ChunkMap {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
        };
        let (len, scheme) = match self.exchange(&request).await? {
            ResponseHeader::ChunkMap { len, scheme } => (len, scheme),
            other => return Err(self.unexpected(format!("{other:?} to a chunk map request"))),
        };
        let limit = cdc::max_map_bytes(size);
        if scheme != cdc::SCHEME || len > limit {
            return Err(self.unexpected(format!(
                "chunk map of {len} bytes cut by {scheme:?} for store {name} of {size} bytes \
                 (expected {:?}, at most {limit} bytes)",
                cdc::SCHEME
            )));
        }
        let mut body = Vec::new();
        self.body(len, limit, &mut body).await?;
        cdc::map_from_bytes(&body, size).ok_or_else(|| {
            self.unexpected(format!(
                "chunk map of store {name} whose lengths do not add up to {size} bytes"
            ))
        })
    }

    /// `out.len()` bytes at `offset` of `name`/`hash` (not verified here).
    pub async fn range(
        &mut self,
        name: &str,
        hash: &Hash32,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), ClientError> {
        let request = Request::Range {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
            offset,
            len: out.len() as u64,
        };
        let len = match self.exchange(&request).await? {
            ResponseHeader::Chunk { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to a range request"))),
        };
        if len != out.len() as u64 {
            return Err(self.unexpected(format!(
                "{len} bytes for a range of {} at {offset} of store {name}",
                out.len()
            )));
        }
        self.read_into(out).await
    }

    async fn read_into(&mut self, out: &mut [u8]) -> Result<(), ClientError> {
        let peer = self.peer;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.stream.read_exact(out))
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })?
            .map_err(|source| ClientError::Io { peer, source })
    }

    /// Tells the peer this node now holds the versions of `announcement` (an encoded
    /// [`super::announce::Announcement`] of at most [`super::protocol::MAX_HOLDING_BYTES`]).
    pub async fn holding(&mut self, announcement: &[u8]) -> Result<(), ClientError> {
        let request = Request::Holding {
            len: announcement.len() as u64,
        };
        match self.exchange_with_body(&request, announcement).await? {
            ResponseHeader::Noted => Ok(()),
            other => Err(self.unexpected(format!("{other:?} to a holder notice"))),
        }
    }

    /// Tells the peer this node downloads `name` at `hash` (chunk swarming).
    pub async fn fetching(&mut self, name: &str, hash: &Hash32) -> Result<(), ClientError> {
        let request = Request::Fetching {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
        };
        match self.exchange(&request).await? {
            ResponseHeader::Noted => Ok(()),
            other => Err(self.unexpected(format!("{other:?} to a fetching notice"))),
        }
    }

    /// The bitmap of the chunks of `name`/`hash` (`size` bytes) the peer has verified. Its
    /// length is known exactly from the size: any other length is refused unread.
    pub async fn have(
        &mut self,
        name: &str,
        hash: &Hash32,
        size: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let request = Request::Have {
            name: name.to_owned(),
            hash: hash::to_hex(hash),
        };
        let len = match self.exchange(&request).await? {
            ResponseHeader::Have { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to a have request"))),
        };
        self.exact_body(len, bitmap_len(size), || {
            format!("chunk bitmap for store {name} of {size} bytes")
        })
        .await
    }

    /// The peer's answers to `asks`, for the first of them (range-based reconciliation; the
    /// answers are checked by the caller's `Reconciler`).
    pub async fn reconcile(&mut self, asks: &[RangeAsk]) -> Result<Vec<RangeAnswer>, ClientError> {
        let body = serde_json::to_vec(asks).map_err(|e| self.unexpected(e.to_string()))?;
        let request = Request::Reconcile {
            len: body.len() as u64,
        };
        let len = match self.exchange_with_body(&request, &body).await? {
            ResponseHeader::Reconcile { len } => len,
            other => return Err(self.unexpected(format!("{other:?} to a reconcile request"))),
        };
        let mut answers = Vec::new();
        self.body(len, MAX_ANSWER_BYTES, &mut answers).await?;
        serde_json::from_slice(&answers)
            .map_err(|e| self.unexpected(format!("bad range answers: {e}")))
    }

    async fn exchange(&mut self, request: &Request) -> Result<ResponseHeader, ClientError> {
        self.exchange_with_body(request, &[]).await
    }

    /// Sends a request header and `body` right behind it, and reads the response header.
    async fn exchange_with_body(
        &mut self,
        request: &Request,
        body: &[u8],
    ) -> Result<ResponseHeader, ClientError> {
        let peer = self.peer;
        let timeout = self.timeout;
        let io = async {
            write_header(&mut self.stream, request).await?;
            self.stream.write_all(body).await?;
            self.stream.flush().await?;
            read_header::<_, ResponseHeader>(&mut self.stream).await
        };
        let header = tokio::time::timeout(timeout, io)
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })?
            .map_err(|source| ClientError::Io { peer, source })?
            .ok_or_else(|| ClientError::Io {
                peer,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed"),
            })?;
        match header {
            ResponseHeader::Refused { kind, message } => Err(ClientError::Refused {
                peer,
                kind,
                message,
            }),
            header => Ok(header),
        }
    }

    async fn body(
        &mut self,
        len: u64,
        limit: u64,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ClientError> {
        let peer = self.peer;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, read_body(&mut self.stream, len, limit, buffer))
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })?
            .map_err(|source| ClientError::Io { peer, source })?;
        self.body_bytes += buffer.len() as u64;
        Ok(())
    }

    /// A body whose length the request fixed (`expected`); another announced length is refused
    /// unread, described by `what`.
    async fn exact_body(
        &mut self,
        len: u64,
        expected: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, ClientError> {
        if len != expected {
            return Err(self.unexpected(format!("{} of {len} bytes (expected {expected})", what())));
        }
        let mut body = Vec::new();
        self.body(len, expected, &mut body).await?;
        Ok(body)
    }

    fn unexpected(&self, detail: String) -> ClientError {
        ClientError::Unexpected {
            peer: self.peer,
            detail,
        }
    }

    /// Closes the stream politely.
    pub async fn close(mut self) {
        let _ = self.stream.close().await;
    }
}
