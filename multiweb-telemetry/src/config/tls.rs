//! The OTLP exporter's TLS files (`OTEL_EXPORTER_OTLP_CERTIFICATE`,
//! `…_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`), read and checked when the
//! settings resolve: a file that cannot be read, or that holds no usable
//! PEM, stops `init()` with an error naming the variable (or the builder
//! method) and the file, never the file's content.

//!
//! Without the `tls` feature, an `https://` endpoint or any of these files
//! is refused at `init()` (`Error::FeatureDisabled`).

#[cfg(feature = "tls")]
use std::fmt;
#[cfg(feature = "tls")]
use std::path::{Path, PathBuf};
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use rustls::RootCertStore;
#[cfg(feature = "tls")]
use rustls::sign::CertifiedKey;
#[cfg(feature = "tls")]
use rustls_pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[cfg(feature = "tls")]
use crate::Error;

/// The TLS settings of the exporter, resolved: none without the `tls`
/// feature.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct OtlpTls {
    _none: (),
}

/// The TLS settings of the exporter, resolved.
#[cfg(feature = "tls")]
#[derive(Clone, Default)]
pub(crate) struct OtlpTls {
    /// The roots trusted for the collector's certificate, from the
    /// certificate file; `None`: the platform's trusted roots.
    pub(crate) roots: Option<Arc<RootCertStore>>,
    /// The client certificate and key, for mTLS.
    pub(crate) client: Option<Arc<ClientIdentity>>,
}

#[cfg(feature = "tls")]
impl fmt::Debug for OtlpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpTls")
            .field("roots", &self.roots.as_ref().map(|roots| roots.len()))
            .field("client", &self.client.is_some())
            .finish()
    }
}

#[cfg(feature = "tls")]
/// A client certificate chain and its key, checked to match.
pub(crate) struct ClientIdentity {
    /// For rustls (HTTP/protobuf).
    pub(crate) certified: Arc<CertifiedKey>,
    /// The files as read, for tonic, which takes PEM (gRPC).
    pub(crate) chain_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

#[cfg(feature = "tls")]
/// Where a file setting came from, for its error.
#[derive(Clone, Copy)]
pub(super) enum Origin {
    /// An environment variable.
    Env(&'static str),
    /// A builder method.
    Builder(&'static str),
}

#[cfg(feature = "tls")]
impl Origin {
    pub(super) fn error(
        self,
        path: &Path,
        expected: &'static str,
        source: Option<std::io::Error>,
    ) -> Error {
        match self {
            Origin::Env(name) => Error::InvalidEnv {
                name,
                value: path.display().to_string(),
                expected,
                source: source.map(|err| Box::new(err) as _),
            },
            // The builder's error has no source: the reason says it all.
            Origin::Builder(method) => Error::InvalidSetting {
                setting: format!("{method}({:?})", path.display().to_string()),
                reason: expected,
            },
        }
    }
}

#[cfg(feature = "tls")]
const CERTIFICATES: &str = "a readable PEM file holding at least one X.509 certificate";
#[cfg(feature = "tls")]
const KEY: &str = "a readable PEM file holding the private key (PKCS#8, PKCS#1 or SEC1) \
                   of the client certificate";

#[cfg(feature = "tls")]
/// The crypto provider of every TLS connection: ring (see `trace::otlp::tls`).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(feature = "tls")]
fn read(origin: Origin, path: &Path, expected: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|err| origin.error(path, expected, Some(err)))
}

#[cfg(feature = "tls")]
fn certificates(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

#[cfg(feature = "tls")]
/// Reads the CA bundle: every certificate must parse, and at least one be
/// usable as a trust anchor.
pub(super) fn roots(origin: Origin, path: &Path) -> Result<Arc<RootCertStore>, Error> {
    let pem = read(origin, path, CERTIFICATES)?;
    let certs = certificates(&pem).ok_or_else(|| origin.error(path, CERTIFICATES, None))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(origin.error(path, CERTIFICATES, None));
    }
    Ok(Arc::new(store))
}

#[cfg(feature = "tls")]
/// Reads the client certificate chain and its key, and checks that the key
/// is one rustls can sign with and that it matches the certificate. A PEM
/// parser's error is never passed on for the key: it may quote the file.
pub(super) fn client_identity(
    (cert_origin, cert_path): (Origin, &Path),
    (key_origin, key_path): (Origin, &Path),
) -> Result<Arc<ClientIdentity>, Error> {
    let chain_pem = read(cert_origin, cert_path, CERTIFICATES)?;
    let chain =
        certificates(&chain_pem).ok_or_else(|| cert_origin.error(cert_path, CERTIFICATES, None))?;
    let key_pem = read(key_origin, key_path, KEY)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| key_origin.error(key_path, KEY, None))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|_| key_origin.error(key_path, KEY, None))?;
    Ok(Arc::new(ClientIdentity {
        certified: Arc::new(certified),
        chain_pem,
        key_pem,
    }))
}

#[cfg(feature = "tls")]
/// A file path setting: from the builder, else the traces variable, else
/// the general one.
pub(super) fn path_setting(
    builder: Option<(&'static str, &PathBuf)>,
    env: &super::env::Env<'_>,
    traces: &'static str,
    general: &'static str,
) -> Result<Option<(Origin, PathBuf)>, Error> {
    if let Some((method, path)) = builder {
        return Ok(Some((Origin::Builder(method), path.clone())));
    }
    for name in [traces, general] {
        if let Some(path) = env.get(name)? {
            return Ok(Some((Origin::Env(name), PathBuf::from(path.trim()))));
        }
    }
    Ok(None)
}
