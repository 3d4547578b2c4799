//! The JSON log formatter: one object per line, span fields flattened.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use tracing_core::dispatcher::WeakDispatch;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{Extensions, ExtensionsMut, LookupSpan, SpanRef};

use super::timestamp::write_rfc3339;

/// Keys the formatter writes itself; span or event fields with these names
/// are left out.
const fn is_reserved(name: &str) -> bool {
    matches!(
        name.as_bytes(),
        b"timestamp" | b"level" | b"message" | b"target" | b"trace_id" | b"span_id"
    )
}

/// Longest string value written, in bytes; longer values are cut at a
/// character boundary and end with `…`.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

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

/// The fields recorded on a span, each already JSON-encoded as an object
/// member (`"key":value`), back to back in one buffer: a span with up to
/// [`INLINE_KEYS`] fields costs two allocations (this and the buffer), one
/// more beyond, and a log line copies each field with one copy.
#[derive(Debug, Default)]
struct SpanFields {
    /// The encoded members.
    json: Vec<u8>,
    /// Each field's name and where its member and its value start and end
    /// in `json`.
    keys: FieldKeys,
    /// Bytes of `json` no longer referenced (values recorded again).
    stale: usize,
    /// The OpenTelemetry context of a request span the HTTP layer started
    /// itself (see `trace::request`). Kept with the fields the layer adds at
    /// the same time: one extension, one allocation, per request span.
    request: Option<opentelemetry::Context>,
}

/// A field's name, and where its member, and its value, start and end.
type FieldKey = (&'static str, usize, usize, usize);

/// How many fields a span keeps without a second allocation.
const INLINE_KEYS: usize = 6;

/// The [`FieldKey`]s of a span: inline up to [`INLINE_KEYS`], then on the
/// heap.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "inline on purpose: it saves an allocation per span; the heap is the rare spill"
)]
enum FieldKeys {
    Inline(usize, [FieldKey; INLINE_KEYS]),
    Heap(Vec<FieldKey>),
}

impl Default for FieldKeys {
    fn default() -> Self {
        Self::Inline(0, [("", 0, 0, 0); INLINE_KEYS])
    }
}

