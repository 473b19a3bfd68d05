//! Certificates made for the run: the servers' certificate (written to files for their
//! `--tls-cert`/`-cert` flags), client certificates that are Syncthing device identities, and
//! the rustls client settings that trust the servers' certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::load::TLS_HOST;

/// A self-signed certificate and its key.
pub struct Certificate {
    pub der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

/// PEM files of a certificate, for a server's command line.
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    /// A fresh ECDSA P-256 certificate for `names`.
    pub fn generate(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names.clone())
            .unwrap_or_else(|e| panic!("making a certificate for {names:?}: {e}"));
        Self {
            der: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()),
            cert_pem: certified.cert.pem(),
            key_pem: certified.key_pair.serialize_pem(),
        }
    }

    /// The servers' certificate: for `localhost` and 127.0.0.1.
    pub fn for_servers() -> Self {
        Self::generate(&[TLS_HOST, "127.0.0.1"])
    }

    pub fn write_pem(&self, folder: &Path) -> PemFiles {
        let files = PemFiles {
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
        };
        for (path, text) in [(&files.cert, &self.cert_pem), (&files.key, &self.key_pem)] {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        files
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Client settings that trust only the certificate `server`, and present `client` when given.
pub fn client_config(
    server: &CertificateDer<'static>,
    client: Option<&Certificate>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(server.clone())
        .expect("the bench's server certificate is a valid trust anchor");
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(client) => builder
            .with_client_auth_cert(vec![client.der.clone()], client.key_der())
            .expect("the bench's client certificate and key match"),
    };
    Arc::new(config)
}
