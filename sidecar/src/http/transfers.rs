//! Downloads in flight with their rate: `/transfers`, the page and `status --watch`.
//!
//! The replication engine reports each downloading store's `progress` (0 to 1) in `/stores`; the
//! rate is the change of the bytes that fraction stands for between two samples. Sans-IO: the
//! caller passes the store list and the time, so every rule is tested without a node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// Samples closer together than this keep the previous rate (a burst of requests does not turn
/// one chunk's arrival into a huge or zero rate).
const MIN_SAMPLE_SPACING: Duration = Duration::from_millis(500);
/// Weight of the newest sample in the smoothed rate.
const SMOOTHING: f64 = 0.5;

/// One download in flight, as `/transfers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub name: String,
    pub lamport: u64,
    pub origin: String,
    /// Size of the version being downloaded, in bytes.
    pub size: u64,
    /// Fraction downloaded and verified, 0 to 1.
    pub progress: f64,
    pub bytes_done: u64,
    /// Smoothed download rate; absent until two samples were taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
    /// Seconds left at that rate; absent while the rate is unknown or zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Seconds since this node first saw the download running.
    pub running_seconds: u64,
}

struct Tracked {
    lamport: u64,
    origin: String,
    first_seen: Instant,
    sampled_at: Instant,
    bytes_done: u64,
    rate: Option<f64>,
}

/// The downloads seen in the last sample, with their rates.
#[derive(Default)]
pub struct TransferTracker {
    tracked: HashMap<String, Tracked>,
    latest: Vec<Transfer>,
}

impl TransferTracker {
    /// Takes a sample of `stores` (the `/stores` entries) at `now` and returns the downloads in
    /// flight, by name.
    pub fn observe(&mut self, now: Instant, stores: &[Value]) -> Vec<Transfer> {
        let mut transfers = Vec::new();
        let mut seen = HashMap::new();
        for store in stores {
            let Some(download) = Download::of(store) else {
                continue;
            };
            let bytes_done = (download.progress * download.size as f64).round() as u64;
            let tracked = match self.tracked.remove(&download.name) {
                // The same version as before: measure the rate since the previous sample.
                Some(mut tracked)
                    if tracked.lamport == download.lamport && tracked.origin == download.origin =>
                {
                    let elapsed = now.saturating_duration_since(tracked.sampled_at);
                    if elapsed >= MIN_SAMPLE_SPACING {
                        let gained = bytes_done.saturating_sub(tracked.bytes_done) as f64;
                        let instant_rate = gained / elapsed.as_secs_f64();
                        tracked.rate = Some(match tracked.rate {
                            Some(rate) => SMOOTHING * instant_rate + (1.0 - SMOOTHING) * rate,
                            None => instant_rate,
                        });
                        tracked.sampled_at = now;
                        tracked.bytes_done = bytes_done;
                    }
                    tracked
                }
                _ => Tracked {
                    lamport: download.lamport,
                    origin: download.origin.clone(),
                    first_seen: now,
                    sampled_at: now,
                    bytes_done,
                    rate: None,
                },
            };
            let remaining = download.size.saturating_sub(bytes_done) as f64;
            let eta_seconds = tracked
                .rate
                .filter(|rate| *rate > 0.0)
                .map(|rate| (remaining / rate).ceil() as u64);
            transfers.push(Transfer {
                name: download.name.clone(),
                lamport: download.lamport,
                origin: download.origin,
                size: download.size,
                progress: download.progress,
                bytes_done,
                bytes_per_second: tracked.rate,
                eta_seconds,
                running_seconds: now.saturating_duration_since(tracked.first_seen).as_secs(),
            });
            seen.insert(download.name, tracked);
        }
        // Finished, failed or superseded downloads are forgotten.
        self.tracked = seen;
        transfers.sort_by(|a, b| a.name.cmp(&b.name));
        self.latest = transfers.clone();
        transfers
    }

    /// The downloads of the last sample.
    pub fn latest(&self) -> Vec<Transfer> {
        self.latest.clone()
    }
}

/// The fields of a `/stores` entry in state `downloading`.
struct Download {
    name: String,
    lamport: u64,
    origin: String,
    size: u64,
    progress: f64,
}

