//! Reusing the bytes a new version shares with the older file it replaces, in two ways.
//!
//! - **Unmoved chunks.** An append or an in-place change leaves most 1 MiB chunks where they were,
//!   and a chunk's chaining value depends only on its bytes and its offset, so equal values at the
//!   same index mean equal bytes. Those chunks are copied in the kernel (`copy_file_range`, which
//!   XFS and btrfs turn into a reflink of the extents).
//! - **Moved bytes.** An insertion shifts everything after it. The peer's content-defined chunk
//!   map (see `store::cdc`) is matched against the older file's by hash; a missing chunk whose
//!   bytes mostly exist in the older file is built from pieces copied from it and the few bytes
//!   fetched from the peer by range.
//!
//! Unmoved chunks copied from an older file that stayed unchanged throughout (its size, times
//! and inode as recorded when it was hashed) count at once: equal chaining values at equal
//! offsets mean equal bytes. Every other reused chunk (moved bytes, or an older file that changed
//! during the copy) is verified against the new manifest before it counts, so a file changed
//! behind our back or a lying map costs a fetch, never a corrupt store.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use std::collections::HashMap;

use super::chunk_maps::map_unchanged_file;
use crate::store::LocalMeta;
use crate::store::cdc::ContentChunk;
use crate::store::hash::{CHUNK_SIZE, ChainingValue, Hash32, chunk_count, chunk_len, verify_chunk};

/// Threads that verify copied chunks (hashing is what reuse costs on a file system without
/// reflinks; the copy itself stays in the kernel).
const VERIFY_THREADS: usize = 4;

/// The older version of a store, still in the data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OlderFile {
    pub path: PathBuf,
    /// The file as it was when it was the current version.
    pub meta: LocalMeta,
    /// Its chunk manifest.
    pub chunks: Vec<ChainingValue>,
}

/// Chunks still to fetch whose value the older file has at the same index. Single-chunk files
/// are hashed differently (a plain hash, not a chaining value), so neither side may be one.
pub fn shared_chunks(
    older: &OlderFile,
    size: u64,
    manifest: &[ChainingValue],
    done: &[u8],
) -> Vec<u64> {
    let old_size = older.meta.size;
    if old_size <= CHUNK_SIZE
        || size <= CHUNK_SIZE
        || older.chunks.len() as u64 != chunk_count(old_size)
    {
        return Vec::new();
    }
    (0..chunk_count(size).min(chunk_count(old_size)))
        .filter(|&index| done.get(index as usize) == Some(&0))
        .filter(|&index| chunk_len(old_size, index) == chunk_len(size, index))
        .filter(|&index| older.chunks[index as usize] == manifest[index as usize])
        .collect()
}

/// Copies the chunks the new version shares with `older` into `part` (a file of the new size)
/// and marks those that verify in `done`. Returns the bytes reused. A missing or changed older
/// file reuses nothing; only an error on `part` is an error.
pub fn reuse_older_chunks(
    older: &OlderFile,
    part: &File,
    size: u64,
    manifest: &[ChainingValue],
    done: &mut [u8],
) -> io::Result<u64> {
    let candidates = shared_chunks(older, size, manifest, done);
    if candidates.is_empty() {
        return Ok(0);
    }
    let Some(source) = older.meta.open_unchanged(&older.path) else {
        tracing::debug!(path = %older.path.display(), "the older version is gone or changed: nothing to reuse");
        return Ok(0);
    };
    for (start, count) in runs(&candidates) {
        let offset = start * CHUNK_SIZE;
        let len = (start + count).min(chunk_count(size)) * CHUNK_SIZE;
        let len = len.min(size).min(older.meta.size) - offset;
        copy_range(&source, part, offset, offset, len)?;
    }
    let unchanged = older.meta.describes(&source);
    let verified = trusted_or_verified(part, size, manifest, candidates, unchanged)?;
    let mut reused = 0;
    for index in verified {
        done[index as usize] = 1;
        reused += chunk_len(size, index);
    }
    Ok(reused)
}

