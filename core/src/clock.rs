//! Wall-clock time as the wire carries it.

/// Current unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2024_and_in_milliseconds() {
        let now = now_ms();
        // 2024-01-01 and 2100-01-01 in unix ms: seconds or nanoseconds would fall outside.
        assert!(
            (1_704_067_200_000..4_102_444_800_000).contains(&now),
            "{now}"
        );
    }
}
