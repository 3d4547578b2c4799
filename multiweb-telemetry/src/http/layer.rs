//! [`TelemetryLayer`]: the layer and its setters.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use http::{Method, Uri};
use tower::Layer;
use tracing::Level;

#[cfg(feature = "tonic")]
use super::grpc::RpcSeriesCache;
use super::series::SeriesCache;
use super::service::TelemetryService;
use super::settings::{LayerState, ServiceState, Settings};

/// Default cap on label sets per HTTP metric; see [`TelemetryLayer::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// A [`tower::Layer`] recording RED metrics, a request span and an access log
/// line for every HTTP request.
///
/// Create it with [`layer()`](super::layer) or [`TelemetryLayer::new`], and
/// adjust it with the setters below; each names its default.
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct TelemetryLayer {
    state: Arc<LayerState>,
}

impl Default for TelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryLayer {
    /// A layer with every part on and the default settings.
    pub fn new() -> Self {
        Self {
            state: Arc::new(LayerState {
                settings: Settings {
                    metrics: true,
                    span: true,
                    access_log: true,
                    levels: [Level::INFO, Level::WARN, Level::ERROR],
                    excluded: Arc::from(vec!["/metrics".to_owned()]),
                    classifier: None,
                },
                series: Arc::new(SeriesCache::new(DEFAULT_MAX_SERIES)),
                #[cfg(feature = "tonic")]
                rpc: Arc::new(RpcSeriesCache::new(DEFAULT_MAX_SERIES)),
            }),
        }
    }

    fn settings(&mut self) -> &mut Settings {
        &mut Arc::make_mut(&mut self.state).settings
    }

    /// Whether `http_requests_total`, `http_request_duration_seconds` and
    /// `http_requests_in_flight` are recorded. Defaults to `true`.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.settings().metrics = enabled;
        self
    }

    /// Whether each request gets a SERVER span (`METHOD route`, with the
    /// OpenTelemetry HTTP attributes). Defaults to `true`.
    pub fn span(mut self, enabled: bool) -> Self {
        self.settings().span = enabled;
        self
    }

    /// Whether one access log line is written when each response completes.
    /// Defaults to `true`.
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.settings().access_log = enabled;
        self
    }

    /// Levels of the access log line for 1xx–3xx, 4xx and 5xx responses.
    /// Defaults to `INFO`, `WARN`, `ERROR`.
    pub fn access_log_levels(
        mut self,
        success: Level,
        client_error: Level,
        server_error: Level,
    ) -> Self {
        self.settings().levels = [success, client_error, server_error];
        self
    }

    /// Request paths (exact, without the query string) that are not recorded
    /// at all. Replaces the default, which is `["/metrics"]`.
    pub fn exclude_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.settings().excluded = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Maps requests to route templates, for servers without axum's
    /// `MatchedPath`. Return `None` for requests that match no route; they
    /// are labelled `path="unmatched"`. Return templates, never raw paths,
    /// or the series cap will divert them to `path="overflow"`.
    ///
    /// Defaults to axum's `MatchedPath` (the template the router declared).
    pub fn route_classifier<F>(mut self, classify: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<Cow<'static, str>> + Send + Sync + 'static,
    {
        self.settings().classifier = Some(Arc::new(classify));
        self
    }

    /// The most label sets each HTTP metric may have. Past it, requests of
    /// new `(method, path)` or `(method, path, status)` combinations are
    /// recorded under `path="overflow"` and counted in
    /// `multiweb_telemetry_http_series_overflow_total`. The overflow series
    /// themselves add at most one per method and status code. gRPC calls
    /// (feature `tonic`) have a cap of their own on `(service, method)`
    /// pairs, the same number.
    ///
    /// Defaults to [`DEFAULT_MAX_SERIES`].
    pub fn max_series(mut self, max: usize) -> Self {
        let state = Arc::make_mut(&mut self.state);
        state.series = Arc::new(SeriesCache::new(max));
        #[cfg(feature = "tonic")]
        {
            state.rpc = Arc::new(RpcSeriesCache::new(max));
        }
        self
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService::new(
            inner,
            Arc::new(ServiceState {
                layer: Arc::clone(&self.state),
                route: OnceLock::new(),
                route_cache: OnceLock::new(),
            }),
        )
    }
}
