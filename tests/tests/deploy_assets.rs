//! Validates the shipped operations assets in `deploy/` with the real tools:
//! `promtool` (alert rules, their unit tests, the Prometheus configuration,
//! every dashboard query), `amtool` (the Alertmanager configuration and its
//! routing), `docker-compose` (the local stack), and checks that the
//! dashboards carry the guide's panels and the Kubernetes `PrometheusRule` is
//! the one generated from `alerts.yml`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use multiweb_tests::require_tool;

/// Every alert in `deploy/prometheus/alerts.yml`.
const ALERTS: [&str; 12] = [
    "HighErrorRate",
    "HighLatency",
    "DatabaseConnectionPoolHigh",
    "MultiwebApiDown",
    "NoTransactionsCompleted",
    "HighCpuUsage",
    "HighMemoryUsage",
    "FileDescriptorsNearLimit",
    "LatencyAnomaly",
    "TelemetryLogLinesDropped",
    "TelemetrySpansDropped",
    "HttpSeriesOverflow",
];

/// The guide's rules, written exactly as the guide writes them.
const GUIDE_RULE_TEXT: [&str; 6] = [
    "    expr: |\n      100 * sum(rate(http_requests_total{status=~\"5..\"}[5m]))\n      / sum(rate(http_requests_total[5m])) > 1\n",
    "      description: \"Error rate is {{ $value }}%\"\n",
    "    expr: |\n      histogram_quantile(0.95,\n        rate(http_request_duration_seconds_bucket[5m])\n      ) > 0.5\n",
    "      description: \"P95 latency is {{ $value }}s\"\n",
    "    expr: pg_stat_database_numbackends > 80\n",
    "      summary: \"Database connection pool is nearly exhausted\"\n",
];

/// Dashboard file, title, allowed range windows, and the guide's panels in order.
const DASHBOARDS: [(&str, &str, &[&str], &[&str]); 4] = [
    (
        "application-overview.json",
        "MultiWeb / Application Overview",
        &["[5m]"],
        &[
            "Total Requests",
            "Avg Response Time",
            "Error Rate",
            "Active Users",
            "Request Rate Timeline",
            "Status Code Distribution",
        ],
    ),
    (
        "api-performance.json",
        "MultiWeb / API Performance",
        &["[5m]"],
        &[
            "Request Rate by Endpoint",
            "Response Time by Endpoint (P50, P95, P99)",
            "Top 10 Slowest Endpoints",
            "Top 10 Endpoints by Errors",
        ],
    ),
    (
        "database-metrics.json",
        "MultiWeb / Database Metrics",
        &["[5m]"],
        &[
            "PostgreSQL Connections",
            "Transaction Rate (Commits vs Rollbacks)",
            "Query Execution Time",
            "Database Size",
            "Table I/O Statistics",
            "App: Query Rate by Operation",
            "App: Query P95 by Operation",
            "App: Connection Pool Usage",
        ],
    ),
    (
        "business-metrics.json",
        "MultiWeb / Business Metrics",
        &["[1h]"],
        &[
            "New User Registrations (per hour)",
            "Products Created (per hour)",
            "Transactions Completed (per hour)",
            "Messages Sent (per hour)",
            "Revenue (per hour)",
        ],
    ),
];

/// Services of `deploy/compose.yaml` the guide's stack needs.
const COMPOSE_SERVICES: [&str; 7] = [
    "multiweb-api",
    "prometheus",
    "alertmanager",
    "grafana",
    "loki",
    "tempo",
    "alloy",
];

const PROMTOOL_HINT: &str = "apt-get install prometheus";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives in the workspace root")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A fresh directory for this test's generated files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy_assets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Runs `program` in the workspace root; returns whether it succeeded and its
/// stdout and stderr together.
fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs `program` and fails the test, with its output, unless it succeeds.
fn run_ok(program: &Path, args: &[&str]) -> String {
    let (ok, text) = run(program, args);
    assert!(
        ok,
        "`{} {}` failed:\n{text}",
        program.display(),
        args.join(" ")
    );
    text
}

fn expected_alerts() -> BTreeSet<String> {
    ALERTS.iter().map(|&a| a.to_owned()).collect()
}

