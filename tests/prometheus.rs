//! A real Prometheus server scraping the app, and its HTTP API.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{STARTUP_TIMEOUT, free_port, http_request, require_tool, url_encode};

/// A real Prometheus server on 127.0.0.1 with a temporary data directory,
/// scraping one target every second; killed (and its directory removed)
/// when dropped.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// The HTTP API address.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`)
    /// every second, with the label `namespace="multiweb"` added as the
    /// shipped scrape config does, and evaluating `rules` (a rules file's
    /// text) every second.
    ///
    /// # Panics
    ///
    /// If `prometheus` is missing or does not become ready.
    pub fn start(target: SocketAddr, rules: Option<&str>) -> Self {
        Self::start_scraping(&Self::app_job(target), rules)
    }

    /// [`Prometheus::start`], with command-line `flags` added (such as
    /// `--enable-feature=exemplar-storage`, as `deploy/compose.yaml` starts
    /// it). Prometheus 2.x asks targets for OpenMetrics first by default.
    ///
    /// # Panics
    ///
    /// If `prometheus` is missing or does not become ready.
    pub fn start_with_flags(target: SocketAddr, rules: Option<&str>, flags: &[&str]) -> Self {
        Self::start_scraping_with_flags(&Self::app_job(target), rules, flags)
    }

    /// The `scrape_configs` entry [`Prometheus::start`] uses: job
    /// `multiweb-api` scraping `target` with `namespace="multiweb"`.
    pub fn app_job(target: SocketAddr) -> String {
        format!(
            "  - job_name: multiweb-api\n    static_configs:\n      \
             - targets: ['{target}']\n        labels:\n          namespace: multiweb\n"
        )
    }

    /// Starts Prometheus with these `scrape_configs` entries (YAML list
    /// items indented by two spaces), scraping every second and evaluating
    /// `rules` every second.
    ///
    /// # Panics
    ///
    /// If `prometheus` is missing or does not become ready.
    pub fn start_scraping(jobs: &str, rules: Option<&str>) -> Self {
        Self::start_scraping_with_flags(jobs, rules, &[])
    }

    /// [`Prometheus::start_scraping`], with command-line `flags` added.
    ///
    /// # Panics
    ///
    /// If `prometheus` is missing or does not become ready.
    pub fn start_scraping_with_flags(jobs: &str, rules: Option<&str>, flags: &[&str]) -> Self {
        let binary = require_tool("prometheus", "apt-get install -y prometheus");
        let dir = std::env::temp_dir().join(format!(
            "multiweb-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let rule_files = match rules {
            Some(rules) => {
                std::fs::write(dir.join("rules.yml"), rules).expect("write rules");
                "rule_files: [rules.yml]\n"
            }
            None => "",
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}\
             scrape_configs:\n{jobs}"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .current_dir(&dir)
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=data")
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Self { child, dir, addr };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let ready = TcpStream::connect(addr).is_ok()
                && http_request(addr, "GET", "/-/ready", &[], "").status == 200;
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// Runs an instant query; returns the whole JSON answer (`status`,
    /// `data.result`, or `error`).
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let response = http_request(self.addr, "GET", &path, &[], "");
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("prometheus answered {}: {e}", response.body))
    }

    /// The result of an instant query evaluated at `time` (RFC 3339 or unix
    /// seconds).
    pub fn query_at(&self, expr: &str, time: &str) -> Vec<serde_json::Value> {
        let path = format!(
            "/api/v1/query?query={}&time={}",
            url_encode(expr),
            url_encode(time)
        );
        let response = http_request(self.addr, "GET", &path, &[], "");
        let answer: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The series an instant query returns (panics on a query error).
    pub fn series(&self, expr: &str) -> Vec<serde_json::Value> {
        let answer = self.query(expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (bounded) until `expr` returns at least one series.
    pub fn wait_for_data(&self, expr: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let series = self.series(expr);
            if !series.is_empty() {
                return series;
            }
            assert!(Instant::now() < deadline, "no data for {expr}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The exemplars of the series `expr` selects (`/api/v1/query_exemplars`
    /// over the last hour): one entry per series, with its `seriesLabels`
    /// and `exemplars` (each with `labels`, `value` and `timestamp`).
    pub fn exemplars(&self, expr: &str) -> Vec<serde_json::Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            url_encode(expr),
            now - 3600,
            now + 60
        );
        let response = http_request(self.addr, "GET", &path, &[], "");
        let answer: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("prometheus answered {}: {e}", response.body));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"].as_array().cloned().unwrap_or_default()
    }

    /// Every rule Prometheus loaded (`/api/v1/rules`), flattened out of
    /// their groups.
    pub fn rules(&self) -> Vec<serde_json::Value> {
        let response = http_request(self.addr, "GET", "/api/v1/rules", &[], "");
        let answer: serde_json::Value = serde_json::from_str(&response.body).expect("rules JSON");
        answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The active alerts (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let response = http_request(self.addr, "GET", "/api/v1/alerts", &[], "");
        let answer: serde_json::Value = serde_json::from_str(&response.body).expect("alerts JSON");
        answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
