//! Which client a request comes from, for the per-client rate limit.
//!
//! Without trusted proxies it is the TCP peer. Behind a load balancer or ingress every request
//! would share the proxy's address (one client for the whole network), so when the TCP peer is a
//! trusted proxy, `X-Forwarded-For` is read from the right: proxies append the address they saw,
//! and the first hop that is not a trusted proxy is the client. Anything to its left was written
//! by the client itself and cannot be believed.
//!
//! Clients share a rate-limit quota per address prefix ([`ClientPrefix`]): an IPv6 host is
//! usually given a whole /64, so per address it would have unlimited quota.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Finds the client address of a request given the proxies whose headers are believed.
#[derive(Clone, Debug, Default)]
pub struct ClientAddress {
    trusted_proxies: Vec<IpNet>,
}

impl ClientAddress {
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        Self { trusted_proxies }
    }

    /// `address` is canonical (see [`canonical`]), as `resolve` makes every address it checks.
    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.is_trusted(client) {
            return client;
        }
        // Several X-Forwarded-For headers form one list, in order (RFC 9110 field lines).
        let hops = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim);
        for hop in hops.rev() {
            // An unreadable hop ends the walk: what lies left of it is not to be trusted either.
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = address;
            if !self.is_trusted(address) {
                break;
            }
        }
        client
    }
}

/// How many leading bits of a client's address name the client for the rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPrefix {
    pub ipv4_bits: u8,
    pub ipv6_bits: u8,
}

impl Default for ClientPrefix {
    fn default() -> Self {
        Self {
            ipv4_bits: 32,
            ipv6_bits: 64,
        }
    }
}

impl ClientPrefix {
    /// The rate-limit key of `address`: its prefix, the other bits zero.
    pub fn key(&self, address: IpAddr) -> IpAddr {
        match canonical(address) {
            IpAddr::V4(v4) => Ipv4Net::new(v4, self.ipv4_bits.min(32))
                .map_or(IpAddr::V4(v4), |net| IpAddr::V4(net.network())),
            IpAddr::V6(v6) => Ipv6Net::new(v6, self.ipv6_bits.min(128))
                .map_or(IpAddr::V6(v6), |net| IpAddr::V6(net.network())),
        }
    }
}

/// An IPv4 client seen on a dual-stack socket arrives as `::ffff:a.b.c.d`; rate limit and
/// proxy ranges should treat it as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A hop as proxies write it: `203.0.113.7`, `2001:db8::1`, `203.0.113.7:4711` or
/// `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// Parses a `--trusted-proxy` value: a CIDR range or a single address.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{text:?} is neither a CIDR range (10.0.0.0/8, fd00::/8) nor an IP address")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded_for: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in forwarded_for {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn behind(proxies: &[&str]) -> ClientAddress {
        ClientAddress::new(
            proxies
                .iter()
                .map(|p| parse_trusted_proxy(p).unwrap())
                .collect(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let resolver = ClientAddress::default();
        let spoofed = headers(&["198.51.100.1"]);
        assert_eq!(resolver.resolve(ip("10.0.0.5"), &spoofed), ip("10.0.0.5"));
    }

    #[test]
    fn a_request_from_an_untrusted_peer_keeps_the_peer_address() {
        let resolver = behind(&["10.0.0.0/8"]);
        let spoofed = headers(&["198.51.100.1"]);
        assert_eq!(resolver.resolve(ip("192.0.2.9"), &spoofed), ip("192.0.2.9"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let resolver = behind(&["10.0.0.0/8", "172.16.0.1"]);
        // The client forged the first entry; the ingress (172.16.0.1) and the load balancer
        // (10.1.2.3) appended the rest.
        let chain = headers(&["6.6.6.6, 203.0.113.7", "172.16.0.1"]);
        assert_eq!(resolver.resolve(ip("10.1.2.3"), &chain), ip("203.0.113.7"));
    }

    #[test]
    fn ports_and_bracketed_ipv6_hops_are_read() {
        let resolver = behind(&["10.0.0.0/8"]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &headers(&["203.0.113.7:4711"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &headers(&["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_last_trusted_one() {
        let resolver = behind(&["10.0.0.0/8"]);
        let chain = headers(&["203.0.113.7, unknown, 10.0.0.2"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &chain), ip("10.0.0.2"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let resolver = behind(&["10.0.0.0/8"]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let resolver = behind(&["10.0.0.0/8"]);
        let chain = headers(&["203.0.113.7"]);
        assert_eq!(
            resolver.resolve(ip("::ffff:10.0.0.1"), &chain),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ipv6_clients_share_a_quota_per_prefix() {
        let default = ClientPrefix::default();
        let key = |prefix: ClientPrefix, text: &str| prefix.key(ip(text));
        assert_eq!(
            key(default, "2001:db8:1:2:aaaa::1"),
            key(default, "2001:db8:1:2:ffff:1:2:3")
        );
        assert_eq!(key(default, "2001:db8:1:2::7"), ip("2001:db8:1:2::"));
        assert_ne!(
            key(default, "2001:db8:1:2::1"),
            key(default, "2001:db8:1:3::1")
        );
        assert_ne!(key(default, "192.0.2.1"), key(default, "192.0.2.2"));
        assert_eq!(key(default, "::ffff:192.0.2.1"), ip("192.0.2.1"));
        let wide = ClientPrefix {
            ipv4_bits: 24,
            ipv6_bits: 48,
        };
        assert_eq!(key(wide, "2001:db8:1:7::1"), ip("2001:db8:1::"));
        assert_eq!(key(wide, "192.0.2.200"), ip("192.0.2.0"));
        let exact = ClientPrefix {
            ipv4_bits: 32,
            ipv6_bits: 128,
        };
        assert_eq!(key(exact, "2001:db8::5"), ip("2001:db8::5"));
    }

    #[test]
    fn bad_proxy_values_are_named() {
        let error = parse_trusted_proxy("10.0.0.0/33").unwrap_err();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(parse_trusted_proxy("fd00::/8").is_ok());
        assert!(parse_trusted_proxy("192.0.2.1").is_ok());
    }
}
