//! Support code for the end-to-end tests in `tests/tests/`: running the
//! example application, talking HTTP to it, and finding external tools.
//!
//! One module a job: [`app`] (the example as a process), [`http_client`],
//! [`collector`] (rotel), [`prometheus`], [`exposition`] (exemplars and
//! promtool), [`log_buffer`] (in-process logs), [`stack`] (the guide's
//! whole stack), [`fake_collector`], [`tls`] and [`guide`]. Their items are
//! re-exported here.

#![allow(
    clippy::missing_panics_doc,
    reason = "test support fails the calling test by panicking"
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

pub mod app;
pub mod collector;
pub mod exposition;
pub mod fake_collector;
pub mod guide;
pub mod http_client;
pub mod log_buffer;
mod output;
pub mod prometheus;
pub mod stack;
pub mod tls;

pub use app::{
    App, Unread, run_marketplace_to_exit, start_marketplace, start_marketplace_in,
    start_marketplace_unread,
};
pub use collector::{Collector, ExportedSpan, parse_rotel_spans, rotel_agent};
pub use exposition::{
    ExemplarLine, exemplars_in, promtool_check_metrics, promtool_check_openmetrics,
};
pub use http_client::{Response, http_request, try_http_request};
pub use log_buffer::LogBuffer;
pub use prometheus::Prometheus;

/// How long to wait for the example to start or for a log line to appear.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a binary built by `cargo test` from an `[[example]]` target.
///
/// # Panics
///
/// If the example was not built (`cargo build --workspace --examples`).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example binary {} is missing: build it with `cargo build --workspace --examples` \
         before `cargo test` (scripts/test.sh does both)",
        path.display()
    );
    path
}

/// Fails the test with install instructions when `tool` is not on `PATH`.
///
/// # Panics
///
/// When the tool is missing: tests never skip silently.
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{tool}` is required by this test but was not found on PATH; install it with: {install} (scripts/test.sh does this)")
    })
}

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Percent-encodes `value` for a URL query string.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
