//! `panic_hook(false)`: `init` leaves the panic hook alone and exports no
//! panic counter. (Its own test binary: it installs the global telemetry.)

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use multiweb_telemetry::Telemetry;

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

static USER_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn opting_out_leaves_the_panic_hook_alone() {
    std::panic::set_hook(Box::new(|_| {
        USER_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let logs = Sink::default();
    let telemetry = Telemetry::builder()
        .log_writer(logs.clone())
        .panic_hook(false)
        .try_init()
        .unwrap();
    assert!(std::panic::catch_unwind(|| panic!("not logged")).is_err());
    assert_eq!(USER_HOOK_CALLS.load(Ordering::SeqCst), 1);
    let metrics = telemetry.render_metrics();
    assert!(
        metrics.contains("multiweb_telemetry_log_lines_dropped_total")
            && !metrics.contains("multiweb_telemetry_panics_total"),
        "{metrics}"
    );
    telemetry.shutdown();
    let written = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!written.contains("not logged"), "{written}");
}
