//! The PromQL of the monitoring guide, of the shipped dashboards and of the
//! shipped alert rules, and the rewrites that let a test that runs for
//! seconds ask them.

use std::path::{Path, PathBuf};

/// Where a query's series come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The application's `/metrics` (this crate).
    App,
    /// prometheus-node-exporter.
    NodeExporter,
    /// prometheus-postgres-exporter.
    PostgresExporter,
    /// prometheus-redis-exporter.
    RedisExporter,
    /// cAdvisor (`container_*`): not run by the tests, parse-only.
    Cadvisor,
    /// kube-state-metrics (`kube_*`): not run by the tests, parse-only.
    KubeStateMetrics,
}

impl Source {
    /// Whether the tests run this source (cAdvisor and kube-state-metrics
    /// need a container runtime or a cluster).
    pub fn runs_here(self) -> bool {
        !matches!(self, Self::Cadvisor | Self::KubeStateMetrics)
    }
}

/// Every PromQL expression of the guide, as it writes it (multi-line ones
/// on one line), with the source of its series. The Grafana variable query
/// `label_values(kube_pod_info, namespace)` is checked as `kube_pod_info`.
pub const GUIDE_QUERIES: &[(&str, Source)] = &[
    ("rate(http_requests_total[5m])", Source::App),
    ("sum(rate(http_requests_total[5m])) by (path)", Source::App),
    (
        "sum(rate(http_requests_total[5m])) by (status)",
        Source::App,
    ),
    (
        r#"rate(http_requests_total{status=~"5.."}[5m])"#,
        Source::App,
    ),
    (
        r#"100 * sum(rate(http_requests_total{status=~"[45].."}[5m])) / sum(rate(http_requests_total[5m]))"#,
        Source::App,
    ),
    (
        "histogram_quantile(0.50, rate(http_request_duration_seconds_bucket[5m]))",
        Source::App,
    ),
    (
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))",
        Source::App,
    ),
    (
        "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m]))",
        Source::App,
    ),
    ("100 * rate(process_cpu_seconds_total[5m])", Source::App),
    (
        "sum(rate(container_cpu_usage_seconds_total[5m])) by (pod)",
        Source::Cadvisor,
    ),
    ("process_resident_memory_bytes", Source::App),
    (
        "100 * process_resident_memory_bytes / node_memory_MemTotal_bytes",
        Source::NodeExporter,
    ),
    ("rate(node_disk_read_bytes_total[5m])", Source::NodeExporter),
    (
        "rate(node_disk_written_bytes_total[5m])",
        Source::NodeExporter,
    ),
    ("pg_stat_database_numbackends", Source::PostgresExporter),
    (
        "rate(pg_stat_database_xact_commit[5m])",
        Source::PostgresExporter,
    ),
    (
        "pg_stat_statements_mean_exec_time_seconds",
        Source::PostgresExporter,
    ),
    (
        "rate(redis_commands_processed_total[5m])",
        Source::RedisExporter,
    ),
    ("redis_memory_used_bytes", Source::RedisExporter),
    (
        "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m]) + rate(redis_keyspace_misses_total[5m]))",
        Source::RedisExporter,
    ),
    (
        "sum(increase(multiweb_products_created_total[1h]))",
        Source::App,
    ),
    (
        "sum(increase(multiweb_transactions_completed_total[1h]))",
        Source::App,
    ),
    ("multiweb_active_users", Source::App),
    (
        "avg_over_time(rate(http_requests_total[5m])[1h:5m])",
        Source::App,
    ),
    ("topk(10, rate(http_requests_total[5m]))", Source::App),
    (
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m])) > 2 * avg_over_time(histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))[1h:])",
        Source::App,
    ),
    (
        "100 * rate(process_cpu_seconds_total[5m]) > 80",
        Source::App,
    ),
    (
        "100 * process_resident_memory_bytes / node_memory_MemTotal_bytes > 90",
        Source::NodeExporter,
    ),
    (
        r#"rate(http_requests_total{path="/api/v1/products/"}[5m])"#,
        Source::App,
    ),
    ("kube_pod_info", Source::KubeStateMetrics),
    (
        r#"rate(http_requests_total{namespace="$namespace"}[5m])"#,
        Source::App,
    ),
    (
        r#"100 * sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 1"#,
        Source::App,
    ),
    (
        "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m])) > 0.5",
        Source::App,
    ),
    (
        "pg_stat_database_numbackends > 80",
        Source::PostgresExporter,
    ),
    (
        "topk(5, histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))) by (path)",
        Source::App,
    ),
    (
        r#"100 * container_memory_working_set_bytes{pod=~"multiweb-api.*"} / container_spec_memory_limit_bytes"#,
        Source::Cadvisor,
    ),
];

