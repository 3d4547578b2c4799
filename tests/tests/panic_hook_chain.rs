//! The panic hook `init` installs calls the hook installed before it, logs
//! each panic as one JSON line inside the current span, counts it, and
//! hands panics back to the previous hook once the guard is dropped.
//! (Its own test binary: it installs the global telemetry and panic hook.)

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use multiweb_telemetry::Telemetry;
use multiweb_telemetry::testing::Exposition;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn panic_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["target"] == "multiweb_telemetry::panic")
            .collect()
    }
}

static USER_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_hook_installed_before_init_is_chained() {
    std::panic::set_hook(Box::new(|_| {
        USER_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let logs = Sink::default();
    let telemetry = Telemetry::builder()
        .log_writer(logs.clone())
        .try_init()
        .unwrap();
    let counted = |telemetry: &multiweb_telemetry::TelemetryGuard| {
        Exposition::parse(&telemetry.render_metrics()).value("multiweb_telemetry_panics_total", &[])
    };
    assert_eq!(counted(&telemetry), Some(0.0), "exported from the start");

    let span = tracing::info_span!("job", job_id = 7);
    let caught = span.in_scope(|| std::panic::catch_unwind(|| panic!("job {} failed", 7)));
    assert!(caught.is_err());
    assert_eq!(
        USER_HOOK_CALLS.load(Ordering::SeqCst),
        1,
        "the user's hook ran"
    );
    assert_eq!(counted(&telemetry), Some(1.0));

    // Wait (bounded) for the writer thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while logs.panic_lines().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let lines = logs.panic_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "error");
    assert_eq!(line["error"], "job 7 failed");
    assert_eq!(line["job_id"], 7, "the span's fields: {line}");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.starts_with("panicked at tests/tests/panic_hook_chain.rs:")
            && message.ends_with(": job 7 failed"),
        "{message}"
    );

    // After shutdown the writer is gone: panics go to the previous hook.
    telemetry.shutdown();
    assert!(std::panic::catch_unwind(|| panic!("after shutdown")).is_err());
    assert_eq!(USER_HOOK_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(logs.panic_lines().len(), 1, "not logged after shutdown");
}
