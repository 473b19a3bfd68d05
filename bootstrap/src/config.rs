//! Command line and environment of `dig-bootstrap` (each flag also as `DIG_BOOTSTRAP_<NAME>`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use dig_core::logging::LogFormat;
use dig_core::network_id::parse_network_id;

use crate::record::RecordLimits;
use crate::registry::{DEFAULT_MAX_STATE_BYTES, DEFAULT_RECORDS_PAGE_BYTES, RegistryConfig};

fn parse_sibling_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

/// DIG Network bootstrap registry: a REST registry of signed peer records.
///
/// Nodes register a record signed with their libp2p identity and refresh it (every 60 s by
/// default); records expire after --peer-ttl. Logging levels come from RUST_LOG (default info).
#[derive(Clone, Debug, Parser)]
#[command(name = "dig-bootstrap", version, about, long_about)]
pub struct Config {
    /// Address and port to serve HTTP (or HTTPS with --tls-cert/--tls-key) on.
    #[arg(
        long,
        env = "DIG_BOOTSTRAP_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:3000"
    )]
    pub listen: SocketAddr,

    /// Seconds a record lives without a refresh.
    #[arg(long, env = "DIG_BOOTSTRAP_PEER_TTL", value_name = "SECONDS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub peer_ttl: u64,

    /// Most peer records held; registrations of new peers beyond it get 429.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_PEERS", value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_peers: u64,

    /// Most memory the registry's state may take: records, store names and remembered removals,
    /// as estimated per entry. Registrations that do not fit get 507 (heartbeats that do not grow
    /// a record always fit); removals of keys never registered use at most an eighth of it,
    /// oldest forgotten first.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_STATE_BYTES", value_name = "BYTES",
          default_value_t = DEFAULT_MAX_STATE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=64 * 1024 * 1024 * 1024))]
    pub max_state_bytes: u64,

    /// Most open client connections. At the limit the connection idle the longest is closed to
    /// make room; when none is idle, new connections are closed at once.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_CONNECTIONS", value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Seconds a connection (HTTP/1 keep-alive or HTTP/2, whatever PINGs it sends) may stay open
    /// without a request in flight; then it is closed (HTTP/2: GOAWAY).
    #[arg(long, env = "DIG_BOOTSTRAP_IDLE_TIMEOUT", value_name = "SECONDS",
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,

    /// Seconds an HTTP/1 client gets to send a request's headers (slow-loris).
    #[arg(long, env = "DIG_BOOTSTRAP_HEADER_TIMEOUT", value_name = "SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout: u64,

    /// Seconds a request may take from its headers to its answer, reading its body included;
    /// slower requests get 408 and their connection is closed (slow-body clients).
    #[arg(long, env = "DIG_BOOTSTRAP_REQUEST_TIMEOUT", value_name = "SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout: u64,

    /// Seconds a client gets to finish the TLS handshake (with --tls-cert).
    #[arg(long, env = "DIG_BOOTSTRAP_TLS_HANDSHAKE_TIMEOUT", value_name = "SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub tls_handshake_timeout: u64,

    /// Requests per second allowed per client IP (all routes but /health and /metrics);
    /// beyond it the answer is 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "DIG_BOOTSTRAP_RATE_LIMIT", value_name = "PER_SECOND", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,

    /// Requests a client may send in a burst above --rate-limit (defaults to twice the rate).
    #[arg(long, env = "DIG_BOOTSTRAP_RATE_LIMIT_BURST", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate_limit_burst: Option<u32>,

    /// IPv6 clients share one rate-limit quota per prefix of this many bits: one host commonly
    /// holds a whole /64, so a quota per address would be no limit at all.
    #[arg(long, env = "DIG_BOOTSTRAP_RATE_LIMIT_IPV6_PREFIX", value_name = "BITS",
          default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub rate_limit_ipv6_prefix: u8,

    /// IPv4 clients share one rate-limit quota per prefix of this many bits (32: per address).
    #[arg(long, env = "DIG_BOOTSTRAP_RATE_LIMIT_IPV4_PREFIX", value_name = "BITS",
          default_value_t = 32, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub rate_limit_ipv4_prefix: u8,

    /// Proxy or load balancer whose X-Forwarded-For header names the client for the rate limit:
    /// a CIDR range or an address (repeatable; comma-separated in the environment variable).
    /// Without it the header is ignored, since any client could forge it.
    #[arg(long = "trusted-proxy", env = "DIG_BOOTSTRAP_TRUSTED_PROXY", value_name = "CIDR",
          value_delimiter = ',', value_parser = crate::server::client_ip::parse_trusted_proxy)]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Sibling bootstrap server to pull signed records from (repeatable; comma-separated in the
    /// environment variable).
    #[arg(long = "peer-bootstrap", env = "DIG_BOOTSTRAP_PEER_BOOTSTRAP", value_name = "URL",
          value_delimiter = ',', value_parser = parse_sibling_url)]
    pub peer_bootstrap: Vec<url::Url>,

    /// Extra PEM CA (or self-signed certificate) trusted for https:// siblings.
    #[arg(long, env = "DIG_BOOTSTRAP_PEER_BOOTSTRAP_CA", value_name = "FILE")]
    pub peer_bootstrap_ca: Option<PathBuf>,

    /// Largest /records answer read from a sibling, in bytes; a larger one is refused unread
    /// (the pull fails and is counted as an error).
    #[arg(long, env = "DIG_BOOTSTRAP_PEER_BOOTSTRAP_MAX_BYTES", value_name = "BYTES",
          default_value_t = 16 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=1024 * 1024 * 1024))]
    pub peer_bootstrap_max_bytes: u64,

    /// Seconds between pulls of each sibling's /records.
    #[arg(long, env = "DIG_BOOTSTRAP_FEDERATION_INTERVAL", value_name = "SECONDS",
          default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub federation_interval: u64,

    /// PEM certificate chain; serve HTTPS (needs --tls-key).
    #[arg(
        long,
        env = "DIG_BOOTSTRAP_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "DIG_BOOTSTRAP_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Log line format: text (one readable line per event) or json (one JSON object per line,
    /// for log collectors). Levels come from RUST_LOG, e.g. RUST_LOG=debug.
    #[arg(
        long,
        env = "DIG_BOOTSTRAP_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Most stores one record may list.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_STORES_PER_PEER", value_name = "N",
          default_value_t = 1024, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub max_stores_per_peer: u64,

    /// Most multiaddrs one record may list.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_ADDRESSES", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub max_addresses: u64,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_BODY_BYTES", value_name = "BYTES",
          default_value_t = 512 * 1024, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Seconds a signed timestamp may differ from the server clock (registrations and removals).
    #[arg(long, env = "DIG_BOOTSTRAP_MAX_CLOCK_SKEW", value_name = "SECONDS",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_clock_skew: u64,

    /// Seconds between sweeps that remove expired records.
    #[arg(long, env = "DIG_BOOTSTRAP_SWEEP_INTERVAL", value_name = "SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sweep_interval: u64,

    /// Peers that refreshed within this many seconds count as active in /stats.
    #[arg(long, env = "DIG_BOOTSTRAP_ACTIVE_WINDOW", value_name = "SECONDS",
          default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub active_window: u64,

    /// Network id this server accepts (repeatable; comma-separated in the environment
    /// variable). Without it every network id is accepted.
    #[arg(long, env = "DIG_BOOTSTRAP_NETWORK", value_name = "ID", value_delimiter = ',',
          value_parser = parse_network_id)]
    pub network: Vec<String>,

    /// Seconds open connections get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "DIG_BOOTSTRAP_SHUTDOWN_GRACE", value_name = "SECONDS",
          default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub shutdown_grace: u64,

    /// Seconds between SIGTERM (or Ctrl-C) and closing the listener, during which `/ready`
    /// answers 503 and everything else is served: time for Kubernetes or a load balancer to stop
    /// sending new requests before connections close.
    #[arg(long, env = "DIG_BOOTSTRAP_SHUTDOWN_DELAY", value_name = "SECONDS",
          default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub shutdown_delay: u64,
}

