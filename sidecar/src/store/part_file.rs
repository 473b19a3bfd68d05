//! The file a download is written into. Whole chunks go straight to the disk (`O_DIRECT`): a
//! large download then neither pays a copy of every byte into the page cache nor leaves
//! gigabytes of dirty pages for the final fsync, which used to stall the end of a transfer. What
//! cannot go direct (the last, partial chunk; file systems without `O_DIRECT`, like tmpfs) goes
//! through the page cache. One `fdatasync` at the end makes both durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment `O_DIRECT` needs for buffer addresses, file offsets and lengths (the page size;
/// enough for every common logical block size).
pub const DIRECT_ALIGN: usize = 4096;

/// A reusable buffer for one chunk whose start is aligned for `O_DIRECT`.
pub struct ChunkBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl ChunkBuffer {
    /// A buffer for chunks of up to `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let storage = vec![0u8; capacity + DIRECT_ALIGN];
        let misalignment = storage.as_ptr() as usize % DIRECT_ALIGN;
        let start = (DIRECT_ALIGN - misalignment) % DIRECT_ALIGN;
        Self {
            storage,
            start,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.storage.len() - DIRECT_ALIGN
    }

    /// Makes the content `len` bytes long and returns it to be filled; `None` when `len` is
    /// above the capacity.
    pub fn fill(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.capacity() {
            return None;
        }
        self.len = len;
        Some(&mut self.storage[self.start..self.start + len])
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// A partial download open for writing chunks at their offsets from several threads.
pub struct PartFile {
    file: File,
    direct: Option<File>,
}

impl PartFile {
    /// Wraps the open partial file `file` at `path` and opens a direct-I/O handle to it when the
    /// file system supports one.
    pub fn new(file: File, path: &Path) -> Self {
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .ok();
        Self { file, direct }
    }

    /// A partial file written through the page cache only (files of one chunk: too small for
    /// direct I/O to pay for the extra handle).
    pub fn buffered(file: File) -> Self {
        Self { file, direct: None }
    }

    /// The buffered handle (reads, size changes, fsync).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// True when whole chunks bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes `data` at `offset`, directly when buffer, offset and length allow it.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let aligned = (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
            && offset.is_multiple_of(DIRECT_ALIGN as u64)
            && data.len().is_multiple_of(DIRECT_ALIGN);
        if let Some(direct) = self.direct.as_ref().filter(|_| aligned) {
            match direct.write_all_at(data, offset) {
                // A device with a larger logical block size refuses the alignment: the page
                // cache takes the chunk instead.
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
                result => return result,
            }
        }
        self.file.write_all_at(data, offset)
    }

    /// Makes every chunk written so far durable (data and the metadata needed to read it).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_buffers_are_aligned_and_bounded() {
        let mut buffer = ChunkBuffer::new(1 << 20);
        assert_eq!(buffer.capacity(), 1 << 20);
        let slice = buffer.fill(8192).unwrap();
        assert!((slice.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
        slice.fill(7);
        assert_eq!(buffer.as_slice(), &[7u8; 8192][..]);
        assert!(buffer.fill((1 << 20) + 1).is_none());
    }

    #[test]
    fn aligned_and_unaligned_writes_both_land_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(3 * DIRECT_ALIGN as u64 + 10).unwrap();
        let part = PartFile::new(file, &path);
        let mut whole = ChunkBuffer::new(2 * DIRECT_ALIGN);
        whole.fill(2 * DIRECT_ALIGN).unwrap().fill(1);
        part.write_at(whole.as_slice(), 0).unwrap();
        // The tail is neither aligned in length nor (here) in memory.
        let tail = vec![2u8; DIRECT_ALIGN + 10];
        part.write_at(&tail[..], 2 * DIRECT_ALIGN as u64).unwrap();
        part.sync().unwrap();
        let mut expected = vec![1u8; 2 * DIRECT_ALIGN];
        expected.extend_from_slice(&tail);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
