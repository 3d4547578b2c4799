//! The request span behaves like every other `tracing` span: a differential
//! conformance test.
//!
//! Each scenario is a handler doing what a `tracing-opentelemetry` user
//! does with the current span. Each runs under three subscribers that
//! `init` can build: the default, `bridge_request_spans(true)` (the
//! reference: the bridge makes the request span like any other), and
//! `bridge_request_spans(false)` (the opt-in direct path). Spans go to a real
//! collector (rotel, started once for this binary); logs to a buffer. Each
//! run is reduced to what a user would look at, with ids replaced by the
//! names of the spans they belong to: the exported span tree (names, kinds,
//! parents, attributes, status, links), the log lines, and what the handler
//! answered.
//!
//! The default must give exactly what the reference gives, in every
//! scenario, and what the scenario expects. The direct path gives the same
//! but in the scenarios [`DIRECT_DIFFERS`] lists, its documented limits;
//! the test fails if that list is wrong either way.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use multiweb_telemetry::{OtlpProtocol, Telemetry, TraceSampler};
use multiweb_tests::{Collector, ExportedSpan, LogBuffer as Logs};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tower::ServiceExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The scenarios in which the direct path differs from the bridge: its
/// documented limits (`TelemetryBuilder::bridge_request_spans`, the `http`
/// module's docs).
const DIRECT_DIFFERS: &[&str] = &[
    "span_ext_context",
    "span_ext_set_attribute",
    "span_ext_set_parent",
    "span_ext_add_link",
    "explicit_parent",
    "rust_log_request_field",
];

/// A caller's trace, continued by the `traceparent` scenario.
const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";
/// The span context the `span_ext_add_link` scenario links to.
const LINKED_TRACE: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
const LINKED_SPAN: u64 = 0xb7ad_6b71_6920_3331;

