//! Reusing the chunks a new version shares with the older file it replaces. An append leaves
//! every complete 1 MiB chunk of the old version where it was, and a chunk's chaining value
//! depends only on its bytes and its offset, so equal values at the same index mean equal bytes.
//! Those chunks are copied in the kernel (`copy_file_range`, which XFS and btrfs turn into a
//! reflink of the extents) into the partial download, and each is verified again against the new
//! manifest before it counts: a file changed behind our back costs a fetch, never a corrupt store.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::store::LocalMeta;
use crate::store::hash::{CHUNK_SIZE, ChainingValue, chunk_count, chunk_len, verify_chunk};

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
    let source = match File::open(&older.path) {
        Ok(file) => file,
        Err(error) => {
            tracing::debug!(path = %older.path.display(), %error, "the older version is gone: nothing to reuse");
            return Ok(0);
        }
    };
    if LocalMeta::from_metadata(&source.metadata()?) != older.meta {
        tracing::debug!(path = %older.path.display(), "the older version changed: nothing to reuse");
        return Ok(0);
    }
    for (start, count) in runs(&candidates) {
        let offset = start * CHUNK_SIZE;
        let len = (start + count).min(chunk_count(size)) * CHUNK_SIZE;
        let len = len.min(size).min(older.meta.size) - offset;
        copy_range(&source, part, offset, len)?;
    }
    let verified = verify_chunks(part, size, manifest, &candidates)?;
    let mut reused = 0;
    for index in verified {
        done[index as usize] = 1;
        reused += chunk_len(size, index);
    }
    Ok(reused)
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

/// Copies `len` bytes at `offset` from `source` to the same offset of `target`, in the kernel;
/// through a buffer only where the kernel cannot (another file system, an old kernel).
fn copy_range(source: &File, target: &File, offset: u64, len: u64) -> io::Result<()> {
    use nix::errno::Errno;
    let end = offset + len;
    let position = |at: u64| i64::try_from(at).map_err(io::Error::other);
    let (mut from, mut to) = (position(offset)?, position(offset)?);
    while (from as u64) < end {
        let want = usize::try_from(end - from as u64)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match nix::fcntl::copy_file_range(source, Some(&mut from), target, Some(&mut to), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the older file ended at byte {from} of {end}"),
                ));
            }
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_through_buffer(source, target, from as u64, end - from as u64);
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

fn copy_through_buffer(source: &File, target: &File, offset: u64, len: u64) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(CHUNK_SIZE) as usize;
        source.read_exact_at(&mut buffer[..n], at)?;
        target.write_all_at(&buffer[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The chunks among `indices` whose bytes in `part` match the manifest, checked on a few threads.
fn verify_chunks(
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
    use crate::store::hash::digest_reader;
    use std::fs;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
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

    #[test]
    fn an_append_reuses_every_complete_chunk_of_the_older_file() {
        let old = pattern(5 * CHUNK_SIZE as usize + 300, 1);
        let mut new = old.clone();
        new.extend(pattern(CHUNK_SIZE as usize, 2));
        let case = case(&old, &new);
        let mut done = vec![0; chunk_count(case.size) as usize];
        let reused = reuse_older_chunks(
            &case.older,
            &case.part,
            case.size,
            &case.manifest,
            &mut done,
        )
        .unwrap();
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
        let reused = reuse_older_chunks(
            &case.older,
            &case.part,
            case.size,
            &case.manifest,
            &mut done,
        )
        .unwrap();
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
        let reused = reuse_older_chunks(
            &case.older,
            &case.part,
            case.size,
            &case.manifest,
            &mut done,
        )
        .unwrap();
        assert_eq!((reused, done), (0, vec![0; 4]));
    }

    #[test]
    fn copied_bytes_that_do_not_verify_are_fetched_instead() {
        let old = pattern(3 * CHUNK_SIZE as usize, 5);
        let new = old.clone();
        let mut case = case(&old, &new);
        // A manifest that lies about the older file (a corrupt index): the copy happens, the
        // verification against the new manifest refuses chunk 1.
        case.older.chunks[1] = case.manifest[1];
        let mut tampered = old.clone();
        tampered[CHUNK_SIZE as usize] ^= 1;
        let path = case.older.path.clone();
        fs::write(&path, &tampered).unwrap();
        case.older.meta = LocalMeta::of_path(&path).unwrap();
        let mut done = vec![0; 3];
        let reused = reuse_older_chunks(
            &case.older,
            &case.part,
            case.size,
            &case.manifest,
            &mut done,
        )
        .unwrap();
        assert_eq!(reused, 2 * CHUNK_SIZE);
        assert_eq!(done, vec![1, 0, 1]);
        assert_eq!(finish(&case, &done), new);
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

    #[test]
    fn runs_group_consecutive_chunks() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![(0, 3), (5, 1), (7, 2)]);
        assert!(runs(&[]).is_empty());
    }
}
