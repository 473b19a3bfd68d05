//! How long a client connection may take at each step and how many may be open: what keeps
//! slow, idle and piled-up connections from holding the server.

use std::time::Duration;

use crate::config::Config;

/// Limits of client connections (`--max-connections` and the `--*-timeout` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most open connections; at the limit the longest-idle one is closed to make room.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2).
    pub idle_timeout: Duration,
    /// An HTTP/1 request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A request must be read (body included) and answered within this, else 408.
    pub request_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// The limits `dig-bootstrap`'s flags ask for.
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_connections: config.max_connections as usize,
            idle_timeout: Duration::from_secs(config.idle_timeout),
            header_timeout: Duration::from_secs(config.header_timeout),
            request_timeout: Duration::from_secs(config.request_timeout),
            tls_handshake_timeout: Duration::from_secs(config.tls_handshake_timeout),
        }
    }
}

/// Most HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

/// Time a connection told to close (idle, evicted, shutting down) gets to finish what it is
/// writing before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_flags_defaults_are_the_documented_limits() {
        let config = Config::try_parse_from(["dig-bootstrap"]).unwrap();
        let limits = ConnectionLimits::from_config(&config);
        assert_eq!(limits, ConnectionLimits::default());
        assert_eq!(limits.max_connections, 4096);
        assert_eq!(limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.request_timeout, Duration::from_secs(10));
        assert_eq!(limits.tls_handshake_timeout, Duration::from_secs(10));
    }
}
