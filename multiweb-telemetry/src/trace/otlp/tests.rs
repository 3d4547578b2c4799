//! The exporter against fake collectors: requests, gzip, retries, TLS failures.

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
use crate::config::{OtlpCompression, OtlpTls};

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

/// A request as the fake collector received it.
struct Received {
    /// The request line and headers, lowercased.
    head: String,
    body: Vec<u8>,
}

/// An HTTP collector that gives `answers` in turn (status line, extra
/// header lines, body), one per request, then stops; hands back the
/// requests.
fn collector(
    answers: Vec<(&'static str, &'static str, Vec<u8>)>,
) -> (String, std::thread::JoinHandle<Vec<Received>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut received = Vec::new();
        let mut reader: Option<BufReader<std::net::TcpStream>> = None;
        for (status, headers, body) in answers {
            let head = loop {
                let stream = match reader.as_mut() {
                    Some(stream) => stream,
                    None => {
                        let (stream, _) = listener.accept().unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(20)))
                            .unwrap();
                        reader.insert(BufReader::new(stream))
                    }
                };
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).unwrap_or(0) == 0 {
                        break; // closed: the next request comes on a new connection
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                if head.is_empty() {
                    reader = None;
                } else {
                    break head;
                }
            };
            let stream = reader.as_mut().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut request = vec![0; len];
            stream.read_exact(&mut request).unwrap();
            write!(
                stream.get_mut(),
                "HTTP/1.1 {status}\r\n{headers}content-type: application/x-protobuf\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.get_mut().write_all(&body).unwrap();
            received.push(Received {
                head,
                body: request,
            });
        }
        received
    });
    (url, handle)
}

fn http_settings(endpoint: String) -> OtlpExport {
    let mut headers = ::http::HeaderMap::new();
    headers.insert("x-api-key", ::http::HeaderValue::from_static("s3cret"));
    OtlpExport {
        protocol: OtlpProtocol::HttpProtobuf,
        endpoint,
        headers,
        timeout: Duration::from_secs(10),
        compression: OtlpCompression::None,
        tls: OtlpTls::default(),
        attribute_value_limit: 8192,
    }
}

/// Encodes and sends `spans` once, as the exporter thread does.
fn export(exporter: &mut OtlpExporter, spans: &[SpanData]) -> Result<PartialSuccess, ExportError> {
    let encoded = exporter.encode(spans);
    runtime().block_on(exporter.send(encoded, spans.len(), || false))
}

fn span_ids(body: &[u8]) -> Vec<Vec<u8>> {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    request.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.span_id.clone())
        .collect()
}

#[test]
fn http_export_posts_the_batch_with_the_headers_and_reads_partial_success() {
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one span too old".to_owned(),
        }),
    };
    let (url, collector) = collector(vec![("200 OK", "", response.encode_to_vec())]);
    let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name("marketplace")
            .build(),
    );
    let partial = export(&mut exporter, &[span(1), span(2)]);
    assert_eq!(
        partial.unwrap(),
        PartialSuccess {
            rejected: 1,
            message: "one span too old".to_owned()
        }
    );

    let received = collector.join().unwrap();
    let head = &received[0].head;
    assert!(head.starts_with("post /v1/traces http/1.1\r\n"), "{head}");
    for header in [
        "x-api-key: s3cret\r\n",
        "content-type: application/x-protobuf\r\n",
        "user-agent: multiweb-telemetry/",
    ] {
        assert!(head.contains(header), "{header} in {head}");
    }
    assert!(!head.contains("content-encoding"), "{head}");
    let request = ExportTraceServiceRequest::decode(received[0].body.as_slice()).unwrap();
    let resource_spans = &request.resource_spans[0];
    let service = &resource_spans.resource.as_ref().unwrap().attributes[0];
    assert_eq!(service.key, "service.name");
    assert_eq!(
        span_ids(&received[0].body),
        [[0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 2]]
    );
}

#[test]
fn gzip_compresses_the_http_body_and_says_so() {
    let (url, collector) = collector(vec![("200 OK", "", Vec::new())]);
    let mut settings = http_settings(url);
    settings.compression = OtlpCompression::Gzip;
    let mut exporter = OtlpExporter::new(&settings).unwrap();
    let spans: Vec<SpanData> = (1..=50).map(span).collect();
    assert_eq!(
        export(&mut exporter, &spans).unwrap(),
        PartialSuccess::default()
    );
    let received = collector.join().unwrap();
    assert!(
        received[0].head.contains("content-encoding: gzip\r\n"),
        "{}",
        received[0].head
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(received[0].body.as_slice())
        .read_to_end(&mut plain)
        .expect("a gzip body");
    assert!(received[0].body.len() < plain.len() / 3, "compressed");
    assert_eq!(span_ids(&plain).len(), 50);
}

#[test]
fn a_503_with_retry_after_is_retried_and_the_spans_sent_once_accepted() {
    let (url, collector) = collector(vec![
        ("503 Service Unavailable", "retry-after: 1\r\n", Vec::new()),
        ("429 Too Many Requests", "retry-after: 1\r\n", Vec::new()),
        ("200 OK", "", Vec::new()),
    ]);
    let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        export(&mut exporter, &[span(1), span(2)]).unwrap(),
        PartialSuccess::default()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "each Retry-After waited"
    );
    let received = collector.join().unwrap();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.body == received[0].body));
}

