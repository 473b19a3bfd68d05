//! What both parts of the benchmark share: the command line and starting a network of nodes.

use std::{path::Path, time::Duration};

use clap::Parser;
use dig_e2e::network::{LocalNetwork, SidecarNode};

#[derive(Parser)]
#[command(about = "Replication benchmark: real dig-sidecar processes on loopback")]
pub struct Args {
    /// Size of the large store in MiB.
    #[arg(long, default_value_t = 1024)]
    pub large_mib: u64,
    /// Number of small stores.
    #[arg(long, default_value_t = 5000)]
    pub small_count: usize,
    /// Size of each small store in bytes.
    #[arg(long, default_value_t = 1024)]
    pub small_bytes: usize,
    /// Folder for the nodes' data (default: a temporary folder).
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
    /// `RUST_LOG` of the nodes.
    #[arg(long, default_value = "warn")]
    pub node_log: String,
    /// Print every node's log after each large-file transfer.
    #[arg(long)]
    pub print_logs: bool,
    /// Extra `dig-sidecar run` arguments for every node (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Run the side-by-side table of DIG and Syncthing (3 nodes each) instead of the sections
    /// above; without `syncthing` on the PATH its column is left empty.
    #[arg(long)]
    pub compare_syncthing: bool,
    /// Also run the side-by-side table on a loop-mounted XFS with reflinks (needs root,
    /// `mkfs.xfs` and `losetup`).
    #[arg(long, requires = "compare_syncthing")]
    pub xfs: bool,
    /// Leave the Syncthing column empty even when `syncthing` is installed (DIG's figures only,
    /// in a fraction of the time).
    #[arg(long, requires = "compare_syncthing")]
    pub without_syncthing: bool,
}

pub const TIMEOUT: Duration = Duration::from_secs(600);

pub async fn start_network(
    root: &Path,
    id: &str,
    count: usize,
    args: &Args,
) -> anyhow::Result<LocalNetwork> {
    let mut network = LocalNetwork::start(root, id, 0).await?;
    for index in 0..count {
        let mut spec = network.node_spec(index);
        spec.log = args.node_log.clone();
        for arg in &args.node_args {
            spec = spec.arg(arg.clone());
        }
        network.nodes.push(SidecarNode::start(spec).await?);
    }
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await?;
    Ok(network)
}
