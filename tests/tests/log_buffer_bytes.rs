//! A stalled stdout and long log lines: the log buffer is bounded in bytes,
//! so the app's memory stays bounded while stdout is a pipe nobody reads,
//! and the lines that do not fit are counted on `/metrics`.

use std::time::Duration;

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{App, Unread, start_marketplace_unread, try_http_request};

/// A path of 60 KB: its access line is about 25 KB (the message, `path` and
/// `url.path` each carry it, cut at 8 KB).
const PATH_BYTES: usize = 60 * 1024;

/// Requests sent while stdout is not read. At about 25 KB a line, a buffer
/// bounded only by its 128,000 lines grows by about 200 MB.
const REQUESTS: usize = 8_000;

/// Client threads.
const CLIENTS: usize = 4;

/// The growth allowed: the default bound (16 MiB) held twice at most (the
/// lines waiting and a batch being written, buffers that keep their
/// capacity), plus room for the allocator and the server's own buffers.
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

fn dropped_lines(app: &App) -> u64 {
    let response = try_http_request(
        app.addr,
        "GET",
        "/metrics",
        &[],
        "",
        Duration::from_secs(30),
    )
    .expect("/metrics answers while stdout is stalled");
    assert_eq!(response.status, 200, "{}", response.body);
    let value = Exposition::parse(&response.body)
        .value("multiweb_telemetry_log_lines_dropped_total", &[])
        .expect("the dropped-lines counter is exported");
    value.to_string().parse().expect("a whole number")
}

#[test]
fn a_stalled_stdout_with_long_lines_keeps_memory_bounded() {
    let app = start_marketplace_unread(&[], &[], Some(Unread::Stdout));
    let path = format!("/{}", "a".repeat(PATH_BYTES));
    let send = |count: usize| {
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                scope.spawn(|| {
                    for _ in 0..count / CLIENTS {
                        let response = try_http_request(
                            app.addr,
                            "GET",
                            &path,
                            &[],
                            "",
                            Duration::from_secs(30),
                        )
                        .expect("the app answers while stdout is stalled");
                        assert_eq!(response.status, 404);
                    }
                });
            }
        });
    };
    // A first round, so that what every server allocates once (connection
    // buffers, the runtime's, the allocator's arenas) is in the baseline.
    send(200);
    let before = app.rss_bytes();
    let dropped_before = dropped_lines(&app);

    send(REQUESTS);

    let after = app.rss_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {} MiB -> {} MiB while stdout was stalled",
        before >> 20,
        after >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} MiB (from {} MiB to {} MiB) while stdout was not read; \
         at most {} MiB expected",
        growth >> 20,
        before >> 20,
        after >> 20,
        MAX_GROWTH >> 20
    );
    let dropped = dropped_lines(&app) - dropped_before;
    assert!(
        dropped >= (REQUESTS / 2) as u64,
        "most of the {REQUESTS} access lines cannot fit and are counted as dropped: {dropped}"
    );
}