impl FieldKeys {
    fn as_slice(&self) -> &[FieldKey] {
        match self {
            Self::Inline(len, keys) => keys.get(..*len).unwrap_or_default(),
            Self::Heap(keys) => keys,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [FieldKey] {
        match self {
            Self::Inline(len, keys) => keys.get_mut(..*len).unwrap_or_default(),
            Self::Heap(keys) => keys,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn push(&mut self, key: FieldKey) {
        match self {
            Self::Inline(len, keys) => {
                if let Some(slot) = keys.get_mut(*len) {
                    *slot = key;
                    *len += 1;
                } else {
                    let mut heap = Vec::with_capacity(INLINE_KEYS * 2);
                    heap.extend_from_slice(keys);
                    heap.push(key);
                    *self = Self::Heap(heap);
                }
            }
            Self::Heap(keys) => keys.push(key),
        }
    }
}

impl SpanFields {
    /// Encodes a value for `key` with `write`, replacing an earlier one.
    fn set(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) {
        if self.json.capacity() == 0 {
            self.json.reserve(128);
        }
        let (member, value, end) = self.append(key, write);
        match self
            .keys
            .as_mut_slice()
            .iter_mut()
            .find(|(k, ..)| *k == key)
        {
            Some(slot) => {
                self.stale += slot.3 - slot.1;
                *slot = (key, member, value, end);
                // A span recorded again and again must not grow without bound.
                if self.stale > 1024 && self.stale * 2 > self.json.len() {
                    self.compact();
                }
            }
            None => self.keys.push((key, member, value, end)),
        }
    }

    /// Appends the member `"key":value` to `json`; returns where it and its
    /// value start and where they end.
    fn append(
        &mut self,
        key: &'static str,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> (usize, usize, usize) {
        let member = self.json.len();
        self.json.push(b'"');
        escape_into(&mut self.json, key);
        self.json.extend_from_slice(b"\":");
        let value = self.json.len();
        write(&mut self.json);
        (member, value, self.json.len())
    }

    fn compact(&mut self) {
        let mut json = Vec::with_capacity(self.json.len() - self.stale);
        for (_, member, value, end) in self.keys.as_mut_slice() {
            let text = self.json.get(*member..*end).unwrap_or_default();
            let shift = json.len();
            json.extend_from_slice(text);
            *value = *value - *member + shift;
            *member = shift;
            *end = json.len();
        }
        self.json = json;
        self.stale = 0;
    }

    /// Each field's name and encoded value, in the order first recorded.
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        self.keys
            .as_slice()
            .iter()
            .map(|&(key, _, value, end)| (key, self.json.get(value..end).unwrap_or_default()))
    }

    /// Each field's name and encoded member (`"key":value`), in the order
    /// first recorded.
    fn members(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        self.keys
            .as_slice()
            .iter()
            .map(|&(key, member, _, end)| (key, self.json.get(member..end).unwrap_or_default()))
    }
}

/// String fields rendered once, for many spans: a request's method and
/// route, the same for every request of a route (see `trace::request`).
#[derive(Debug)]
pub(crate) struct RenderedFields {
    json: Vec<u8>,
    /// Where each member and its value start and end in `json`.
    keys: Vec<FieldKey>,
}

impl RenderedFields {
    pub(crate) fn new(values: &[(&'static str, &str)]) -> Self {
        let mut fields = SpanFields::default();
        for &(key, value) in values {
            let (member, at, end) = fields.append(key, |b| write_json_str(b, value));
            fields.keys.push((key, member, at, end));
        }
        Self {
            json: fields.json,
            keys: fields.keys.as_slice().to_vec(),
        }
    }
}

/// Marks a span as a request span the HTTP layer started itself, with the
/// OpenTelemetry context `cx`, and adds string fields to its log fields as
/// if recorded on it: first those of `rendered`, then `values`. This is how
/// the HTTP layer gives a request span the values it already has without a
/// pass through every layer.
pub(crate) fn add_request_fields(
    extensions: &mut ExtensionsMut<'_>,
    cx: opentelemetry::Context,
    rendered: Option<&RenderedFields>,
    values: &[(&'static str, &str)],
) {
    if let Some(fields) = extensions.get_mut::<SpanFields>() {
        if let Some(rendered) = rendered {
            for &(key, _, at, end) in &rendered.keys {
                let value = rendered.json.get(at..end).unwrap_or_default();
                fields.set(key, |b| b.extend_from_slice(value));
            }
        }
        for &(key, value) in values {
            fields.set(key, |b| write_json_str(b, value));
        }
        fields.request = Some(cx);
        return;
    }
    // A span with no fields yet (the request span when it starts): the
    // members are written back to back, with no search for earlier values.
    let rendered_len = rendered.map_or(0, |r| r.json.len());
    let mut fields = SpanFields {
        json: Vec::with_capacity(
            rendered_len
                + values
                    .iter()
                    .map(|(key, value)| key.len() + value.len() + 8)
                    .sum::<usize>()
                + 64,
        ),
        request: Some(cx),
        ..SpanFields::default()
    };
    if let Some(rendered) = rendered {
        fields.json.extend_from_slice(&rendered.json);
        for &key in &rendered.keys {
            fields.keys.push(key);
        }
    }
    for &(key, value) in values {
        let (member, at, end) = fields.append(key, |b| write_json_str(b, value));
        fields.keys.push((key, member, at, end));
    }
    extensions.insert(fields);
}

/// The OpenTelemetry context [`add_request_fields`] stored on a span, if it
/// is a request span the HTTP layer started itself.
pub(crate) fn request_context<'a>(
    extensions: &'a Extensions<'_>,
) -> Option<&'a opentelemetry::Context> {
    extensions
        .get::<SpanFields>()
        .and_then(|fields| fields.request.as_ref())
}

/// Records span fields into [`SpanFields`].
struct SpanVisitor<'a>(&'a mut SpanFields);

impl SpanVisitor<'_> {
    fn put(&mut self, field: &Field, write: impl FnOnce(&mut Vec<u8>)) {
        // `otel.*` fields steer the OpenTelemetry bridge; they are not log data.
        if field.name().starts_with("otel.") {
            return;
        }
        self.0.set(field.name(), write);
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, |b| write_f64(b, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |b| write_i64(b, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |b| write_u64(b, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |b| write_bool(b, value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |b| write_json_str(b, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |b| write_json_display(b, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |b| write_json_debug(b, value));
    }
}

/// Writes an event's fields straight into the line.
struct EventVisitor<'a> {
    buf: &'a mut Vec<u8>,
    keys: &'a mut Vec<&'static str>,
    has_message: bool,
}

impl EventVisitor<'_> {
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
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
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            write_f64(self.buf, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            write_i64(self.buf, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            write_u64(self.buf, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            write_bool(self.buf, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            write_json_str(self.buf, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            write_json_display(self.buf, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            write_json_debug(self.buf, value);
        }
    }
}

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
/// in use (an event emitted while writing an event).
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

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut SpanVisitor(&mut fields));
        // With nothing to keep yet, `on_record` adds the fields when recorded.
        if !fields.keys.is_empty()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut SpanVisitor(fields));
        } else {
            let mut fields = SpanFields::default();
            values.record(&mut SpanVisitor(&mut fields));
            extensions.insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        with_scratch(|scratch| {
            let Scratch { line, keys } = scratch;
            let meta = event.metadata();
            write_head(line, *meta.level());
            let mut visitor = EventVisitor {
                buf: line,
                keys,
                has_message: false,
            };
            event.record(&mut visitor);
            if !visitor.has_message {
                line.extend_from_slice(b",\"message\":\"\"");
            }

            let leaf = ctx.event_span(event);
            let request = leaf
                .as_ref()
                .and_then(|leaf| write_scope_fields(line, keys, leaf));
            line.extend_from_slice(b",\"target\":");
            write_json_str(line, meta.target());
            match request {
                Some(((trace_id, span_id), true)) => write_ids(line, trace_id, span_id),
                _ => {
                    // The leaf's own ids (from the bridge), else (no bridge:
                    // the SDK is disabled) those of the request it is in.
                    let bridged = leaf
                        .map(|leaf| leaf.id())
                        .is_some_and(|leaf| self.write_trace_ids(line, &leaf));
                    if !bridged && let Some(((trace_id, span_id), _)) = request {
                        write_ids(line, trace_id, span_id);
                    }
                }
            }
            line.extend_from_slice(b"}\n");

            // A failed write must never reach the application; the
            // non-blocking writer counts what it drops.
            let _ = self.make_writer.make_writer_for(meta).write_all(line);
        });
    }
}

/// Starts a line: `{"timestamp":"…","level":"…"`.
fn write_head(line: &mut Vec<u8>, level: Level) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    write_rfc3339(line, SystemTime::now());
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level_str(level).as_bytes());
    line.push(b'"');
}

/// Appends the fields of `leaf` and its ancestors (innermost first, names
/// not yet in `keys`); returns the ids of the innermost request span the
/// HTTP layer started itself among them, and whether that is `leaf`.
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
        if request_ids.is_none() {
            request_ids = request_context(&extensions).map(|cx| {
                let otel_span = opentelemetry::trace::TraceContextExt::span(cx);
                let ids = otel_span.span_context();
                ((ids.trace_id(), ids.span_id()), span.id() == leaf_id)
            });
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

/// What the HTTP layer's access log event records: its fields in their
/// order (the message made from `method`, `path` and `message_tail`).
pub(crate) struct AccessFields<'a> {
    pub(crate) level: Level,
    /// The end of the message, after `method path`
    /// (` status=200 duration=0.003`): printable ASCII with nothing to
    /// escape. See [`message`](Self::message).
    pub(crate) message_tail: &'a [u8],
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: i64,
    pub(crate) duration: f64,
    pub(crate) error: Option<&'a str>,
}

impl AccessFields<'_> {
    /// The event's `message`: `method path` and the tail.
    pub(crate) fn message(&self) -> String {
        let mut message = String::with_capacity(
            self.method.len() + 1 + self.path.len() + self.message_tail.len(),
        );
        message.push_str(self.method);
        message.push(' ');
        message.push_str(self.path);
        message.push_str(&String::from_utf8_lossy(self.message_tail));
        message
    }

    /// Writes [`message`](Self::message) as a JSON string, without building
    /// it when it is not truncated (escaping is per character, so escaping
    /// the parts one after the other escapes the whole).
    fn write_message(&self, line: &mut Vec<u8>) {
        if self.method.len() + 1 + self.path.len() + self.message_tail.len() > MAX_VALUE_BYTES {
            write_json_str(line, &self.message());
            return;
        }
        line.push(b'"');
        escape_into(line, self.method);
        line.push(b' ');
        escape_into(line, self.path);
        debug_assert!(
            self.message_tail
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' '),
            "the message tail needs no escaping"
        );
        line.extend_from_slice(self.message_tail);
        line.push(b'"');
    }
}

/// Where [`write_access_line`] sends a line: the writer [`JsonLayer`] writes
/// to under [`init`](crate::init)'s subscriber.
pub(crate) type LineSink = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Writes the access log line of the request whose `tracing` span is
/// `span` to `sink`: byte for byte the line [`JsonLayer`] writes for the
/// access event, but without dispatching the event through every layer (a
/// third of the cost of the line). Only for a subscriber whose one
/// event-writing layer is a `JsonLayer` writing to `sink`, and after the
/// event's callsite was found enabled.
pub(crate) fn write_access_line<'a, R>(
    sink: &LineSink,
    fields: &AccessFields<'_>,
    target: &str,
    span: &SpanRef<'a, R>,
) where
    R: LookupSpan<'a>,
{
    with_scratch(|scratch| {
        let Scratch { line, keys } = scratch;
        write_head(line, fields.level);
        // The event's own fields come first: none of their names is taken.
        line.extend_from_slice(b",\"message\":");
        fields.write_message(line);
        line.extend_from_slice(b",\"method\":");
        write_json_str(line, fields.method);
        line.extend_from_slice(b",\"path\":");
        write_json_str(line, fields.path);
        line.extend_from_slice(b",\"status\":");
        write_i64(line, fields.status);
        line.extend_from_slice(b",\"duration\":");
        write_f64(line, fields.duration);
        keys.extend_from_slice(&["method", "path", "status", "duration"]);
        if let Some(error) = fields.error {
            line.extend_from_slice(b",\"error\":");
            write_json_str(line, error);
            keys.push("error");
        }
        let request_ids = write_scope_fields(line, keys, span);
        line.extend_from_slice(b",\"target\":");
        write_json_str(line, target);
        if let Some(((trace_id, span_id), _)) = request_ids {
            write_ids(line, trace_id, span_id);
        }
        line.extend_from_slice(b"}\n");
        sink(line);
    });
}

impl<W> JsonLayer<W> {
    /// Appends `trace_id` and `span_id` when `span` is bridged to
    /// OpenTelemetry, and says whether it is. No span extensions may be
    /// borrowed while this runs.
    fn write_trace_ids(&self, line: &mut Vec<u8>, span: &Id) -> bool {
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return false;
        };
        let Some(cx) = tracing_opentelemetry::get_otel_context(span, &dispatch) else {
            return false;
        };
        let otel_span = opentelemetry::trace::TraceContextExt::span(&cx);
        let span_context = otel_span.span_context();
        write_ids(line, span_context.trace_id(), span_context.span_id());
        true
    }
}

