//! OTLP/HTTP with protobuf bodies: hyper's client, TLS by hyper-rustls,
//! gzip by flate2.

use std::io::Write as _;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::retry;
use super::{AttemptError, USER_AGENT, tls};
use crate::config::{OtlpCompression, OtlpExport};

/// The gzip level: 1, the fastest. With flate2's zlib-rs backend it costs
/// about 1.8k instructions per span against 7.1k at level 6 (tonic's level
/// for gRPC, which it does not let change), for bodies barely larger on
/// OTLP batches (see BENCHMARKS.md).
const GZIP_LEVEL: u32 = 1;

pub(super) struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: http::Uri,
    headers: HeaderMap,
    gzip: bool,
}

impl HttpTransport {
    pub(super) fn new(
        settings: &OtlpExport,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let endpoint = settings.endpoint.parse::<http::Uri>()?;
        let mut headers = settings.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        // Unless the headers variable sets one.
        headers
            .entry(http::header::USER_AGENT)
            .or_insert(http::HeaderValue::from_static(USER_AGENT));
        let gzip = settings.compression == OtlpCompression::Gzip;
        if gzip {
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        // The platform's roots are loaded only for an https:// endpoint.
        let tls = if endpoint.scheme_str() == Some("https") {
            tls::http_config(&settings.tls)?
        } else {
            tls::http_config(&crate::config::OtlpTls {
                roots: Some(std::sync::Arc::new(rustls::RootCertStore::empty())),
                client: None,
            })?
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            endpoint,
            headers,
            gzip,
        })
    }

    /// The request body as sent: compressed once, whatever the retries.
    pub(super) fn body(&self, encoded: Vec<u8>) -> Bytes {
        if !self.gzip {
            return Bytes::from(encoded);
        }
        let mut gzip = flate2::write::GzEncoder::new(
            Vec::with_capacity(encoded.len() / 4),
            flate2::Compression::new(GZIP_LEVEL),
        );
        // Writing into a `Vec` cannot fail.
        let _ = gzip.write_all(&encoded);
        Bytes::from(gzip.finish().unwrap_or_default())
    }

    /// One attempt: the response's body, or why it failed.
    pub(super) async fn send(&self, body: Bytes) -> Result<Bytes, AttemptError> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        *request.headers_mut() = self.headers.clone();
        let response = self.client.request(request).await.map_err(|err| {
            let (cause, tls) = tls::describe(&err);
            AttemptError::unreachable(cause, tls)
        })?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok());
            return Err(AttemptError::answered(
                retry::http_status(status, retry_after),
                &format!("HTTP {status}"),
            ));
        }
        let body = response.into_body().collect().await.map_err(|err| {
            let (cause, tls) = tls::describe(&err);
            AttemptError::unreachable(cause, tls)
        })?;
        Ok(body.to_bytes())
    }
}
