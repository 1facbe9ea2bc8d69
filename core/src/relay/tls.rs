//! Mutual TLS for the relay (`docs/PROTOCOL.md` §3): the gateway is the QUIC
//! client, the command center the QUIC server, and both present a certificate
//! issued by the operator's CA and verify the peer against that CA only (never
//! the public web PKI). This module turns the PEM files of one side into quinn
//! client or server configurations, and reads the identity of a connected peer
//! so the center can check which gateway ids a certificate may use.
//!
//! The configurations speak TLS 1.3 only, offer the `lookout/2` and `lookout/1` ALPNs
//! (the center prefers the newer),
//! never send or accept 0-RTT data, and use the `ring` provider explicitly, so
//! nothing depends on a process-wide default provider. Loading also checks
//! that the own certificate chains to the CA, matches its key and carries the
//! right extended key usage, so a misconfigured file stops the process at
//! start with a message naming the file instead of failing every handshake.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lookout_codecs::relay::{ALPNS, version_of_alpn};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// PEM file paths of one side's identity and the operator CA.
///
/// `cert` holds the side's own certificate first, optionally followed by
/// intermediates; `key` its private key (PKCS#8, PKCS#1 or SEC1); `ca` the
/// operator CA certificate(s) the peer must chain to (several when a CA is
/// being rotated).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The operator CA certificate(s) the peer must chain to (PEM).
    pub ca: PathBuf,
    /// This side's certificate, then any intermediates (PEM).
    pub cert: PathBuf,
    /// This side's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl From<&crate::config::UpstreamConfig> for TlsFiles {
    /// An upstream's identity (its paths resolved already).
    fn from(u: &crate::config::UpstreamConfig) -> TlsFiles {
        TlsFiles {
            ca: u.ca.clone(),
            cert: u.cert.clone(),
            key: u.key.clone(),
        }
    }
}

/// Why a TLS configuration could not be built; every variant names the file
/// at fault, so the operator knows which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, permissions, ...).
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{path}: not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    /// The file holds no `CERTIFICATE` PEM section.
    #[error("{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate { path: PathBuf },
    /// A certificate in the file is not a usable X.509 certificate.
    #[error("{path}: not a usable X.509 certificate: {message}")]
    BadCertificate { path: PathBuf, message: String },
    /// The file holds no private key PEM section.
    #[error(
        "{path}: no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY) in it"
    )]
    NoKey { path: PathBuf },
    /// The private key cannot be used for signing.
    #[error("{path}: unusable private key: {message}")]
    BadKey { path: PathBuf, message: String },
    /// The private key is not the one of the certificate.
    #[error("{key}: this private key does not belong to the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// The CA file's certificates cannot serve as trust anchors.
    #[error("{path}: unusable CA certificate: {message}")]
    BadCa { path: PathBuf, message: String },
    /// The own certificate does not verify against the CA for its role
    /// (other issuer, expired, wrong extended key usage, ...).
    #[error("{cert}: not a valid {role} certificate from the CA in {ca}: {message}")]
    NotIssuedByCa {
        cert: PathBuf,
        ca: PathBuf,
        /// `client (gateway)` or `server (command center)`.
        role: &'static str,
        message: String,
    },
    /// rustls or quinn rejected the configuration.
    #[error("{cert}: cannot build the TLS configuration: {message}")]
    Config { cert: PathBuf, message: String },
}

/// The client (gateway) side: presents the certificate in `files.cert` and
/// accepts a server only when its certificate chains to `files.ca` and is
/// valid for the name dialled (`quinn::Endpoint::connect`'s `server_name`,
/// a DNS name or an IP address in the center's SANs).
///
/// The own certificate must be issued by the CA and allow `clientAuth`. The
/// quinn transport configuration is left at its defaults for the caller.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let identity = Identity::load(files, &provider)?;

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad_ca(files, e))?;
    client_verifier
        .verify_client_cert(identity.leaf(), identity.intermediates(), UnixTime::now())
        .map_err(|e| not_issued(files, CLIENT_ROLE, e))?;

    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad_ca(files, e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_error(files, e))?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(identity.chain, identity.key)
        .map_err(|e| config_error(files, e))?;
    config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
    config.enable_early_data = false;

    let quic = QuicClientConfig::try_from(config).map_err(|e| config_error(files, e))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// The server (command center) side: presents the certificate in
