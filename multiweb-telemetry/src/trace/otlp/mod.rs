//! The OTLP exporter: encodes each batch of spans once (see [`encode`]) and
//! sends it over gRPC (tonic) or HTTP/protobuf (hyper), with the headers and
//! timeout of the standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! It replaces `opentelemetry-otlp`'s span exporter, which converted every
//! span into owned protobuf structs after cloning the whole batch (for
//! retries this crate does not make): about three quarters of the exporter
//! thread's work per span.

mod encode;

use bytes::{Buf, BufMut, Bytes};
use http::HeaderMap;
use http::uri::PathAndQuery;
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

use crate::Error;
use crate::config::{OtlpExport, OtlpProtocol};

use encode::EncodedResource;

/// The gRPC method of the OTLP trace service.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Sent as `User-Agent`, as the OpenTelemetry exporters do.
const USER_AGENT: &str = concat!("multiweb-telemetry/", env!("CARGO_PKG_VERSION"));

/// Why a batch was not accepted; the spans are dropped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ExportError(String);

/// Sends batches of finished spans to one collector.
pub(crate) struct OtlpExporter {
    transport: Transport,
    resource: EncodedResource,
    /// The last request's size, to allocate the next one at once.
    last_len: usize,
}

enum Transport {
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        headers: HeaderMap,
    },
    Http {
        client: Box<opentelemetry_http::hyper::HyperClient>,
        endpoint: http::Uri,
        headers: HeaderMap,
    },
}

impl OtlpExporter {
    /// Builds the client; for gRPC, must run inside a Tokio runtime. Nothing
    /// connects until the first batch.
    pub(crate) fn new(settings: &OtlpExport) -> Result<Self, Error> {
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| Error::Exporter { source };
        let transport = match settings.protocol {
            OtlpProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(settings.endpoint.clone())
                    .and_then(|endpoint| endpoint.user_agent(USER_AGENT))
                    .map_err(|err| invalid(Box::new(err)))?
                    .timeout(settings.timeout)
                    .connect_lazy();
                Transport::Grpc {
                    client: tonic::client::Grpc::new(channel),
                    headers: settings.headers.clone(),
                }
            }
            OtlpProtocol::HttpProtobuf => {
                let endpoint = settings
                    .endpoint
                    .parse::<http::Uri>()
                    .map_err(|err| invalid(Box::new(err)))?;
                let mut headers = settings.headers.clone();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                // Unless the headers variable sets one.
                headers
                    .entry(http::header::USER_AGENT)
                    .or_insert(http::HeaderValue::from_static(USER_AGENT));
                Transport::Http {
                    client: Box::new(
                        opentelemetry_http::hyper::HyperClient::with_default_connector(
                            settings.timeout,
                            None,
                        ),
                    ),
                    endpoint,
                    headers,
                }
            }
        };
        Ok(Self {
            transport,
            resource: EncodedResource::default(),
            last_len: 0,
        })
    }

    /// The resource every batch is sent with.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }

    /// Sends `spans` in one request. Returns the collector's partial
    /// success (spans rejected, and its message), or why the request failed.
    pub(crate) async fn export(
        &mut self,
        spans: &[SpanData],
    ) -> Result<PartialSuccess, ExportError> {
        let mut body = Vec::with_capacity(self.last_len + self.last_len / 8);
        encode::export_request(&mut body, &self.resource, spans);
        self.last_len = body.len();
        let response = match &mut self.transport {
            Transport::Grpc { client, headers } => {
                client
                    .ready()
                    .await
                    .map_err(|err| ExportError(format!("gRPC channel not ready: {err}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() =
                    tonic::metadata::MetadataMap::from_headers(headers.clone());
                client
                    .unary(request, PathAndQuery::from_static(GRPC_EXPORT), RawCodec)
                    .await
                    .map_err(|status| {
                        ExportError(match std::error::Error::source(&status) {
                            // Made by the client's own transport (connection
                            // refused, DNS, ...): the cause is the client's text.
                            Some(cause) => format!("could not reach the collector: {cause}"),
                            // From the collector: only the code, as a
                            // collector may echo credentials in its message.
                            None => {
                                format!("the collector answered gRPC status {:?}", status.code())
                            }
                        })
                    })?
                    .into_inner()
            }
            Transport::Http {
                client,
                endpoint,
                headers,
            } => {
                let mut request = http::Request::new(Bytes::from(body));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = endpoint.clone();
                *request.headers_mut() = headers.clone();
                let response = client
                    .send_bytes(request)
                    .await
                    .map_err(|err| ExportError(format!("HTTP request failed: {err}")))?;
                if !response.status().is_success() {
                    return Err(ExportError(format!(
                        "the collector answered HTTP {}",
                        response.status()
                    )));
                }
                response.into_body()
            }
        };
        let (rejected, message) = encode::partial_success(&response);
        Ok(PartialSuccess {
            rejected: rejected.min(spans.len() as u64),
            message,
        })
    }
}

/// What a collector that accepted a request said about it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    /// Spans it rejected (the others were accepted).
    pub(crate) rejected: u64,
    /// Why, or a warning when none was rejected; empty for a full success.
    pub(crate) message: String,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter").finish_non_exhaustive()
    }
}

