//! The marketplace example as a child process: started on an ephemeral
//! port in a working directory of its own, its output read line by line,
//! killed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::{Lines, pump, pump_until, wait_for};
use crate::{Response, STARTUP_TIMEOUT, example_path, http_request, stack};

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