/// Appends `trace_id` and `span_id`, unless they are invalid (zero).
fn write_ids(line: &mut Vec<u8>, trace_id: TraceId, span_id: SpanId) {
    const TRACE: &[u8; 13] = b",\"trace_id\":\"";
    const SPAN: &[u8; 13] = b"\",\"span_id\":\"";
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return;
    }
    // The members in one buffer of fixed size, then one copy.
    let trace = u128::from_be_bytes(trace_id.to_bytes());
    let span = u64::from_be_bytes(span_id.to_bytes());
    let mut out = [b'"'; 75];
    out[..13].copy_from_slice(TRACE);
    for (i, shift) in [96, 64, 32, 0].into_iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, reason = "one 32-bit word of the id")]
        let word = (trace >> shift) as u32;
        out[13 + 8 * i..21 + 8 * i].copy_from_slice(&hex8(word));
    }
    out[45..58].copy_from_slice(SPAN);
    #[allow(clippy::cast_possible_truncation, reason = "the id's two 32-bit words")]
    {
        out[58..66].copy_from_slice(&hex8((span >> 32) as u32));
        out[66..74].copy_from_slice(&hex8(span as u32));
    }
    line.extend_from_slice(&out);
}

fn level_str(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The eight lowercase hex digits of `value`, most significant first,
/// computed on all digits at once rather than looked up one by one.
fn hex8(value: u32) -> [u8; 8] {
    // Each nibble into a byte of its own, the first nibble in the top byte.
    let x = u64::from(value);
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // Digits above 9 need `'a' - '0' - 10` more.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

fn write_u64(buf: &mut Vec<u8>, value: u64) {
    let mut digits = [0_u8; 20];
    buf.extend_from_slice(decimal(value, &mut digits));
}

/// The decimal digits of `value`, written at the end of `digits`.
pub(crate) fn decimal(value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        #[allow(clippy::cast_possible_truncation, reason = "`rest % 10` is below 10")]
        let digit = (rest % 10) as u8;
        digits[at] = b'0' + digit;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
}

fn write_i64(buf: &mut Vec<u8>, value: i64) {
    if value < 0 {
        buf.push(b'-');
    }
    write_u64(buf, value.unsigned_abs());
}

fn write_bool(buf: &mut Vec<u8>, value: bool) {
    buf.extend_from_slice(if value { b"true" } else { b"false" });
}

/// The shortest representation that reads back as the same `f64` (what
/// `ryu` and `serde_json` write: `0.003`, `1.0`, `1e-7`).
fn write_f64(buf: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        // JSON has no NaN or infinity.
        write_json_str(buf, &value.to_string());
    }
}

fn write_json_str(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    if value.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        escape_into(buf, &value[..end]);
        buf.extend_from_slice("…".as_bytes());
    } else {
        escape_into(buf, value);
    }
    buf.push(b'"');
}