/// `files.cert` and requires every client to present a certificate that
/// chains to `files.ca` and allows `clientAuth`; connections without one fail
/// in the handshake and never reach `accept`.
///
/// The own certificate must be issued by the CA and allow `serverAuth`; which
/// names it is valid for is the gateways' concern (they check the name they
/// dial). The quinn transport configuration is left at its defaults.
pub fn server_config(files: &TlsFiles) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let identity = Identity::load(files, &provider)?;

    let leaf =
        ParsedCertificate::try_from(identity.leaf()).map_err(|e| bad_certificate(files, e))?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &identity.roots,
        identity.intermediates(),
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| not_issued(files, SERVER_ROLE, e))?;

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad_ca(files, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_error(files, e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| config_error(files, e))?;
    // rustls picks the first of these the client offers: the newest.
    config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
    config.max_early_data_size = 0;

    let quic = QuicServerConfig::try_from(config).map_err(|e| config_error(files, e))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// What the peer's verified certificate says about it.
///
/// The center uses it to decide which gateway ids a connection may claim in
/// its `Hello` (§3), and to log which certificate a peer used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name, when it has one (UTF-8).
    pub common_name: Option<String>,
    /// The DNS names in the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// SHA-256 of the certificate's DER, lowercase hex: identifies exactly
    /// this certificate in logs.
    pub sha256_fingerprint: String,
}

impl PeerIdentity {
    /// Whether the certificate may speak for `id`: its common name or one of
    /// its DNS SANs equals `id` exactly. A `Hello` whose `gateway_id` fails
    /// this is refused with `UNAUTHORIZED`.
    pub fn may_use_id(&self, id: &str) -> bool {
        self.common_name.as_deref() == Some(id) || self.dns_names.iter().any(|name| name == id)
    }

    /// Reads the identity of one DER certificate; `None` when it does not
    /// parse (which a certificate that passed verification always does).
    fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let sha256_fingerprint = Sha256::digest(der)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(Self {
            common_name,
            dns_names,
            sha256_fingerprint,
        })
    }
}

/// The identity of the peer of an established connection: the leaf of the
/// certificate chain it presented (and that the TLS layer verified against
/// the CA). `None` before the handshake completed or if the peer presented
/// no certificate, which the configurations of this module do not allow.
pub fn peer_identity(conn: &quinn::Connection) -> Option<PeerIdentity> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    PeerIdentity::from_der(chain.first()?.as_ref())
}

/// The protocol version the connection's ALPN names (PROTOCOL.md §2); `None`
/// before the handshake completed or for an ALPN this build does not speak,
/// which the configurations of this module do not allow.
pub fn negotiated_version(conn: &quinn::Connection) -> Option<u32> {
    let alpn = conn
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol?;
    version_of_alpn(&alpn)
}

const CLIENT_ROLE: &str = "client (gateway)";
const SERVER_ROLE: &str = "server (command center)";

/// The `ring` provider, explicitly: never the process-wide default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One side's loaded files: CA roots, own chain (leaf first) and key, the key
/// already checked against the leaf.
struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in load_certs(&files.ca)? {
            roots.add(ca).map_err(|e| bad_ca(files, e))?;
        }

        let chain = load_certs(&files.cert)?;
        for cert in &chain {
            ParsedCertificate::try_from(cert).map_err(|e| bad_certificate(files, e))?;
        }
        let key = load_key(&files.key)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::BadKey {
                path: files.key.clone(),
                message: e.to_string(),
            })?;
        match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
            // `Unknown`: the key type cannot tell its public key; rustls
            // accepts those too (the handshake would then fail instead).
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsError::KeyMismatch {
                    key: files.key.clone(),
                    cert: files.cert.clone(),
                });
            }
            Err(e) => return Err(bad_certificate(files, e)),
        }

        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    fn leaf(&self) -> &CertificateDer<'static> {
        // `load_certs` never returns an empty list.
        &self.chain[0]
    }

    fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.chain[1..]
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// All `CERTIFICATE` sections of a PEM file, at least one.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key section of a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn bad_ca(files: &TlsFiles, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadCa {
        path: files.ca.clone(),
        message: e.to_string(),
    }
}

