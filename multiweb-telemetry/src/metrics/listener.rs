//! The standalone `/metrics` listener (`MULTIWEB_METRICS_ADDR`), served by
//! axum (feature `axum`; without it, asking for one is an error at `init`).

use std::net::{SocketAddr, TcpListener};
#[cfg(feature = "axum")]
use std::thread;

#[cfg(feature = "axum")]
use tokio::sync::oneshot;

use super::MetricsService;
use crate::Error;

/// A bound listener; serves on its own thread and runtime once started,
/// so it works whatever runtime (if any) the application uses.
#[derive(Debug)]
#[cfg_attr(
    not(feature = "axum"),
    allow(dead_code, reason = "never made without the `axum` feature")
)]
pub(crate) struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The running listener; stops when dropped.
#[derive(Debug)]
pub(crate) struct RunningListener {
    pub(crate) addr: SocketAddr,
    #[cfg(feature = "axum")]
    stop: Option<oneshot::Sender<()>>,
}

impl MetricsListener {
    /// Binds `addr` now, so that a bad address is an error from `init`.
    #[cfg(feature = "axum")]
    pub(crate) fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let bind_error = |source| Error::BindMetrics { addr, source };
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self { listener, addr })
    }

    /// Without the `axum` feature, there is no listener to bind.
    #[cfg(not(feature = "axum"))]
    pub(crate) fn bind(_addr: SocketAddr) -> Result<Self, Error> {
        Err(Error::FeatureDisabled {
            what: "the standalone `/metrics` listener (`MULTIWEB_METRICS_ADDR`)",
            feature: "axum",
        })
    }

    /// Without the `axum` feature, never called: `bind` fails.
    #[cfg(not(feature = "axum"))]
    #[allow(clippy::unused_self, reason = "the signature of the `axum` build")]
    pub(crate) fn start(self, _service: MetricsService) -> Result<RunningListener, Error> {
        Err(Error::FeatureDisabled {
            what: "the standalone `/metrics` listener (`MULTIWEB_METRICS_ADDR`)",
            feature: "axum",
        })
    }

    #[cfg(feature = "axum")]
    pub(crate) fn start(self, service: MetricsService) -> Result<RunningListener, Error> {
        let spawn_error = |source| Error::Spawn {
            what: "metrics listener",
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(spawn_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let Self { listener, addr } = self;
        thread::Builder::new()
            .name("multiweb-metrics-listener".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            tracing::error!(error = %err, %addr, "metrics listener could not start");
                            return;
                        }
                    };
                    let app = axum::Router::new().route_service("/metrics", service);
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(err) = served {
                        tracing::error!(error = %err, %addr, "metrics listener stopped");
                    }
                });
            })
            .map_err(spawn_error)?;
        Ok(RunningListener {
            addr,
            stop: Some(stop),
        })
    }
}

#[cfg(feature = "axum")]
impl Drop for RunningListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
