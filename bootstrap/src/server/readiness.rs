//! Whether this server should get traffic (`GET /ready`): not while it drains after SIGTERM (so a
//! load balancer or Kubernetes removes it before its connections close), and not before it has
//! pulled each sibling once (a fresh replica would answer `/peers` with a partial view), unless the
//! siblings stay unreachable past a deadline: an answer from a replica that knows part of the
//! network beats no answer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// What `/ready` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyState {
    Ready,
    /// SIGTERM received: still serving, about to stop.
    Draining,
    /// These siblings (`--peer-bootstrap` URLs) have not been pulled in full yet.
    Syncing {
        siblings: Vec<String>,
    },
}

pub struct Readiness {
    draining: AtomicBool,
    unsynced: Mutex<BTreeSet<String>>,
    sync_deadline: Instant,
}

impl Readiness {
    /// Ready at once: no siblings to wait for.
    pub fn ready() -> Self {
        Self::waiting_for(std::iter::empty::<String>(), Instant::now())
    }

    /// Not ready until each of `siblings` was pulled once, or until `deadline`.
    pub fn waiting_for(siblings: impl IntoIterator<Item = String>, deadline: Instant) -> Self {
        Self {
            draining: AtomicBool::new(false),
            unsynced: Mutex::new(siblings.into_iter().collect()),
            sync_deadline: deadline,
        }
    }

    /// The sibling at `url` was pulled in full: every replica behind it (other than this one).
    pub fn mark_synced(&self, url: &str) {
        self.unsynced.lock().remove(url);
    }

    /// From now on `/ready` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn state(&self, now: Instant) -> ReadyState {
        if self.draining.load(Ordering::SeqCst) {
            return ReadyState::Draining;
        }
        let unsynced = self.unsynced.lock();
        if unsynced.is_empty() || now >= self.sync_deadline {
            ReadyState::Ready
        } else {
            ReadyState::Syncing {
                siblings: unsynced.iter().cloned().collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn waits_for_every_sibling_then_is_ready() {
        let now = Instant::now();
        let readiness = Readiness::waiting_for(
            ["http://a:3000".to_owned(), "http://b:3000".to_owned()],
            now + Duration::from_secs(30),
        );
        assert_eq!(
            readiness.state(now),
            ReadyState::Syncing {
                siblings: vec!["http://a:3000".into(), "http://b:3000".into()]
            }
        );
        readiness.mark_synced("http://a:3000");
        assert_eq!(
            readiness.state(now),
            ReadyState::Syncing {
                siblings: vec!["http://b:3000".into()]
            }
        );
        readiness.mark_synced("http://b:3000");
        assert_eq!(readiness.state(now), ReadyState::Ready);
    }

    #[test]
    fn unreachable_siblings_hold_readiness_back_only_until_the_deadline() {
        let now = Instant::now();
        let readiness =
            Readiness::waiting_for(["http://a:3000".to_owned()], now + Duration::from_secs(30));
        assert!(matches!(
            readiness.state(now + Duration::from_secs(29)),
            ReadyState::Syncing { .. }
        ));
        assert_eq!(
            readiness.state(now + Duration::from_secs(30)),
            ReadyState::Ready
        );
    }

    #[test]
    fn draining_wins_over_everything() {
        let readiness = Readiness::ready();
        assert_eq!(readiness.state(Instant::now()), ReadyState::Ready);
        readiness.start_draining();
        assert_eq!(readiness.state(Instant::now()), ReadyState::Draining);
    }
}
