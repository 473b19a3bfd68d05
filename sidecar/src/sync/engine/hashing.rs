//! Which store files wait to be hashed, in batches: a burst of small files costs one thread
//! hand-off per batch rather than per file. At most [`HASH_CONCURRENCY`] batches run at once, of
//! which at most [`LARGE_HASH_CONCURRENCY`] hold more than [`LARGE_BATCH_BYTES`] (hashing is disk
//! and CPU bound, and a large file uses every core itself); batches of small files are many so
//! that the engine's turn between two batches is never what the hashing waits for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::io::Millis;
use crate::store::LocalMeta;

pub const HASH_CONCURRENCY: usize = 4;
pub const LARGE_HASH_CONCURRENCY: usize = 2;
pub const LARGE_BATCH_BYTES: u64 = 1 << 20;
pub const HASH_BATCH_FILES: usize = 64;
pub const HASH_BATCH_BYTES: u64 = 16 << 20;

#[derive(Default)]
pub struct HashQueue {
    queue: VecDeque<(String, u64)>,
    /// Queued or being hashed.
    pending: BTreeSet<String>,
    /// Seen changed while being hashed, with the metadata last seen (`None`: unknown). Hashed once
    /// more unless the pass ended on that metadata: reading a file (this node's own hashing, a
    /// peer's download) notifies the watcher too, and must not start another pass.
    again: BTreeMap<String, Option<LocalMeta>>,
    /// Running batches: their first file, and whether they are large.
    running: Vec<(String, bool)>,
    /// Files that changed while being read, looked at again at the given time.
    rechecks: BTreeMap<Millis, Vec<String>>,
}

impl HashQueue {
    /// Asks for `name` to be hashed (`size`: its size when seen, for batching).
    pub fn request(&mut self, name: &str, size: u64) {
        self.request_seen(name, size, None);
    }

    /// As [`Self::request`], for a file seen with `meta`.
    pub fn request_seen(&mut self, name: &str, size: u64, meta: Option<LocalMeta>) {
        if self.pending.contains(name) {
            self.again.insert(name.to_owned(), meta);
        } else {
            self.pending.insert(name.to_owned());
            self.queue.push_back((name.to_owned(), size));
        }
    }

    pub fn is_pending(&self, name: &str) -> bool {
        self.pending.contains(name)
    }

    /// Batches to start now.
    pub fn start_batches(&mut self) -> Vec<Vec<(String, u64)>> {
        let mut batches = Vec::new();
        while self.running.len() < HASH_CONCURRENCY && !self.queue.is_empty() {
            let large_running = self.running.iter().filter(|(_, large)| *large).count();
            let next_large = self
                .queue
                .front()
                .is_some_and(|(_, size)| *size > LARGE_BATCH_BYTES);
            if next_large && large_running >= LARGE_HASH_CONCURRENCY {
                break;
            }
            let mut batch: Vec<(String, u64)> = Vec::new();
            let mut bytes = 0u64;
            while let Some((_, size)) = self.queue.front() {
                if !batch.is_empty()
                    && (batch.len() >= HASH_BATCH_FILES
                        || bytes.saturating_add(*size) > HASH_BATCH_BYTES
                        || (*size > LARGE_BATCH_BYTES && large_running >= LARGE_HASH_CONCURRENCY))
                {
                    break;
                }
                bytes = bytes.saturating_add(*size);
                batch.extend(self.queue.pop_front());
            }
            self.running
                .push((batch[0].0.clone(), bytes > LARGE_BATCH_BYTES));
            batches.push(batch);
        }
        batches
    }

    /// The batch that started with `first` came back (`None`: an empty result).
    pub fn batch_done(&mut self, first: Option<&str>) {
        let at = first
            .and_then(|first| self.running.iter().position(|(name, _)| name == first))
            .or((!self.running.is_empty()).then_some(0));
        if let Some(at) = at {
            self.running.remove(at);
        }
    }

    /// `name` was hashed (`hashed`: the metadata the pass saw unchanged from start to end, if
    /// it did); true when it was seen different meanwhile and must be looked at again.
    pub fn finished(&mut self, name: &str, hashed: Option<&LocalMeta>) -> bool {
        self.pending.remove(name);
        match self.again.remove(name) {
            None => false,
            Some(Some(seen)) => hashed != Some(&seen),
            Some(None) => true,
        }
    }