#[test]
fn a_final_status_is_not_retried_and_names_the_status() {
    let (url, collector) = collector(vec![("400 Bad Request", "", Vec::new())]);
    let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
    let err = export(&mut exporter, &[span(1)]).unwrap_err();
    assert_eq!(err.failure, Failure::Rejected);
    assert_eq!(
        err.to_string(),
        "the collector answered HTTP 400 Bad Request"
    );
    assert_eq!(collector.join().unwrap().len(), 1, "sent once");
}

#[test]
fn retries_stop_when_the_export_timeout_leaves_no_time() {
    let (url, collector) = collector(vec![(
        "503 Service Unavailable",
        "retry-after: 30\r\n",
        Vec::new(),
    )]);
    let mut settings = http_settings(url);
    settings.timeout = Duration::from_secs(2);
    let mut exporter = OtlpExporter::new(&settings).unwrap();
    let err = export(&mut exporter, &[span(1)]).unwrap_err();
    assert_eq!(err.failure, Failure::Failed);
    assert_eq!(
        err.to_string(),
        "the collector answered HTTP 503 Service Unavailable (given up after 1 \
         attempts: the export timeout of 2s leaves no time to retry)"
    );
    assert_eq!(collector.join().unwrap().len(), 1);
}

#[test]
fn retries_stop_when_the_queue_is_full() {
    let (url, collector) = collector(vec![("502 Bad Gateway", "", Vec::new())]);
    let mut exporter = OtlpExporter::new(&http_settings(url)).unwrap();
    let encoded = exporter.encode(&[span(1)]);
    let err = runtime()
        .block_on(exporter.send(encoded, 1, || true))
        .unwrap_err();
    assert!(
        err.to_string().ends_with("the span queue is full)"),
        "{err}"
    );
    assert_eq!(collector.join().unwrap().len(), 1);
}

#[test]
fn a_grpc_endpoint_tonic_refuses_is_an_error() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let settings = |endpoint: &str| OtlpExport {
        protocol: OtlpProtocol::Grpc,
        endpoint: endpoint.to_owned(),
        headers: ::http::HeaderMap::new(),
        timeout: Duration::from_secs(1),
        compression: OtlpCompression::Gzip,
        tls: OtlpTls::default(),
        attribute_value_limit: 8192,
    };
    assert!(OtlpExporter::new(&settings("http://127.0.0.1:4317")).is_ok());
    assert!(OtlpExporter::new(&settings("https://localhost:4317")).is_ok());
    let err = OtlpExporter::new(&settings("not a uri")).unwrap_err();
    assert_eq!(err.to_string(), "could not build the OTLP span exporter");
}

/// TLS failures against real rustls servers (feature `tls`).
#[cfg(feature = "tls")]
mod tls {
    use super::*;

    /// A TLS server on 127.0.0.1 with a self-signed certificate for
    /// `localhost`, valid until the end of `year`; it accepts (and fails)
    /// handshakes. Returns its address and its certificate, to trust it.
    fn tls_server(
        year: i32,
    ) -> (
        std::net::SocketAddr,
        rustls_pki_types::CertificateDer<'static>,
    ) {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, 12, 31);
        let cert = params.self_signed(&key_pair).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::try_from(key_pair.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::config::tls_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = acceptor.accept(stream).await;
                }
            });
        });
        (addr, cert.der().clone())
    }

    /// A plaintext HTTP server: it answers anything with a 400 and closes.
    fn plaintext_server() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        addr
    }

    /// Sends one request to `https://localhost:<port>` trusting `roots` (none:
    /// the platform's), on `protocol`; the error.
    fn tls_failure(
        protocol: OtlpProtocol,
        port: u16,
        roots: Option<rustls_pki_types::CertificateDer<'static>>,
    ) -> ExportError {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let roots = roots.map(|cert| {
            let mut store = rustls::RootCertStore::empty();
            store.add(cert).unwrap();
            std::sync::Arc::new(store)
        });
        let settings = OtlpExport {
            protocol,
            endpoint: format!("https://localhost:{port}/v1/traces"),
            headers: ::http::HeaderMap::new(),
            timeout: Duration::from_secs(10),
            compression: OtlpCompression::None,
            tls: OtlpTls {
                roots,
                client: None,
            },
            attribute_value_limit: 8192,
        };
        let mut exporter = {
            let _entered = runtime.enter();
            OtlpExporter::new(&settings).unwrap()
        };
        runtime
            .block_on(exporter.send(vec![0x0a, 0x00], 1, || false))
            .unwrap_err()
    }

    #[test]
    fn tls_failures_are_named_and_not_retried() {
        let (untrusted, _) = tls_server(2100);
        let (expired, expired_cert) = tls_server(2021);
        let plaintext = plaintext_server();
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            for (port, roots, cause) in [
                (
                    untrusted.port(),
                    None,
                    "invalid peer certificate: UnknownIssuer",
                ),
                (
                    expired.port(),
                    Some(expired_cert.clone()),
                    "invalid peer certificate: certificate expired",
                ),
                (plaintext.port(), None, "received corrupt message"),
            ] {
                let err = tls_failure(protocol, port, roots);
                assert_eq!(err.failure, Failure::Tls, "{protocol:?}: {err}");
                assert!(
                    err.to_string()
                        .starts_with(&format!("TLS handshake failed: {cause}")),
                    "{protocol:?}: {err}"
                );
            }
        }
    }
}
