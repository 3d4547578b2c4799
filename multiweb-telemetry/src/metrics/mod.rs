//! Prometheus metrics: the recorder behind the `metrics` facade, and `/metrics`.
//!
//! [`init`](crate::init) installs a [`metrics`] recorder from
//! `metrics-exporter-prometheus`. Anything recorded through the facade, by
//! this crate or any other, is exported in the Prometheus text format.
//! Histograms are always exported as buckets (`_bucket`, `_sum`, `_count`),
//! never as summaries; the default bounds are
//! [`DEFAULT_BUCKETS`](crate::DEFAULT_BUCKETS).
//!
//! # OpenMetrics and exemplars
//!
//! A scrape whose `Accept` header prefers `application/openmetrics-text`
//! (Prometheus asks for it first by default) gets the same series in the
//! OpenMetrics text format 1.0.0 (`Content-Type: application/openmetrics-text;
//! version=1.0.0; charset=utf-8`), ending in `# EOF`; any other request gets
//! the classic text format. Only the OpenMetrics answer carries exemplars,
//! which link a histogram bucket or a counter to a trace:
//!
//! ```text
//! http_request_duration_seconds_bucket{method="GET",path="/api/v1/products/",status="200",le="0.5"} 1021 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.31 1764859200.123
//! ```
//!
//! - `http_request_duration_seconds_bucket` and `http_requests_total` carry
//!   the newest exemplar of each bucket and series, from requests whose
//!   trace is sampled, and from 5xx requests the guide's "keep every error"
//!   rule keeps (see [`crate::trace`]): an exemplar never names a trace that
//!   sampling dropped (with no OTLP endpoint configured, sampled traces are
//!   made but sent nowhere, and so are the ones exemplars name).
//! - `#[business_metric]` counters and histograms carry one when they are
//!   recorded inside a sampled span ([`crate::business`]).
//!
//! An unsampled request or event pays one read of the current OpenTelemetry
//! context and a branch. Prometheus stores exemplars when started with
//! `--enable-feature=exemplar-storage`; Grafana shows them on panels with
//! exemplars on, each linked to its trace (the shipped `deploy/` stack does
//! both).
//!
//! The OpenMetrics answer is a conversion of the classic one; the
//! conversion and its reasons are described in the source of the
//! `metrics::openmetrics` module.
//!
//! `/metrics` can be served two ways:
//!
//! - mount [`metrics_service`] on the application's router:
//!
//!   ```no_run
//!   # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//!   let _telemetry = multiweb_telemetry::init()?;
//!   let app: axum::Router = axum::Router::new()
//!       .route_service("/metrics", multiweb_telemetry::metrics::metrics_service());
//!   # Ok(()) }
//!   ```
//!
//! - or set `MULTIWEB_METRICS_ADDR` (or
//!   [`TelemetryBuilder::metrics_addr`](crate::TelemetryBuilder::metrics_addr)) to
//!   serve it on a listener of its own, which keeps it off the public port.
//!
//! Every scrape also refreshes the standard process metrics
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …) and the
//! crate's own counters, such as `multiweb_telemetry_log_lines_dropped_total`.

mod format;
mod listener;
mod openmetrics;
#[cfg(feature = "process-metrics")]
mod process;
mod service;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub(crate) use listener::{MetricsListener, RunningListener};
pub use service::MetricsService;

use crate::Error;
use crate::config::Buckets;
use crate::exemplar;

/// Name of the counter of log lines dropped because stdout could not keep up.
pub const LOG_LINES_DROPPED: &str = "multiweb_telemetry_log_lines_dropped_total";

/// Name of the counter of requests the HTTP layer recorded under
/// `path="overflow"` because the series cap was reached. [`init`](crate::init)
/// exports it at 0 from the start, so that the alert on it has a series to
/// watch before the first overflow.
pub const SERIES_OVERFLOW_TOTAL: &str = "multiweb_telemetry_http_series_overflow_total";

/// Describes [`SERIES_OVERFLOW_TOTAL`].
pub(crate) fn describe_series_overflow() {
    ::metrics::describe_counter!(
        SERIES_OVERFLOW_TOTAL,
        "HTTP requests recorded under path=\"overflow\" because the series cap was reached."
    );
}

/// Name of the counter of panics logged by the panic hook [`init`](crate::init)
/// installs (every panic in the process, caught or not, until the guard is
/// dropped); exported only when the hook is installed (see
/// [`TelemetryBuilder::panic_hook`](crate::TelemetryBuilder::panic_hook)).
pub const PANICS: &str = "multiweb_telemetry_panics_total";

/// How often buffered histogram samples are folded into their buckets when
/// nobody scrapes, so memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Whether the HTTP layer records its metrics: [`init`](crate::init) turns
/// it off when its [`Signals`](crate::Signals) leave metrics out (no
/// recorder would keep them).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// Makes the HTTP layer record no metrics from now on.
pub(crate) fn stop_recording() {
    RECORDING.store(false, Ordering::Relaxed);
}