/// The names after `- alert:` in a rules file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let promtool = require_tool("promtool", PROMTOOL_HINT);
    let out = run_ok(
        &promtool,
        &["check", "rules", "deploy/prometheus/alerts.yml"],
    );
    let expected = format!("SUCCESS: {} rules found", ALERTS.len());
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");

    let rules = read("deploy/prometheus/alerts.yml");
    let names = alert_names(&rules);
    assert_eq!(
        names.iter().cloned().collect::<BTreeSet<_>>(),
        expected_alerts(),
        "alerts.yml has other alerts than this test knows"
    );
    assert_eq!(names.len(), ALERTS.len(), "an alert name is repeated");
    for text in GUIDE_RULE_TEXT {
        assert!(
            rules.contains(text),
            "alerts.yml lost the guide's rule text {text:?}"
        );
    }
    for alert in ALERTS {
        let block = rules
            .split("- alert: ")
            .find(|b| b.starts_with(alert))
            .expect("alert block");
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "{alert} has no severity the Alertmanager routes"
        );
    }
}

#[test]
fn every_alert_has_firing_and_quiet_unit_tests() {
    let promtool = require_tool("promtool", PROMTOOL_HINT);
    let out = run_ok(
        &promtool,
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    );
    assert!(
        out.contains("SUCCESS") && !out.contains("FAILED"),
        "promtool test rules did not succeed:\n{out}"
    );

    // Which alerts are expected to fire (with annotations) and to stay quiet.
    let tests = read("deploy/prometheus/alerts_test.yml");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let mut current: Option<String> = None;
    let mut awaiting_annotations: Option<String> = None;
    for line in tests.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("alertname:") {
            assert!(
                awaiting_annotations.is_none(),
                "a firing test of {awaiting_annotations:?} checks no annotations"
            );
            current = Some(name.trim().to_owned());
        } else if line == "exp_alerts: []" {
            quiet.insert(current.clone().expect("exp_alerts after an alertname"));
        } else if line == "exp_alerts:" {
            let name = current.clone().expect("exp_alerts after an alertname");
            firing.insert(name.clone());
            awaiting_annotations = Some(name);
        } else if line == "exp_annotations:" {
            awaiting_annotations = None;
        }
    }
    assert!(
        awaiting_annotations.is_none(),
        "a firing test of {awaiting_annotations:?} checks no annotations"
    );
    assert_eq!(firing, expected_alerts(), "alerts without a firing test");
    assert_eq!(quiet, expected_alerts(), "alerts without a quiet test");
}

/// The scrape protocols of the API's job, in order.
const SCRAPE_PROTOCOLS: &str =
    "    scrape_protocols: [OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText0.0.4]\n";

#[test]
fn prometheus_config_is_valid_and_labels_the_app() {
    let promtool = require_tool("promtool", PROMTOOL_HINT);
    // The compose stack's Prometheus reads `scrape_protocols` (2.49 and
    // later); Debian's promtool (2.42) predates it and rejects the field, so
    // it checks the file without that one line, next to the rules it loads.
    let config = read("deploy/prometheus/prometheus.yml");
    assert_eq!(
        config.matches(SCRAPE_PROTOCOLS).count(),
        1,
        "the API's job asks for OpenMetrics first, exactly as {SCRAPE_PROTOCOLS:?}"
    );
    let dir = scratch("prometheus-config");
    std::fs::write(
        dir.join("prometheus.yml"),
        config.replace(SCRAPE_PROTOCOLS, ""),
    )
    .expect("write the config");
    std::fs::write(dir.join("alerts.yml"), read("deploy/prometheus/alerts.yml"))
        .expect("write the rules");
    let checked = dir.join("prometheus.yml");
    let out = run_ok(
        &promtool,
        &["check", "config", checked.to_str().expect("UTF-8 path")],
    );
    assert!(
        out.contains("is valid prometheus config file syntax"),
        "unexpected promtool output:\n{out}"
    );
    let rules = format!("SUCCESS: {} rules found", ALERTS.len());
    assert!(
        out.contains("alerts.yml") && out.contains(&rules),
        "prometheus.yml does not load alerts.yml with its {} rules:\n{out}",
        ALERTS.len()
    );

    let config = read("deploy/prometheus/prometheus.yml");
    let app_job = config
        .split("- job_name:")
        .find(|job| job.trim_start().starts_with("multiweb-api"))
        .expect("a multiweb-api scrape job");
    for needle in [
        "metrics_path: /metrics",
        "\"multiweb-api:8080\"",
        "namespace: multiweb",
        SCRAPE_PROTOCOLS,
    ] {
        assert!(app_job.contains(needle), "the app's job lacks {needle:?}");
    }
    assert!(
        config.contains("\"alertmanager:9093\""),
        "prometheus.yml sends alerts nowhere"
    );
}

