//! The debounced folder watcher: reports which store files may have changed. It decides nothing;
//! the replicator compares each reported file with the index (so its own installs are not
//! mistaken for local changes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// What the watcher reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// These paths in the data folder changed (created, written, renamed or removed).
    Changed(Vec<PathBuf>),
    /// Events were lost (queue overflow or a watcher error): the whole folder must be rescanned.
    Rescan,
}

/// Keeps the OS watch alive; dropping it stops watching.
pub struct FolderWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch the data folder {path}: {source}")]
pub struct WatchError {
    path: PathBuf,
    #[source]
    source: notify::Error,
}

/// False for an open or a read: every chunk a peer downloads opens the file, and none of them
/// changes it. The close of a file opened for writing stays (a write ends there).
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl FolderWatcher {
    /// Watches `data_dir` (not recursively) and sends debounced events to `events`.
    pub fn start(
        data_dir: &Path,
        debounce: Duration,
        events: mpsc::UnboundedSender<WatchEvent>,
    ) -> Result<Self, WatchError> {
        let dir = data_dir.to_owned();
        let handler = move |result: DebounceEventResult| {
            let event = match result {
                Ok(events) => {
                    if events.iter().any(|e| e.need_rescan()) {
                        WatchEvent::Rescan
                    } else {
                        let mut paths: Vec<PathBuf> = events
                            .into_iter()
                            .filter(|e| may_change_content(&e.event.kind))
                            .flat_map(|e| e.event.paths)
                            .filter(|p| p.parent() == Some(dir.as_path()))
                            .collect();
                        paths.sort();
                        paths.dedup();
                        if paths.is_empty() {
                            return;
                        }
                        WatchEvent::Changed(paths)
                    }
                }
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(%error, "data folder watcher error; rescanning");
                    }
                    WatchEvent::Rescan
                }
            };
            let _ = events.send(event);
        };
        let mut debouncer =
            new_debouncer(debounce, None, handler).map_err(|source| WatchError {
                path: data_dir.to_owned(),
                source,
            })?;
        debouncer
            .watch(data_dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                path: data_dir.to_owned(),
                source,
            })?;
        Ok(Self {
            _debouncer: debouncer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_a_new_file_in_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().canonicalize().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = FolderWatcher::start(&data, Duration::from_millis(50), tx).unwrap();
        std::fs::write(data.join("new.dig"), b"x").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("watcher reported nothing within 10 s")
                .expect("watcher channel closed");
            if let WatchEvent::Changed(paths) = event
                && paths.contains(&data.join("new.dig"))
            {
                break;
            }
        }
    }

    #[tokio::test]
    async fn reading_a_file_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().canonicalize().unwrap();
        std::fs::write(data.join("held.dig"), b"bytes").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = FolderWatcher::start(&data, Duration::from_millis(50), tx).unwrap();
        for _ in 0..20 {
            assert_eq!(std::fs::read(data.join("held.dig")).unwrap(), b"bytes");
        }
        // A write afterwards is reported, and it is the first report.
        std::fs::write(data.join("other.dig"), b"x").unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watcher reported nothing within 10 s")
            .expect("watcher channel closed");
        match event {
            WatchEvent::Changed(paths) => assert!(
                !paths.contains(&data.join("held.dig")),
                "reads were reported as changes: {paths:?}"
            ),
            WatchEvent::Rescan => panic!("unexpected rescan"),
        }
    }
}
