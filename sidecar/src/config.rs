//! Command line, environment and YAML configuration.
//!
//! Every `run` option is a long flag, an environment variable `DIG_<FLAG>` (upper case, `-` becomes
//! `_`) and a key of the `--config` YAML file (the long flag name). Precedence: flags, then the
//! environment, then the file, then the defaults. Values from the environment and the file are fed
//! through the same clap parser as flags, so they are checked the same way, and an error names the
//! variable or the file and key.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dig_core::logging::LogFormat;
use dig_core::network_id::parse_network_id;
use libp2p::{Multiaddr, PeerId};

use crate::sync::engine::WritePolicy;

pub const DEFAULT_P2P_PORT: u16 = 4001;
pub const DEFAULT_API_LISTEN: &str = "0.0.0.0:8080";
pub const ENV_PREFIX: &str = "DIG_";

const RUN_AFTER_HELP: &str = "Every option can also be set with an environment variable \
DIG_<OPTION> (upper case, '-' becomes '_', e.g. DIG_DATA_DIR, DIG_NO_MDNS=true; repeatable options \
take a comma-separated list) or as a key of the --config YAML file (the long option name, e.g. \
'data-dir: /data', 'bootstrap: [http://a:3000]'). Flags win over the environment, which wins over \
the file, which wins over the defaults.";

#[derive(Debug, Parser)]
#[command(
    name = "dig-sidecar",
    version,
    about = "DIG Network node: discovers peers over libp2p and replicates a folder of .dig stores"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: libp2p, discovery, replication of the data folder and the HTTP API.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(Box<RunArgs>),
    /// Check that a bootstrap hostname resolves (A, AAAA, CNAME), that /health answers on every address, and that its _dnsaddr TXT records are dialable multiaddrs with peer ids.
    VerifyDns(VerifyDnsArgs),
    /// Print a node's state from its HTTP API.
    Status(StatusArgs),
    /// Print this node's peer id (creates the identity key if there is none).
    Identity(IdentityArgs),
}

