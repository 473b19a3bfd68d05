//! A hand-crafted hostile peer for the replication tests: a real libp2p node of the network (so
//! identify admits it) that speaks the sync wire protocol and the gossip topic byte by byte, to
//! send what no honest node sends: forged, unsigned and far-ahead versions, oversized lengths,
//! garbage, and floods of streams.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Stream};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use dig_sidecar::node::{self, NodeConfig, NodeHandle};
use dig_sidecar::store::Version;
use dig_sidecar::store::record::{ContentId, VersionRecord};
use dig_sidecar::sync::announce::WireEntry;
use dig_sidecar::sync::sync_protocol;

use crate::network::SidecarNode;

pub struct HostilePeer {
    pub node: NodeHandle,
    pub keypair: Keypair,
    pub peer_id: PeerId,
    network_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostilePeer {
    /// A node of `network_id` on loopback, with no registry, DHT or mDNS: it reaches only the
    /// nodes it dials.
    pub fn start(network_id: &str) -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let mut registry = Registry::default();
        let (node, task) = node::start(
            NodeConfig::loopback(keypair.clone(), network_id),
            &mut registry,
        )?;
        Ok(Self {
            peer_id: keypair.public().to_peer_id(),
            node,
            keypair,
            network_id: network_id.to_string(),
            task,
        })
    }

