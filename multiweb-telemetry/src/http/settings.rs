//! What the layer's services share: the settings, the series cache, and
//! per service what its first route needs again.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{Method, Uri};
use tracing::Level;

#[cfg(feature = "tonic")]
use super::grpc::RpcSeriesCache;
use super::series::{RouteSeries, SeriesCache};
use crate::request_span::RouteCache;

/// Maps a request to its route template, for servers other than axum.
type RouteClassifier = dyn Fn(&Method, &Uri) -> Option<Cow<'static, str>> + Send + Sync;

/// What the layer records, shared by every service it makes.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) metrics: bool,
    pub(crate) span: bool,
    pub(crate) access_log: bool,
    pub(crate) levels: [Level; 3],
    pub(crate) excluded: Arc<[String]>,
    pub(crate) classifier: Option<Arc<RouteClassifier>>,
}

/// The layer's settings and series cache, which every service it makes
/// shares.
#[derive(Debug, Clone)]
pub(crate) struct LayerState {
    pub(crate) settings: Settings,
    pub(crate) series: Arc<SeriesCache>,
    /// The gRPC calls' series (feature `tonic`).
    #[cfg(feature = "tonic")]
    pub(crate) rpc: Arc<RpcSeriesCache>,
}

/// What one service (and its clones) keeps: the layer's state, and what
/// the first route it served needs again. axum makes one service per route,
/// so nearly every request finds its series and span data here without a
/// lookup.
#[derive(Debug)]
pub(crate) struct ServiceState {
    pub(crate) layer: Arc<LayerState>,
    pub(crate) route: OnceLock<Arc<RouteSeries>>,
    /// What the request spans of the first route it served share.
    pub(crate) route_cache: OnceLock<RouteCache>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("metrics", &self.metrics)
            .field("span", &self.span)
            .field("access_log", &self.access_log)
            .field("levels", &self.levels)
            .field("excluded", &self.excluded)
            .field("classifier", &self.classifier.as_ref().map(|_| "custom"))
            .finish()
    }
}