/// Options of `dig-sidecar run`. Public so that the operator's tests can check the pod arguments
/// they generate against the real parser.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Folder of `<store>.dig` files that this node replicates.
    #[arg(long, value_name = "PATH", default_value = "~/.dig")]
    pub data_dir: PathBuf,

    /// Folder for the identity key, the index and temporary downloads [default: <data-dir>/.dig-node].
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,

    /// Network id; nodes of different networks never connect. 1 to 63 lowercase letters, digits
    /// and '-', starting and ending with a letter or digit.
    #[arg(long, value_name = "ID", default_value = "mainnet", value_parser = parse_network_id)]
    pub network: String,

    /// Bootstrap (repeatable): a registry URL (`http://` or `https://`), or `/dnsaddr/<host>`,
    /// whose TXT records `_dnsaddr.<host>` list peers to dial (`dnsaddr=<multiaddr>/p2p/<id>`).
    /// None turns the registry off.
    #[arg(long = "bootstrap", value_name = "URL|/dnsaddr/HOST", action = ArgAction::Append, value_parser = parse_bootstrap)]
    pub bootstrap: Vec<String>,

    /// DNS server (IP:PORT) for `/dnsaddr` bootstraps instead of the system resolver.
    #[arg(long, value_name = "IP:PORT")]
    pub nameserver: Option<SocketAddr>,

    /// P2P listen multiaddr (repeatable) [default: TCP and QUIC on port 4001, IPv4 and IPv6].
    #[arg(long, value_name = "MULTIADDR", action = ArgAction::Append)]
    pub listen: Vec<Multiaddr>,

    /// Address others can dial this node at, registered and advertised (repeatable).
    #[arg(long, value_name = "MULTIADDR", action = ArgAction::Append)]
    pub announce: Vec<Multiaddr>,

    /// Address of the HTTP API (/health, /ready, /connections, /peers, /stores, /metrics).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API_LISTEN)]
    pub api_listen: SocketAddr,

    /// Turn off mDNS discovery on the local link.
    #[arg(long)]
    pub no_mdns: bool,

    /// Turn off the Kademlia DHT.
    #[arg(long)]
    pub no_dht: bool,

    /// Accept and register loopback addresses (tests and single-machine networks).
    #[arg(long)]
    pub allow_loopback: bool,

    /// Turn off AutoNAT: no asking peers to dial back our candidate addresses (so only --announce
    /// addresses are registered) and no dialing back for them.
    #[arg(long)]
    pub no_autonat: bool,

    /// libp2p private-network key file (pnet, `/key/swarm/psk/1.0.0/` format); TCP only.
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,

    /// Replicate deletions as tombstones (and apply other nodes' tombstones) instead of fetching
    /// deleted stores again.
    #[arg(long)]
    pub propagate_deletes: bool,

    /// Who may write stores: `owner` (anyone creates a store; its owner, the node that created
    /// it, and the listed writers change or delete it), `writers` (only listed writers create,
    /// change or delete), `open` (any member changes any store; only with --psk-file).
    #[arg(long, value_name = "POLICY", default_value = "owner", value_parser = parse_write_policy)]
    pub write_policy: WritePolicy,

    /// Peer id of a node that may change or delete any store (repeatable; DIG_WRITERS and the
    /// YAML key `writers` are accepted too).
    #[arg(long = "writer", alias = "writers", value_name = "PEER_ID", action = ArgAction::Append, value_parser = parse_writer)]
    pub writer: Vec<PeerId>,

    /// Most stores taken from peers into the index; new ones beyond it are dropped (local stores
    /// are always indexed).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_stores: u64,

    /// Tombstones (deleted stores) are forgotten after this, e.g. 30d.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub tombstone_ttl: Duration,

    /// Most tombstones kept (the oldest are forgotten first).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(0..))]
    pub max_tombstones: u64,

    /// Files in `<state>/conflicts/` are deleted after this, e.g. 30d.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub conflict_ttl: Duration,

    /// Most files kept in `<state>/conflicts/` (the oldest are deleted first).
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..))]
    pub max_conflicts: u64,

    /// Largest store accepted from a peer (bytes, or with a unit: 500MiB, 64GiB).
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_byte_size)]
    pub max_store_size: u64,

    /// Free disk space kept in reserve; downloads that would go below it wait (bytes or with a unit).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_byte_size)]
    pub min_free_disk: u64,

    /// How often connected peers exchange their inventories (anti-entropy), e.g. 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub inventory_interval: Duration,

    /// Most stores downloaded at the same time.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_parallel_downloads: u32,

    /// Most established P2P connections (libp2p connection limits).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,

    /// Connections the node keeps (at most --max-connections): it dials until it has this many
    /// (half at random, half by lowest round-trip time), closes connections it dialed when it has
    /// far more, and swaps one for a new peer every few minutes. Peers dialing it are accepted up
    /// to --max-connections; announcements reach every node through the gossip mesh.
    #[arg(long, value_name = "N", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub target_peers: u32,

    /// Kubernetes downward-API `metadata.annotations` file, read every 2 s: while it holds the
    /// annotation `dig.net/drain` (a line `dig.net/drain="..."`), the node drains before leaving
    /// (no new downloads; `GET /drain` says which stores no live peer holds yet).
    #[arg(long, value_name = "FILE")]
    pub drain_annotations: Option<PathBuf>,

    /// TEST ONLY: serve every chunk with flipped bytes, to exercise verification and bans.
    #[arg(long, hide = true)]
    pub test_corrupt_chunks: bool,

    /// TEST ONLY: abort the process right after installing a download, before the index that
    /// records the installed file is saved (a power cut at the worst moment).
    #[arg(long, hide = true)]
    pub test_crash_after_install: bool,

    /// YAML configuration file; keys are the long option names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// The data folder with a leading `~` expanded.
    pub fn data_dir(&self) -> PathBuf {
        expand_home(&self.data_dir)
    }

    pub fn state_dir(&self) -> PathBuf {
        match &self.state_dir {
            Some(dir) => expand_home(dir),
            None => self.data_dir().join(".dig-node"),
        }
    }

    /// The `--bootstrap` values that are registry URLs.
    pub fn registry_urls(&self) -> Vec<String> {
        self.bootstrap
            .iter()
            .filter(|b| !b.starts_with('/'))
            .cloned()
            .collect()
    }

    /// The hosts of the `--bootstrap /dnsaddr/<host>` values.
    pub fn dnsaddr_hosts(&self) -> Vec<String> {
        self.bootstrap
            .iter()
            .filter_map(|b| crate::discovery::dnsaddr::dnsaddr_host(b))
            .collect()
    }

    /// The listen addresses, or the defaults: TCP and QUIC on 4001 on every interface.
    pub fn listen_addresses(&self) -> Vec<Multiaddr> {
        if !self.listen.is_empty() {
            return self.listen.clone();
        }
        [
            format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
            format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
            format!("/ip6/::/tcp/{DEFAULT_P2P_PORT}"),
            format!("/ip6/::/udp/{DEFAULT_P2P_PORT}/quic-v1"),
        ]
        .iter()
        .map(|text| text.parse().expect("default listen address is valid"))
        .collect()
    }
}

