//! Streaming BLAKE3 content hashing with a per-chunk manifest.
//!
//! A file is cut into fixed 1 MiB chunks. For files larger than one chunk, the manifest holds the
//! BLAKE3 *chaining value* of every chunk (each chunk is a complete 1 MiB subtree of the BLAKE3
//! tree). Merging the chaining values up the tree gives the file's ordinary BLAKE3 hash, so the
//! announced file hash commits to the manifest, and every chunk can be checked on its own before it
//! is written. For a file of one chunk the manifest is the file hash itself.

use std::io::{self, Read};

use blake3::hazmat::{
    HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

/// Size of a transfer chunk and of a manifest subtree. A power of two multiple of BLAKE3's 1 KiB
/// chunk, so every chunk boundary is a subtree boundary.
pub const CHUNK_SIZE: u64 = 1 << 20;

pub type Hash32 = [u8; 32];
pub type ChainingValue = [u8; 32];

/// Size, BLAKE3 hash and chunk manifest of some content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentDigest {
    pub size: u64,
    pub hash: Hash32,
    pub chunks: Vec<ChainingValue>,
}

/// Number of chunks of a file of `size` bytes (an empty file has none).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// Length of chunk `index` of a file of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> u64 {
    let start = index * CHUNK_SIZE;
    size.saturating_sub(start).min(CHUNK_SIZE)
}

/// The manifest entry of chunk `index` with bytes `data`, for a file of `size` bytes.
pub fn chunk_value(size: u64, index: u64, data: &[u8]) -> ChainingValue {
    if size <= CHUNK_SIZE {
        *blake3::hash(data).as_bytes()
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(index * CHUNK_SIZE);
        hasher.update(data);
        hasher.finalize_non_root()
    }
}

/// True when `data` is exactly chunk `index` of the content described by `manifest`.
pub fn verify_chunk(size: u64, index: u64, data: &[u8], manifest: &[ChainingValue]) -> bool {
    let Some(expected) = manifest.get(index as usize) else {
        return false;
    };
    data.len() as u64 == chunk_len(size, index) && chunk_value(size, index, data) == *expected
}

/// The file hash that a manifest commits to, or `None` when the manifest has the wrong length.
pub fn root_hash(size: u64, manifest: &[ChainingValue]) -> Option<Hash32> {
    if manifest.len() as u64 != chunk_count(size) {
        return None;
    }
    match manifest {
        [] => Some(*blake3::hash(b"").as_bytes()),
        [single] if size <= CHUNK_SIZE => Some(*single),
        _ => Some(merge(manifest, size, true)),
    }
}

/// True when `manifest` belongs to content of `size` bytes hashing to `hash`.
pub fn verify_manifest(size: u64, hash: &Hash32, manifest: &[ChainingValue]) -> bool {
    root_hash(size, manifest).as_ref() == Some(hash)
}

fn merge(values: &[ChainingValue], len: u64, is_root: bool) -> [u8; 32] {
    if values.len() == 1 {
        return values[0];
    }
    let left_len = left_subtree_len(len);
    let left_count = (left_len / CHUNK_SIZE) as usize;
    let left = merge(&values[..left_count], left_len, false);
    let right = merge(&values[left_count..], len - left_len, false);
    if is_root {
        *merge_subtrees_root(&left, &right, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&left, &right, Mode::Hash)
    }
}

/// Hashes everything `reader` yields, one bounded 1 MiB buffer at a time.
pub fn digest_reader(mut reader: impl Read) -> io::Result<ContentDigest> {
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    // The first chunk is kept until we know whether the file is a single chunk (plain hash) or
    // the start of a tree (chaining value); later chunks are hashed as they arrive.
    loop {
        let filled = read_full(&mut reader, &mut buffer)?;
        if filled == 0 {
            break;
        }
        let index = size / CHUNK_SIZE;
        size += filled as u64;
        if index == 0 {
            pieces.push((0, buffer[..filled].to_vec()));
        } else {
            if let Some((_, first)) = pieces.pop() {
                chunks.push(chunk_value(u64::MAX, 0, &first));
            }
            chunks.push(chunk_value(u64::MAX, index, &buffer[..filled]));
        }
        if filled < buffer.len() {
            break;
        }
    }
    if let Some((_, first)) = pieces.pop() {
        chunks.push(chunk_value(size, 0, &first));
    }
    let hash = root_hash(size, &chunks).ok_or_else(|| io::Error::other("chunk count mismatch"))?;
    Ok(ContentDigest { size, hash, chunks })
}

/// Files of at least this many chunks are hashed on several threads.
const PARALLEL_MIN_CHUNKS: u64 = 16;
/// Most threads one file is hashed on.
const MAX_HASH_THREADS: usize = 4;

