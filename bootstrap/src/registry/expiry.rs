//! The TTL sweep: records not refreshed within the TTL, and removals older than any record they
//! could still block, leave the state.

use super::Registry;

impl Registry {
    /// Removes expired records and removals. Returns how many records expired.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        while let Some((last_seen, index)) = self.recency.oldest() {
            if self.expires_at(last_seen) > now_ms {
                break;
            }
            self.remove_slot(index);
            expired += 1;
        }
        let keep_ms = self.config.ttl_ms + self.config.max_clock_skew_ms;
        let forgotten = self.tombstones.expire(now_ms.saturating_sub(keep_ms));
        for seq in &forgotten {
            self.feed.remove_removal(*seq);
        }
        self.interner.forget_unused();
        if expired > 0 || !forgotten.is_empty() {
            self.generation += 1;
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::super::test_support::{accept, signed};
    use super::super::{Registry, RegistryConfig};
    use dig_core::clock::now_ms;

    #[test]
    fn records_expire_after_ttl_and_indexes_follow() {
        let config = RegistryConfig {
            ttl_ms: 1_000,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[("s", 1)], now), now).unwrap();
        accept(&mut registry, &signed(&b, &[("s", 1)], now), now + 500).unwrap();
        assert_eq!(registry.peers(None, 10, false, now + 900).count, 2);
        // a is expired (not yet swept): views hide it already.
        assert_eq!(registry.peers(None, 10, false, now + 1_000).total, 1);
        assert_eq!(registry.sweep(now + 1_000), 1);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.sweep(now + 1_500), 1);
        assert!(registry.is_empty());
        assert_eq!(registry.store_count(), 0);
        assert!(registry.recency.is_empty());
        assert_eq!(registry.state_bytes(), 0, "every byte charged is released");
    }
}
