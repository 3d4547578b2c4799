//! Outgoing calls (feature `client`), through the tower layer on hyper's
//! client and through the reqwest middleware, as a user looks at them: the
//! span tree of two services in a real collector (rotel, started once for
//! this binary), the `traceparent` the called service received, the exact
//! `http_client_request_duration_seconds` series, and failed calls.
//!
//! Each test runs the called service on a thread of its own, with its own
//! runtime and telemetry (a service of its own name), and the calling
//! service on the test's thread, under a dispatch of its own.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use multiweb_telemetry::testing::{Exposition, MetricsCapture};
use tower::{Layer, ServiceExt};

use support::{
    Callee, Caller, Client, DURATION_COUNT, FLAVOURS, Flavour, REMOTE_SPAN, REMOTE_TRACE, SECRET,
    TRACESTATE, bare_reqwest, caller_app, checkout, collector, one, pairs, refused_url,
    sorted_attributes, spans_of, telemetry,
};

/// SERVER → CLIENT → SERVER across two services under one trace id: the
/// call's span is a child of the request span that made the call (on the
/// default path and on the opt-in direct path), the called service's
/// request span a child of the call's, which is the parent its
/// `traceparent` named; `tracestate` goes along. The CLIENT span carries
/// the attributes of the contract, its `url.full` with neither the userinfo
/// nor the query string.
#[test]
fn a_call_inside_a_request_continues_its_trace_in_the_called_service() {
    let _collector = collector();
    let runs = [
        (Flavour::Reqwest, false),
        (Flavour::Hyper, false),
        (Flavour::Reqwest, true),
    ];
    for (flavour, direct) in runs {
        let name = format!("client-trace-{flavour:?}-direct-{direct}");
        let inventory = Callee::start(&format!("{name}-inventory"));
        let port = inventory.addr.port();
        let url = match flavour {
            Flavour::Reqwest => {
                format!("http://user:{SECRET}@127.0.0.1:{port}/api/v1/stock/7?token={SECRET}#top")
            }
            // http::Uri takes no fragment.
            Flavour::Hyper => format!("http://127.0.0.1:{port}/api/v1/stock/7?token={SECRET}"),
        };
        let caller = Caller::new(telemetry(&name).bridge_request_spans(!direct));
        let traceparent = format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01");
        let answer = caller.block_on(checkout(
            caller_app(Client::new(flavour), vec![url]),
            &[("traceparent", &traceparent), ("tracestate", TRACESTATE)],
        ));
        assert_eq!(answer, "200 7 in stock", "{name}");
        drop(caller);
        let seen = inventory.stop();

        let ours = spans_of(&name, 2);
        let theirs = spans_of(&format!("{name}-inventory"), 1);
        let server = one(&ours, "SPAN_KIND_SERVER");
        let client = one(&ours, "SPAN_KIND_CLIENT");
        let inventory_span = one(&theirs, "SPAN_KIND_SERVER");
        assert_eq!(ours.len(), 2, "{name}: {ours:#?}");
        assert_eq!(server.name, "GET /checkout");
        assert_eq!(
            (&server.trace_id[..], &server.parent_id[..]),
            (REMOTE_TRACE, REMOTE_SPAN)
        );
        assert_eq!(client.name, "GET", "{name}");
        assert_eq!(client.trace_id, REMOTE_TRACE, "{name}");
        assert_eq!(client.parent_id, server.span_id, "{name}: {ours:#?}");
        assert_eq!(client.status, "STATUS_CODE_UNSET", "{name}");
        let port_value = format!("Int({port})");
        let url_value = format!("Str(http://127.0.0.1:{port}/api/v1/stock/7)");
        assert_eq!(
            sorted_attributes(client),
            pairs(&[
                ("http.request.method", "Str(GET)"),
                ("http.response.status_code", "Int(200)"),
                ("server.address", "Str(127.0.0.1)"),
                ("server.port", &port_value),
                ("url.full", &url_value),
            ]),
            "{name}"
        );
        assert_eq!(inventory_span.name, "GET /api/v1/stock/{id}", "{name}");
        assert_eq!(inventory_span.trace_id, REMOTE_TRACE, "{name}");
        assert_eq!(inventory_span.parent_id, client.span_id, "{name}");

        assert_eq!(seen.len(), 1, "{name}");
        let header = |key: &str| seen[0].get(key).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            header("traceparent"),
            Some(format!("00-{REMOTE_TRACE}-{}-01", client.span_id)),
            "{name}"
        );
        assert_eq!(header("tracestate").as_deref(), Some(TRACESTATE), "{name}");
        for span in ours.iter().chain(&theirs) {
            for (key, value) in &span.attributes {
                assert!(!value.contains(SECRET), "{name}: {key}={value}");
            }
        }
    }
}