impl Config {
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            ttl_ms: self.peer_ttl * 1000,
            max_peers: self.max_peers as usize,
            max_state_bytes: usize::try_from(self.max_state_bytes).unwrap_or(usize::MAX),
            limits: RecordLimits {
                max_stores: self.max_stores_per_peer as usize,
                max_addresses: self.max_addresses as usize,
            },
            max_clock_skew_ms: self.max_clock_skew * 1000,
            active_window_ms: self.active_window * 1000,
            allowed_networks: self.network.clone(),
            records_page_bytes: DEFAULT_RECORDS_PAGE_BYTES,
        }
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval)
    }

    pub fn federation_interval(&self) -> Duration {
        Duration::from_secs(self.federation_interval)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay)
    }

    /// How long unreachable siblings may keep `/ready` at 503 after start: two pull periods,
    /// at least 5 s.
    pub fn federation_sync_deadline(&self) -> Duration {
        (2 * self.federation_interval()).max(Duration::from_secs(5))
    }

    /// Burst size of the rate limit, or `None` when it is off.
    pub fn rate_limit_quota(&self) -> Option<(u32, u32)> {
        (self.rate_limit > 0).then(|| {
            let burst = self
                .rate_limit_burst
                .unwrap_or(self.rate_limit.saturating_mul(2));
            (self.rate_limit, burst.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help_and_its_environment_variable() {
        let command = Config::command();
        let mut flags = 0;
        for argument in command.get_arguments() {
            let Some(long) = argument.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            flags += 1;
            let expected = format!("DIG_BOOTSTRAP_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(
                argument.get_env().and_then(|name| name.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
            let help = argument
                .get_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(help.len() > 10, "--{long} explains itself: {help:?}");
        }
        assert!(
            flags >= 8,
            "the flags of docs/DESIGN.md §4a at least: {flags}"
        );
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::try_parse_from(["dig-bootstrap"]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:3000");
        assert_eq!(config.peer_ttl, 180);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.rate_limit_quota(), Some((20, 40)));
        assert_eq!(config.max_state_bytes, 256 * 1024 * 1024);
        assert_eq!(config.rate_limit_ipv6_prefix, 64);
        assert_eq!(config.rate_limit_ipv4_prefix, 32);
        assert_eq!(config.peer_bootstrap_max_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (vec!["--peer-ttl", "0"], "--peer-ttl"),
            (vec!["--peer-ttl", "abc"], "--peer-ttl"),
            (vec!["--listen", "nowhere"], "--listen"),
            (vec!["--peer-bootstrap", "ftp://x"], "--peer-bootstrap"),
            (vec!["--network", "a/b"], "--network"),
            (vec!["--max-body-bytes", "10"], "--max-body-bytes"),
            (vec!["--log-format", "xml"], "--log-format"),
            (vec!["--tls-cert", "/x"], "--tls-key"),
            (vec!["--max-state-bytes", "1000"], "--max-state-bytes"),
            (vec!["--max-connections", "0"], "--max-connections"),
            (vec!["--idle-timeout", "0"], "--idle-timeout"),
            (vec!["--request-timeout", "x"], "--request-timeout"),
            (
                vec!["--rate-limit-ipv6-prefix", "129"],
                "--rate-limit-ipv6-prefix",
            ),
            (
                vec!["--rate-limit-ipv4-prefix", "33"],
                "--rate-limit-ipv4-prefix",
            ),
        ] {
            let mut argv = vec!["dig-bootstrap"];
            argv.extend(args);
            let err = Config::try_parse_from(&argv).unwrap_err().to_string();
            assert!(err.contains(flag), "{argv:?}: {err}");
        }
    }

    #[test]
    fn zero_rate_limit_turns_it_off() {
        let config = Config::try_parse_from(["dig-bootstrap", "--rate-limit", "0"]).unwrap();
        assert_eq!(config.rate_limit_quota(), None);
    }
}