#[derive(Clone, Debug, Args)]
pub struct VerifyDnsArgs {
    /// Hostname of the bootstrap registry.
    pub host: String,
    /// Port of the registry's HTTP API.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Use https for the /health check.
    #[arg(long)]
    pub https: bool,
    /// DNS server to ask (IP:PORT) instead of the system resolver.
    #[arg(long, value_name = "IP:PORT")]
    pub nameserver: Option<SocketAddr>,
    /// Time limit of each DNS query, each /health request and each TCP connection.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Fail unless `_dnsaddr.<HOST>` has at least one valid dnsaddr record.
    #[arg(long)]
    pub require_dnsaddr: bool,
}

#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// Base URL of the node's HTTP API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080", env = "DIG_API", value_parser = parse_http_url)]
    pub api: String,
    /// Print the raw JSON of /health, /ready and /connections instead of a summary.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw peers, downloads (with progress bars) and stores until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Redraw period of --watch (e.g. 1s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, requires = "watch")]
    pub interval: Duration,
}

#[derive(Clone, Debug, Args)]
pub struct IdentityArgs {
    /// Data folder (the state folder defaults to <data-dir>/.dig-node).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "~/.dig",
        env = "DIG_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// State folder holding `identity.key`.
    #[arg(long, value_name = "PATH", env = "DIG_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl IdentityArgs {
    pub fn state_dir(&self) -> PathBuf {
        match &self.state_dir {
            Some(dir) => expand_home(dir),
            None => expand_home(&self.data_dir).join(".dig-node"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Cli(#[from] clap::Error),
    #[error("environment variable {variable}={value:?}: {detail}")]
    Env {
        variable: String,
        value: String,
        detail: String,
    },
    #[error("config file {}: {detail}", path.display())]
    File { path: PathBuf, detail: String },
    #[error("config file {}: key `{key}`: {detail}", path.display())]
    FileKey {
        path: PathBuf,
        key: String,
        detail: String,
    },
}

/// The environment variable of a long option: `data-dir` -> `DIG_DATA_DIR`.
pub fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.to_uppercase().replace('-', "_"))
}

/// Parses the command line, and for `run` fills what the flags left open from the environment
/// (`env` looks a variable up) and then from the `--config` file.
pub fn resolve(
    argv: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Cli, ConfigError> {
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(argv.clone())?;
    let Some(("run", run_matches)) = matches.subcommand() else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let run_command = command
        .find_subcommand("run")
        .expect("the run subcommand exists")
        .clone();

    let mut extra: Vec<String> = Vec::new();
    let given_on_command_line =
        |id: &str| run_matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);

    // The config file may itself come from the environment.
    let mut config_path: Option<PathBuf> = run_matches.get_one::<PathBuf>("config").cloned();
    let mut from_env: Vec<&str> = Vec::new();
    for arg in run_command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if given_on_command_line(arg.get_id().as_str()) {
            continue;
        }
        let Some((variable, value)) = long_names(arg)
            .into_iter()
            .map(env_name)
            .find_map(|variable| env(&variable).map(|value| (variable, value)))
        else {
            continue;
        };
        let args = env_value_to_args(arg, long, &value).map_err(|detail| ConfigError::Env {
            variable: variable.clone(),
            value: value.clone(),
            detail,
        })?;
        check_alone(&args).map_err(|detail| ConfigError::Env {
            variable: variable.clone(),
            value: value.clone(),
            detail,
        })?;
        if long == "config" {
            config_path = Some(PathBuf::from(&value));
        }
        from_env.push(arg.get_id().as_str());
        extra.extend(args);
    }

    if let Some(path) = config_path {
        let path = expand_home(&path);
        let file = read_config_file(&path)?;
        for (key, value) in file {
            let Some(arg) = run_command
                .get_arguments()
                .find(|arg| long_names(arg).contains(&key.as_str()))
            else {
                return Err(ConfigError::FileKey {
                    path,
                    key,
                    detail: "unknown option (keys are the long option names of `dig-sidecar run`)"
                        .into(),
                });
            };
            let id = arg.get_id().as_str();
            if key == "config" {
                return Err(ConfigError::FileKey {
                    path,
                    key,
                    detail: "a config file cannot name another config file".into(),
                });
            }
            if given_on_command_line(id) || from_env.contains(&id) {
                continue;
            }
            let args =
                yaml_value_to_args(arg, &key, &value).map_err(|detail| ConfigError::FileKey {
                    path: path.clone(),
                    key: key.clone(),
                    detail,
                })?;
            check_alone(&args).map_err(|detail| ConfigError::FileKey {
                path: path.clone(),
                key: key.clone(),
                detail,
            })?;
            extra.extend(args);
        }
    }

    let mut full: Vec<OsString> = argv;
    full.extend(extra.into_iter().map(OsString::from));
    let matches = command.try_get_matches_from(full)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The long name of an option and its aliases (each also an environment variable and a YAML key).
fn long_names(arg: &clap::Arg) -> Vec<&str> {
    arg.get_long()
        .into_iter()
        .chain(arg.get_all_aliases().unwrap_or_default())
        .collect()
}

/// Parses one option's arguments alone, so that a bad value is reported with where it came from.
fn check_alone(args: &[String]) -> Result<(), String> {
    let mut argv = vec!["dig-sidecar".to_string(), "run".to_string()];
    argv.extend(args.iter().cloned());
    Cli::command()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|error| first_line(&error.to_string()))
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

fn is_flag(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue)
}

fn is_repeatable(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

fn env_value_to_args(arg: &clap::Arg, long: &str, value: &str) -> Result<Vec<String>, String> {
    if is_flag(arg) {
        return match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(vec![format!("--{long}")]),
            "" | "0" | "false" | "no" | "off" => Ok(Vec::new()),
            _ => Err(format!(
                "--{long} is a switch: use true/false, yes/no, on/off or 1/0"
            )),
        };
    }
    if is_repeatable(arg) {
        return Ok(value
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .flat_map(|part| [format!("--{long}"), part.to_string()])
            .collect());
    }
    Ok(vec![format!("--{long}"), value.to_string()])
}

fn yaml_scalar(value: &yaml_serde::Value) -> Result<String, String> {
    match value {
        yaml_serde::Value::String(text) => Ok(text.clone()),
        yaml_serde::Value::Number(number) => Ok(number.to_string()),
        yaml_serde::Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "expected a single value, found {}",
            yaml_kind(other)
        )),
    }
}