/// `http_client_request_duration_seconds{method,server_address,status}`:
/// the host only (no port, path or query), the status code, `error` for a
/// refused connection; exactly these series, each a histogram with the
/// default buckets.
#[test]
fn calls_are_measured_by_method_server_address_and_status() {
    let _collector = collector();
    for flavour in FLAVOURS {
        let name = format!("client-metrics-{flavour:?}");
        let inventory = Callee::start(&format!("{name}-inventory"));
        let stock = format!("{}?token={SECRET}", inventory.url("/api/v1/stock/7"));
        let fail = inventory.url("/fail");
        let refused = refused_url();
        let capture = MetricsCapture::new();
        let caller = Caller::new(telemetry(&name));
        let client = Client::new(flavour);
        let answers = {
            let _recorder = capture.enter();
            caller.block_on(async {
                let mut answers = Vec::new();
                for (method, url) in [
                    ("GET", &stock),
                    ("GET", &stock),
                    ("GET", &fail),
                    ("GET", &refused),
                    ("POST", &stock),
                ] {
                    answers.push(client.call(method, url).await.map(|(status, _)| status));
                }
                answers
            })
        };
        assert_eq!(answers[..3], [Ok(200), Ok(200), Ok(503)], "{name}");
        assert!(answers[3].is_err(), "{name}: {answers:?}");
        assert_eq!(answers[4], Ok(405), "{name}");
        drop(caller);
        inventory.stop();

        let metrics = capture.exposition();
        let mut counts: Vec<_> = metrics
            .find(DURATION_COUNT, &[])
            .map(|sample| (sample.labels.clone(), sample.value))
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        let series = |method: &str, status: &str, count: f64| {
            (
                pairs(&[
                    ("method", method),
                    ("server_address", "127.0.0.1"),
                    ("status", status),
                ]),
                count,
            )
        };
        assert_eq!(
            counts,
            [
                series("GET", "200", 2.0),
                series("GET", "503", 1.0),
                series("GET", "error", 1.0),
                series("POST", "405", 1.0),
            ],
            "{name}"
        );
        assert_histogram(&metrics, &name);
    }
}

fn assert_histogram(metrics: &Exposition, name: &str) {
    assert_eq!(
        metrics.type_of("http_client_request_duration_seconds"),
        Some("histogram"),
        "{name}"
    );
    let ok = [
        ("method", "GET"),
        ("server_address", "127.0.0.1"),
        ("status", "200"),
    ];
    for le in ["0.5", "1", "+Inf"] {
        let labels = [ok.as_slice(), &[("le", le)]].concat();
        assert_eq!(
            metrics.value("http_client_request_duration_seconds_bucket", &labels),
            Some(2.0),
            "{name}: le={le}"
        );
    }
    let sum = metrics.value("http_client_request_duration_seconds_sum", &ok);
    assert!(sum.is_some_and(|sum| sum > 0.0), "{name}: {sum:?}");
}

