//! The fields recorded on spans, kept JSON-encoded for the lines written
//! inside them.

use std::fmt;

use tracing_core::field::{Field, Visit};
use tracing_subscriber::registry::ExtensionsMut;

use super::encode::{
    escape_into, write_bool, write_f64, write_i64, write_json_debug, write_json_display,
    write_json_str, write_u64,
};

/// The fields recorded on a span, each already JSON-encoded as an object
/// member (`"key":value`), back to back in one buffer: a span with up to
/// [`INLINE_KEYS`] fields costs two allocations (this and the buffer), one
/// more beyond, and a log line copies each field with one copy.
#[derive(Debug, Default)]
pub(super) struct SpanFields {
    /// The encoded members.
    json: Vec<u8>,
    /// Each field's name and where its member and its value start and end
    /// in `json`.
    keys: FieldKeys,
    /// Bytes of `json` no longer referenced (values recorded again).
    stale: usize,
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
    pub(super) fn members(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        self.keys
            .as_slice()
            .iter()
            .map(|&(key, member, _, end)| (key, self.json.get(member..end).unwrap_or_default()))
    }
}

/// String fields rendered once, for many spans: a request's method and
/// route, the same for every request of a route (see `request_span`).
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

/// Adds string fields to a span's log fields as if recorded on it: first
/// those of `rendered`, then `values`. This is how the request span gets
/// the values the HTTP layer already has, some of them encoded once per
/// route, without a pass through every layer.
pub(crate) fn add_fields(
    extensions: &mut ExtensionsMut<'_>,
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

impl SpanFields {
    /// The fields of a new span, if it has any values yet.
    pub(super) fn of_new_span(attributes: &tracing_core::span::Attributes<'_>) -> Option<Self> {
        let mut fields = Self::default();
        attributes.record(&mut SpanVisitor(&mut fields));
        (!fields.keys.is_empty()).then_some(fields)
    }
}

/// Records `values` on the span whose extensions are `extensions`.
pub(super) fn record(extensions: &mut ExtensionsMut<'_>, values: &tracing_core::span::Record<'_>) {
    if let Some(fields) = extensions.get_mut::<SpanFields>() {
        values.record(&mut SpanVisitor(fields));
    } else {
        let mut fields = SpanFields::default();
        values.record(&mut SpanVisitor(&mut fields));
        extensions.insert(fields);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
                        add_fields(&mut extensions, None, &values);
                    } else {
                        let rest = values.get(2..).unwrap();
                        add_fields(&mut extensions, Some(&rendered), rest);
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

    /// More fields than a span keeps inline: each key once, in the order
    /// first recorded, with the latest value of one recorded again.
    #[test]
    fn members_keep_the_first_order_and_the_last_value() {
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
}