impl Download {
    fn of(store: &Value) -> Option<Self> {
        if store["state"] != "downloading" {
            return None;
        }
        Some(Self {
            name: store["name"].as_str()?.to_string(),
            lamport: store["lamport"].as_u64().unwrap_or(0),
            origin: store["origin"].as_str().unwrap_or_default().to_string(),
            size: store["size"].as_u64().unwrap_or(0),
            progress: store["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn downloading(name: &str, lamport: u64, size: u64, progress: f64) -> Value {
        json!({"name": name, "lamport": lamport, "origin": "12D3KooWorigin", "size": size,
               "state": "downloading", "progress": progress})
    }

    #[test]
    fn the_rate_comes_from_the_bytes_gained_between_samples() {
        let mut tracker = TransferTracker::default();
        let start = Instant::now();
        let first = tracker.observe(start, &[downloading("a", 1, 1000, 0.1)]);
        assert_eq!(first[0].bytes_done, 100);
        assert_eq!(first[0].bytes_per_second, None, "one sample gives no rate");
        assert_eq!(first[0].eta_seconds, None);

        let second = tracker.observe(
            start + Duration::from_secs(2),
            &[downloading("a", 1, 1000, 0.5)],
        );
        assert_eq!(second[0].bytes_per_second, Some(200.0));
        assert_eq!(second[0].eta_seconds, Some(3), "500 bytes left at 200/s");
        assert_eq!(second[0].running_seconds, 2);

        // Smoothed: half the new rate (100/s) and half the old one.
        let third = tracker.observe(
            start + Duration::from_secs(3),
            &[downloading("a", 1, 1000, 0.6)],
        );
        assert_eq!(third[0].bytes_per_second, Some(150.0));
    }

    #[test]
    fn samples_too_close_together_keep_the_previous_rate() {
        let mut tracker = TransferTracker::default();
        let start = Instant::now();
        tracker.observe(start, &[downloading("a", 1, 1000, 0.0)]);
        tracker.observe(
            start + Duration::from_secs(1),
            &[downloading("a", 1, 1000, 0.1)],
        );
        let burst = tracker.observe(
            start + Duration::from_millis(1100),
            &[downloading("a", 1, 1000, 0.4)],
        );
        assert_eq!(burst[0].bytes_per_second, Some(100.0));
        assert_eq!(burst[0].bytes_done, 400, "the progress itself is current");
    }

    #[test]
    fn a_new_version_or_a_finished_download_starts_over() {
        let mut tracker = TransferTracker::default();
        let start = Instant::now();
        tracker.observe(start, &[downloading("a", 1, 1000, 0.0)]);
        tracker.observe(
            start + Duration::from_secs(1),
            &[downloading("a", 1, 1000, 0.5)],
        );
        let newer = tracker.observe(
            start + Duration::from_secs(2),
            &[downloading("a", 2, 1000, 0.1)],
        );
        assert_eq!(newer[0].lamport, 2);
        assert_eq!(newer[0].bytes_per_second, None);
        assert_eq!(newer[0].running_seconds, 0);

        let synced =
            json!({"name": "a", "lamport": 2, "origin": "x", "size": 1000, "state": "synced"});
        assert!(
            tracker
                .observe(start + Duration::from_secs(3), &[synced])
                .is_empty()
        );
        assert!(tracker.latest().is_empty());
        let again = tracker.observe(
            start + Duration::from_secs(4),
            &[downloading("a", 2, 1000, 0.9)],
        );
        assert_eq!(again[0].bytes_per_second, None, "no rate across a gap");
    }

    #[test]
    fn progress_going_back_counts_as_no_gain_and_hostile_values_are_clamped() {
        let mut tracker = TransferTracker::default();
        let start = Instant::now();
        tracker.observe(start, &[downloading("a", 1, 1000, 0.8)]);
        let back = tracker.observe(
            start + Duration::from_secs(1),
            &[downloading("a", 1, 1000, 0.2)],
        );
        assert_eq!(back[0].bytes_per_second, Some(0.0));
        assert_eq!(back[0].eta_seconds, None, "no ETA at a zero rate");
        let odd = tracker.observe(
            start + Duration::from_secs(2),
            &[
                downloading("b", 1, 1000, 7.0),
                json!({"state": "downloading"}),
            ],
        );
        assert_eq!(odd.len(), 1, "an entry without a name is skipped");
        assert_eq!(odd[0].progress, 1.0);
    }
}
