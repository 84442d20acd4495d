//! The cluster's PKI and TLS plumbing: a self-signed CA, server and client certificates, the on-disk
//! TLS directory, join tokens that pin the CA, and rustls/tonic configurations for mutual TLS.
//!
//! Cluster servers are identified the way etcd identifies peers: by a certificate issued by the
//! cluster CA for [`SERVER_NAME`]. Clients are identified the way Kubernetes' x509 authenticator
//! does it: the certificate's CN is the user name and each O is a group.
//!
//! A node joining the cluster holds a [`JoinToken`] `rk1.<ca fingerprint>.<secret>`. Servers present
//! their leaf *and* the CA certificate, so the joiner can fetch the chain without trusting it
//! ([`fetch_presented_chain`]), keep the certificate whose fingerprint the token pins, and only
//! reveal the secret over a connection verified against that CA.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SigningKey,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Everything that can go wrong with certificates, keys, the TLS directory and join tokens.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file of the TLS directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate, key or name is malformed or does not fit the others.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// A join token does not have an accepted form.
    #[error("invalid join token: {0}")]
    Token(String),
    /// Generating a key or signing a certificate failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// rustls refused the configuration built from our certificates.
    #[error("cannot build tls configuration: {0}")]
    Config(String),
    /// The remote server could not be reached or the handshake failed; the caller may retry.
    #[error("cannot fetch the certificate chain from {addr}: {reason}")]
    Unavailable { addr: String, reason: String },
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The DNS name every server certificate carries and every client verifies against
/// (cluster servers are identified by "issued by our CA for a server", like etcd peers).
pub const SERVER_NAME: &str = "rkube-server";

