//! The open client connections: how many, whether each has a request in flight and since when
//! it has been idle, so that at `--max-connections` the longest-idle one can make room.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// What one connection is doing, shared by its request path and its watchdog.
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `epoch` of the last request start or end, or of the opening.
    last_active_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            epoch,
            in_flight: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        };
        activity.touch();
        activity
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// How long the connection has had no request in flight; `None` while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.last_active_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    /// Completes when the connection was chosen to make room for a new one.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// A request in flight on a connection (see [`Activity::request`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every open connection's activity, by connection number.
pub struct OpenConnections {
    epoch: Instant,
    max: usize,
    table: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    open: Gauge,
}

/// Why a new connection was let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// There was room.
    Room,
    /// The longest-idle connection was told to close to make room.
    Evicted,
}

impl OpenConnections {
    /// At most `max` connections; `open` follows how many are.
    pub fn new(max: usize, open: Gauge) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            max,
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            open,
        })
    }

    /// Lets a new connection in, closing the longest-idle one at the limit; `None` when every
    /// connection has a request in flight (the new one must then be refused).
    pub fn admit(self: &Arc<Self>) -> Option<(Connection, Admitted)> {
        let mut table = self.table.lock();
        let mut admitted = Admitted::Room;
        // Connections already told to close still count until they have gone.
        if table.len() >= self.max {
            // Idle times are in whole milliseconds: on a tie the older connection goes, never one
            // just opened whose first request is still being read.
            let victim = table
                .iter()
                .filter(|(_, a)| !a.evicted.load(Ordering::Relaxed))
                .filter_map(|(id, a)| a.idle_for().map(|idle| ((idle, Reverse(*id)), a)))
                .max_by_key(|(rank, _)| *rank)
                .map(|(_, a)| a.clone())?;
            victim.evicted.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
            admitted = Admitted::Evicted;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        table.insert(id, activity.clone());
        self.open.set(table.len() as i64);
        Some((
            Connection {
                table: self.clone(),
                id,
                activity,
            },
            admitted,
        ))
    }

    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An admitted connection; leaves the table when dropped.
pub struct Connection {
    table: Arc<OpenConnections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Connection {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut table = self.table.table.lock();
        table.remove(&self.id);
        self.table.open.set(table.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_longest_idle_connection_makes_room() {
        let open = Gauge::default();
        let connections = OpenConnections::new(2, open.clone());
        let (first, why) = connections.admit().unwrap();
        assert_eq!(why, Admitted::Room);
        std::thread::sleep(Duration::from_millis(20));
        let (second, _) = connections.admit().unwrap();
        assert_eq!(open.get(), 2);
        // Both idle: the older one is evicted.
        let (third, why) = connections.admit().unwrap();
        assert_eq!(why, Admitted::Evicted);
        assert!(first.activity().evicted.load(Ordering::Relaxed));
        assert!(!second.activity().evicted.load(Ordering::Relaxed));
        drop(first);
        assert_eq!(connections.len(), 2);
        // Both busy: a new connection is refused.
        let _busy = (second.activity().request(), third.activity().request());
        assert!(connections.admit().is_none());
        assert!(second.activity().idle_for().is_none());
        drop(_busy);
        assert!(second.activity().idle_for().is_some());
        drop((second, third));
        assert!(connections.is_empty());
        assert_eq!(open.get(), 0);
    }

    #[test]
    fn connections_idle_for_the_same_millisecond_make_room_oldest_first() {
        let connections = OpenConnections::new(8, Gauge::default());
        let admitted: Vec<Connection> = (0..8).map(|_| connections.admit().unwrap().0).collect();
        // One just opened, its first request not yet read, ties with an older keep-alive one.
        let at = admitted[0]
            .activity()
            .last_active_ms
            .load(Ordering::Relaxed);
        for connection in &admitted {
            connection
                .activity()
                .last_active_ms
                .store(at, Ordering::Relaxed);
        }
        let _new = connections.admit().unwrap();
        let evicted: Vec<bool> = admitted
            .iter()
            .map(|c| c.activity().evicted.load(Ordering::Relaxed))
            .collect();
        assert_eq!(
            evicted,
            [true, false, false, false, false, false, false, false]
        );
    }
}
