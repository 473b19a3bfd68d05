//! When the index is saved, and what may happen only after a save.
//!
//! The index is saved at most every [`INDEX_SAVE_DELAY`] while it changes, one save at a time.
//! Two orderings make a crash at any point safe:
//! - a version is installed (or its tombstone applied) only once an index that records it is
//!   durable, so after a crash the file in the data folder is always a version the index knows,
//!   never taken for a local change (which would invent a version);
//! - a save that follows installs or removals fsyncs the data folder first, so the index never
//!   records a file the folder may lose (which would turn a new store into a deletion, or bring an
//!   old file back as a new version).
//!
//! A save appends the entries changed since the last one to the journal, and writes a full
//! snapshot instead when the journal has grown as large as the index (so a save costs what
//! changed, amortised), as the first save of the process, and after a failed save.

use std::time::Duration;

use super::io::Millis;

pub const INDEX_SAVE_DELAY: Duration = Duration::from_millis(500);
pub const SAVE_RETRY: Duration = Duration::from_secs(5);
/// A journal shorter than this many lines is never compacted, whatever the index size.
pub const MIN_JOURNAL_LINES: usize = 1024;

#[derive(Default)]
pub struct Persistence {
    /// Bumped on every change of the index.
    generation: u64,
    /// The newest generation known to be on disk.
    saved: u64,
    saving: Option<u64>,
    dirty_since: Option<Millis>,
    data_dir_dirty: bool,
    retry_at: Option<Millis>,
    /// Something waits for the next save: start it without the usual delay.
    urgent: bool,
    /// Lines in the journal since the last snapshot; `None` until a snapshot of this process
    /// succeeded, and again after a failed save (the next save is a snapshot).
    journal_lines: Option<usize>,
    /// The lines the running save appends (`None`: it is a snapshot).
    saving_lines: Option<usize>,
}

/// A save to start: the generation it covers, whether the data folder must be fsynced first,
/// and whether it is a full snapshot (else a journal append of the changed entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Save {
    pub generation: u64,
    pub sync_data_dir: bool,
    pub snapshot: bool,
}

impl Persistence {
    /// The index changed; returns the generation that holds the change.
    pub fn changed(&mut self, now: Millis) -> u64 {
        self.generation += 1;
        self.dirty_since.get_or_insert(now);
        self.generation
    }

    /// A file was renamed into or removed from the data folder.
    pub fn data_dir_changed(&mut self) {
        self.data_dir_dirty = true;
    }

    /// True once an index of at least `generation` is on disk.
    pub fn is_durable(&self, generation: u64) -> bool {
        self.saved >= generation
    }

    /// Something waits for a save: start the next one at once.
    pub fn hurry(&mut self) {
        self.urgent = true;
    }

    /// A save to start now, if one is due, for an index of `entries` stores of which `changed`
    /// changed since the last save.
    pub fn start(&mut self, now: Millis, entries: usize, changed: usize) -> Option<Save> {
        let since = self.dirty_since?;
        if self.saving.is_some() || self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let due = self.urgent || now >= since + INDEX_SAVE_DELAY.as_millis() as u64;
        if !due {
            return None;
        }
        self.saving = Some(self.generation);
        self.dirty_since = None;
        self.urgent = false;
        self.retry_at = None;
        let snapshot = self
            .journal_lines
            .is_none_or(|lines| lines.saturating_add(changed) > entries.max(MIN_JOURNAL_LINES));
        self.saving_lines = (!snapshot).then_some(changed);
        Some(Save {
            generation: self.generation,
            sync_data_dir: std::mem::take(&mut self.data_dir_dirty),
            snapshot,
        })
    }

    /// A save ended. A failed one is tried again later (and fsyncs the folder again).
    pub fn finished(&mut self, generation: u64, ok: bool, now: Millis) {
        self.saving = None;
        let appended = self.saving_lines.take();
        if ok {
            self.saved = self.saved.max(generation);
            self.journal_lines = Some(match appended {
                Some(lines) => self.journal_lines.unwrap_or(0).saturating_add(lines),
                None => 0,
            });
        } else {
            // The changes it held are no longer marked changed: only a snapshot has them all.
            self.journal_lines = None;
            self.dirty_since.get_or_insert(now);
            self.data_dir_dirty = true;
            self.retry_at = Some(now + SAVE_RETRY.as_millis() as u64);
        }
    }

