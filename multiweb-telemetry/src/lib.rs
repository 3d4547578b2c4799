//! Observability for a web service in one line.
//!
//! `multiweb-telemetry` makes a Rust service observable the way the MultiWeb
//! monitoring guide expects: Prometheus scrapes `/metrics`, Loki parses one
//! JSON object per log line, Tempo receives traces over OTLP, and the
//! standard process metrics are there from the first scrape.
//!
//! # Quick start
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = multiweb_telemetry::init()?;
//!     let app = Router::new()
//!         .route("/api/v1/products/", get(|| async { "[]" }))
//!         .route_service("/metrics", telemetry.metrics_service())
//!         .layer(multiweb_telemetry::http::layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     tracing::info!("listening on 127.0.0.1:8080");
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # What `init` installs
//!
//! - **Metrics** ([`metrics`](mod@metrics)): a global [`metrics`](::metrics) recorder
//!   exporting the Prometheus text format, histograms as buckets, and the
//!   standard `process_*` metrics refreshed at each scrape; the OpenMetrics
//!   format, with exemplars linking latency buckets to sampled traces, for
//!   scrapes that ask for it.
//! - **Business metrics** ([`business`]): `#[business_metric]` statics,
//!   exported with the rest.
//! - **Logs** ([`log`]): a global `tracing` subscriber writing one JSON object
//!   per line to stdout through a non-blocking bounded buffer.
//! - **Traces** ([`trace`]): `tracing` spans exported over OTLP when an
//!   endpoint is configured, with the guide's sampling strategy.
//! - **HTTP** ([`http`]): the tower layer for RED metrics, request spans and
//!   access log lines.
//! - **Outgoing calls** (`client`, feature `client`): a CLIENT span,
//!   trace propagation and `http_client_request_duration_seconds` for each
//!   call of a hyper, tonic or reqwest client.
//! - **Panics**: a panic hook that logs each panic as one JSON line at error
//!   level, with the request's fields and trace ids, through the
//!   non-blocking writer (never a blocking write to stderr), and counts it in
//!   [`multiweb_telemetry_panics_total`](metrics::PANICS). A hook installed
//!   before `init` is still called; the standard one is not. Opt out with
//!   [`TelemetryBuilder::panic_hook`].
//!
//! # Configuration
//!
//! [`init`] reads the environment; [`Telemetry::builder`] sets the same things
//! in code, and code wins over the environment, which wins over the defaults
//! (the OpenTelemetry convention). See [`TelemetryBuilder`] for the table of
//! settings and variables. Every invalid value is an [`Error`] naming the
//! variable and the value (never a secret: tokens and header values are
//! `<redacted>`, and so is the userinfo of a URL).
//!
//! # Feature flags
//!
//! | feature | default | what it enables | what it pulls in |
//! |---|---|---|---|
//! | `axum` | yes | route templates from axum's `MatchedPath` (without it, [`TelemetryLayer::route_classifier`](http::TelemetryLayer::route_classifier) names routes); the standalone `/metrics` listener (`MULTIWEB_METRICS_ADDR`) | axum (`matched-path`, `http1`, `tokio`), tokio |
//! | `otlp` | yes | span export over OTLP, gRPC and HTTP/protobuf, with gzip and the specification's retries, on a thread of its own; without it spans (and their ids in log lines) still exist, and a configured endpoint gets a warning | tonic, hyper and hyper-util's client, prost, opentelemetry-proto, flate2, tokio |
//! | `tls` | yes | `https://` OTLP endpoints and mTLS (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `…_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`): rustls with ring and the platform's trusted roots; implies `otlp` | rustls, hyper-rustls, rustls-native-certs, tonic's `tls-ring` |
//! | `process-metrics` | yes | the standard `process_*` metrics, refreshed at each scrape | metrics-process |
//! | `testing` | no | the `testing` module: a local recorder and a `/metrics` parser for the application's own tests | nothing |
//! | `tonic` | no | gRPC servers behind the HTTP layer: calls counted by their `grpc-status` in `rpc_server_duration_seconds`, spans and access lines by the RPC conventions (see [`http`]) | nothing |
//! | `client` | no | outgoing calls (`client::layer()` for tower clients such as hyper-util's and tonic's, `client::middleware()` for reqwest-middleware): a CLIENT span, `traceparent`, `http_client_request_duration_seconds` | reqwest 0.13 (without TLS), reqwest-middleware 0.5 |
//! | `sqlx` | no | the `db` module: a CLIENT span, the `db_client_operation_duration_seconds` histogram, slow-query and failed-query log lines for every query of a wrapped sqlx pool, and its connection gauges | sqlx 0.8 (without drivers of its own) |
//!
//! Logs, traces (without export), metrics, the HTTP layer and business
//! metrics are always there. `--no-default-features` leaves out axum,
//! tonic and every HTTP client.