struct Scenario {
    name: &'static str,
    /// The `RUST_LOG` directives, when not `info`.
    filter: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    /// Lines the default path's outcome must contain.
    expect: &'static [&'static str],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "instrument_child",
        filter: None,
        headers: &[],
        expect: &[
            "span child_work kind=SPAN_KIND_INTERNAL status=STATUS_CODE_UNSET parent=GET /s/instrument_child",
            "log in child_work: level=info message=\"working\" span=child_work trace=ours",
        ],
    },
    Scenario {
        name: "span_ext_context",
        filter: None,
        headers: &[],
        expect: &["answer: ours-GET /s/span_ext_context"],
    },
    Scenario {
        name: "current_context",
        filter: None,
        headers: &[],
        expect: &["answer: ours-GET /s/current_context"],
    },
    Scenario {
        name: "span_ext_set_attribute",
        filter: None,
        headers: &[],
        expect: &["attribute app.flavour=Str(set in the handler)"],
    },
    Scenario {
        name: "span_ext_set_parent",
        filter: None,
        headers: &[],
        // An entered span has started: like every `tracing` span.
        expect: &["answer: Err(AlreadyStarted)"],
    },
    Scenario {
        name: "span_ext_add_link",
        filter: None,
        headers: &[],
        expect: &["link 0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"],
    },
    Scenario {
        name: "explicit_parent",
        filter: None,
        headers: &[],
        expect: &[
            "span explicit_child kind=SPAN_KIND_INTERNAL status=STATUS_CODE_UNSET parent=GET /s/explicit_parent",
        ],
    },
    Scenario {
        name: "in_current_span",
        filter: None,
        headers: &[],
        expect: &[
            "span spawned_child kind=SPAN_KIND_INTERNAL status=STATUS_CODE_UNSET parent=GET /s/in_current_span",
            "log in spawned_child: level=info message=\"in a task\" span=spawned_child trace=ours",
        ],
    },
    Scenario {
        name: "server_error",
        filter: None,
        headers: &[],
        expect: &[
            "span GET /s/server_error kind=SPAN_KIND_SERVER status=STATUS_CODE_ERROR parent=root",
            "attribute http.response.status_code=Int(500)",
        ],
    },
    Scenario {
        name: "otel_status_code",
        filter: None,
        headers: &[],
        expect: &[
            "span GET /s/otel_status_code kind=SPAN_KIND_SERVER status=STATUS_CODE_ERROR parent=root",
        ],
    },
    Scenario {
        name: "recorded_fields",
        filter: None,
        headers: &[("x-user-id", "u-17")],
        expect: &[
            "attribute user_id=Str(u-17)",
            "attribute error=Str(out of stock)",
        ],
    },
    Scenario {
        name: "error_event",
        filter: None,
        headers: &[],
        // The guide's scenario 2: both error lines show a path and an error.
        expect: &[
            r#"log fields {"error":"payment declined","http.request.method":"GET","http.route":"/s/error_event","path":"/s/error_event","target":"request_span","url.path":"/s/error_event"} in GET /s/error_event"#,
            r#"log fields {"error":"payment declined","http.request.method":"GET","http.route":"/s/error_event","method":"GET","path":"/s/error_event","status":502,"target":"multiweb_telemetry::http","url.path":"/s/error_event"} in GET /s/error_event"#,
        ],
    },
    Scenario {
        name: "no_route",
        filter: None,
        headers: &[],
        // No route matched: every line in the request has the raw path.
        expect: &[
            r#"log fields {"http.request.method":"GET","path":"/s/no_route","target":"request_span","url.path":"/s/no_route"} in GET"#,
        ],
    },
    Scenario {
        name: "panic",
        filter: None,
        headers: &[],
        expect: &[
            "span GET /s/panic kind=SPAN_KIND_SERVER status=STATUS_CODE_ERROR parent=root",
            "attribute error=Str(handler exploded)",
        ],
    },
    Scenario {
        name: "traceparent",
        filter: None,
        headers: &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
        expect: &[
            "span GET /s/traceparent kind=SPAN_KIND_SERVER status=STATUS_CODE_UNSET parent=remote",
        ],
    },
    Scenario {
        name: "inject_context",
        filter: None,
        headers: &[],
        expect: &["answer: 00-ours-GET /s/inject_context-01"],
    },
    Scenario {
        name: "rust_log_request_span",
        filter: Some("warn,[HTTP request]=info"),
        headers: &[],
        expect: &[
            "log in GET /s/rust_log_request_span: level=info message=\"inside the request\" span=GET /s/rust_log_request_span trace=ours",
        ],
    },
    Scenario {
        name: "rust_log_request_field",
        filter: Some("warn,[HTTP request{http.route=/s/rust_log_request_field}]=info"),
        headers: &[],
        expect: &[
            "log in GET /s/rust_log_request_field: level=info message=\"inside the request\" span=GET /s/rust_log_request_field trace=ours",
        ],
    },
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Default,
    Bridged,
    Direct,
}

/// The binary's collector. Each test holds it while it runs, so that the
/// tests running at once share one.
fn collector() -> std::sync::Arc<Collector> {
    Collector::shared()
}

#[tracing::instrument]
async fn child_work() {
    tracing::info!("working");
}

fn ids(cx: &opentelemetry::Context) -> String {
    let span = cx.span();
    let ids = span.span_context();
    format!("{}-{}", ids.trace_id(), ids.span_id())
}

fn app() -> Router {
    span_ext_routes()
        .merge(other_routes())
        // The `no_route` scenario: no route matches, so lines carry the
        // raw path.
        .fallback(|| async {
            tracing::info!("no route here");
            StatusCode::NOT_FOUND
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            multiweb_telemetry::http::panic_response,
        ))
        .layer(multiweb_telemetry::http::layer())
}

