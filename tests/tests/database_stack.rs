//! The guide's whole stack: the marketplace example on PostgreSQL with its
//! Redis cache, PostgreSQL's, Redis' and the host's exporters, and a real
//! Prometheus scraping them all, with the shipped alert rules. The servers
//! are started once for this binary (`Stack::shared`); the tests that stop
//! their database start a PostgreSQL of their own.
//!
//! Not run here, so parse-only: the guide's `container_*` queries (cAdvisor)
//! and `kube_pod_info` (kube-state-metrics); see `guide::Source`.

use std::time::{Duration, Instant};

use multiweb_tests::guide::{
    GUIDE_QUERIES, dashboard_exprs, for_short_test, rule_exprs, with_bool,
};
use multiweb_tests::stack::{DATABASE, Postgres, Stack};
use multiweb_tests::{App, Collector, Prometheus, http_request, start_marketplace};

/// The shipped rules, evaluated every second instead of every 30 s.
fn rules() -> String {
    std::fs::read_to_string(multiweb_tests::guide::deploy_file("prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml")
        .replace("interval: 30s", "interval: 1s")
}

/// The example on the stack's PostgreSQL and Redis.
fn app_on(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> App {
    let database = stack.postgres.url();
    let redis = stack.redis.url();
    let mut all = vec![
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    all.extend_from_slice(env);
    start_marketplace(args, &all)
}

/// Waits (bounded) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each exporter serves the families the guide's queries read.
#[test]
fn the_exporters_serve_the_guides_series() {
    let stack = Stack::shared();
    let has = |text: &str, family: &str| text.lines().any(|l| l.starts_with(family));
    let pg = stack.postgres_exporter.scrape();
    for family in [
        "pg_stat_database_numbackends{",
        "pg_stat_database_xact_commit{",
        "pg_database_size_bytes{",
        // From deploy/postgres-exporter/queries.yaml.
        "pg_stat_statements_calls_total{",
        "pg_stat_statements_seconds_total{",
        "pg_stat_statements_mean_exec_time_seconds{",
    ] {
        assert!(has(&pg, family), "postgres_exporter lacks {family}");
    }
    let redis = stack.redis_exporter.scrape();
    for family in [
        "redis_keyspace_hits_total ",
        "redis_keyspace_misses_total ",
        "redis_commands_processed_total ",
        "redis_memory_used_bytes ",
    ] {
        assert!(has(&redis, family), "redis_exporter lacks {family}");
    }
    let node = stack.node_exporter.scrape();
    for family in [
        "node_memory_MemTotal_bytes ",
        "node_disk_read_bytes_total{",
        "node_disk_written_bytes_total{",
    ] {
        assert!(has(&node, family), "node_exporter lacks {family}");
    }
}

/// Every PromQL expression of the guide, of the dashboards and of the alert
/// rules returns data from a real Prometheus scraping the example (on
/// PostgreSQL and Redis, under its demo load, exporting spans to a
/// collector as in the guide's stack) and the three exporters. Thresholds
/// are asked with `bool` (the series exist, crossed or not); `container_*`
/// and `kube_*` only parse.
#[test]
fn every_query_of_the_guide_the_dashboards_and_the_rules_returns_data() {
    let stack = Stack::shared();
    let collector = Collector::start();
    let endpoint = format!("http://{}", collector.grpc);
    let app = app_on(
        &stack,
        &["--demo-load"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ],
    );
    let jobs = Prometheus::app_job(app.addr) + &stack.exporter_jobs(Some(app.addr));
    let prometheus = Prometheus::start_scraping(&jobs, Some(&rules()));
    // Counters that moved between two scrapes give `rate` something to show.
    for moving in [
        "sum(rate(http_requests_total[5m])) > 0",
        r#"sum(rate(http_requests_total{status=~"5.."}[5m])) > 0"#,
        "sum(rate(db_client_operation_duration_seconds_count[5m])) > 0",
        "sum(rate(pg_stat_database_xact_commit[5m])) > 0",
        "sum(rate(pg_stat_statements_calls_total[5m])) > 0",
        "sum(rate(redis_keyspace_hits_total[5m])) > 0",
        "sum(rate(redis_keyspace_misses_total[5m])) > 0",
    ] {
        prometheus.wait_for_data(&for_short_test(moving));
    }
    std::thread::sleep(Duration::from_secs(2));

    let mut asked = Vec::new();
    for (expr, source) in GUIDE_QUERIES {
        if source.runs_here() {
            asked.push(("guide", (*expr).to_owned()));
        } else {
            let expr = for_short_test(expr);
            let answer = prometheus.query(&expr);
            assert_eq!(answer["status"], "success", "{expr} ({source:?}): {answer}");
            assert!(
                expr.contains("container_") || expr.contains("kube_"),
                "only cAdvisor's and kube-state-metrics' queries are parse-only: {expr}"
            );
        }
    }
    asked.extend(dashboard_exprs().into_iter().map(|e| ("dashboard", e)));
    let rules = rule_exprs();
    assert_eq!(rules.len(), 12, "{rules:#?}");
    asked.extend(rules.into_iter().map(|(_, e)| ("alert rule", e)));

    let mut empty = Vec::new();
    for (origin, expr) in &asked {
        let asked = with_bool(&for_short_test(expr));
        let answer = prometheus.query(&asked);
        assert_eq!(answer["status"], "success", "{asked}: {answer}");
        if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            empty.push(format!("{origin}: {asked}"));
        }
    }
    assert!(empty.is_empty(), "queries without data: {empty:#?}");

    // The values mean what the guide says.
    let ratio = prometheus.series(&for_short_test(
        "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m]) + rate(redis_keyspace_misses_total[5m]))",
    ));
    let ratio: f64 = ratio[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        ratio > 0.0 && ratio < 1.0,
        "the demo load both hits and misses: {ratio}"
    );
    let memory =
        prometheus.series("100 * process_resident_memory_bytes / node_memory_MemTotal_bytes");
    let memory: f64 = memory[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        memory > 0.0 && memory < 100.0,
        "{memory} % of the host's memory"
    );
    let systems =
        prometheus.series("count by (db_system) (db_client_operation_duration_seconds_count)");
    assert_eq!(systems.len(), 1, "{systems:?}");
    assert_eq!(systems[0]["metric"]["db_system"], "postgresql");
    for rule in prometheus.rules() {
        assert_eq!(
            rule["health"], "ok",
            "rule {} failed: {}",
            rule["name"], rule["lastError"]
        );
    }
}

/// The guide's `DatabaseConnectionPoolHigh`
/// (`pg_stat_database_numbackends > 80`) fires for real: 85 connections to
/// the database make it pending,
/// then firing (its `for: 2m` shortened to 5 s in this test's copy only),
/// and it clears when they close.
#[test]
fn database_connection_pool_high_fires_with_85_connections() {
    let stack = Stack::shared();
    let rule = "expr: pg_stat_database_numbackends > 80\n    for: 2m\n";
    let rules = rules();
    assert!(rules.contains(rule), "the guide's rule changed");
    let rules = rules.replace(
        rule,
        "expr: pg_stat_database_numbackends > 80\n    for: 5s\n",
    );
    let prometheus = Prometheus::start_scraping(&stack.exporter_jobs(None), Some(&rules));
    prometheus.wait_for_data(r#"pg_stat_database_numbackends{datname="marketplace"}"#);
    let alert = || {
        prometheus
            .alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "DatabaseConnectionPoolHigh")
    };
    assert!(
        alert().is_none(),
        "the alert is active before the connections"
    );

    let backends: Vec<_> = (0..85)
        .map(|_| stack.postgres.open_backend(DATABASE))
        .collect();
    let mut pending = None;
    eventually("DatabaseConnectionPoolHigh pending", || {
        pending = alert().filter(|a| a["state"] == "pending");
        pending.is_some()
    });
    let pending = pending.unwrap();
    assert_eq!(pending["labels"]["datname"], DATABASE);
    assert_eq!(pending["labels"]["severity"], "warning");
    let value: f64 = pending["value"].as_str().unwrap().parse().unwrap();
    assert!(value > 80.0, "{value}");
    eventually("DatabaseConnectionPoolHigh firing", || {
        alert().is_some_and(|a| a["state"] == "firing")
    });

    drop(backends);
    eventually("DatabaseConnectionPoolHigh resolved", || alert().is_none());
}

/// A product created through the API is still there after the example
/// restarts on the same PostgreSQL database.
#[test]
fn a_product_survives_a_restart_on_postgresql() {
    let stack = Stack::shared();
    let name = format!("Survivor {}", std::process::id());
    let app = app_on(&stack, &[], &[]);
    let created = http_request(
        app.addr,
        "POST",
        "/api/v1/products/",
        &[],
        &format!(r#"{{"name":"{name}","price_cents":1234}}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = app.stop();
    assert!(status.success(), "{status}");

    let app = app_on(&stack, &[], &[]);
    let read = app.get(&format!("/api/v1/products/{id}"), &[]);
    assert_eq!(read.status, 200, "{}", read.body);
    let product: serde_json::Value = serde_json::from_str(&read.body).unwrap();
    assert_eq!(product["name"], name);
    assert_eq!(product["price_cents"], 1234);
    let stored = stack.postgres.psql(
        DATABASE,
        &format!("SELECT name FROM products WHERE id = {id}"),
    );
    assert_eq!(stored, name, "the row is in PostgreSQL itself");
}

/// A query PostgreSQL refuses (a transaction naming a product that does not
/// exist) gives the client a 422, an error span (CLIENT, status Error, the
/// SQL state) under the request's span in a real collector, and one error
/// line with the SQL state; the values bound to the query appear nowhere.
#[test]
fn a_failing_query_gives_an_error_span_and_an_error_line_without_values() {
    let stack = Stack::shared();
    let collector = Collector::start();
    let endpoint = format!("http://{}", collector.grpc);
    let app = app_on(
        &stack,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    let response = http_request(
        app.addr,
        "POST",
        "/api/v1/transactions/",
        &[],
        r#"{"amount_cents":4242424,"method":"card","product_id":987654321}"#,
    );
    assert_eq!(response.status, 422, "{}", response.body);
    assert_eq!(response.body, r#"{"error":"no such product"}"#);

    let line = app.wait_json(|v| v["message"] == "database query failed");
    assert_eq!(line["level"], "error");
    assert_eq!(line["db.system"], "postgresql");
    assert_eq!(line["db.operation.name"], "INSERT");
    assert_eq!(line["db.response.status_code"], "23503");
    assert_eq!(line["error.type"], "foreign_key_violation");
    assert_eq!(
        line["db.query.text"],
        "INSERT INTO transactions (user_id, product_id, amount_cents, method) VALUES ($1, $2, $3, $4)"
    );
    assert_eq!(
        line["error"],
        "foreign key violation (SQL state 23503) on constraint transactions_product_id_fkey"
    );
    assert_eq!(line["http.route"], "/api/v1/transactions/");

    let spans = collector.wait_for(|spans| {
        spans.iter().any(|s| s.name == "INSERT transactions")
            && spans.iter().any(|s| s.name == "POST /api/v1/transactions/")
    });
    let request = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/transactions/")
        .unwrap();
    let query = spans
        .iter()
        .find(|s| s.name == "INSERT transactions")
        .unwrap();
    assert_eq!(query.kind, "SPAN_KIND_CLIENT");
    assert_eq!(query.status, "STATUS_CODE_ERROR");
    assert_eq!(query.trace_id, request.trace_id);
    assert_eq!(
        query.parent_id, request.span_id,
        "the query is the request's child"
    );
    for (key, value) in [
        ("db.system", "Str(postgresql)"),
        ("db.operation.name", "Str(INSERT)"),
        ("db.collection.name", "Str(transactions)"),
        ("db.response.status_code", "Str(23503)"),
        ("error.type", "Str(foreign_key_violation)"),
    ] {
        assert_eq!(query.attribute(key), Some(value), "{key}");
    }
    assert_eq!(
        line["trace_id"], query.trace_id,
        "the line is in the query's trace"
    );

    let (_, lines) = app.stop();
    let everything = format!("{}\n{spans:?}", lines.join("\n"));
    for value in ["987654321", "4242424"] {
        assert!(!everything.contains(value), "the value {value} leaked");
    }
}

/// The example starts with its database down: `/health` says so with a
/// 503, requests that need the database answer 503 with a JSON error,
/// `/metrics` still works, and once PostgreSQL is up the schema is
/// migrated and everything answers.
#[test]
fn the_database_down_at_start_gives_503_until_it_comes_up() {
    let mut postgres = Postgres::start();
    postgres.stop();
    let url = postgres.url();
    let app = start_marketplace(&[], &[("DATABASE_URL", &url)]);

    let health = app.get("/health", &[]);
    assert_eq!(health.status, 503, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["database"], "down");
    assert_eq!(health["db.system"], "postgresql");
    for (method, path, body) in [
        ("GET", "/api/v1/products/", ""),
        ("GET", "/api/v1/products/1", ""),
        (
            "POST",
            "/api/v1/products/",
            r#"{"name":"Lamp","price_cents":1}"#,
        ),
        ("POST", "/api/v1/users/", r#"{"name":"kim"}"#),
    ] {
        let response = http_request(app.addr, method, path, &[], body);
        assert_eq!(response.status, 503, "{method} {path}: {}", response.body);
        assert_eq!(response.body, r#"{"error":"database unavailable"}"#);
    }
    assert_eq!(app.get("/metrics", &[]).status, 200);
    app.wait_json(|v| {
        v["level"] == "warn"
            && v["message"] == "database not reachable; answering 503 and retrying every second"
    });

    postgres.resume();
    eventually("/health 200", || app.get("/health", &[]).status == 200);
    let products = app.get("/api/v1/products/", &[]);
    assert_eq!(products.status, 200, "{}", products.body);
    assert!(products.body.contains("Keyboard"), "{}", products.body);
    app.wait_json(|v| v["message"] == "database ready");
    assert!(
        !app.stderr_lines().iter().any(|l| l.contains("panicked")),
        "{:?}",
        app.stderr_lines()
    );
}

/// PostgreSQL goes away while the example runs: requests answer 503, the
/// outage is logged once, and when PostgreSQL is back the example recovers
/// by itself.
#[test]
fn the_database_lost_mid_run_gives_503_and_the_example_recovers() {
    let mut postgres = Postgres::start();
    let url = postgres.url();
    let app = start_marketplace(&[], &[("DATABASE_URL", &url)]);
    assert_eq!(app.get("/api/v1/products/", &[]).status, 200);

    postgres.stop();
    let lost = app.get("/api/v1/products/", &[]);
    assert_eq!(lost.status, 503, "{}", lost.body);
    assert_eq!(lost.body, r#"{"error":"database unavailable"}"#);
    assert_eq!(app.get("/health", &[]).status, 503);
    app.wait_json(|v| v["message"] == "database unavailable; answering 503 until it is back");

    postgres.resume();
    eventually("recovery", || {
        app.get("/api/v1/products/", &[]).status == 200
    });
    assert_eq!(app.get("/health", &[]).status, 200);
    app.wait_json(|v| v["message"] == "database reachable again");
    let outages = app
        .stdout_lines()
        .iter()
        .filter(|l| l.contains("answering 503 until it is back"))
        .count();
    assert_eq!(outages, 1, "the outage is logged once");
    assert!(!app.stderr_lines().iter().any(|l| l.contains("panicked")));
}
