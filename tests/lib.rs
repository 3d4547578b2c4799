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
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    /// The address the app listens on (from its `marketplace listening` log line).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn pump(stream: impl Read + Send + 'static) -> Arc<Lines> {
    let lines = Arc::new(Lines::default());
    let shared = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            shared.received.lock().unwrap().push(line);
            shared.changed.notify_all();
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
/// its environment, and waits until it listens.
///
/// # Panics
///
/// If it does not start; the panic message has its stderr.
pub fn start_marketplace(args: &[&str], env: &[(&str, &str)]) -> App {
    let mut command = Command::new(example_path("marketplace"));
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MULTIWEB_METRICS_ADDR")
        .env_remove("MULTIWEB_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn the marketplace example");
    let stdout = pump(child.stdout.take().expect("stdout"));
    let stderr = pump(child.stderr.take().expect("stderr"));
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
        stdout,
        stderr,
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
    }
}

/// Runs `program` with `env` and no arguments beyond `args` to completion.
pub fn run_marketplace_to_exit(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(example_path("marketplace"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MULTIWEB_METRICS_ADDR")
        .env_remove("MULTIWEB_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
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
/// On connection or protocol errors.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
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
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
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
