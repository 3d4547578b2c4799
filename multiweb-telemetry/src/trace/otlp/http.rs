//! OTLP/HTTP with protobuf bodies: hyper's client, TLS by hyper-rustls
//! (feature `tls`), gzip by flate2.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
#[cfg(feature = "tls")]
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

/// With TLS for `https://` (feature `tls`), plain TCP for `http://`.
#[cfg(feature = "tls")]
type Connector = HttpsConnector<HttpConnector>;
/// Plain TCP: without the `tls` feature `https://` is refused earlier.
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

pub(super) struct HttpTransport {
    client: Client<Connector, Full<Bytes>>,
    endpoint: http::Uri,
    headers: HeaderMap,
    gzip: Option<Gzip>,
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
        let gzip = (settings.compression == OtlpCompression::Gzip).then(Gzip::new);
        if gzip.is_some() {
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        #[cfg(feature = "tls")]
        let connector = {
            // The platform's roots are loaded only for an https:// endpoint.
            let tls = if endpoint.scheme_str() == Some("https") {
                tls::http_config(&settings.tls)?
            } else {
                tls::http_config(&crate::config::OtlpTls {
                    roots: Some(std::sync::Arc::new(rustls::RootCertStore::empty())),
                    client: None,
                })?
            };
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "tls"))]
        let connector = http;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            endpoint,
            headers,
            gzip,
        })
    }

    /// The request body as sent: compressed once, whatever the retries.
    pub(super) fn body(&mut self, encoded: Vec<u8>) -> Bytes {
        match &mut self.gzip {
            Some(gzip) => Bytes::from(gzip.compress(&encoded)),
            None => Bytes::from(encoded),
        }
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

/// A gzip member (RFC 1952) around flate2's raw deflate, whose compressor
/// is kept from one request to the next: making one clears about 300 KB of
/// tables, which cost as much as compressing a batch (see BENCHMARKS.md).
struct Gzip {
    deflate: flate2::Compress,
}

impl Gzip {
    fn new() -> Self {
        Self {
            deflate: flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false),
        }
    }

    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        // ID1 ID2, CM = deflate, no flags, no time, no extra flags, OS unknown.
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let mut out = Vec::with_capacity(HEADER.len() + data.len() / 2 + 64);
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        loop {
            let read = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            let status = self.deflate.compress_vec(
                data.get(read..).unwrap_or_default(),
                &mut out,
                flate2::FlushCompress::Finish,
            );
            match status {
                Ok(flate2::Status::StreamEnd) | Err(_) => break,
                // Out of room: `compress_vec` writes only into spare capacity.
                Ok(_) => out.reserve(out.capacity().max(64)),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the length modulo 2^32.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "modulo 2^32, as RFC 1952 says"
        )]
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::Gzip;

    #[test]
    fn each_body_is_one_valid_gzip_member_with_the_compressor_reused() {
        let mut gzip = Gzip::new();
        // Random-looking bytes do not compress: the output outgrows its
        // first allocation.
        let noise: Vec<u8> = (0..200_000_u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
            .collect();
        for data in [b"".to_vec(), b"spans".repeat(10_000), noise, b"x".to_vec()] {
            let compressed = gzip.compress(&data);
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(compressed.as_slice())
                .read_to_end(&mut plain)
                .expect("valid gzip, CRC and length checked");
            assert_eq!(plain, data);
        }
    }
}
