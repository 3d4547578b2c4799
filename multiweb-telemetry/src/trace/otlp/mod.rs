//! The OTLP exporter: encodes each batch of spans once (see [`encode`]) and
//! sends it over gRPC ([`grpc`], tonic) or HTTP/protobuf ([`http`], hyper),
//! with the headers, timeout, compression and TLS settings of the standard
//! `OTEL_EXPORTER_OTLP_*` variables, retrying what the OTLP specification
//! says is retryable ([`retry`]) until the export timeout.
//!
//! It replaces `opentelemetry-otlp`'s span exporter, which converts every
//! span into owned protobuf structs after cloning the whole batch, again
//! for each retry: about five times this exporter's work per span on the
//! exporter thread (see BENCHMARKS.md).

mod encode;
mod grpc;
mod http;
mod retry;
mod tls;

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use tokio::time::Instant;

use crate::Error;
use crate::config::{OtlpExport, OtlpProtocol};

use encode::EncodedResource;
use retry::{Backoff, Retry};

/// Sent as `User-Agent`, as the OpenTelemetry exporters do.
const USER_AGENT: &str = concat!("multiweb-telemetry/", env!("CARGO_PKG_VERSION"));

/// Largest export request, encoded (before compression): a batch that would
/// be larger is sent in parts. Under the 4 MiB that gRPC servers accept by
/// default (the OpenTelemetry Collector's and Tempo's too).
pub(crate) const MAX_REQUEST_BYTES: usize = 4_000_000;

/// Why a request was given up; its spans are dropped.
#[derive(Debug)]
pub(crate) struct ExportError {
    pub(crate) failure: Failure,
    message: String,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of failure, each warned about on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The collector answered with a status that must not be retried.
    Rejected,
    /// The TLS handshake failed (unknown CA, wrong host name, expired
    /// certificate, no TLS on the other end, client certificate refused).
    Tls,
    /// Unreachable, a retryable answer until the time was up, or no answer.
    Failed,
}

/// Why one attempt failed, and whether to retry.
#[derive(Debug)]
pub(super) struct AttemptError {
    retry: Retry,
    cause: String,
    failure: Failure,
}

impl AttemptError {
    /// The collector could not be reached, or the TLS handshake failed,
    /// which is not retried: a wrong certificate stays wrong.
    fn unreachable(cause: String, tls: bool) -> Self {
        if tls {
            AttemptError {
                retry: Retry::Never,
                cause,
                failure: Failure::Tls,
            }
        } else {
            AttemptError {
                retry: Retry::Backoff,
                cause: format!("could not reach the collector: {cause}"),
                failure: Failure::Failed,
            }
        }
    }

    /// The collector answered `status` (`HTTP 503 …`, `gRPC status …`).
    fn answered(retry: Retry, status: &str) -> Self {
        AttemptError {
            retry,
            cause: format!("the collector answered {status}"),
            failure: if retry == Retry::Never {
                Failure::Rejected
            } else {
                Failure::Failed
            },
        }
    }
}

/// Sends batches of finished spans to one collector.
pub(crate) struct OtlpExporter {
    transport: Transport,
    resource: EncodedResource,
    timeout: Duration,
    /// The longest string attribute value sent, in characters.
    value_limit: usize,
    /// The last request's size, to allocate the next one at once.
    last_len: usize,
}

enum Transport {
    Grpc(Box<grpc::GrpcTransport>),
    Http(Box<http::HttpTransport>),
}

impl OtlpExporter {
    /// Builds the client; for gRPC, must run inside a Tokio runtime. Nothing
    /// connects until the first batch.
    pub(crate) fn new(settings: &OtlpExport) -> Result<Self, Error> {
        let transport = match settings.protocol {
            OtlpProtocol::Grpc => {
                grpc::GrpcTransport::new(settings).map(|grpc| Transport::Grpc(Box::new(grpc)))
            }
            OtlpProtocol::HttpProtobuf => {
                http::HttpTransport::new(settings).map(|http| Transport::Http(Box::new(http)))
            }
        }
        .map_err(|source| Error::Exporter { source })?;
        Ok(Self {
            transport,
            resource: EncodedResource::default(),
            timeout: settings.timeout,
            value_limit: settings.attribute_value_limit,
            last_len: 0,
        })
    }