/// The one place where the guide's range windows are shortened, so a test
/// that runs for seconds sees data: `[5m]` becomes `[20s]`, `[1h]` becomes
/// `[1m]`, and subqueries (`[1h:5m]`, `[1h:]`) become `[1m:1s]` and
/// `[1m:]`. Nothing else in an expression is changed, except the
/// dashboards' `$namespace` variable, which takes the value the scrape
/// config sets.
pub fn for_short_test(expr: &str) -> String {
    expr.replace("[5m]", "[20s]")
        .replace("[1h:5m]", "[1m:1s]")
        .replace("[1h:]", "[1m:]")
        .replace("[1h]", "[1m]")
        .replace("$namespace", "multiweb")
}

/// `expr` with `bool` after every comparison (`> 80` becomes `> bool 80`):
/// a threshold then keeps its series, valued 0 or 1, instead of filtering
/// them out, so "returns data" means the series exist, whether or not the
/// threshold is crossed right now.
pub fn with_bool(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() + 16);
    let mut chars = expr.chars().peekable();
    let (mut braces, mut quote) = (0_u32, None::<char>);
    while let Some(c) = chars.next() {
        out.push(c);
        if let Some(open) = quote {
            if c == open {
                quote = None;
            }
            continue;
        }
        match (c, quote) {
            ('"' | '\'' | '`', None) => quote = Some(c),
            ('{', None) => braces += 1,
            ('}', None) => braces = braces.saturating_sub(1),
            ('>' | '<' | '=' | '!', None) if braces == 0 => {
                let next = chars.peek().copied();
                let comparison = match c {
                    '>' | '<' => true,
                    '=' | '!' => next == Some('='),
                    _ => false,
                };
                if comparison {
                    if next == Some('=') {
                        out.push('=');
                        chars.next();
                    }
                    out.push_str(" bool");
                }
            }
            _ => {}
        }
    }
    out
}

/// A file of the repository's `deploy/`.
pub fn deploy_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(relative)
}

/// The shipped dashboards.
pub const DASHBOARDS: [&str; 4] = [
    "application-overview.json",
    "api-performance.json",
    "business-metrics.json",
    "database-metrics.json",
];

/// Every `expr` of the shipped dashboards.
///
/// # Panics
///
/// If a dashboard cannot be read or parsed.
pub fn dashboard_exprs() -> Vec<String> {
    fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        serde_json::Value::String(expr) if key == "expr" => {
                            out.push(expr.clone());
                        }
                        _ => collect(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    for dashboard in DASHBOARDS {
        let path = deploy_file(&format!("grafana/dashboards/{dashboard}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        collect(
            &serde_json::from_str(&text).expect("dashboard JSON"),
            &mut exprs,
        );
    }
    exprs
}

/// `(alert, expr)` of every rule in `deploy/prometheus/alerts.yml`, the
/// expression on one line.
///
/// # Panics
///
/// If the file cannot be read.
pub fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).expect("alerts.yml");
    let mut rules = Vec::new();
    let mut lines = text.lines().peekable();
    let mut alert = String::new();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            name.trim().clone_into(&mut alert);
        } else if let Some(expr) = trimmed.strip_prefix("expr: ") {
            let expr = if expr.trim() == "|" {
                let indent = |l: &str| l.len() - l.trim_start().len();
                let base = indent(line);
                let mut body = Vec::new();
                while let Some(next) = lines.peek() {
                    if next.trim().is_empty() || indent(next) <= base {
                        break;
                    }
                    body.push(next.trim());
                    lines.next();
                }
                body.join(" ")
            } else {
                expr.trim().to_owned()
            };
            rules.push((alert.clone(), expr));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_bool_keeps_matchers_and_marks_comparisons() {
        assert_eq!(
            with_bool(r#"rate(x{status=~"5..",a!="b"}[5m]) > 80"#),
            r#"rate(x{status=~"5..",a!="b"}[5m]) > bool 80"#
        );
        assert_eq!(
            with_bool("(a or vector(0)) == 0 and on() b >= 1"),
            "(a or vector(0)) == bool 0 and on() b >= bool 1"
        );
        assert_eq!(with_bool("up != 1"), "up != bool 1");
        assert_eq!(
            with_bool("process_resident_memory_bytes"),
            "process_resident_memory_bytes"
        );
    }
}
