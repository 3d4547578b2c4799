//! Outgoing calls (feature `client`).
//!
//! TODO docs

mod body;
mod call;
mod future;
mod layer;
mod middleware;
mod series;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::{ClientLayer, DEFAULT_MAX_SERIES};
pub use middleware::ReqwestMiddleware;
pub use series::{
    CANCELLED_STATUS, ERROR_STATUS, OVERFLOW_SERVER_ADDRESS, REQUEST_DURATION,
    UNKNOWN_SERVER_ADDRESS,
};
pub use service::ClientService;

/// A [`ClientLayer`] with the default settings.
pub fn layer() -> ClientLayer {
    ClientLayer::new()
}

/// A [`ReqwestMiddleware`] with the default settings.
pub fn middleware() -> ReqwestMiddleware {
    ReqwestMiddleware::new()
}
