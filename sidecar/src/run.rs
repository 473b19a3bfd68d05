//! `dig-sidecar run`: wires identity, the libp2p node, the registry client, the replication
//! engine and the HTTP API together, and shuts them down in order on SIGINT / SIGTERM.

use std::{sync::Arc, time::Instant};

use dig_core::client::{ClientError, RegistryClient};
use libp2p::pnet::PreSharedKey;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{
    config::RunArgs,
    discovery::registry::{self as registry_discovery, RegistrySettings, StoreEntries},
    http::{self, ApiError, ApiState, StoresSource},
    identity::{self, IdentityError},
    node::{self, NodeConfig, NodeError},
    sync::{ReplicationConfig, Replicator, SyncError},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating data folder {}: {source}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("reading --psk-file {}: {source}", path.display())]
    PskRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--psk-file {}: not a libp2p pre-shared key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits): {detail}", path.display())]
    PskParse {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("--bootstrap {url}: {source}")]
    Bootstrap {
        url: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("starting replication: {0}")]
    Replication(#[source] Box<SyncError>),
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub fn read_psk(path: &std::path::Path) -> Result<PreSharedKey, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::PskRead {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim()
        .parse::<PreSharedKey>()
        .map_err(|error| RunError::PskParse {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    dig_core::crypto::install_crypto_provider();
    let started = Instant::now();
    let data_dir = args.data_dir();
    let state_dir = args.state_dir();
    for dir in [&data_dir, &state_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let keypair = identity::load_or_create(&state_dir)?;
    let psk = args.psk_file.as_deref().map(read_psk).transpose()?;
    if let Some(psk) = &psk {
        tracing::info!(fingerprint = %psk.fingerprint(), "private network (pnet): TCP only, QUIC disabled");
    }
    let servers = args
        .bootstrap
        .iter()
        .map(|url| {
            RegistryClient::new(url).map_err(|source| RunError::Bootstrap {
                url: url.clone(),
                source: Box::new(source),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut registry = Registry::default();
    let node_config = NodeConfig {
        keypair: keypair.clone(),
        network_id: args.network.clone(),
        listen: args.listen_addresses(),
        announce: args.announce.clone(),
        registry_enabled: !servers.is_empty(),
        enable_dht: !args.no_dht,
        enable_mdns: !args.no_mdns,
        allow_loopback: args.allow_loopback,
        enable_autonat: !args.no_autonat,
        psk,
        max_connections: args.max_connections,
    };
    let (node, node_task) = node::start(node_config, &mut registry)?;
    tracing::info!(
        peer_id = %node.local_peer_id(),
        network = %args.network,
        data_dir = %data_dir.display(),
        state_dir = %state_dir.display(),
        "node started"
    );

    let replicator = Replicator::start(
        ReplicationConfig::from_run_args(&args),
        node.clone(),
        &mut registry,
    )
    .await
    .map_err(|source| RunError::Replication(Box::new(source)))?;
    let stores_view: StoresSource = {
        let replicator = replicator.clone();
        Arc::new(move || {
            replicator
                .stores()
                .into_iter()
                .filter_map(|status| serde_json::to_value(status).ok())
                .collect()
        })
    };
    let store_entries: StoreEntries = {
        let replicator = replicator.clone();
        Arc::new(move || replicator.store_entries())
    };

    let (shutdown_sender, shutdown) = watch::channel(false);
    let registry_task = if servers.is_empty() {
        None
    } else {
        let settings = RegistrySettings::new(servers, keypair, args.network.clone(), store_entries);
        Some(tokio::spawn(registry_discovery::run(
            settings,
            node.clone(),
            shutdown.clone(),
        )))
    };

    let listener = http::bind(args.api_listen).await?;
    tracing::info!(address = %args.api_listen, "HTTP API listening");
    let api_state = ApiState {
        node: node.clone(),
        registry: Arc::new(registry),
        stores: stores_view,
        started,
        identity_loaded: true,
        state_dir: state_dir.clone(),
        live: Arc::default(),
    };
    let mut api_shutdown = shutdown.clone();
    let api = tokio::spawn(http::serve(listener, api_state, async move {
        let _ = api_shutdown.changed().await;
    }));

    dig_core::shutdown::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_sender.send(true);
    if let Some(task) = registry_task {
        let _ = task.await;
    }
    replicator.shutdown().await;
    node.shutdown().await;
    let _ = node_task.await;
    match api.await {
        Ok(result) => result?,
        Err(error) => tracing::warn!(%error, "the HTTP API task failed"),
    }
    Ok(())
}
