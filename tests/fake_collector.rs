//! A fake OTLP/HTTP collector on 127.0.0.1 that gives scripted answers
//! (`503` with `Retry-After`, `400`, ...) and keeps what it received.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// One scripted answer: the status line's code and reason, and extra header
/// lines (each ending in `\r\n`).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// For example `503 Service Unavailable`.
    pub status: &'static str,
    /// For example `retry-after: 1\r\n`.
    pub headers: &'static str,
}

impl Answer {
    /// `200 OK`, an empty (full success) response.
    pub const OK: Answer = Answer {
        status: "200 OK",
        headers: "",
    };
}

/// A request the collector received, and how it answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// The answer's status code.
    pub answered: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body, decompressed when it came gzip-compressed.
    pub body: Vec<u8>,
}

impl Received {
    /// The `(trace id, span id)` of every span in the request, in hex.
    ///
    /// # Panics
    ///
    /// If the body is not an `ExportTraceServiceRequest`.
    pub fn spans(&self) -> Vec<(String, String)> {
        let request = ExportTraceServiceRequest::decode(self.body.as_slice())
            .expect("an ExportTraceServiceRequest");
        let hex = |bytes: &[u8]| {
            bytes.iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            })
        };
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|span| (hex(&span.trace_id), hex(&span.span_id)))
            .collect()
    }
}

/// The fake collector; stops when dropped.
#[derive(Debug)]
pub struct FakeCollector {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl FakeCollector {
    /// Starts it: it answers with `script` in turn, then `then` to every
    /// further request.
    ///
    /// # Panics
    ///
    /// If it cannot bind a port.
    pub fn start(script: &[Answer], then: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake collector");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (shared, stopped) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (script, shared) = (Arc::clone(&script), Arc::clone(&shared));
                        std::thread::spawn(move || serve(stream, &script, then, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            received,
            stop,
        }
    }

    /// The base URL, to which exporters append `/v1/traces`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers the requests of one connection (kept alive) until it closes.
fn serve(
    stream: TcpStream,
    script: &Mutex<VecDeque<Answer>>,
    then: Answer,
    received: &Mutex<Vec<Received>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(stream);
    loop {
        let mut headers = Vec::new();
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if header("content-encoding").as_deref() == Some("gzip") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .expect("a gzip body");
            body = plain;
        }
        let answer = script.lock().unwrap().pop_front().unwrap_or(then);
        let answered = answer.status[..3].parse().unwrap();
        received.lock().unwrap().push(Received {
            answered,
            headers,
            body,
        });
        let response = format!(
            "HTTP/1.1 {}\r\n{}content-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            answer.status, answer.headers
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
