//! Support code for the end-to-end tests in `tests/tests/`: running the
//! example application, talking HTTP to it, and finding external tools.

#![allow(
    clippy::missing_panics_doc,
    reason = "test support fails the calling test by panicking"
)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod fake_collector;
pub mod guide;
pub mod stack;
pub mod tls;

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

/// Every variable the crate and the example read; the tests set the ones
/// they need.
const CRATE_VARIABLES: [&str; 32] = [
    "DATABASE_URL",
    "REDIS_URL",
    "MULTIWEB_METRICS_TOKEN",
    "RUST_LOG",
    "MULTIWEB_METRICS_ADDR",
    "MULTIWEB_LOG_FORMAT",
    "MULTIWEB_TRACES_KEEP_ERRORS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
];

/// Removes the crate's variables inherited from the test's environment,
/// except those in `keep`.
fn clean_env<V>(command: &mut Command, keep: &[(&str, V)]) {
    for name in CRATE_VARIABLES {
        if !keep.iter().any(|(k, _)| *k == name) {
            command.env_remove(name);
        }
    }
}

/// Lines a child process wrote, shared with the thread that reads them.
#[derive(Default)]
struct Lines {
    received: Mutex<Vec<String>>,
    closed: std::sync::atomic::AtomicBool,
    changed: Condvar,
}

/// A running example process, killed when dropped.
pub struct App {
    child: Child,
    /// Its working directory, removed when dropped if the app made it.
    workdir: Option<PathBuf>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    /// Keeps an output left unread open until the app is dropped.
    _unread: Option<std::sync::mpsc::Sender<()>>,
    /// The address the app listens on (from its `marketplace listening` log line).
    pub addr: SocketAddr,
}

/// An output of the example that a test leaves unread after start-up: a
/// pipe that stays open but that nobody reads, as a stalled log collector
/// leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Stdout is read up to the `marketplace listening` line, then no more.
    Stdout,
    /// Stderr is never read.
    Stderr,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn pump(stream: impl Read + Send + 'static) -> Arc<Lines> {
    pump_until(stream, None)
}

/// Like [`pump`]; with `stop`, stops reading after the first line
/// containing its text and holds the pipe open, unread, until its receiver's
/// sender is dropped.
fn pump_until(
    stream: impl Read + Send + 'static,
    stop: Option<(&'static str, std::sync::mpsc::Receiver<()>)>,
) -> Arc<Lines> {
    let lines = Arc::new(Lines::default());
    let shared = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        for line in reader.by_ref().lines() {
            let Ok(line) = line else { break };
            let last = stop.as_ref().is_some_and(|(text, _)| line.contains(text));
            shared.received.lock().unwrap().push(line);
            shared.changed.notify_all();
            if let (true, Some((_, hold))) = (last, &stop) {
                // Blocks until the app is dropped; the pipe stays open.
                let _ = hold.recv();
                return;
            }
        }
        let _guard = shared.received.lock().unwrap();
        shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        shared.changed.notify_all();
    });
    lines
}

