//! [`ClientLayer`]: the layer and its setter.

use std::sync::Arc;

use tower::Layer;

use super::series::ClientSeries;
use super::service::ClientService;

/// Default cap on label sets of `http_client_request_duration_seconds`; see
/// [`ClientLayer::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// A [`tower::Layer`] for HTTP clients: a CLIENT span, the `traceparent`
/// and `tracestate` headers, and `http_client_request_duration_seconds` for
/// every call. See the [module docs](super).
///
/// Services made by one layer (and its clones) share their series and
/// their cap.
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ClientLayer {
    series: Arc<ClientSeries>,
}

impl Default for ClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientLayer {
    /// A layer with the default settings.
    pub fn new() -> Self {
        Self {
            series: Arc::new(ClientSeries::new(DEFAULT_MAX_SERIES)),
        }
    }

    /// The most label sets `http_client_request_duration_seconds` may have,
    /// and the most hosts it tells apart. Past it, calls of new `(method,
    /// server_address, status)` combinations are recorded under
    /// `server_address="overflow"`, which adds at most one series per method
    /// and status.
    ///
    /// Defaults to [`DEFAULT_MAX_SERIES`].
    pub fn max_series(self, max: usize) -> Self {
        Self {
            series: Arc::new(ClientSeries::new(max)),
        }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService::new(inner, Arc::clone(&self.series))
    }
}
