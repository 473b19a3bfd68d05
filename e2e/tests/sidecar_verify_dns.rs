//! `dig-sidecar verify-dns` against the DNS responder of `dig_e2e::dns` on loopback, and a real
//! `dig-bootstrap` answering `/health` on 127.0.0.1: addresses, aliases, a dead address, and the
//! `_dnsaddr` TXT records (dialable, with a peer id).

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use dig_e2e::{
    bootstrap::BootstrapServer,
    dns::{DnsResponder, Zone},
    process::binary_path,
};

/// The zone: a registry, an alias of it, a name with one dead address, and `_dnsaddr` records
/// (one valid entry, pointing at a TCP port that accepts connections, and one without a peer id).
fn zone(open_port: u16) -> Zone {
    let zone = Zone::default();
    let local = Ipv4Addr::LOCALHOST;
    zone.a("registry.dig.test", local)
        .cname("alias.dig.test", "registry.dig.test")
        .a("partly-broken.dig.test", local)
        .a("partly-broken.dig.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("node.dig.test", local)
        .txt(
            "_dnsaddr.registry.dig.test",
            &format!("dnsaddr=/dns4/node.dig.test/tcp/{open_port}/p2p/{PEER}"),
        )
        .a("broken-txt.dig.test", local)
        .txt(
            "_dnsaddr.broken-txt.dig.test",
            &format!("dnsaddr=/dns4/node.dig.test/tcp/{open_port}"),
        );
    zone
}

const PEER: &str = "12D3KooWGzBSTgZGMhRyDNkD1NFMXqcBMsZmzhzEjGi1bP8zjcqQ";

async fn verify(
    nameserver: SocketAddr,
    host: &str,
    port: u16,
    extra: &[&str],
) -> anyhow::Result<(i32, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(binary_path("dig-sidecar")?)
            .args(["verify-dns", host, "--port", &port.to_string()])
            .args(["--nameserver", &nameserver.to_string(), "--timeout", "2s"])
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(-1), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dns_checks_every_address_and_fails_on_a_dead_one() -> anyhow::Result<()> {
    let bootstrap = BootstrapServer::start(&[]).await?;
    let port = bootstrap.address.port();
    // The "node" of the dnsaddr record: the registry's own port accepts TCP connections.
    let dns = DnsResponder::start(zone(port)).await?;
    let nameserver = dns.address;

    let (code, text) = verify(
        nameserver,
        "registry.dig.test",
        port,
        &["--require-dnsaddr"],
    )
    .await?;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("RECORD") && text.contains("HEALTH"),
        "a table: {text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains("ok ("),
        "{text}"
    );
    assert!(text.contains("registry.dig.test: OK"), "{text}");
    assert!(
        text.contains("TXT") && text.contains(&format!("/p2p/{PEER}")) && text.contains("open)"),
        "the dnsaddr record is checked: {text}"
    );

    let (code, text) = verify(nameserver, "broken-txt.dig.test", port, &[]).await?;
    assert_ne!(code, 0, "a dnsaddr value without a peer id fails: {text}");
    assert!(text.contains("no /p2p/<peer id>"), "{text}");

    let (code, text) = verify(nameserver, "alias.dig.test", port, &["--require-dnsaddr"]).await?;
    assert_ne!(code, 0, "--require-dnsaddr without records fails: {text}");
    assert!(text.contains("no dnsaddr records"), "{text}");

    let (code, text) = verify(nameserver, "alias.dig.test", port, &[]).await?;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("CNAME") && text.contains("registry.dig.test."),
        "{text}"
    );

    let (code, text) = verify(nameserver, "partly-broken.dig.test", port, &[]).await?;
    assert_ne!(code, 0, "a dead address fails the check: {text}");
    assert!(
        text.contains("127.0.0.2") && text.contains("unreachable"),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains("ok ("),
        "{text}"
    );
    assert!(text.contains("FAILED"), "{text}");

    let (code, text) = verify(nameserver, "missing.dig.test", port, &[]).await?;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("resolves to no address"), "{text}");

    drop(dns);
    Ok(())
}