fn write_json_debug(buf: &mut Vec<u8>, value: &dyn fmt::Debug) {
    buf.push(b'"');
    let mut writer = EscapingWriter::new(buf);
    let _ = write!(writer, "{value:?}");
    writer.finish();
}

fn write_json_display(buf: &mut Vec<u8>, value: &dyn fmt::Display) {
    buf.push(b'"');
    let mut writer = EscapingWriter::new(buf);
    let _ = write!(writer, "{value}");
    writer.finish();
}

/// A [`fmt::Write`] that JSON-escapes into a byte buffer and stops after
/// [`MAX_VALUE_BYTES`].
struct EscapingWriter<'a> {
    buf: &'a mut Vec<u8>,
    written: usize,
    truncated: bool,
}

impl<'a> EscapingWriter<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        Self {
            buf,
            written: 0,
            truncated: false,
        }
    }

    fn finish(self) {
        if self.truncated {
            self.buf.extend_from_slice("…".as_bytes());
        }
        self.buf.push(b'"');
    }
}

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = MAX_VALUE_BYTES - self.written;
        if s.len() <= room {
            escape_into(self.buf, s);
            self.written += s.len();
        } else {
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            escape_into(self.buf, &s[..end]);
            self.written = MAX_VALUE_BYTES;
            self.truncated = true;
        }
        Ok(())
    }
}

