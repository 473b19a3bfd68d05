//! Content-defined chunks of a file (FastCDC, 2020): boundaries that follow the content, so an
//! insertion shifts the bytes after it without changing the chunks they fall in. Delta sync
//! compares the chunk maps of two versions by the BLAKE3 hash of each chunk to find the bytes a
//! receiver already holds at another offset. A map is a hint, never trusted: every byte it
//! places is verified against the version's own 1 MiB chunk manifest (see `hash`).

use std::io::{self, Read};

use super::hash::Hash32;

/// The chunking both sides must share for their maps to match, named on the wire.
pub const SCHEME: &str = "fastcdc2020-16k-64k-256k";
pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;
/// Bytes of one map entry on the wire: a 4-byte big-endian length and a BLAKE3 hash.
pub const ENTRY_BYTES: u64 = 36;

/// One content-defined chunk: its length and the BLAKE3 hash of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentChunk {
    pub len: u32,
    pub hash: Hash32,
}

/// The chunk map of everything `reader` yields.
pub fn chunk_map(reader: impl Read) -> io::Result<Vec<ContentChunk>> {
    let chunker = fastcdc::v2020::StreamCDC::new(
        reader,
        MIN_CHUNK as usize,
        AVG_CHUNK as usize,
        MAX_CHUNK as usize,
    );
    let mut map = Vec::new();
    for chunk in chunker {
        let chunk = chunk.map_err(|error| match error {
            fastcdc::v2020::Error::IoError(error) => error,
            other => io::Error::other(other.to_string()),
        })?;
        map.push(ContentChunk {
            len: chunk.length as u32,
            hash: *blake3::hash(&chunk.data).as_bytes(),
        });
    }
    Ok(map)
}

/// The largest map a file of `size` bytes can have, in bytes on the wire: every chunk but the
/// last is at least [`MIN_CHUNK`] long.
pub fn max_map_bytes(size: u64) -> u64 {
    (size / u64::from(MIN_CHUNK) + 1).saturating_mul(ENTRY_BYTES)
}

pub fn map_to_bytes(map: &[ContentChunk]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(map.len() * ENTRY_BYTES as usize);
    for chunk in map {
        bytes.extend_from_slice(&chunk.len.to_be_bytes());
        bytes.extend_from_slice(&chunk.hash);
    }
    bytes
}

/// Parses a map for a file of `size` bytes: `None` unless the entries are whole, none is empty
/// or longer than [`MAX_CHUNK`], and their lengths add up to `size`.
pub fn map_from_bytes(bytes: &[u8], size: u64) -> Option<Vec<ContentChunk>> {
    let len = bytes.len() as u64;
    if !len.is_multiple_of(ENTRY_BYTES) || len > max_map_bytes(size) {
        return None;
    }
    let map: Vec<ContentChunk> = bytes
        .chunks_exact(ENTRY_BYTES as usize)
        .map(|entry| ContentChunk {
            len: u32::from_be_bytes(entry[..4].try_into().expect("4 bytes")),
            hash: entry[4..].try_into().expect("32 bytes"),
        })
        .collect();
    let lengths_fit = map.iter().all(|c| c.len > 0 && c.len <= MAX_CHUNK);
    let total: u64 = map.iter().map(|c| u64::from(c.len)).sum();
    (lengths_fit && total == size).then_some(map)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Pseudo-random bytes (xorshift): content with content-defined boundaries.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn an_insertion_keeps_the_chunks_after_it() {
        let old = noise(4 << 20, 1);
        let mut new = noise(100_000, 2);
        new.extend(&old);
        let (old_map, new_map) = (chunk_map(&old[..]).unwrap(), chunk_map(&new[..]).unwrap());
        let old_hashes: std::collections::HashSet<_> = old_map.iter().map(|c| c.hash).collect();
        let shared: u64 = new_map
            .iter()
            .filter(|c| old_hashes.contains(&c.hash))
            .map(|c| u64::from(c.len))
            .sum();
        // All but the chunks around the insertion point are found again.
        assert!(
            shared >= old.len() as u64 - 2 * u64::from(MAX_CHUNK),
            "{shared}"
        );
        assert!(old_map.iter().all(|c| c.len <= MAX_CHUNK));
    }

    #[test]
    fn maps_round_trip_and_bad_ones_are_refused() {
        let data = noise(1 << 20, 3);
        let map = chunk_map(&data[..]).unwrap();
        let bytes = map_to_bytes(&map);
        assert_eq!(map_from_bytes(&bytes, data.len() as u64), Some(map.clone()));
        // Lengths that do not add up to the size, a torn entry, an empty chunk.
        assert_eq!(map_from_bytes(&bytes, data.len() as u64 + 1), None);
        assert_eq!(map_from_bytes(&bytes[1..], data.len() as u64), None);
        let mut empty = map.clone();
        empty.push(ContentChunk {
            len: 0,
            hash: [0; 32],
        });
        assert_eq!(
            map_from_bytes(&map_to_bytes(&empty), data.len() as u64),
            None
        );
        // More entries than a file of that size can have is refused before parsing.
        assert_eq!(map_from_bytes(&vec![0; 36 * 100], 1000), None);
        assert!(chunk_map(&[][..]).unwrap().is_empty());
    }
}
