//! TLS for `https://` endpoints: rustls with one crypto provider, ring
//! (it builds with the Rust toolchain and a C compiler alone, where
//! aws-lc-rs needs a longer C build; see BENCHMARKS.md). The trusted roots
//! are the certificate file's when one is configured, else the platform's
//! (`rustls-native-certs`), for both protocols: tonic gets them as trust
//! anchors, hyper-rustls as a rustls configuration.

//!
//! Without the `tls` feature only [`describe`] is here: an `https://`
//! endpoint is refused when the settings resolve.

#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use rustls::RootCertStore;

#[cfg(feature = "tls")]
use crate::config::{OtlpTls, tls_provider};

#[cfg(feature = "tls")]
/// The roots the collector's certificate must chain to.
pub(super) fn roots(tls: &OtlpTls) -> Arc<RootCertStore> {
    match &tls.roots {
        Some(roots) => Arc::clone(roots),
        None => {
            // Certificates the platform store holds but rustls cannot use
            // are skipped; with none at all, every handshake fails with an
            // unknown issuer, which the exporter counts and reports.
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(roots)
        }
    }
}

#[cfg(feature = "tls")]
/// The rustls configuration of the HTTP/protobuf client (hyper-rustls sets
/// its ALPN: HTTP/1.1).
pub(super) fn http_config(
    tls: &OtlpTls,
) -> Result<rustls::ClientConfig, Box<dyn std::error::Error + Send + Sync>> {
    let builder = rustls::ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(tls));
    Ok(match &tls.client {
        Some(client) => builder.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(Arc::clone(&client.certified)),
        )),
        None => builder.with_no_client_auth(),
    })
}

#[cfg(feature = "tls")]
/// tonic's TLS settings of the gRPC channel (tonic offers HTTP/2 by ALPN).
pub(super) fn grpc_config(tls: &OtlpTls) -> tonic::transport::ClientTlsConfig {
    let mut config =
        tonic::transport::ClientTlsConfig::new().trust_anchors(roots(tls).roots.iter().cloned());
    if let Some(client) = &tls.client {
        config = config.identity(tonic::transport::Identity::from_pem(
            &client.chain_pem,
            &client.key_pem,
        ));
    }
    config
}

/// What went wrong, from an error and its sources: a TLS failure is named by
/// rustls's own words (`invalid peer certificate: UnknownIssuer`), anything
/// else by the chain of messages.
pub(super) fn describe(err: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut text = String::new();
    let mut current = Some(err);
    while let Some(err) = current {
        #[cfg(feature = "tls")]
        if let Some(tls) = find_rustls(err) {
            return (format!("TLS handshake failed: {tls}"), true);
        }
        let message = err.to_string();
        // Layers often repeat their source's text; keep it once.
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        current = err.source();
    }
    (text, false)
}

#[cfg(feature = "tls")]
/// The rustls error `err` is or wraps (an `io::Error` hides its inner error
/// from `source()`, and may wrap another `io::Error`; h2's error hides its
/// `io::Error` too).
fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = err;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let io = current.downcast_ref::<std::io::Error>().or_else(|| {
            current
                .downcast_ref::<h2::Error>()
                .and_then(h2::Error::get_io)
        })?;
        current = io.get_ref()?;
    }
}
