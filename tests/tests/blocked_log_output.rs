//! When the log output stops reading, the application keeps running, lost
//! lines are counted on `/metrics`, and logging resumes once it reads again.
//! (Its own test binary: it installs the global telemetry.)

use std::io;
use std::sync::{Arc, Condvar, Mutex};

use multiweb_telemetry::Telemetry;
use multiweb_telemetry::testing::Exposition;

/// A log output that blocks every write until it is opened.
#[derive(Clone, Default)]
struct Valve {
    state: Arc<(Mutex<ValveState>, Condvar)>,
}

/// Whether the valve is open, and what went through it.
type ValveState = (bool, Vec<u8>);

impl Valve {
    fn open(&self) {
        self.state.0.lock().unwrap().0 = true;
        self.state.1.notify_all();
    }

    fn written(&self) -> String {
        String::from_utf8(self.state.0.lock().unwrap().1.clone()).unwrap()
    }
}

impl io::Write for Valve {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, opened) = &*self.state;
        let mut state = opened.wait_while(lock.lock().unwrap(), |s| !s.0).unwrap();
        state.1.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn dropped(telemetry: &multiweb_telemetry::TelemetryGuard) -> usize {
    let value = Exposition::parse(&telemetry.render_metrics())
        .value("multiweb_telemetry_log_lines_dropped_total", &[])
        .expect("the dropped-lines counter is exported");
    value.to_string().parse().expect("a whole number")
}

/// With the deprecated line bound, which still applies besides the bound in
/// bytes (`log_buffer_bytes.rs` tests that one with the example).
#[test]
#[allow(deprecated)]
fn blocked_output_drops_and_counts_lines_then_resumes() {
    let valve = Valve::default();
    let telemetry = Telemetry::builder()
        .log_writer(valve.clone())
        .log_buffer_lines(16)
        .try_init()
        .unwrap();
    assert_eq!(dropped(&telemetry), 0);

    // The writer thread takes at most one buffer's worth and then blocks in
    // `write`; 16 more lines fit the buffer; the rest are dropped.
    for i in 0..1_000 {
        tracing::info!(i, "while blocked");
    }
    let lost = dropped(&telemetry);
    assert!(
        (1_000 - 2 * 16..=1_000).contains(&lost),
        "lines beyond the buffer are counted as dropped: {lost}"
    );

    valve.open();
    // Wait (bounded) for the writer to drain what was buffered.
    let kept = 1_000 - lost;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while valve.written().lines().count() < kept && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tracing::info!("after reopening");
    telemetry.shutdown();
    let written = valve.written();
    let lines: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.last().unwrap()["message"],
        "after reopening",
        "logging resumes once the output reads again"
    );
    assert_eq!(lines.len(), kept + 1, "every line is written or counted");
}