fn yaml_kind(value: &yaml_serde::Value) -> &'static str {
    match value {
        yaml_serde::Value::Null => "nothing (null)",
        yaml_serde::Value::Bool(_) => "a boolean",
        yaml_serde::Value::Number(_) => "a number",
        yaml_serde::Value::String(_) => "a string",
        yaml_serde::Value::Sequence(_) => "a list",
        yaml_serde::Value::Mapping(_) => "a mapping",
        yaml_serde::Value::Tagged(_) => "a tagged value",
    }
}

fn yaml_value_to_args(
    arg: &clap::Arg,
    long: &str,
    value: &yaml_serde::Value,
) -> Result<Vec<String>, String> {
    if is_flag(arg) {
        return match value {
            yaml_serde::Value::Bool(true) => Ok(vec![format!("--{long}")]),
            yaml_serde::Value::Bool(false) => Ok(Vec::new()),
            other => Err(format!(
                "expected true or false, found {}",
                yaml_kind(other)
            )),
        };
    }
    if is_repeatable(arg) {
        let items: Vec<String> = match value {
            yaml_serde::Value::Sequence(items) => {
                items.iter().map(yaml_scalar).collect::<Result<_, _>>()?
            }
            other => vec![yaml_scalar(other)?],
        };
        return Ok(items
            .into_iter()
            .flat_map(|item| [format!("--{long}"), item])
            .collect());
    }
    Ok(vec![format!("--{long}"), yaml_scalar(value)?])
}