#[test]
fn alertmanager_routes_critical_to_slack_and_warnings_to_email() {
    let amtool = require_tool("amtool", "apt-get install prometheus-alertmanager");
    let config = "deploy/alertmanager/alertmanager.yml";
    let out = run_ok(&amtool, &["check-config", config]);
    assert!(
        out.contains("SUCCESS") && out.contains(" - 2 receivers"),
        "unexpected amtool output:\n{out}"
    );
    for (labels, receiver) in [
        (
            ["severity=critical", "alertname=HighErrorRate"],
            "slack-critical",
        ),
        (
            ["severity=warning", "alertname=HighLatency"],
            "email-warnings",
        ),
    ] {
        let file_flag = format!("--config.file={config}");
        let (ok, routed) = run(
            &amtool,
            &["config", "routes", "test", &file_flag, labels[0], labels[1]],
        );
        assert!(ok, "amtool config routes test failed:\n{routed}");
        // The receiver is the first line; warnings about flags follow.
        let first = routed.lines().next().unwrap_or_default().trim();
        assert_eq!(first, receiver, "{labels:?} routed to {routed:?}");
    }

    let text = read(config);
    assert!(
        text.contains("api_url_file: /etc/alertmanager/secrets/"),
        "the Slack URL must come from a file"
    );
    assert!(
        !text.contains("api_url:") && !text.contains("hooks.slack.com"),
        "a Slack webhook URL is committed in alertmanager.yml"
    );
    let ignore = read("deploy/alertmanager/secrets/.gitignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "deploy/alertmanager/secrets/ must be ignored by git"
    );
}

#[test]
fn compose_file_is_valid_with_pinned_images() {
    let compose = require_tool("docker-compose", "apt-get install docker-compose");
    let file = "deploy/compose.yaml";
    run_ok(&compose, &["-f", file, "config", "-q"]);

    let services = run_ok(&compose, &["-f", file, "config", "--services"]);
    let services: BTreeSet<&str> = services.lines().map(str::trim).collect();
    for service in COMPOSE_SERVICES {
        assert!(
            services.contains(service),
            "compose.yaml has no {service} service: {services:?}"
        );
    }

    let resolved = run_ok(&compose, &["-f", file, "config"]);
    let images: Vec<&str> = resolved
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert!(images.len() >= COMPOSE_SERVICES.len(), "images: {images:?}");
    for image in &images {
        let tag = image.rsplit_once(':').map(|(_, tag)| tag);
        assert!(
            tag.is_some_and(|t| !t.is_empty() && t != "latest" && !t.contains('/')),
            "image {image} is not pinned to a version"
        );
    }
    // Every file or folder the services mount from the checkout exists.
    let deploy = root().join("deploy");
    for line in resolved.lines() {
        let Some(spec) = line.trim().strip_prefix("- ") else {
            continue;
        };
        if let Some((source, _)) = spec.split_once(':')
            && source.starts_with('/')
            && Path::new(source).starts_with(root())
        {
            assert!(
                Path::new(source).exists(),
                "compose mounts missing {source}"
            );
        }
    }
    for config in [
        "prometheus/prometheus.yml",
        "alertmanager/alertmanager.yml",
        "loki/loki.yaml",
        "tempo/tempo.yaml",
        "alloy/config.alloy",
        "grafana/provisioning/datasources/datasources.yaml",
        "grafana/provisioning/dashboards/dashboards.yaml",
    ] {
        assert!(deploy.join(config).is_file(), "deploy/{config} is missing");
    }
    for port in ["9090:9090", "3000:3000", "3100:3100", "4317:4317"] {
        assert!(
            resolved.contains(port),
            "compose.yaml does not publish {port}"
        );
    }
    // Prometheus keeps exemplars, and is recent enough for `scrape_protocols`.
    let prometheus: String = resolved
        .lines()
        .skip_while(|line| *line != "  prometheus:")
        .skip(1)
        .take_while(|line| line.starts_with("    ") || line.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        prometheus.contains("--enable-feature=exemplar-storage"),
        "Prometheus does not keep exemplars:\n{prometheus}"
    );
    let version = images
        .iter()
        .find_map(|image| image.strip_prefix("prom/prometheus:v"))
        .expect("a pinned prom/prometheus image");
    let numbers: Vec<u32> = version.split('.').filter_map(|n| n.parse().ok()).collect();
    assert!(
        numbers.as_slice() >= [2, 49].as_slice(),
        "prom/prometheus:v{version} predates scrape_protocols (2.49)"
    );
    let alloy = read("deploy/alloy/config.alloy");
    assert!(
        alloy.contains("\"app\"      = \"multiweb-api\""),
        "the log shipper does not label the app's logs app=\"multiweb-api\""
    );
}

