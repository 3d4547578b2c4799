//! Real TLS for the export tests: certificates made at test time with
//! rcgen, and a small TLS-terminating proxy (tokio-rustls) in front of a
//! collector on 127.0.0.1.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA, a server certificate it signed for `localhost` (only), a client
/// certificate it signed, and a second CA that signed nothing the proxy
/// uses; PEM files in a directory of their own, removed when dropped.
#[derive(Debug)]
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Makes the certificates and writes them.
    ///
    /// # Panics
    ///
    /// If rcgen or the file system fails.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "multiweb-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("certificate directory");
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let authority = ca("multiweb test CA");
        let wrong = ca("another CA");
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &authority)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["marketplace".to_owned()]).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "marketplace");
        let client = client_params.signed_by(&client_key, &authority).unwrap();
        for (file, pem) in [
            ("ca.pem", authority.pem()),
            ("wrong-ca.pem", wrong.pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.join(file), pem).expect("write a certificate");
        }
        Self { dir }
    }

    /// The path of one of the files: `ca.pem`, `wrong-ca.pem`, `client.pem`,
    /// `client.key`, `server.pem`, `server.key`.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn certs(&self, file: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(self.dir.join(file))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn key(&self, file: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(self.dir.join(file)).unwrap()
    }
}

impl Default for Certificates {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS-terminating proxy on 127.0.0.1 with the `localhost` server
/// certificate: connections that negotiate HTTP/2 (gRPC) go to `grpc`, the
/// others (HTTP/1.1) to `http`. Stops when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections whose handshake succeeded.
    pub handshakes: Arc<AtomicU64>,
    /// Requests seen in the clear, after the handshake: `(compressed,
    /// uncompressed)` gRPC messages (by their compressed flag) and HTTP
    /// requests (by `Content-Encoding: gzip`).
    pub requests: Arc<Mutex<(u64, u64)>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Starts the proxy; with `require_client_certificate`, only clients
    /// presenting a certificate of the test CA complete the handshake (mTLS).
    ///
    /// # Panics
    ///
    /// If the certificates do not load or the port cannot be bound.
    pub fn start(
        certificates: &Certificates,
        grpc: SocketAddr,
        http: SocketAddr,
        require_client_certificate: bool,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(certificates.certs("ca.pem"));
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(
                certificates.certs("server.pem"),
                certificates.key("server.key"),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the TLS proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&handshakes);
        let requests = Arc::new(Mutex::new((0, 0)));
        let seen = Arc::clone(&requests);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let counted = Arc::clone(&counted);
                        let seen = Arc::clone(&seen);
                        tokio::spawn(async move {
                            // A failed handshake just closes the connection.
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            counted.fetch_add(1, Ordering::Relaxed);
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let Ok(upstream) =
                                tokio::net::TcpStream::connect(if h2 { grpc } else { http }).await
                            else {
                                return;
                            };
                            forward(tls, upstream, Sniffer::new(h2), &seen).await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            handshakes,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://localhost:<port>`, the name the server certificate is for.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies both ways; what the client sends also goes through the sniffer.
async fn forward(
    client: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    upstream: tokio::net::TcpStream,
    mut sniffer: Sniffer,
    seen: &Mutex<(u64, u64)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let to_client = async {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    let to_upstream = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (compressed, plain) = sniffer.feed(&buf[..n]);
            {
                let mut seen = seen.lock().unwrap();
                seen.0 += compressed;
                seen.1 += plain;
            }
            if upstream_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    tokio::join!(to_client, to_upstream);
}

/// Reads what a client sends: HTTP/2 frames (the first DATA frame of each
/// stream starts with the gRPC message's compressed flag) or HTTP/1.1
/// request heads.
struct Sniffer {
    h2: bool,
    buf: Vec<u8>,
    preface_skipped: bool,
    streams: HashSet<u32>,
}

impl Sniffer {
    fn new(h2: bool) -> Self {
        Self {
            h2,
            buf: Vec::new(),
            preface_skipped: false,
            streams: HashSet::new(),
        }
    }

    /// Counts the `(compressed, uncompressed)` requests that `bytes` start.
    fn feed(&mut self, bytes: &[u8]) -> (u64, u64) {
        const PREFACE: usize = 24;
        let mut counts = (0, 0);
        if !self.h2 {
            let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
            for head in text.split("\r\n\r\n").filter(|h| h.starts_with("post ")) {
                if head.contains("\r\ncontent-encoding: gzip") {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            return counts;
        }
        self.buf.extend_from_slice(bytes);
        if !self.preface_skipped {
            if self.buf.len() < PREFACE {
                return counts;
            }
            self.buf.drain(..PREFACE);
            self.preface_skipped = true;
        }
        while self.buf.len() >= 9 {
            let len = usize::from(self.buf[0]) << 16
                | usize::from(self.buf[1]) << 8
                | usize::from(self.buf[2]);
            if self.buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (self.buf[3], self.buf[4]);
            let stream = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff;
            // DATA, possibly PADDED (its payload starts with the pad length).
            let start = if flags & 0x8 != 0 { 10 } else { 9 };
            if kind == 0 && 9 + len > start && self.streams.insert(stream) {
                if self.buf[start] == 1 {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            self.buf.drain(..9 + len);
        }
        counts
    }
}
