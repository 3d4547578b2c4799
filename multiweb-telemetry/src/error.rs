//! The crate's error type.

use std::net::SocketAddr;

/// Why telemetry could not be initialized.
///
/// Every variant names the thing that was wrong: the environment variable and
/// its value, the address that could not be bound, the metric whose buckets
/// were rejected. Secrets are never shown: the value of a variable or
/// setting that holds one (a token, header values, the userinfo of a URL)
/// is replaced by `<redacted>`. The underlying cause, where there is one, is available
/// through [`std::error::Error::source`] and is not repeated in `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`init`](crate::init) or [`TelemetryBuilder::try_init`](crate::TelemetryBuilder::try_init)
    /// was called a second time in this process.
    #[error("telemetry is already initialized: `init()` may succeed only once per process")]
    AlreadyInitialized,

    /// An environment variable holds a value the crate cannot use.
    #[error("invalid value {value:?} for environment variable {name}: expected {expected}")]
    InvalidEnv {
        /// The variable's name, e.g. `MULTIWEB_METRICS_ADDR`.
        name: &'static str,
        /// The value as it was found (lossily converted if it was not
        /// UTF-8), except secrets: `<redacted>` for a variable that holds
        /// one (`MULTIWEB_METRICS_TOKEN`, the OTLP headers), and the
        /// userinfo of an endpoint URL replaced by `<redacted>`.
        value: String,
        /// What the variable must contain.
        expected: &'static str,
        /// The parser's own error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A value given to the builder in code is invalid.
    #[error("invalid setting {setting}: {reason}")]
    InvalidSetting {
        /// The builder setting, e.g. `histogram_buckets_for("http_request_duration_seconds")`.
        setting: String,
        /// What was wrong with it.
        reason: &'static str,
    },

    /// The standalone metrics listener could not bind its address.
    #[error("could not bind the metrics listener to {addr}")]
    BindMetrics {
        /// The address from `MULTIWEB_METRICS_ADDR` or the builder.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A background thread (log writer or metrics listener) could not be started.
    #[error("could not start the {what} thread")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The OTLP span exporter could not be built (for example, an endpoint
    /// that is not a valid URL).
    #[error("could not build the OTLP span exporter")]
    Exporter {
        /// The exporter's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Two `#[business_metric]` declarations export the same name.
    #[error("business metric {name} is declared twice: at {first} and at {second}")]
    DuplicateMetric {
        /// The exported name.
        name: &'static str,
        /// One declaration, as `file:line`.
        first: String,
        /// The other declaration, as `file:line`.
        second: String,
    },

    /// A setting asks for something this build leaves out: the crate
    /// feature that brings it is off.
    #[error("{what} needs the crate's `{feature}` feature, which this build leaves out")]
    FeatureDisabled {
        /// What was asked for, e.g. an `https://` OTLP endpoint.
        what: &'static str,
        /// The Cargo feature of `multiweb-telemetry` that brings it.
        feature: &'static str,
    },

    /// Another crate already installed a global `metrics` recorder.
    #[error("a global `metrics` recorder is already installed by someone else")]
    RecorderAlreadySet,

    /// Another crate already installed a global `tracing` subscriber.
    #[error("a global `tracing` subscriber is already installed by someone else")]
    SubscriberAlreadySet,
}
