//! `dig-sidecar run --bootstrap /dnsaddr/<host>`: a node with no registry at all joins the nodes
//! that the `_dnsaddr` TXT records list (`dnsaddr=/dns4/<name>/tcp/<port>/p2p/<peer id>`, one of
//! them behind a nested `/dnsaddr`), served by the DNS responder of `dig_e2e::dns` on loopback;
//! an entry without a peer id is not dialed; a node that joins the records later is found at the
//! next lookup.

use std::{net::Ipv4Addr, time::Duration};

use dig_e2e::{
    dns::{DnsResponder, Zone},
    network::{NodeSpec, SidecarNode},
};

const NETWORK: &str = "dnsaddr-e2e";
const WAIT: Duration = Duration::from_secs(90);

/// The TCP port a node listens on, from `/connections`.
async fn tcp_port(node: &SidecarNode) -> u16 {
    let connections = node.get_json("/connections").await.expect("/connections");
    connections["listeningAddresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find_map(|a| {
            let rest = a.strip_prefix("/ip4/127.0.0.1/tcp/")?;
            rest.split('/').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no TCP listen address: {connections}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_dnsaddr_records_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |name: &str, extra: &[String]| {
        let mut spec = NodeSpec::loopback(name, NETWORK, dir.path().join(name), &[]);
        spec.extra_args.extend(extra.iter().cloned());
        spec
    };
    let a = SidecarNode::start(spec("a", &[])).await.expect("start a");
    let b = SidecarNode::start(spec("b", &[])).await.expect("start b");
    let zone = Zone::default();
    zone.a("a.nodes.dig.test", Ipv4Addr::LOCALHOST)
        .a("b.nodes.dig.test", Ipv4Addr::LOCALHOST)
        .txt(
            "_dnsaddr.bootstrap.dig.test",
            &format!(
                "dnsaddr=/dns4/a.nodes.dig.test/tcp/{}/p2p/{}",
                tcp_port(&a).await,
                a.peer_id
            ),
        )
        // Nested: libp2p's convention lets one name delegate to another.
        .txt(
            "_dnsaddr.bootstrap.dig.test",
            "dnsaddr=/dnsaddr/more.dig.test",
        )
        .txt(
            "_dnsaddr.more.dig.test",
            &format!(
                "dnsaddr=/dns4/b.nodes.dig.test/tcp/{}/p2p/{}",
                tcp_port(&b).await,
                b.peer_id
            ),
        )
        // No peer id: not a bootstrap entry.
        .txt(
            "_dnsaddr.bootstrap.dig.test",
            "dnsaddr=/dns4/a.nodes.dig.test/tcp/1",
        );
    let dns = DnsResponder::start(zone.clone()).await.unwrap();

    let joiner = SidecarNode::start(spec(
        "joiner",
        &[
            "--bootstrap".into(),
            "/dnsaddr/bootstrap.dig.test".into(),
            "--nameserver".into(),
            dns.address.to_string(),
            "--no-dht".into(),
        ],
    ))
    .await
    .expect("start the joiner");

    joiner
        .wait_connected_to(&[&a.peer_id, &b.peer_id], WAIT)
        .await;
    let connections = joiner.get_json("/connections").await.unwrap();
    let dns_stats = &connections["discovery"]["dns"];
    assert_eq!(dns_stats["enabled"], true, "{connections}");
    assert_eq!(dns_stats["answered"], true, "{connections}");
    assert_eq!(dns_stats["peers"], 2, "{connections}");
    assert_eq!(connections["discovery"]["registry"]["enabled"], false);
    let ready = joiner.get_json("/ready").await.unwrap();
    assert_eq!(
        ready["ready"], true,
        "DNS answering makes the node ready: {ready}"
    );

    // A node added to the records later is dialed at the next lookup (within 30 s).
    let c = SidecarNode::start(spec("c", &[])).await.expect("start c");
    zone.a("c.nodes.dig.test", Ipv4Addr::LOCALHOST).txt(
        "_dnsaddr.more.dig.test",
        &format!(
            "dnsaddr=/dns4/c.nodes.dig.test/tcp/{}/p2p/{}",
            tcp_port(&c).await,
            c.peer_id
        ),
    );
    joiner.wait_connected_to(&[&c.peer_id], WAIT).await;
    drop(dns);
}