/// The copied `candidates` that count. When the older file was `unchanged` from before the copy
/// to after it (size, times and inode, as its index entry recorded them), its bytes are the ones
/// its manifest was computed from, and an equal chaining value at the same index means equal
/// bytes: they count without being read and hashed again (the same proof the server relies on
/// to serve that file). Otherwise each copied chunk is verified against the new manifest.
fn trusted_or_verified(
    part: &File,
    size: u64,
    manifest: &[ChainingValue],
    candidates: Vec<u64>,
    unchanged: bool,
) -> io::Result<Vec<u64>> {
    if unchanged {
        Ok(candidates)
    } else {
        verify_chunks(part, size, manifest, &candidates)
    }
}

/// Consecutive indices as (first, count).
fn runs(indices: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some((start, count)) if *start + *count == index => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// Copies `len` bytes at `from` in `source` to `to` in `target`, in the kernel; through a
/// buffer only where the kernel cannot (another file system, an old kernel).
fn copy_range(source: &File, target: &File, from: u64, to: u64, len: u64) -> io::Result<()> {
    use nix::errno::Errno;
    let position = |at: u64| i64::try_from(at).map_err(io::Error::other);
    let (mut read_at, mut write_at) = (position(from)?, position(to)?);
    let end = position(
        from.checked_add(len)
            .ok_or_else(|| io::Error::other("range overflow"))?,
    )?;
    while read_at < end {
        let want = usize::try_from(end - read_at)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match nix::fcntl::copy_file_range(
            source,
            Some(&mut read_at),
            target,
            Some(&mut write_at),
            want,
        ) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the older file ended at byte {read_at} of {end}"),
                ));
            }
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_through_buffer(
                    source,
                    target,
                    read_at as u64,
                    write_at as u64,
                    (end - read_at) as u64,
                );
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

fn copy_through_buffer(
    source: &File,
    target: &File,
    from: u64,
    to: u64,
    len: u64,
) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK_SIZE.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK_SIZE) as usize;
        source.read_exact_at(&mut buffer[..n], from + done)?;
        target.write_all_at(&buffer[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// True when enough chunks inside the older file's range are still missing (`done` 0) that
/// reading the whole older file to cut its map is worth it: at least three, and at least one in
/// 64 of its chunks. Chunks past its end (an append) are new bytes no map can find.
pub fn worth_mapping(older_size: u64, done: &[u8]) -> bool {
    // The older file's last chunk is usually partial, and grows in an append: not a sign of moves.
    let inside = chunk_count(older_size).saturating_sub(1) as usize;
    let missing = done.iter().take(inside).filter(|d| **d == 0).count() as u64;
    missing >= 3 && missing * 64 >= inside as u64
}

/// Where the bytes of one piece of a chunk come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceSource {
    /// The older file, at this offset.
    Older(u64),
    /// The peer, fetched by range.
    Peer,
}

/// Bytes `offset..offset + len` of the new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub len: u64,
    pub source: PieceSource,
}

/// A missing chunk to build from pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkBuild {
    pub index: u64,
    pub pieces: Vec<Piece>,
}

impl ChunkBuild {
    pub fn peer_bytes(&self) -> u64 {
        self.pieces
            .iter()
            .filter(|p| p.source == PieceSource::Peer)
            .map(|p| p.len)
            .sum()
    }
}

/// The missing chunks (`done` 0) of a new version of `size` bytes, with map `new`, that can be
/// built mostly from the older file, whose map is `older`: pieces whose content the older file
/// has (anywhere) are copied from it, the rest is fetched. A chunk qualifies when at most half of
/// it comes from the peer (else a whole-chunk fetch costs about the same and is one request).
pub fn plan_moved(
    older: &[ContentChunk],
    new: &[ContentChunk],
    size: u64,
    done: &[u8],
) -> Vec<ChunkBuild> {
    let mut by_hash: HashMap<Hash32, (u64, u32)> = HashMap::with_capacity(older.len());
    let mut at = 0u64;
    for chunk in older {
        by_hash.entry(chunk.hash).or_insert((at, chunk.len));
        at += u64::from(chunk.len);
    }
    let mut pieces = Vec::with_capacity(new.len());
    let mut at = 0u64;
    for chunk in new {
        let len = u64::from(chunk.len);
        let source = match by_hash.get(&chunk.hash) {
            Some(&(offset, old_len)) if old_len == chunk.len => PieceSource::Older(offset),
            _ => PieceSource::Peer,
        };
        pieces.push(Piece {
            offset: at,
            len,
            source,
        });
        at += len;
    }
    if at != size {
        return Vec::new();
    }
    let mut builds = Vec::new();
    let mut first = 0;
    for index in (0..chunk_count(size)).filter(|&i| done.get(i as usize) == Some(&0)) {
        let (start, end) = (
            index * CHUNK_SIZE,
            index * CHUNK_SIZE + chunk_len(size, index),
        );
        while first < pieces.len() && pieces[first].offset + pieces[first].len <= start {
            first += 1;
        }
        let mut build = ChunkBuild {
            index,
            pieces: Vec::new(),
        };
        for piece in pieces[first..].iter().take_while(|p| p.offset < end) {
            let (from, to) = (piece.offset.max(start), (piece.offset + piece.len).min(end));
            let source = match piece.source {
                PieceSource::Older(offset) => PieceSource::Older(offset + (from - piece.offset)),
                PieceSource::Peer => PieceSource::Peer,
            };
            push_merged(
                &mut build.pieces,
                Piece {
                    offset: from,
                    len: to - from,
                    source,
                },
            );
        }
        if build.peer_bytes() * 2 <= end - start {
            builds.push(build);
        }
    }
    builds
}