    /// Dials `target` and waits until it is connected (identify passed).
    pub async fn connect(&self, target: &SidecarNode) -> anyhow::Result<PeerId> {
        let connections = target.get_json("/connections").await?;
        let peer: PeerId = target.peer_id.parse()?;
        let address: Multiaddr = connections["listeningAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse::<Multiaddr>().ok())
            .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
            .context("the node lists no TCP listen address")?
            .with(Protocol::P2p(peer));
        self.node.dial(address).await?;
        for _ in 0..200 {
            if self.node.connected_peers().await?.contains(&peer) {
                return Ok(peer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the hostile peer did not connect to {}", target.spec.name)
    }

    /// Publishes raw bytes on the stores topic, retrying while gossipsub has no mesh peer yet.
    pub async fn publish_raw(&self, data: Vec<u8>) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..100 {
            match self.node.publish_announcement(data.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("cannot publish: {last:?}")
    }

    /// Publishes entries as one announcement.
    pub async fn publish(&self, entries: Vec<Value>) -> anyhow::Result<()> {
        self.publish_raw(serde_json::to_vec(&json!({ "e": entries }))?)
            .await
    }

    /// A wire entry for a version of `name` that `signer` signs, claiming `origin` (and owner)
    /// made it. With `origin` another node's id, the signature cannot verify: a forgery.
    pub fn entry(
        signer: &Keypair,
        origin: &str,
        name: &str,
        lamport: u64,
        content: &[u8],
    ) -> anyhow::Result<Value> {
        let record = VersionRecord {
            name: name.to_string(),
            version: Version::new(lamport, origin),
            owner: origin.to_string(),
            content: Some(ContentId {
                size: content.len() as u64,
                hash: *blake3::hash(content).as_bytes(),
            }),
            replaces: None,
        };
        let signed = record.sign(signer)?;
        Ok(serde_json::to_value(WireEntry::from_signed(&signed))?)
    }

    /// A version this peer signs itself (valid signature; whether it is authorised is up to the
    /// receiver).
    pub fn own_entry(&self, name: &str, lamport: u64, content: &[u8]) -> anyhow::Result<Value> {
        Self::entry(
            &self.keypair,
            &self.peer_id.to_base58(),
            name,
            lamport,
            content,
        )
    }

    /// Opens a raw sync stream to `peer`.
    pub async fn open_stream(&self, peer: PeerId) -> anyhow::Result<Stream> {
        let mut control = self.node.stream_control();
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            control.open_stream(peer, sync_protocol(&self.network_id)),
        )
        .await
        .context("opening a sync stream timed out")??;
        Ok(stream)
    }

    /// Sends a length prefix far above any limit, then a little garbage, and reports whether the
    /// node closed the stream (instead of waiting for gigabytes).
    pub async fn send_oversized_length(&self, peer: PeerId) -> anyhow::Result<bool> {
        let mut stream = self.open_stream(peer).await?;
        stream.write_all(&u32::MAX.to_be_bytes()).await?;
        // A node may close the stream (or the whole connection) as soon as it reads the length:
        // a write that fails from here on is the answer the test wants, not an error.
        let sent_rest = async {
            stream.write_all(b"{\"type\":\"inventory\"").await?;
            stream.flush().await
        };
        if sent_rest.await.is_err() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .map(|read| matches!(read, Ok(0) | Err(_)))
            .unwrap_or(false);
        Ok(closed)
    }

    /// The `(kind, message)` of a refusal; panics on a closed stream or any other answer.
    pub fn refusal(answer: Option<Value>) -> (String, String) {
        let answer = answer.expect("an answer, the stream still open");
        assert_eq!(answer["type"], "refused", "{answer}");
        (
            answer["kind"].as_str().unwrap().to_owned(),
            answer["message"].as_str().unwrap().to_owned(),
        )
    }

    /// Sends `request` (a JSON header) on `stream` and returns the response header, or `None`
    /// when the node closed the stream.
    pub async fn ask(stream: &mut Stream, request: &Value) -> anyhow::Result<Option<Value>> {
        Self::ask_with_body(stream, request, &[]).await
    }

    /// [`Self::ask`] with `body` sent right behind the header (a holder notice's announcement).
    pub async fn ask_with_body(
        stream: &mut Stream,
        request: &Value,
        body: &[u8],
    ) -> anyhow::Result<Option<Value>> {
        let header = serde_json::to_vec(request)?;
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&header);
        frame.extend_from_slice(body);
        if stream.write_all(&frame).await.is_err() || stream.flush().await.is_err() {
            return Ok(None);
        }
        let read = async {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await?;
            let mut header = vec![0u8; u32::from_be_bytes(len).min(8192) as usize];
            stream.read_exact(&mut header).await?;
            std::io::Result::Ok(header)
        };
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(Ok(header)) => Ok(Some(serde_json::from_slice(&header)?)),
            Ok(Err(_)) => Ok(None),
            Err(_) => bail!("no answer to {request} within 10 s"),
        }
    }

    /// Opens up to `count` streams to `peer` and keeps every one that opened; each asks for a
    /// chunk and never reads the answer, to hold the node's slots and buffers.
    pub async fn flood_streams(
        &self,
        peer: PeerId,
        count: usize,
        name: &str,
        hash_hex: &str,
    ) -> Vec<Stream> {
        let mut held = Vec::new();
        for index in 0..count {
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(Duration::from_secs(2), self.open_stream(peer)).await
            else {
                continue;
            };
            let request =
                json!({"type": "chunk", "name": name, "hash": hash_hex, "index": index % 4});
            let body = serde_json::to_vec(&request).unwrap_or_default();
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            if stream.write_all(&frame).await.is_ok() && stream.flush().await.is_ok() {
                held.push(stream);
            }
        }
        held
    }

    /// Answers every sync stream the nodes open to this peer with a digest that differs from
    /// theirs and then an inventory of garbage: a node must drop it and count it against us.
    pub fn serve_lies(&self) -> anyhow::Result<()> {
        let mut control = self.node.stream_control();
        let mut incoming = control.accept(sync_protocol(&self.network_id))?;
        tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut request = vec![0u8; u32::from_be_bytes(len).min(8192) as usize];
                        if stream.read_exact(&mut request).await.is_err() {
                            return;
                        }
                        const GARBAGE: &[u8] = b"[{\"n\": garbage, not JSON";
                        let answer: Value = if request.starts_with(b"{\"type\":\"digest\"") {
                            json!({"type": "digest", "digest": "ff".repeat(32), "count": 1})
                        } else {
                            json!({"type": "inventory", "len": GARBAGE.len()})
                        };
                        let body = serde_json::to_vec(&answer).unwrap_or_default();
                        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                        frame.extend_from_slice(&body);
                        if answer["type"] == "inventory" {
                            frame.extend_from_slice(GARBAGE);
                        }
                        if stream.write_all(&frame).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                    }
                });
            }
        });
        Ok(())
    }
}