/// The scenarios that use `OpenTelemetrySpanExt` or `trace::current_context`.
fn span_ext_routes() -> Router {
    Router::new()
        .route(
            "/s/instrument_child",
            get(|| async {
                child_work().await;
                ""
            }),
        )
        .route(
            "/s/span_ext_context",
            get(|| async { ids(&tracing::Span::current().context()) }),
        )
        .route(
            "/s/current_context",
            get(|| async { ids(&multiweb_telemetry::trace::current_context()) }),
        )
        .route(
            "/s/span_ext_set_attribute",
            get(|| async {
                tracing::Span::current().set_attribute("app.flavour", "set in the handler");
                ""
            }),
        )
        .route(
            "/s/span_ext_set_parent",
            get(|| async {
                let remote = SpanContext::new(
                    TraceId::from(LINKED_TRACE),
                    SpanId::from(LINKED_SPAN),
                    TraceFlags::SAMPLED,
                    true,
                    TraceState::default(),
                );
                let cx = opentelemetry::Context::new().with_remote_span_context(remote);
                format!("{:?}", tracing::Span::current().set_parent(cx))
            }),
        )
        .route(
            "/s/span_ext_add_link",
            get(|| async {
                tracing::Span::current().add_link(SpanContext::new(
                    TraceId::from(LINKED_TRACE),
                    SpanId::from(LINKED_SPAN),
                    TraceFlags::SAMPLED,
                    true,
                    TraceState::default(),
                ));
                ""
            }),
        )
}

