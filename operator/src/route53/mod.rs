//! Route53 records, health checks and CloudWatch alarms made by the operator with the AWS SDK.
//!
//! `desired` (pure: spec in, AWS objects out) -> `sync` (reads AWS through `client`, asks `plan`,
//! writes) -> the outcome becomes the `DnsSynced` condition, events and `status.dns`. The
//! [`DnsService`] remembers, per DigNetwork, what it last synced and how often it failed: an
//! unchanged network is synced again only every `resync` (Route53 allows five calls a second per
//! account), a failing one after a growing delay.

pub mod args;
pub mod client;
pub mod desired;
pub mod model;
pub mod plan;
pub mod sync;
pub mod zones;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

pub use args::AwsArgs;
pub use client::{Action, AwsClient, AwsError, AwsErrorKind, AwsSettings};
pub use desired::{DesiredDns, DnsFacts, Owner, desired, uses_aws};
pub use sync::{HostnameProblem, SyncReport};

/// What happened to a network's AWS objects in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsOutcome {
    /// Nothing changed since the last sync, which is recent: AWS was not asked.
    Unchanged,
    Synced(SyncReport),
    /// The sync stopped at this error; try again after `retry_in`.
    Failed {
        error: AwsError,
        retry_in: Duration,
    },
    /// A failed sync of the same inputs is waiting for its backoff.
    Waiting {
        retry_in: Duration,
    },
}

#[derive(Clone, Debug)]
struct Memory {
    /// Hash of the desired state and previous hostnames last synced successfully, and when.
    synced: Option<(String, Instant)>,
    failures: u32,
    /// When a failed sync may be tried again, and the inputs it failed with.
    retry_at: Option<(Instant, String)>,
}

/// The operator's AWS side: one client, the zone cache and what each network last synced.
pub struct DnsService {
    client: AwsClient,
    pub owner_id: String,
    resync: Duration,
    zones: zones::ZoneCache,
    memory: Mutex<HashMap<String, Memory>>,
}

impl DnsService {
    /// First retry of a failed sync; doubles up to [`Self::MAX_BACKOFF`].
    pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

    pub fn new(client: AwsClient, owner_id: String, resync: Duration) -> Self {
        Self {
            client,
            owner_id,
            resync,
            zones: zones::ZoneCache::default(),
            memory: Mutex::new(HashMap::new()),
        }
    }

    fn backoff(failures: u32) -> Duration {
        Self::FIRST_BACKOFF
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(Self::MAX_BACKOFF)
    }

    /// Syncs the network `owner` unless nothing changed since a recent sync. `force` syncs
    /// anyway (deletion).
    pub async fn reconcile(
        &self,
        owner: &Owner,
        desired: &DesiredDns,
        previous_hostnames: &[String],
        force: bool,
    ) -> DnsOutcome {
        let inputs = format!("{desired:?}{previous_hostnames:?}");
        let inputs = blake3::hash(inputs.as_bytes()).to_hex().to_string();
        let key = owner.uid.clone();
        {
            let memory = self.memory.lock().expect("dns memory lock");
            if let Some(m) = memory.get(&key) {
                if let Some((at, failed_inputs)) = &m.retry_at
                    && *failed_inputs == inputs
                    && Instant::now() < *at
                {
                    return DnsOutcome::Waiting {
                        retry_in: at.saturating_duration_since(Instant::now()),
                    };
                }
                if !force
                    && let Some((synced, at)) = &m.synced
                    && *synced == inputs
                    && at.elapsed() < self.resync
                {
                    return DnsOutcome::Unchanged;
                }
            }
        }
        let result = sync::sync(
            &self.client,
            &self.zones,
            owner,
            desired,
            previous_hostnames,
        )
        .await;
        let mut memory = self.memory.lock().expect("dns memory lock");
        let entry = memory.entry(key).or_insert(Memory {
            synced: None,
            failures: 0,
            retry_at: None,
        });
        match result {
            Ok(report) => {
                // Hostname problems (a conflict, a missing zone) are retried at the resync,
                // not sooner: they wait for someone to act.
                entry.synced = Some((inputs, Instant::now()));
                entry.failures = 0;
                entry.retry_at = None;
                DnsOutcome::Synced(report)
            }
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                let retry_in = Self::backoff(entry.failures);
                entry.retry_at = Some((Instant::now() + retry_in, inputs));
                entry.synced = None;
                DnsOutcome::Failed { error, retry_in }
            }
        }
    }

    /// Forgets a deleted network.
    pub fn forget(&self, owner: &Owner) {
        self.memory
            .lock()
            .expect("dns memory lock")
            .remove(&owner.uid);
    }

    /// How long until an unchanged network is synced again.
    pub fn resync(&self) -> Duration {
        self.resync
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_back_off_exponentially() {
        assert_eq!(DnsService::backoff(1), Duration::from_secs(5));
        assert_eq!(DnsService::backoff(2), Duration::from_secs(10));
        assert_eq!(DnsService::backoff(3), Duration::from_secs(20));
        assert_eq!(DnsService::backoff(30), Duration::from_secs(300));
    }
}
