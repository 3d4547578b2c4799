//! The standard Prometheus process metrics, rendered at each scrape.

use std::fmt::Write as _;

/// Appends the `process_*` families with the names, types and help texts
/// every official Prometheus client uses. Values the platform cannot give are
/// left out. CPU time keeps its fractional seconds (the `metrics` facade's
/// integer counters would lose them).
pub(crate) fn render(out: &mut String) {
    let m = metrics_process::collector::collect();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            );
        }
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        m.cpu_seconds_total,
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        m.open_fds.map(|v| v as f64),
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        m.max_fds.map(|v| v as f64),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        m.virtual_memory_bytes.map(|v| v as f64),
    );
    family(
        "process_virtual_memory_max_bytes",
        "gauge",
        "Maximum amount of virtual memory available in bytes.",
        m.virtual_memory_max_bytes.map(|v| v as f64),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        m.resident_memory_bytes.map(|v| v as f64),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        m.start_time_seconds.map(|v| v as f64),
    );
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        m.threads.map(|v| v as f64),
    );
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn renders_every_family_with_its_type() {
        let mut out = String::new();
        super::render(&mut out);
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("process_threads", "gauge"),
        ] {
            assert!(
                out.contains(&format!("# TYPE {name} {kind}\n{name} ")),
                "{name}: {out}"
            );
        }
    }
}
