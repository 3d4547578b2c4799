//! The guide's queries against a real Prometheus scraping the marketplace
//! example under its built-in demo load, and the exemplars that lead from
//! its latency buckets to traces in a real collector.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use multiweb_tests::guide::{
    GUIDE_QUERIES, Source, dashboard_exprs, deploy_file, for_short_test, with_bool,
};
use multiweb_tests::{Collector, ExportedSpan, Prometheus, start_marketplace};

/// Every query of the guide on the application's own series returns data
/// (thresholds asked with `bool`, see `with_bool`); the others, on the
/// exporters' series, only parse here (`database_stack.rs` answers them).
#[test]
fn the_guides_queries_return_data_from_a_real_prometheus() {
    let app = start_marketplace(&["--demo-load"], &[]);
    let prometheus = Prometheus::start(app.addr, None);
    // Two scrapes of a counter that moved give `rate` something to show.
    prometheus.wait_for_data(&for_short_test("sum(rate(http_requests_total[5m])) > 0"));
    prometheus.wait_for_data(&for_short_test(
        r#"sum(rate(http_requests_total{status=~"5.."}[5m])) > 0"#,
    ));
    std::thread::sleep(Duration::from_secs(2));

    let mut empty = Vec::new();
    for (expr, source) in GUIDE_QUERIES {
        let expr = with_bool(&for_short_test(expr));
        if *source == Source::App {
            if prometheus.series(&expr).is_empty() {
                empty.push(expr);
            }
        } else {
            let answer = prometheus.query(&expr);
            assert_eq!(answer["status"], "success", "{expr} ({source:?}): {answer}");
        }
    }
    assert!(
        empty.is_empty(),
        "queries that returned no data: {empty:#?}"
    );

    // Labels are what the guide's PromQL selects on.
    let by_status = prometheus.series(&for_short_test(
        "sum(rate(http_requests_total[5m])) by (status)",
    ));
    let statuses: Vec<&str> = by_status
        .iter()
        .filter_map(|s| s["metric"]["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"200") && statuses.contains(&"500"),
        "{statuses:?}"
    );
    let paths = prometheus.series("count by (path) (http_requests_total)");
    let paths: Vec<&str> = paths
        .iter()
        .filter_map(|s| s["metric"]["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/api/v1/products/{id}"),
        "templates, not raw paths: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("999")),
        "no raw ids in labels: {paths:?}"
    );
    let transactions = prometheus.series("multiweb_transactions_completed_total");
    let methods: Vec<&str> = transactions
        .iter()
        .filter_map(|s| s["metric"]["method"].as_str())
        .collect();
    assert!(
        methods.contains(&"card") && methods.contains(&"bank_transfer"),
        "{methods:?}"
    );
}

/// The shipped alert rules and dashboards against the real Prometheus: every
/// rule loads and evaluates, `HighErrorRate` becomes pending when the error
/// endpoint is hammered, and every dashboard query returns data except those
/// that need exporters the application is not.
#[test]
fn shipped_rules_and_dashboards_work_against_a_real_prometheus() {
    let app = start_marketplace(&["--demo-load"], &[]);
    // The one change to the rules file: evaluate every second, not every 30 s.
    let rules = std::fs::read_to_string(deploy_file("prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml")
        .replace("interval: 30s", "interval: 1s");
    let prometheus = Prometheus::start(app.addr, Some(&rules));
    prometheus.wait_for_data(&for_short_test("sum(rate(http_requests_total[5m])) > 0"));
    for _ in 0..200 {
        assert_eq!(app.get("/api/v1/debug/error", &[]).status, 500);
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let high_error_rate = loop {
        let alert = prometheus
            .alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HighErrorRate");
        if let Some(alert) = alert {
            break alert;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HighErrorRate never became active"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        high_error_rate["state"], "pending",
        "its `for: 5m` keeps it pending"
    );
    assert_eq!(high_error_rate["labels"]["severity"], "critical");

    let loaded = prometheus.rules();
    assert!(loaded.len() >= 12, "{} rules loaded", loaded.len());
    for rule in &loaded {
        assert_eq!(
            rule["health"], "ok",
            "rule {} failed: {}",
            rule["name"], rule["lastError"]
        );
    }

    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} dashboard queries", exprs.len());
    let mut empty = Vec::new();
    for expr in &exprs {
        let answer = prometheus.query(&for_short_test(expr));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        // The exporters' panels are answered in database_stack.rs.
        let needs_exporter = expr.contains("pg_");
        let has_data = answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if !needs_exporter && !has_data {
            empty.push(expr.clone());
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}

/// One exemplar as Prometheus' `query_exemplars` returns it, with its
/// series' labels.
#[derive(Debug)]
struct StoredExemplar {
    series: serde_json::Value,
    trace_id: String,
    span_id: String,
    value: f64,
}

fn stored_exemplars(prometheus: &Prometheus, expr: &str) -> Vec<StoredExemplar> {
    let mut found = Vec::new();
    for series in prometheus.exemplars(expr) {
        for exemplar in series["exemplars"].as_array().into_iter().flatten() {
            let label = |name: &str| exemplar["labels"][name].as_str().unwrap_or_default();
            found.push(StoredExemplar {
                series: series["seriesLabels"].clone(),
                trace_id: label("trace_id").to_owned(),
                span_id: label("span_id").to_owned(),
                value: exemplar["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            });
        }
    }
    found
}

/// The guide's scenario 1, first hop: Prometheus 2.42 with exemplar storage
/// scrapes the example (OpenMetrics, which it asks for first) under its demo
/// load at 10 % sampling; every exemplar of a latency bucket leads to the
/// request's span in the collector, of a sampled trace or of an error trace
/// the guide's rule keeps.
#[test]
fn latency_buckets_lead_to_sampled_traces_through_exemplars() {
    let collector = Collector::start();
    let endpoint = format!("http://{}", collector.grpc);
    let app = start_marketplace(
        &["--demo-load"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "multiweb-api"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ],
    );
    let prometheus =
        Prometheus::start_with_flags(app.addr, None, &["--enable-feature=exemplar-storage"]);

    // The demo load fails a request every 2 s and samples one in ten of the
    // others: wait for exemplars of both kinds.
    let deadline = Instant::now() + Duration::from_secs(90);
    let buckets = loop {
        let found = stored_exemplars(&prometheus, "http_request_duration_seconds_bucket");
        let errors = found.iter().filter(|e| e.series["status"] == "500").count();
        let others = found.iter().filter(|e| e.series["status"] == "200").count();
        if errors >= 3 && others >= 5 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "too few exemplars ({errors} on 500s, {others} on 200s): {found:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let counters = stored_exemplars(&prometheus, "http_requests_total");
    assert!(
        !counters.is_empty(),
        "http_requests_total carries exemplars"
    );
    let up = prometheus.series("up");
    assert_eq!(
        up[0]["value"][1], "1",
        "the OpenMetrics scrapes succeed: {up:?}"
    );

    let all: Vec<&StoredExemplar> = buckets.iter().chain(&counters).collect();
    let wanted: BTreeSet<&str> = all.iter().map(|e| e.trace_id.as_str()).collect();
    let spans = collector.wait_for(|spans| {
        let received: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
        wanted.is_subset(&received)
    });
    let by_id: BTreeMap<&str, &ExportedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for exemplar in &all {
        let span = by_id.get(exemplar.span_id.as_str()).unwrap_or_else(|| {
            panic!("the exemplar's span never reached the collector: {exemplar:?}")
        });
        assert_is_the_request_of(span, exemplar);
    }
    for exemplar in &buckets {
        let le: f64 = exemplar.series["le"]
            .as_str()
            .and_then(|le| le.parse().ok())
            .unwrap();
        assert!(exemplar.value <= le, "in its bucket: {exemplar:?}");
    }

    assert_unsampled_requests_left_none(&app, &spans, &all);
    assert_error_traces_are_kept(&app, &collector, &buckets);
}

/// `span` is the request span of the series `exemplar` is on.
fn assert_is_the_request_of(span: &ExportedSpan, exemplar: &StoredExemplar) {
    assert_eq!(span.trace_id, exemplar.trace_id, "{exemplar:?}");
    assert_eq!(
        span.kind, "SPAN_KIND_SERVER",
        "the request's span: {exemplar:?}"
    );
    let route = exemplar.series["path"].as_str().unwrap();
    assert_eq!(
        span.attribute("http.route"),
        Some(&*format!("Str({route})"))
    );
    let status = exemplar.series["status"].as_str().unwrap();
    assert_eq!(
        span.attribute("http.response.status_code"),
        Some(&*format!("Int({status})"))
    );
    let error = span.status == "STATUS_CODE_ERROR";
    assert_eq!(error, status.starts_with('5'), "{exemplar:?}: {span:?}");
}

/// The app's access lines.
fn access_lines(app: &multiweb_tests::App) -> Vec<serde_json::Value> {
    app.stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "multiweb_telemetry::http")
        .collect()
}

/// Most requests are not sampled (their trace ids, in the access lines,
/// reached no collector), and none of them left an exemplar: the exemplars
/// are a choice, not all requests.
fn assert_unsampled_requests_left_none(
    app: &multiweb_tests::App,
    spans: &[ExportedSpan],
    exemplars: &[&StoredExemplar],
) {
    let exported: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    let access = access_lines(app);
    let (sampled, unsampled): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = access
        .iter()
        .filter(|line| line["status"] == 200)
        .partition(|line| exported.contains(line["trace_id"].as_str().unwrap_or_default()));
    assert!(
        unsampled.len() > 3 * sampled.len(),
        "at 10 %: {} sampled, {} not",
        sampled.len(),
        unsampled.len()
    );
    let linked: BTreeSet<&str> = exemplars.iter().map(|e| e.trace_id.as_str()).collect();
    for line in &unsampled {
        let trace_id = line["trace_id"].as_str().unwrap_or_default();
        assert!(
            !linked.contains(trace_id),
            "an unsampled request's exemplar: {line}"
        );
    }
}

/// Every error trace was kept, and the error series' exemplars are some of
/// them.
fn assert_error_traces_are_kept(
    app: &multiweb_tests::App,
    collector: &Collector,
    buckets: &[StoredExemplar],
) {
    let access = access_lines(app);
    let errors: BTreeSet<&str> = access
        .iter()
        .filter(|line| line["status"] == 500)
        .filter_map(|line| line["trace_id"].as_str())
        .collect();
    let on_errors: BTreeSet<&str> = buckets
        .iter()
        .filter(|e| e.series["status"] == "500")
        .map(|e| e.trace_id.as_str())
        .collect();
    assert!(on_errors.is_subset(&errors), "{on_errors:?} in {errors:?}");
    collector.wait_for(|spans| {
        let received: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
        errors.is_subset(&received)
    });
}
