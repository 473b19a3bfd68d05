//! The sync wire protocol on `/dig/<net>/sync/2` (libp2p-stream).
//!
//! A stream carries any number of request/response pairs. Every message is a 4-byte big-endian
//! length and a JSON header; responses that carry data (inventory, manifest, chunk) announce its
//! length in the header and the raw bytes follow. Every length is checked before anything is
//! allocated: a header against [`MAX_HEADER_BYTES`], a manifest or chunk against the exact length
//! the requested size implies, an inventory against [`MAX_INVENTORY_BYTES`] (and its buffer grows
//! with the bytes that actually arrive, never from the claim).
//!
//! Version 2 carries signed version records (see `announce`); a node of version 1 speaks
//! `/dig/<net>/sync/1`, so the two never exchange stores (opening a stream fails with "protocol
//! not supported" on both sides).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Largest JSON header accepted (requests and responses are a few hundred bytes).
pub const MAX_HEADER_BYTES: u32 = 8 * 1024;
/// Largest inventory body accepted (JSON list of signed versions).
pub const MAX_INVENTORY_BYTES: u64 = 64 * 1024 * 1024;

/// Largest holder notice body accepted (one announcement's worth of signed records).
pub const MAX_HOLDING_BYTES: u64 = crate::sync::announce::MAX_ANNOUNCEMENT_BYTES as u64;

/// The sync protocol id for a network: `/dig/<net>/sync/2`.
pub fn sync_protocol(network_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/dig/{network_id}/sync/2"))
        .expect("a protocol id that starts with '/' is always valid")
}

/// What a peer asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Request {
    /// The digest of everything the peer holds (anti-entropy, step 1).
    Digest,
    /// The full list of what the peer holds (anti-entropy, step 2, only when digests differ).
    Inventory,
    /// The chunk manifest of a store's content.
    Manifest { name: String, hash: String },
    /// One chunk of a store's content.
    Chunk {
        name: String,
        hash: String,
        index: u64,
    },
    /// The content-defined chunk map of a store's content (delta sync; see `store::cdc`). A
    /// peer from before delta sync closes the stream on it, and the download fetches whole
    /// chunks instead.
    ChunkMap { name: String, hash: String },
    /// `len` bytes at `offset` of a store's content, within one chunk (delta sync).
    Range {
        name: String,
        hash: String,
        offset: u64,
        len: u64,
    },
    /// "I now hold these versions": followed by `len` bytes of an announcement (signed records,
    /// at most [`MAX_HOLDING_BYTES`]). Sent to direct peers after an install instead of a gossip
    /// announcement to the whole network. A peer from before holder notices closes the stream
    /// on it; it learns the same from the next inventory exchange.
    Holding { len: u64 },
    /// Range-based reconciliation of inventories (see `reconcile`): followed by `len` bytes of
    /// JSON `Vec<RangeAsk>`. A peer from before it closes the stream; the asker then reads the
    /// full inventory.
    Reconcile { len: u64 },
    /// "I am downloading this content" (chunk swarming, see `swarming`): the peer may ask this
    /// node for the chunks it has verified. A peer from before swarming closes the stream.
    Fetching { name: String, hash: String },
    /// Which chunks of a content the peer has verified: answered with a bitmap, from a running
    /// download or (every chunk) from a held store.
    Have { name: String, hash: String },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalKind {
    /// The peer does not hold this content (any more).
    NotFound,
    /// The request was malformed (bad name, hash or index).
    BadRequest,
    /// The peer has too many requests from us in flight; try again shortly.
    Busy,
}

/// The header of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ResponseHeader {
    Digest {
        digest: String,
        count: u64,
        /// The peer drains before leaving (its copies do not count for another drain). Absent
        /// from older peers, which never drain.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        draining: bool,
    },
    /// Followed by `len` bytes of JSON (`Vec<WireEntry>`).
    Inventory {
        len: u64,
    },
    /// Followed by `len` bytes: 32 per chunk.
    Manifest {
        len: u64,
    },
    /// Followed by `len` bytes of chunk data (or of the range asked for).
    Chunk {
        len: u64,
    },
    /// Followed by `len` bytes: 36 per content-defined chunk, cut by `scheme`.
    ChunkMap {
        len: u64,
        scheme: String,
    },
    /// A holder notice (or a fetching notice) was taken.
    Noted,
    /// Followed by `len` bytes: the bitmap of verified chunks (see `swarming::bitmap_len`).
    Have {
        len: u64,
    },
    /// Followed by `len` bytes of JSON `Vec<RangeAnswer>`, for the first ranges asked.
    Reconcile {
        len: u64,
    },
    Refused {
        kind: RefusalKind,
        message: String,
    },
}

/// Writes one length-prefixed JSON header.
pub async fn write_header<W, T>(io: &mut W, header: &T) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = serde_json::to_vec(header).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= MAX_HEADER_BYTES)
        .ok_or_else(|| io::Error::other(format!("header of {} bytes too large", bytes.len())))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await
}

/// Reads one length-prefixed JSON header; `Ok(None)` on a clean end of stream before it.
pub async fn read_header<R, T>(io: &mut R) -> io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("header of {len} bytes exceeds the limit of {MAX_HEADER_BYTES}"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    io.read_exact(&mut bytes).await?;
    decode_header(&bytes).map(Some)
}

/// Parses header bytes (the part after the length).
pub fn decode_header<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad header: {e}")))
}

