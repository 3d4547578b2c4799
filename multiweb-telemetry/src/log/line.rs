//! One JSON log line. Every line goes through [`write_line`]: an event's
//! (the [`JsonLayer`](super::JsonLayer)), and the HTTP layer's access line
//! written without dispatching an event (see `request_span`), so the two
//! can never differ in their bytes.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use tracing_core::Level;
use tracing_core::field::{Field, Visit};
use tracing_core::span::Id;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::encode::{
    MAX_VALUE_BYTES, escape_into, level_str, write_bool, write_f64, write_i64, write_ids,
    write_json_debug, write_json_display, write_json_str, write_u64,
};
use super::fields::SpanFields;
use super::timestamp::write_rfc3339;
use crate::trace::RequestContext;

/// Where a line written outside the [`JsonLayer`](super::JsonLayer) goes:
/// the writer the layer writes to under [`init`](crate::init)'s subscriber.
pub(crate) type LineSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Keys the formatter writes itself; span or event fields with these names
/// are left out.
const fn is_reserved(name: &str) -> bool {
    matches!(
        name.as_bytes(),
        b"timestamp" | b"level" | b"message" | b"target" | b"trace_id" | b"span_id"
    )
}

/// A line's own fields (an event's), written straight into the line in the
/// order given. A name given twice, or named like a fixed key, is written
/// once (the first value), and `message` at most once.
pub(crate) struct OwnFields<'a> {
    buf: &'a mut Vec<u8>,
    keys: &'a mut Vec<&'static str>,
    has_message: bool,
}

impl OwnFields<'_> {
    /// Writes `,"name":` and returns `true`, or returns `false` when the
    /// field must be left out.
    fn key(&mut self, name: &'static str) -> bool {
        if name == "message" {
            if self.has_message {
                return false;
            }
            self.has_message = true;
        } else if is_reserved(name) || self.keys.contains(&name) {
            return false;
        } else {
            self.keys.push(name);
        }
        self.buf.extend_from_slice(b",\"");
        escape_into(self.buf, name);
        self.buf.extend_from_slice(b"\":");
        true
    }

    /// The `message`, made of `parts` one after the other: the same bytes as
    /// the concatenated string, without building it (escaping is per
    /// character) unless it must be truncated.
    pub(crate) fn message(&mut self, parts: &[&str]) {
        if !self.key("message") {
            return;
        }
        if parts.iter().map(|part| part.len()).sum::<usize>() > MAX_VALUE_BYTES {
            write_json_str(self.buf, &parts.concat());
            return;
        }
        self.buf.push(b'"');
        for part in parts {
            escape_into(self.buf, part);
        }
        self.buf.push(b'"');
    }

    /// A string field.
    pub(crate) fn str(&mut self, name: &'static str, value: &str) {
        if self.key(name) {
            write_json_str(self.buf, value);
        }
    }

    /// An integer field.
    pub(crate) fn i64(&mut self, name: &'static str, value: i64) {
        if self.key(name) {
            write_i64(self.buf, value);
        }
    }

    /// A number field.
    pub(crate) fn f64(&mut self, name: &'static str, value: f64) {
        if self.key(name) {
            write_f64(self.buf, value);
        }
    }
}

impl Visit for OwnFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.f64(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.i64(field.name(), value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field.name()) {
            write_u64(self.buf, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field.name()) {
            write_bool(self.buf, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.str(field.name(), value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field.name()) {
            write_json_display(self.buf, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field.name()) {
            write_json_debug(self.buf, value);
        }
    }
}

/// A thread's reusable buffers.
struct Scratch {
    line: Vec<u8>,
    keys: Vec<&'static str>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        line: Vec::with_capacity(512),
        keys: Vec::with_capacity(16),
    });
}

/// Runs `f` with this thread's reusable buffers, or fresh ones if they are
/// in use (a line written while writing a line).
fn with_scratch(f: impl FnOnce(&mut Scratch)) {
    let reentrant = SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.line.clear();
                scratch.keys.clear();
                f(&mut scratch);
                None
            }
            Err(_) => Some(f),
        })
        .unwrap_or(None);
    if let Some(f) = reentrant {
        f(&mut Scratch {
            line: Vec::new(),
            keys: Vec::new(),
        });
    }
}

/// Writes one line and hands it to `out`:
///
/// `{"timestamp":…,"level":…,` the line's own fields (`own`; an empty
/// `message` if it wrote none), the fields of `leaf` and its ancestors
/// (innermost first, names not yet written), `"target":…`, and the ids of
/// `leaf`: from the OpenTelemetry bridge (`bridged_ids`), or else those of
/// the innermost request span whose context the crate keeps itself
/// ([`RequestContext`]).
pub(crate) fn write_line<'a, R>(
    level: Level,
    target: &str,
    own: impl FnOnce(&mut OwnFields<'_>),
    leaf: Option<&SpanRef<'a, R>>,
    bridged_ids: impl FnOnce(&Id) -> Option<(TraceId, SpanId)>,
    out: impl FnOnce(&[u8]),
) where
    R: LookupSpan<'a>,
{
    with_scratch(|scratch| {
        let Scratch { line, keys } = scratch;
        line.extend_from_slice(b"{\"timestamp\":\"");
        write_rfc3339(line, SystemTime::now());
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level_str(level).as_bytes());
        line.push(b'"');
        let has_message = {
            let mut fields = OwnFields {
                buf: line,
                keys,
                has_message: false,
            };
            own(&mut fields);
            fields.has_message
        };
        if !has_message {
            line.extend_from_slice(b",\"message\":\"\"");
        }
        let request = leaf.and_then(|leaf| write_scope_fields(line, keys, leaf));
        line.extend_from_slice(b",\"target\":");
        write_json_str(line, target);
        let ids = match request {
            Some((ids, true)) => Some(ids),
            // The leaf's own ids, else (a span inside a request span the
            // bridge does not see) those of its request.
            _ => leaf
                .and_then(|leaf| bridged_ids(&leaf.id()))
                .or(request.map(|(ids, _)| ids)),
        };
        if let Some((trace_id, span_id)) = ids {
            write_ids(line, trace_id, span_id);
        }
        line.extend_from_slice(b"}\n");
        out(line);
    });
}

/// Appends the fields of `leaf` and its ancestors (innermost first, names
/// not yet in `keys`); returns the ids of the innermost span among them
/// with a [`RequestContext`], and whether that is `leaf`.
fn write_scope_fields<'a, R>(
    line: &mut Vec<u8>,
    keys: &mut Vec<&'static str>,
    leaf: &SpanRef<'a, R>,
) -> Option<((TraceId, SpanId), bool)>
where
    R: LookupSpan<'a>,
{
    let leaf_id = leaf.id();
    let mut request_ids = None;
    for span in leaf.scope() {
        let extensions = span.extensions();
        if request_ids.is_none()
            && let Some(RequestContext(cx)) = extensions.get::<RequestContext>()
        {
            request_ids = Some((crate::trace::ids_of(cx), span.id() == leaf_id));
        }
        let Some(fields) = extensions.get::<SpanFields>() else {
            continue;
        };
        for (key, member) in fields.members() {
            if is_reserved(key) || keys.contains(&key) {
                continue;
            }
            keys.push(key);
            line.push(b',');
            line.extend_from_slice(member);
        }
    }
    request_ids
}
