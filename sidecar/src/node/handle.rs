//! The cloneable client side of the swarm event loop: the rest of the program talks to the node
//! only through this handle (commands over a channel, events over a broadcast).

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::status::{DiscoverySource, NodeSnapshot, RegistryOutcome};

/// What the node tells the rest of the program.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A peer of OUR network is connected (identify confirmed its network).
    PeerConnected(PeerId),
    /// The last connection to a confirmed peer closed.
    PeerDisconnected(PeerId),
    /// A gossipsub message on the stores topic `dig/<net>/stores/2`.
    Announcement { source: PeerId, data: Vec<u8> },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the node's event loop has stopped")]
    Stopped,
    #[error("no connected peer subscribes to gossip topic {topic}; announcement not sent")]
    NoSubscribedPeers { topic: String },
    #[error("publishing {bytes} bytes on gossip topic {topic} failed: {reason}")]
    Publish {
        topic: String,
        bytes: usize,
        reason: String,
    },
    #[error("building the libp2p swarm failed: {0}")]
    Build(String),
    #[error("listening on {address} failed: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("dialing {address} failed: {reason}")]
    Dial { address: Multiaddr, reason: String },
}

/// Requests from handles to the event loop. Each carries its own reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Ban {
        peer: PeerId,
        reason: String,
        reply: oneshot::Sender<()>,
    },
    /// The complete current view of one discovery source (peers missing from it lose that source).
    DiscoveredPeers {
        source: DiscoverySource,
        peers: Vec<(PeerId, Vec<Multiaddr>)>,
    },
    Registry(RegistryOutcome),
    /// A round of a discovery source other than the registry: peers found, or why it failed.
    SourceOutcome {
        source: DiscoverySource,
        outcome: Result<usize, String>,
    },
    Snapshot {
        reply: oneshot::Sender<NodeSnapshot>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Shutdown,
}

#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) stream_control: libp2p_stream::Control,
    pub(crate) local_peer_id: PeerId,
    pub(crate) network_id: String,
}

impl NodeHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// For the sync protocol: open streams to peers / accept incoming ones
    /// (the `libp2p_stream::Behaviour` is part of the swarm).
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.stream_control.clone()
    }

    /// Publishes on the gossipsub topic `dig/<net>/stores/2`.
    pub async fn publish_announcement(&self, data: Vec<u8>) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish { data, reply }).await?;
        answer.await.map_err(|_| NodeError::Stopped)?
    }

    /// Events from now on; a receiver that falls behind gets `RecvError::Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Peers of our network that are connected now (identify confirmed).
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ConnectedPeers { reply }).await?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Disconnects and refuses the peer for a while (for a bad chunk); counted in a metric.
    pub async fn ban_peer(&self, peer: PeerId, reason: String) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ban {
            peer,
            reason,
            reply,
        })
        .await?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Everything the HTTP API and the registry client need to know about the node right now.
    pub async fn snapshot(&self) -> Result<NodeSnapshot, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Replaces what one discovery source currently knows; new peers are dialed at once.
    pub async fn report_discovered(
        &self,
        source: DiscoverySource,
        peers: Vec<(PeerId, Vec<Multiaddr>)>,
    ) -> Result<(), NodeError> {
        self.send(Command::DiscoveredPeers { source, peers }).await
    }

    pub async fn report_registry(&self, outcome: RegistryOutcome) -> Result<(), NodeError> {
        self.send(Command::Registry(outcome)).await
    }

    /// Records a round of a discovery source (its `/connections` figures and readiness).
    pub async fn report_source(
        &self,
        source: DiscoverySource,
        outcome: Result<usize, String>,
    ) -> Result<(), NodeError> {
        self.send(Command::SourceOutcome { source, outcome }).await
    }

    /// Dials an address (it must end in `/p2p/<peer id>` for the peer to be known).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial {
            address: address.clone(),
            reply,
        })
        .await?;
        let result = answer.await.map_err(|_| NodeError::Stopped)?;
        result.map_err(|reason| NodeError::Dial { address, reason })
    }

    /// Asks the event loop to stop; the swarm closes every connection.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn send(&self, command: Command) -> Result<(), NodeError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NodeError::Stopped)
    }
}
