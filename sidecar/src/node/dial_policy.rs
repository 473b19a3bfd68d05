//! Which outgoing dials the node allows, checked before any dial starts. It exists for AutoNAT's
//! server, which dials whatever address a connected peer asks for: without it a peer could make
//! the node probe other hosts of its LAN, or its own loopback services. A dial to a connected peer
//! must use an IP that peer is connected from (what the AutoNAT v2 specification asks servers to
//! check, and the library does not), and loopback is dialed only with `--allow-loopback`.

use std::{
    collections::HashMap,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
    },
};

use super::addresses;

/// Why a dial was refused; the swarm reports it as a denied connection.
#[derive(Debug, thiserror::Error)]
pub enum DialRefused {
    #[error(
        "dial to connected peer {peer} refused: none of {addresses:?} is on an IP it is connected from"
    )]
    NotTheConnectedIp {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    },
    #[error("dial to {addresses:?} refused: loopback addresses need --allow-loopback")]
    Loopback { addresses: Vec<Multiaddr> },
}

pub struct Behaviour {
    allow_loopback: bool,
    /// The remote IP of every open connection, by peer.
    connected_from: HashMap<PeerId, HashMap<ConnectionId, IpAddr>>,
}

fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|part| match part {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Behaviour {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            allow_loopback,
            connected_from: HashMap::new(),
        }
    }

    /// Checks a dial's explicit addresses (a dial without any is left to the other behaviours).
    fn check(&self, peer: Option<PeerId>, dialed: &[Multiaddr]) -> Result<(), DialRefused> {
        if dialed.is_empty() {
            return Ok(());
        }
        if !self.allow_loopback && dialed.iter().all(addresses::is_loopback) {
            return Err(DialRefused::Loopback {
                addresses: dialed.to_vec(),
            });
        }
        let connected_ips = peer.and_then(|peer| self.connected_from.get(&peer));
        if let (Some(peer), Some(ips)) = (peer, connected_ips) {
            let on_a_connected_ip = dialed
                .iter()
                .filter_map(ip_of)
                .any(|ip| ips.values().any(|connected| *connected == ip));
            if !on_a_connected_ip {
                return Err(DialRefused::NotTheConnectedIp {
                    peer,
                    addresses: dialed.to_vec(),
                });
            }
        }
        Ok(())
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        dialed: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.check(peer, dialed).map_err(ConnectionDenied::new)?;
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.connected_from
                        .entry(peer_id)
                        .or_default()
                        .insert(connection_id, ip);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(connections) = self.connected_from.get_mut(&peer_id) {
                    connections.remove(&connection_id);
                    if connections.is_empty() {
                        self.connected_from.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn connected(policy: &mut Behaviour, peer: PeerId, from: &str) {
        let id = ConnectionId::new_unchecked(policy.connected_from.len() + 1);
        policy
            .connected_from
            .entry(peer)
            .or_default()
            .insert(id, ip_of(&addr(from)).unwrap());
    }

    #[test]
    fn a_connected_peer_is_dialed_back_only_on_an_ip_it_is_connected_from() {
        let mut policy = Behaviour::new(false);
        let peer = PeerId::random();
        connected(&mut policy, peer, "/ip4/198.51.100.7/tcp/53124");
        assert!(
            policy
                .check(Some(peer), &[addr("/ip4/198.51.100.7/tcp/4001")])
                .is_ok(),
            "its own IP, another port"
        );
        let error = policy
            .check(Some(peer), &[addr("/ip4/192.168.1.1/tcp/22")])
            .unwrap_err();
        assert!(error.to_string().contains("192.168.1.1"), "{error}");
        assert!(
            policy
                .check(Some(peer), &[addr("/dns4/example.net/tcp/4001")])
                .is_err(),
            "no IP at all"
        );
    }

    #[test]
    fn peers_not_connected_are_dialed_anywhere_but_loopback() {
        let policy = Behaviour::new(false);
        let peer = PeerId::random();
        assert!(
            policy
                .check(Some(peer), &[addr("/ip4/10.0.0.9/tcp/4001")])
                .is_ok()
        );
        assert!(
            policy
                .check(None, &[addr("/dns4/node.example.net/tcp/4001")])
                .is_ok()
        );
        assert!(policy.check(Some(peer), &[]).is_ok());
        let error = policy
            .check(Some(peer), &[addr("/ip4/127.0.0.1/tcp/4001")])
            .unwrap_err();
        assert!(error.to_string().contains("--allow-loopback"), "{error}");
        let allowed = Behaviour::new(true);
        assert!(
            allowed
                .check(Some(peer), &[addr("/ip4/127.0.0.1/tcp/4001")])
                .is_ok()
        );
    }

    #[test]
    fn a_peer_connected_over_loopback_is_dialed_back_on_loopback_only_when_allowed() {
        let peer = PeerId::random();
        let mut allowed = Behaviour::new(true);
        connected(&mut allowed, peer, "/ip4/127.0.0.1/tcp/50000");
        assert!(
            allowed
                .check(Some(peer), &[addr("/ip4/127.0.0.1/tcp/4001")])
                .is_ok()
        );
        let mut refused = Behaviour::new(false);
        connected(&mut refused, peer, "/ip4/127.0.0.1/tcp/50000");
        assert!(
            refused
                .check(Some(peer), &[addr("/ip4/127.0.0.1/tcp/4001")])
                .is_err()
        );
    }
}
