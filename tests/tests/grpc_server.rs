//! gRPC servers (feature `tonic`): a real tonic server behind the HTTP
//! layer, called by a real tonic client. Each call is counted by its
//! `grpc-status` (in the headers of a call that fails at once, in the
//! trailers otherwise), never as an HTTP 200; its span follows the
//! OpenTelemetry RPC conventions in a real collector (rotel); its access
//! line has the gRPC status and the level it calls for.

use std::collections::BTreeMap;

use multiweb_telemetry::testing::{Exposition, MetricsCapture};
use multiweb_telemetry::{OtlpProtocol, Telemetry, TraceSampler};
use multiweb_tests::{Collector, ExportedSpan, LogBuffer};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";
const HEALTH: &str = "grpc.health.v1.Health";

/// The calls the client makes, and what each answered.
async fn calls(channel: tonic::transport::Channel) -> Vec<Code> {
    let mut client = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    let mut answers = Vec::new();
    // OK, its status in the trailers.
    answers.push(
        client
            .check(check(""))
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok),
    );
    // NOT_FOUND, "trailers-only": the status in the response headers.
    answers.push(
        client
            .check(check("shop.Nope"))
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok),
    );
    // OK again, continuing the caller's trace.
    let mut request = tonic::Request::new(check(""));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01")
            .parse()
            .unwrap(),
    );
    answers.push(
        client
            .check(request)
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok),
    );
    // A method the server does not have: UNIMPLEMENTED.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let made_up: Result<tonic::Response<HealthCheckRequest>, _> = grpc
        .unary(
            tonic::Request::new(check("")),
            PathAndQuery::from_static("/made.Up/Call"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    answers.push(made_up.map_or_else(|s| s.code(), |_| Code::Ok));
    // A stream the client drops after its first message (CANCELLED on the
    // server's side); here, that the stream answered.
    let mut watch = client.watch(check("")).await.unwrap().into_inner();
    let first = watch.message().await;
    answers.push(match first {
        Ok(Some(_)) => Code::Ok,
        Ok(None) => Code::Unknown,
        Err(status) => status.code(),
    });
    answers
}

/// On the default path, and on the opt-in direct path (where the gRPC
/// span still goes through the bridge): the same series, lines and spans.
#[test]
fn grpc_calls_are_counted_spanned_and_logged_by_their_grpc_status() {
    let collector = Collector::start();
    for (service, bridge) in [("grpc-server", true), ("grpc-server-direct", false)] {
        let capture = MetricsCapture::new();
        let logs = LogBuffer::default();
        let builder = Telemetry::builder()
            .service_name(service)
            .bridge_request_spans(bridge);
        let answers = serve(builder, &collector, &capture, &logs);
        assert_eq!(
            answers,
            [
                Code::Ok,
                Code::NotFound,
                Code::Ok,
                Code::Unimplemented,
                Code::Ok
            ],
            "{service}"
        );
        check_metrics(&capture);
        check_access_lines(&logs);
        check_spans(&collector, service);
    }
    collector.kill();
}

/// Serves the calls of [`calls`] with a tonic server behind the layer,
/// under the dispatch `builder` makes, exporting to `collector`; returns
/// what the client got.
fn serve(
    builder: multiweb_telemetry::TelemetryBuilder,
    collector: &Collector,
    capture: &MetricsCapture,
    logs: &LogBuffer,
) -> Vec<Code> {
    let (dispatch, guard) = builder
        .log_writer(logs.clone())
        .otlp_endpoint(format!("http://{}", collector.grpc))
        .otlp_protocol(OtlpProtocol::Grpc)
        .sampler(TraceSampler::AlwaysOn)
        .build_dispatch()
        .unwrap();
    // One thread: the server's tasks run under this thread's recorder and
    // subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = {
        let _recorder = capture.enter();
        let _subscriber = tracing::dispatcher::set_default(&dispatch);
        let answers = runtime.block_on(async {
            let (_reporter, health) = tonic_health::server::health_reporter();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(multiweb_telemetry::http::layer())
                    .add_service(health)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    ),
            );
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let answers = calls(channel).await;
            // The client is gone; once the server has shut down, every
            // response it served has ended or been dropped.
            stop.send(()).unwrap();
            server.await.unwrap().unwrap();
            answers
        });
        tracing::warn_span!("sentinel").in_scope(|| {});
        answers
    };
    drop(runtime);
    drop(dispatch);
    drop(guard);
    answers
}

