//! Which addresses are worth registering or dialing.
//!
//! A node registers only addresses that others can dial: `--announce` addresses, confirmed
//! external addresses, and (only with `--allow-loopback`) its concrete listen addresses. Addresses
//! learned from peers pass the same loopback rule before they reach Kademlia or the dialer.

use libp2p::{Multiaddr, multiaddr::Protocol};

/// True when the address is a QUIC one.
pub fn is_quic(address: &Multiaddr) -> bool {
    address
        .iter()
        .any(|part| matches!(part, Protocol::QuicV1 | Protocol::Quic))
}

/// True when the address names the loopback interface (127.0.0.0/8, ::1).
pub fn is_loopback(address: &Multiaddr) -> bool {
    address.iter().any(|part| match part {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// True when the address cannot be dialed as is: an unspecified IP (0.0.0.0, ::) or port 0.
fn is_unusable(address: &Multiaddr) -> bool {
    address.iter().any(|part| match part {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        Protocol::Tcp(0) | Protocol::Udp(0) => true,
        _ => false,
    })
}

/// Whether an address may be used to reach a peer.
pub fn is_dialable(address: &Multiaddr, allow_loopback: bool) -> bool {
    !address.is_empty() && !is_unusable(address) && (allow_loopback || !is_loopback(address))
}

/// Removes a trailing `/p2p/<peer id>`; registry records carry addresses without it.
pub fn without_peer_id(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

/// The addresses the node registers: announce and confirmed external addresses always, concrete
/// listen addresses only with `allow_loopback` (single-machine networks). Deduplicated, in order.
pub fn registrable_addresses(
    announce: &[Multiaddr],
    external: &[Multiaddr],
    listening: &[Multiaddr],
    allow_loopback: bool,
) -> Vec<Multiaddr> {
    let from_listen: &[Multiaddr] = if allow_loopback { listening } else { &[] };
    let mut out: Vec<Multiaddr> = Vec::new();
    for address in announce.iter().chain(external).chain(from_listen) {
        let address = without_peer_id(address);
        if is_dialable(&address, allow_loopback) && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

/// Filters addresses learned from a peer or a discovery source.
pub fn dialable_only(addresses: &[Multiaddr], allow_loopback: bool) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for address in addresses {
        let address = without_peer_id(address);
        if is_dialable(&address, allow_loopback) && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_is_registered_only_when_allowed() {
        let listening = [
            addr("/ip4/127.0.0.1/tcp/4101"),
            addr("/ip4/127.0.0.1/udp/4101/quic-v1"),
        ];
        assert!(registrable_addresses(&[], &[], &listening, false).is_empty());
        assert_eq!(
            registrable_addresses(&[], &[], &listening, true),
            listening.to_vec()
        );
    }

    #[test]
    fn announce_and_external_addresses_are_registered_without_loopback_listen_addresses() {
        let announce = [addr("/dns4/node-0.example.net/tcp/4001")];
        let external = [addr("/ip4/203.0.113.7/tcp/4001")];
        let listening = [
            addr("/ip4/10.0.0.5/tcp/4001"),
            addr("/ip4/127.0.0.1/tcp/4001"),
        ];
        assert_eq!(
            registrable_addresses(&announce, &external, &listening, false),
            vec![announce[0].clone(), external[0].clone()]
        );
    }

    #[test]
    fn unspecified_addresses_and_port_zero_are_never_registered() {
        let listening = [
            addr("/ip4/0.0.0.0/tcp/4001"),
            addr("/ip6/::/tcp/4001"),
            addr("/ip4/127.0.0.1/tcp/0"),
            addr("/ip4/127.0.0.1/udp/0/quic-v1"),
        ];
        assert!(registrable_addresses(&[], &[], &listening, true).is_empty());
    }

    #[test]
    fn peer_id_suffix_is_removed_and_duplicates_are_dropped() {
        let peer = libp2p::PeerId::random();
        let with_id = addr(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{peer}"));
        let plain = addr("/ip4/198.51.100.1/tcp/4001");
        assert_eq!(
            registrable_addresses(
                &[with_id.clone(), plain.clone()],
                std::slice::from_ref(&plain),
                &[],
                false
            ),
            vec![plain.clone()]
        );
        assert_eq!(dialable_only(&[with_id], false), vec![plain]);
    }

    #[test]
    fn peer_addresses_on_loopback_are_ignored_unless_allowed() {
        let learned = [
            addr("/ip6/::1/tcp/4001"),
            addr("/ip4/192.0.2.9/udp/4001/quic-v1"),
        ];
        assert_eq!(dialable_only(&learned, false), vec![learned[1].clone()]);
        assert_eq!(dialable_only(&learned, true), learned.to_vec());
    }
}