fn read_config_file(path: &Path) -> Result<BTreeMap<String, yaml_serde::Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
        path: path.to_path_buf(),
        detail: format!("cannot read it: {error}"),
    })?;
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    yaml_serde::from_str::<BTreeMap<String, yaml_serde::Value>>(&text).map_err(|error| {
        ConfigError::File {
            path: path.to_path_buf(),
            detail: format!("not a YAML mapping of option names to values: {error}"),
        }
    })
}

pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => path.to_path_buf(),
        },
        Err(_) => path.to_path_buf(),
    }
}

fn parse_write_policy(value: &str) -> Result<WritePolicy, String> {
    value.parse()
}

/// A writer is a peer id that carries an ed25519 key (the only kind that signs versions).
fn parse_writer(value: &str) -> Result<PeerId, String> {
    let peer = crate::store::record::parse_canonical_peer_id(value.trim())
        .ok_or_else(|| format!("{value:?} is not a base58 peer id such as 12D3KooW..."))?;
    if crate::store::record::public_key_of(&peer).is_none() {
        return Err(format!(
            "{value} is not an ed25519 peer id (12D3KooW...): its versions could not be checked"
        ));
    }
    Ok(peer)
}

/// A registry URL, or a `/dnsaddr/<host>` multiaddr.
fn parse_bootstrap(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        return crate::discovery::dnsaddr::dnsaddr_host(value)
            .map(|_| value.to_string())
            .ok_or_else(|| {
                "a multiaddr bootstrap must be /dnsaddr/<host> (with no further components)"
                    .to_string()
            });
    }
    parse_http_url(value)
}

