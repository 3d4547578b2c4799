//! The payment service: a stub the marketplace starts itself, on a
//! 127.0.0.1 port of its own, and the client the marketplace charges
//! transactions with.
//!
//! The stub runs on a thread of its own, with a runtime and telemetry of
//! its own (service `payment`, exporting where the marketplace exports), so
//! that a transaction's trace shows two services: the marketplace's request
//! span, the call's CLIENT span (`multiweb_telemetry::client::middleware()`)
//! and the stub's request span, under one trace id. It sets up traces only
//! (its log lines, configuration warnings included, would repeat the
//! marketplace's on the same stdout), and its HTTP layer records the span
//! only: no metrics (they would land on the marketplace's `/metrics`) and
//! no access lines.

use std::net::SocketAddr;

use axum::Json;
use axum::routing::post;
use serde_json::json;

/// The path the stub charges at.
const CHARGE_PATH: &str = "/v1/charges";

/// The running stub; [`Stub::stop`] stops it and exports its spans.
pub(crate) struct Stub {
    pub(crate) addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Why the stub did not start.
#[derive(Debug)]
pub(crate) struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the payment stub did not start: {}", self.0)
    }
}

impl std::error::Error for StartError {}

/// Starts the stub on `127.0.0.1`, on a port the system picks.
pub(crate) fn start() -> Result<Stub, StartError> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, bound_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("payment-stub".to_owned())
        .spawn(move || {
            let started = (|| {
                let telemetry = multiweb_telemetry::Telemetry::builder()
                    .service_name("payment")
                    .signals(multiweb_telemetry::Signals::TRACES)
                    .build_dispatch()
                    .map_err(|e| e.to_string())?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                    .map_err(|e| format!("could not bind 127.0.0.1:0: {e}"))?;
                Ok::<_, String>((telemetry, runtime, listener))
            })();
            let ((dispatch, guard), runtime, listener) = match started {
                Ok(started) => started,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
            let app = axum::Router::new().route(CHARGE_PATH, post(charge)).layer(
                multiweb_telemetry::http::layer()
                    .metrics(false)
                    .access_log(false),
            );
            tracing::dispatcher::with_default(&dispatch, || {
                runtime.block_on(async {
                    let stopped = async {
                        let _ = stopped.await;
                    };
                    if let Err(error) = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                    {
                        tracing::error!(error = %error, "payment stub failed");
                    }
                });
            });
            drop(runtime);
            drop(dispatch);
            drop(guard); // exports the stub's spans
        })
        .map_err(|e| StartError(e.to_string()))?;
    match bound_rx.recv() {
        Ok(Ok(addr)) => Ok(Stub { addr, stop, thread }),
        Ok(Err(error)) => Err(StartError(error)),
        Err(_) => Err(StartError("its thread ended".to_owned())),
    }
}

impl Stub {
    /// Stops the stub once its open connections are done, and exports its
    /// spans.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// `POST /v1/charges`: approves every charge.
#[tracing::instrument(name = "authorize_charge", skip_all)]
async fn charge(Json(charge): Json<serde_json::Value>) -> Json<serde_json::Value> {
    tracing::debug!(amount_cents = %charge["amount_cents"], "charge approved");
    Json(json!({ "status": "approved" }))
}

/// The marketplace's client of the payment service.
pub(crate) struct Payments {
    client: reqwest_middleware::ClientWithMiddleware,
    url: String,
}

/// Why a charge failed.
#[derive(Debug)]
pub(crate) enum ChargeError {
    /// The payment service could not be reached, or did not answer 2xx.
    Unavailable,
    /// It answered, and did not approve.
    Declined,
}

impl Payments {
    /// A client of the stub at `addr`, each call instrumented by
    /// `multiweb_telemetry::client::middleware()`.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        // Local calls only: no proxy, and this build of reqwest has no TLS.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            client: reqwest_middleware::ClientBuilder::new(client)
                .with(multiweb_telemetry::client::middleware())
                .build(),
            url: format!("http://{addr}{CHARGE_PATH}"),
        }
    }

    /// Charges `amount_cents` paid with `method`.
    pub(crate) async fn charge(&self, amount_cents: u64, method: &str) -> Result<(), ChargeError> {
        let body = json!({ "amount_cents": amount_cents, "method": method });
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "payment service unreachable");
                ChargeError::Unavailable
            })?;
        if !response.status().is_success() {
            return Err(ChargeError::Unavailable);
        }
        let answer: serde_json::Value = response
            .bytes()
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(ChargeError::Unavailable)?;
        if answer["status"] == "approved" {
            Ok(())
        } else {
            Err(ChargeError::Declined)
        }
    }
}