/// The cluster's PKI as PEM strings.
#[derive(Clone, Debug)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate issued by the cluster CA, with its private key, as PEM strings.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_LIFETIME: Duration = CA_LIFETIME;
const CLIENT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start an hour in the past so a node whose clock lags still accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl CaBundle {
    /// A new self-signed CA, CN "rkube-ca <cluster_id as 16 hex digits>", valid 10 years, ECDSA P-256.
    pub fn generate(cluster_id: u64) -> Result<CaBundle> {
        let key = generate_key("ca key")?;
        let mut params = base_params(CA_LIFETIME);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rkube-ca {cluster_id:016x}"));
        // Path length 0: the CA signs leaves only, never intermediate CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "ca certificate",
                source,
            })?;
        Ok(CaBundle {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issue a server certificate (serverAuth + clientAuth EKU, since servers also dial peers)
    /// with SANs: SERVER_NAME, "localhost", 127.0.0.1, ::1, and each of `extra_sans`
    /// (each is an IP if it parses as one, else a DNS name; a "host:port" string has its port stripped).
    /// CN "rkube-server-<node_id>". Valid 10 years.
    pub fn issue_server(&self, node_id: u64, extra_sans: &[String]) -> Result<CertKey> {
        let mut sans = vec![
            dns_san(SERVER_NAME)?,
            dns_san("localhost")?,
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ];
        for extra in extra_sans {
            let san = parse_san(extra)?;
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        let mut params = base_params(SERVER_LIFETIME);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rkube-server-{node_id}"));
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = self.issuer()?;
        let key = generate_key("server key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| TlsError::Generate {
                what: "server certificate",
                source,
            })?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issue a client certificate (clientAuth EKU) with CN = user and O = each group (like Kubernetes'
    /// x509 authn: CN is the user name, O the groups). Valid 1 year.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertKey> {
        if user.is_empty() {
            return Err(invalid("client certificate user", "must not be empty"));
        }
        if groups.iter().any(|g| g.is_empty()) {
            return Err(invalid(
                "client certificate groups",
                "a group must not be empty",
            ));
        }
        let mut params = base_params(CLIENT_LIFETIME);
        params.distinguished_name.push(DnType::CommonName, user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = self.issuer()?;
        let key = generate_key("client key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| TlsError::Generate {
                what: "client certificate",
                source,
            })?;
        // rcgen's DistinguishedName holds one value per attribute type, but a user may belong to
        // several groups, so the subject is rewritten with one O per group and re-signed.
        let subject = encode_subject(user, groups);
        let der = replace_subject(cert.der(), &subject, issuer.key())?;
        Ok(CertKey {
            cert_pem: der_to_pem(&der),
            key_pem: key.serialize_pem(),
        })
    }

    /// sha256 of the CA certificate's DER, lower-case hex (64 chars).
    pub fn fingerprint(&self) -> Result<String> {
        pem_fingerprint(&self.cert_pem)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| invalid("ca private key", format!("expected a PEM private key: {e}")))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(|e| invalid("ca certificate", format!("expected a PEM certificate: {e}")))
    }
}

/// sha256 hex of the first certificate in a PEM string.
pub fn pem_fingerprint(cert_pem: &str) -> Result<String> {
    let der = first_cert(cert_pem, "certificate")?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// Files in a server's TLS directory: ca.pem, ca.key, server.pem, server.key (keys written with mode 0600).
#[derive(Clone, Debug)]
pub struct TlsDir {
    pub dir: PathBuf,
}

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";

impl TlsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TlsDir { dir: dir.into() }
    }

    /// Whether all four files are present.
    pub fn exists(&self) -> bool {
        [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
            .iter()
            .all(|name| self.dir.join(name).is_file())
    }

    /// Creates the directory and writes each file atomically (temporary file, fsync, rename),
    /// then fsyncs the directory so the renames survive a crash.
    pub fn save(&self, ca: &CaBundle, server: &CertKey) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| io_error("create tls directory", &self.dir, e))?;
        write_atomic(&self.dir.join(CA_CERT_FILE), &ca.cert_pem, false)?;
        write_atomic(&self.dir.join(CA_KEY_FILE), &ca.key_pem, true)?;
        write_atomic(&self.dir.join(SERVER_CERT_FILE), &server.cert_pem, false)?;
        write_atomic(&self.dir.join(SERVER_KEY_FILE), &server.key_pem, true)?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync tls directory", &self.dir, e))
    }

    /// Reads and checks the four files: each parses, and each key belongs to its certificate.
    pub fn load(&self) -> Result<(CaBundle, CertKey)> {
        let ca = CaBundle {
            cert_pem: self.read(CA_CERT_FILE, "read ca certificate")?,
            key_pem: self.read(CA_KEY_FILE, "read ca private key")?,
        };
        let server = CertKey {
            cert_pem: self.read(SERVER_CERT_FILE, "read server certificate")?,
            key_pem: self.read(SERVER_KEY_FILE, "read server private key")?,
        };
        self.check_pair(&ca.cert_pem, &ca.key_pem, CA_CERT_FILE, CA_KEY_FILE)?;
        self.check_pair(
            &server.cert_pem,
            &server.key_pem,
            SERVER_CERT_FILE,
            SERVER_KEY_FILE,
        )?;
        Ok((ca, server))
    }

    fn read(&self, name: &str, action: &'static str) -> Result<String> {
        let path = self.dir.join(name);
        fs::read_to_string(&path).map_err(|e| io_error(action, &path, e))
    }

    fn check_pair(
        &self,
        cert_pem: &str,
        key_pem: &str,
        cert_file: &str,
        key_file: &str,
    ) -> Result<()> {
        let cert_path = self.dir.join(cert_file);
        let key_path = self.dir.join(key_file);
        let cert = first_cert(cert_pem, &cert_path.display().to_string())?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            invalid(
                key_path.display().to_string(),
                format!("expected a PEM private key: {e}"),
            )
        })?;
        let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            invalid(
                cert_path.display().to_string(),
                format!("expected an x509 certificate: {e}"),
            )
        })?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                key_path.display().to_string(),
                format!("key does not belong to {}", cert_path.display()),
            ));
        }
        Ok(())
    }
}