/// A gRPC codec for messages already encoded: the request is sent as is,
/// the response is kept as bytes.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
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
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, SystemTime};

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn span(id: u64) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("multiweb-telemetry").build(),
        }
    }

    /// A one-shot HTTP collector: answers `status` with `body` and hands back
    /// the request's head (lowercased) and body.
    fn collector(
        status: &'static str,
        body: Vec<u8>,
    ) -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            // A client that never connects fails the test, not hangs it.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(std::time::Instant::now() < deadline, "no request came");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(err) => panic!("accept: {err}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut request = vec![0; len];
            reader.read_exact(&mut request).unwrap();
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(&body).unwrap();
            (head, request)
        });
        (url, handle)
    }

    fn http_settings(endpoint: String) -> OtlpExport {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", http::HeaderValue::from_static("s3cret"));
        OtlpExport {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint,
            headers,
            timeout: Duration::from_secs(10),
            gzip_asked_by: None,
        }
    }

    #[test]
    fn http_export_posts_the_batch_with_the_headers_and_reads_partial_success() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "one span too old".to_owned(),
            }),
        };
        let (url, collector) = collector("200 OK", response.encode_to_vec());
        let runtime = runtime();
        let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("marketplace")
                .build(),
        );
        let partial = runtime.block_on(exporter.export(&[span(1), span(2)]));
        assert_eq!(
            partial.unwrap(),
            PartialSuccess {
                rejected: 1,
                message: "one span too old".to_owned()
            }
        );

        let (head, body) = collector.join().unwrap();
        assert!(head.starts_with("post /v1/traces http/1.1\r\n"), "{head}");
        for header in [
            "x-api-key: s3cret\r\n",
            "content-type: application/x-protobuf\r\n",
            "user-agent: multiweb-telemetry/",
        ] {
            assert!(head.contains(header), "{header} in {head}");
        }
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let resource_spans = &request.resource_spans[0];
        let service = &resource_spans.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let spans = &resource_spans.scope_spans[0].spans;
        let ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        assert_eq!(ids, [&[0, 0, 0, 0, 0, 0, 0, 1], &[0, 0, 0, 0, 0, 0, 0, 2]]);
    }

    #[test]
    fn an_http_error_status_fails_the_batch() {
        let (url, collector) = collector("503 Service Unavailable", Vec::new());
        let runtime = runtime();
        let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
        let err = runtime.block_on(exporter.export(&[span(1)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the collector answered HTTP 503 Service Unavailable"
        );
        collector.join().unwrap();
    }

    #[test]
    fn a_grpc_endpoint_tonic_refuses_is_an_error() {
        let runtime = runtime();
        let _entered = runtime.enter();
        let settings = |endpoint: &str| OtlpExport {
            protocol: OtlpProtocol::Grpc,
            endpoint: endpoint.to_owned(),
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(1),
            gzip_asked_by: None,
        };
        assert!(OtlpExporter::new(&settings("http://127.0.0.1:4317")).is_ok());
        let err = OtlpExporter::new(&settings("not a uri")).unwrap_err();
        assert_eq!(err.to_string(), "could not build the OTLP span exporter");
    }
}
