//! How long a client connection may take at each step and how many may be open: what keeps
//! slow, idle and piled-up connections from holding the server.

use std::time::Duration;

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

/// Most HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

/// Time a connection told to close (idle, evicted, shutting down) gets to finish what it is
/// writing before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