/// The join token: "rk1.<ca fingerprint hex>.<secret>" — the CA fingerprint pins the cluster CA
/// (a joiner verifies the server before revealing the secret), the secret authorizes the join.
/// A bare secret (no "rk1." prefix) is also accepted: then the CA is trusted on first use and a
/// warning is logged by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: Option<String>,
    pub secret: String,
}

const TOKEN_PREFIX: &str = "rk1.";
const TOKEN_FORM: &str = "rk1.<64 hex digit ca fingerprint>.<secret>";

impl JoinToken {
    pub fn new(ca_fingerprint: String, secret: String) -> Self {
        JoinToken {
            ca_fingerprint: Some(ca_fingerprint),
            secret,
        }
    }

    /// 32 random bytes, hex.
    pub fn generate_secret() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// Trims whitespace; a leading "rk1." means a pinned CA fingerprint follows, anything else is a
    /// bare secret. Messages never include the secret.
    pub fn parse(s: &str) -> Result<JoinToken> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TlsError::Token(format!(
                "token is empty, expected {TOKEN_FORM}"
            )));
        }
        let Some(rest) = s.strip_prefix(TOKEN_PREFIX) else {
            check_secret(s)?;
            return Ok(JoinToken {
                ca_fingerprint: None,
                secret: s.to_string(),
            });
        };
        let Some((fingerprint, secret)) = rest.split_once('.') else {
            return Err(TlsError::Token(format!(
                "token has no secret after the ca fingerprint, expected {TOKEN_FORM}"
            )));
        };
        if fingerprint.len() != 64 {
            return Err(TlsError::Token(format!(
                "ca fingerprint has {} characters, expected 64 hex digits ({TOKEN_FORM})",
                fingerprint.len()
            )));
        }
        if let Some(c) = fingerprint.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(TlsError::Token(format!(
                "ca fingerprint contains {c:?}, expected only hex digits ({TOKEN_FORM})"
            )));
        }
        check_secret(secret)?;
        Ok(JoinToken::new(
            fingerprint.to_ascii_lowercase(),
            secret.to_string(),
        ))
    }

    /// Constant-time comparison of the secret. Both sides are hashed first so that neither the
    /// content nor the length of the real secret leaks through timing.
    pub fn secret_matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.secret.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        expected
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn check_secret(secret: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(TlsError::Token(format!(
            "secret is empty, expected {TOKEN_FORM}"
        )));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TlsError::Token(
            "secret contains whitespace or control characters".to_string(),
        ));
    }
    Ok(())
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_fingerprint {
            Some(fingerprint) => write!(f, "{TOKEN_PREFIX}{fingerprint}.{}", self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

impl FromStr for JoinToken {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self> {
        JoinToken::parse(s)
    }
}

/// Installs ring as the process-wide rustls crypto provider. Idempotent: a provider that is
/// already installed (by us or anyone else) is left in place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// tonic server TLS: our server identity, client certificates verified against the CA but optional at the
/// handshake (so the unauthenticated Join/GetCa RPCs work); each RPC handler checks the peer certificate itself.
/// The server presents its leaf followed by the CA certificate (see [`fetch_presented_chain`]).
pub fn server_tls_config(ca: &CaBundle, server: &CertKey) -> ServerTlsConfig {
    install_crypto_provider();
    ServerTlsConfig::new()
        .identity(Identity::from_pem(
            concat_pem(&server.cert_pem, &ca.cert_pem),
            &server.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&ca.cert_pem))
        .client_auth_optional(true)
}

/// The rustls equivalent of [`server_tls_config`] (same chain, optional client auth, ALPN "h2"),
/// for servers that terminate TLS themselves with tokio-rustls.
pub fn server_rustls_config(ca: &CaBundle, server: &CertKey) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(first_cert(&ca.cert_pem, "ca certificate")?)
        .map_err(|e| TlsError::Config(format!("ca certificate: {e}")))?;
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
    let chain = vec![
        first_cert(&server.cert_pem, "server certificate")?,
        first_cert(&ca.cert_pem, "ca certificate")?,
    ];
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| {
        invalid(
            "server private key",
            format!("expected a PEM private key: {e}"),
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// tonic client TLS: trust only the CA, verify the server as SERVER_NAME, present `identity` if given.
pub fn client_tls_config(ca_pem: &str, identity: Option<&CertKey>) -> ClientTlsConfig {
    install_crypto_provider();
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME);
    match identity {
        Some(id) => config.identity(Identity::from_pem(&id.cert_pem, &id.key_pem)),
        None => config,
    }
}

/// Fetch the certificate chain a TLS server at `addr` ("host:port") presents, WITHOUT trusting it.
/// Returns the chain as PEM certificates (leaf first). The handshake signature is still checked, but
/// the chain is not: the caller must pin one of the certificates (a join token's fingerprint) and
/// then make a new, verified connection with it as the only root before sending anything secret.
pub async fn fetch_presented_chain(addr: &str) -> Result<Vec<String>> {
    use tokio::io::AsyncWriteExt;

    let unavailable = |reason: String| TlsError::Unavailable {
        addr: addr.to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UntrustedChainVerifier { provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| TlsError::Config(format!("server name {SERVER_NAME}: {e}")))?;

    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| unavailable(format!("tls handshake failed: {e}")))
    };
    let mut tls = tokio::time::timeout(FETCH_TIMEOUT, handshake)
        .await
        .map_err(|_| unavailable(format!("timed out after {FETCH_TIMEOUT:?}")))??;
    let chain: Vec<String> = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|cert| der_to_pem(cert))
        .collect();
    // A polite close_notify; the chain is already in hand, so a slow peer must not hold us up.
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
    if chain.is_empty() {
        return Err(unavailable("server presented no certificate".to_string()));
    }
    Ok(chain)
}

/// Extract the CN of a DER certificate (for authn: the client user name) and its O values.
pub fn subject_of(cert_der: &[u8]) -> Result<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| {
        invalid(
            "certificate",
            format!("expected a DER x509 certificate: {e}"),
        )
    })?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| invalid("certificate subject", "has no common name (CN)"))?
        .as_str()
        .map_err(|e| invalid("certificate subject common name", e.to_string()))?
        .to_string();
    let orgs = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_string)
                .map_err(|e| invalid("certificate subject organization", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((cn, orgs))
}

/// Accepts any server certificate chain (the caller pins it afterwards) but still checks that the
/// server holds the key of the leaf it presents.
#[derive(Debug)]
struct UntrustedChainVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UntrustedChainVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn generate_key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

/// Parameters shared by every certificate we make: an empty subject, a random serial, and a
/// validity window from CLOCK_SKEW ago until `lifetime` from now.
fn base_params(lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // serial numbers are positive integers
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + since_epoch + lifetime;
    params.use_authority_key_identifier_extension = true;
    params
}

fn dns_san(name: &str) -> Result<SanType> {
    let ia5 = name
        .try_into()
        .map_err(|e| invalid(format!("server certificate name {name:?}"), format!("{e}")))?;
    Ok(SanType::DnsName(ia5))
}

/// An extra server SAN: an IP address, a DNS name, or either with a ":port" (IPv6 in brackets).
fn parse_san(raw: &str) -> Result<SanType> {
    let s = raw.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(SanType::IpAddress(addr.ip()));
    }
    let host = match s.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => s,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if host.is_empty() || DnsName::try_from(host).is_err() {
        return Err(invalid(
            format!("server certificate name {raw:?}"),
            "expected an ip address, a dns name, or either with :port",
        ));
    }
    dns_san(host)
}

