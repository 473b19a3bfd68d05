//! TLS 1.3 for the node's TCP connections: the libp2p TLS handshake (`/tls/1.0.0`, a self-signed
//! certificate carrying the node's identity key) with the cipher suite chosen for bulk data.
//!
//! libp2p-tls 0.7 offers ChaCha20-Poly1305 first, and the server follows the client's order, so
//! two libp2p-tls nodes always pick it. On a CPU with AES instructions AES-128-GCM costs a
//! fraction of that: `bench-transport` moves 1 GiB for about half the CPU of Noise. This config
//! offers AES-GCM first where the CPU has AES and carry-less multiply instructions, and
//! ChaCha20-Poly1305 first elsewhere (software AES is slower than ChaCha). It reuses libp2p-tls's
//! certificate code, so it speaks the same handshake: libp2p-tls peers and older nodes (which
//! negotiate Noise instead) still connect.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use futures::{AsyncRead, AsyncWrite, FutureExt, future::BoxFuture};
use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use libp2p::{
    PeerId,
    core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
    identity::Keypair,
    tls::certificate,
};
use rustls::{
    CertificateError, CommonState, DigitallySignedStruct, DistinguishedName, OtherError,
    SignatureScheme, SupportedCipherSuite,
    client::{
        ResolvesClientCert,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{
        CryptoProvider,
        aws_lc_rs::{
            self,
            cipher_suite::{
                TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
            },
        },
    },
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::{
        ClientHello, ResolvesServerCert,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};

const PROTOCOL_NAME: &str = "/tls/1.0.0";
/// The ALPN token the libp2p TLS spec requires.
const LIBP2P_ALPN: &[u8] = b"libp2p";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the node's libp2p TLS certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    #[error("loading the libp2p TLS certificate key: {0}")]
    Key(rustls::Error),
    #[error("building the TLS 1.3 configuration: {0}")]
    Config(rustls::Error),
    #[error("TLS handshake as {role}: {source}")]
    Handshake {
        role: &'static str,
        source: std::io::Error,
    },
    #[error("the peer's TLS certificate: {0}")]
    PeerCertificate(#[from] certificate::ParseError),
    #[error("the peer presented {0} certificates; the libp2p TLS handshake takes exactly one")]
    CertificateCount(usize),
}

/// The security upgrade of the node's TCP connections (see the module docs).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl TlsConfig {
    pub fn new(keypair: &Keypair) -> Result<Self, TlsError> {
        let (certificate, key) = certificate::generate(keypair)?;
        let certified = Arc::new(CertifiedKey::new(
            vec![certificate],
            aws_lc_rs::sign::any_ecdsa_type(&key).map_err(TlsError::Key)?,
        ));
        let provider = Arc::new(CryptoProvider {
            cipher_suites: preferred_cipher_suites(cpu_has_fast_aes()),
            ..aws_lc_rs::default_provider()
        });
        let versions = &[&rustls::version::TLS13];
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Libp2pCertificateVerifier))
            .with_client_cert_resolver(Arc::new(OwnCertificate(certified.clone())));
        client.alpn_protocols = vec![LIBP2P_ALPN.to_vec()];
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(Arc::new(Libp2pCertificateVerifier))
            .with_cert_resolver(Arc::new(OwnCertificate(certified)));
        server.alpn_protocols = vec![LIBP2P_ALPN.to_vec()];
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// AES-GCM first where the CPU does it in hardware; libp2p-tls's suites either way.
fn preferred_cipher_suites(fast_aes: bool) -> Vec<SupportedCipherSuite> {
    if fast_aes {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    }
}

fn cpu_has_fast_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl UpgradeInfo for TlsConfig {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL_NAME)
    }
}

impl<C> InboundConnectionUpgrade<C> for TlsConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream = TlsAcceptor::from(self.server)
                .accept(socket)
                .await
                .map_err(|source| TlsError::Handshake {
                    role: "server",
                    source,
                })?;
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for TlsConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec forbids a server name: an unspecified address sends no SNI.
            let no_name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = TlsConnector::from(self.client)
                .connect(no_name, socket)
                .await
                .map_err(|source| TlsError::Handshake {
                    role: "client",
                    source,
                })?;
            // The swarm compares this with the peer a dial asked for.
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

/// The peer ID in the one certificate the (already verified) handshake accepted.
fn peer_of(state: &CommonState) -> Result<PeerId, TlsError> {
    match state.peer_certificates() {
        Some([only]) => Ok(certificate::parse(only)?.peer_id()),
        other => Err(TlsError::CertificateCount(other.map_or(0, <[_]>::len))),
    }
}

/// The node's certificate, for every handshake.
#[derive(Debug)]
struct OwnCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCertificate {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for OwnCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Accepts exactly one self-signed certificate whose libp2p extension is signed by the identity
/// key it names (`certificate::parse` checks both), and handshake signatures made with the
/// certificate's key. Which peer that must be is the swarm's check, against the dialled peer ID.
#[derive(Debug)]
struct Libp2pCertificateVerifier;

impl Libp2pCertificateVerifier {
    fn verify_single(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(format!(
                "the libp2p TLS handshake takes exactly one certificate, got {}",
                intermediates.len() + 1
            )));
        }
        certificate::parse(end_entity).map_err(invalid_certificate)?;
        Ok(())
    }

    fn verify_handshake_signature(
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::parse(certificate)
            .map_err(invalid_certificate)?
            .verify_signature(signed.scheme, message, signed.signature())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
        Ok(HandshakeSignatureValid::assertion())
    }

    /// The schemes libp2p-tls verifies, elliptic curves first.
    fn schemes() -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ]
    }
}

