//! Exponential backoff with jitter, for redials and for a registry server that is down.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait: `initial * 2^failures`, capped at `max`,
    /// then a random part of up to a quarter removed or added so that peers do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay();
        self.failures = self.failures.saturating_add(1);
        let spread = base.as_millis() as u64 / 4;
        if spread == 0 {
            return base;
        }
        let jitter = rand::thread_rng().gen_range(0..=2 * spread);
        let millis = (base.as_millis() as u64 - spread) + jitter;
        Duration::from_millis(millis).min(self.max)
    }

    fn base_delay(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_the_jitter_band_and_stop_at_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(1000), Duration::from_secs(30));
        let expected = [1000u64, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for base in expected {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!(
                delay >= base - base / 4 && delay <= (base + base / 4).min(30000),
                "delay {delay} ms outside the band around {base} ms"
            );
        }
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn reset_starts_again_from_the_initial_delay() {
        let mut backoff = Backoff::new(Duration::from_millis(400), Duration::from_secs(10));
        for _ in 0..6 {
            backoff.next_delay();
        }
        backoff.reset();
        let delay = backoff.next_delay();
        assert!(delay <= Duration::from_millis(500), "{delay:?}");
        assert_eq!(backoff.failures(), 1);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(backoff.next_delay() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn jitter_spreads_peers_apart() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(8), Duration::from_secs(60)).next_delay())
            .collect();
        assert!(delays.len() > 1, "20 fresh backoffs all chose {delays:?}");
    }
}
