//! The PromQL behind every metric name, from the monitoring guide.
//!
//! `{w}` is the rate window (the guide's `[5m]`), `{h}` the increase window
//! (the guide's `[1h]`); both are options of the program.

/// Which CSV file a metric goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum File {
    Http,
    System,
    Business,
}

impl File {
    pub(crate) const ALL: [File; 3] = [File::Http, File::System, File::Business];

    pub(crate) fn prefix(self) -> &'static str {
        match self {
            File::Http => "http_metrics",
            File::System => "system_metrics",
            File::Business => "business_metrics",
        }
    }

    /// The label column of this file, if its series have one.
    pub(crate) fn label(self) -> Option<&'static str> {
        match self {
            File::Http => Some("path"),
            File::System | File::Business => None,
        }
    }
}

/// One metric: its short name, file and query template.
pub(crate) struct Query {
    pub(crate) metric: &'static str,
    pub(crate) file: File,
    pub(crate) promql: &'static str,
}

/// Every metric collected. The guide's queries, with the per-endpoint ones
/// grouped `by (path)` for its "slow endpoints" and "error endpoints" tables.
pub(crate) const QUERIES: &[Query] = &[
    Query {
        metric: "request_rate",
        file: File::Http,
        promql: "sum(rate(http_requests_total[{w}]))",
    },
    Query {
        metric: "error_rate",
        file: File::Http,
        promql: r#"100 * sum(rate(http_requests_total{status=~"[45].."}[{w}])) / sum(rate(http_requests_total[{w}]))"#,
    },
    Query {
        metric: "p50_latency",
        file: File::Http,
        promql: "histogram_quantile(0.50, sum(rate(http_request_duration_seconds_bucket[{w}])) by (le))",
    },
    Query {
        metric: "p95_latency",
        file: File::Http,
        promql: "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[{w}])) by (le))",
    },
    Query {
        metric: "p99_latency",
        file: File::Http,
        promql: "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[{w}])) by (le))",
    },
    Query {
        metric: "endpoint_request_rate",
        file: File::Http,
        promql: "sum(rate(http_requests_total[{w}])) by (path)",
    },
    Query {
        metric: "endpoint_error_rate",
        file: File::Http,
        promql: r#"sum(rate(http_requests_total{status=~"5.."}[{w}])) by (path)"#,
    },
    Query {
        metric: "endpoint_p95_latency",
        file: File::Http,
        promql: "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[{w}])) by (le, path))",
    },
    Query {
        metric: "cpu_usage",
        file: File::System,
        promql: "100 * rate(process_cpu_seconds_total[{w}])",
    },
    Query {
        metric: "memory_bytes",
        file: File::System,
        promql: "process_resident_memory_bytes",
    },
    Query {
        metric: "open_fds",
        file: File::System,
        promql: "process_open_fds",
    },
    Query {
        metric: "threads",
        file: File::System,
        promql: "process_threads",
    },
    Query {
        metric: "products_created",
        file: File::Business,
        promql: "sum(increase(multiweb_products_created_total[{h}]))",
    },
    Query {
        metric: "transactions_completed",
        file: File::Business,
        promql: "sum(increase(multiweb_transactions_completed_total[{h}]))",
    },
    Query {
        metric: "users_registered",
        file: File::Business,
        promql: "sum(increase(multiweb_users_registered_total[{h}]))",
    },
    Query {
        metric: "messages_sent",
        file: File::Business,
        promql: "sum(increase(multiweb_messages_sent_total[{h}]))",
    },
    Query {
        metric: "revenue_cents",
        file: File::Business,
        promql: "sum(increase(multiweb_revenue_cents_total[{h}]))",
    },
    Query {
        metric: "active_users",
        file: File::Business,
        promql: "sum(multiweb_active_users)",
    },
];

impl Query {
    /// The query with its windows filled in.
    pub(crate) fn promql(&self, rate_window: &str, increase_window: &str) -> String {
        self.promql
            .replace("{w}", rate_window)
            .replace("{h}", increase_window)
    }
}
