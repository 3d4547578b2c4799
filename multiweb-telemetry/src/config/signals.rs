//! [`Signals`]: which of logs, traces and metrics `init` sets up.

use std::fmt;
use std::ops::BitOr;

/// Which signals [`init`](crate::init) sets up: logs, traces, metrics, or
/// any combination, set with
/// [`TelemetryBuilder::signals`](crate::TelemetryBuilder::signals).
///
/// A signal that is off costs nothing per request: with metrics only, no
/// `tracing` subscriber is installed (the HTTP layer then makes no span and
/// writes no access line), and without metrics no `metrics` recorder is
/// installed (the HTTP layer then records no metrics).
///
/// ```no_run
/// use multiweb_telemetry::{Signals, Telemetry};
///
/// // Prometheus metrics only: no log thread, no subscriber, no tracer.
/// let _telemetry = Telemetry::builder().signals(Signals::METRICS).try_init()?;
/// // Metrics and logs, no traces.
/// # drop(_telemetry);
/// let _telemetry = Telemetry::builder()
///     .signals(Signals::METRICS | Signals::LOGS)
///     .try_init()?;
/// # Ok::<(), multiweb_telemetry::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signals(u8);

impl Signals {
    /// JSON (or pretty) log lines on stdout.
    pub const LOGS: Self = Self(1);
    /// Spans, their ids in log lines, and their export over OTLP.
    pub const TRACES: Self = Self(2);
    /// The `metrics` recorder, `/metrics` and the process metrics.
    pub const METRICS: Self = Self(4);
    /// Logs, traces and metrics: the default.
    pub const ALL: Self = Self(7);

    /// Whether every signal of `other` is on in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) fn logs(self) -> bool {
        self.contains(Self::LOGS)
    }

    pub(crate) fn traces(self) -> bool {
        self.contains(Self::TRACES)
    }

    pub(crate) fn metrics(self) -> bool {
        self.contains(Self::METRICS)
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::ALL
    }
}

impl BitOr for Signals {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::LOGS, "LOGS"),
            (Self::TRACES, "TRACES"),
            (Self::METRICS, "METRICS"),
        ];
        let on: Vec<&str> = names
            .iter()
            .filter(|(signal, _)| self.contains(*signal))
            .map(|(_, name)| *name)
            .collect();
        if on.is_empty() {
            f.write_str("Signals(none)")
        } else {
            write!(f, "Signals({})", on.join(" | "))
        }
    }
}
