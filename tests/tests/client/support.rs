//! What the tests of `main.rs` share: the called service, the calling
//! service's telemetry, the two kinds of client, and span lookups.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use multiweb_telemetry::client::ClientService;
use multiweb_telemetry::{OtlpProtocol, Telemetry, TelemetryBuilder, TraceSampler};
use multiweb_tests::{Collector, ExportedSpan};
use tower::{Layer, ServiceExt};

/// A caller's trace, continued by the calling service.
pub(crate) const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(crate) const REMOTE_SPAN: &str = "00f067aa0ba902b7";
pub(crate) const TRACESTATE: &str = "congo=t61rcWkgMzE";
/// Put in the URL's userinfo and query string: never in a span or a label.
pub(crate) const SECRET: &str = "s3cret";

pub(crate) const DURATION_COUNT: &str = "http_client_request_duration_seconds_count";

/// The binary's collector. Each test holds it while it runs, so that the
/// tests running at once share one, and the last one stops it (a `static`
/// would leave rotel running after the tests).
pub(crate) fn collector() -> Arc<Collector> {
    Collector::shared()
}

/// Telemetry for service `name`, exporting every span to the collector.
pub(crate) fn telemetry(name: &str) -> TelemetryBuilder {
    Telemetry::builder()
        .service_name(name)
        .log_writer(std::io::sink())
        .otlp_endpoint(format!("http://{}", collector().grpc))
        .otlp_protocol(OtlpProtocol::Grpc)
        .sampler(TraceSampler::AlwaysOn)
}

pub(crate) fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The called service: `/api/v1/stock/{id}` answers `7 in stock`, `/fail`
/// a 503, `/empty` a 204; the headers of every request it received are
/// kept.
pub(crate) struct Callee {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Callee {
    pub(crate) fn start(name: &str) -> Self {
        let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let app = {
            let seen = Arc::clone(&seen);
            Router::new()
                .route(
                    "/api/v1/stock/{id}",
                    get(move |headers: HeaderMap| {
                        seen.lock().unwrap().push(headers);
                        async { "7 in stock" }
                    }),
                )
                .route(
                    "/fail",
                    get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
                )
                .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
                .layer(multiweb_telemetry::http::layer())
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            let (dispatch, guard) = telemetry(&name).build_dispatch().unwrap();
            let runtime = current_thread();
            tracing::dispatcher::with_default(&dispatch, || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    bound.send(listener.local_addr().unwrap()).unwrap();
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .unwrap();
                });
            });
            drop(runtime);
            drop(dispatch);
            drop(guard); // exports the service's spans
        });
        let addr = addr.recv().expect("the called service listens");
        Self {
            addr,
            seen,
            stop,
            thread,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the service, once its spans are exported; returns the headers
    /// of every request it received.
    pub(crate) fn stop(self) -> Vec<HeaderMap> {
        let _ = self.stop.send(());
        self.thread.join().expect("the called service stops");
        self.seen.lock().unwrap().clone()
    }
}

/// The calling service's telemetry and runtime, on the test's thread.
/// Dropping it exports its spans (the runtime goes first, closing the
/// clients' connections).
pub(crate) struct Caller {
    runtime: tokio::runtime::Runtime,
    dispatch: tracing::Dispatch,
    _guard: multiweb_telemetry::TelemetryGuard,
}

impl Caller {
    pub(crate) fn new(builder: TelemetryBuilder) -> Self {
        let (dispatch, guard) = builder.build_dispatch().unwrap();
        Self {
            runtime: current_thread(),
            dispatch,
            _guard: guard,
        }
    }

    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _default = tracing::dispatcher::set_default(&self.dispatch);
        self.runtime.block_on(future)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Flavour {
    /// `reqwest_middleware` with `client::middleware()`.
    Reqwest,
    /// hyper-util's legacy client under `client::layer()`.
    Hyper,
}

pub(crate) const FLAVOURS: [Flavour; 2] = [Flavour::Reqwest, Flavour::Hyper];

pub(crate) type HyperService = ClientService<HyperClient<HttpConnector, Empty<Bytes>>>;

#[derive(Clone)]
pub(crate) enum Client {
    Reqwest(reqwest_middleware::ClientWithMiddleware),
    Hyper(Box<HyperService>),
}

pub(crate) fn bare_reqwest() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl Client {
    pub(crate) fn new(flavour: Flavour) -> Self {
        match flavour {
            Flavour::Reqwest => Self::Reqwest(
                reqwest_middleware::ClientBuilder::new(bare_reqwest())
                    .with(multiweb_telemetry::client::middleware())
                    .build(),
            ),
            Flavour::Hyper => Self::Hyper(Box::new(
                multiweb_telemetry::client::layer()
                    .layer(HyperClient::builder(TokioExecutor::new()).build_http()),
            )),
        }
    }

    /// Calls `url`: the status and the body, or the error.
    pub(crate) async fn call(&self, method: &str, url: &str) -> Result<(u16, String), String> {
        match self {
            Self::Reqwest(client) => {
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let response = client
                    .request(method, url)
                    .header("authorization", format!("Bearer {SECRET}"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                Ok((status, response.text().await.map_err(|e| e.to_string())?))
            }
            Self::Hyper(client) => {
                let request = Request::builder()
                    .method(method)
                    .uri(url)
                    .header("authorization", format!("Bearer {SECRET}"))
                    .body(Empty::new())
                    .unwrap();
                let response = (**client)
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((
                    status,
                    String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                ))
            }
        }
    }
}

/// The calling service: `/checkout` GETs each of `urls` through `client`,
/// and answers what it got, `; `-separated.
pub(crate) fn caller_app(client: Client, urls: Vec<String>) -> Router {
    Router::new()
        .route(
            "/checkout",
            get(move || {
                let (client, urls) = (client.clone(), urls.clone());
                async move {
                    let mut answers = Vec::new();
                    for url in &urls {
                        answers.push(match client.call("GET", url).await {
                            Ok((status, body)) => format!("{status} {body}"),
                            Err(error) => format!("error: {error}"),
                        });
                    }
                    answers.join("; ")
                }
            }),
        )
        .layer(multiweb_telemetry::http::layer())
}

/// Sends `GET /checkout` with `headers` to `app`; the body it answered.
pub(crate) async fn checkout(app: Router, headers: &[(&str, &str)]) -> String {
    let mut request = Request::get("/checkout");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A URL on 127.0.0.1 where nothing listens.
pub(crate) fn refused_url() -> String {
    format!(
        "http://127.0.0.1:{}/api/v1/stock/7",
        multiweb_tests::free_port()
    )
}

pub(crate) fn of_service<'a>(spans: &'a [ExportedSpan], name: &str) -> Vec<&'a ExportedSpan> {
    let name = format!("Str({name})");
    spans
        .iter()
        .filter(|s| s.resource_attribute("service.name") == Some(&name[..]))
        .collect()
}

/// Waits until the collector has `count` spans of service `name`.
pub(crate) fn spans_of(name: &str, count: usize) -> Vec<ExportedSpan> {
    let spans = collector().wait_for(|spans| of_service(spans, name).len() >= count);
    of_service(&spans, name).into_iter().cloned().collect()
}

pub(crate) fn one<'a>(spans: &'a [ExportedSpan], kind: &str) -> &'a ExportedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.kind == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} span in {spans:#?}");
    found[0]
}

pub(crate) fn sorted_attributes(span: &ExportedSpan) -> Vec<(String, String)> {
    let mut attributes = span.attributes.clone();
    attributes.sort();
    attributes
}

pub(crate) fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
