//! The one task that owns the swarm: it handles swarm events and handle commands, confirms each
//! peer's network through identify before trusting it, and keeps the peer set at its target
//! (dialing known peers with backoff, closing or rotating connections, see `peer_set`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use dig_core::clock::now_ms;
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat,
    core::{ConnectedPoint, transport::PortUse},
    gossipsub, identify, kad, mdns,
    metrics::{Metrics as Libp2pMetrics, Recorder},
    multiaddr::Protocol,
    swarm::{
        ConnectionId, DialError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use prometheus_client::metrics::counter::Counter;
use rand::{SeedableRng, rngs::StdRng};
use tokio::sync::{broadcast, mpsc};

use super::{
    addresses,
    behaviour::{Behaviour, BehaviourEvent, NetworkProtocols},
    handle::{Command, NodeError, NodeEvent},
    peer_book::{BAN_DURATION, PeerBook},
    peer_set::{CLOSE_GRACE, Candidate, ConnectedView, PeerSet, PeerSetView, ROTATION_INTERVAL},
    status::{ConnectedPeer, DiscoverySource, DiscoveryStats, NodeSnapshot, RegistryOutcome},
};
use crate::metrics::{NodeMetrics, ResultLabels};

const RANDOM_WALK_INTERVAL: Duration = Duration::from_secs(60);
/// A peer that has not shown through identify that it belongs to our network by then is dropped.
const IDENTIFY_DEADLINE: Duration = Duration::from_secs(30);
/// A QUIC connection beside a TCP one that the peer opened (or that we opened to dial the peer
/// back) is closed only once it is this old: it may be an AutoNAT dial-back testing a QUIC
/// address, which needs a few seconds (the library allows it 10 s). One we dialed ourselves is
/// closed at once; the peer, seeing it as inbound, waits for us.
const REDUNDANT_QUIC_GRACE: Duration = Duration::from_secs(12);
/// A dial the peer-set policy started stops counting towards the target after this long even
/// if libp2p never reported its end (it always should; this only keeps the count from sticking).
const POLICY_DIAL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct LoopSettings {
    pub allow_loopback: bool,
    pub registry_enabled: bool,
    pub dns_enabled: bool,
    pub dht_enabled: bool,
    pub mdns_enabled: bool,
    pub autonat_enabled: bool,
    /// `--announce` addresses: external by configuration, never removed by a failed probe.
    pub announce: Vec<Multiaddr>,
    /// `--target-peers`: the connections the node keeps (peers dialing it may add more).
    pub target_peers: usize,
}

/// One open connection to a peer.
struct OpenConnection {
    remote: Multiaddr,
    dialer: bool,
    /// We dialed it to connect (not an AutoNAT dial-back on a new port).
    own_dial: bool,
    /// From when it may be closed as a redundant QUIC connection.
    closable_from: Instant,
}

struct ConnectedState {
    confirmed: bool,
    established: Instant,
    connections: HashMap<ConnectionId, OpenConnection>,
    since_ms: u64,
    agent_version: Option<String>,
    protocol_version: Option<String>,
    listen_addresses: Vec<Multiaddr>,
    latency: Option<Duration>,
    /// An operator dialed it (`POST /dial`, `dig-sidecar dial`): the peer-set policy keeps it.
    operator_dialed: bool,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    libp2p_metrics: Libp2pMetrics,
    metrics: NodeMetrics,
    protocols: NetworkProtocols,
    settings: LoopSettings,
    topic: gossipsub::IdentTopic,
    connected: HashMap<PeerId, ConnectedState>,
    peers: PeerBook,
    listen_addresses: Vec<Multiaddr>,
    discovery: DiscoveryStats,
    dht_bootstrapped: bool,
    /// Connections we opened to dial a peer back for AutoNAT (a new port, not the listen port);
    /// closed once the dial-back is answered, so they do not count against the per-peer limit.
    dial_backs: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    peer_set: PeerSet,
    /// Dials the peer-set policy started that have not connected or failed yet.
    policy_dials: HashMap<ConnectionId, Instant>,
    /// Dials an operator asked for, until they connect or fail.
    operator_dials: HashSet<ConnectionId>,
}

/// The QUIC connections to drop when a peer also has a TCP one. libp2p-stream opens each sync
/// stream on any of a peer's connections, and QUIC (quinn, one UDP datagram per packet) costs a
/// sender up to 60 % more CPU per byte than Noise and yamux over TCP: measured with
/// bench-replication on loopback, 1 GiB to one node took 2.0 to 2.1 s over TCP and up to 3.2 s when
/// the streams rode QUIC. Both sides see which connection is TCP, so they drop the same ones.
fn redundant_quic_connections(
    connections: &HashMap<ConnectionId, OpenConnection>,
) -> Vec<ConnectionId> {
    if connections.values().all(|c| addresses::is_quic(&c.remote)) {
        return Vec::new();
    }
    connections
        .iter()
        .filter(|(_, c)| addresses::is_quic(&c.remote))
        .map(|(id, _)| *id)
        .collect()
}

/// A dial error with its cause: libp2p's `Display` says only "Dial error" for a refused dial.
fn describe_dial_error(error: &DialError) -> String {
    match error {
        DialError::Denied { cause } => match std::error::Error::source(cause) {
            Some(reason) => format!("refused: {reason}"),
            None => format!("refused: {cause}"),
        },
        other => match std::error::Error::source(other) {
            Some(source) => format!("{other}: {source}"),
            None => other.to_string(),
        },
    }
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NodeEvent>,
        libp2p_metrics: Libp2pMetrics,
        metrics: NodeMetrics,
        protocols: NetworkProtocols,
        settings: LoopSettings,
    ) -> Self {
        let mut discovery = DiscoveryStats::default();
        discovery.registry.enabled = settings.registry_enabled;
        discovery.registry.registrations = Some(0);
        discovery.registry.registration_failures = Some(0);
        discovery.dns.enabled = settings.dns_enabled;
        discovery.dht.enabled = settings.dht_enabled;
        discovery.mdns.enabled = settings.mdns_enabled;
        discovery.autonat.enabled = settings.autonat_enabled;
        let topic = gossipsub::IdentTopic::new(protocols.stores_topic.clone());
        metrics.target_peers.set(settings.target_peers as i64);
        let peer_set = PeerSet::new(
            settings.target_peers,
            ROTATION_INTERVAL,
            CLOSE_GRACE,
            Instant::now(),
            StdRng::from_entropy(),
        );
        Self {
            swarm,
            commands,
            events,
            libp2p_metrics,
            metrics,
            protocols,
            settings,
            topic,
            connected: HashMap::new(),
            peers: PeerBook::default(),
            listen_addresses: Vec::new(),
            discovery,
            dht_bootstrapped: false,
            dial_backs: HashMap::new(),
            peer_set,
            policy_dials: HashMap::new(),
            operator_dials: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut walk = tokio::time::interval(RANDOM_WALK_INTERVAL);
        walk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command),
                },
                _ = tick.tick() => {
                    self.expire_quarantine_and_bans();
                    self.drop_unidentified_peers();
                    self.close_redundant_quic_connections();
                    self.maintain_peer_set();
                }
                _ = walk.tick() => self.random_walk(),
            }
        }
        tracing::info!("node event loop stopped");
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addresses.contains(&address) {
                    self.listen_addresses.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addresses.retain(|known| known != &address);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "a listener failed");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let remote = endpoint.get_remote_address().clone();
                let dialer = endpoint.is_dialer();
                if let ConnectedPoint::Dialer {
                    port_use: PortUse::New,
                    ..
                } = endpoint
                {
                    // Our own dials reuse the listen port; only AutoNAT's dial-backs ask for a new one.
                    self.dial_backs
                        .entry(peer_id)
                        .or_default()
                        .push((connection_id, addresses::without_peer_id(&remote)));
                }
                if dialer {
                    self.metrics.count_dial("connected");
                }
                self.policy_dials.remove(&connection_id);
                let operator_dialed = self.operator_dials.remove(&connection_id);
                self.peers.on_connected(peer_id);
                let state = self
                    .connected
                    .entry(peer_id)
                    .or_insert_with(|| ConnectedState {
                        confirmed: false,
                        established: Instant::now(),
                        connections: HashMap::new(),
                        since_ms: now_ms(),
                        agent_version: None,
                        protocol_version: None,
                        listen_addresses: Vec::new(),
                        latency: None,
                        operator_dialed: false,
                    });
                state.operator_dialed |= operator_dialed;
                let our_own_dial = matches!(
                    endpoint,
                    ConnectedPoint::Dialer {
                        port_use: PortUse::Reuse,
                        ..
                    }
                );
                let closable_from = if our_own_dial {
                    Instant::now()
                } else {
                    Instant::now() + REDUNDANT_QUIC_GRACE
                };
                state.connections.insert(
                    connection_id,
                    OpenConnection {
                        remote,
                        dialer,
                        own_dial: our_own_dial,
                        closable_from,
                    },
                );
                tracing::debug!(%peer_id, dialer, "connection established");
                self.close_redundant_quic_connections();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(state) = self.connected.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if let Some(dial_backs) = self.dial_backs.get_mut(&peer_id) {
                    dial_backs.retain(|(id, _)| *id != connection_id);
                    if dial_backs.is_empty() {
                        self.dial_backs.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    if let Some(state) = self.connected.remove(&peer_id)
                        && state.confirmed
                    {
                        tracing::info!(%peer_id, cause = ?cause, "peer disconnected");
                        let _ = self.events.send(NodeEvent::PeerDisconnected(peer_id));
                    }
                    self.update_connected_gauge();
                    self.peers.on_disconnected(peer_id, Instant::now());
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                connection_id,
                error,
            } => {
                self.policy_dials.remove(&connection_id);
                self.operator_dials.remove(&connection_id);
                self.metrics.count_dial("failed");
                tracing::debug!(%peer_id, %error, "dial failed");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: None,
                connection_id,
                error,
            } => {
                self.policy_dials.remove(&connection_id);
                self.operator_dials.remove(&connection_id);
                self.metrics.count_dial("failed");
                tracing::debug!(%error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                if self.settings.announce.contains(&address)
                    || addresses::is_dialable(&address, self.settings.allow_loopback)
                {
                    tracing::info!(%address, "external address confirmed");
                } else {
                    // A peer on the same machine can confirm a loopback address; it is of no use
                    // to anyone else unless loopback networks were asked for.
                    tracing::debug!(%address, "dropping a confirmed loopback address");
                    self.swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address no longer confirmed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Ping(event) => {
                self.libp2p_metrics.record(&event);
                if let (Ok(rtt), Some(state)) = (event.result, self.connected.get_mut(&event.peer))
                {
                    state.latency = Some(rtt);
                    self.peers.record_rtt(event.peer, rtt);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                self.on_kad_event(event);
            }
            BehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message,
                    ..
                } = event
                    && message.topic == self.topic.hash()
                {
                    let source = message.source.unwrap_or(propagation_source);
                    let _ = self.events.send(NodeEvent::Announcement {
                        source,
                        data: message.data,
                    });
                }
            }
            BehaviourEvent::Mdns(event) => self.on_mdns_event(event),
            BehaviourEvent::AutonatClient(event) => self.on_autonat_probe(event),
            BehaviourEvent::AutonatServer(event) => {
                // This dial-back is over (answered or failed): its connection has done its job.
                // Others to the same peer, for other addresses, may still be under way.
                if let Some(dial_backs) = self.dial_backs.get(&event.client) {
                    let tested = addresses::without_peer_id(&event.tested_addr);
                    for (connection, _) in dial_backs.iter().filter(|(_, to)| *to == tested) {
                        self.swarm.close_connection(*connection);
                    }
                }
                let succeeded = event.result.is_ok();
                self.metrics.count_autonat_probe("server", succeeded);
                let stats = &mut self.discovery.autonat;
                match event.result {
                    Ok(()) => stats.dial_backs_succeeded += 1,
                    Err(error) => {
                        stats.dial_backs_failed += 1;
                        tracing::debug!(
                            client = %event.client,
                            address = %event.tested_addr,
                            %error,
                            "dialing a peer back failed"
                        );
                    }
                }
            }
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::DialPolicy(never) => match never {},
            BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Stream(()) => {}
        }
    }

    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        if !self
            .protocols
            .accepts(&info.protocol_version, &info.protocols)
        {
            tracing::warn!(
                %peer_id,
                protocol_version = %info.protocol_version,
                agent = %info.agent_version,
                "peer belongs to another network; disconnecting"
            );
            self.metrics.foreign_peers_rejected.inc();
            self.peers.quarantine(peer_id, Instant::now());
            // Blocked, not only left undialed: AutoNAT's protocol names cannot carry the network
            // id, so nothing else stops a foreign peer from reconnecting to ask for dial-backs,
            // or a dial-back it asked for before identify from reaching it.
            self.swarm.behaviour_mut().blocked.block_peer(peer_id);
            if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                kad.remove_peer(&peer_id);
            }
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        let listen = addresses::dialable_only(&info.listen_addrs, self.settings.allow_loopback);
        let Some(state) = self.connected.get_mut(&peer_id) else {
            return;
        };
        state.agent_version = Some(info.agent_version.clone());
        state.protocol_version = Some(info.protocol_version.clone());
        state.listen_addresses = listen.clone();
        let newly_confirmed = !state.confirmed;
        state.confirmed = true;

        self.peers
            .on_identified(peer_id, listen.clone(), Instant::now());
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for address in &listen {
                kad.add_address(&peer_id, address.clone());
            }
            if !listen.is_empty() && !self.dht_bootstrapped {
                // Fill the routing table as soon as the first peer is known, not after 5 minutes.
                self.dht_bootstrapped = kad.bootstrap().is_ok();
            }
        }
        if newly_confirmed {
            tracing::info!(%peer_id, agent = %info.agent_version, "peer connected");
            let _ = self.events.send(NodeEvent::PeerConnected(peer_id));
            self.update_connected_gauge();
        }
    }

    /// One of our candidate addresses was dialed back (or not) by a peer. Confirmation itself
    /// arrives as `SwarmEvent::ExternalAddrConfirmed`; a failed probe withdraws the address if it
    /// was external, unless it was configured with `--announce`.
    fn on_autonat_probe(&mut self, event: autonat::v2::client::Event) {
        let succeeded = event.result.is_ok();
        self.metrics.count_autonat_probe("client", succeeded);
        let stats = &mut self.discovery.autonat;
        match event.result {
            Ok(()) => {
                stats.probes_succeeded += 1;
                tracing::debug!(address = %event.tested_addr, server = %event.server, "a peer dialed our address back");
            }
            Err(error) => {
                stats.probes_failed += 1;
                stats.last_error = Some(format!(
                    "peer {} could not dial {} back: {error}",
                    event.server, event.tested_addr
                ));
                tracing::debug!(address = %event.tested_addr, server = %event.server, %error, "a peer could not dial our address back");
                let external = self
                    .swarm
                    .external_addresses()
                    .any(|address| address == &event.tested_addr);
                if external && !self.settings.announce.contains(&event.tested_addr) {
                    self.swarm.remove_external_address(&event.tested_addr);
                }
            }
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated { .. } => {
                self.discovery.dht.answered = true;
                self.refresh_dht_count();
            }
            kad::Event::RoutablePeer { peer, address }
            | kad::Event::PendingRoutablePeer { peer, address } => {
                // Learned from a query: dial it; identify decides whether it enters the table.
                self.add_source_address(peer, DiscoverySource::Dht, address);
            }
            kad::Event::OutboundQueryProgressed { result, .. } => match result {
                kad::QueryResult::GetClosestPeers(Ok(ok)) => {
                    self.record_dht_success();
                    for info in ok.peers {
                        for address in info.addrs {
                            self.add_source_address(info.peer_id, DiscoverySource::Dht, address);
                        }
                    }
                }
                kad::QueryResult::Bootstrap(Ok(_)) => self.record_dht_success(),
                kad::QueryResult::GetClosestPeers(Err(error)) => {
                    self.record_dht_failure(error.to_string())
                }
                kad::QueryResult::Bootstrap(Err(error)) => {
                    self.record_dht_failure(error.to_string())
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn record_dht_success(&mut self) {
        self.discovery.dht.successes += 1;
        self.discovery.dht.last_success_ms = Some(now_ms());
        self.refresh_dht_count();
    }

    fn record_dht_failure(&mut self, error: String) {
        self.discovery.dht.failures += 1;
        self.discovery.dht.last_error = Some(error);
    }

    fn refresh_dht_count(&mut self) {
        let entries = self
            .swarm
            .behaviour_mut()
            .kad
            .as_mut()
            .map(|kad| {
                kad.kbuckets()
                    .map(|bucket| bucket.num_entries())
                    .sum::<usize>()
            })
            .unwrap_or(0);
        self.discovery.dht.peers = entries;
        self.metrics.set_discovered("dht", entries);
    }

    fn on_mdns_event(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                self.discovery.mdns.answered = true;
                self.discovery.mdns.successes += 1;
                self.discovery.mdns.last_success_ms = Some(now_ms());
                for (peer, address) in found {
                    self.add_source_address(peer, DiscoverySource::Mdns, address);
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, address) in gone {
                    self.peers
                        .remove_address(peer, DiscoverySource::Mdns, &address);
                }
            }
        }
        self.refresh_source_count(DiscoverySource::Mdns);
    }

    fn add_source_address(&mut self, peer: PeerId, source: DiscoverySource, address: Multiaddr) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let Some(address) = addresses::dialable_only(&[address], self.settings.allow_loopback)
            .into_iter()
            .next()
        else {
            return;
        };
        self.peers
            .add_address(peer, source, address, Instant::now());
        if source != DiscoverySource::Dht {
            self.refresh_source_count(source);
        }
    }

    /// Replaces a source's complete list (the registry's `/peers` answer).
    fn replace_source(&mut self, source: DiscoverySource, peers: Vec<(PeerId, Vec<Multiaddr>)>) {
        let local = *self.swarm.local_peer_id();
        let mut listed: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addrs) in peers {
            let addrs = addresses::dialable_only(&addrs, self.settings.allow_loopback);
            if peer != local && !addrs.is_empty() {
                listed.entry(peer).or_default().extend(addrs);
            }
        }
        self.peers.replace_source(source, listed, Instant::now());
        self.refresh_source_count(source);
    }

    fn refresh_source_count(&mut self, source: DiscoverySource) {
        let count = self.peers.source_count(source);
        match source {
            DiscoverySource::Registry => self.discovery.registry.peers = count,
            DiscoverySource::Mdns => self.discovery.mdns.peers = count,
            DiscoverySource::Dht => self.discovery.dht.peers = count,
            DiscoverySource::Dns => self.discovery.dns.peers = count,
            DiscoverySource::Direct => {}
        }
        self.metrics.set_discovered(source.label(), count);
    }

    /// Asks the peer-set policy whom to dial and whom to let go, and does it. Only peers the
    /// peer book says are due (not in backoff, quarantine or ban) are offered for dialing.
    fn maintain_peer_set(&mut self) {
        let now = Instant::now();
        let due = self.peers.due_peers(now);
        for peer in due.forgotten {
            tracing::debug!(%peer, "forgetting a peer no source lists any more");
        }
        self.policy_dials
            .retain(|_, started| now.duration_since(*started) < POLICY_DIAL_TIMEOUT);
        let connected: Vec<ConnectedView> = self
            .connected
            .iter()
            .map(|(peer, state)| ConnectedView {
                peer: *peer,
                closable: !state.operator_dialed && state.connections.values().any(|c| c.own_dial),
                rtt: state.latency,
                since: state.established,
            })
            .collect();
        let candidates: Vec<Candidate> = due
            .due
            .into_iter()
            .map(|(peer, rtt)| Candidate { peer, rtt })
            .collect();
        let plan = self.peer_set.plan(
            &PeerSetView {
                connected: &connected,
                dialing: self.policy_dials.len(),
                candidates: &candidates,
            },
            now,
        );
        for peer in plan.close {
            tracing::debug!(%peer, target = self.peer_set.target(), "closing a connection to keep the peer set at its target");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for peer in plan.dial {
            let addrs = self.peers.start_dial(peer, now);
            let options = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let connection = options.connection_id();
            if self.swarm.dial(options).is_ok() {
                self.metrics.count_dial("started");
                self.policy_dials.insert(connection, now);
            }
        }
    }

    fn expire_quarantine_and_bans(&mut self) {
        let released = self.peers.expire(Instant::now());
        let blocked = &mut self.swarm.behaviour_mut().blocked;
        for peer in released.quarantine_ended {
            blocked.unblock_peer(peer);
        }
        for peer in released.ban_ended {
            blocked.unblock_peer(peer);
            tracing::info!(%peer, "ban expired");
        }
    }

    fn close_redundant_quic_connections(&mut self) {
        for (peer_id, state) in &self.connected {
            let now = Instant::now();
            for redundant in redundant_quic_connections(&state.connections) {
                if state.connections[&redundant].closable_from <= now {
                    tracing::debug!(%peer_id, "closing a QUIC connection beside a TCP one");
                    self.swarm.close_connection(redundant);
                }
            }
        }
    }

    fn drop_unidentified_peers(&mut self) {
        let stale: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(_, state)| {
                !state.confirmed && state.established.elapsed() > IDENTIFY_DEADLINE
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in stale {
            tracing::debug!(%peer, "no identify answer from our network; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn random_walk(&mut self) {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut()
            && self.dht_bootstrapped
        {
            kad.get_closest_peers(PeerId::random());
        }
    }

    fn update_connected_gauge(&self) {
        let confirmed = self.connected.values().filter(|s| s.confirmed).count();
        self.metrics.connected_peers.set(confirmed as i64);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { data, reply } => {
                let bytes = data.len();
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data)
                    .map(|_| ())
                    .map_err(|error| match error {
                        gossipsub::PublishError::NoPeersSubscribedToTopic => {
                            NodeError::NoSubscribedPeers {
                                topic: self.protocols.stores_topic.clone(),
                            }
                        }
                        other => NodeError::Publish {
                            topic: self.protocols.stores_topic.clone(),
                            bytes,
                            reason: other.to_string(),
                        },
                    });
                let _ = reply.send(result);
            }
            Command::ConnectedPeers { reply } => {
                let peers = self
                    .connected
                    .iter()
                    .filter(|(_, state)| state.confirmed)
                    .map(|(peer, _)| *peer)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Ban {
                peer,
                reason,
                reply,
            } => {
                tracing::warn!(%peer, %reason, "banning peer for {} s", BAN_DURATION.as_secs());
                self.metrics.peers_banned.inc();
                self.peers.ban(peer, reason, Instant::now(), now_ms());
                let behaviour = self.swarm.behaviour_mut();
                behaviour.blocked.block_peer(peer);
                if let Some(kad) = behaviour.kad.as_mut() {
                    kad.remove_peer(&peer);
                }
                let _ = reply.send(());
            }
            Command::DiscoveredPeers { source, peers } => {
                self.replace_source(source, peers);
                // New peers are dialed now rather than at the next tick (up to 250 ms later).
                self.maintain_peer_set();
            }
            Command::Registry(outcome) => self.on_registry_outcome(outcome),
            Command::SourceOutcome { source, outcome } => {
                let stats = match source {
                    DiscoverySource::Dns => &mut self.discovery.dns,
                    DiscoverySource::Dht => &mut self.discovery.dht,
                    DiscoverySource::Mdns => &mut self.discovery.mdns,
                    DiscoverySource::Registry | DiscoverySource::Direct => return,
                };
                match outcome {
                    Ok(_) => {
                        stats.answered = true;
                        stats.successes += 1;
                        stats.last_success_ms = Some(now_ms());
                    }
                    Err(error) => {
                        stats.failures += 1;
                        stats.last_error = Some(error);
                    }
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Dial { address, reply } => {
                if let Some(Protocol::P2p(peer)) = address.iter().last() {
                    let plain = addresses::without_peer_id(&address);
                    self.peers.on_operator_dial(peer, plain, Instant::now());
                }
                let options = DialOpts::from(address);
                let connection = options.connection_id();
                let result = self
                    .swarm
                    .dial(options)
                    .map_err(|error| describe_dial_error(&error));
                if result.is_ok() {
                    self.metrics.count_dial("started");
                    self.operator_dials.insert(connection);
                }
                let _ = reply.send(result);
            }
            Command::Shutdown => {}
        }
    }

    fn on_registry_outcome(&mut self, outcome: RegistryOutcome) {
        let stats = &mut self.discovery.registry;
        let label = |result: &str| ResultLabels {
            result: result.to_string(),
        };
        let count = |counter: Counter| {
            counter.inc();
        };
        match outcome {
            RegistryOutcome::Registered { server } => {
                stats.answered = true;
                *stats.registrations.get_or_insert(0) += 1;
                stats.last_success_ms = Some(now_ms());
                count(
                    self.metrics
                        .registry_registrations
                        .get_or_create(&label("ok"))
                        .clone(),
                );
                tracing::debug!(%server, "registered with the bootstrap registry");
            }
            RegistryOutcome::RegisterFailed { server, error } => {
                *stats.registration_failures.get_or_insert(0) += 1;
                stats.last_error = Some(format!("register at {server}: {error}"));
                count(
                    self.metrics
                        .registry_registrations
                        .get_or_create(&label("error"))
                        .clone(),
                );
            }
            RegistryOutcome::Polled { server, peers } => {
                stats.answered = true;
                stats.successes += 1;
                stats.last_success_ms = Some(now_ms());
                count(
                    self.metrics
                        .registry_polls
                        .get_or_create(&label("ok"))
                        .clone(),
                );
                tracing::trace!(%server, peers, "polled the bootstrap registry");
            }
            RegistryOutcome::PollFailed { server, error } => {
                stats.failures += 1;
                stats.last_error = Some(format!("poll {server}: {error}"));
                count(
                    self.metrics
                        .registry_polls
                        .get_or_create(&label("error"))
                        .clone(),
                );
            }
        }
    }

    fn snapshot(&self) -> NodeSnapshot {
        let external: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let dialable = addresses::registrable_addresses(
            &[],
            &external,
            &self.listen_addresses,
            self.settings.allow_loopback,
        );
        let mut connected: Vec<ConnectedPeer> = self
            .connected
            .iter()
            .filter(|(_, state)| state.confirmed)
            .map(|(peer, state)| {
                let dialer = state.connections.values().any(|c| c.dialer);
                ConnectedPeer {
                    peer_id: peer.to_string(),
                    addresses: state
                        .connections
                        .values()
                        .map(|c| c.remote.to_string())
                        .collect(),
                    listen_addresses: state
                        .listen_addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    agent_version: state.agent_version.clone(),
                    protocol_version: state.protocol_version.clone(),
                    direction: if dialer { "outbound" } else { "inbound" },
                    connections: state.connections.len(),
                    connected_since_ms: state.since_ms,
                    latency_ms: state.latency.map(|rtt| rtt.as_secs_f64() * 1000.0),
                }
            })
            .collect();
        connected.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let discovered = self.peers.discovered_peers(|peer| {
            self.connected
                .get(peer)
                .is_some_and(|state| state.confirmed)
        });
        let mut discovery = self.discovery.clone();
        discovery.autonat.confirmed_addresses = external
            .iter()
            .filter(|address| !self.settings.announce.contains(address))
            .map(ToString::to_string)
            .collect();
        let banned = self.peers.banned_peers();
        NodeSnapshot {
            peer_id: *self.swarm.local_peer_id(),
            network_id: self.protocols.network_id.clone(),
            listen_addresses: self.listen_addresses.clone(),
            external_addresses: external,
            dialable_addresses: dialable,
            connected,
            discovered,
            discovery,
            banned,
            target_peers: self.peer_set.target(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(addresses: &[&str]) -> HashMap<ConnectionId, OpenConnection> {
        addresses
            .iter()
            .enumerate()
            .map(|(id, address)| {
                let connection = OpenConnection {
                    remote: address.parse().unwrap(),
                    dialer: false,
                    own_dial: false,
                    closable_from: Instant::now(),
                };
                (ConnectionId::new_unchecked(id), connection)
            })
            .collect()
    }

    #[test]
    fn quic_beside_tcp_is_dropped_and_a_lone_transport_kept() {
        let both = connections(&["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]);
        assert_eq!(
            redundant_quic_connections(&both),
            vec![ConnectionId::new_unchecked(1)]
        );
        let quic_only = connections(&[
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip6/::1/udp/4001/quic-v1",
        ]);
        assert!(redundant_quic_connections(&quic_only).is_empty());
        let tcp_only = connections(&["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"]);
        assert!(redundant_quic_connections(&tcp_only).is_empty());
    }
}