/// A 5xx answer and a refused connection mark their CLIENT spans as
/// errors; the refused call's span has no status code.
#[test]
fn a_5xx_answer_and_a_refused_connection_are_span_errors() {
    let _collector = collector();
    for flavour in FLAVOURS {
        let name = format!("client-errors-{flavour:?}");
        let inventory = Callee::start(&format!("{name}-inventory"));
        let refused = refused_url();
        let refused_call = match flavour {
            Flavour::Reqwest => {
                refused.replace("http://", &format!("http://user:{SECRET}@"))
                    + &format!("?token={SECRET}")
            }
            Flavour::Hyper => format!("{refused}?token={SECRET}"),
        };
        let fail = inventory.url("/fail");
        let caller = Caller::new(telemetry(&name));
        let answer = caller.block_on(checkout(
            caller_app(Client::new(flavour), vec![fail.clone(), refused_call]),
            &[],
        ));
        assert!(answer.starts_with("503 down; error: "), "{name}: {answer}");
        drop(caller);
        inventory.stop();

        let ours = spans_of(&name, 3);
        let server = one(&ours, "SPAN_KIND_SERVER");
        let clients: Vec<_> = ours
            .iter()
            .filter(|s| s.kind == "SPAN_KIND_CLIENT")
            .collect();
        assert_eq!(clients.len(), 2, "{name}: {ours:#?}");
        for client in &clients {
            assert_eq!(client.status, "STATUS_CODE_ERROR", "{name}: {client:#?}");
            assert_eq!(client.parent_id, server.span_id, "{name}");
        }
        let fail_url = format!("Str({fail})");
        let failed = clients
            .iter()
            .find(|s| s.attribute("url.full") == Some(&fail_url[..]))
            .expect("the 503's span");
        assert_eq!(
            failed.attribute("http.response.status_code"),
            Some("Int(503)")
        );
        assert_eq!(failed.status_message, "", "{name}");
        let refused_value = format!("Str({refused})");
        let refused_span = clients
            .iter()
            .find(|s| s.attribute("url.full") == Some(&refused_value[..]))
            .expect("the refused call's span");
        assert_eq!(
            refused_span.attribute("http.response.status_code"),
            None,
            "{name}"
        );
        // The error's text: reqwest's with its sources and the URL without
        // its userinfo and query string; the tower layer's is the inner
        // service's error as it displays itself.
        let message = &refused_span.status_message;
        let expected = match flavour {
            Flavour::Reqwest => format!(
                "error sending request for url ({refused}): client error (Connect): tcp connect error: "
            ),
            Flavour::Hyper => "client error (Connect)".to_owned(),
        };
        assert!(message.starts_with(&expected), "{name}: {message}");
        assert!(!message.contains(SECRET), "{name}: {message}");
        assert_eq!(
            server.status, "STATUS_CODE_UNSET",
            "the caller answered 200"
        );
    }
}

/// The duration is recorded, and the span ends, when the response body
/// has been read to its end or dropped, not when the headers arrive: no
/// sample after the headers, and the span ends after a span the caller
/// opened and closed between the headers and the body. An empty body (a
/// 204) ends the call with its headers.
#[test]
fn a_call_ends_when_its_response_body_has_been_read_or_dropped() {
    let _collector = collector();
    for flavour in FLAVOURS {
        let name = format!("client-body-{flavour:?}");
        let inventory = Callee::start(&format!("{name}-inventory"));
        let url = inventory.url("/api/v1/stock/7");
        let no_content = inventory.url("/empty");
        let capture = MetricsCapture::new();
        let caller = Caller::new(telemetry(&name));
        let count = || {
            capture
                .exposition()
                .find(DURATION_COUNT, &[])
                .map(|s| s.value)
                .sum::<f64>()
        };
        let between = || tracing::info_span!("between_headers_and_body").in_scope(|| {});
        let counts = {
            let _recorder = capture.enter();
            caller.block_on(async {
                let mut counts = Vec::new();
                match Client::new(flavour) {
                    Client::Reqwest(client) => {
                        let response = client.get(&url).send().await.unwrap();
                        counts.push(count());
                        between();
                        assert_eq!(response.text().await.unwrap(), "7 in stock");
                        counts.push(count());
                        drop(client.get(&url).send().await.unwrap());
                        counts.push(count());
                        let empty = client.get(&no_content).send().await.unwrap();
                        counts.push(count());
                        drop(empty);
                    }
                    Client::Hyper(client) => {
                        let get = || Request::get(&url).body(Empty::new()).unwrap();
                        let response = (*client).clone().oneshot(get()).await.unwrap();
                        counts.push(count());
                        between();
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(body, "7 in stock");
                        counts.push(count());
                        drop((*client).clone().oneshot(get()).await.unwrap());
                        counts.push(count());
                        let empty = Request::get(&no_content).body(Empty::new()).unwrap();
                        let empty = (*client).clone().oneshot(empty).await.unwrap();
                        counts.push(count());
                        drop(empty);
                    }
                }
                counts
            })
        };
        assert_eq!(
            counts,
            [0.0, 1.0, 2.0, 3.0],
            "{name}: headers, body read, body dropped, an empty body's headers"
        );
        let metrics = capture.exposition();
        assert_eq!(
            metrics.value(DURATION_COUNT, &[("status", "200")]),
            Some(2.0),
            "{name}: a dropped body is counted with its status"
        );
        drop(caller);
        inventory.stop();

        let spans = spans_of(&name, 3);
        let between = spans
            .iter()
            .find(|s| s.name == "between_headers_and_body")
            .expect("the span between");
        let first = spans
            .iter()
            .filter(|s| s.kind == "SPAN_KIND_CLIENT")
            .min_by_key(|s| s.start_time)
            .expect("the first call's span");
        assert!(
            first.start_time < between.start_time && between.end_time < first.end_time,
            "{name}: the call's span covers the body: {first:#?} {between:#?}"
        );
    }
}

