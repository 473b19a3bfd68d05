//! DNS as a discovery source: `--bootstrap /dnsaddr/<host>` resolves the TXT records
//! `_dnsaddr.<host>` (libp2p's dnsaddr convention: `dnsaddr=<multiaddr>` values, which may
//! themselves be `/dnsaddr/...` and are followed a few levels deep), keeps the values that end in
//! `/p2p/<peer id>`, resolves their `/dns4`, `/dns6` and `/dns` names to addresses, and hands the
//! node every peer with its addresses, so it dials each one and checks its peer id. Resolved again
//! every 30 s (every second while nothing was found yet), with backoff while the lookups fail.
//!
//! libp2p's own DNS transport resolves `/dnsaddr` too, but dials only the first address that
//! answers, for one connection to an unnamed peer; a bootstrap list wants every peer, each dialed
//! as the peer the record names.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{NameServerConfig, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    proto::{rr::RecordType, xfer::Protocol as DnsProtocol},
};
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::node::{DiscoverySource, NodeHandle};

/// Nested `/dnsaddr` levels followed.
const MAX_DEPTH: usize = 4;
/// DNS lookups of one round, over every host and level.
const MAX_LOOKUPS: usize = 32;
/// `dnsaddr=` values kept per round.
const MAX_ENTRIES: usize = 256;
/// Longest TXT value looked at (Route53 allows 255 per string).
const MAX_VALUE_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DnsaddrError {
    #[error("reading the system DNS configuration: {0}")]
    SystemConfig(String),
}

/// A DNS resolver for `/dnsaddr` bootstraps: the system's, or the `--nameserver` one.
pub fn resolver(
    nameserver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TokioResolver, DnsaddrError> {
    let mut options = ResolverOpts::default();
    options.timeout = timeout;
    options.attempts = 2;
    // Records change when nodes come and go; every round asks again.
    options.cache_size = 0;
    let builder = match nameserver {
        Some(server) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(server, DnsProtocol::Udp));
            config.add_name_server(NameServerConfig::new(server, DnsProtocol::Tcp));
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => Resolver::builder_tokio().map_err(|e| DnsaddrError::SystemConfig(e.to_string()))?,
    };
    Ok(builder.with_options(options).build())
}

/// A `/dnsaddr/<host>` bootstrap's host, `None` for anything else.
pub fn dnsaddr_host(text: &str) -> Option<String> {
    let address: Multiaddr = text.parse().ok()?;
    let mut parts = address.iter();
    match (parts.next(), parts.next()) {
        (Some(Protocol::Dnsaddr(host)), None) => Some(host.to_string()),
        _ => None,
    }
}

/// Parses one TXT value: `dnsaddr=<multiaddr>`.
pub fn parse_entry(value: &str) -> Option<Multiaddr> {
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    value.strip_prefix("dnsaddr=")?.trim().parse().ok()
}

/// The peer id at the end of an address, and the address without it.
pub fn split_peer(address: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut rest = address.clone();
    match rest.pop()? {
        Protocol::P2p(peer) => Some((peer, rest)),
        _ => None,
    }
}

/// What one round found: peers with their addresses, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Found {
    pub peers: BTreeMap<PeerId, Vec<Multiaddr>>,
    pub errors: Vec<String>,
}

