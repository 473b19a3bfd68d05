//! HTTP client of the registry, used by dig-sidecar, dig-operator, the registry's federation and
//! the tests.

use std::time::Duration;

use libp2p_identity::Keypair;
use serde::de::DeserializeOwned;

use crate::api::{
    ErrorBody, HealthResponse, PeersQuery, PeersResponse, RecordsQuery, RecordsResponse,
    RegisterResponse, StatsResponse, StorePeersQuery, TopologyResponse, UnregisterResponse,
};
use crate::record::{RecordError, SignedPeerRecord, UnregisterRequest};

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("registry URL {url:?} is invalid: {detail}")]
    InvalidUrl { url: String, detail: String },
    #[error("registry {url} unreachable: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {url} refused the request with HTTP {status} {error}: {detail}")]
    Rejected {
        url: String,
        status: u16,
        error: String,
        detail: String,
        field: Option<String>,
    },
    #[error("registry {url} rate-limited the request; retry after {retry_after:?}")]
    RateLimited {
        url: String,
        retry_after: Option<Duration>,
    },
    #[error("registry {url} answered with more than the {limit} bytes this client reads")]
    ResponseTooLarge { url: String, limit: u64 },
    #[error("registry {url} answered HTTP {status} with an unexpected body: {detail}")]
    BadResponse {
        url: String,
        status: u16,
        detail: String,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Builder of a [`RegistryClient`] with non-default timeouts or trust roots.
#[derive(Debug)]
pub struct RegistryClientBuilder {
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: u64,
    root_certificates_pem: Vec<Vec<u8>>,
    address: Option<std::net::SocketAddr>,
}

/// Largest answer a client reads unless told otherwise: far above any page a registry sends.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

impl RegistryClientBuilder {
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest answer read; a larger one is refused before it is all in memory.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Connects to `address` instead of what the URL's host name resolves to, keeping the name
    /// for TLS and the Host header: one replica of several behind one name.
    pub fn connect_to(mut self, address: std::net::SocketAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// Trusts an extra CA or self-signed certificate (PEM) for `https://` registries.
    pub fn root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.root_certificates_pem.push(pem.to_vec());
        self
    }

    pub fn build(self) -> Result<RegistryClient, ClientError> {
        let invalid = |detail: String| ClientError::InvalidUrl {
            url: self.base_url.clone(),
            detail,
        };
        let parsed = url::Url::parse(&self.base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("must not carry a query or fragment".to_owned()));
        }
        crate::crypto::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(concat!("dig-bootstrap-client/", env!("CARGO_PKG_VERSION")));
        for pem in &self.root_certificates_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| invalid(format!("root certificate is not PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        if let (Some(address), Some(host)) = (self.address, parsed.host_str()) {
            builder = builder.resolve(host, address);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(RegistryClient {
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            http,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// Client of one registry server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base_url: String,
    http: reqwest::Client,
    max_response_bytes: u64,
}

impl RegistryClient {
    /// A client with a 5 s connect and 15 s request timeout. `base_url` is `http://` or `https://`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::builder(base_url).build()
    }

    pub fn builder(base_url: &str) -> RegistryClientBuilder {
        RegistryClientBuilder {
            base_url: base_url.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            root_certificates_pem: Vec::new(),
            address: None,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers (or refreshes) a signed record.
    pub async fn register(
        &self,
        record: &SignedPeerRecord,
    ) -> Result<RegisterResponse, ClientError> {
        let url = format!("{}/register", self.base_url);
        let request = self.http.post(&url).json(record);
        self.send(&url, request).await
    }

    /// Signs and sends a removal of the keypair's own record.
    pub async fn unregister(&self, keypair: &Keypair, network_id: &str) -> Result<(), ClientError> {
        let signed = UnregisterRequest::new_signed(keypair, network_id)?;
        let url = format!("{}/unregister", self.base_url);
        let request = self.http.post(&url).json(&signed);
        let _: UnregisterResponse = self.send(&url, request).await?;
        Ok(())
    }

    pub async fn peers(&self, query: &PeersQuery) -> Result<PeersResponse, ClientError> {
        let url = format!("{}/peers", self.base_url);
        let request = self.http.get(&url).query(&query.to_pairs());
        self.send(&url, request).await
    }

    pub async fn peers_with_store(&self, store: &str) -> Result<PeersResponse, ClientError> {
        self.peers_with_store_query(store, &StorePeersQuery::default())
            .await
    }

    pub async fn peers_with_store_query(
        &self,
        store: &str,
        query: &StorePeersQuery,
    ) -> Result<PeersResponse, ClientError> {
        let mut parsed = url::Url::parse(&self.base_url).map_err(|e| ClientError::InvalidUrl {
            url: self.base_url.clone(),
            detail: e.to_string(),
        })?;
        // Path segments are percent-encoded here, so a name like `../x` stays one segment.
        parsed
            .path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.base_url.clone(),
                detail: "cannot be a base URL".to_owned(),
            })?
            .pop_if_empty()
            .extend(["peers", "store", store]);
        let url = parsed.to_string();
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(network) = &query.network {
            pairs.push(("network", network.clone()));
        }
        let request = self.http.get(&url).query(&pairs);
        self.send(&url, request).await
    }

    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        self.get("stats").await
    }

    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.get("health").await
    }

    pub async fn topology(&self) -> Result<TopologyResponse, ClientError> {
        self.get("topology").await
    }

    /// One page of the federation feed.
    pub async fn records(&self, query: &RecordsQuery) -> Result<RecordsResponse, ClientError> {
        let url = format!("{}/records", self.base_url);
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(after) = query.after {
            pairs.push(("after", after.to_string()));
        }
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        let request = self.http.get(&url).query(&pairs);
        self.send(&url, request).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}/{path}", self.base_url);
        let request = self.http.get(&url);
        self.send(&url, request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.to_owned(),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(ClientError::RateLimited {
                url: url.to_owned(),
                retry_after,
            });
        }
        let body = self.read_capped(url, &mut response).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
                url: url.to_owned(),
                status: status.as_u16(),
                detail: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => Err(ClientError::Rejected {
                url: url.to_owned(),
                status: status.as_u16(),
                error: error.error,
                detail: error.detail,
                field: error.field,
            }),
            Err(_) => Err(ClientError::BadResponse {
                url: url.to_owned(),
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }

    /// The body of `response`, refused as soon as it is known to exceed the limit: by its
    /// Content-Length, or while it arrives.
    async fn read_capped(
        &self,
        url: &str,
        response: &mut reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        let limit = self.max_response_bytes;
        let too_large = || ClientError::ResponseTooLarge {
            url: url.to_owned(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_owned(),
                source,
            })?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_base_urls() {
        for bad in ["ftp://x", "not a url", "http://h/?q=1", "unix:/tmp/x"] {
            assert!(
                matches!(
                    RegistryClient::new(bad),
                    Err(ClientError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        let client = RegistryClient::new("https://bootstrap.example:3000/").unwrap();
        assert_eq!(client.base_url(), "https://bootstrap.example:3000");
    }
}