/// Hashes a file from disk without loading it whole. Large files are cut into one contiguous
/// range of chunks per core, each hashed on its own thread with a bounded 1 MiB buffer: chunk
/// chaining values are independent, so only the final merge is sequential. A file that shrinks
/// meanwhile gives an `UnexpectedEof` error.
pub fn digest_file(path: &std::path::Path) -> io::Result<ContentDigest> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let count = chunk_count(size);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_HASH_THREADS) as u64;
    if threads < 2 || count < PARALLEL_MIN_CHUNKS {
        return digest_reader(file);
    }
    let ranges: Vec<(u64, u64)> = (0..threads)
        .map(|t| (t * count / threads, (t + 1) * count / threads))
        .collect();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(start, end)| {
                let file = &file;
                scope.spawn(move || hash_chunk_range(file, size, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    let chunks: Vec<ChainingValue> = parts.into_iter().flatten().collect();
    let hash = root_hash(size, &chunks).ok_or_else(|| io::Error::other("chunk count mismatch"))?;
    Ok(ContentDigest { size, hash, chunks })
}

/// Chaining values of chunks `start..end` of a file of `size` bytes (more than one chunk).
fn hash_chunk_range(
    file: &std::fs::File,
    size: u64,
    start: u64,
    end: u64,
) -> io::Result<Vec<ChainingValue>> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    let mut values = Vec::with_capacity((end - start) as usize);
    for index in start..end {
        let data = &mut buffer[..chunk_len(size, index) as usize];
        file.read_exact_at(data, index * CHUNK_SIZE)?;
        values.push(chunk_value(size, index, data));
    }
    Ok(values)
}

/// Reads until `buffer` is full or the reader ends; returns the number of bytes read.
pub fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Lowercase hex of a hash (the form used in the index, on the wire and in the API).
pub fn to_hex(hash: &Hash32) -> String {
    hex::encode(hash)
}

/// Parses 64 hex digits into a hash.
pub fn from_hex(text: &str) -> Option<Hash32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Manifest as raw bytes (32 per chunk), the form sent over the wire.
pub fn manifest_to_bytes(manifest: &[ChainingValue]) -> Vec<u8> {
    manifest.concat()
}

/// Manifest from raw bytes; `None` when the length is not a multiple of 32.
pub fn manifest_from_bytes(bytes: &[u8]) -> Option<Vec<ChainingValue>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("chunks_exact yields 32 bytes"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn file_hash_equals_plain_blake3_for_all_size_classes() {
        let mib = CHUNK_SIZE as usize;
        for len in [
            0,
            1,
            1000,
            mib - 1,
            mib,
            mib + 1,
            2 * mib,
            3 * mib + 5,
            5 * mib,
        ] {
            let data = pattern(len);
            let digest = digest_reader(&data[..]).unwrap();
            assert_eq!(digest.size, len as u64);
            assert_eq!(digest.hash, *blake3::hash(&data).as_bytes(), "len {len}");
            assert_eq!(digest.chunks.len() as u64, chunk_count(len as u64));
            assert!(verify_manifest(digest.size, &digest.hash, &digest.chunks));
        }
    }

    #[test]
    fn files_hashed_in_parallel_match_the_streaming_digest() {
        let dir = tempfile::tempdir().unwrap();
        for len in [PARALLEL_MIN_CHUNKS * CHUNK_SIZE, 37 * CHUNK_SIZE + 123] {
            let data = pattern(len as usize);
            let path = dir.path().join("f.dig");
            std::fs::write(&path, &data).unwrap();
            let parallel = digest_file(&path).unwrap();
            assert_eq!(parallel, digest_reader(&data[..]).unwrap(), "len {len}");
            assert_eq!(parallel.hash, *blake3::hash(&data).as_bytes());
        }
    }

    #[test]
    fn every_chunk_verifies_and_a_flipped_byte_does_not() {
        let data = pattern(3 * CHUNK_SIZE as usize + 77);
        let digest = digest_reader(&data[..]).unwrap();
        for (index, chunk) in data.chunks(CHUNK_SIZE as usize).enumerate() {
            assert!(verify_chunk(
                digest.size,
                index as u64,
                chunk,
                &digest.chunks
            ));
            let mut bad = chunk.to_vec();
            bad[chunk.len() / 2] ^= 0x01;
            assert!(!verify_chunk(
                digest.size,
                index as u64,
                &bad,
                &digest.chunks
            ));
            // A correct chunk presented at the wrong position is rejected too.
            let other = (index as u64 + 1) % 4;
            assert!(!verify_chunk(digest.size, other, chunk, &digest.chunks));
        }
        assert!(!verify_chunk(digest.size, 1, &data[..10], &digest.chunks));
    }

    #[test]
    fn a_tampered_manifest_does_not_match_the_file_hash() {
        let data = pattern(2 * CHUNK_SIZE as usize + 3);
        let digest = digest_reader(&data[..]).unwrap();
        let mut bad = digest.chunks.clone();
        bad[1][0] ^= 1;
        assert!(!verify_manifest(digest.size, &digest.hash, &bad));
        assert!(!verify_manifest(
            digest.size,
            &digest.hash,
            &digest.chunks[..2]
        ));
        assert!(!verify_manifest(
            digest.size + CHUNK_SIZE,
            &digest.hash,
            &digest.chunks
        ));
    }

    #[test]
    fn hex_and_manifest_bytes_round_trip() {
        let digest = digest_reader(&pattern(2 * CHUNK_SIZE as usize)[..]).unwrap();
        assert_eq!(from_hex(&to_hex(&digest.hash)), Some(digest.hash));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"ab".repeat(31)), None);
        let bytes = manifest_to_bytes(&digest.chunks);
        assert_eq!(manifest_from_bytes(&bytes), Some(digest.chunks));
        assert_eq!(manifest_from_bytes(&bytes[..33]), None);
    }
}