    pub fn recheck_at(&mut self, name: &str, at: Millis) {
        self.rechecks.entry(at).or_default().push(name.to_owned());
    }

    /// Files whose recheck is due.
    pub fn due_rechecks(&mut self, now: Millis) -> Vec<String> {
        let later = self.rechecks.split_off(&(now + 1));
        let due = std::mem::replace(&mut self.rechecks, later);
        due.into_values().flatten().collect()
    }

    pub fn next_recheck(&self) -> Option<Millis> {
        self.rechecks.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_go_in_batches_and_at_most_four_batches_run() {
        let mut queue = HashQueue::default();
        for i in 0..400 {
            queue.request(&format!("s{i}"), 1000);
        }
        let batches = queue.start_batches();
        assert_eq!(batches.len(), HASH_CONCURRENCY);
        assert_eq!(batches[0].len(), HASH_BATCH_FILES);
        assert!(queue.start_batches().is_empty(), "every slot is busy");
        queue.batch_done(Some(&batches[2][0].0));
        assert_eq!(queue.start_batches().len(), 1);
    }

    #[test]
    fn at_most_two_large_batches_run_and_small_ones_pass_them() {
        let mut queue = HashQueue::default();
        for i in 0..3 {
            queue.request(&format!("big{i}"), 1 << 30);
        }
        let batches = queue.start_batches();
        assert_eq!(batches.len(), LARGE_HASH_CONCURRENCY, "{batches:?}");
        queue.request("small", 10);
        assert!(
            queue.start_batches().is_empty(),
            "the third large file waits, and the queue keeps its order"
        );
        queue.batch_done(Some("big0"));
        assert_eq!(
            queue.start_batches(),
            vec![
                vec![("big2".to_owned(), 1 << 30)],
                vec![("small".to_owned(), 10)]
            ]
        );
    }

    #[test]
    fn a_large_file_is_a_batch_of_its_own() {
        let mut queue = HashQueue::default();
        queue.request("big", 1 << 30);
        queue.request("small", 10);
        let batches = queue.start_batches();
        assert_eq!(
            batches,
            vec![
                vec![("big".to_owned(), 1 << 30)],
                vec![("small".to_owned(), 10)]
            ]
        );
    }

    fn meta(size: u64, mtime_ns: i64) -> LocalMeta {
        LocalMeta {
            size,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode: 7,
        }
    }

    #[test]
    fn a_change_during_hashing_asks_for_another_pass() {
        let mut queue = HashQueue::default();
        queue.request("s", 1);
        queue.start_batches();
        queue.request("s", 2);
        assert!(queue.finished("s", Some(&meta(1, 1))), "changed meanwhile");
        queue.request("s", 2);
        assert!(!queue.finished("s", Some(&meta(2, 2))));
    }

    #[test]
    fn a_file_only_read_during_hashing_is_not_hashed_again() {
        let mut queue = HashQueue::default();
        queue.request_seen("s", 1, Some(meta(1, 1)));
        queue.start_batches();
        // The pass's own open and a peer's reads notify the watcher: same metadata.
        queue.request_seen("s", 1, Some(meta(1, 1)));
        assert!(!queue.finished("s", Some(&meta(1, 1))));

        queue.request_seen("s", 1, Some(meta(1, 1)));
        queue.start_batches();
        queue.request_seen("s", 2, Some(meta(2, 2)));
        assert!(
            queue.finished("s", Some(&meta(1, 1))),
            "written after the pass's last look"
        );
        queue.request_seen("s", 2, Some(meta(2, 2)));
        queue.start_batches();
        queue.request_seen("s", 2, Some(meta(2, 2)));
        assert!(queue.finished("s", None), "the pass saw the file change");
    }

    #[test]
    fn rechecks_come_due_in_time() {
        let mut queue = HashQueue::default();
        queue.recheck_at("a", 100);
        queue.recheck_at("b", 200);
        assert!(queue.due_rechecks(99).is_empty());
        assert_eq!(queue.due_rechecks(150), vec!["a"]);
        assert_eq!(queue.next_recheck(), Some(200));
        assert_eq!(queue.due_rechecks(200), vec!["b"]);
    }
}