fn first_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(what, format!("expected a PEM certificate: {e}")))
}

fn concat_pem(first: &str, second: &str) -> String {
    let mut out = first.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(second);
    out
}

fn der_to_pem(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            b64.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63]
            } else {
                b'='
            });
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        pem.extend(line.iter().map(|b| char::from(*b)));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn write_atomic(path: &Path, contents: &str, private: bool) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crash may have other permissions; start afresh so the mode applies.
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&tmp)
        .map_err(|e| io_error("create", &tmp, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("rename into place", path, e))
}

/// The subject `O=<group>... CN=<user>`, one RDN per attribute, values as UTF8String.
fn encode_subject(cn: &str, orgs: &[&str]) -> Vec<u8> {
    const OID_CN: [u8; 3] = [0x55, 0x04, 0x03];
    const OID_O: [u8; 3] = [0x55, 0x04, 0x0a];
    let rdn = |oid: &[u8], value: &str| {
        let atv = [
            der::encode(der::OID, oid),
            der::encode(der::UTF8_STRING, value.as_bytes()),
        ]
        .concat();
        der::encode(der::SET, &der::encode(der::SEQUENCE, &atv))
    };
    let mut rdns = Vec::new();
    for org in orgs {
        rdns.extend(rdn(&OID_O, org));
    }
    rdns.extend(rdn(&OID_CN, cn));
    der::encode(der::SEQUENCE, &rdns)
}

