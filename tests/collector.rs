//! rotel, the OTLP collector the tests export spans to, and its printed
//! spans parsed back.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::output::{Lines, pump};
use crate::{STARTUP_TIMEOUT, free_port};

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
