//! The drain trigger: a Kubernetes downward-API `metadata.annotations` file (lines
//! `key="value"`), polled, since the kubelet swaps the file through symlinks. The node drains
//! while the file holds the annotation [`DRAIN_ANNOTATION`]; a missing file means no drain.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::Input;
use crate::sync::engine::Event;

/// The annotation that starts a drain (any value).
pub const DRAIN_ANNOTATION: &str = "dig.net/drain";
/// How often the file is read.
pub const POLL: Duration = Duration::from_secs(2);
/// Most bytes read (Kubernetes caps all annotations of an object at 256 KiB).
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// True when `text` (a downward-API annotations file) has the drain annotation.
pub fn wants_drain(text: &str) -> bool {
    text.lines().any(|line| {
        line.split_once('=')
            .is_some_and(|(key, _)| key.trim() == DRAIN_ANNOTATION)
    })
}

/// Whether `path` asks for a drain: `Ok(false)` when it does not exist.
fn read(path: &Path) -> io::Result<bool> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(wants_drain(&String::from_utf8_lossy(&bytes)))
}

/// Polls `path` until cancelled and sends [`Event::Drain`] at the first read and on every change.
pub(super) fn watch(
    path: PathBuf,
    inputs: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last: Option<bool> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let file = path.clone();
            let drain = match tokio::task::spawn_blocking(move || read(&file)).await {
                Ok(Ok(drain)) => {
                    failing = false;
                    drain
                }
                Ok(Err(error)) => {
                    if !failing {
                        tracing::warn!(path = %path.display(), %error, "cannot read the drain annotations file; the drain state stays as it was");
                    }
                    failing = true;
                    continue;
                }
                Err(_) => continue,
            };
            if last != Some(drain) {
                last = Some(drain);
                tracing::info!(path = %path.display(), drain, "drain annotation read");
                if inputs.send(Input::Engine(Event::Drain(drain))).is_err() {
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_annotation_is_found_among_others_whatever_its_value() {
        let file = "dig.net/config-hash=\"abc\"\ndig.net/drain=\"2026-01-01T00:00:00Z\"\n";
        assert!(wants_drain(file));
        assert!(wants_drain("dig.net/drain=\"\""));
        assert!(!wants_drain(
            "dig.net/drained=\"x\"\nother=\"dig.net/drain\"\n"
        ));
        assert!(!wants_drain(""));
    }

    #[test]
    fn a_missing_file_is_no_drain_and_a_large_one_is_read_in_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("annotations");
        assert!(!read(&path).unwrap());
        std::fs::write(&path, "dig.net/drain=\"now\"\n").unwrap();
        assert!(read(&path).unwrap());
        let mut big = "a=\"b\"\n".repeat(60_000);
        big.push_str("dig.net/drain=\"late\"\n");
        std::fs::write(&path, big).unwrap();
        assert!(!read(&path).unwrap(), "past the read limit");
    }
}