/// The bytes JSON strings cannot hold as they are: control characters,
/// `"`, `\` and DEL.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = byte < 0x20 || byte == 0x22 || byte == 0x5c || byte == 0x7f;
        byte += 1;
    }
    table
};

/// Appends `s` JSON-escaped (without quotes).
fn escape_into(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let clean = clean_prefix(bytes);
    if clean == bytes.len() {
        // Almost every key and value: one copy.
        buf.extend_from_slice(bytes);
    } else {
        escape_from(buf, bytes, clean);
    }
}

/// The length of the longest prefix of `bytes` that needs no escaping.
#[inline]
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    for word in bytes.chunks_exact(8) {
        if let Ok(word) = <[u8; 8]>::try_from(word)
            && word_needs_escape(u64::from_le_bytes(word))
        {
            break;
        }
        i += 8;
    }
    if i == bytes.len() {
        return i;
    }
    // The last eight bytes as one word, overlapping what was checked.
    if i + 8 > bytes.len()
        && let Some(tail) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..))
        && let Ok(word) = <[u8; 8]>::try_from(tail)
        && !word_needs_escape(u64::from_le_bytes(word))
    {
        return bytes.len();
    }
    while let Some(&b) = bytes.get(i) {
        if NEEDS_ESCAPE[usize::from(b)] {
            return i;
        }
        i += 1;
    }
    i
}

/// Appends `bytes` escaped, knowing `bytes[..clean]` needs no escaping.
#[cold]
fn escape_from(buf: &mut Vec<u8>, bytes: &[u8], clean: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // `bytes[start..i]` is clean and not yet copied.
    let mut start = 0;
    let mut i = clean;
    while i < bytes.len() {
        // Skip clean text eight bytes at a time.
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            && !word_needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let Some(&b) = bytes.get(i) else { break };
        i += 1;
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
        };
        buf.extend_from_slice(bytes.get(start..i - 1).unwrap_or_default());
        buf.extend_from_slice(escape);
        start = i;
    }
    buf.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Whether any of the eight bytes in `word` is in [`NEEDS_ESCAPE`]: below