/// Re-signs `cert_der` (issued by `ca_key`) with its subject replaced by `subject`.
fn replace_subject(cert_der: &[u8], subject: &[u8], ca_key: &KeyPair) -> Result<Vec<u8>> {
    let malformed = || invalid("generated client certificate", "unexpected der layout");
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let cert = der::split(cert_der).ok_or_else(malformed)?;
    let tbs = der::split(cert.content).ok_or_else(malformed)?;
    let sig_alg = der::split(tbs.rest).ok_or_else(malformed)?;
    // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature, issuer, validity,
    //                               subject, subjectPublicKeyInfo, ... }
    let mut fields = Vec::new();
    let mut rest = tbs.content;
    while !rest.is_empty() {
        let field = der::split(rest).ok_or_else(malformed)?;
        rest = field.rest;
        fields.push(field);
    }
    if fields.len() < 7 || fields[0].tag != der::VERSION {
        return Err(malformed());
    }
    let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
    for (i, field) in fields.iter().enumerate() {
        tbs_content.extend_from_slice(if i == 5 { subject } else { field.whole });
    }
    let new_tbs = der::encode(der::SEQUENCE, &tbs_content);
    let signature = ca_key.sign(&new_tbs).map_err(|source| TlsError::Generate {
        what: "client certificate signature",
        source,
    })?;
    let mut bits = vec![0u8]; // no unused bits
    bits.extend(signature);
    let content = [
        new_tbs,
        sig_alg.whole.to_vec(),
        der::encode(der::BIT_STRING, &bits),
    ]
    .concat();
    Ok(der::encode(der::SEQUENCE, &content))
}

