//! The panic hook [`init`](crate::init) installs: each panic becomes one
//! JSON log line at error level, written through the non-blocking log
//! writer, and is counted in
//! [`multiweb_telemetry_panics_total`](crate::metrics::PANICS).
//!
//! The standard hook writes each panic to stderr synchronously, on the
//! panicking thread. When stderr is a pipe nobody reads, the pipe fills up
//! (after about 600 panics, or 28 with `RUST_BACKTRACE=1`), the next panic
//! blocks its thread in that write, and a flood of panicking requests
//! freezes every runtime worker. Through the log writer, a stalled output
//! drops (and counts) lines instead, and Loki sees panics as it sees every
//! other error.
//!
//! # The line
//!
//! A `tracing` event (target `multiweb_telemetry::panic`, level `error`)
//! emitted on the panicking thread, inside its current span: a handler's
//! panic carries the request's fields, `trace_id` and `span_id`. Its
//! `message` reads `panicked at src/api.rs:42:5: <payload>`, `error` holds
//! the payload, and `backtrace` the backtrace when `RUST_BACKTRACE` (or
//! `RUST_LIB_BACKTRACE`) asks for one, trimmed to the frames the standard
//! hook shows unless `RUST_BACKTRACE=full`, and cut at 8 KiB like any
//! value.
//!
//! # Chaining
//!
//! A hook installed before `init` (an error reporter's, say) is called
//! after the line is logged. The standard hook is not: calling it would
//! bring back the blocking write. `std::panic::take_hook` returns the
//! standard hook when no other is set; taking the hook a second time right
//! away returns that same boxed function, and comparing the two (address and
//! vtable) tells whether the first one was it.
//!
//! After the [`TelemetryGuard`](crate::TelemetryGuard) is dropped, the log
//! writer has stopped: panics then go to the hook that was there before
//! `init`, the standard one included, so they are not lost.
//!
//! In a build with `panic = "abort"`, the process ends right after the
//! hooks: the hook waits (at most a second) for the log writer to write the
//! line out first.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::log::BufferedWriter;

/// The target of the panic log lines.
const TARGET: &str = "multiweb_telemetry::panic";

/// How long an aborting panic waits for its line to be written.
const ABORT_FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Whether the hook was installed (the counter is exported only then).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether the hook logs panics (until the guard is dropped).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Panics seen by the hook while active.
static PANICS: AtomicU64 = AtomicU64::new(0);

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Stops the hook from logging when dropped: panics go to the previous
/// hook again.
#[derive(Debug)]
pub(crate) struct PanicHook(());

impl Drop for PanicHook {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::Release);
    }
}

/// The number of panics counted, if the hook is installed.
pub(crate) fn count() -> Option<u64> {
    INSTALLED
        .load(Ordering::Acquire)
        .then(|| PANICS.load(Ordering::Relaxed))
}

/// Installs the hook, logging through the current `tracing` dispatcher
/// (which writes to `writer`). Returns `None` on a panicking thread, where
/// the hook cannot be changed.
pub(crate) fn install(writer: BufferedWriter) -> Option<PanicHook> {
    if std::thread::panicking() {
        return None;
    }
    let (previous, is_standard) = previous_hook();
    let full = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full");
    std::panic::set_hook(Box::new(move |info| {
        if !ACTIVE.load(Ordering::Acquire) {
            return previous(info);
        }
        PANICS.fetch_add(1, Ordering::Relaxed);
        log(info, full);
        if !is_standard {
            previous(info);
        }
        if cfg!(panic = "abort") {
            writer.flush_within(ABORT_FLUSH_WAIT);
        }
    }));
    INSTALLED.store(true, Ordering::Release);
    ACTIVE.store(true, Ordering::Release);
    Some(PanicHook(()))
}

/// The hook set now (which it leaves unset), and whether it is the
/// standard one.
fn previous_hook() -> (Hook, bool) {
    let previous = std::panic::take_hook();
    // Nothing is set now: this is the standard hook, boxed the same way.
    let standard = std::panic::take_hook();
    let is_standard = std::ptr::eq(
        std::ptr::from_ref::<dyn Fn(&PanicHookInfo<'_>) + Sync + Send>(&*previous),
        std::ptr::from_ref(&*standard),
    );
    (previous, is_standard)
}

/// Logs the panic as one error event in the current span.
fn log(info: &PanicHookInfo<'_>, full: bool) {
    let payload = info.payload();
    let payload = (payload.downcast_ref::<&str>().copied())
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let backtrace = Backtrace::capture();
    let backtrace = (backtrace.status() == BacktraceStatus::Captured).then(|| {
        let text = backtrace.to_string();
        if full { text } else { short(&text) }
    });
    match info.location() {
        Some(at) => tracing::error!(
            target: TARGET,
            error = payload,
            backtrace = backtrace.as_deref(),
            "panicked at {at}: {payload}"
        ),
        None => tracing::error!(
            target: TARGET,
            error = payload,
            backtrace = backtrace.as_deref(),
            "panicked: {payload}"
        ),
    }
}

/// The frames the standard hook shows for `RUST_BACKTRACE=1`: those after
/// the panic machinery (`__rust_end_short_backtrace`) and before the
/// thread's or runtime's start (`__rust_begin_short_backtrace`). `text` is a
/// [`Backtrace`]'s `Display`: a line `N: symbol` per frame, each followed
/// by its `at file:line` lines.
fn short(text: &str) -> String {
    let frame_starts = |line: &str| {
        line.trim_start()
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let lines: Vec<&str> = text.lines().collect();
    let frames: Vec<usize> = (0..lines.len())
        .filter(|&i| frame_starts(lines[i]))
        .collect();
    if frames.is_empty() {
        return text.to_owned();
    }
    let frame_of = |marker: &str| frames.iter().position(|&i| lines[i].contains(marker));
    let first = frame_of("__rust_end_short_backtrace").map_or(0, |f| f + 1);
    let end = frames[first.min(frames.len())..]
        .iter()
        .position(|&i| lines[i].contains("__rust_begin_short_backtrace"))
        .map(|f| first + f);
    let from = frames.get(first).copied().unwrap_or(lines.len());
    let to = end
        .and_then(|f| frames.get(f))
        .copied()
        .unwrap_or(lines.len());
    let mut out = lines[from..to].join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "   0: std::backtrace_rs::backtrace::libunwind::trace
             at /rustc/library/std/src/../../backtrace/src/backtrace/libunwind.rs:117:9
   1: std::sys::backtrace::__rust_end_short_backtrace
             at /rustc/library/std/src/sys/backtrace.rs:176:18
   2: __rustc::rust_begin_unwind
   3: marketplace::api::debug_panic::{{closure}}
             at ./examples/marketplace/api.rs:307:5
   4: std::sys::backtrace::__rust_begin_short_backtrace
             at /rustc/library/std/src/sys/backtrace.rs:160:18
   5: std::rt::lang_start
";

    #[test]
    fn the_short_backtrace_has_the_frames_the_standard_hook_shows() {
        assert_eq!(
            short(FULL),
            "   2: __rustc::rust_begin_unwind
   3: marketplace::api::debug_panic::{{closure}}
             at ./examples/marketplace/api.rs:307:5
"
        );
    }

    #[test]
    fn without_markers_every_frame_is_kept() {
        let text = "   0: a\n             at a.rs:1:1\n   1: b\n";
        assert_eq!(short(text), text);
        assert_eq!(short(""), "");
    }
}
