//! The chunk maps this node serves for delta sync: computed on demand from the held file (a
//! whole read of the store), two at a time at most whatever peers ask, and the recent ones kept,
//! since every receiver of an update asks for the same map.

use std::collections::VecDeque;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::store::LocalMeta;
use crate::store::cdc::{self, ContentChunk};
use crate::store::hash::Hash32;

/// Maps computed at once, all peers together.
const COMPUTED_AT_ONCE: usize = 2;
/// Bytes of maps kept for the next receiver (a 1 GiB store's map is about 0.6 MB).
const KEPT_BYTES: usize = 16 << 20;
/// Stores larger than this get no map: reading one to cut it would take minutes. Their
/// receivers still reuse what did not move (see `sync::delta`).
pub const MAX_MAPPED_SIZE: u64 = 16 << 30;

/// A held file to map.
pub struct MapSource {
    pub path: PathBuf,
    pub size: u64,
    pub hash: Hash32,
    /// The file as it was hashed: a file changed since is not mapped.
    pub local: LocalMeta,
}

pub struct ChunkMaps {
    kept: Mutex<VecDeque<(Hash32, Arc<Vec<u8>>)>>,
    computing: Semaphore,
}

impl Default for ChunkMaps {
    fn default() -> Self {
        Self {
            kept: Mutex::new(VecDeque::new()),
            computing: Semaphore::new(COMPUTED_AT_ONCE),
        }
    }
}

impl ChunkMaps {
    /// The map of `source` on the wire ([`cdc::map_to_bytes`]), or why there is none.
    pub async fn get(&self, source: MapSource) -> Result<Arc<Vec<u8>>, String> {
        if source.size > MAX_MAPPED_SIZE {
            return Err(format!(
                "no chunk map for stores over {MAX_MAPPED_SIZE} bytes ({} has {})",
                source.path.display(),
                source.size
            ));
        }
        if let Some(map) = self.kept(&source.hash) {
            return Ok(map);
        }
        let _permit = self
            .computing
            .acquire()
            .await
            .map_err(|e| format!("chunk map computation closed: {e}"))?;
        // Another request may have computed it while this one waited.
        if let Some(map) = self.kept(&source.hash) {
            return Ok(map);
        }
        let hash = source.hash;
        let map = tokio::task::spawn_blocking(move || map_file(&source))
            .await
            .map_err(|e| format!("chunk map task failed: {e}"))??;
        let map = Arc::new(map);
        self.keep(hash, map.clone());
        Ok(map)
    }

    fn kept(&self, hash: &Hash32) -> Option<Arc<Vec<u8>>> {
        let kept = self.kept.lock();
        kept.iter().find(|(h, _)| h == hash).map(|(_, m)| m.clone())
    }

    fn keep(&self, hash: Hash32, map: Arc<Vec<u8>>) {
        let mut kept = self.kept.lock();
        kept.push_front((hash, map));
        while kept.iter().map(|(_, m)| m.len()).sum::<usize>() > KEPT_BYTES {
            kept.pop_back();
        }
    }
}

fn map_file(source: &MapSource) -> Result<Vec<u8>, String> {
    map_unchanged_file(&source.path, &source.local).map(|map| cdc::map_to_bytes(&map))
}

/// The chunk map of the file at `path`, read only while it is the file `local` describes (it
/// is checked before and after the read, and the chunks must add up to its size).
pub fn map_unchanged_file(path: &Path, local: &LocalMeta) -> Result<Vec<ContentChunk>, String> {
    let changed = || format!("{} changed on disk since it was hashed", path.display());
    let file = local.open_unchanged(path).ok_or_else(changed)?;
    let map = cdc::chunk_map(BufReader::with_capacity(1 << 20, &file))
        .map_err(|e: io::Error| format!("cannot read {}: {e}", path.display()))?;
    let total: u64 = map.iter().map(|c| u64::from(c.len)).sum();
    if !local.describes(&file) || total != local.size {
        return Err(changed());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_map_is_computed_once_and_a_changed_file_gets_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.dig");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let source = || MapSource {
            path: path.clone(),
            size: bytes.len() as u64,
            hash: *blake3::hash(&bytes).as_bytes(),
            local: LocalMeta::of_path(&path).unwrap(),
        };
        let maps = ChunkMaps::default();
        let first = maps.get(source()).await.unwrap();
        assert_eq!(
            cdc::map_from_bytes(&first, bytes.len() as u64),
            Some(cdc::chunk_map(&bytes[..]).unwrap())
        );
        let stale = source();
        std::fs::write(&path, b"other bytes").unwrap();
        // The kept map answers for the same content without reading the file again.
        assert!(Arc::ptr_eq(&maps.get(stale).await.unwrap(), &first));
        let mut changed = source();
        changed.hash = [1; 32];
        changed.local.mtime_ns -= 1;
        assert!(
            maps.get(changed)
                .await
                .unwrap_err()
                .contains("changed on disk")
        );
    }
}
