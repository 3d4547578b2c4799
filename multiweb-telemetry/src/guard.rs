//! The guard `init` returns.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::RunningListener;
use crate::metrics::{Exporter, MetricsService, Upkeep};

/// Keeps telemetry running; dropping it flushes and shuts telemetry down.
///
/// Hold it for the life of the program, typically as `let _telemetry = init()?;`
/// in `main` (not `let _ = ...`, which drops it at once).
///
/// Dropping it (or calling [`shutdown`](Self::shutdown)):
///
/// - exports the finished spans still queued, waiting at most 5 seconds;
/// - writes out the log lines still buffered, waiting at most about a second;
/// - stops the standalone metrics listener and the upkeep thread;
/// - hands panics back to the hook that was there before `init`.
///
/// It blocks no async runtime thread for long and needs no runtime, so it is
/// safe on a current-thread tokio runtime. Shutting down twice is harmless.
/// The global `metrics` recorder and `tracing` subscriber stay installed (a
/// process can install them only once); log lines emitted after shutdown are
/// dropped and counted.
#[must_use = "dropping the guard flushes and shuts telemetry down"]
pub struct TelemetryGuard {
    /// `None` for a guard of [`build_dispatch`](crate::TelemetryBuilder::build_dispatch).
    pub(crate) exporter: Option<Arc<Exporter>>,
    /// Required on `/metrics` when set (`MULTIWEB_METRICS_TOKEN`).
    pub(crate) metrics_token: Option<String>,
    pub(crate) tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    pub(crate) log_worker: Option<crate::log::WriterGuard>,
    pub(crate) listener: Option<RunningListener>,
    pub(crate) upkeep: Option<Upkeep>,
    /// Logs panics until dropped.
    pub(crate) panic_hook: Option<crate::panic::PanicHook>,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("metrics_addr", &self.metrics_addr())
            .field("running", &self.log_worker.is_some())
            .finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    /// A service answering with the `/metrics` exposition, to mount on the
    /// application's router.
    ///
    /// It requires the bearer token when one is configured
    /// (`MULTIWEB_METRICS_TOKEN`).
    pub fn metrics_service(&self) -> MetricsService {
        let service = match &self.exporter {
            Some(exporter) => MetricsService::with_exporter(Arc::clone(exporter)),
            None => crate::metrics::metrics_service(),
        };
        match &self.metrics_token {
            Some(token) => service.require_bearer_token(token.clone()),
            None => service,
        }
    }

    /// The address the standalone metrics listener is bound to, if one was
    /// configured (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|l| l.addr)
    }

    /// The Prometheus text exposition, as `/metrics` would serve it now.
    ///
    /// Empty for a guard of
    /// [`build_dispatch`](crate::TelemetryBuilder::build_dispatch), which
    /// installs no recorder.
    pub fn render_metrics(&self) -> String {
        self.exporter
            .as_ref()
            .map(|exporter| exporter.render())
            .unwrap_or_default()
    }

    /// Flushes and shuts telemetry down now; the same as dropping the guard.
    pub fn shutdown(mut self) {
        self.shutdown_in_place();
    }

    fn shutdown_in_place(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            // Exports the finished spans still queued, on the exporter's own
            // thread: no runtime of the application is needed or blocked on.
            if let Err(err) = provider.shutdown_with_timeout(crate::trace::SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %err, "spans may have been lost at shutdown");
            }
        }
        self.listener.take();
        self.upkeep.take();
        // Panics go to the previous hook again: the writer stops next.
        self.panic_hook.take();
        // Dropping the worker guard flushes buffered lines with a time limit.
        self.log_worker.take();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_in_place();
    }
}