/// By service, method and gRPC status; no HTTP series.
fn check_metrics(capture: &MetricsCapture) {
    let metrics = capture.exposition();
    let count = |service, method, code| calls_of(&metrics, service, method, code);
    assert_eq!(count(HEALTH, "Check", "0"), Some(2.0));
    assert_eq!(count(HEALTH, "Check", "5"), Some(1.0));
    assert_eq!(count("_OTHER", "_OTHER", "12"), Some(1.0));
    assert_eq!(count(HEALTH, "Watch", "1"), Some(1.0));
    assert_eq!(
        metrics
            .find("rpc_server_duration_seconds_count", &[])
            .count(),
        4
    );
    assert_eq!(metrics.find("http_requests_total", &[]).count(), 0);
}

/// The gRPC status, and the level it calls for.
fn check_access_lines(logs: &LogBuffer) {
    let access = logs.access_lines();
    let seen: Vec<(String, String, i64, i64)> = access
        .iter()
        .map(|line| {
            (
                line["level"].as_str().unwrap().to_owned(),
                line["path"].as_str().unwrap().to_owned(),
                line["status"].as_i64().unwrap(),
                line["rpc.grpc.status_code"].as_i64().unwrap(),
            )
        })
        .collect();
    let line = |level: &str, path: &str, code| (level.to_owned(), path.to_owned(), 200, code);
    assert_eq!(
        seen,
        [
            line("info", "/grpc.health.v1.Health/Check", 0),
            line("warn", "/grpc.health.v1.Health/Check", 5),
            line("info", "/grpc.health.v1.Health/Check", 0),
            line("error", "/made.Up/Call", 12),
            line("warn", "/grpc.health.v1.Health/Watch", 1),
        ],
        "{access:#?}"
    );
    assert_eq!(access[2]["trace_id"], REMOTE_TRACE);
}

/// The RPC conventions, in a real collector.
fn check_spans(collector: &Collector, service: &str) {
    let name = format!("Str({service})");
    let ours = |s: &ExportedSpan| s.resource_attribute("service.name") == Some(name.as_str());
    let spans: Vec<ExportedSpan> = collector
        .wait_for(|spans| spans.iter().any(|s| s.name == "sentinel" && ours(s)))
        .into_iter()
        .filter(|s| s.name != "sentinel" && ours(s))
        .collect();
    let shown: Vec<String> = spans
        .iter()
        .map(|span| {
            let attributes: BTreeMap<&str, &str> = span
                .attributes
                .iter()
                .filter(|(key, _)| key.starts_with("rpc.") || key.starts_with("http."))
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            format!("{} {} {} {attributes:?}", span.name, span.kind, span.status)
        })
        .collect();
    let check = |code: u8, status: &str| {
        format!(
            "grpc.health.v1.Health/Check SPAN_KIND_SERVER {status} {{\"rpc.grpc.status_code\": \"Int({code})\", \
             \"rpc.method\": \"Str(Check)\", \"rpc.service\": \"Str(grpc.health.v1.Health)\", \
             \"rpc.system\": \"Str(grpc)\"}}"
        )
    };
    let mut expected = vec![
        check(0, "STATUS_CODE_UNSET"),
        check(5, "STATUS_CODE_UNSET"),
        check(0, "STATUS_CODE_UNSET"),
        "made.Up/Call SPAN_KIND_SERVER STATUS_CODE_ERROR {\"rpc.grpc.status_code\": \"Int(12)\", \
         \"rpc.method\": \"Str(Call)\", \"rpc.service\": \"Str(made.Up)\", \"rpc.system\": \"Str(grpc)\"}"
            .to_owned(),
        "grpc.health.v1.Health/Watch SPAN_KIND_SERVER STATUS_CODE_UNSET {\"rpc.grpc.status_code\": \"Int(1)\", \
         \"rpc.method\": \"Str(Watch)\", \"rpc.service\": \"Str(grpc.health.v1.Health)\", \"rpc.system\": \"Str(grpc)\"}"
            .to_owned(),
    ];
    let mut shown_sorted = shown.clone();
    shown_sorted.sort();
    expected.sort();
    assert_eq!(shown_sorted, expected, "{spans:#?}");
    let continued: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == REMOTE_TRACE)
        .collect();
    assert_eq!(continued.len(), 1, "{spans:#?}");
    assert_eq!(continued[0].parent_id, REMOTE_SPAN);
    let trace_ids: std::collections::HashSet<&str> =
        spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(trace_ids.len(), 5, "each call its own trace");
}