async fn txt_values(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, String> {
    match resolver.lookup(name, RecordType::TXT).await {
        Ok(lookup) => Ok(lookup
            .record_iter()
            .filter_map(|record| record.data().as_txt())
            .map(|txt| {
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>()
            })
            .collect()),
        Err(error) if error.is_no_records_found() => Ok(Vec::new()),
        Err(error) => Err(format!("TXT {name}: {error}")),
    }
}

async fn addresses_of(
    resolver: &TokioResolver,
    host: &str,
    v4: bool,
    v6: bool,
) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for (wanted, record_type) in [(v4, RecordType::A), (v6, RecordType::AAAA)] {
        if !wanted {
            continue;
        }
        match resolver.lookup(host, record_type).await {
            Ok(lookup) => out.extend(lookup.record_iter().filter_map(|r| match r.data() {
                hickory_resolver::proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                hickory_resolver::proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(error) if error.is_no_records_found() => {}
            Err(error) => return Err(format!("{record_type} {host}: {error}")),
        }
    }
    Ok(out)
}

/// Replaces a leading `/dns`, `/dns4` or `/dns6` component by the addresses it resolves to.
async fn resolve_names(
    resolver: &TokioResolver,
    address: &Multiaddr,
    lookups: &mut usize,
) -> Result<Vec<Multiaddr>, String> {
    let mut parts = address.iter();
    let (host, v4, v6) = match parts.next() {
        Some(Protocol::Dns4(host)) => (host, true, false),
        Some(Protocol::Dns6(host)) => (host, false, true),
        Some(Protocol::Dns(host)) => (host, true, true),
        _ => return Ok(vec![address.clone()]),
    };
    let rest: Multiaddr = parts.collect();
    if *lookups >= MAX_LOOKUPS {
        return Err(format!(
            "more than {MAX_LOOKUPS} DNS lookups; {address} skipped"
        ));
    }
    *lookups += 1;
    let ips = addresses_of(resolver, &host, v4, v6).await?;
    Ok(ips
        .into_iter()
        .map(|ip| {
            let first = match ip {
                IpAddr::V4(ip) => Protocol::Ip4(ip),
                IpAddr::V6(ip) => Protocol::Ip6(ip),
            };
            std::iter::once(first).chain(rest.iter()).collect()
        })
        .collect())
}

/// One round over every `/dnsaddr` host.
pub async fn lookup(resolver: &TokioResolver, hosts: &[String], local: PeerId) -> Found {
    let mut found = Found::default();
    let mut lookups = 0;
    let mut entries: Vec<Multiaddr> = Vec::new();
    let mut pending: Vec<(String, usize)> = hosts.iter().map(|h| (h.clone(), 0)).collect();
    while let Some((host, depth)) = pending.pop() {
        if lookups >= MAX_LOOKUPS {
            found.errors.push(format!(
                "more than {MAX_LOOKUPS} DNS lookups; _dnsaddr.{host} skipped"
            ));
            continue;
        }
        lookups += 1;
        let values = match txt_values(resolver, &format!("_dnsaddr.{host}")).await {
            Ok(values) => values,
            Err(error) => {
                found.errors.push(error);
                continue;
            }
        };
        for value in values {
            let Some(entry) = parse_entry(&value) else {
                tracing::debug!(%host, %value, "a _dnsaddr value is not dnsaddr=<multiaddr>");
                continue;
            };
            match entry.iter().next() {
                Some(Protocol::Dnsaddr(nested)) if depth + 1 < MAX_DEPTH => {
                    pending.push((nested.to_string(), depth + 1));
                }
                Some(Protocol::Dnsaddr(_)) => found.errors.push(format!(
                    "{entry}: more than {MAX_DEPTH} nested /dnsaddr levels"
                )),
                _ if entries.len() < MAX_ENTRIES => entries.push(entry),
                _ => {}
            }
        }
    }
    for entry in entries {
        // A bootstrap address must say whom it reaches: the peer id is checked at the dial.
        let Some((peer, address)) = split_peer(&entry) else {
            tracing::debug!(%entry, "a dnsaddr entry without /p2p/<peer id> is ignored");
            continue;
        };
        if peer == local {
            continue;
        }
        match resolve_names(resolver, &address, &mut lookups).await {
            Ok(addresses) => {
                let known = found.peers.entry(peer).or_default();
                for address in addresses {
                    if !known.contains(&address) {
                        known.push(address);
                    }
                }
            }
            Err(error) => found.errors.push(error),
        }
    }
    found.peers.retain(|_, addresses| !addresses.is_empty());
    found
}

/// Resolves the `/dnsaddr` hosts every round until `shutdown`, and reports what it finds.
pub async fn run(
    resolver: TokioResolver,
    hosts: Vec<String>,
    node: NodeHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let steady = Duration::from_secs(30);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let local = node.local_peer_id();
    loop {
        let found = lookup(&resolver, &hosts, local).await;
        for error in &found.errors {
            tracing::debug!(%error, "dnsaddr lookup");
        }
        let answered = found.errors.is_empty() || !found.peers.is_empty();
        let count = found.peers.len();
        let outcome = if answered {
            Ok(count)
        } else {
            Err(found.errors.join("; "))
        };
        if node
            .report_source(DiscoverySource::Dns, outcome)
            .await
            .is_err()
        {
            return;
        }
        // A failed round keeps the last list: DNS being down says nothing about the peers.
        if answered
            && node
                .report_discovered(DiscoverySource::Dns, found.peers.into_iter().collect())
                .await
                .is_err()
        {
            return;
        }
        let delay = if !answered {
            backoff.next_delay()
        } else if count == 0 {
            backoff.reset();
            Duration::from_secs(1)
        } else {
            backoff.reset();
            steady
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_dnsaddr_is_a_dns_bootstrap() {
        assert_eq!(
            dnsaddr_host("/dnsaddr/bootstrap.dig.example.com"),
            Some("bootstrap.dig.example.com".into())
        );
        assert_eq!(dnsaddr_host("/dns4/bootstrap.example.com/tcp/1"), None);
        assert_eq!(dnsaddr_host("http://bootstrap:3000"), None);
    }

    #[test]
    fn entries_need_the_prefix_and_a_peer_id_to_be_dialed() {
        let peer = PeerId::random();
        let entry =
            parse_entry(&format!("dnsaddr=/dns4/n0.example.com/tcp/4001/p2p/{peer}")).unwrap();
        let (found, address) = split_peer(&entry).unwrap();
        assert_eq!(found, peer);
        assert_eq!(address.to_string(), "/dns4/n0.example.com/tcp/4001");
        assert!(parse_entry("/dns4/n0.example.com/tcp/4001").is_none());
        assert!(parse_entry("dnsaddr=not a multiaddr").is_none());
        assert!(split_peer(&"/ip4/192.0.2.1/tcp/1".parse().unwrap()).is_none());
        assert!(parse_entry(&format!("dnsaddr=/dns4/{}/tcp/1", "a".repeat(2000))).is_none());
    }
}
