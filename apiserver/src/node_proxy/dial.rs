//! Dialing agents: mutual TLS where the API server presents its own certificate (issued by the
//! cluster CA, with the serverAuth usage agents require) and trusts exactly the certificate
//! whose SHA-256 the agent published on its Node (agents serve self-signed certificates, so
//! there is no CA to verify them against: the fingerprint, written through the API by the agent
//! itself, is the trust anchor). Channels are cached per address and fingerprint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rkube_store::tls::{CaBundle, CertKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials agents as this API server.
pub struct AgentDialer {
    /// The certificate chain (leaf, CA) and key presented to agents.
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    channels: Mutex<HashMap<(String, String), Channel>>,
}

impl AgentDialer {
    /// A dialer presenting `cert` (this server's certificate) followed by the CA's.
    pub fn new(ca: &CaBundle, cert: &CertKey) -> Result<AgentDialer> {
        let der = |pem: &str, what: &str| {
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| Error::Internal(format!("{what}: {e}")))
        };
        let chain = vec![
            der(&cert.cert_pem, "server certificate")?,
            der(&ca.cert_pem, "ca certificate")?,
        ];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
            .map_err(|e| Error::Internal(format!("server private key: {e}")))?;
        Ok(AgentDialer {
            chain,
            key: Arc::new(key),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// A channel to the agent at `address` (`host:port`) that serves the certificate with
    /// SHA-256 `cert_sha256` (hex). Connects lazily.
    pub fn channel(&self, address: &str, cert_sha256: &str) -> Result<Channel> {
        let key = (address.to_string(), cert_sha256.to_ascii_lowercase());
        let mut channels = self.channels.lock().expect("agent channels lock");
        if let Some(ch) = channels.get(&key) {
            return Ok(ch.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("agent TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert {
                sha256: key.1.clone(),
                provider,
            }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| Error::Internal(format!("agent TLS client certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let dial = tower::service_fn(move |uri: tonic::codegen::http::Uri| {
            let connector = connector.clone();
            async move {
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port = uri.port_u16().unwrap_or(443);
                let connect = async {
                    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                    let _ = tcp.set_nodelay(true);
                    let name =
                        ServerName::try_from("rkube-agent").map_err(std::io::Error::other)?;
                    connector.connect(name, tcp).await
                };
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                    })??;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        let ch = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::Internal(format!("bad agent address {address:?}: {e}")))?
            .connect_with_connector_lazy(dial);
        channels.insert(key, ch.clone());
        Ok(ch)
    }
}

/// Trusts exactly one certificate, by its SHA-256, and checks the handshake signatures.
#[derive(Debug)]
struct PinnedCert {
    sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if hex::encode(sha2::Sha256::digest(end_entity.as_ref())) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the agent's certificate does not match the fingerprint published on its Node"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