/// Appends `piece`, merged with the last one when both continue each other.
fn push_merged(pieces: &mut Vec<Piece>, piece: Piece) {
    if let Some(last) = pieces.last_mut()
        && last.offset + last.len == piece.offset
    {
        let continues = match (last.source, piece.source) {
            (PieceSource::Peer, PieceSource::Peer) => true,
            (PieceSource::Older(a), PieceSource::Older(b)) => a + last.len == b,
            _ => false,
        };
        if continues {
            last.len += piece.len;
            return;
        }
    }
    pieces.push(piece);
}

/// Copies the older file's pieces of `builds` into `part`; `false` (nothing copied) when the
/// older file is gone or changed.
pub fn copy_older_pieces(
    older: &OlderFile,
    part: &File,
    builds: &[ChunkBuild],
) -> io::Result<bool> {
    let Some(source) = older.meta.open_unchanged(&older.path) else {
        return Ok(false);
    };
    for piece in builds.iter().flat_map(|b| &b.pieces) {
        if let PieceSource::Older(from) = piece.source {
            copy_range(&source, part, from, piece.offset, piece.len)?;
        }
    }
    Ok(true)
}

/// The older file's own chunk map, or `None` when it is gone or changed.
pub fn older_chunk_map(older: &OlderFile) -> Option<Vec<ContentChunk>> {
    map_unchanged_file(&older.path, &older.meta).ok()
}