/// Whether the HTTP layer records its metrics.
pub(crate) fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The installed exporter, shared by every `/metrics` endpoint.
static EXPORTER: OnceLock<Arc<Exporter>> = OnceLock::new();

/// Renders the exposition text.
#[derive(Debug)]
pub(crate) struct Exporter {
    handle: PrometheusHandle,
    #[cfg_attr(
        not(feature = "process-metrics"),
        allow(
            dead_code,
            reason = "the process collector is in the `process-metrics` feature"
        )
    )]
    process_metrics: bool,
    dropped_logs: Option<crate::log::DroppedLines>,
}

impl Exporter {
    /// The full exposition: recorded metrics, then process metrics.
    pub(crate) fn render(&self) -> String {
        if let Some(dropped) = &self.dropped_logs {
            ::metrics::counter!(LOG_LINES_DROPPED).absolute(dropped.get());
        }
        if let Some(panics) = crate::panic::count() {
            ::metrics::counter!(PANICS).absolute(panics);
        }
        #[cfg(feature = "sqlx")]
        crate::db::refresh_pool_gauges();
        self.handle.run_upkeep();
        let mut out = self.handle.render();
        crate::business::render(&mut out);
        #[cfg(feature = "process-metrics")]
        if self.process_metrics {
            process::render(&mut out);
        }
        out
    }

    /// The same exposition in the OpenMetrics text format, with exemplars.
    pub(crate) fn render_openmetrics(&self) -> String {
        openmetrics_of(&self.render())
    }
}

/// The OpenMetrics exposition of the classic exposition `classic`, with the
/// exemplars recorded so far.
pub(crate) fn openmetrics_of(classic: &str) -> String {
    openmetrics::convert(classic, &mut exemplar::Index::collect())
}

/// A `PrometheusBuilder` with the crate's bucket settings.
pub(crate) fn prometheus_builder(buckets: &Buckets) -> Result<PrometheusBuilder, Error> {
    let invalid = |setting: String| Error::InvalidSetting {
        setting,
        reason: "rejected by the Prometheus exporter",
    };
    let mut builder = PrometheusBuilder::new()
        .set_buckets(&buckets.default)
        .map_err(|_| invalid("histogram_buckets".to_owned()))?;
    // Before the per-metric settings, which replace it.
    #[cfg(feature = "sqlx")]
    {
        builder = builder
            .set_buckets_for_metric(
                Matcher::Full(crate::db::OPERATION_DURATION.to_owned()),
                crate::db::DURATION_BUCKETS,
            )
            .map_err(|_| invalid("db buckets".to_owned()))?;
    }
    for (metric, bounds) in &buckets.per_metric {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.clone()), bounds)
            .map_err(|_| invalid(format!("histogram_buckets_for({metric:?})")))?;
    }
    Ok(builder)
}

/// Builds a recorder with the crate's settings, without installing it.
pub(crate) fn build_recorder(buckets: &Buckets) -> Result<PrometheusRecorder, Error> {
    Ok(prometheus_builder(buckets)?.build_recorder())
}

/// Installs `recorder`, built with `buckets`, as the global recorder and
/// makes it the one `/metrics` serves.
pub(crate) fn install(
    recorder: PrometheusRecorder,
    buckets: &Buckets,
    process_metrics: bool,
    dropped_logs: Option<crate::log::DroppedLines>,
) -> Result<(Arc<Exporter>, Upkeep), Error> {
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| Error::RecorderAlreadySet)?;
    exemplar::set_buckets(buckets);
    ::metrics::describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because the log output could not keep up."
    );
    ::metrics::counter!(LOG_LINES_DROPPED).absolute(0);
    describe_series_overflow();
    ::metrics::counter!(SERIES_OVERFLOW_TOTAL).increment(0);
    ::metrics::describe_counter!(PANICS, "Panics logged by the panic hook.");
    let exporter = Arc::new(Exporter {
        handle,
        process_metrics,
        dropped_logs,
    });
    let _ = EXPORTER.set(Arc::clone(&exporter));
    let upkeep = Upkeep::spawn(exporter.handle.clone())?;
    Ok((exporter, upkeep))
}

/// The exporter installed by `init`, if any.
pub(crate) fn installed() -> Option<&'static Arc<Exporter>> {
    EXPORTER.get()
}

/// A [`MetricsService`] that serves the exposition of the recorder installed
/// by [`init`](crate::init).
///
/// It may be created before `init`; until then it answers
/// `503 Service Unavailable`.
pub fn metrics_service() -> MetricsService {
    MetricsService::new()
}

/// The periodic upkeep thread; stops when dropped.
#[derive(Debug)]
pub(crate) struct Upkeep {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Upkeep {
    fn spawn(handle: PrometheusHandle) -> Result<Self, Error> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        thread::Builder::new()
            .name("multiweb-metrics-upkeep".to_owned())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(UPKEEP_INTERVAL)
                {
                    handle.run_upkeep();
                }
            })
            .map_err(|source| Error::Spawn {
                what: "metrics upkeep",
                source,
            })?;
        Ok(Self { stop: Some(stop) })
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then exits.
        self.stop.take();
    }
}