fn wait_for(
    lines: &Lines,
    timeout: Duration,
    mut pred: impl FnMut(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut guard = lines.received.lock().unwrap();
    loop {
        if let Some(line) = guard.iter().find(|l| pred(l)) {
            return Some(line.clone());
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        guard = lines.changed.wait_timeout(guard, deadline - now).unwrap().0;
    }
}

/// Starts the `marketplace` example on an ephemeral port with `env` added to
/// its environment, in a fresh working directory of its own (where its
/// default SQLite database goes; removed when the app is dropped), and
/// waits until it listens.
///
/// # Panics
///
/// If it does not start; the panic message has its stderr.
pub fn start_marketplace(args: &[&str], env: &[(&str, &str)]) -> App {
    start_marketplace_unread(args, env, None)
}

/// [`start_marketplace`], leaving `unread` (if any) a pipe nobody reads once
/// the app listens.
///
/// # Panics
///
/// If it does not start.
pub fn start_marketplace_unread(
    args: &[&str],
    env: &[(&str, &str)],
    unread: Option<Unread>,
) -> App {
    let workdir = stack::temp_dir("app");
    let mut app = spawn_marketplace(&workdir, args, env, unread);
    app.workdir = Some(workdir);
    app
}

/// Starts the `marketplace` example like [`start_marketplace`], in the
/// working directory `dir`, which is left in place.
///
/// # Panics
///
/// If it does not start; the panic message has its stderr.
pub fn start_marketplace_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> App {
    spawn_marketplace(dir, args, env, None)
}

fn spawn_marketplace(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    unread: Option<Unread>,
) -> App {
    let mut command = Command::new(example_path("marketplace"));
    command
        .current_dir(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    clean_env(&mut command, env);
    let mut child = command.spawn().expect("spawn the marketplace example");
    let (keep_open, kept_open) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stdout = match unread {
        Some(Unread::Stdout) => pump_until(stdout, Some(("marketplace listening", kept_open))),
        _ => pump(stdout),
    };
    // Left in `child`, an unread stderr stays open until the app is dropped.
    let stderr = match unread {
        Some(Unread::Stderr) => Arc::new(Lines::default()),
        _ => pump(child.stderr.take().expect("stderr")),
    };
    let listening = wait_for(&stdout, STARTUP_TIMEOUT, |l| {
        l.contains("marketplace listening")
    });
    let Some(listening) = listening else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the example did not start; stderr:\n{}",
            stderr.received.lock().unwrap().join("\n")
        );
    };
    // JSON logs carry `"addr":"…"`; the pretty format prints `addr: …`.
    let addr = match serde_json::from_str::<serde_json::Value>(&listening) {
        Ok(line) => line["addr"].as_str().map(str::to_owned),
        Err(_) => listening
            .split("addr: ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(str::to_owned),
    };
    let addr = addr
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {listening:?}"));
    App {
        child,
        workdir: None,
        stdout,
        stderr,
        _unread: (unread == Some(Unread::Stdout)).then_some(keep_open),
        addr,
    }
}

impl App {
    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.received.lock().unwrap().clone()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.received.lock().unwrap().clone()
    }

    /// Waits for a stdout line matching `pred`.
    pub fn wait_stdout(&self, pred: impl FnMut(&str) -> bool) -> Option<String> {
        wait_for(&self.stdout, STARTUP_TIMEOUT, pred)
    }

    /// Waits (bounded by [`STARTUP_TIMEOUT`]) until `count` stdout lines
    /// match `pred`, and returns the matching lines then there (fewer if the
    /// deadline passed first).
    pub fn wait_stdout_count(
        &self,
        count: usize,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut guard = self.stdout.received.lock().unwrap();
        loop {
            let found: Vec<String> = guard.iter().filter(|l| pred(l)).cloned().collect();
            let now = Instant::now();
            if found.len() >= count || now >= deadline {
                return found;
            }
            guard = self
                .stdout
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The app's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The app's resident set size, in bytes (`VmRSS` in `/proc/<pid>/status`).
    ///
    /// # Panics
    ///
    /// Where `/proc` is missing (not Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status (these tests run on Linux)");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line in kB");
        kib * 1024
    }

    /// Parses the stdout line that `pred` accepts as JSON, waiting for it.
    ///
    /// # Panics
    ///
    /// If no such line appears.
    pub fn wait_json(&self, mut pred: impl FnMut(&serde_json::Value) -> bool) -> serde_json::Value {
        let line = self
            .wait_stdout(|l| serde_json::from_str(l).is_ok_and(|v| pred(&v)))
            .unwrap_or_else(|| panic!("no such log line in:\n{}", self.stdout_lines().join("\n")));
        serde_json::from_str(&line).unwrap()
    }

    /// `GET path` on the app.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http_request(self.addr, "GET", path, headers, "")
    }

    /// Sends SIGTERM (kill on other platforms), waits for the exit, and
    /// returns the exit status with every stdout line.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        #[cfg(not(unix))]
        {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait for the example");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut guard = self.stdout.received.lock().unwrap();
        while !self
            .stdout
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
            && Instant::now() < deadline
        {
            guard = self
                .stdout
                .changed
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        (status, guard.clone())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.workdir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `program` with `env` and no arguments beyond `args` to completion.
/// Values need not be UTF-8.
pub fn run_marketplace_to_exit<V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    env: &[(&str, V)],
) -> std::process::Output {
    let workdir = stack::temp_dir("app");
    let mut command = Command::new(example_path("marketplace"));
    command
        .current_dir(&workdir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    clean_env(&mut command, env);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the marketplace example");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let pid = child.id();
    let output = std::thread::spawn(move || child.wait_with_output());
    while !output.is_finished() {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the example did not exit within {STARTUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&workdir);
    output.join().unwrap().expect("example output")
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection, `Connection: close`.
///
/// # Panics
///
/// On connection or protocol errors, or no answer within 30 s.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    try_http_request(addr, method, path, headers, body, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {addr}: {e}"))
}

/// [`http_request`], giving up (with an error) when the app does not answer
/// within `timeout`.
pub fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if !body.is_empty() || method == "POST" {
        let _ = write!(
            request,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(parse_response(&raw))
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn decode_chunked(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Path of the `rotel-agent` binary: `$ROTEL_AGENT`, or the one
/// `scripts/install-test-tools.sh` installs into `.venv`.
///
/// # Panics
///
/// When it is not installed.
pub fn rotel_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(path);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let found = std::fs::read_dir(root.join(".venv/lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "rotel-agent (the OTLP collector these tests need) was not found; install it with \
             `python3 -m venv .venv && .venv/bin/pip install --pre rotel==0.0.1a15` \
             (scripts/install-test-tools.sh does this) or set ROTEL_AGENT"
        )
    })
}

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A span as the collector printed it.
#[derive(Debug, Clone, Default)]
pub struct ExportedSpan {
    /// Lowercase hex trace id.
    pub trace_id: String,
    /// Lowercase hex parent span id; empty for a root.
    pub parent_id: String,
    /// Lowercase hex span id.
    pub span_id: String,
    /// Span name.
    pub name: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_INTERNAL`, …
    pub kind: String,
    /// `STATUS_CODE_UNSET`, `STATUS_CODE_ERROR`, …
    pub status: String,
    /// The status description (empty when there is none).
    pub status_message: String,
    /// Start and end, in nanoseconds since the Unix epoch.
    pub start_time: u64,
    /// See `start_time`.
    pub end_time: u64,
    /// Attributes as `(key, printed value)`, e.g. `("http.route", "Str(/x)")`.
    pub attributes: Vec<(String, String)>,
    /// The resource's attributes.
    pub resource: Vec<(String, String)>,
    /// Links, as `(trace id, span id)` in lowercase hex.
    pub links: Vec<(String, String)>,
    /// How many span events it has.
    pub events: usize,
}

impl ExportedSpan {
    /// The printed value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The printed value of resource attribute `key`.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses rotel's `--debug-log traces --debug-log-verbosity detailed` output.
pub fn parse_rotel_spans(lines: &[String]) -> Vec<ExportedSpan> {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Resource,
        Attributes,
        Link,
    }
    let mut spans = Vec::new();
    let mut resource: Vec<(String, String)> = Vec::new();
    let mut current: Option<ExportedSpan> = None;
    let mut section = Section::Other;
    for raw in lines {
        let line = strip_ansi(raw);
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #") {
            spans.extend(current.take());
            resource.clear();
            section = Section::Other;
        } else if trimmed == "Resource attributes:" {
            section = Section::Resource;
        } else if trimmed.starts_with("Span #") {
            spans.extend(current.take());
            current = Some(ExportedSpan {
                resource: resource.clone(),
                ..ExportedSpan::default()
            });
            section = Section::Other;
        } else if trimmed == "Attributes:" {
            section = Section::Attributes;
        } else if trimmed.starts_with("SpanEvent #") {
            if let Some(span) = current.as_mut() {
                span.events += 1;
            }
            section = Section::Other;
        } else if trimmed.starts_with("Events:")
            || trimmed.starts_with("Links:")
            || trimmed.starts_with("ScopeSpans")
        {
            section = Section::Other;
        } else if trimmed.starts_with("SpanLink #") {
            section = Section::Link;
        } else if let Some(kv) = trimmed.strip_prefix("-> ") {
            let (key, value) = kv.split_once(':').unwrap_or((kv, ""));
            let pair = (key.trim().to_owned(), value.trim().to_owned());
            match (&section, current.as_mut()) {
                (Section::Resource, _) => resource.push(pair),
                (Section::Attributes, Some(span)) => span.attributes.push(pair),
                (Section::Link, Some(span)) => match pair.0.as_str() {
                    "Trace ID" => span.links.push((pair.1, String::new())),
                    "ID" => {
                        if let Some(link) = span.links.last_mut() {
                            link.1 = pair.1;
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        } else if let (Some(span), Some((key, value))) = (current.as_mut(), trimmed.split_once(':'))
        {
            let value = value.trim().to_owned();
            match key.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                "Kind" => span.kind = value,
                "Status code" => span.status = value,
                "Status message" => span.status_message = value,
                "Start time" => span.start_time = value.parse().unwrap_or_default(),
                "End time" => span.end_time = value.parse().unwrap_or_default(),
                _ => {}
            }
        }
    }
    spans.extend(current);
    spans
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running rotel collector on 127.0.0.1, killed when dropped.
pub struct Collector {
    child: Child,
    output: Arc<Lines>,
    /// The OTLP/gRPC address.
    pub grpc: SocketAddr,
    /// The OTLP/HTTP address.
    pub http: SocketAddr,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// The collector shared by the tests of this binary: started by the
    /// first test that asks, stopped (by its PID) when the last test holding
    /// it drops it. A `static` would never be dropped, and would leave rotel
    /// running after the tests.
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<std::sync::Weak<Collector>> = Mutex::new(std::sync::Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(collector) = shared.upgrade() {
            return collector;
        }
        let collector = Arc::new(Self::start());
        *shared = Arc::downgrade(&collector);
        collector
    }

    /// Starts rotel on two free ports and waits until it accepts connections.
    pub fn start() -> Self {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start_on(grpc, http)
    }

    /// Starts rotel on the given addresses (to restart one on the same ports).
    pub fn start_on(grpc: SocketAddr, http: SocketAddr) -> Self {
        let mut child = Command::new(rotel_agent())
            .args(["start", "--otlp-grpc-endpoint"])
            .arg(grpc.to_string())
            .arg("--otlp-http-endpoint")
            .arg(http.to_string())
            .args([
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        let output = pump(child.stdout.take().expect("rotel stdout"));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect(grpc).is_err() || TcpStream::connect(http).is_err() {
            assert!(Instant::now() < deadline, "rotel did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            output,
            grpc,
            http,
        }
    }

    /// Every span printed so far.
    ///
    /// rotel acknowledges an export before it prints the spans, so right
    /// after an export (even a flush that has returned) some may not be
    /// printed yet: to check what was sent, use [`Collector::wait_for`].
    pub fn spans(&self) -> Vec<ExportedSpan> {
        parse_rotel_spans(&self.output.received.lock().unwrap())
    }

    /// Waits (bounded) until `done` accepts the spans received, and returns them.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`STARTUP_TIMEOUT`].
    pub fn wait_for(&self, mut done: impl FnMut(&[ExportedSpan]) -> bool) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not receive the expected spans; it has:\n{spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the collector now.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Log lines written in memory: give a clone to
/// `TelemetryBuilder::log_writer` (or a `JsonLayer`), read them back.
#[derive(Clone, Default, Debug)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 log lines")
    }

    /// The lines written.
    pub fn raw_lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// The lines written, parsed as JSON.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.raw_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The HTTP layer's access lines (target `multiweb_telemetry::http`).
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.json()
            .into_iter()
            .filter(|line| line["target"] == "multiweb_telemetry::http")
            .collect()
    }
}

/// An exemplar of an OpenMetrics exposition, with the sample it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarLine {
    /// The sample's name, e.g. `http_requests_total`.
    pub sample: String,
    /// The sample's labels, unescaped, in the order they appear.
    pub labels: Vec<(String, String)>,
    /// The exemplar's `trace_id` label.
    pub trace_id: String,
    /// The exemplar's `span_id` label.
    pub span_id: String,
    /// The exemplar's value.
    pub value: f64,
    /// The exemplar's timestamp, in seconds.
    pub timestamp: f64,
}

impl ExemplarLine {
    /// The value of the sample's label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `{name="value",...}` (OpenMetrics escapes) at the start of `text`;
/// returns the labels and what follows `}`.
fn parse_label_set(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut rest = text.strip_prefix('{')?;
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// Every exemplar of the OpenMetrics exposition `text`.
///
/// # Panics
///
/// On an exemplar that is not `# {trace_id="…",span_id="…"} value timestamp`.
pub fn exemplars_in(text: &str) -> Vec<ExemplarLine> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((sample, exemplar)) = line.split_once(" # ") else {
            continue;
        };
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        let (name, rest) = sample.split_at(name_end);
        let labels = parse_label_set(rest).map_or_else(Vec::new, |(labels, _)| labels);
        let (ids, rest) =
            parse_label_set(exemplar).unwrap_or_else(|| panic!("exemplar labels in {line:?}"));
        let id = |key: &str| {
            ids.iter()
                .find(|(k, _)| k == key)
                .map_or_else(|| panic!("no {key} in {line:?}"), |(_, v)| v.clone())
        };
        assert_eq!(ids.len(), 2, "only trace_id and span_id: {line:?}");
        let numbers: Vec<f64> = rest
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("number {n:?} in {line:?}"))
            })
            .collect();
        assert_eq!(numbers.len(), 2, "a value and a timestamp: {line:?}");
        found.push(ExemplarLine {
            sample: name.to_owned(),
            labels,
            trace_id: id("trace_id"),
            span_id: id("span_id"),
            value: numbers[0],
            timestamp: numbers[1],
        });
    }
    found
}

/// Runs `promtool` with `args`, `input` on its stdin; returns whether it
/// succeeded, and its stdout and stderr together.
fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let promtool = require_tool("promtool", "apt-get install -y prometheus");
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(input.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// Lints a classic text exposition with `promtool check metrics`: `Ok`
/// when promtool accepts it and reports no problem, else its report.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    match promtool(&["check", "metrics"], text) {
        (true, report) if report.trim().is_empty() => Ok(()),
        (_, report) => Err(report),
    }
}

