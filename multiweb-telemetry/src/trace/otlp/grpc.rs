//! OTLP/gRPC with tonic: the request already encoded goes through a
//! pass-through codec; TLS and gzip are tonic's.

use bytes::{Buf, BufMut, Bytes};
use http::HeaderMap;
use http::uri::PathAndQuery;
use tonic::codec::CompressionEncoding;

use super::retry;
use super::{AttemptError, USER_AGENT, tls};
use crate::config::{OtlpCompression, OtlpExport};

/// The gRPC method of the OTLP trace service.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub(super) struct GrpcTransport {
    client: tonic::client::Grpc<tonic::transport::Channel>,
    headers: HeaderMap,
}

impl GrpcTransport {
    /// Must run inside a Tokio runtime; nothing connects until the first
    /// request.
    pub(super) fn new(
        settings: &OtlpExport,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        #[cfg_attr(not(feature = "tls"), allow(unused_mut, reason = "set for TLS only"))]
        let mut endpoint = tonic::transport::Endpoint::from_shared(settings.endpoint.clone())?
            .user_agent(USER_AGENT)?
            .connect_timeout(settings.timeout);
        // Without the `tls` feature, `https://` is refused earlier.
        #[cfg(feature = "tls")]
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint = endpoint.tls_config(tls::grpc_config(&settings.tls))?;
        }
        let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
        if settings.compression == OtlpCompression::Gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(Self {
            client,
            headers: settings.headers.clone(),
        })
    }

    /// One attempt: the response's body, or why it failed.
    pub(super) async fn send(&mut self, body: Bytes) -> Result<Bytes, AttemptError> {
        self.client.ready().await.map_err(|err| {
            let (cause, tls) = tls::describe(&err);
            AttemptError::unreachable(cause, tls)
        })?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(self.headers.clone());
        match self
            .client
            .unary(request, PathAndQuery::from_static(EXPORT), RawCodec)
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(match std::error::Error::source(&status) {
                // Made by the client's own transport (connection refused,
                // TLS, ...): the cause is the client's text.
                Some(source) => {
                    let (cause, tls) = tls::describe(source);
                    AttemptError::unreachable(cause, tls)
                }
                // From the collector: only the code, as a collector may echo
                // credentials in its message.
                None => AttemptError::answered(
                    retry::grpc_status(&status),
                    &format!("gRPC status {:?}", status.code()),
                ),
            }),
        }
    }
}

/// A gRPC codec for messages already encoded: the request is sent as is,
/// the response is kept as bytes.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