/// The other scenarios, and a route with two methods.
fn other_routes() -> Router {
    Router::new()
        .route(
            "/s/explicit_parent",
            get(|| async {
                let request = tracing::Span::current();
                // A task not spawned in the request span: only the explicit
                // parent ties its span to the request.
                tokio::spawn(async move {
                    let child = tracing::info_span!(parent: &request, "explicit_child");
                    child.in_scope(|| tracing::info!("explicitly a child"));
                })
                .await
                .unwrap();
                ""
            }),
        )
        .route(
            "/s/in_current_span",
            get(|| async {
                let task = async {
                    tracing::info_span!("spawned_child").in_scope(|| tracing::info!("in a task"));
                };
                tokio::spawn(task.in_current_span()).await.unwrap();
                ""
            }),
        )
        .route(
            "/s/server_error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/s/otel_status_code",
            get(|| async {
                tracing::Span::current().record("otel.status_code", "ERROR");
                ""
            }),
        )
        .route(
            "/s/recorded_fields",
            get(|headers: axum::http::HeaderMap| async move {
                if let Some(id) = headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
                    multiweb_telemetry::http::record_user_id(id);
                }
                tracing::Span::current().record("error", "out of stock");
                tracing::error!("could not reserve");
                (StatusCode::SERVICE_UNAVAILABLE, "")
            }),
        )
        .route(
            "/s/error_event",
            get(|| async {
                tracing::error!(error = "payment declined", "charge failed");
                (StatusCode::BAD_GATEWAY, "")
            }),
        )
        .route(
            "/s/panic",
            get(|| async {
                panic!("handler exploded");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route("/s/traceparent", get(|| async { "" }))
        .route(
            "/s/any",
            get(|| async {
                child_work().await;
                ""
            })
            .post(|| async { "" }),
        )
        .route(
            "/s/inject_context",
            get(|| async {
                let mut headers = axum::http::HeaderMap::new();
                multiweb_telemetry::trace::inject_context(&mut headers);
                headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/s/rust_log_request_span",
            get(|| async {
                tracing::info!("inside the request");
                ""
            }),
        )
        .route(
            "/s/rust_log_request_field",
            get(|| async {
                tracing::info!("inside the request");
                ""
            }),
        )
}

/// What one run of a scenario shows a user, ids replaced by span names.
#[derive(Debug, PartialEq)]
struct Outcome(Vec<String>);

impl Outcome {
    fn lines(&self) -> String {
        self.0.join("\n")
    }
}

/// What a run exported, logged and answered.
struct Run {
    spans: Vec<ExportedSpan>,
    logs: String,
    answers: Vec<String>,
}

impl Run {
    fn json(&self) -> Vec<serde_json::Value> {
        self.logs
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    fn access_lines(&self) -> Vec<serde_json::Value> {
        self.json()
            .into_iter()
            .filter(|line| line["target"] == "multiweb_telemetry::http")
            .collect()
    }

    fn named(&self, name: &str) -> Vec<&ExportedSpan> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }
}

/// Sends a request to `app` and returns the body it answered.
async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> String {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A request to send: method, URI and headers.
type Send<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Sends `requests` (method, URI, headers) to [`app`] under the dispatch
/// `builder` makes, exporting to the collector as service `service`, and
/// calls `between` after each; returns what came out.
fn run_requests(
    service: &str,
    builder: multiweb_telemetry::TelemetryBuilder,
    requests: &[Send<'_>],
    between: impl Fn(),
) -> Run {
    let collector = collector();
    let logs = Logs::default();
    let (dispatch, guard) = builder
        .service_name(service)
        .log_writer(logs.clone())
        .otlp_endpoint(format!("http://{}", collector.grpc))
        .otlp_protocol(OtlpProtocol::Grpc)
        .sampler(TraceSampler::AlwaysOn)
        .build_dispatch()
        .unwrap();
    // One thread: spawned tasks run under the thread's default subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut answers = Vec::new();
    {
        let _default = tracing::dispatcher::set_default(&dispatch);
        for &(method, uri, headers) in requests {
            answers.push(runtime.block_on(send(&app(), method, uri, headers)));
            between();
        }
        // Exported after the requests' spans: once the collector shows
        // it, it shows them all.
        tracing::warn_span!("sentinel").in_scope(|| {});
    }
    drop(runtime);
    drop(dispatch);
    drop(guard); // exports what is queued, writes out the log lines
    let ours = format!("Str({service})");
    let ours = |s: &ExportedSpan| s.resource_attribute("service.name") == Some(&ours[..]);
    let spans = collector
        .wait_for(|spans| spans.iter().any(|s| s.name == "sentinel" && ours(s)))
        .into_iter()
        .filter(|s| s.name != "sentinel" && ours(s))
        .collect();
    let logs = logs.text();
    Run {
        spans,
        logs,
        answers,
    }
}

/// Runs `scenario` on `path` and returns what it shows.
fn run(scenario: &Scenario, path: Path) -> Outcome {
    let mut builder = Telemetry::builder().log_filter(scenario.filter.unwrap_or("info"));
    builder = match path {
        Path::Default => builder,
        Path::Bridged => builder.bridge_request_spans(true),
        Path::Direct => builder.bridge_request_spans(false),
    };
    let uri = format!("/s/{}", scenario.name);
    let run = run_requests(
        &format!("conformance-{}-{path:?}", scenario.name),
        builder,
        &[("GET", &uri, scenario.headers)],
        || {},
    );
    describe(&run.spans, &run.logs, &run.answers[0])
}

/// The run reduced to sorted lines: spans, their attributes and links, log
/// lines and the answer, every id replaced by the name of its span (`ours`
/// for the request span's trace, `remote` for the caller's).
fn describe(spans: &[ExportedSpan], logs: &str, answer: &str) -> Outcome {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for span in spans {
        names.insert(span.span_id.clone(), span.name.clone());
        // Only the request's trace is ours: a span that started a trace of
        // its own shows as "in another trace".
        if span.kind == "SPAN_KIND_SERVER" {
            names.insert(span.trace_id.clone(), "ours".to_owned());
        }
    }
    names.insert(REMOTE_TRACE.to_owned(), "remote".to_owned());
    names.insert(REMOTE_SPAN.to_owned(), "remote".to_owned());
    let name_of = |id: &str| {
        names.get(id).cloned().unwrap_or_else(|| {
            if id.is_empty() {
                "root".to_owned()
            } else {
                id.to_owned()
            }
        })
    };
    let mut lines = Vec::new();
    for span in spans {
        lines.push(format!(
            "span {} kind={} status={} parent={}",
            span.name,
            span.kind,
            span.status,
            name_of(&span.parent_id)
        ));
        if name_of(&span.trace_id) != "ours" && name_of(&span.trace_id) != "remote" {
            lines.push(format!("span {} in another trace", span.name));
        }
        for (key, value) in &span.attributes {
            lines.push(format!("attribute {key}={value} on {}", span.name));
            // Also without the span, for the expectations.
            lines.push(format!("attribute {key}={value}"));
        }
        for (trace, id) in &span.links {
            lines.push(format!("link {trace}-{id}"));
        }
    }
    for line in logs.lines() {
        let mut json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        json.remove("timestamp");
        let trace = json
            .remove("trace_id")
            .map_or("none".to_owned(), |id| name_of(id.as_str().unwrap()));
        let span = json
            .remove("span_id")
            .map_or("none".to_owned(), |id| name_of(id.as_str().unwrap()));
        json.remove("duration");
        let message = json.remove("message").unwrap_or_default();
        let message = message.as_str().unwrap_or_default();
        let message = match message.split_once(" duration=") {
            Some((head, _)) => format!("{head} duration=D"),
            None => message.to_owned(),
        };
        let level = json.remove("level").unwrap_or_default();
        lines.push(format!(
            "log in {span}: level={} message={message:?} span={span} trace={trace}",
            level.as_str().unwrap_or_default()
        ));
        lines.push(format!(
            "log fields {} in {span}",
            serde_json::Value::Object(json)
        ));
    }
    let answer = answer
        .split('-')
        .map(|part| {
            if part.is_empty() {
                String::new()
            } else {
                name_of(part)
            }
        })
        .collect::<Vec<_>>()
        .join("-");
    lines.push(format!("answer: {answer}"));
    lines.sort();
    Outcome(lines)
}

#[test]
fn the_default_request_span_behaves_like_every_tracing_span() {
    let _collector = collector();
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let reference = run(scenario, Path::Bridged);
        let default = run(scenario, Path::Default);
        let direct = run(scenario, Path::Direct);
        if std::env::var_os("SHOW_OUTCOMES").is_some() {
            eprintln!(
                "=== {} default\n{}\n=== direct\n{}",
                scenario.name,
                default.lines(),
                direct.lines()
            );
        }
        if default != reference {
            failures.push(format!(
                "{}: the default differs from the bridge\n--- default\n{}\n--- bridge\n{}",
                scenario.name,
                default.lines(),
                reference.lines()
            ));
        }
        for expected in scenario.expect {
            if !default.0.iter().any(|line| line == expected) {
                failures.push(format!(
                    "{}: the default lacks {expected:?}\n{}",
                    scenario.name,
                    default.lines()
                ));
            }
        }
        let differs = direct != reference;
        if differs != DIRECT_DIFFERS.contains(&scenario.name) {
            failures.push(format!(
                "{}: the direct path {} the bridge, but DIRECT_DIFFERS says otherwise\n--- direct\n{}\n--- bridge\n{}",
                scenario.name,
                if differs { "differs from" } else { "matches" },
                direct.lines(),
                reference.lines()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// On the direct path, later requests of a route share what its first one
/// made (span name, `http.route` value, log fields); another method has
/// its own.
#[test]
fn the_direct_path_gives_each_request_of_a_route_its_name_and_fields() {
    let _collector = collector();
    let run = run_requests(
        "direct-route-cache",
        Telemetry::builder().bridge_request_spans(false),
        &[
            ("GET", "/s/any", &[]),
            ("GET", "/s/any?page=2", &[]),
            ("POST", "/s/any", &[]),
        ],
        || {},
    );
    let servers: Vec<_> = run
        .spans
        .iter()
        .filter(|s| s.kind == "SPAN_KIND_SERVER")
        .collect();
    let names: Vec<_> = servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["GET /s/any", "GET /s/any", "POST /s/any"]);
    for (server, method) in servers.iter().zip(["GET", "GET", "POST"]) {
        assert_eq!(
            server.attribute("http.request.method"),
            Some(&format!("Str({method})")[..])
        );
        assert_eq!(server.attribute("http.route"), Some("Str(/s/any)"));
        assert_eq!(server.attribute("url.path"), Some("Str(/s/any)"));
    }
    let access = run.access_lines();
    assert_eq!(access.len(), 3);
    for (line, method) in access.iter().zip(["GET", "GET", "POST"]) {
        assert_eq!(line["http.request.method"], method, "{line}");
        assert_eq!(line["http.route"], "/s/any", "{line}");
        assert_eq!(line["url.path"], "/s/any", "{line}");
    }
}

/// Writing the access line without dispatching an event must leave no
/// per-layer filter state behind (an `enabled!` check records which
/// filters said no, and only a dispatched event clears that,
/// tokio-rs/tracing#2519): the spans opened next on the same thread (a job
/// between requests, the next requests' handler spans) are exported and
/// parented, on both paths. And log events never reach the bridge as span
/// events.
#[test]
fn spans_after_an_access_line_are_all_exported() {
    let _collector = collector();
    for (service, builder) in [
        ("after-access-default", Telemetry::builder()),
        (
            "after-access-direct",
            Telemetry::builder().bridge_request_spans(false),
        ),
    ] {
        let run = run_requests(
            service,
            builder,
            &[("GET", "/s/instrument_child", &[] as &[(&str, &str)]); 3],
            || {
                // The application's own check leaves no mark either.
                assert!(tracing::enabled!(tracing::Level::INFO));
                tracing::info_span!("between_requests").in_scope(|| {});
            },
        );
        let servers = run.named("GET /s/instrument_child");
        let handlers = run.named("child_work");
        assert_eq!(servers.len(), 3, "{service}: {:#?}", run.spans);
        assert_eq!(handlers.len(), 3, "{service}: {:#?}", run.spans);
        for handler in handlers {
            assert_eq!(handler.events, 0, "the handler's log line is no span event");
            assert!(
                servers
                    .iter()
                    .any(|server| server.span_id == handler.parent_id),
                "{service}: {handler:#?}"
            );
        }
        assert_eq!(run.named("between_requests").len(), 3, "{service}");
        assert_eq!(run.access_lines().len(), 3, "{service}");
    }
}

/// `RUST_LOG` decides the access line written without an event: a level it
/// filters out writes nothing, one it lets through writes the line with its
/// ids.
#[test]
fn the_log_filter_still_decides_access_lines() {
    let logs = Logs::default();
    let (dispatch, guard) = Telemetry::builder()
        .log_writer(logs.clone())
        .log_filter("info")
        .build_dispatch()
        .unwrap();
    let app = Router::new()
        .route("/ok", get(|| async { "" }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(multiweb_telemetry::http::layer().access_log_levels(
            tracing::Level::DEBUG,
            tracing::Level::WARN,
            tracing::Level::ERROR,
        ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        for uri in ["/ok", "/missing"] {
            runtime.block_on(send(&app, "GET", uri, &[]));
        }
    });
    drop(dispatch);
    drop(guard); // writes out the buffered lines
    let text = logs.text();
    let access: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(access.len(), 1, "{text}");
    assert_eq!(access[0]["status"], 404);
    assert_eq!(access[0]["level"], "warn");
    assert_eq!(access[0]["trace_id"].as_str().map(str::len), Some(32));
}

/// With the SDK disabled (`OTEL_SDK_DISABLED=true`) no OpenTelemetry span
/// exists: a request without `traceparent` and lines outside requests
/// carry no ids and propagate nothing; an incoming `traceparent` passes
/// through unchanged (its ids on the request's lines, and on to the calls
/// it makes), as the OpenTelemetry API does without an SDK. The access line
/// is the same as with the SDK on, but for the ids.
#[test]
fn with_the_sdk_disabled_no_span_exists_and_a_traceparent_passes_through() {
    let logs = Logs::default();
    let (dispatch, guard) = Telemetry::builder()
        .log_writer(logs.clone())
        .disabled(true)
        .build_dispatch()
        .unwrap();
    let app = pass_through_app();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let send =
        |uri: &str, headers: &[(&str, &str)]| runtime.block_on(send(&app, "GET", uri, headers));
    let (trace_id, caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let parent = format!("00-{trace_id}-{caller}-01");
    tracing::dispatcher::with_default(&dispatch, || {
        assert_eq!(
            send("/outgoing", &[("traceparent", &parent)]),
            parent,
            "the caller's context, unchanged"
        );
        assert_eq!(send("/outgoing", &[]), "", "no context to propagate");
        send("/products", &[("x-user-id", "7")]);
        tracing::info_span!("job").in_scope(|| {
            let cx = multiweb_telemetry::trace::current_context();
            assert!(!cx.span().span_context().is_valid());
            tracing::info!("inside a job");
        });
    });
    drop(dispatch);
    drop(guard); // writes out the buffered lines
    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "{lines:#?}");
    for line in &lines {
        let keys = line.as_object().unwrap().keys();
        let ours = |key: &&String| key.starts_with("otel.") || *key == "http.response.status_code";
        assert_eq!(keys.filter(ours).count(), 0, "{line}");
    }
    let (traced, untraced) = lines.split_at(2);
    for line in traced {
        assert_eq!(line["trace_id"], trace_id, "{line}");
        assert_eq!(line["span_id"], caller, "{line}");
    }
    for line in untraced {
        assert!(line.get("trace_id").is_none(), "{line}");
        assert!(line.get("span_id").is_none(), "{line}");
    }
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "multiweb_telemetry::http")
        .collect();
    assert_eq!(access.len(), 3, "{access:#?}");
    assert_eq!(access[2]["status"], 200);
    assert_eq!(access[2]["user_id"], "7");
    assert_eq!(access[2]["http.route"], "/products");
    let handler = lines
        .iter()
        .find(|l| l["message"] == "listing products")
        .expect("the handler's line");
    assert_eq!(handler["http.route"], "/products");
    assert_eq!(handler["user_id"], "7");
}

/// Routes for the SDK-disabled test: an outgoing call's `traceparent`, and
/// a handler that logs and records a user id.
fn pass_through_app() -> Router {
    Router::new()
        .route(
            "/outgoing",
            get(|| async {
                let mut headers = axum::http::HeaderMap::new();
                // In a span of the handler's own, which no bridge sees.
                tracing::info_span!("call").in_scope(|| {
                    multiweb_telemetry::trace::inject_context(&mut headers);
                    tracing::info!("calling out");
                });
                headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/products",
            get(|headers: axum::http::HeaderMap| async move {
                if let Some(id) = headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
                    multiweb_telemetry::http::record_user_id(id);
                }
                tracing::info!("listing products");
                ""
            }),
        )
        .layer(multiweb_telemetry::http::layer())
}

/// The request span ends when the response body has been sent, as
/// `http_request_duration_seconds` measures, not when the handler returns:
/// a span opened between the response's headers and its body starts before
/// the request span ends, on both paths.
#[test]
fn the_request_span_covers_the_response_body() {
    let collector = collector();
    for (service, builder) in [
        ("body-default", Telemetry::builder()),
        (
            "body-direct",
            Telemetry::builder().bridge_request_spans(false),
        ),
    ] {
        let (dispatch, guard) = builder
            .service_name(service)
            .log_writer(std::io::sink())
            .otlp_endpoint(format!("http://{}", collector.grpc))
            .otlp_protocol(OtlpProtocol::Grpc)
            .sampler(TraceSampler::AlwaysOn)
            .build_dispatch()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(async {
                let response = app()
                    .oneshot(Request::get("/s/traceparent").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                tracing::warn_span!("between_headers_and_body").in_scope(|| {});
                response.into_body().collect().await.unwrap();
            });
            tracing::warn_span!("sentinel").in_scope(|| {});
        });
        drop(dispatch);
        drop(guard);
        let ours = format!("Str({service})");
        let ours = |s: &ExportedSpan| s.resource_attribute("service.name") == Some(&ours[..]);
        let spans =
            collector.wait_for(|spans| spans.iter().any(|s| s.name == "sentinel" && ours(s)));
        let find = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name && ours(s))
                .unwrap_or_else(|| panic!("{service}: no {name} in {spans:#?}"))
        };
        let server = find("GET /s/traceparent");
        let between = find("between_headers_and_body");
        assert!(
            server.end_time >= between.start_time,
            "{service}: the request span ended at {} before the body was sent ({})",
            server.end_time,
            between.start_time
        );
    }
}