fn parse_http_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|error| format!("not a URL: {error}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(value.trim_end_matches('/').to_string()),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Parses a duration such as `30s`, `2m`, `1h 30m` (humantime syntax).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value.trim())
        .map_err(|error| format!("not a duration like 30s or 2m: {error}"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// Parses a size: plain bytes, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB,
/// GiB, TiB (powers of 1024).
pub fn parse_byte_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "not a size like 1048576, 500MiB or 64GiB".to_string())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err("size out of range".into());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("dig-sidecar")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<RunArgs, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cli = resolve(argv(args), &|name| env.get(name).cloned())?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("expected run, got {other:?}"),
        }
    }

    fn write_config(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path.to_string_lossy().into_owned())
    }

    #[test]
    fn defaults_match_the_design() {
        let args = run(&["run"], &[]).unwrap();
        assert_eq!(args.network, "mainnet");
        assert_eq!(args.api_listen, "0.0.0.0:8080".parse().unwrap());
        assert!(args.data_dir().ends_with(".dig"));
        assert_eq!(args.state_dir(), args.data_dir().join(".dig-node"));
        let listen: Vec<String> = args
            .listen_addresses()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert!(listen.contains(&"/ip4/0.0.0.0/tcp/4001".to_string()));
        assert!(listen.contains(&"/ip4/0.0.0.0/udp/4001/quic-v1".to_string()));
        assert!(!args.no_mdns && !args.no_dht && !args.allow_loopback && !args.no_autonat);
        assert_eq!(args.inventory_interval, Duration::from_secs(30));
        assert_eq!(args.max_store_size, 64 << 30);
    }

    #[test]
    fn flags_win_over_env_which_wins_over_the_file() {
        let (_dir, path) = write_config(
            "network: from-file\napi-listen: 127.0.0.1:9001\ndata-dir: /file/data\nno-mdns: true\n\
             bootstrap: [http://file-a:3000, http://file-b:3000]\n",
        );
        let args = run(
            &["run", "--config", &path, "--network", "from-flag"],
            &[
                ("DIG_NETWORK", "from-env"),
                ("DIG_API_LISTEN", "127.0.0.1:9002"),
            ],
        )
        .unwrap();
        assert_eq!(args.network, "from-flag");
        assert_eq!(args.api_listen, "127.0.0.1:9002".parse().unwrap());
        assert_eq!(args.data_dir, PathBuf::from("/file/data"));
        assert!(args.no_mdns);
        assert_eq!(
            args.bootstrap,
            vec!["http://file-a:3000", "http://file-b:3000"]
        );
    }

    #[test]
    fn env_sets_switches_lists_and_the_config_file() {
        let (_dir, path) = write_config("network: filenet\n");
        let args = run(
            &["run"],
            &[
                ("DIG_CONFIG", path.as_str()),
                ("DIG_NO_DHT", "true"),
                ("DIG_NO_MDNS", "0"),
                ("DIG_BOOTSTRAP", "http://a:3000, http://b:3000"),
            ],
        )
        .unwrap();
        assert_eq!(args.network, "filenet");
        assert!(args.no_dht);
        assert!(!args.no_mdns);
        assert_eq!(args.bootstrap, vec!["http://a:3000", "http://b:3000"]);
    }

    #[test]
    fn autonat_is_turned_off_by_flag_env_or_file() {
        assert!(run(&["run", "--no-autonat"], &[]).unwrap().no_autonat);
        assert!(
            run(&["run"], &[("DIG_NO_AUTONAT", "true")])
                .unwrap()
                .no_autonat
        );
        let (_dir, path) = write_config("no-autonat: true\n");
        assert!(run(&["run", "--config", &path], &[]).unwrap().no_autonat);
        let (_dir, path) = write_config("no-autonat: sometimes\n");
        let error = run(&["run", "--config", &path], &[]).unwrap_err();
        assert!(error.to_string().contains("no-autonat"), "{error}");
    }

    #[test]
    fn a_repeated_flag_replaces_the_env_and_file_lists() {
        let (_dir, path) = write_config("listen: [/ip4/127.0.0.1/tcp/1]\n");
        let args = run(
            &["run", "--config", &path, "--listen", "/ip4/127.0.0.1/tcp/2"],
            &[],
        )
        .unwrap();
        assert_eq!(
            args.listen,
            vec!["/ip4/127.0.0.1/tcp/2".parse::<Multiaddr>().unwrap()]
        );
    }

    #[test]
    fn bad_values_name_the_option_and_where_it_came_from() {
        let error = run(&["run", "--api-listen", "nonsense"], &[]).unwrap_err();
        assert!(error.to_string().contains("--api-listen"), "{error}");

        let error = run(&["run"], &[("DIG_API_LISTEN", "nonsense")]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("DIG_API_LISTEN") && text.contains("--api-listen"),
            "{text}"
        );

        let error = run(&["run"], &[("DIG_NO_MDNS", "maybe")]).unwrap_err();
        assert!(error.to_string().contains("DIG_NO_MDNS"), "{error}");

        let (_dir, path) = write_config("inventory-interval: soon\n");
        let error = run(&["run", "--config", &path], &[]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&path) && text.contains("inventory-interval"),
            "{text}"
        );

        let (_dir, path) = write_config("no-such-option: 1\n");
        let text = run(&["run", "--config", &path], &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(&path) && text.contains("no-such-option"),
            "{text}"
        );

        let (_dir, path) = write_config("allow-loopback: yes please\n");
        let text = run(&["run", "--config", &path], &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("allow-loopback") && text.contains("true or false"),
            "{text}"
        );

        let (_dir, path) = write_config("- just\n- a list\n");
        let text = run(&["run", "--config", &path], &[])
            .unwrap_err()
            .to_string();
        assert!(text.contains(&path) && text.contains("mapping"), "{text}");

        let text = run(&["run", "--config", "/nonexistent/node.yaml"], &[])
            .unwrap_err()
            .to_string();
        assert!(text.contains("/nonexistent/node.yaml"), "{text}");
    }

    #[test]
    fn a_dnsaddr_bootstrap_is_accepted_beside_registry_urls() {
        let args = run(
            &[
                "run",
                "--bootstrap",
                "http://registry:3000",
                "--bootstrap",
                "/dnsaddr/bootstrap.dig.example.com",
                "--nameserver",
                "127.0.0.1:5353",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(args.registry_urls(), ["http://registry:3000"]);
        assert_eq!(args.dnsaddr_hosts(), ["bootstrap.dig.example.com"]);
        assert_eq!(args.nameserver, Some("127.0.0.1:5353".parse().unwrap()));
        let (_dir, path) = write_config("bootstrap: /dnsaddr/b.example.com\n");
        let args = run(&["run", "--config", &path], &[]).unwrap();
        assert_eq!(args.dnsaddr_hosts(), ["b.example.com"]);
        let error = run(&["run", "--bootstrap", "/dns4/b.example.com/tcp/1"], &[]).unwrap_err();
        assert!(error.to_string().contains("/dnsaddr/<host>"), "{error}");
    }

    #[test]
    fn network_ids_and_urls_are_checked() {
        assert!(run(&["run", "--network", "bad net"], &[]).is_err());
        assert!(run(&["run", "--network", "dig-test-1"], &[]).is_ok());
        // The ids accepted before the one rule (docs/DESIGN.md §9) that it refuses now.
        for old in ["dig-test_1.a", "Mainnet", "net-", &"a".repeat(64)] {
            let text = run(&["run", "--network", old], &[])
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("--network") && text.contains("is invalid"),
                "{text}"
            );
        }
        assert!(run(&["run", "--bootstrap", "ftp://x"], &[]).is_err());
        let args = run(&["run", "--bootstrap", "http://registry:3000/"], &[]).unwrap();
        assert_eq!(args.bootstrap, vec!["http://registry:3000"]);
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_byte_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_byte_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_byte_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_byte_size("1.5KiB").unwrap(), 1536);
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn writers_and_the_write_policy_come_from_flags_env_and_file() {
        let a = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let b = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let args = run(&["run"], &[]).unwrap();
        assert_eq!(args.write_policy, WritePolicy::Owner);
        assert!(args.writer.is_empty());
        let args = run(
            &[
                "run",
                "--writer",
                &a.to_base58(),
                "--writer",
                &b.to_base58(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(args.writer, vec![a, b]);
        let both = format!("{a},{b}");
        let args = run(&["run"], &[("DIG_WRITERS", both.as_str())]).unwrap();
        assert_eq!(args.writer, vec![a, b]);
        let args = run(&["run"], &[("DIG_WRITER", a.to_base58().as_str())]).unwrap();
        assert_eq!(args.writer, vec![a]);
        let (_dir, path) = write_config(&format!("writers: [{a}]\nwrite-policy: writers\n"));
        let args = run(&["run", "--config", &path], &[]).unwrap();
        assert_eq!(args.writer, vec![a]);
        assert_eq!(args.write_policy, WritePolicy::Writers);
        let error = run(&["run", "--writer", "nonsense"], &[]).unwrap_err();
        assert!(error.to_string().contains("peer id"), "{error}");
        let hashed = PeerId::random().to_base58();
        assert!(
            run(&["run", "--writer", &hashed], &[]).is_err(),
            "no inline key"
        );
        let error = run(&["run", "--write-policy", "anyone"], &[]).unwrap_err();
        assert!(
            error.to_string().contains("owner, writers or open"),
            "{error}"
        );
    }

    #[test]
    fn pruning_and_index_bounds_have_defaults_and_flags() {
        let args = run(&["run"], &[]).unwrap();
        assert_eq!(args.max_stores, 1_000_000);
        assert_eq!(args.tombstone_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(args.max_conflicts, 1_000);
        let args = run(
            &["run", "--conflict-ttl", "1h", "--max-tombstones", "5"],
            &[("DIG_MAX_STORES", "10")],
        )
        .unwrap();
        assert_eq!(args.conflict_ttl, Duration::from_secs(3600));
        assert_eq!(args.max_tombstones, 5);
        assert_eq!(args.max_stores, 10);
    }

    #[test]
    fn target_peers_defaults_to_24_and_is_bounded() {
        assert_eq!(run(&["run"], &[]).unwrap().target_peers, 24);
        assert_eq!(
            run(&["run", "--target-peers", "3"], &[])
                .unwrap()
                .target_peers,
            3
        );
        assert_eq!(
            run(&["run"], &[("DIG_TARGET_PEERS", "40")])
                .unwrap()
                .target_peers,
            40
        );
        assert!(run(&["run", "--target-peers", "0"], &[]).is_err());
        assert!(run(&["run", "--target-peers", "10001"], &[]).is_err());
    }

    #[test]
    fn every_run_option_has_help_text() {
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        for arg in run.get_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "--{:?} has no help",
                arg.get_long()
            );
        }
        Cli::command().debug_assert();
    }
}