/// How many calls `rpc_server_duration_seconds` counted for the labels.
fn calls_of(metrics: &Exposition, service: &str, method: &str, code: &str) -> Option<f64> {
    metrics.value(
        "rpc_server_duration_seconds_count",
        &[
            ("rpc_service", service),
            ("rpc_method", method),
            ("rpc_grpc_status_code", code),
        ],
    )
}

/// A body that panics when polled: a handler's stream that panics.
struct PanickingBody;

impl hyper::body::Body for PanickingBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        panic!("the stream broke")
    }
}

type TestBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// Answers a gRPC request without a `grpc-status`, by path.
async fn without_status(
    request: http::Request<String>,
) -> Result<http::Response<TestBody>, std::convert::Infallible> {
    use http_body_util::BodyExt as _;
    let empty = || http_body_util::Empty::new().boxed();
    let (status, body) = match request.uri().path() {
        "/pkg.Svc/Missing" => (404, empty()),
        "/pkg.Svc/Empty" => (200, empty()),
        _ => (200, PanickingBody.boxed()),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// Responses without a `grpc-status`: an empty body (which a server drops
/// unpolled) takes the status its HTTP status maps to, not `CANCELLED`; a
/// stream that panics is `INTERNAL`, with the panic as the line's error.
/// With the SDK disabled (no bridge), the caller's trace passes through to
/// the call's lines.
#[test]
fn responses_without_a_grpc_status_and_the_sdk_disabled() {
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};
    let capture = MetricsCapture::new();
    let logs = LogBuffer::default();
    let (dispatch, guard) = Telemetry::builder()
        .disabled(true)
        .log_writer(logs.clone())
        .build_dispatch()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let service = multiweb_telemetry::http::layer().layer(tower::service_fn(without_status));
    let request = |path: &str| {
        http::Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/grpc")
            .header("traceparent", format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"))
            .body(String::new())
            .unwrap()
    };
    {
        let _recorder = capture.enter();
        let _subscriber = tracing::dispatcher::set_default(&dispatch);
        for path in ["/pkg.Svc/Missing", "/pkg.Svc/Empty"] {
            // Dropped unpolled, as a server drops an empty body.
            let response = runtime
                .block_on(service.clone().oneshot(request(path)))
                .unwrap();
            assert!(hyper::body::Body::is_end_stream(response.body()));
        }
        let response = runtime
            .block_on(service.clone().oneshot(request("/pkg.Svc/Panics")))
            .unwrap();
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(response.into_body().collect())
        }));
        assert!(sent.is_err(), "the stream panicked");
    }
    drop(dispatch);
    drop(guard);
    let metrics = capture.exposition();
    let count = |service, method, code| calls_of(&metrics, service, method, code);
    assert_eq!(count("_OTHER", "_OTHER", "12"), Some(1.0));
    assert_eq!(count("pkg.Svc", "Empty", "2"), Some(1.0));
    assert_eq!(count("pkg.Svc", "Panics", "13"), Some(1.0));
    assert_eq!(
        metrics
            .find("rpc_server_duration_seconds_count", &[])
            .count(),
        3
    );
    let access = logs.access_lines();
    let seen: Vec<(&str, i64, Option<&str>, &str)> = access
        .iter()
        .map(|line| {
            (
                line["level"].as_str().unwrap(),
                line["rpc.grpc.status_code"].as_i64().unwrap(),
                line["error"].as_str(),
                line["trace_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("error", 12, None, REMOTE_TRACE),
            ("error", 2, None, REMOTE_TRACE),
            ("error", 13, Some("the handler panicked"), REMOTE_TRACE),
        ],
        "{access:#?}"
    );
}