/// Through the middleware, reqwest's response is the one reqwest made: its
/// URL, remote address, content length, headers and body; and its errors
/// are unchanged too.
#[test]
fn the_middleware_leaves_reqwests_responses_and_errors_as_they_were() {
    let _collector = collector();
    let inventory = Callee::start("client-reqwest-unchanged-inventory");
    let url = format!("{}?page=2", inventory.url("/api/v1/stock/7"));
    let refused = refused_url();
    let caller = Caller::new(telemetry("client-reqwest-unchanged"));
    let Client::Reqwest(ours) = Client::new(Flavour::Reqwest) else {
        unreachable!()
    };
    let bare = bare_reqwest();
    caller.block_on(async {
        let theirs = bare.get(&url).send().await.unwrap();
        let mine = ours.get(&url).send().await.unwrap();
        assert_eq!(mine.url(), theirs.url());
        assert_eq!(mine.url().as_str(), url);
        assert_eq!(mine.status(), theirs.status());
        assert_eq!(mine.version(), theirs.version());
        assert_eq!(mine.remote_addr(), theirs.remote_addr());
        assert_eq!(mine.remote_addr(), Some(inventory.addr));
        assert_eq!(mine.content_length(), Some(10));
        assert_eq!(mine.content_length(), theirs.content_length());
        let names = |r: &reqwest::Response| {
            let mut names: Vec<_> = r.headers().keys().map(|k| k.as_str().to_owned()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&mine), names(&theirs));
        assert_eq!(mine.text().await.unwrap(), theirs.text().await.unwrap());

        let theirs = bare.get(&refused).send().await.unwrap_err();
        let mine = ours.get(&refused).send().await.unwrap_err();
        let reqwest_middleware::Error::Reqwest(mine) = mine else {
            panic!("a reqwest error: {mine:?}")
        };
        assert!(mine.is_connect() && theirs.is_connect());
        assert_eq!(mine.url(), theirs.url());
        assert_eq!(mine.to_string(), theirs.to_string());
    });
    drop(caller);
    inventory.stop();
}

/// With the SDK disabled there is no OpenTelemetry span: a call inside a
/// request that brought a `traceparent` passes the caller's on, unchanged,
/// as the OpenTelemetry API does without an SDK.
#[test]
fn with_the_sdk_disabled_a_call_passes_the_callers_traceparent_on() {
    let _collector = collector();
    for flavour in FLAVOURS {
        let inventory = Callee::start(&format!("client-disabled-{flavour:?}-inventory"));
        let caller = Caller::new(telemetry("client-disabled").disabled(true));
        let traceparent = format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01");
        let answer = caller.block_on(checkout(
            caller_app(Client::new(flavour), vec![inventory.url("/api/v1/stock/7")]),
            &[("traceparent", &traceparent)],
        ));
        assert_eq!(answer, "200 7 in stock");
        drop(caller);
        let seen = inventory.stop();
        assert_eq!(
            seen[0].get("traceparent").map(|v| v.to_str().unwrap()),
            Some(&traceparent[..]),
            "{flavour:?}"
        );
    }
}

type StdError = Box<dyn std::error::Error + Send + Sync>;

/// What a client generated by tonic asks of its transport, as its
/// generated code spells it.
fn takes_a_generated_client<T>(_: &T)
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<StdError>,
    T::ResponseBody: hyper::body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as hyper::body::Body>::Error: Into<StdError> + Send,
{
}

/// A tonic `Channel` under the layer is a transport a generated client
/// takes (`XClient::with_origin(layered, origin)`).
#[tokio::test]
async fn a_tonic_channel_under_the_layer_is_a_grpc_transport() {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
    takes_a_generated_client(&multiweb_telemetry::client::layer().layer(channel));
}