fn invalid_certificate(error: certificate::ParseError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// Only TLS 1.3 is configured, so a TLS 1.2 signature never reaches a verifier.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General(
        "TLS 1.2 is not part of the libp2p TLS handshake".into(),
    ))
}

impl ServerCertVerifier for Libp2pCertificateVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::verify_single(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_handshake_signature(message, certificate, signed)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::schemes()
    }
}

impl ClientCertVerifier for Libp2pCertificateVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::verify_single(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_handshake_signature(message, certificate, signed)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::schemes()
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

    use super::*;

    type Pipe = Compat<tokio::io::DuplexStream>;

    #[derive(Clone, Copy, Debug)]
    enum Side {
        Ours,
        /// libp2p-tls 0.7, as other libp2p peers run it.
        Stock,
    }

    async fn dial(side: Side, keypair: &Keypair, socket: Pipe) -> (PeerId, TlsStream<Pipe>) {
        match side {
            Side::Ours => TlsConfig::new(keypair)
                .unwrap()
                .upgrade_outbound(socket, PROTOCOL_NAME)
                .await
                .unwrap(),
            Side::Stock => libp2p::tls::Config::new(keypair)
                .unwrap()
                .upgrade_outbound(socket, PROTOCOL_NAME)
                .await
                .unwrap(),
        }
    }

    async fn accept(side: Side, keypair: &Keypair, socket: Pipe) -> (PeerId, TlsStream<Pipe>) {
        match side {
            Side::Ours => TlsConfig::new(keypair)
                .unwrap()
                .upgrade_inbound(socket, PROTOCOL_NAME)
                .await
                .unwrap(),
            Side::Stock => libp2p::tls::Config::new(keypair)
                .unwrap()
                .upgrade_inbound(socket, PROTOCOL_NAME)
                .await
                .unwrap(),
        }
    }

    fn suite(stream: &TlsStream<Pipe>) -> &'static str {
        stream
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("none")
    }

    /// A handshake between `dialer` and `listener` over an in-memory pipe, then a message each
    /// way. Checks that each end learnt the other's peer ID; returns the suites both agreed on.
    async fn handshake(dialer: Side, listener: Side) -> [&'static str; 2] {
        let (dialer_key, listener_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (dialer_end, listener_end) = tokio::io::duplex(64 * 1024);
        let ((listener_seen, mut dialed), (dialer_seen, mut accepted)) = tokio::join!(
            dial(dialer, &dialer_key, dialer_end.compat()),
            accept(listener, &listener_key, listener_end.compat()),
        );
        let case = format!("{dialer:?} dialing {listener:?}");
        assert_eq!(listener_seen, listener_key.public().to_peer_id(), "{case}");
        assert_eq!(dialer_seen, dialer_key.public().to_peer_id(), "{case}");
        dialed.write_all(b"hello").await.unwrap();
        dialed.flush().await.unwrap();
        let mut hello = [0u8; 5];
        accepted.read_exact(&mut hello).await.unwrap();
        accepted.write_all(b"world").await.unwrap();
        accepted.flush().await.unwrap();
        let mut world = [0u8; 5];
        dialed.read_exact(&mut world).await.unwrap();
        assert_eq!((&hello, &world), (b"hello", b"world"), "{case}");
        [suite(&dialed), suite(&accepted)]
    }

    #[tokio::test]
    async fn both_ends_learn_each_others_peer_id_with_stock_libp2p_tls_either_way() {
        for (dialer, listener) in [
            (Side::Ours, Side::Ours),
            (Side::Ours, Side::Stock),
            (Side::Stock, Side::Ours),
        ] {
            handshake(dialer, listener).await;
        }
    }

    #[tokio::test]
    async fn our_dialer_gets_aes_gcm_on_a_cpu_with_aes_even_from_a_stock_listener() {
        let expected = if cpu_has_fast_aes() {
            "TLS13_AES_128_GCM_SHA256"
        } else {
            "TLS13_CHACHA20_POLY1305_SHA256"
        };
        for listener in [Side::Ours, Side::Stock] {
            let suites = handshake(Side::Ours, listener).await;
            assert_eq!(suites, [expected; 2], "dialing {listener:?}");
        }
        // A stock dialer asks for ChaCha20-Poly1305 first, and the server follows its order.
        let suites = handshake(Side::Stock, Side::Ours).await;
        assert_eq!(suites, ["TLS13_CHACHA20_POLY1305_SHA256"; 2]);
    }

    #[tokio::test]
    async fn a_certificate_without_the_libp2p_extension_is_refused() {
        // A plain self-signed certificate: no identity key, so no peer ID to prove.
        let plain = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(plain.key_pair.serialize_der().into());
        let mut client =
            rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Libp2pCertificateVerifier))
                .with_client_auth_cert(vec![plain.cert.der().clone()], key)
                .unwrap();
        client.alpn_protocols = vec![LIBP2P_ALPN.to_vec()];
        let (dialer_end, listener_end) = tokio::io::duplex(64 * 1024);
        let no_name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
        let ours = TlsConfig::new(&Keypair::generate_ed25519()).unwrap();
        let (_, accepted) = tokio::join!(
            TlsConnector::from(Arc::new(client)).connect(no_name, dialer_end.compat()),
            ours.upgrade_inbound(listener_end.compat(), PROTOCOL_NAME),
        );
        let Err(error) = accepted else {
            panic!("a certificate without a peer ID was accepted");
        };
        assert!(
            matches!(error, TlsError::Handshake { role: "server", .. }),
            "{error}"
        );
    }

    #[test]
    fn aes_comes_first_only_with_aes_instructions() {
        assert_eq!(preferred_cipher_suites(true)[0], TLS13_AES_128_GCM_SHA256);
        assert_eq!(
            preferred_cipher_suites(false)[0],
            TLS13_CHACHA20_POLY1305_SHA256
        );
    }
}