/// The chunks among `indices` whose bytes in `part` match the manifest, checked on a few threads.
pub fn verify_chunks(
    part: &File,
    size: u64,
    manifest: &[ChainingValue],
    indices: &[u64],
) -> io::Result<Vec<u64>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, VERIFY_THREADS);
    let share = indices.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = indices
            .chunks(share)
            .map(|some| {
                scope.spawn(move || -> io::Result<Vec<u64>> {
                    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
                    let mut verified = Vec::with_capacity(some.len());
                    for &index in some {
                        let len = chunk_len(size, index) as usize;
                        part.read_exact_at(&mut buffer[..len], index * CHUNK_SIZE)?;
                        if verify_chunk(size, index, &buffer[..len], manifest) {
                            verified.push(index);
                        }
                    }
                    Ok(verified)
                })
            })
            .collect();
        let mut verified = Vec::with_capacity(indices.len());
        for worker in workers {
            verified.extend(
                worker
                    .join()
                    .map_err(|_| io::Error::other("a chunk verification thread panicked"))??,
            );
        }
        Ok(verified)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cdc::tests::noise;
    use crate::store::hash::digest_reader;
    use std::fs;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        // Periodic (no content-defined boundaries to speak of): for the unmoved-chunk cases.
        (0..len)
            .map(|i| {
                (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .rotate_left(seed as u32) as u8
            })
            .collect()
    }

    struct Case {
        _dir: tempfile::TempDir,
        older: OlderFile,
        part: File,
        size: u64,
        manifest: Vec<ChainingValue>,
        new: Vec<u8>,
    }

    fn case(old: &[u8], new: &[u8]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("store.dig");
        fs::write(&old_path, old).unwrap();
        let older = OlderFile {
            meta: LocalMeta::of_path(&old_path).unwrap(),
            chunks: digest_reader(old).unwrap().chunks,
            path: old_path,
        };
        let part = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("store.part"))
            .unwrap();
        part.set_len(new.len() as u64).unwrap();
        Case {
            _dir: dir,
            older,
            part,
            size: new.len() as u64,
            manifest: digest_reader(new).unwrap().chunks,
            new: new.to_vec(),
        }
    }

    /// Fills the chunks not reused from `new` (what the fetch would do) and returns the file.
    fn finish(case: &Case, done: &[u8]) -> Vec<u8> {
        for (index, flag) in done.iter().enumerate() {
            if *flag == 0 {
                let start = index * CHUNK_SIZE as usize;
                let end = (start + CHUNK_SIZE as usize).min(case.new.len());
                case.part
                    .write_all_at(&case.new[start..end], start as u64)
                    .unwrap();
            }
        }
        let mut bytes = vec![0u8; case.size as usize];
        case.part.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    }

    fn reuse(case: &Case, done: &mut [u8]) -> u64 {
        reuse_older_chunks(&case.older, &case.part, case.size, &case.manifest, done).unwrap()
    }

    #[test]
    fn an_append_reuses_every_complete_chunk_of_the_older_file() {
        let old = pattern(5 * CHUNK_SIZE as usize + 300, 1);
        let mut new = old.clone();
        new.extend(pattern(CHUNK_SIZE as usize, 2));
        let case = case(&old, &new);
        let mut done = vec![0; chunk_count(case.size) as usize];
        let reused = reuse(&case, &mut done);
        // Chunks 0..5 are whole in both; the old partial chunk 5 grew, so it is fetched.
        assert_eq!(reused, 5 * CHUNK_SIZE);
        assert_eq!(done, vec![1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(finish(&case, &done), new);
    }

    #[test]
    fn an_in_place_change_fetches_only_the_changed_chunk() {
        let old = pattern(4 * CHUNK_SIZE as usize, 3);
        let mut new = old.clone();
        new[2 * CHUNK_SIZE as usize + 17] ^= 0xff;
        let case = case(&old, &new);
        let mut done = vec![0; 4];
        let reused = reuse(&case, &mut done);
        assert_eq!(reused, 3 * CHUNK_SIZE);
        assert_eq!(done, vec![1, 1, 0, 1]);
        assert_eq!(finish(&case, &done), new);
    }

    #[test]
    fn an_older_file_changed_since_it_was_hashed_is_not_used() {
        let old = pattern(3 * CHUNK_SIZE as usize, 4);
        let mut new = old.clone();
        new.extend(b"more");
        let case = case(&old, &new);
        // Same size, other bytes, later mtime: a local edit the index has not seen yet.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&case.older.path, pattern(old.len(), 9)).unwrap();
        let mut done = vec![0; 4];
        let reused = reuse(&case, &mut done);
        assert_eq!((reused, done), (0, vec![0; 4]));
    }

    #[test]
    fn copied_bytes_of_a_file_that_changed_during_the_copy_are_verified() {
        let old = pattern(3 * CHUNK_SIZE as usize, 5);
        let case = case(&old, &old);
        // The copy brought a changed chunk 1 (the older file was written to meanwhile).
        let mut changed = old.clone();
        changed[CHUNK_SIZE as usize] ^= 1;
        case.part.write_all_at(&changed, 0).unwrap();
        let verified =
            trusted_or_verified(&case.part, case.size, &case.manifest, vec![0, 1, 2], false)
                .unwrap();
        assert_eq!(verified, vec![0, 2], "chunk 1 is fetched instead");
        let trusted =
            trusted_or_verified(&case.part, case.size, &case.manifest, vec![0, 1, 2], true)
                .unwrap();
        assert_eq!(
            trusted,
            vec![0, 1, 2],
            "an unchanged file is not read again"
        );
    }

    #[test]
    fn chunks_already_verified_and_single_chunk_files_are_left_alone() {
        let old = pattern(3 * CHUNK_SIZE as usize, 6);
        let case = case(&old, &old);
        assert_eq!(
            shared_chunks(&case.older, case.size, &case.manifest, &[1, 0, 1]),
            vec![1]
        );
        let small = case_small();
        assert!(shared_chunks(&small.older, small.size, &small.manifest, &[0]).is_empty());
    }

    fn case_small() -> Case {
        let old = pattern(1000, 7);
        let mut new = old.clone();
        new.push(1);
        case(&old, &new)
    }

    /// Builds the planned chunks as a download would: older pieces copied, peer pieces taken
    /// from `new`; returns the chunks that verify and the bytes taken from the peer.
    fn build(case: &Case, builds: &[ChunkBuild]) -> (Vec<u64>, u64) {
        assert!(copy_older_pieces(&case.older, &case.part, builds).unwrap());
        let mut from_peer = 0;
        for piece in builds.iter().flat_map(|b| &b.pieces) {
            if piece.source == PieceSource::Peer {
                let range = piece.offset as usize..(piece.offset + piece.len) as usize;
                case.part
                    .write_all_at(&case.new[range], piece.offset)
                    .unwrap();
                from_peer += piece.len;
            }
        }
        let indices: Vec<u64> = builds.iter().map(|b| b.index).collect();
        let verified = verify_chunks(&case.part, case.size, &case.manifest, &indices).unwrap();
        (verified, from_peer)
    }

    #[test]
    fn an_insertion_at_the_start_is_built_from_moved_bytes_and_a_small_fetch() {
        let old = noise(6 * CHUNK_SIZE as usize, 11);
        let mut new = noise(100_000, 12);
        new.extend(&old);
        let case = case(&old, &new);
        let mut done = vec![0; chunk_count(case.size) as usize];
        // Every chunk moved: none is where it was.
        let unmoved = reuse(&case, &mut done);
        assert_eq!(unmoved, 0);
        let older_map = older_chunk_map(&case.older).unwrap();
        let new_map = crate::store::cdc::chunk_map(&new[..]).unwrap();
        let builds = plan_moved(&older_map, &new_map, case.size, &done);
        assert_eq!(builds.len(), done.len(), "{builds:?}");
        let (verified, from_peer) = build(&case, &builds);
        assert_eq!(verified.len(), done.len());
        // The inserted bytes and the content-defined chunk they landed in, nothing more.
        assert!(
            (100_000..=100_000 + 2 * 256 * 1024).contains(&from_peer),
            "{from_peer}"
        );
        for index in verified {
            done[index as usize] = 1;
        }
        assert_eq!(finish(&case, &done), new);
    }

    #[test]
    fn a_lying_map_builds_chunks_that_fail_verification() {
        let old = noise(3 * CHUNK_SIZE as usize, 13);
        let mut new = noise(50_000, 14);
        new.extend(&old);
        let case = case(&old, &new);
        let done = vec![0; chunk_count(case.size) as usize];
        let older_map = older_chunk_map(&case.older).unwrap();
        // The peer claims the new version is the older file's chunks shifted by nothing.
        let mut lie = older_map.clone();
        lie.push(crate::store::cdc::ContentChunk {
            len: 50_000,
            hash: [0; 32],
        });
        let builds = plan_moved(&older_map, &lie, case.size, &done);
        assert!(!builds.is_empty());
        let (verified, _) = build(&case, &builds);
        assert!(verified.is_empty(), "{verified:?}");
        // A map whose lengths do not add up to the size plans nothing.
        assert!(plan_moved(&older_map, &older_map, case.size, &done).is_empty());
    }

    #[test]
    fn the_older_file_is_mapped_only_when_bytes_may_have_moved() {
        let mib = CHUNK_SIZE;
        // An append: only chunks at and past the older file's end are missing.
        let mut done = vec![1; 1030];
        done[1023..].fill(0);
        assert!(!worth_mapping(1024 * mib - 5, &done));
        // An insertion: everything is missing.
        assert!(worth_mapping(1024 * mib, &[0; 1025]));
        // Two changed chunks in a 1 GiB store: not worth reading it all; 16 are.
        let mut done = vec![1; 1024];
        done[10] = 0;
        done[500] = 0;
        assert!(!worth_mapping(1024 * mib, &done));
        done[600..614].fill(0);
        assert!(worth_mapping(1024 * mib, &done));
        // A small store with three changed chunks is.
        let mut done = vec![1; 16];
        done[2..5].fill(0);
        assert!(worth_mapping(16 * mib, &done));
    }

    #[test]
    fn runs_group_consecutive_chunks() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![(0, 3), (5, 1), (7, 2)]);
        assert!(runs(&[]).is_empty());
    }
}