/// Just enough DER to split a certificate into its fields and put it back together.
mod der {
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0] EXPLICIT Version` of a TBSCertificate.
    pub const VERSION: u8 = 0xa0;

    pub struct Tlv<'a> {
        pub tag: u8,
        pub whole: &'a [u8],
        pub content: &'a [u8],
        pub rest: &'a [u8],
    }

    /// The first TLV of `input` (single-byte tags, definite lengths as DER requires).
    pub fn split(input: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, after_tag) = input.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after_len.len() < n {
                return None;
            }
            let (bytes, r) = after_len.split_at(n);
            after_len = r;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if after_len.len() < len {
            return None;
        }
        let header = input.len() - after_len.len();
        Some(Tlv {
            tag,
            whole: &input[..header + len],
            content: &after_len[..len],
            rest: &after_len[len..],
        })
    }

    pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len() + 6);
        out.push(tag);
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::server::WebPkiClientVerifier;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(ca: &CaBundle) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(first_cert(&ca.cert_pem, "ca").unwrap()).unwrap();
        Arc::new(roots)
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        first_cert(pem, "test certificate").unwrap()
    }

    fn verify_as_server(ca: &CaBundle, cert: &CertKey, name: &str) -> Result<(), rustls::Error> {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&der_of(&cert.cert_pem), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn verify_as_client(ca: &CaBundle, cert: &CertKey) -> Result<(), rustls::Error> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
        verifier
            .verify_client_cert(&der_of(&cert.cert_pem), &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn ca_has_cluster_id_in_its_name_and_a_stable_fingerprint() {
        let ca = CaBundle::generate(0xabc).unwrap();
        let (cn, orgs) = subject_of(&der_of(&ca.cert_pem)).unwrap();
        assert_eq!(cn, "rkube-ca 0000000000000abc");
        assert!(orgs.is_empty());
        let fp = ca.fingerprint().unwrap();
        assert_eq!(fp.len(), 64);
        assert!(fp.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(fp, pem_fingerprint(&ca.cert_pem).unwrap());
        assert_ne!(
            fp,
            CaBundle::generate(0xabc).unwrap().fingerprint().unwrap()
        );
    }

    #[test]
    fn server_certificate_verifies_for_every_san_and_as_a_client() {
        let ca = CaBundle::generate(1).unwrap();
        let extra = [
            "node-a.example:7000".to_string(),
            "10.1.2.3:7000".to_string(),
            "[fd00::1]:7000".to_string(),
            "192.168.0.9".to_string(),
            "node-b".to_string(),
        ];
        let server = ca.issue_server(7, &extra).unwrap();
        for name in [
            SERVER_NAME,
            "localhost",
            "127.0.0.1",
            "::1",
            "node-a.example",
            "10.1.2.3",
            "fd00::1",
            "192.168.0.9",
            "node-b",
        ] {
            verify_as_server(&ca, &server, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify_as_server(&ca, &server, "other.example").is_err());
        verify_as_client(&ca, &server).unwrap();
        assert_eq!(
            subject_of(&der_of(&server.cert_pem)).unwrap().0,
            "rkube-server-7"
        );

        let other_ca = CaBundle::generate(1).unwrap();
        assert!(verify_as_server(&other_ca, &server, SERVER_NAME).is_err());
    }

    #[test]
    fn bad_extra_san_is_rejected_with_its_name() {
        let ca = CaBundle::generate(1).unwrap();
        let err = ca.issue_server(1, &["bad name".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid server certificate name \"bad name\": expected an ip address, a dns name, or either with :port"
        );
    }

    #[test]
    fn client_certificate_carries_user_and_groups_and_verifies() {
        let ca = CaBundle::generate(2).unwrap();
        for groups in [
            &[][..],
            &["system:masters"][..],
            &["system:nodes", "ops", "dev"][..],
        ] {
            let client = ca.issue_client("alice", groups).unwrap();
            let (cn, orgs) = subject_of(&der_of(&client.cert_pem)).unwrap();
            assert_eq!(cn, "alice");
            assert_eq!(orgs, groups);
            verify_as_client(&ca, &client).unwrap();
            // A client certificate must not pass as a server's.
            assert!(verify_as_server(&ca, &client, SERVER_NAME).is_err());
        }
        let other_ca = CaBundle::generate(2).unwrap();
        let client = ca.issue_client("bob", &["ops"]).unwrap();
        assert!(verify_as_client(&other_ca, &client).is_err());
        assert!(ca.issue_client("", &[]).is_err());
    }

    #[test]
    fn subject_of_rejects_garbage() {
        let err = subject_of(b"not a certificate").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid certificate: "),
            "{err}"
        );
    }

    #[test]
    fn der_to_pem_roundtrips_every_padding() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let pem = der_to_pem(&der);
            let parsed: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(parsed.len(), 1, "len {len}");
            assert_eq!(parsed[0].as_ref(), &der[..], "len {len}");
        }
    }

    #[test]
    fn tls_dir_roundtrip_keeps_files_private_and_fingerprint_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::new(tmp.path().join("nested/tls"));
        assert!(!dir.exists());
        let ca = CaBundle::generate(3).unwrap();
        let server = ca.issue_server(1, &[]).unwrap();
        dir.save(&ca, &server).unwrap();
        assert!(dir.exists());
        let (loaded_ca, loaded_server) = dir.load().unwrap();
        assert_eq!(loaded_ca.cert_pem, ca.cert_pem);
        assert_eq!(loaded_ca.key_pem, ca.key_pem);
        assert_eq!(loaded_server.cert_pem, server.cert_pem);
        assert_eq!(loaded_server.key_pem, server.key_pem);
        assert_eq!(loaded_ca.fingerprint().unwrap(), ca.fingerprint().unwrap());
        // The loaded CA can still issue certificates that chain to the original.
        verify_as_client(&ca, &loaded_ca.issue_client("carol", &[]).unwrap()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for (name, mode) in [("ca.key", 0o600), ("server.key", 0o600), ("ca.pem", 0o644)] {
                let meta = fs::metadata(dir.dir.join(name)).unwrap();
                assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
            }
        }
        // Saving again replaces the files in place.
        dir.save(&ca, &server).unwrap();
        let leftovers: Vec<_> = fs::read_dir(&dir.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn tls_dir_load_names_the_missing_or_bad_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::new(tmp.path());
        let ca = CaBundle::generate(4).unwrap();
        let server = ca.issue_server(1, &[]).unwrap();
        dir.save(&ca, &server).unwrap();

        fs::remove_file(tmp.path().join("server.key")).unwrap();
        assert!(!dir.exists());
        let err = dir.load().unwrap_err().to_string();
        let expected = format!(
            "cannot read server private key {}: ",
            tmp.path().join("server.key").display()
        );
        assert!(err.starts_with(&expected), "{err}");

        // A key from another pair is caught, naming the key file.
        fs::write(tmp.path().join("server.key"), &ca.key_pem).unwrap();
        let err = dir.load().unwrap_err().to_string();
        assert!(
            err.contains("server.key") && err.contains("does not belong to"),
            "{err}"
        );

        fs::write(tmp.path().join("ca.pem"), "garbage").unwrap();
        let err = dir.load().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "invalid {}: ",
                tmp.path().join("ca.pem").display()
            )),
            "{err}"
        );
    }

    #[test]
    fn join_token_roundtrips() {
        let fp = "ab".repeat(32);
        let secret = JoinToken::generate_secret();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, JoinToken::generate_secret());
        let token = JoinToken::new(fp.clone(), secret.clone());
        let text = token.to_string();
        assert_eq!(text, format!("rk1.{fp}.{secret}"));
        assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), token);
        assert_eq!(text.parse::<JoinToken>().unwrap(), token);
        // Upper-case fingerprints are normalized.
        let upper = format!("rk1.{}.{secret}", fp.to_uppercase());
        assert_eq!(JoinToken::parse(&upper).unwrap(), token);
    }

    #[test]
    fn bare_secret_is_a_token_without_a_pinned_ca() {
        let token = JoinToken::parse(" s3cret.with.dots ").unwrap();
        assert_eq!(token.ca_fingerprint, None);
        assert_eq!(token.secret, "s3cret.with.dots");
        assert_eq!(token.to_string(), "s3cret.with.dots");
    }

    #[test]
    fn malformed_tokens_are_rejected_with_clear_messages() {
        let fp = "0f".repeat(32);
        let cases = [
            ("", "token is empty, expected rk1.<64 hex digit ca fingerprint>.<secret>"),
            ("   ", "token is empty, expected rk1.<64 hex digit ca fingerprint>.<secret>"),
            (
                "rk1.abcdef",
                "token has no secret after the ca fingerprint, expected rk1.<64 hex digit ca fingerprint>.<secret>",
            ),
            (
                "rk1.abcdef.secret",
                "ca fingerprint has 6 characters, expected 64 hex digits (rk1.<64 hex digit ca fingerprint>.<secret>)",
            ),
            (
                &format!("rk1.{}zz.secret", &fp[..62]),
                "ca fingerprint contains 'z', expected only hex digits (rk1.<64 hex digit ca fingerprint>.<secret>)",
            ),
            (
                &format!("rk1.{fp}."),
                "secret is empty, expected rk1.<64 hex digit ca fingerprint>.<secret>",
            ),
            (
                &format!("rk1.{fp}.sec ret"),
                "secret contains whitespace or control characters",
            ),
            ("sec ret", "secret contains whitespace or control characters"),
        ];
        for (input, message) in cases {
            let err = JoinToken::parse(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid join token: {message}"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn secret_matches_only_the_exact_secret() {
        let token = JoinToken::new("00".repeat(32), "abc123".to_string());
        assert!(token.secret_matches("abc123"));
        for wrong in ["abc124", "abc12", "abc1234", ""] {
            assert!(!token.secret_matches(wrong), "{wrong}");
        }
    }

    #[test]
    fn tonic_configs_build() {
        let ca = CaBundle::generate(5).unwrap();
        let server = ca.issue_server(1, &[]).unwrap();
        let client = ca.issue_client("admin", &["system:masters"]).unwrap();
        let _ = server_tls_config(&ca, &server);
        let _ = client_tls_config(&ca.cert_pem, Some(&client));
        let _ = client_tls_config(&ca.cert_pem, None);
        install_crypto_provider(); // idempotent
    }

    #[tokio::test]
    async fn fetch_presented_chain_sees_the_ca_behind_the_leaf() {
        let ca = CaBundle::generate(6).unwrap();
        let server = ca.issue_server(1, &[]).unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(server_rustls_config(&ca, &server).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let mut sink = Vec::new();
            let _ = tls.read_to_end(&mut sink).await;
            alpn
        });

        let chain = fetch_presented_chain(&addr.to_string()).await.unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            pem_fingerprint(&chain[0]).unwrap(),
            pem_fingerprint(&server.cert_pem).unwrap()
        );
        assert_eq!(
            pem_fingerprint(&chain[1]).unwrap(),
            ca.fingerprint().unwrap()
        );
        assert_eq!(accept.await.unwrap(), Some(b"h2".to_vec()));
    }

    #[tokio::test]
    async fn tonic_client_trusts_only_the_cluster_ca() {
        let ca = CaBundle::generate(7).unwrap();
        let server = ca.issue_server(1, &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .tls_config(server_tls_config(&ca, &server))
            .unwrap()
            .add_routes(tonic::service::Routes::default());
        tokio::spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let connect = |ca_pem: String, identity: Option<CertKey>| async move {
            tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(client_tls_config(&ca_pem, identity.as_ref()))
                .unwrap()
                .connect()
                .await
        };

        // tonic presents the CA behind the leaf, so a joiner can pin it.
        let chain = fetch_presented_chain(&addr.to_string()).await.unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            pem_fingerprint(&chain[1]).unwrap(),
            ca.fingerprint().unwrap()
        );

        let client = ca.issue_client("admin", &["system:masters"]).unwrap();
        connect(ca.cert_pem.clone(), Some(client)).await.unwrap();
        connect(ca.cert_pem.clone(), None).await.unwrap();
        let stranger = CaBundle::generate(7).unwrap();
        assert!(connect(stranger.cert_pem, None).await.is_err());
    }
}
