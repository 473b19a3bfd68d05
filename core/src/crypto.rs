//! The process-wide TLS crypto provider.

/// Installs ring as the process-wide rustls crypto provider, unless one is installed already.
/// kube, reqwest, QUIC and axum-server can each compile a rustls back end in (ring or aws-lc-rs);
/// with two of them and none installed, the first TLS use panics. Call it first thing in `main`
/// and before building a TLS client or server in tests.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_keeps_one_provider() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