/// Every dashboard with its parsed JSON.
fn dashboards() -> Vec<(&'static str, serde_json::Value)> {
    DASHBOARDS
        .iter()
        .map(|(file, ..)| {
            let text = read(&format!("deploy/grafana/dashboards/{file}"));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
            (*file, json)
        })
        .collect()
}

/// Every target `expr` of a dashboard.
fn exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

/// The `[...]` range selectors in a PromQL expression.
fn windows(expr: &str) -> Vec<&str> {
    expr.match_indices('[')
        .filter_map(|(start, _)| {
            expr[start..]
                .find(']')
                .map(|len| &expr[start..=start + len])
        })
        .filter(|w| !w.starts_with("[45]"))
        .collect()
}

#[test]
fn dashboards_have_the_guide_panels_and_namespace_variable() {
    let mut uids = BTreeSet::new();
    for ((file, json), (_, title, allowed, panels)) in dashboards().iter().zip(DASHBOARDS) {
        assert_eq!(json["title"], title, "{file}: title");
        let uid = json["uid"].as_str().expect("a fixed uid");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} is repeated");

        let titles: Vec<&str> = json["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .map(|p| p["title"].as_str().expect("panel title"))
            .collect();
        assert_eq!(titles, panels, "{file}: the guide's panels");

        let variables = json["templating"]["list"].as_array().expect("variables");
        let namespace = variables
            .iter()
            .find(|v| v["name"] == "namespace")
            .unwrap_or_else(|| panic!("{file}: no namespace variable"));
        assert_eq!(
            namespace["type"], "query",
            "{file}: namespace variable type"
        );
        let query = namespace["query"]["query"].as_str().unwrap_or_default();
        assert!(
            query.starts_with("label_values(") && query.ends_with(", namespace)"),
            "{file}: namespace variable query {query:?}"
        );

        for panel in json["panels"].as_array().expect("panels") {
            let name = &panel["title"];
            assert_eq!(
                panel["datasource"]["uid"], "prometheus",
                "{file}: {name} data source"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {name} has no query");
            for target in targets {
                let expr = target["expr"].as_str().expect("an expr");
                assert!(
                    expr.contains("namespace=\"$namespace\""),
                    "{file}: {name} does not filter on $namespace: {expr}"
                );
                for window in windows(expr) {
                    assert!(
                        allowed.contains(&window),
                        "{file}: {name} uses the window {window}, not {allowed:?}: {expr}"
                    );
                }
            }
        }
    }
}

/// The latency panels of the API and Overview dashboards show exemplars:
/// a time series panel with exemplars on for a query of the duration
/// buckets (the only series that carry them).
#[test]
fn latency_panels_show_exemplars() {
    let dashboards = dashboards();
    for (file, title) in [
        (
            "api-performance.json",
            "Response Time by Endpoint (P50, P95, P99)",
        ),
        ("application-overview.json", "Avg Response Time"),
    ] {
        let (_, json) = dashboards
            .iter()
            .find(|(f, _)| *f == file)
            .expect("a shipped dashboard");
        let panel = json["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("{file}: no {title} panel"));
        assert_eq!(panel["type"], "timeseries", "{file}: {title} shows no dots");
        let with_exemplars: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["exemplar"] == true)
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert_eq!(with_exemplars.len(), 1, "{file}: {title}: one set of dots");
        assert!(
            with_exemplars[0].contains("http_request_duration_seconds_bucket{"),
            "{file}: {title}: exemplars are on the buckets: {with_exemplars:?}"
        );
    }
}

#[test]
fn every_dashboard_expression_parses() {
    let promtool = require_tool("promtool", PROMTOOL_HINT);
    let all: Vec<String> = dashboards().iter().flat_map(|(_, j)| exprs(j)).collect();
    assert!(all.len() >= 20, "only {} dashboard queries", all.len());

    // promtool parses PromQL in rule files: one recording rule per query.
    let mut rules = String::from("groups:\n- name: dashboard_queries\n  rules:\n");
    for (i, expr) in all.iter().enumerate() {
        let expr = expr.replace("$namespace", "multiweb");
        let quoted = serde_json::to_string(&expr).expect("a JSON string is a YAML string");
        let _ = write!(
            rules,
            "  - record: dashboard_query_{i}\n    expr: {quoted}\n"
        );
    }
    let dir = scratch("dashboard-queries");
    let file = dir.join("dashboard_queries.yml");
    std::fs::write(&file, rules).expect("write the rules file");
    let out = run_ok(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8 path")],
    );
    let expected = format!("SUCCESS: {} rules found", all.len());
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
}

#[test]
fn grafana_provisions_the_three_data_sources() {
    let sources = read("deploy/grafana/provisioning/datasources/datasources.yaml");
    for (kind, uid, url) in [
        ("prometheus", "prometheus", "http://prometheus:9090"),
        ("loki", "loki", "http://loki:3100"),
        ("tempo", "tempo", "http://tempo:3200"),
    ] {
        let block = sources
            .split("  - name: ")
            .find(|b| b.contains(&format!("type: {kind}\n")))
            .unwrap_or_else(|| panic!("no {kind} data source"));
        assert!(
            block.contains(&format!("uid: {uid}\n")) && block.contains(&format!("url: {url}\n")),
            "{kind} data source: {block}"
        );
    }
    // A latency bucket's exemplar opens its trace in Tempo.
    let prometheus = sources
        .split("\n  - name: ")
        .find(|b| b.contains("\n    type: prometheus\n"))
        .expect("the prometheus data source");
    assert!(
        prometheus.contains(
            "      exemplarTraceIdDestinations:\n        - name: trace_id\n          datasourceUid: tempo\n"
        ),
        "exemplars do not link to Tempo: {prometheus}"
    );
    let providers = read("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    assert!(
        providers.contains("path: /var/lib/grafana/dashboards"),
        "the dashboards provider does not read the mounted dashboards"
    );
}

#[test]
fn kubernetes_prometheus_rule_is_generated_from_alerts() {
    let bash = require_tool("bash", "apt-get install bash");
    let promtool = require_tool("promtool", PROMTOOL_HINT);
    let dir = scratch("kubernetes");
    let generated = dir.join("prometheusrule.yaml");
    run_ok(
        &bash,
        &[
            "deploy/kubernetes/generate.sh",
            generated.to_str().expect("UTF-8 path"),
        ],
    );
    let generated = std::fs::read_to_string(&generated).expect("generated file");
    let committed = read("deploy/kubernetes/prometheusrule.yaml");
    assert!(
        generated == committed,
        "deploy/kubernetes/prometheusrule.yaml is stale: run `bash deploy/kubernetes/generate.sh`"
    );
    for needle in [
        "apiVersion: monitoring.coreos.com/v1\n",
        "kind: PrometheusRule\n",
    ] {
        assert!(
            committed.contains(needle),
            "PrometheusRule lacks {needle:?}"
        );
    }

    // Its spec, de-indented, is a rules file that promtool accepts whole.
    let (_, spec) = committed.split_once("\nspec:\n").expect("a spec: section");
    let mut rules = String::new();
    for line in spec.lines() {
        let body = if line.is_empty() {
            ""
        } else {
            line.strip_prefix("  ")
                .unwrap_or_else(|| panic!("spec line not indented: {line:?}"))
        };
        rules.push_str(body);
        rules.push('\n');
    }
    assert_eq!(
        alert_names(&rules).into_iter().collect::<BTreeSet<_>>(),
        expected_alerts(),
        "the PrometheusRule's alerts"
    );
    let file = dir.join("spec_rules.yml");
    std::fs::write(&file, rules).expect("write the rules file");
    let out = run_ok(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8 path")],
    );
    let expected = format!("SUCCESS: {} rules found", ALERTS.len());
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");

    let monitor = read("deploy/kubernetes/servicemonitor.yaml");
    for needle in [
        "kind: ServiceMonitor\n",
        "app.kubernetes.io/name: multiweb-api\n",
        "path: /metrics\n",
        "  scrapeProtocols:\n    - OpenMetricsText1.0.0\n    - OpenMetricsText0.0.1\n    - PrometheusText0.0.4\n",
    ] {
        assert!(monitor.contains(needle), "ServiceMonitor lacks {needle:?}");
    }
}

/// Every file under `deploy/`, relative to it.
fn deploy_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            deploy_files(&path, out);
        } else {
            let relative = path
                .strip_prefix(root().join("deploy"))
                .expect("under deploy/");
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn deploy_readme_explains_every_file() {
    let readme = read("deploy/README.md");
    let mut files = Vec::new();
    deploy_files(&root().join("deploy"), &mut files);
    let ignored = ["README.md", "alertmanager/secrets/slack-webhook-url"];
    for file in files.iter().filter(|f| !ignored.contains(&f.as_str())) {
        assert!(
            readme.contains(&format!("`{file}`")),
            "deploy/README.md does not explain `{file}`"
        );
    }
}
