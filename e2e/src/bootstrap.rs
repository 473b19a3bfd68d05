//! A real `dig-bootstrap` process on a free loopback port, for tests and the local network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dig_bootstrap::RegistryClient;

use crate::process::{ProcessSpec, TestProcess, free_loopback_addr, wait_for_http_ok_with};

/// How long a starting server gets to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with a fresh port when a start fails (the free port may be taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// Serve HTTPS with these PEM files; `ca_pem` is what clients must trust.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: Vec<u8>,
}

impl TlsFiles {
    /// A self-signed certificate for `localhost`, written as `tls.crt` and `tls.key` in `dir`.
    pub fn self_signed_localhost(dir: &std::path::Path) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        let cert_pem = certified.cert.pem();
        std::fs::write(&cert, &cert_pem)?;
        std::fs::write(&key, certified.key_pair.serialize_pem())?;
        Ok(Self {
            cert,
            key,
            ca_pem: cert_pem.into_bytes(),
        })
    }
}

/// A running `dig-bootstrap`, killed when dropped.
pub struct BootstrapServer {
    pub process: TestProcess,
    pub address: SocketAddr,
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub base_url: String,
    ca_pem: Option<Vec<u8>>,
    /// One keep-alive client for the helpers below, trusting the server's certificate.
    http: reqwest::Client,
}

impl BootstrapServer {
    /// Starts `dig-bootstrap --listen 127.0.0.1:<free port> <args>` and waits for `/health`.
    pub async fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(args, None).await
    }

    /// Like [`Self::start`], serving HTTPS when `tls` is given (the certificate must be valid
    /// for `localhost`).
    pub async fn start_with(args: &[&str], tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        // reqwest is built without a default rustls provider: install one before any client.
        dig_core::crypto::install_crypto_provider();
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let address = free_loopback_addr()?;
            let mut spec = ProcessSpec::workspace_binary("dig-bootstrap")?
                .name(format!("dig-bootstrap@{address}"))
                .args(["--listen".to_owned(), address.to_string()])
                .args(args.iter().map(|a| a.to_string()));
            if let Some(tls) = tls {
                spec = spec.args([
                    "--tls-cert".to_owned(),
                    tls.cert.display().to_string(),
                    "--tls-key".to_owned(),
                    tls.key.display().to_string(),
                ]);
            }
            let mut process = spec.spawn()?;
            let base_url = match tls {
                Some(_) => format!("https://localhost:{}", address.port()),
                None => format!("http://{address}"),
            };
            let http = http_client(tls.map(|tls| tls.ca_pem.as_slice()))?;
            match wait_for_http_ok_with(&http, &format!("{base_url}/health"), START_TIMEOUT).await {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        address,
                        base_url,
                        ca_pem: tls.map(|t| t.ca_pem.clone()),
                        http,
                    });
                }
                Err(e) => {
                    let exited = !process.is_running();
                    last_error = Some(anyhow::anyhow!(
                        "{e}; process {}; output:\n{}",
                        if exited { "exited" } else { "still running" },
                        process.output()
                    ));
                    if !exited {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("dig-bootstrap did not start")))
    }

    /// A registry client for this server (trusting its certificate when it serves HTTPS).
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        let mut builder = RegistryClient::builder(&self.base_url);
        if let Some(pem) = &self.ca_pem {
            builder = builder.root_certificate_pem(pem);
        }
        Ok(builder.build()?)
    }

    /// A plain HTTP client trusting this server's certificate, for raw requests.
    pub fn http(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.http.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET path`, its JSON body decoded; an error naming the path for any status but 200.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.http.get(self.url(path)).send().await?;
        let status = response.status();
        anyhow::ensure!(status == 200, "GET {path} answered {status}");
        response
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("GET {path}: decoding the JSON body: {e}"))
    }

    /// The server's `/metrics` text now.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// An HTTP client with a 10 s timeout that trusts `ca_pem` when given.
fn http_client(ca_pem: Option<&[u8]>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(builder.build()?)
}

/// A signed record of `keypair` in `network_id` holding `stores` as (name, lamport), with one
/// loopback TCP address, stamped `timestamp_ms`.
pub fn signed_record(
    keypair: &libp2p_identity::Keypair,
    network_id: &str,
    stores: &[(&str, u64)],
    timestamp_ms: u64,
) -> dig_bootstrap::SignedPeerRecord {
    record(keypair, network_id, stores, timestamp_ms)
        .sign(keypair)
        .expect("ed25519 signing does not fail")
}

/// The unsigned record [`signed_record`] signs, for tests that alter it first.
pub fn record(
    keypair: &libp2p_identity::Keypair,
    network_id: &str,
    stores: &[(&str, u64)],
    timestamp_ms: u64,
) -> dig_bootstrap::PeerRecord {
    dig_bootstrap::PeerRecord {
        peer_id: keypair.public().to_peer_id().to_base58(),
        network_id: network_id.to_owned(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".to_owned()],
        stores: stores
            .iter()
            .map(|(name, lamport)| dig_bootstrap::StoreEntry {
                name: (*name).to_owned(),
                size: 1024,
                hash: format!("{lamport:064x}"),
                lamport: *lamport,
            })
            .collect(),
        agent_version: "dig-e2e/0.1.0".to_owned(),
        timestamp_ms,
    }
}

/// The value of the first sample of `name` whose labels contain every one of `labels`
/// (each written `key="value"`), in Prometheus/OpenMetrics text.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
