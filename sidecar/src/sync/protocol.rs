//! The sync wire protocol on `/dig/<net>/sync/1` (libp2p-stream).
//!
//! A stream carries any number of request/response pairs. Every message is a 4-byte big-endian
//! length and a JSON header; responses that carry data (inventory, manifest, chunk) announce its
//! length in the header and the raw bytes follow. Every length is checked against a limit before
//! anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::store::CHUNK_SIZE;

/// Largest JSON header accepted.
pub const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Largest inventory body accepted (JSON list of stores).
pub const MAX_INVENTORY_BYTES: u64 = 64 * 1024 * 1024;
/// Largest manifest accepted: 32 bytes per chunk of a file of up to 4 TiB.
pub const MAX_MANIFEST_BYTES: u64 = 32 * (4 << 40) / CHUNK_SIZE;

/// The sync protocol id for a network: `/dig/<net>/sync/1`.
pub fn sync_protocol(network_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/dig/{network_id}/sync/1"))
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
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalKind {
    /// The peer does not hold this content (any more).
    NotFound,
    /// The request was malformed (bad name, hash or index).
    BadRequest,
}

/// The header of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ResponseHeader {
    Digest {
        digest: String,
        count: u64,
    },
    /// Followed by `len` bytes of JSON (`Vec<WireEntry>`).
    Inventory {
        len: u64,
    },
    /// Followed by `len` bytes: 32 per chunk.
    Manifest {
        len: u64,
    },
    /// Followed by `len` bytes of chunk data.
    Chunk {
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
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad header: {e}")))
}

/// Reads a body of `len` bytes into `buffer` after checking it against `limit`.
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
    buffer.resize(len as usize, 0);
    io.read_exact(buffer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_id_carries_the_network() {
        assert_eq!(sync_protocol("testnet").as_ref(), "/dig/testnet/sync/1");
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
}
