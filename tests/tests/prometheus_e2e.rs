//! The guide's queries against a real Prometheus scraping the marketplace
//! example under its built-in demo load.

use std::time::Duration;

use multiweb_tests::guide::{
    GUIDE_QUERIES, Source, dashboard_exprs, deploy_file, for_short_test, with_bool,
};
use multiweb_tests::{Prometheus, start_marketplace};

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
