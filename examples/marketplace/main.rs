//! The MultiWeb marketplace API, instrumented with `multiweb-telemetry`.
//!
//! ```text
//! cargo run --example marketplace -- --listen 127.0.0.1:8080
//! curl http://127.0.0.1:8080/api/v1/products/
//! curl http://127.0.0.1:8080/metrics
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Command-line arguments.
struct Args {
    listen: SocketAddr,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--listen" => {
                    let value = args.next().ok_or("--listen needs an address")?;
                    listen = value
                        .parse()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?;
                }
                "--help" | "-h" => {
                    return Err("usage: marketplace [--listen 127.0.0.1:8080]".to_owned());
                }
                other => return Err(format!("unknown argument {other:?}; try --help")),
            }
        }
        Ok(Self { listen })
    }
}

#[derive(Serialize)]
struct Product {
    id: u64,
    name: &'static str,
    price_cents: u64,
}

/// `GET /api/v1/products/`: the guide's `list_products`.
#[tracing::instrument(name = "list_products", skip_all)]
async fn list_products(headers: HeaderMap) -> Json<Vec<Product>> {
    if let Some(user_id) = headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
        multiweb_telemetry::http::record_user_id(user_id);
    }
    let products = vec![
        Product {
            id: 1,
            name: "Keyboard",
            price_cents: 4_900,
        },
        Product {
            id: 2,
            name: "Monitor",
            price_cents: 19_900,
        },
    ];
    tracing::info!(count = products.len(), "listed products");
    Json(products)
}

/// `GET /api/v1/debug/error`: always 500, so the error panels and the
/// `HighErrorRate` alert can be seen moving.
async fn debug_error() -> (StatusCode, Json<serde_json::Value>) {
    tracing::error!(error = "simulated failure", "debug error endpoint called");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": "simulated failure" })),
    )
}

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

/// `GET /api/v1/debug/slow?ms=N`: answers after N milliseconds (at most 30 s).
async fn debug_slow(Query(params): Query<SlowParams>) -> Json<serde_json::Value> {
    let ms = params.ms.unwrap_or(1_000).min(30_000);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Json(serde_json::json!({ "slept_ms": ms }))
}

fn report(err: &dyn std::error::Error) {
    eprintln!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match multiweb_telemetry::Telemetry::builder()
        .service_version(env!("CARGO_PKG_VERSION"))
        .try_init()
    {
        Ok(telemetry) => telemetry,
        Err(err) => {
            report(&err);
            return ExitCode::FAILURE;
        }
    };

    let app = Router::new()
        .route("/api/v1/products/", get(list_products))
        .route("/api/v1/debug/error", get(debug_error))
        .route("/api/v1/debug/slow", get(debug_slow))
        .route_service("/metrics", telemetry.metrics_service())
        .layer(multiweb_telemetry::http::layer());

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, addr = %args.listen, "could not bind");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let shutdown = shutdown_signal();
    tracing::info!(
        addr = %addr,
        metrics_addr = telemetry.metrics_addr().map(tracing::field::display),
        "marketplace listening"
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let code = match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    };
    tracing::info!("marketplace stopped");
    drop(telemetry);
    code
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are registered when this is
/// called, so a signal sent right after start-up is not missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let terminate = async {
            match terminate {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = terminate => {}
        }
    }
}