/// 0x20, `"`, `\` or DEL. Bytes of multi-byte UTF-8 characters (0x80 and up)
/// never match.
const fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte's high bit is set where it is zero (or, for `below`, under 0x20);
    // borrows can only mark bytes above a real match, so "any" is exact.
    const fn zero_byte(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let below = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (below
        | zero_byte(word ^ (ONES * 0x22))
        | zero_byte(word ^ (ONES * 0x5c))
        | zero_byte(word ^ (ONES * 0x7f)))
        != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The access line written directly is the line the event gives:
    /// fields in the same order, span fields after them, a span field
    /// named like an event field left out, the error only when there is one.
    #[test]
    fn access_line_written_directly_equals_the_event_line() {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new().with_writer(move || writer.clone()));
        let sink_out = out.clone();
        let sink: LineSink =
            Arc::new(move |line: &[u8]| sink_out.0.lock().unwrap().extend_from_slice(line));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", tenant = "a\"b", method = "shadowed");
            let span = tracing::info_span!(parent: &outer, "HTTP request", user_id = tracing::field::Empty);
            span.record("user_id", "42");
            // A path long enough to truncate the message (in a multibyte
            // character) takes the other way to the same bytes.
            let long_path = format!("/{}", "é".repeat(MAX_VALUE_BYTES / 2));
            // Messages of exactly the limit, and one byte over.
            let tail = b" status=500 duration=0.250";
            let at_limit = "a".repeat(MAX_VALUE_BYTES - "GET ".len() - tail.len());
            let over_limit = format!("{at_limit}b");
            for (level, error, path) in [
                (Level::INFO, None, "/x\u{1}"),
                (Level::ERROR, Some("it \n broke"), "/x\u{1}"),
                (Level::INFO, None, long_path.as_str()),
                (Level::INFO, None, at_limit.as_str()),
                (Level::INFO, None, over_limit.as_str()),
            ] {
                let fields = AccessFields {
                    level,
                    message_tail: tail,
                    method: "GET",
                    path,
                    status: 500,
                    duration: 0.25,
                    error,
                };
                let message = fields.message();
                macro_rules! event {
                    ($level:expr) => {
                        tracing::event!(
                            target: "multiweb_telemetry::http",
                            parent: &span,
                            $level,
                            message = message.as_str(),
                            method = fields.method,
                            path = fields.path,
                            status = fields.status,
                            duration = fields.duration,
                            error = fields.error,
                        )
                    };
                }
                if level == Level::INFO {
                    event!(Level::INFO);
                } else {
                    event!(Level::ERROR);
                }
                let id = span.id().unwrap();
                tracing::dispatcher::get_default(|dispatch| {
                    let registry = dispatch
                        .downcast_ref::<tracing_subscriber::Registry>()
                        .unwrap();
                    let data = registry.span(&id).unwrap();
                    write_access_line(&sink, &fields, "multiweb_telemetry::http", &data);
                });
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        // After the timestamp, byte for byte.
        let rest = |line: &str| line.split_once("\",\"level\"").unwrap().1.to_owned();
        for pair in lines.chunks(2) {
            assert_eq!(rest(pair[0]), rest(pair[1]));
        }
        assert!(lines[4].contains("éé…\",\"method\""), "truncated message");
        assert!(
            lines[6].contains("duration=0.250\",\"method\""),
            "not truncated at the limit"
        );
        assert!(
            lines[8].contains("duration=0.25…\",\"method\""),
            "truncated one over"
        );
        assert_eq!(
            rest(lines[2]),
            ":\"error\",\"message\":\"GET /x\\u0001 status=500 duration=0.250\",\"method\":\"GET\",\
             \"path\":\"/x\\u0001\",\"status\":500,\"duration\":0.25,\"error\":\"it \\n broke\",\
             \"user_id\":\"42\",\"tenant\":\"a\\\"b\",\"target\":\"multiweb_telemetry::http\"}"
        );
        assert!(!lines[0].contains("\"error\""), "{}", lines[0]);
    }

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
        assert_eq!(line["target"], "multiweb_telemetry::log::json::tests");
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

        // The members themselves: each key once, in the order first recorded.
        let mut fields = SpanFields::default();
        for (key, value) in [
            ("f1", 1),
            ("f2", 2),
            ("f3", 3),
            ("f4", 4),
            ("f5", 5),
            ("f6", 6),
        ] {
            fields.set(key, |b| write_i64(b, value));
        }
        fields.set("f8", |b| write_i64(b, 8));
        fields.set("f7", |b| write_i64(b, 7));
        fields.set("f2", |b| write_json_str(b, "two"));
        let members: Vec<&[u8]> = fields.members().map(|(_, member)| member).collect();
        assert_eq!(
            members.concat(),
            b"\"f1\":1\"f2\":\"two\"\"f3\":3\"f4\":4\"f5\":5\"f6\":6\"f8\":8\"f7\":7"
        );
    }

    #[test]
    fn hex_digits_match_format() {
        let mut value: u32 = 0x0123_4567;
        for _ in 0..1000 {
            assert_eq!(
                hex8(value),
                *format!("{value:08x}").as_bytes(),
                "{value:#x}"
            );
            value = value.wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9);
        }
        for value in [0, u32::MAX, 0x89ab_cdef, 0xa0a0_0a0a] {
            assert_eq!(hex8(value), *format!("{value:08x}").as_bytes());
        }
        // The ids as members, as OpenTelemetry writes them (lowercase hex).
        let bytes: [u8; 16] =
            std::array::from_fn(|i| u8::try_from(i).unwrap().wrapping_mul(37) ^ 0xa5);
        for (trace_id, span_id) in [
            (
                TraceId::from_bytes(bytes),
                SpanId::from_bytes([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff]),
            ),
            (TraceId::from(1), SpanId::from(u64::MAX)),
            (TraceId::from(u128::MAX), SpanId::from(1)),
        ] {
            let mut buf = b"{".to_vec();
            write_ids(&mut buf, trace_id, span_id);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("{{,\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"")
            );
        }
        for (trace_id, span_id) in [
            (TraceId::INVALID, SpanId::from(1)),
            (TraceId::from(1), SpanId::INVALID),
        ] {
            let mut buf = Vec::new();
            write_ids(&mut buf, trace_id, span_id);
            assert!(buf.is_empty(), "no ids for an invalid context");
        }
    }

    #[test]
    fn escaping_round_trips_every_ascii_byte_and_utf8() {
        let mut input: String = (0_u8..0x80).map(char::from).collect();
        input.push_str("é → 日本 \u{1F600} \u{2028}");
        let mut escaped = vec![b'"'];
        escape_into(&mut escaped, &input);
        escaped.push(b'"');
        let escaped = String::from_utf8(escaped).unwrap();
        assert!(
            !escaped.bytes().any(|b| b < 0x20 || b == 0x7f),
            "raw control byte in {escaped}"
        );
        assert!(escaped.contains("\\u007f"), "{escaped}");
        for escape in ["\\n", "\\r", "\\t", "\\\"", "\\\\", "\\u0000", "\\u001f"] {
            assert!(escaped.contains(escape), "no {escape} in {escaped}");
        }
        let decoded: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(decoded, input);
    }

    #[test]
    fn rendered_request_fields_are_the_fields_written_one_by_one() {
        use tracing_subscriber::registry::LookupSpan;

        let dispatch = tracing::Dispatch::new(tracing_subscriber::Registry::default());
        let registry = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .unwrap();
        let route = "/api/\"{id}\"/é";
        let rendered =
            RenderedFields::new(&[("http.request.method", "GET"), ("http.route", route)]);
        let values = [
            ("http.request.method", "GET"),
            ("http.route", route),
            ("url.path", "/api/\n1"),
        ];
        tracing::dispatcher::with_default(&dispatch, || {
            let members = |span: &tracing::Span| {
                let data = registry.span(&span.id().unwrap()).unwrap();
                let extensions = data.extensions();
                let fields = extensions.get::<SpanFields>().unwrap();
                assert!(fields.request.is_some());
                fields
                    .members()
                    .map(|(key, member)| (key, String::from_utf8(member.to_vec()).unwrap()))
                    .collect::<Vec<_>>()
            };
            // A span with no fields yet (the usual case), and one with a
            // field recorded before.
            for recorded_before in [false, true] {
                let one_by_one = tracing::info_span!("one_by_one");
                let from_rendered = tracing::info_span!("from_rendered");
                for span in [&one_by_one, &from_rendered] {
                    let data = registry.span(&span.id().unwrap()).unwrap();
                    let mut extensions = data.extensions_mut();
                    if recorded_before {
                        let mut fields = SpanFields::default();
                        fields.set("user_id", |b| write_json_str(b, "7"));
                        fields.set("http.route", |b| write_json_str(b, "stale"));
                        extensions.insert(fields);
                    }
                    if span.metadata().unwrap().name() == "one_by_one" {
                        add_request_fields(
                            &mut extensions,
                            opentelemetry::Context::new(),
                            None,
                            &values,
                        );
                    } else {
                        let rest = values.get(2..).unwrap();
                        add_request_fields(
                            &mut extensions,
                            opentelemetry::Context::new(),
                            Some(&rendered),
                            rest,
                        );
                    }
                }
                let expected = members(&one_by_one);
                assert_eq!(members(&from_rendered), expected);
                let route_member = format!("\"http.route\":\"{}\"", route.replace('"', "\\\""));
                assert!(
                    expected.iter().any(|(_, m)| *m == route_member),
                    "{expected:?}"
                );
                assert_eq!(expected.len(), if recorded_before { 4 } else { 3 });
            }
        });
    }

    #[test]
    fn span_fields_recorded_again_keep_the_last_value_in_bounded_memory() {
        let mut fields = SpanFields::default();
        fields.set("method", |b| write_json_str(b, "GET"));
        // Enough keys to spill out of the inline ones before compacting.
        for key in ["a", "b", "c", "d", "e"] {
            fields.set(key, |b| write_json_str(b, key));
        }
        for i in 0..10_000_u64 {
            fields.set("progress", |b| write_u64(b, i));
            fields.set("note", |b| write_json_str(b, &"n".repeat(100)));
        }
        fields.set("status", |b| write_i64(b, -1));
        let all: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k, std::str::from_utf8(v).unwrap()))
            .collect();
        let note = format!("\"{}\"", "n".repeat(100));
        assert_eq!(
            all,
            [
                ("method", "\"GET\""),
                ("a", "\"a\""),
                ("b", "\"b\""),
                ("c", "\"c\""),
                ("d", "\"d\""),
                ("e", "\"e\""),
                ("progress", "9999"),
                ("note", note.as_str()),
                ("status", "-1")
            ]
        );
        assert!(matches!(fields.keys, FieldKeys::Heap(_)), "spilled");
        assert!(fields.json.len() < 4096, "{} bytes held", fields.json.len());
    }

    #[test]
    fn every_byte_at_every_place_of_a_word_escapes_like_the_table() {
        // Each ASCII byte at each offset of a run long enough to take the
        // eight-byte path, the run made of `x` or of `é` (two bytes, both
        // 0x80 and up, which must never read as needing an escape).
        for filler in ["x", "é"] {
            for byte in 0_u8..0x80 {
                let special = char::from(byte).to_string();
                for at in 0..20 {
                    let input = format!("{}{special}{}", filler.repeat(at), filler.repeat(20 - at));
                    let mut escaped = Vec::new();
                    escape_into(&mut escaped, &input);
                    let escaped = String::from_utf8(escaped).unwrap();
                    let mut expected = String::new();
                    for ch in input.chars() {
                        let mut one = Vec::new();
                        if ch.is_ascii() && NEEDS_ESCAPE[ch as usize] {
                            escape_into(&mut one, &ch.to_string());
                            assert!(one.len() > 1, "{ch:?} not escaped");
                        } else {
                            one.extend_from_slice(ch.to_string().as_bytes());
                        }
                        expected.push_str(std::str::from_utf8(&one).unwrap());
                    }
                    assert_eq!(escaped, expected, "byte {byte:#x} at {at}");
                    let decoded: String = serde_json::from_str(&format!("\"{escaped}\"")).unwrap();
                    assert_eq!(decoded, input);
                }
            }
        }
    }

    #[test]
    fn one_escape_anywhere_in_a_clean_run() {
        // Long clean runs with one escape anywhere in them.
        for at in 0..40 {
            let mut input = "x".repeat(40);
            input.replace_range(at..=at, "\n");
            let mut escaped = Vec::new();
            escape_into(&mut escaped, &input);
            let expected = format!("{}\\n{}", "x".repeat(at), "x".repeat(39 - at));
            assert_eq!(String::from_utf8(escaped).unwrap(), expected);
        }
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