fn bad_certificate(files: &TlsFiles, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadCertificate {
        path: files.cert.clone(),
        message: e.to_string(),
    }
}

fn config_error(files: &TlsFiles, e: impl std::fmt::Display) -> TlsError {
    TlsError::Config {
        cert: files.cert.clone(),
        message: e.to_string(),
    }
}

/// The own certificate failed verification against the CA: say why in an
/// operator's words where rustls' are terse.
fn not_issued(files: &TlsFiles, role: &'static str, e: rustls::Error) -> TlsError {
    let message = match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "it is not issued by this CA (unknown issuer)".to_owned()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "it is not issued by this CA (its signature does not verify with the CA's key: \
             another CA with the same name?)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => format!("its extended key usage does not allow use as a {role} certificate ({e})"),
        rustls::Error::InvalidCertificate(cert_error) => cert_error.to_string(),
        other => other.to_string(),
    };
    TlsError::NotIssuedByCa {
        cert: files.cert.clone(),
        ca: files.ca.clone(),
        role,
        message,
    }
}

#[cfg(test)]
mod tests {
    use lookout_codecs::relay::ALPN;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;

    use quinn::{ConnectionError, Endpoint};
    use tempfile::TempDir;

    use super::*;
    use crate::certs::{self, CertsArgs};

    /// Bound on every wait: a handshake on loopback takes milliseconds.
    const WAIT: Duration = Duration::from_secs(10);

    async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(WAIT, future)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// A CA with the given centers and gateways, made by `lookout certs`.
    fn make_pki(centers: &[&str], gateways: &[&str]) -> TempDir {
        make_named_pki("test CA", centers, gateways)
    }