    /// When a save will be due (for the driver's sleep).
    pub fn next_due(&self) -> Option<Millis> {
        let since = self.dirty_since?;
        if self.saving.is_some() {
            return None;
        }
        let due = if self.urgent {
            since
        } else {
            since + INDEX_SAVE_DELAY.as_millis() as u64
        };
        Some(due.max(self.retry_at.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_saved_after_a_short_delay_one_save_at_a_time() {
        let mut persist = Persistence::default();
        let generation = persist.changed(1000);
        assert_eq!(persist.start(1000, 1, 1), None, "waits for more changes");
        let save = persist.start(1500, 1, 1).unwrap();
        assert_eq!(save.generation, generation);
        assert!(!save.sync_data_dir);
        assert!(!persist.is_durable(generation));
        persist.changed(1600);
        assert_eq!(persist.start(2500, 1, 1), None, "one save at a time");
        persist.finished(generation, true, 2500);
        assert!(persist.is_durable(generation));
        assert!(
            persist.start(2500, 1, 1).is_some(),
            "the later change follows"
        );
    }

    #[test]
    fn a_save_after_an_install_fsyncs_the_data_folder_first() {
        let mut persist = Persistence::default();
        persist.data_dir_changed();
        persist.changed(0);
        persist.hurry();
        let save = persist.start(0, 1, 1).unwrap();
        assert!(save.sync_data_dir);
        persist.finished(save.generation, true, 1);
        persist.changed(2);
        assert!(!persist.start(600, 1, 1).unwrap().sync_data_dir);
    }

    #[test]
    fn a_failed_save_is_retried_later_and_fsyncs_again() {
        let mut persist = Persistence::default();
        persist.data_dir_changed();
        let generation = persist.changed(0);
        let save = persist.start(500, 1, 1).unwrap();
        persist.finished(save.generation, false, 600);
        assert!(!persist.is_durable(generation));
        assert_eq!(persist.start(700, 1, 1), None);
        let again = persist
            .start(600 + SAVE_RETRY.as_millis() as u64, 1, 1)
            .unwrap();
        assert!(again.sync_data_dir);
    }

    /// Runs one save of `changed` entries to its end; returns whether it was a snapshot.
    fn save_once(persist: &mut Persistence, now: Millis, entries: usize, changed: usize) -> bool {
        persist.changed(now);
        persist.hurry();
        let save = persist.start(now, entries, changed).unwrap();
        persist.finished(save.generation, true, now);
        save.snapshot
    }

    #[test]
    fn saves_append_to_the_journal_and_a_snapshot_compacts_it_once_it_is_as_large_as_the_index() {
        let mut persist = Persistence::default();
        assert!(
            save_once(&mut persist, 0, 5000, 5000),
            "the first save of a process is a snapshot"
        );
        let mut appends = 0;
        while !save_once(&mut persist, 1, 5000, 100) {
            appends += 1;
        }
        assert_eq!(
            appends, 50,
            "5,000 lines appended, then the next save compacts"
        );
        assert!(!save_once(&mut persist, 2, 5000, 100));
    }

    #[test]
    fn after_a_failed_save_the_next_one_is_a_snapshot() {
        let mut persist = Persistence::default();
        assert!(save_once(&mut persist, 0, 10, 10));
        persist.changed(1);
        persist.hurry();
        let append = persist.start(1, 10, 1).unwrap();
        assert!(!append.snapshot);
        persist.finished(append.generation, false, 1);
        let retry = persist
            .start(1 + SAVE_RETRY.as_millis() as u64, 10, 0)
            .unwrap();
        assert!(
            retry.snapshot,
            "the failed append's changes are only in a snapshot"
        );
    }
}