/// Reads a body of `len` bytes into `buffer` after checking it against `limit`. The buffer grows
/// as bytes arrive, so a peer that claims a large body and sends little costs little.
pub async fn read_body<R>(io: &mut R, len: u64, limit: u64, buffer: &mut Vec<u8>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
{
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("body of {len} bytes exceeds the limit of {limit}"),
        ));
    }
    buffer.clear();
    let read = io.take(len).read_to_end(buffer).await?;
    if (read as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended after {read} of {len} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_digest_without_the_draining_flag_is_from_a_node_that_does_not_drain() {
        let old = br#"{"type":"digest","digest":"ab","count":1}"#;
        let header: ResponseHeader = decode_header(old).unwrap();
        assert!(matches!(
            header,
            ResponseHeader::Digest {
                draining: false,
                ..
            }
        ));
        let new = ResponseHeader::Digest {
            digest: "ab".into(),
            count: 1,
            draining: true,
        };
        let bytes = serde_json::to_vec(&new).unwrap();
        assert_eq!(decode_header::<ResponseHeader>(&bytes).unwrap(), new);
        let quiet = ResponseHeader::Digest {
            digest: "ab".into(),
            count: 1,
            draining: false,
        };
        let text = serde_json::to_string(&quiet).unwrap();
        assert!(!text.contains("draining"), "{text}");
    }

    #[test]
    fn delta_and_holder_requests_are_new_types_that_an_older_node_cannot_mistake_for_its_own() {
        let map = serde_json::to_value(Request::ChunkMap {
            name: "s".into(),
            hash: "ab".into(),
        })
        .unwrap();
        assert_eq!(map["type"], "chunkMap");
        let range = serde_json::to_value(Request::Range {
            name: "s".into(),
            hash: "ab".into(),
            offset: 7,
            len: 9,
        })
        .unwrap();
        assert_eq!(range["type"], "range");
        let holding = serde_json::to_value(Request::Holding { len: 10 }).unwrap();
        assert_eq!(holding["type"], "holding");
        let reconcile = serde_json::to_value(Request::Reconcile { len: 10 }).unwrap();
        assert_eq!(reconcile["type"], "reconcile");
        // What a node from before delta sync knew: the tag decides, so a new type fails to parse
        // there (and the stream is closed) rather than being read as a chunk request.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type", rename_all = "camelCase")]
        #[allow(dead_code)]
        enum OlderRequest {
            Digest,
            Inventory,
            Manifest {
                name: String,
                hash: String,
            },
            Chunk {
                name: String,
                hash: String,
                index: u64,
            },
        }
        assert!(serde_json::from_value::<OlderRequest>(map).is_err());
        assert!(serde_json::from_value::<OlderRequest>(range).is_err());
        assert!(serde_json::from_value::<OlderRequest>(holding).is_err());
        assert!(serde_json::from_value::<OlderRequest>(reconcile).is_err());
    }

    #[test]
    fn protocol_id_carries_the_network_and_the_version() {
        assert_eq!(sync_protocol("testnet").as_ref(), "/dig/testnet/sync/2");
    }

    #[tokio::test]
    async fn headers_and_bodies_round_trip_and_limits_are_enforced() {
        let mut wire = Vec::new();
        let request = Request::Chunk {
            name: "s".into(),
            hash: "ab".into(),
            index: 3,
        };
        write_header(&mut wire, &request).await.unwrap();
        wire.extend_from_slice(b"body");
        let mut reader = &wire[..];
        let back: Request = read_header(&mut reader).await.unwrap().unwrap();
        assert_eq!(back, request);
        let mut body = Vec::new();
        read_body(&mut reader, 4, 4, &mut body).await.unwrap();
        assert_eq!(body, b"body");
        assert!(
            read_header::<_, Request>(&mut reader)
                .await
                .unwrap()
                .is_none()
        );

        let mut huge = (MAX_HEADER_BYTES + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert!(read_header::<_, Request>(&mut &huge[..]).await.is_err());
        assert!(read_body(&mut &b"xx"[..], 2, 1, &mut body).await.is_err());
    }

    #[tokio::test]
    async fn a_claimed_body_larger_than_what_arrives_allocates_only_what_arrived() {
        let mut body = Vec::new();
        let error = read_body(
            &mut &b"tiny"[..],
            MAX_INVENTORY_BYTES,
            MAX_INVENTORY_BYTES,
            &mut body,
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.capacity() < 1 << 20, "capacity {}", body.capacity());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes on a stream: a request, a clean end, or an error; never a panic and never a
        /// header above the limit.
        #[test]
        fn reading_arbitrary_stream_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut reader = &bytes[..];
                for _ in 0..8 {
                    match read_header::<_, Request>(&mut reader).await {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
                let mut reader = &bytes[..];
                let _ = read_header::<_, ResponseHeader>(&mut reader).await;
            });
        }

        /// A length prefix that claims more than the limit is refused before any allocation.
        #[test]
        fn oversized_lengths_are_refused(len in (MAX_HEADER_BYTES + 1)..=u32::MAX) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let wire = len.to_be_bytes();
            let result = runtime.block_on(read_header::<_, Request>(&mut &wire[..]));
            prop_assert!(result.is_err());
        }

        /// Any JSON header value decodes to a known message or an error.
        #[test]
        fn arbitrary_headers_decode_or_fail_cleanly(
            kind in "(digest|inventory|manifest|chunk|refused|[a-z]{0,8})",
            len in any::<u64>(),
            name in "[ -~]{0,40}",
        ) {
            let text = serde_json::json!({"type": kind, "len": len, "name": name, "hash": name, "index": len, "digest": name, "count": len}).to_string();
            let _ = decode_header::<Request>(text.as_bytes());
            let _ = decode_header::<ResponseHeader>(text.as_bytes());
        }
    }
}