    fn make_named_pki(ca_name: &str, centers: &[&str], gateways: &[&str]) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        certs::run(&CertsArgs {
            dir: dir.path().to_owned(),
            center: centers.iter().map(|s| s.to_string()).collect(),
            gateway: gateways.iter().map(|s| s.to_string()).collect(),
            days: 30,
            ca_name: ca_name.into(),
        })
        .unwrap();
        dir
    }

    fn files(dir: &TempDir, name: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join(format!("{name}.pem")),
            key: dir.path().join(format!("{name}.key")),
        }
    }

    fn center(files: &TlsFiles) -> (Endpoint, SocketAddr) {
        let endpoint = Endpoint::server(
            server_config(files).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        (endpoint, addr)
    }

    fn client_endpoint() -> Endpoint {
        Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    /// A client config built by hand, bypassing `client_config`'s checks:
    /// trusts `ca`, presents `identity` (cert, key) or no certificate.
    fn raw_client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> quinn::ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(ca).unwrap() {
            roots.add(cert).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert).unwrap(), load_key(key).unwrap())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(config).unwrap()))
    }

    /// Dials with `config`; the handshake must fail on the client (at once,
    /// or right after the client's flight when the server rejects its
    /// certificate) and the server's accept must yield no connection.
    async fn assert_rejected(
        server: &Endpoint,
        addr: SocketAddr,
        config: quinn::ClientConfig,
        server_name: &str,
    ) -> ConnectionError {
        let client = client_endpoint();
        let connecting = client.connect_with(config, addr, server_name).unwrap();
        let server_side = async {
            let incoming = server.accept().await.expect("the server endpoint is open");
            incoming.await
        };
        let client_side = async {
            match connecting.await {
                Err(e) => e,
                // TLS 1.3: the client finishes before the server has judged
                // its certificate; then the server closes the connection,
                // and nothing the client sends gets through.
                Ok(conn) => {
                    if let Ok(mut stream) = conn.open_uni().await {
                        let _ = stream.write_all(b"must never arrive").await;
                        let _ = stream.finish();
                    }
                    conn.closed().await
                }
            }
        };
        let (server_result, client_error) = bounded("rejected handshake", async {
            tokio::join!(server_side, client_side)
        })
        .await;
        let server_error = server_result.expect_err("the server must not get a connection");
        assert!(
            !matches!(server_error, ConnectionError::TimedOut),
            "server: {server_error}"
        );
        assert!(
            matches!(
                client_error,
                ConnectionError::ConnectionClosed(_) | ConnectionError::TransportError(_)
            ),
            "client: {client_error}"
        );
        // Nothing else is queued behind the failed attempt either.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), server.accept())
                .await
                .is_err()
        );
        client_error
    }

    #[tokio::test]
    async fn gateway_and_center_authenticate_each_other_and_echo() {
        let pki = make_pki(&["county,127.0.0.1,localhost"], &["gw-north"]);
        let (server, addr) = center(&files(&pki, "county"));
        let server_task = tokio::spawn(async move {
            let incoming = server.accept().await.expect("the server endpoint is open");
            let conn = incoming.await.expect("handshake on the server");
            let identity = peer_identity(&conn);
            let (mut send, mut recv) = conn.accept_bi().await.expect("a stream");
            let data = recv.read_to_end(1024).await.expect("the request");
            send.write_all(&data).await.expect("the echo");
            send.finish().expect("finishing the echo");
            // Keep the connection until the client has read and closed.
            conn.closed().await;
            identity
        });

        let client = client_endpoint();
        let config = client_config(&files(&pki, "gw-north")).unwrap();
        let conn = bounded(
            "handshake on the client",
            client.connect_with(config, addr, "localhost").unwrap(),
        )
        .await
        .expect("handshake on the client");

        let alpn = conn
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        assert_eq!(alpn.as_deref(), Some(ALPN));
        assert_eq!(negotiated_version(&conn), Some(2));
        let center_identity = peer_identity(&conn).expect("the center's identity");
        assert_eq!(center_identity.common_name.as_deref(), Some("county"));
        assert_eq!(center_identity.dns_names, ["county", "localhost"]);
        assert!(center_identity.may_use_id("county"));

        let (mut send, mut recv) = bounded("open_bi", conn.open_bi()).await.unwrap();
        send.write_all(b"hello, center").await.unwrap();
        send.finish().unwrap();
        let echoed = bounded("the echo", recv.read_to_end(1024)).await.unwrap();
        assert_eq!(echoed, b"hello, center");
        conn.close(0u32.into(), b"done");

        let gateway = bounded("the server task", server_task)
            .await
            .unwrap()
            .expect("the gateway's identity");
        assert_eq!(gateway.common_name.as_deref(), Some("gw-north"));
        assert_eq!(gateway.dns_names, ["gw-north"]);
        assert!(gateway.may_use_id("gw-north"));
        assert!(!gateway.may_use_id("gw-south"));
        assert!(!gateway.may_use_id("county"));
        let der = load_certs(&pki.path().join("gw-north.pem")).unwrap();
        let expected: String = Sha256::digest(der[0].as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(gateway.sha256_fingerprint, expected);
        assert_eq!(gateway.sha256_fingerprint.len(), 64);
    }

    #[tokio::test]
    async fn center_is_verified_by_its_ip_san() {
        let pki = make_pki(&["county,127.0.0.1"], &["gw-north"]);
        let (server, addr) = center(&files(&pki, "county"));
        let server_task = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.expect("handshake");
            conn.closed().await;
        });
        let client = client_endpoint();
        let config = client_config(&files(&pki, "gw-north")).unwrap();
        let conn = bounded(
            "handshake",
            client.connect_with(config, addr, "127.0.0.1").unwrap(),
        )
        .await
        .expect("an IP SAN matches the IP dialled");
        conn.close(0u32.into(), b"done");
        bounded("the server task", server_task).await.unwrap();
    }

    #[tokio::test]
    async fn client_from_another_ca_fails_the_handshake() {
        let pki = make_pki(&["county,localhost"], &[]);
        let other = make_pki(&[], &["gw-north"]);
        let (server, addr) = center(&files(&pki, "county"));
        // Trusts the right CA (so the client accepts the center) but
        // presents a certificate of another CA.
        let intruder = files(&other, "gw-north");
        let config = raw_client_config(
            &pki.path().join("ca.pem"),
            Some((&intruder.cert, &intruder.key)),
        );
        assert_rejected(&server, addr, config, "localhost").await;
    }

    #[tokio::test]
    async fn client_without_a_certificate_fails_the_handshake() {
        let pki = make_pki(&["county,localhost"], &[]);
        let (server, addr) = center(&files(&pki, "county"));
        let config = raw_client_config(&pki.path().join("ca.pem"), None);
        assert_rejected(&server, addr, config, "localhost").await;
    }

    #[tokio::test]
    async fn dialling_a_name_not_in_the_centers_sans_fails() {
        let pki = make_pki(&["county,127.0.0.1,localhost"], &["gw-north"]);
        let (server, addr) = center(&files(&pki, "county"));
        let config = client_config(&files(&pki, "gw-north")).unwrap();
        let error = assert_rejected(&server, addr, config, "center.example.org").await;
        assert!(
            error.to_string().contains("center.example.org"),
            "client: {error}"
        );
    }

    #[test]
    fn own_certificate_must_come_from_the_given_ca() {
        let pki = make_pki(&["county,localhost"], &["gw-north"]);
        // Another CA of the same name (webpki then fails on the signature)
        // or of another name (unknown issuer): both are "not issued by".
        for other in [
            make_pki(&[], &["gw-north"]),
            make_named_pki("other CA", &[], &["gw-north"]),
        ] {
            let mixed = TlsFiles {
                ca: pki.path().join("ca.pem"),
                ..files(&other, "gw-north")
            };
            let error = client_config(&mixed).unwrap_err();
            assert!(matches!(error, TlsError::NotIssuedByCa { .. }), "{error:?}");
            let message = error.to_string();
            assert!(
                message.contains(&mixed.cert.display().to_string()),
                "{message}"
            );
            assert!(message.contains("not issued by this CA"), "{message}");
        }

        // A gateway certificate (clientAuth only) cannot serve as a center's.
        let error = server_config(&files(&pki, "gw-north")).unwrap_err();
        assert!(matches!(error, TlsError::NotIssuedByCa { .. }), "{error:?}");
        assert!(error.to_string().contains("extended key usage"), "{error}");

        // A center certificate also works as a client (a cascade's uplink).
        client_config(&files(&pki, "county")).unwrap();
        server_config(&files(&pki, "county")).unwrap();
    }

    #[test]
    fn missing_and_wrong_files_are_named() {
        let pki = make_pki(&["county,localhost"], &["gw-north", "gw-south"]);
        let good = files(&pki, "gw-north");

        let missing = pki.path().join("nowhere.pem");
        for broken in [
            TlsFiles {
                ca: missing.clone(),
                ..good.clone()
            },
            TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            },
            TlsFiles {
                key: missing.clone(),
                ..good.clone()
            },
        ] {
            let error = client_config(&broken).unwrap_err();
            assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
            assert!(
                error.to_string().contains(&missing.display().to_string()),
                "{error}"
            );
        }

        let key_as_cert = TlsFiles {
            cert: good.key.clone(),
            ..good.clone()
        };
        let error = server_config(&key_as_cert).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { ref path } if *path == good.key));

        let cert_as_key = TlsFiles {
            key: good.cert.clone(),
            ..good.clone()
        };
        let error = client_config(&cert_as_key).unwrap_err();
        assert!(matches!(error, TlsError::NoKey { ref path } if *path == good.cert));

        let other_key = TlsFiles {
            key: pki.path().join("gw-south.key"),
            ..good.clone()
        };
        let error = client_config(&other_key).unwrap_err();
        assert!(
            matches!(error, TlsError::KeyMismatch { ref key, ref cert } if *key == other_key.key && *cert == good.cert),
            "{error:?}"
        );
    }
}
