//! `dig-sidecar verify-dns HOST`: resolves the bootstrap hostname (CNAME, A, AAAA) and checks that
//! `/health` answers on every address it resolves to, and that every `dnsaddr=` value of its
//! `_dnsaddr` TXT records is a multiaddr with a peer id whose name resolves and whose TCP port
//! accepts a connection.

use std::{
    fmt::Write,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    ResolveError, Resolver, TokioResolver,
    config::{NameServerConfig, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    proto::{
        rr::{RData, RecordType},
        xfer::Protocol,
    },
};

use crate::{config::VerifyDnsArgs, discovery::dnsaddr};

#[derive(Debug, thiserror::Error)]
pub enum VerifyDnsError {
    #[error("reading the system DNS configuration: {0}")]
    SystemConfig(#[source] ResolveError),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

#[derive(Clone, Debug)]
pub struct Row {
    pub record: &'static str,
    pub value: String,
    pub health: String,
    pub ok: bool,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub host: String,
    pub rows: Vec<Row>,
    /// DNS lookups that failed with something other than "no such record".
    pub lookup_errors: Vec<String>,
}

impl Report {
    /// True when the name resolved to at least one address, every lookup worked and every
    /// address answered `/health`.
    pub fn all_ok(&self) -> bool {
        self.lookup_errors.is_empty() && self.has_address() && self.rows.iter().all(|row| row.ok)
    }

    fn has_address(&self) -> bool {
        self.rows
            .iter()
            .any(|row| row.record == "A" || row.record == "AAAA")
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<6} {:<40} HEALTH", "RECORD", "VALUE");
        for row in &self.rows {
            let _ = writeln!(out, "{:<6} {:<40} {}", row.record, row.value, row.health);
        }
        if !self.rows.iter().any(|row| row.record == "TXT") {
            let _ = writeln!(out, "_dnsaddr.{}: no dnsaddr records", self.host);
        }
        for error in &self.lookup_errors {
            let _ = writeln!(out, "lookup error: {error}");
        }
        if !self.has_address() {
            let _ = writeln!(out, "{} resolves to no address", self.host);
        }
        let _ = writeln!(
            out,
            "{}: {}",
            self.host,
            if self.all_ok() { "OK" } else { "FAILED" }
        );
        out
    }
}

fn resolver(args: &VerifyDnsArgs) -> Result<TokioResolver, VerifyDnsError> {
    let mut options = ResolverOpts::default();
    options.timeout = args.timeout;
    options.attempts = 2;
    options.cache_size = 0;
    let builder = match args.nameserver {
        Some(server) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => Resolver::builder_tokio().map_err(VerifyDnsError::SystemConfig)?,
    };
    Ok(builder.with_options(options).build())
}

async fn lookup(
    resolver: &TokioResolver,
    host: &str,
    record_type: RecordType,
) -> Result<Vec<RData>, String> {
    match resolver.lookup(host, record_type).await {
        Ok(lookup) => Ok(lookup
            .records()
            .iter()
            .filter(|record| record.record_type() == record_type)
            .map(|record| record.data().clone())
            .collect()),
        Err(error) if error.is_no_records_found() => Ok(Vec::new()),
        Err(error) => Err(format!("{record_type} {host}: {error}")),
    }
}

pub async fn verify(args: &VerifyDnsArgs) -> Result<Report, VerifyDnsError> {
    let host = args.host.trim_end_matches('.').to_string();
    let mut rows = Vec::new();
    let mut lookup_errors = Vec::new();
    let mut addresses: Vec<IpAddr> = Vec::new();

    if let Ok(ip) = host.parse::<IpAddr>() {
        addresses.push(ip);
    } else {
        let resolver = resolver(args)?;
        match lookup(&resolver, &host, RecordType::CNAME).await {
            Ok(found) => {
                for data in found {
                    if let RData::CNAME(target) = data {
                        rows.push(Row {
                            record: "CNAME",
                            value: target.to_string(),
                            health: "-".into(),
                            ok: true,
                        });
                    }
                }
            }
            Err(error) => lookup_errors.push(error),
        }
        for record_type in [RecordType::A, RecordType::AAAA] {
            match lookup(&resolver, &host, record_type).await {
                Ok(found) => {
                    for data in found {
                        match data {
                            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => addresses.push(IpAddr::V6(aaaa.0)),
                            _ => {}
                        }
                    }
                }
                Err(error) => lookup_errors.push(error),
            }
        }
    }
    addresses.dedup();
    let dnsaddr_rows = if host.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        let resolver = resolver(args)?;
        check_dnsaddr(args, &resolver, &host, &mut lookup_errors).await
    };
    if args.require_dnsaddr && !dnsaddr_rows.iter().any(|row| row.ok) {
        lookup_errors.push(format!(
            "_dnsaddr.{host}: no valid dnsaddr record (--require-dnsaddr)"
        ));
    }

    for ip in addresses {
        let (ok, health) = check_health(args, &host, ip).await?;
        rows.push(Row {
            record: if ip.is_ipv4() { "A" } else { "AAAA" },
            value: ip.to_string(),
            health,
            ok,
        });
    }
    rows.extend(dnsaddr_rows);
    Ok(Report {
        host,
        rows,
        lookup_errors,
    })
}

/// Most `dnsaddr=` values checked (each may take a connection time-out).
const MAX_DNSADDR_CHECKS: usize = 64;

/// One row per `dnsaddr=` value of `_dnsaddr.<host>`: valid when it is a multiaddr ending in
/// `/p2p/<peer id>` whose name resolves and whose TCP port accepts a connection (QUIC ports are
/// only resolved: a UDP port cannot be probed without the QUIC handshake).
async fn check_dnsaddr(
    args: &VerifyDnsArgs,
    resolver: &TokioResolver,
    host: &str,
    lookup_errors: &mut Vec<String>,
) -> Vec<Row> {
    let name = format!("_dnsaddr.{host}");
    let values = match lookup(resolver, &name, RecordType::TXT).await {
        Ok(found) => found,
        Err(error) => {
            lookup_errors.push(error);
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    if values.len() > MAX_DNSADDR_CHECKS {
        lookup_errors.push(format!(
            "{name}: {} values, only the first {MAX_DNSADDR_CHECKS} are checked",
            values.len()
        ));
    }
    for data in values.into_iter().take(MAX_DNSADDR_CHECKS) {
        let RData::TXT(txt) = data else { continue };
        let value: String = txt
            .txt_data()
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        let (ok, health) = check_dnsaddr_value(args, resolver, &value).await;
        rows.push(Row {
            record: "TXT",
            value,
            health,
            ok,
        });
    }
    rows
}

async fn check_dnsaddr_value(
    args: &VerifyDnsArgs,
    resolver: &TokioResolver,
    value: &str,
) -> (bool, String) {
    use libp2p::multiaddr::Protocol;
    let Some(entry) = dnsaddr::parse_entry(value) else {
        return (false, "invalid: not dnsaddr=<multiaddr>".into());
    };
    if matches!(entry.iter().next(), Some(Protocol::Dnsaddr(_))) {
        return (true, "nested /dnsaddr (not followed)".into());
    }
    let Some((peer, address)) = dnsaddr::split_peer(&entry) else {
        return (false, "invalid: no /p2p/<peer id> at the end".into());
    };
    let mut parts = address.iter();
    let (name, record_type) = match parts.next() {
        Some(Protocol::Ip4(ip)) => (ip.to_string(), None),
        Some(Protocol::Ip6(ip)) => (ip.to_string(), None),
        Some(Protocol::Dns4(name) | Protocol::Dns(name)) => (name.to_string(), Some(RecordType::A)),
        Some(Protocol::Dns6(name)) => (name.to_string(), Some(RecordType::AAAA)),
        _ => return (false, "invalid: no IP or DNS name first".into()),
    };
    let ip = match record_type {
        None => name
            .parse::<IpAddr>()
            .expect("an IP component prints as an IP"),
        Some(record_type) => match lookup(resolver, &name, record_type).await {
            Ok(found) => match found.into_iter().find_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }) {
                Some(ip) => ip,
                None => return (false, format!("{name} resolves to no address")),
            },
            Err(error) => return (false, error),
        },
    };
    let short = peer.to_string();
    let short = &short[short.len().saturating_sub(8)..];
    match parts.next() {
        Some(Protocol::Tcp(port)) => {
            let socket = SocketAddr::new(ip, port);
            match tokio::time::timeout(args.timeout, tokio::net::TcpStream::connect(socket)).await {
                Ok(Ok(_)) => (true, format!("ok (peer ..{short}, tcp {socket} open)")),
                Ok(Err(error)) => (false, format!("tcp {socket} refused: {error}")),
                Err(_) => (
                    false,
                    format!("tcp {socket}: no answer within {:?}", args.timeout),
                ),
            }
        }
        Some(Protocol::Udp(port)) => (
            true,
            format!(
                "ok (peer ..{short}, udp {} resolved)",
                SocketAddr::new(ip, port)
            ),
        ),
        _ => (false, "invalid: no tcp or udp port".into()),
    }
}

/// GET `/health` on one address, with the hostname in the URL (Host header and TLS name) and the
/// connection pinned to that address.
async fn check_health(
    args: &VerifyDnsArgs,
    host: &str,
    ip: IpAddr,
) -> Result<(bool, String), VerifyDnsError> {
    let socket = SocketAddr::new(ip, args.port);
    let scheme = if args.https { "https" } else { "http" };
    let (client, url) = if host.parse::<IpAddr>().is_ok() {
        let client = reqwest::Client::builder()
            .timeout(args.timeout)
            .build()
            .map_err(VerifyDnsError::Client)?;
        (client, format!("{scheme}://{socket}/health"))
    } else {
        let client = reqwest::Client::builder()
            .timeout(args.timeout)
            .resolve(host, socket)
            .build()
            .map_err(VerifyDnsError::Client)?;
        (client, format!("{scheme}://{host}:{}/health", args.port))
    };
    let started = std::time::Instant::now();
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => {
            let elapsed = started.elapsed();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let status = body["status"].as_str().unwrap_or("?").to_string();
            Ok((true, format!("ok ({status}, {})", millis(elapsed))))
        }
        Ok(response) => Ok((false, format!("HTTP {}", response.status()))),
        Err(error) => Ok((false, format!("unreachable: {}", error_chain(&error)))),
    }
}

fn millis(elapsed: Duration) -> String {
    format!("{:.1} ms", elapsed.as_secs_f64() * 1000.0)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let _ = write!(text, ": {inner}");
        source = inner.source();
    }
    text
}
