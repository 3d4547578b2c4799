//! The `collect_metrics` example against a real Prometheus that scraped the
//! marketplace: the guide's three CSV files, loaded by the guide's own
//! pandas snippet, values that agree with Prometheus, and clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use multiweb_tests::{Prometheus, example_path, free_port, start_marketplace};

fn collect(args: &[&str]) -> std::process::Output {
    Command::new(example_path("collect_metrics"))
        .args(args)
        .output()
        .expect("run collect_metrics")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "multiweb-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3");
    assert!(
        venv.is_file(),
        "{} is missing: run scripts/install-test-tools.sh (it installs pandas and scipy into .venv)",
        venv.display()
    );
    venv
}

/// The guide's analysis snippet, without the plotting.
const GUIDE_SNIPPET: &str = r"
import sys
import pandas as pd
from scipy import stats

df = pd.read_csv(sys.argv[1], parse_dates=['timestamp'])
request_rate = df[df['metric'] == 'request_rate']
print(request_rate['value'].describe())
z_scores = stats.zscore(request_rate['value'])
anomalies = request_rate[abs(z_scores) > 3]
print(f'Anomalies detected: {len(anomalies)}')
assert str(df['timestamp'].dtype).startswith('datetime64'), df['timestamp'].dtype
assert len(request_rate) > 0
";

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
fn csv_files_load_in_the_guides_snippet_and_agree_with_prometheus() {
    let app = start_marketplace(&["--demo-load"], &[]);
    let prometheus = Prometheus::start(app.addr, None);
    prometheus.wait_for_data("sum(rate(http_requests_total[20s])) > 0");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = temp_dir("collect");
    let url = format!("http://{}", prometheus.addr);
    let output = collect(&[
        "--prometheus",
        &url,
        "--range",
        "1m",
        "--step",
        "1s",
        "--rate-window",
        "20s",
        "--increase-window",
        "1m",
        "--out",
        out.to_str().unwrap(),
        "--report",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (name, prefix) in
        names
            .iter()
            .zip(["business_metrics_", "http_metrics_", "system_metrics_"])
    {
        let stamp = name
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(".csv"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            stamp.len() == 15 && stamp.as_bytes()[8] == b'_',
            "YYYYMMDD_HHMMSS: {name}"
        );
    }
    let read = |i: usize| std::fs::read_to_string(&files[i]).unwrap();
    let (business, http, system) = (read(0), read(1), read(2));
    assert_eq!(http.lines().next(), Some("timestamp,metric,path,value"));
    assert_eq!(system.lines().next(), Some("timestamp,metric,value"));
    assert_eq!(business.lines().next(), Some("timestamp,metric,value"));
    for metric in [
        "request_rate",
        "error_rate",
        "p95_latency",
        "endpoint_p95_latency",
    ] {
        assert!(
            http.contains(&format!(",{metric},")),
            "{metric} in the HTTP file"
        );
    }
    for metric in ["cpu_usage", "memory_bytes"] {
        assert!(
            system.contains(&format!(",{metric},")),
            "{metric} in the system file"
        );
    }
    for metric in [
        "products_created",
        "transactions_completed",
        "active_users",
        "revenue_cents",
    ] {
        assert!(
            business.contains(&format!(",{metric},")),
            "{metric} in the business file"
        );
    }

    // The last memory point equals Prometheus's answer at that instant.
    let last = system
        .lines()
        .rfind(|l| l.contains(",memory_bytes,"))
        .unwrap()
        .to_owned();
    let mut fields = last.split(',');
    let timestamp = fields.next().unwrap();
    let value: f64 = fields.nth(1).unwrap().parse().unwrap();
    let answer = prometheus.query_at("process_resident_memory_bytes", timestamp);
    let expected: f64 = answer[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(value, expected, "at {timestamp}");

    // The report, as JSON for scripts.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["peak_hour"].is_string(), "{report}");
    let slowest = report["slowest_endpoints"].as_array().unwrap();
    assert!(!slowest.is_empty() && slowest.len() <= 10);
    let errors = report["error_endpoints"].as_array().unwrap();
    assert_eq!(errors[0][0], "/api/v1/debug/error", "{report}");
    assert!(report["anomalies"].is_array());

    // The guide's own pandas snippet loads the file unchanged.
    let check = Command::new(python())
        .arg("-c")
        .arg(GUIDE_SNIPPET)
        .arg(&files[1])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pandas: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("Anomalies detected: "));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn errors_name_what_went_wrong() {
    let out = temp_dir("collect-errors");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let output = collect(&["--prometheus", &closed, "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("error: cannot reach Prometheus at {closed}: ")),
        "{stderr}"
    );

    // A Prometheus whose only target is down: it has no application data.
    let nobody = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let prometheus = Prometheus::start(nobody, None);
    let url = format!("http://{}", prometheus.addr);
    let output = collect(&[
        "--prometheus",
        &url,
        "--rate-window",
        "5x",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: Prometheus rejected the query `sum(rate(http_requests_total[5x]))`: "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("parse error"),
        "the PromQL error text is passed through: {stderr}"
    );

    let output = collect(&["--prometheus", &url, "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: Prometheus has no data from "),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("is it scraping the application?\n"),
        "{stderr}"
    );

    let unwritable = Path::new("/proc/multiweb-cannot-write-here");
    let output = collect(&["--prometheus", &url, "--out", unwritable.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("error: cannot write {}: ", unwritable.display())),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "no file, not even a partial one"
    );
    let _ = std::fs::remove_dir_all(&out);
}