pub mod business;
#[cfg(feature = "client")]
pub mod client;
mod config;
#[cfg(feature = "sqlx")]
pub mod db;
mod error;
mod exemplar;
mod guard;
pub mod http;
mod labels;
pub mod log;
pub mod metrics;
mod panic;
mod request_span;
mod subscriber;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;

use std::sync::atomic::{AtomicBool, Ordering};

#[allow(deprecated, reason = "re-exported for compatibility")]
pub use config::DEFAULT_LOG_BUFFER_LINES;
pub use config::Signals;
pub use config::{
    DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT, DEFAULT_BUCKETS, DEFAULT_LOG_BUFFER_BYTES, LogFormat,
    OtlpCompression, OtlpProtocol, TelemetryBuilder, TraceSampler,
};
pub use error::Error;
pub use guard::TelemetryGuard;
pub use multiweb_telemetry_macros::{LabelValue, business_metric};

/// Set once the first `init` has got past checking its configuration.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Entry point for configuring telemetry in code.
#[derive(Debug)]
#[non_exhaustive]
pub struct Telemetry;

impl Telemetry {
    /// A builder with every setting taken from the environment or the defaults.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }
}

/// Installs telemetry configured from the environment.
///
/// The same as `Telemetry::builder().try_init()`. Call it once, early in
/// `main`, and keep the returned guard alive.
///
/// # Errors
///
/// [`Error::AlreadyInitialized`] on a second call, [`Error::InvalidEnv`] for
/// an unusable environment variable, [`Error::BindMetrics`] when
/// `MULTIWEB_METRICS_ADDR` cannot be bound, and the other [`Error`] variants
/// when another crate already installed a global recorder or subscriber.
pub fn init() -> Result<TelemetryGuard, Error> {
    Telemetry::builder().try_init()
}