    /// The resource every batch is sent with.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }

    /// The `ExportTraceServiceRequest` for `spans`, encoded.
    pub(crate) fn encode(&mut self, spans: &[SpanData]) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.last_len + self.last_len / 8);
        encode::export_request(&mut body, &self.resource, spans, self.value_limit);
        self.last_len = body.len();
        body
    }

    /// Sends one encoded request of `spans` spans, retrying what may be
    /// retried until the export timeout has passed since the first attempt,
    /// or until `give_up` says so (the queue behind it is full). Returns the
    /// collector's partial success, or why the request was given up.
    pub(crate) async fn send(
        &mut self,
        encoded: Vec<u8>,
        spans: usize,
        give_up: impl Fn() -> bool,
    ) -> Result<PartialSuccess, ExportError> {
        let deadline = Instant::now() + self.timeout;
        let body = match &mut self.transport {
            Transport::Grpc(_) => Bytes::from(encoded),
            Transport::Http(http) => http.body(encoded),
        };
        let mut backoff = Backoff::default();
        let mut attempts = 1_u32;
        loop {
            let attempt = match &mut self.transport {
                Transport::Grpc(grpc) => {
                    tokio::time::timeout_at(deadline, grpc.send(body.clone())).await
                }
                Transport::Http(http) => {
                    tokio::time::timeout_at(deadline, http.send(body.clone())).await
                }
            };
            let error = match attempt {
                Ok(Ok(response)) => {
                    let (rejected, message) = encode::partial_success(&response);
                    return Ok(PartialSuccess {
                        rejected: rejected.min(spans as u64),
                        message,
                    });
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(ExportError {
                        failure: Failure::Failed,
                        message: format!(
                            "no answer within the export timeout ({:?}, attempt {attempts})",
                            self.timeout
                        ),
                    });
                }
            };
            let final_error = |why: &str| ExportError {
                failure: error.failure,
                message: format!("{}{why}", error.cause),
            };
            if error.retry == Retry::Never {
                return Err(final_error(""));
            }
            let wait = backoff.wait(error.retry);
            if Instant::now() + wait >= deadline {
                return Err(final_error(&format!(
                    " (given up after {attempts} attempts: the export timeout of {:?} \
                     leaves no time to retry)",
                    self.timeout
                )));
            }
            if give_up() {
                return Err(final_error(&format!(
                    " (given up after {attempts} attempts: the span queue is full)"
                )));
            }
            tokio::time::sleep(wait).await;
            attempts += 1;
        }
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

/// Not part of the API: one batch through this exporter as the exporter
/// thread sends it, for `benches/otlp_export.rs`, which compares it with
/// `opentelemetry-otlp`'s span exporter.
#[doc(hidden)]
#[derive(Debug)]
pub struct BenchExporter {
    runtime: tokio::runtime::Runtime,
    exporter: OtlpExporter,
}

impl BenchExporter {
    /// An OTLP/HTTP exporter to `endpoint` (the full URL, `…/v1/traces`).
    ///
    /// # Panics
    ///
    /// If the exporter cannot be built.
    pub fn http(endpoint: &str, gzip: bool) -> Self {
        let settings = OtlpExport {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: endpoint.to_owned(),
            headers: ::http::HeaderMap::new(),
            timeout: Duration::from_secs(10),
            compression: if gzip {
                crate::config::OtlpCompression::Gzip
            } else {
                crate::config::OtlpCompression::None
            },
            tls: crate::config::OtlpTls::default(),
            attribute_value_limit: crate::config::DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let exporter = {
            let _entered = runtime.enter();
            OtlpExporter::new(&settings).expect("an exporter")
        };
        Self { runtime, exporter }
    }

    /// Sets the resource every batch is sent with.
    pub fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }

    /// Encodes `spans` and sends them in one request; whether they were
    /// accepted.
    pub fn export(&mut self, spans: &[SpanData]) -> bool {
        let encoded = self.exporter.encode(spans);
        self.runtime
            .block_on(self.exporter.send(encoded, spans.len(), || false))
            .is_ok()
    }
}

#[cfg(test)]
mod tests;
