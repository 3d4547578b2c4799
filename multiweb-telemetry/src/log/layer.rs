//! [`JsonLayer`]: the layer that writes each event as one JSON line.

use std::io::{self, Write as _};
use std::sync::OnceLock;

use tracing_core::dispatcher::WeakDispatch;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

#[allow(unused_imports, reason = "named by the docs")]
use super::MAX_VALUE_BYTES;
use super::fields::{self, SpanFields};
use super::line::write_line;

/// A [`Layer`] that writes each event as one JSON object on one line.
///
/// The object has the fields Loki's `| json` stage and the guide's LogQL
/// expect (CONTRACT §2):
///
/// ```json
/// {"timestamp":"2026-11-28T04:43:34.123456Z","level":"info","message":"GET /api/v1/products/ status=200 duration=0.003","target":"multiweb_telemetry::http","method":"GET","path":"/api/v1/products/","status":200,"duration":0.003,"user_id":"123"}
/// ```
///
/// - `timestamp` is RFC 3339 in UTC with microseconds; `level` is lowercase.
/// - The event's fields and the fields of every enclosing span are written at
///   the top level (except span fields named `otel.*`, which only steer the
///   OpenTelemetry bridge). The innermost value wins when names repeat; fields named
///   like the fixed keys above are left out.
/// - Inside a span bridged to OpenTelemetry (as [`init`](crate::init) sets
///   up), `trace_id` and `span_id` are the ids the collector receives, as
///   lowercase hex.
/// - Numbers and booleans stay JSON numbers and booleans, so
///   `| json | duration > 1.0` compares numerically.
/// - String values longer than [`MAX_VALUE_BYTES`] are truncated; control
///   characters are escaped, so a field can never break the line.
///
/// [`init`](crate::init) installs this layer writing to stdout through a
/// non-blocking bounded buffer; it is public for custom subscriber stacks and
/// benchmarks.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(multiweb_telemetry::log::JsonLayer::new().with_writer(std::io::stderr));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(user_id = "123", "hello");
/// });
/// ```
#[derive(Debug)]
pub struct JsonLayer<W = fn() -> io::Stdout> {
    make_writer: W,
    /// The dispatcher this layer is part of, to look up OpenTelemetry ids.
    dispatch: OnceLock<WeakDispatch>,
}

impl JsonLayer {
    /// A layer writing to stdout.
    pub fn new() -> Self {
        Self {
            make_writer: io::stdout,
            dispatch: OnceLock::new(),
        }
    }
}

impl Default for JsonLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<W> JsonLayer<W> {
    /// Writes lines to `make_writer` instead. Defaults to stdout.
    pub fn with_writer<W2>(self, make_writer: W2) -> JsonLayer<W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        JsonLayer {
            make_writer,
            dispatch: self.dispatch,
        }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(fields) = SpanFields::of_new_span(attrs)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            fields::record(&mut span.extensions_mut(), values);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let leaf = ctx.event_span(event);
        write_line(
            *meta.level(),
            meta.target(),
            |own| event.record(own),
            leaf.as_ref(),
            |id| {
                let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade)?;
                crate::trace::bridged_ids(id, &dispatch)
            },
            // A failed write must never reach the application; the
            // non-blocking writer counts what it drops.
            |line| {
                let _ = self.make_writer.make_writer_for(meta).write_all(line);
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Capture;
    use tracing_subscriber::layer::SubscriberExt;

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with('\n'),
            "every line ends with a newline: {text:?}"
        );
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn writes_contract_fields() {
        let lines = capture(|| tracing::warn!(answer = 42, "disk almost full"));
        assert_eq!(lines.len(), 1);
        let line = lines[0].as_object().unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["message"], "disk almost full");
        assert_eq!(line["answer"], 42);
        assert_eq!(line["target"], "multiweb_telemetry::log::layer::tests");
        let ts = line["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-28T04:43:34.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        let keys: Vec<_> = line.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "no other fields: {keys:?}");
    }

    #[test]
    fn levels_are_lowercase() {
        let lines = capture(|| {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let levels: Vec<_> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
        assert_eq!(levels, ["error", "warn", "info", "debug", "trace"]);
    }

    #[test]
    fn span_fields_are_flattened_innermost_first() {
        let lines = capture(|| {
            let request =
                tracing::info_span!("request", user_id = tracing::field::Empty, method = "GET");
            let _r = request.enter();
            request.record("user_id", "123");
            let inner = tracing::info_span!("list_products", method = "inner", page = 2_u64);
            let _i = inner.enter();
            tracing::info!(duration = 1.5_f64, "listed");
        });
        let line = lines[0].as_object().unwrap();
        assert_eq!(line["user_id"], "123");
        assert_eq!(line["method"], "inner", "the innermost span wins");
        assert_eq!(line["page"], 2);
        assert_eq!(line["duration"], 1.5);
        assert!(line["duration"].is_f64());
        assert!(!line.contains_key("span") && !line.contains_key("spans"));
    }

    #[test]
    fn event_fields_win_over_span_fields_and_reserved_keys_are_kept() {
        let lines = capture(|| {
            let span = tracing::info_span!("s", status = 200_u64, level = "span-level");
            let _g = span.enter();
            tracing::error!(status = 503_u64, target_name = "x", "failed");
        });
        let line = lines[0].as_object().unwrap();
        assert_eq!(line["status"], 503);
        assert_eq!(line["level"], "error");
        assert_eq!(line["message"], "failed");
    }

    /// More fields than a span keeps inline: all of them reach the line,
    /// with the latest value of one recorded again.
    #[test]
    fn a_span_with_many_fields_keeps_them_all() {
        let lines = capture(|| {
            let span = tracing::info_span!(
                "s",
                f1 = 1,
                f2 = 2,
                f3 = 3,
                f4 = 4,
                f5 = 5,
                f6 = 6,
                f7 = tracing::field::Empty,
                f8 = tracing::field::Empty,
            );
            span.record("f8", 8);
            span.record("f7", 7);
            span.record("f2", "two");
            let _g = span.enter();
            tracing::info!("inside");
        });
        let line = lines[0].as_object().unwrap();
        let keys: Vec<&str> = line
            .keys()
            .map(String::as_str)
            .filter(|key| key.starts_with('f'))
            .collect();
        // (`serde_json` sorts the keys, and would hide a repeated one.)
        assert_eq!(keys, ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"]);
        assert_eq!(line["f1"], 1);
        assert_eq!(line["f2"], "two");
        assert_eq!(line["f7"], 7);
    }

    #[test]
    fn hostile_values_stay_on_one_valid_line() {
        let long = "x".repeat(MAX_VALUE_BYTES * 8);
        let lines = capture(|| {
            tracing::info!(path = "/a\nb\"c\\d\u{1}\u{7f}é", long = %long, "line\r\nbreak");
            tracing::info!(debug = ?long, "debug");
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["path"], "/a\nb\"c\\d\u{1}\u{7f}é");
        assert_eq!(lines[0]["message"], "line\r\nbreak");
        let long_value = lines[0]["long"].as_str().unwrap();
        assert_eq!(long_value.len(), MAX_VALUE_BYTES + "…".len());
        assert!(lines[1]["debug"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn error_values_are_strings() {
        let err = io::Error::other("connection refused");
        let lines = capture(|| {
            tracing::error!(
                error = &err as &(dyn std::error::Error + 'static),
                "call failed"
            );
        });
        assert_eq!(lines[0]["error"], "connection refused");
    }
}