impl TelemetryBuilder {
    /// Installs telemetry with these settings.
    ///
    /// Everything that can fail because of the configuration (bad values,
    /// an address that cannot be bound) is checked before anything global is
    /// installed, so such an error leaves the process as it was.
    pub fn try_init(mut self) -> Result<TelemetryGuard, Error> {
        if INITIALIZED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::AlreadyInitialized);
        }
        let prepared = self.prepare();
        let (config, recorder, listener) = match prepared {
            Ok(prepared) => prepared,
            Err(err) => {
                INITIALIZED.store(false, Ordering::Release);
                return Err(err);
            }
        };

        let signals = config.signals;
        let logs = signals
            .logs()
            .then(|| log::writer(&config, self.log_writer.take()))
            .transpose()?;
        let metrics = recorder
            .map(|recorder| {
                crate::metrics::install(
                    recorder,
                    &config.buckets,
                    config.process_metrics,
                    logs.as_ref().map(|logs| logs.dropped.clone()),
                )
            })
            .transpose()?;
        if !signals.metrics() {
            // The HTTP layer records no metrics then: nobody would read them.
            crate::metrics::stop_recording();
        }
        let traces = trace::install(&config)?;
        if let Some(dispatch) = subscriber::dispatch(&config, logs.as_ref(), traces.tracer) {
            tracing::dispatcher::set_global_default(dispatch)
                .map_err(|_| Error::SubscriberAlreadySet)?;
            // Forward the `log` crate; another logger being there already is not our error.
            let _ = tracing_log::LogTracer::init();
        }
        trace::warn_unexported(&config);
        // The panic line goes through the log writer: no logs, no hook.
        let panic_hook = logs
            .as_ref()
            .filter(|_| self.panic_hook.unwrap_or(true))
            .and_then(|logs| panic::install(logs.writer.clone()));
        let (exporter, upkeep) = metrics.unzip();
        let listener = listener
            .zip(exporter.clone())
            .map(|(listener, exporter)| {
                let service = crate::metrics::MetricsService::with_exporter(exporter);
                listener.start(match &config.metrics_token {
                    Some(token) => service.require_bearer_token(token.clone()),
                    None => service,
                })
            })
            .transpose()?;
        tracing::debug!(
            service.name = %config.service_name,
            metrics_addr = ?listener.as_ref().map(|l| l.addr),
            "telemetry initialized"
        );
        Ok(TelemetryGuard {
            metrics_token: config.metrics_token.clone(),
            exporter,
            tracer_provider: traces.provider,
            log_worker: logs.map(|logs| logs.worker),
            listener,
            upkeep,
            panic_hook,
        })
    }

    /// Builds logging and tracing as a [`tracing::Dispatch`] without
    /// installing anything globally: no global subscriber, no `metrics`
    /// recorder, no metrics listener.
    ///
    /// For tests and benchmarks that need several configurations in one
    /// process, and for applications that compose their own dispatch. Make it
    /// current with [`tracing::dispatcher::with_default`] or
    /// [`tracing::dispatcher::set_default`]; keep the guard alive as long as
    /// the dispatch is used (dropping it flushes spans and log lines).
    ///
    /// ```
    /// let (dispatch, _guard) = multiweb_telemetry::Telemetry::builder()
    ///     .log_writer(std::io::sink())
    ///     .build_dispatch()?;
    /// tracing::dispatcher::with_default(&dispatch, || {
    ///     tracing::info!("only this closure logs through it");
    /// });
    /// # Ok::<(), multiweb_telemetry::Error>(())
    /// ```
    pub fn build_dispatch(mut self) -> Result<(tracing::Dispatch, TelemetryGuard), Error> {
        let config = self.resolve(&|name| std::env::var_os(name))?;
        let logs = config
            .signals
            .logs()
            .then(|| log::writer(&config, self.log_writer.take()))
            .transpose()?;
        let traces = trace::install(&config)?;
        let dispatch = subscriber::dispatch(&config, logs.as_ref(), traces.tracer)
            .unwrap_or_else(tracing::Dispatch::none);
        Ok((
            dispatch,
            TelemetryGuard {
                metrics_token: None,
                exporter: None,
                tracer_provider: traces.provider,
                log_worker: logs.map(|logs| logs.worker),
                listener: None,
                upkeep: None,
                panic_hook: None,
            },
        ))
    }

    /// The side-effect-free part of `try_init`.
    fn prepare(
        &self,
    ) -> Result<
        (
            config::Config,
            Option<metrics_exporter_prometheus::PrometheusRecorder>,
            Option<crate::metrics::MetricsListener>,
        ),
        Error,
    > {
        let config = self.resolve(&|name| std::env::var_os(name))?;
        business::check_duplicates()?;
        let signals = config.signals;
        if (signals.logs() || signals.traces()) && tracing::dispatcher::has_been_set() {
            return Err(Error::SubscriberAlreadySet);
        }
        if !signals.metrics() {
            // No recorder, so no `/metrics` to serve on a listener either.
            return Ok((config, None, None));
        }
        let recorder = crate::metrics::build_recorder(&config.buckets)?;
        let listener = config
            .metrics_addr
            .map(crate::metrics::MetricsListener::bind)
            .transpose()?;
        Ok((config, Some(recorder), listener))
    }
}