/// Checks an OpenMetrics exposition with Prometheus' own OpenMetrics parser,
/// through `promtool tsdb create-blocks-from openmetrics` (`promtool check
/// metrics` reads the classic format only, prometheus/prometheus#8932).
/// Backfilling needs a timestamp on every sample, so the current time is
/// added to each; nothing else is changed. `Ok` with promtool's report when
/// the whole exposition was read.
pub fn promtool_check_openmetrics(text: &str) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let mut stamped = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        if line.starts_with('#') {
            stamped.push_str(line);
        } else {
            match line.split_once(" # ") {
                Some((sample, exemplar)) => {
                    let _ = write!(stamped, "{sample} {now} # {exemplar}");
                }
                None => {
                    let _ = write!(stamped, "{line} {now}");
                }
            }
        }
        stamped.push('\n');
    }
    let dir = std::env::temp_dir().join(format!(
        "multiweb-openmetrics-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("exposition.txt");
    std::fs::write(&input, stamped).expect("write the exposition");
    let blocks = dir.join("blocks");
    let (ok, report) = promtool(
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().expect("UTF-8 path"),
            blocks.to_str().expect("UTF-8 path"),
        ],
        "",
    );
    let _ = std::fs::remove_dir_all(&dir);
    if ok { Ok(report) } else { Err(report) }
}
