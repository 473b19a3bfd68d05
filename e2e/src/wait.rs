//! Bounded waits: a test that waits for a state polls through [`eventually`], so every wait has a
//! deadline, every probe a time limit, and every failure says what was awaited and what was seen
//! last.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// Pause between two probes.
pub const POLL: Duration = Duration::from_millis(300);
/// Longest one probe may take: a probe that hangs (an API server gone quiet) counts as one failed
/// attempt instead of stalling the wait past its deadline.
pub const PROBE_LIMIT: Duration = Duration::from_secs(15);
/// How long a test waits for the control plane, the operator or the chart to reach a state:
/// generous, because the shared two-core machine may be busy with other builds.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(120);

/// Runs `probe` every [`POLL`] until it gives a value, for at most `timeout`; each attempt is
/// bounded by [`PROBE_LIMIT`]. The error of an attempt says what it observed; when the time is up
/// this panics naming `what`, the number of attempts and the last observation.
pub async fn eventually<T, E, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let observed = match tokio::time::timeout(PROBE_LIMIT, probe()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(observed)) => observed.to_string(),
            Err(_) => format!("no answer within {PROBE_LIMIT:?}"),
        };
        if Instant::now() >= deadline {
            panic!(
                "{what}: not reached within {timeout:?} ({attempts} attempts); last seen: {observed}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_the_first_value_a_probe_yields() {
        let mut calls = 0;
        let value = eventually("three calls", Duration::from_secs(10), || {
            calls += 1;
            let result = if calls < 3 {
                Err(format!("call {calls}"))
            } else {
                Ok(calls)
            };
            std::future::ready(result)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn panics_with_what_and_the_last_observation() {
        let waited = tokio::spawn(eventually("never", Duration::from_millis(500), || {
            std::future::ready(Err::<(), _>("still no"))
        }));
        let panic = waited.await.unwrap_err().into_panic();
        let message = panic
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(
            message.starts_with("never: not reached within 500ms ("),
            "{message}"
        );
        assert!(
            message.ends_with("attempts); last seen: still no"),
            "{message}"
        );
    }
}
