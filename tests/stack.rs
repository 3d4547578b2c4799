//! The guide's data stores and exporters for the whole-stack tests:
//! PostgreSQL (with `pg_stat_statements`), Redis, and
//! prometheus-postgres-exporter, prometheus-redis-exporter and
//! prometheus-node-exporter, each on 127.0.0.1 with its data in a temporary
//! directory, and stopped by PID when dropped.
//!
//! [`Stack::shared`] starts them once per test binary and hands every test of
//! the binary the same servers; they stop when the last test holding them
//! ends. `scripts/install-test-tools.sh` installs them all with apt.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::guide::deploy_file;
use crate::{STARTUP_TIMEOUT, free_port, http_request, require_tool};

/// The system user PostgreSQL runs as when the tests run as root (it refuses
/// to run as root); `scripts/install-test-tools.sh` creates it.
pub const POSTGRES_USER: &str = "multiweb-pg";

/// The database the example uses, created in every test server.
pub const DATABASE: &str = "marketplace";

const INSTALL_HINT: &str = "bash scripts/install-test-tools.sh (apt-get install -y postgresql \
     postgresql-contrib redis-server prometheus-postgres-exporter prometheus-redis-exporter \
     prometheus-node-exporter, and `useradd --system multiweb-pg` when running as root)";

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "multiweb-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A PostgreSQL program: Debian keeps them in `/usr/lib/postgresql/<version>/bin`.
fn postgres_program(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.is_file())
        .collect();
    versions.sort_by_key(|path| {
        path.components()
            .nth(4)
            .and_then(|v| v.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .unwrap_or_else(|| require_tool(name, INSTALL_HINT))
}

/// `command`, run as [`POSTGRES_USER`] when the tests run as root.
fn as_postgres_user(program: &Path) -> Command {
    if running_as_root() {
        let runuser = require_tool("runuser", "apt-get install -y util-linux");
        let mut command = Command::new(runuser);
        command.args(["-u", POSTGRES_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// Waits (bounded) for `child` to exit, then kills it if it has not.
fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A PostgreSQL server with `pg_stat_statements` loaded, trust
/// authentication on 127.0.0.1, the superuser `postgres` and the database
/// [`DATABASE`] (with the `pg_stat_statements` extension).
pub struct Postgres {
    child: Option<Child>,
    dir: PathBuf,
    /// The TCP port.
    pub port: u16,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Creates a cluster in a temporary directory with `initdb` and starts it
    /// on a free port.
    ///
    /// # Panics
    ///
    /// If PostgreSQL is not installed, or does not start.
    pub fn start() -> Self {
        let dir = temp_dir("postgres");
        if running_as_root() {
            let chown = Command::new("chown")
                .arg(format!("{POSTGRES_USER}:"))
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(
                chown.success(),
                "could not give {} to the user {POSTGRES_USER}; create it with {INSTALL_HINT}",
                dir.display()
            );
        }
        let initdb = as_postgres_user(&postgres_program("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let mut postgres = Self {
            child: None,
            dir,
            port: free_port(),
        };
        postgres.resume();
        postgres.psql("postgres", &format!("CREATE DATABASE {DATABASE}"));
        postgres.psql(DATABASE, "CREATE EXTENSION pg_stat_statements");
        postgres
    }

    /// Starts the server again (after [`Postgres::stop`]) on the same port
    /// and data directory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is already running");
        let log = std::fs::File::create(self.dir.join("postgres.log")).expect("log file");
        let child = as_postgres_user(&postgres_program("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "pg_stat_statements.track=all",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let isready = postgres_program("pg_isready");
        let port = self.port.to_string();
        wait_until("PostgreSQL", || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Stops the server with a fast shutdown (signalling the postmaster's
    /// PID), keeping its data.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok());
        match pid {
            Some(pid) => kill(pid, "INT"),
            None => kill(child.id(), "INT"),
        }
        reap(&mut child, STARTUP_TIMEOUT);
    }

    /// `postgres://postgres@127.0.0.1:<port>/marketplace`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs `sql` in `database` with psql; returns its unaligned output.
    ///
    /// # Panics
    ///
    /// If psql fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(postgres_program("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A client connection to a [`Postgres`] database that does nothing: a
/// backend the server counts in `pg_stat_database_numbackends`, closed when
/// dropped.
#[derive(Debug)]
pub struct Backend {
    _connection: TcpStream,
}

impl Postgres {
    /// Opens a [`Backend`] on `database` as `postgres`, speaking just enough
    /// of the wire protocol (a startup message, then messages until
    /// ReadyForQuery) for the trust authentication of the test server.
    ///
    /// # Panics
    ///
    /// If the server refuses the connection.
    pub fn open_backend(&self, database: &str) -> Backend {
        let mut stream = TcpStream::connect(self.addr()).expect("connect to PostgreSQL");
        stream
            .set_read_timeout(Some(STARTUP_TIMEOUT))
            .expect("read timeout");
        let mut body = 196_608_i32.to_be_bytes().to_vec(); // protocol 3.0
        for (key, value) in [("user", "postgres"), ("database", database)] {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let length = i32::try_from(body.len() + 4).expect("short message");
        let mut message = length.to_be_bytes().to_vec();
        message.extend(body);
        stream
            .write_all(&message)
            .expect("send the startup message");
        loop {
            let mut header = [0_u8; 5];
            stream
                .read_exact(&mut header)
                .expect("a message from PostgreSQL");
            let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let mut payload = vec![0_u8; usize::try_from(length - 4).unwrap_or(0)];
            stream.read_exact(&mut payload).expect("the message body");
            match header[0] {
                b'Z' => {
                    return Backend {
                        _connection: stream,
                    };
                }
                b'R' => assert_eq!(payload[..4], [0, 0, 0, 0], "not trust authentication"),
                b'E' => panic!(
                    "PostgreSQL refused the connection: {}",
                    String::from_utf8_lossy(&payload)
                ),
                _ => {}
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server without persistence.
pub struct Redis {
    child: Child,
    dir: PathBuf,
    /// The TCP port.
    pub port: u16,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Starts `redis-server` on a free port.
    ///
    /// # Panics
    ///
    /// If Redis is not installed, or does not answer `PING`.
    pub fn start() -> Self {
        let binary = require_tool("redis-server", INSTALL_HINT);
        let dir = temp_dir("redis");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Self { child, dir, port };
        wait_until("Redis", || redis.command("PING").starts_with("+PONG"));
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command; returns the raw reply (empty when Redis
    /// cannot be reached).
    pub fn command(&self, command: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(format!("{command}\r\nQUIT\r\n").as_bytes())
            .is_err()
        {
            return String::new();
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(self.child.id(), "TERM");
        reap(&mut self.child, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Prometheus exporter process serving `/metrics` on 127.0.0.1.
pub struct Exporter {
    child: Child,
    /// The address of its `/metrics`.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts `program` with `args`, `env` and `--web.listen-address` on a
    /// free port, and waits until its `/metrics` shows `ready_series`.
    ///
    /// # Panics
    ///
    /// If the exporter is not installed or never shows the series.
    pub fn start(
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        ready_series: &str,
    ) -> Self {
        let binary = require_tool(program, INSTALL_HINT);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .arg(format!("--web.listen-address={addr}"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let exporter = Self { child, addr };
        wait_until(program, || {
            TcpStream::connect(addr).is_ok()
                && http_request(addr, "GET", "/metrics", &[], "")
                    .body
                    .lines()
                    .any(|line| line.starts_with(ready_series))
        });
        exporter
    }

    /// The exporter's current `/metrics` text.
    pub fn scrape(&self) -> String {
        http_request(self.addr, "GET", "/metrics", &[], "").body
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        kill(self.child.id(), "TERM");
        reap(&mut self.child, Duration::from_secs(10));
    }
}

/// PostgreSQL, Redis and their exporters, plus node_exporter.
#[derive(Debug)]
pub struct Stack {
    // Exporters first: they are dropped (stopped) before their servers.
    /// prometheus-postgres-exporter, with `deploy/postgres-exporter/queries.yaml`.
    pub postgres_exporter: Exporter,
    /// prometheus-redis-exporter.
    pub redis_exporter: Exporter,
    /// prometheus-node-exporter.
    pub node_exporter: Exporter,
    /// The PostgreSQL server.
    pub postgres: Postgres,
    /// The Redis server.
    pub redis: Redis,
}

impl Stack {
    /// Starts everything.
    pub fn start() -> Self {
        let postgres = Postgres::start();
        let redis = Redis::start();
        let queries = deploy_file("postgres-exporter/queries.yaml");
        let postgres_exporter = Exporter::start(
            "prometheus-postgres-exporter",
            &[format!("--extend.query-path={}", queries.display())],
            &[(
                "DATA_SOURCE_NAME",
                format!("{}?sslmode=disable", postgres.url()),
            )],
            "pg_up 1",
        );
        let redis_exporter = Exporter::start(
            "prometheus-redis-exporter",
            &[format!("--redis.addr={}", redis.url())],
            &[],
            "redis_up 1",
        );
        let node_exporter = Exporter::start(
            "prometheus-node-exporter",
            &[],
            &[],
            "node_memory_MemTotal_bytes",
        );
        Self {
            postgres_exporter,
            redis_exporter,
            node_exporter,
            postgres,
            redis,
        }
    }

    /// The stack shared by the tests of this binary: started by the first
    /// test that asks, stopped when the last test holding it drops it.
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<Stack>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stack) = shared.upgrade() {
            return stack;
        }
        let stack = Arc::new(Self::start());
        *shared = Arc::downgrade(&stack);
        stack
    }

    /// The `scrape_configs` entries for the three exporters, each with the
    /// `namespace="multiweb"` label the dashboards select on.
    ///
    /// With `app` (the address [`Prometheus::app_job`](crate::Prometheus::app_job)
    /// scrapes), node_exporter's `node_memory_MemTotal_bytes` also gets the
    /// app's `job` and `instance` labels: the host's memory is then matched
    /// one to one with the app's `process_resident_memory_bytes`, so the
    /// guide's bare `100 * process_resident_memory_bytes /
    /// node_memory_MemTotal_bytes` answers, as it does for one app on one
    /// host.
    pub fn exporter_jobs(&self, app: Option<SocketAddr>) -> String {
        let job = |name: &str, target: SocketAddr| {
            format!(
                "  - job_name: {name}\n    static_configs:\n      - targets: ['{target}']\n        \
                 labels:\n          namespace: multiweb\n"
            )
        };
        let mut jobs = job("postgres", self.postgres_exporter.addr);
        jobs.push_str(&job("redis", self.redis_exporter.addr));
        jobs.push_str(&job("node", self.node_exporter.addr));
        if let Some(app) = app {
            for (label, value) in [
                ("instance", app.to_string()),
                ("job", "multiweb-api".to_owned()),
            ] {
                if label == "instance" {
                    jobs.push_str("    metric_relabel_configs:\n");
                }
                let _ = write!(
                    jobs,
                    "    - source_labels: [__name__]\n      regex: node_memory_MemTotal_bytes\n      \
                     target_label: {label}\n      replacement: '{value}'\n"
                );
            }
        }
        jobs
    }
}
