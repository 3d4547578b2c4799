//! The MultiWeb marketplace API, instrumented with `multiweb-telemetry`.
//!
//! ```text
//! cargo run --example marketplace -- --listen 127.0.0.1:8080
//! curl http://127.0.0.1:8080/api/v1/products/
//! curl http://127.0.0.1:8080/metrics
//! ```
//!
//! Users, products and transactions are kept in SQLite, in
//! `marketplace.db` under the working directory, unless `DATABASE_URL`
//! names another database (`postgres://user:password@host/db`). With
//! `REDIS_URL` (`redis://host:6379`), product reads go through a Redis
//! cache. Both are instrumented: every query has a span and a sample in
//! `db_client_operation_duration_seconds`.
//!
//! `POST /api/v1/transactions/` charges the transaction with a payment
//! service the example starts itself on a 127.0.0.1 port of its own (see
//! [`payment`]): a trace of that request shows the marketplace's span, the
//! call's CLIENT span and the payment service's span, two services under
//! one trace id.

mod api;
mod business;
mod cache;
mod demo_load;
mod payment;
mod peer;
mod store;

use std::net::SocketAddr;
use std::process::ExitCode;

/// Command-line arguments.
struct Args {
    listen: SocketAddr,
    demo_load: bool,
    layer: LayerMode,
}

/// `--http-layer`: what the HTTP layer records (for load comparisons).
#[derive(Clone, Copy, PartialEq)]
enum LayerMode {
    /// Metrics, span and access log (the default).
    Full,
    /// Metrics only.
    Metrics,
    /// No HTTP layer at all.
    Off,
    /// The hand-made stack instead of this crate (see `peer`).
    Peer,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let mut demo_load = false;
        let mut layer = LayerMode::Full;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--listen" => {
                    let value = args.next().ok_or("--listen needs an address")?;
                    listen = value
                        .parse()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?;
                }
                "--demo-load" => demo_load = true,
                "--http-layer" => {
                    layer = match args.next().as_deref() {
                        Some("full") => LayerMode::Full,
                        Some("metrics") => LayerMode::Metrics,
                        Some("off") => LayerMode::Off,
                        Some("peer") => LayerMode::Peer,
                        other => {
                            return Err(format!(
                                "--http-layer takes full, metrics, off or peer, not {other:?}"
                            ));
                        }
                    }
                }
                "--help" | "-h" => {
                    return Err(
                        "usage: marketplace [--listen 127.0.0.1:8080] [--demo-load]".to_owned()
                    );
                }
                other => return Err(format!("unknown argument {other:?}; try --help")),
            }
        }
        Ok(Self {
            listen,
            demo_load,
            layer,
        })
    }
}

/// The database of `DATABASE_URL` (SQLite by default), migrated now if it
/// answers, else as soon as it does, and the cache of `REDIS_URL`, if set.
/// `None` when a URL is unusable (the error is logged).
async fn open_stores(payments: payment::Payments) -> Option<api::AppState> {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| store::DEFAULT_DATABASE_URL.to_owned());
    let store = match store::Store::open(&url) {
        Ok(store) => store,
        Err(err) => {
            // sqlx's errors name the URL's parts it could not use, never
            // its password.
            tracing::error!(error = %err, "DATABASE_URL is not usable");
            return None;
        }
    };
    store.migrate_now_or_later().await;
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => match cache::Cache::open(&url) {
            Ok(cache) => {
                cache.connect();
                Some(cache)
            }
            Err(err) => {
                tracing::error!(error = %err, "REDIS_URL is not usable");
                return None;
            }
        },
        Err(_) => None,
    };
    Some(api::App::new(store, cache, payments))
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
    let (telemetry, _peer) = if args.layer == LayerMode::Peer {
        match peer::install() {
            Ok(peer) => (None, Some(peer)),
            Err(err) => {
                report(&*err);
                return ExitCode::FAILURE;
            }
        }
    } else {
        match multiweb_telemetry::Telemetry::builder()
            .service_version(env!("CARGO_PKG_VERSION"))
            .try_init()
        {
            Ok(telemetry) => (Some(telemetry), None),
            Err(err) => {
                report(&err);
                return ExitCode::FAILURE;
            }
        }
    };

    let stub = match payment::start() {
        Ok(stub) => stub,
        Err(err) => {
            tracing::error!(error = %err, "no payment service");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %stub.addr, "payment stub listening");
    let Some(state) = open_stores(payment::Payments::new(stub.addr)).await else {
        return ExitCode::FAILURE;
    };
    let app = api::router(state);
    let app = match &telemetry {
        Some(telemetry) => app.route_service("/metrics", telemetry.metrics_service()),
        None => app,
    }
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(
        multiweb_telemetry::http::panic_response,
    ));
    let app = match args.layer {
        LayerMode::Full => app.layer(multiweb_telemetry::http::layer()),
        LayerMode::Metrics => app.layer(
            multiweb_telemetry::http::layer()
                .span(false)
                .access_log(false),
        ),
        LayerMode::Off => app,
        LayerMode::Peer => peer::layers(app),
    };
    if args.demo_load {
        tokio::spawn(demo_load::run(app.clone()));
    }

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
        metrics_addr = telemetry
            .as_ref()
            .and_then(multiweb_telemetry::TelemetryGuard::metrics_addr)
            .map(tracing::field::display),
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
    stub.stop();
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
