//! Protobuf encoding of an OTLP `ExportTraceServiceRequest`, written
//! straight from borrowed [`SpanData`] into one buffer.
//!
//! `opentelemetry-otlp` clones every batch, converts each span into owned
//! protobuf structs (a dozen allocations per span) and then encodes those;
//! this writes the same bytes without the intermediate structs. Field
//! numbers are those of `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`; fields holding their default value are left
//! out, as protobuf encoders do. The tests decode the output with the
//! generated types of `opentelemetry-proto` and compare it with that crate's
//! own conversion.
//!
//! String attribute values of spans, events and links (also inside arrays)
//! are cut to the attribute value length limit, counted in characters, as
//! the OpenTelemetry specification's attribute limits say: here they cover
//! every span, whichever code made it.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: the flags say whether the parent
/// is remote.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const IS_REMOTE: u32 = 0x200;

/// The resource, encoded once (`Resource` message body and schema URL).
#[derive(Debug, Default)]
pub(crate) struct EncodedResource {
    body: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut body = Vec::new();
        for (key, value) in resource {
            key_value(&mut body, 1, key.as_str(), value, usize::MAX);
        }
        Self {
            body,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Appends the `ExportTraceServiceRequest` for `spans` to `buf`: one
/// `ResourceSpans`, with one `ScopeSpans` per instrumentation scope in the
/// order the scopes first appear. String attribute values longer than
/// `limit` characters are cut to `limit`.
pub(crate) fn export_request(
    buf: &mut Vec<u8>,
    resource: &EncodedResource,
    spans: &[SpanData],
    limit: usize,
) {
    let Some(first) = spans.first() else {
        return;
    };
    let resource_spans = begin(buf, 1);
    bytes(buf, 1, &resource.body);
    let first_scope = &first.instrumentation_scope;
    if spans
        .iter()
        .all(|span| span.instrumentation_scope == *first_scope)
    {
        scope_spans(buf, first_scope, spans.iter(), limit);
    } else {
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        for span in spans {
            if !scopes.contains(&&span.instrumentation_scope) {
                scopes.push(&span.instrumentation_scope);
            }
        }
        for scope in scopes {
            scope_spans(
                buf,
                scope,
                spans.iter().filter(|s| s.instrumentation_scope == *scope),
                limit,
            );
        }
    }
    string(buf, 3, &resource.schema_url);
    end(buf, resource_spans);
}

fn scope_spans<'a>(
    buf: &mut Vec<u8>,
    scope: &InstrumentationScope,
    spans: impl Iterator<Item = &'a SpanData>,
    limit: usize,
) {
    let outer = begin(buf, 2);
    let inner = begin(buf, 1);
    string(buf, 1, scope.name());
    string(buf, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        key_value(buf, 3, attribute.key.as_str(), &attribute.value, usize::MAX);
    }
    end(buf, inner);
    for data in spans {
        span(buf, data, limit);
    }
    string(buf, 3, scope.schema_url().unwrap_or_default());
    end(buf, outer);
}

fn span(buf: &mut Vec<u8>, span: &SpanData, limit: usize) {
    let at = begin(buf, 2);
    let cx = &span.span_context;
    bytes(buf, 1, &cx.trace_id().to_bytes());
    bytes(buf, 2, &cx.span_id().to_bytes());
    trace_state(buf, 3, cx);
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, span_kind(&span.span_kind));
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    attributes(buf, 9, &span.attributes, limit);
    uint(buf, 10, u64::from(span.dropped_attributes_count));
    for event in &span.events.events {
        let at = begin(buf, 11);
        fixed64(buf, 1, nanos(event.timestamp));
        string(buf, 2, &event.name);
        attributes(buf, 3, &event.attributes, limit);
        uint(buf, 4, u64::from(event.dropped_attributes_count));
        end(buf, at);
    }
    uint(buf, 12, u64::from(span.events.dropped_count));
    for link in &span.links.links {
        let at = begin(buf, 13);
        let cx = &link.span_context;
        bytes(buf, 1, &cx.trace_id().to_bytes());
        bytes(buf, 2, &cx.span_id().to_bytes());
        trace_state(buf, 3, cx);
        attributes(buf, 4, &link.attributes, limit);
        uint(buf, 5, u64::from(link.dropped_attributes_count));
        fixed32(buf, 6, flags(cx, cx.is_remote()));
        end(buf, at);
    }
    uint(buf, 14, u64::from(span.links.dropped_count));
    // The status is always present, as in the reference conversion.
    let status = begin(buf, 15);
    let code = match &span.status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { description } => {
            string(buf, 2, description);
            2
        }
    };
    uint(buf, 3, code);
    end(buf, status);
    fixed32(buf, 16, flags(cx, span.parent_span_is_remote));
    end(buf, at);
}

fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn flags(cx: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(cx.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if remote {
        flags |= IS_REMOTE;
    }
    flags
}

fn trace_state(buf: &mut Vec<u8>, field: u32, cx: &SpanContext) {
    let state = cx.trace_state();
    if *state != opentelemetry::trace::TraceState::NONE {
        string(buf, field, &state.header());
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(buf: &mut Vec<u8>, field: u32, attributes: &[KeyValue], limit: usize) {
    for attribute in attributes {
        key_value(buf, field, attribute.key.as_str(), &attribute.value, limit);
    }
}

/// A `KeyValue` message as field `field`.
fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value, limit: usize) {
    let at = begin(buf, field);
    string(buf, 1, key);
    let value_at = begin(buf, 2);
    any_value(buf, value, limit);
    end(buf, value_at);
    end(buf, at);
}

/// The body of an `AnyValue`: its one field is always written, default or not.
fn any_value(buf: &mut Vec<u8>, value: &Value, limit: usize) {
    match value {
        Value::Bool(b) => bool_value(buf, *b),
        Value::I64(i) => int_value(buf, *i),
        Value::F64(f) => double_value(buf, *f),
        Value::String(s) => string_value(buf, truncated(s.as_str(), limit)),
        Value::Array(array) => {
            let at = begin(buf, 5);
            match array {
                Array::Bool(values) => array_values(buf, values, |buf, b| bool_value(buf, *b)),
                Array::I64(values) => array_values(buf, values, |buf, i| int_value(buf, *i)),
                Array::F64(values) => array_values(buf, values, |buf, f| double_value(buf, *f)),
                Array::String(values) => {
                    array_values(buf, values, |buf, s| {
                        string_value(buf, truncated(s.as_str(), limit));
                    });
                }
                // A kind of array added to `opentelemetry` later: sent empty.
                _ => {}
            }
            end(buf, at);
        }
        // A kind of value added to `opentelemetry` later: sent as an empty value.
        _ => {}
    }
}

/// `value` cut to its first `limit` characters.
fn truncated(value: &str, limit: usize) -> &str {
    // A string of at most `limit` bytes has at most `limit` characters.
    if value.len() <= limit {
        return value;
    }
    match value.char_indices().nth(limit) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

fn array_values<T>(buf: &mut Vec<u8>, values: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    for value in values {
        let at = begin(buf, 1);
        write(buf, value);
        end(buf, at);
    }
}

fn bool_value(buf: &mut Vec<u8>, value: bool) {
    encode_key(2, WireType::Varint, buf);
    buf.push(u8::from(value));
}

fn int_value(buf: &mut Vec<u8>, value: i64) {
    encode_key(3, WireType::Varint, buf);
    #[allow(
        clippy::cast_sign_loss,
        reason = "int64 is sent as its two's complement"
    )]
    encode_varint(value as u64, buf);
}

fn double_value(buf: &mut Vec<u8>, value: f64) {
    encode_key(4, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn string_value(buf: &mut Vec<u8>, value: &str) {
    encode_key(1, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value.as_bytes());
}

fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        encode_key(field, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        bytes(buf, field, value.as_bytes());
    }
}

/// Starts a nested message as field `field`: its length is not known yet, so
/// one byte is reserved for it, and [`end`] makes room if it needs more.
fn begin(buf: &mut Vec<u8>, field: u32) -> usize {
    encode_key(field, WireType::LengthDelimited, buf);
    buf.push(0);
    buf.len()
}

/// Ends the nested message whose body starts at `body`, writing its length
/// in front of it (moving the body when the length takes several bytes).
fn end(buf: &mut Vec<u8>, body: usize) {
    let len = buf.len() - body;
    let width = encoded_len_varint(len as u64);
    if width > 1 {
        let old = buf.len();
        buf.resize(old + width - 1, 0);
        buf.copy_within(body..old, body + width - 1);
    }
    let mut slot = &mut buf[body - 1..body - 1 + width];
    encode_varint(len as u64, &mut slot);
}

/// The `partial_success` of an `ExportTraceServiceResponse`: how many spans
/// the collector rejected, and its message (a reason, or a warning when
/// none was rejected). Zero and empty when there is none or the response
/// cannot be read.
pub(crate) fn partial_success(response: &[u8]) -> (u64, String) {
    ExportTraceServiceResponse::decode(response)
        .ok()
        .and_then(|response| response.partial_success)
        .map(|partial| {
            (
                u64::try_from(partial.rejected_spans).unwrap_or(0),
                partial.error_message,
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn context(trace: u128, span: u64, sampled: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            false,
            state.parse::<TraceState>().unwrap(),
        )
    }

    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", String::from("/api/v1/products/ü\"\n")),
            KeyValue::new("empty", ""),
            KeyValue::new("http.response.status_code", 503_i64),
            KeyValue::new("negative", -1_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("ratio", 0.25_f64),
            KeyValue::new("zero.float", 0.0_f64),
            KeyValue::new("yes", true),
            KeyValue::new("no", false),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2, 1 << 40]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, -0.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from(""),
                ])),
            ),
            KeyValue::new("no.strings", Value::Array(Array::String(vec![]))),
            // Long enough for a length of two bytes.
            KeyValue::new("long", "x".repeat(300)),
        ]
    }

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        SpanData {
            span_context: context(
                0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
                0xb7ad_6b71_6920_3331,
                true,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: start + Duration::from_micros(1500),
            attributes: every_value(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Checks the request written for `spans`: decoded, it is
    /// `opentelemetry-proto`'s conversion (the readable difference when it
    /// is not), and its bytes are exactly those prost writes for that
    /// conversion (decoding alone is lenient).
    fn assert_encodes_as_reference(resource: &Resource, spans: &[SpanData]) {
        let mut buf = Vec::new();
        export_request(&mut buf, &EncodedResource::new(resource), spans, usize::MAX);
        let decoded = ExportTraceServiceRequest::decode(buf.as_slice()).expect("valid protobuf");
        let reference = reference(resource, spans);
        assert_eq!(decoded, reference, "{spans:?}");
        assert_eq!(buf, reference.encode_to_vec(), "same bytes");
    }

    fn reference(resource: &Resource, spans: &[SpanData]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans.to_vec(),
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    #[test]
    fn a_batch_decodes_to_what_opentelemetry_proto_builds() {
        let resource = Resource::builder_empty()
            .with_service_name("marketplace")
            .with_attribute(KeyValue::new("service.version", "1.2.3"))
            .with_schema_url([], "https://opentelemetry.io/schemas/1.30.0")
            .build();
        let scope = InstrumentationScope::builder("multiweb-telemetry").build();
        let other_scope = InstrumentationScope::builder("payments")
            .with_version("0.3.0")
            .with_schema_url("https://example.invalid/schema")
            .with_attributes([KeyValue::new("team", "billing")])
            .build();

        let plain = span("GET /api/v1/products/", &scope);
        let mut child = span("list_products", &scope);
        child.span_context = context(1, 2, false, "vendor=value,other=x");
        child.parent_span_id = SpanId::from(0xb7ad_6b71_6920_3331);
        child.parent_span_is_remote = true;
        child.span_kind = SpanKind::Internal;
        child.dropped_attributes_count = 3;
        child.status = Status::error("upstream returned 503");
        child.events = SpanEvents::default();
        child.events.events.push(Event::new(
            "retry",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            vec![KeyValue::new("attempt", 2_i64)],
            1,
        ));
        child.events.events.push(Event::with_name("empty"));
        child.events.dropped_count = 4;
        child.links.links.push(Link::new(
            context(7, 8, true, "k=v"),
            vec![KeyValue::new("link.kind", "follows")],
            5,
        ));
        child.links.dropped_count = 6;
        let mut other = span("charge", &other_scope);
        other.status = Status::Ok;
        other.span_kind = SpanKind::Client;
        other.attributes.clear();
        let mut before_epoch = span("clock skew", &scope);
        before_epoch.start_time = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        before_epoch.span_kind = SpanKind::Consumer;
        let mut producer = span("enqueue", &other_scope);
        producer.span_kind = SpanKind::Producer;
        producer.name = Cow::Owned(String::new());

        let batches: [&[SpanData]; 2] = [
            std::slice::from_ref(&plain),
            &[plain.clone(), child, other, before_epoch, producer],
        ];
        for batch in batches {
            assert_encodes_as_reference(&resource, batch);
        }
        // The exporter never sends an empty batch; nothing is written for one.
        let mut buf = Vec::new();
        export_request(&mut buf, &EncodedResource::new(&resource), &[], usize::MAX);
        assert!(buf.is_empty());
        assert_encodes_as_reference(&Resource::builder_empty().build(), &[span("x", &scope)]);
    }

    #[test]
    fn large_batches_get_lengths_of_several_bytes() {
        let resource = Resource::builder_empty().with_service_name("s").build();
        let scope = InstrumentationScope::builder("multiweb-telemetry").build();
        let spans: Vec<SpanData> = (0..600).map(|_| span("GET /", &scope)).collect();
        let mut buf = Vec::new();
        export_request(
            &mut buf,
            &EncodedResource::new(&resource),
            &spans,
            usize::MAX,
        );
        assert!(buf.len() > 1 << 14, "{}", buf.len());
        assert_encodes_as_reference(&resource, &spans);
    }

    #[test]
    fn string_values_of_spans_events_and_links_are_cut_to_the_limit_in_characters() {
        let resource = Resource::builder_empty()
            .with_service_name("a service name longer than the limit")
            .build();
        let scope = InstrumentationScope::builder("multiweb-telemetry").build();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let strings = |values: &[&str]| {
            Value::Array(Array::String(
                values
                    .iter()
                    .map(|v| StringValue::from((*v).to_owned()))
                    .collect(),
            ))
        };
        let with = |path: &str, accents: &str, array: &[&str], event: &str, link: &str| {
            let mut data = span("GET /", &scope);
            data.attributes = vec![
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("short", "abc"),
                KeyValue::new("accents", accents.to_owned()),
                KeyValue::new("strings", strings(array)),
                KeyValue::new("number", 1_234_567_890_123_i64),
            ];
            data.events.events.push(Event::new(
                "retry",
                at,
                vec![KeyValue::new("reason", event.to_owned())],
                0,
            ));
            data.links.links.push(Link::new(
                context(7, 8, true, ""),
                vec![KeyValue::new("link.kind", link.to_owned())],
                0,
            ));
            data
        };
        let long = with(
            &format!("/{}", "a".repeat(100)),
            "éééééééééé",
            &["0123456789ab", "x"],
            &"b".repeat(20),
            &"c".repeat(9),
        );
        let mut buf = Vec::new();
        export_request(&mut buf, &EncodedResource::new(&resource), &[long], 8);
        let decoded = ExportTraceServiceRequest::decode(buf.as_slice()).expect("valid protobuf");
        let cut = with(
            "/aaaaaaa",
            "éééééééé",
            &["01234567", "x"],
            "bbbbbbbb",
            "cccccccc",
        );
        assert_eq!(
            decoded,
            reference(&resource, &[cut]),
            "every string value cut to 8 characters (not bytes); other values and \
             the resource untouched"
        );
    }

    #[test]
    fn rejected_spans_and_message_come_from_the_partial_success() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let response = |rejected, message: &str| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.to_owned(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(
            partial_success(&response(7, "too old")),
            (7, "too old".to_owned())
        );
        assert_eq!(
            partial_success(&response(0, "a warning")),
            (0, "a warning".to_owned())
        );
        assert_eq!(partial_success(&[]), (0, String::new()));
        // Truncated or garbage responses count nothing rather than fail.
        let mut truncated = response(300, "x");
        truncated.truncate(3);
        assert_eq!(partial_success(&truncated).0, 0);
        assert_eq!(partial_success(&[0xff; 12]), (0, String::new()));
    }
}
