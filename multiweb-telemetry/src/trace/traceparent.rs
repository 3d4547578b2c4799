//! The W3C Trace Context rules for an incoming `traceparent`, checked
//! before the propagator extracts it.
//!
//! `opentelemetry_sdk` 0.33's `TraceContextPropagator` reads each field as a
//! number without checking its length or its characters: `00-1-1-01`
//! continued trace `000…0001`, a 31-digit trace id was left-padded, and
//! flags `1` or ids with a `+` sign were accepted. The specification
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>) is exact:
//!
//! ```text
//! version "-" trace-id "-" parent-id "-" trace-flags
//! ```
//!
//! - every field is lowercase hex (`0-9`, `a-f`) of fixed length: 2, 32,
//!   16 and 2 characters, so version `00` is exactly 55 characters;
//! - version `ff` is invalid, and so are an all-zero trace id or parent id;
//! - a higher version (a future one) is read the same way, and may carry
//!   more after the flags, which must then be followed by a `-`;
//! - one `traceparent` only: a request with two is invalid (the W3C test
//!   suite's "duplicated" case).
//!
//! Spaces and tabs around the value are not part of an HTTP field value and
//! are ignored. Anything else starts a new trace.
//!
//! An outgoing `traceparent` is written by [`encode`].

use http::HeaderValue;
use http::header::GetAll;
use opentelemetry::trace::{SpanContext, TraceFlags};

/// Whether `values` (every `traceparent` of a request) is exactly one
/// valid `traceparent`.
pub(super) fn is_valid_in(values: GetAll<'_, HeaderValue>) -> bool {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        // `to_str`, as the propagator reads it: visible ASCII only.
        (Some(value), None) => value.to_str().is_ok_and(is_valid),
        _ => false,
    }
}

/// Whether `value` is a valid `traceparent` by the W3C rules above.
fn is_valid(value: &str) -> bool {
    let value = value.trim_matches([' ', '\t']).as_bytes();
    let Some((head, rest)) = value.split_at_checked(55) else {
        return false;
    };
    let (version, trace_id, parent_id, flags) =
        (&head[..2], &head[3..35], &head[36..52], &head[53..]);
    let dashes = head[2] == b'-' && head[35] == b'-' && head[52] == b'-';
    let more = match version {
        b"00" => rest.is_empty(),
        _ => rest.first().is_none_or(|&b| b == b'-'),
    };
    dashes
        && more
        && [version, trace_id, parent_id, flags]
            .iter()
            .all(|field| field.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        && version != b"ff"
        && trace_id.iter().any(|&b| b != b'0')
        && parent_id.iter().any(|&b| b != b'0')
}

/// The version `00` `traceparent` of `ids`, as `TraceContextPropagator`
/// writes it (the sampled flag only), without its `format!`: an outgoing
/// call writes one, and the propagator's costs about 2,800 instructions
/// where this costs a tenth of it (BENCHMARKS.md).
pub(super) fn encode(ids: &SpanContext) -> [u8; 55] {
    fn hex(bytes: &[u8], out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    let mut text = [b'-'; 55];
    text[..2].copy_from_slice(b"00");
    hex(&ids.trace_id().to_bytes(), &mut text[3..35]);
    hex(&ids.span_id().to_bytes(), &mut text[36..52]);
    hex(
        &[(ids.trace_flags() & TraceFlags::SAMPLED).to_u8()],
        &mut text[53..],
    );
    text
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use opentelemetry::trace::TraceContextExt;
    use proptest::prelude::*;

    use super::super::remote_parent;
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    /// The trace id, parent id and sampled flag `remote_parent` continues
    /// from these `traceparent` values, or `None` for a new trace.
    fn continued(values: &[&[u8]]) -> Option<(String, String, bool)> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("traceparent", HeaderValue::from_bytes(value).ok()?);
        }
        let cx = remote_parent(&headers)?;
        let span = cx.span();
        let parent = span.span_context();
        Some((
            parent.trace_id().to_string(),
            parent.span_id().to_string(),
            parent.is_sampled(),
        ))
    }

    #[test]
    fn the_w3c_rules_table() {
        let valid = |s: &str| (s.to_owned(), true);
        let invalid = |s: &str| (s.to_owned(), false);
        let table = [
            valid(&format!("00-{TRACE}-{PARENT}-01")),
            valid(&format!("00-{TRACE}-{PARENT}-00")),
            // Unknown flags are kept valid (only the sampled bit is read).
            valid(&format!("00-{TRACE}-{PARENT}-ff")),
            valid(&format!("  00-{TRACE}-{PARENT}-01\t")),
            // A future version, with and without more fields.
            valid(&format!("cc-{TRACE}-{PARENT}-01")),
            valid(&format!(
                "cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"
            )),
            valid(&format!("01-{TRACE}-{PARENT}-00-")),
            // The issue's probes.
            invalid("00-1-1-01"),
            invalid(&format!("00-{}-{PARENT}-01", &TRACE[1..])),
            invalid(&format!("00-{TRACE}-{}-01", &PARENT[1..])),
            invalid(&format!("00-{TRACE}-{PARENT}-1")),
            invalid(&format!("00-{TRACE}-{PARENT}-+1")),
            invalid(&format!("00-+{}-{PARENT}-01", &TRACE[1..])),
            invalid(&format!("00-{TRACE}-+{}-01", &PARENT[1..])),
            // Lengths and separators.
            invalid(&format!("00-{TRACE}0-{PARENT}-01")),
            invalid(&format!("00-{TRACE}-{PARENT}0-01")),
            invalid(&format!("00-{TRACE}-{PARENT}-010")),
            invalid(&format!("00-{TRACE}-{PARENT}-01-")),
            invalid(&format!("00-{TRACE}-{PARENT}-01-00")),
            invalid(&format!("00_{TRACE}-{PARENT}-01")),
            invalid(&format!("00-{TRACE}_{PARENT}-01")),
            invalid(&format!("00-{TRACE}-{PARENT}_01")),
            invalid(&format!(
                "cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"
            )),
            invalid(&format!("0-{TRACE}-{PARENT}-01")),
            invalid(&format!("000-{TRACE}-{PARENT}-01")),
            invalid(""),
            // Characters.
            invalid(&format!("00-{}-{PARENT}-01", TRACE.to_uppercase())),
            invalid(&format!("00-{TRACE}-{}-01", PARENT.to_uppercase())),
            invalid(&format!("0A-{TRACE}-{PARENT}-01")),
            invalid(&format!("00-{TRACE}-{PARENT}-0A")),
            invalid(&format!("00-{}g-{PARENT}-01", &TRACE[1..])),
            invalid(&format!("00-{} -{PARENT}-01", &TRACE[1..])),
            invalid(&format!("00-{TRACE}-{PARENT}-0\t")),
            // Values.
            invalid(&format!("ff-{TRACE}-{PARENT}-01")),
            invalid(&format!("00-{}-{PARENT}-01", "0".repeat(32))),
            invalid(&format!("00-{TRACE}-{}-01", "0".repeat(16))),
        ];
        for (value, expected) in &table {
            assert_eq!(is_valid(value), *expected, "{value:?}");
            let outcome = continued(&[value.as_bytes()]);
            assert_eq!(outcome.is_some(), *expected, "{value:?}: {outcome:?}");
            if let Some((trace_id, parent_id, _)) = outcome {
                assert_eq!((trace_id.as_str(), parent_id.as_str()), (TRACE, PARENT));
            }
        }
    }

    #[test]
    fn two_traceparent_headers_start_a_new_trace() {
        let one = format!("00-{TRACE}-{PARENT}-01");
        assert!(continued(&[one.as_bytes()]).is_some());
        assert_eq!(continued(&[one.as_bytes(), one.as_bytes()]), None);
        assert_eq!(continued(&[]), None);
        // Bytes that are not visible ASCII.
        assert_eq!(
            continued(&[format!("cc-{TRACE}-{PARENT}-01-é").as_bytes()]),
            None
        );
    }

    /// The rules, written another way: split into fields, each checked.
    fn valid_by_fields(value: &str) -> bool {
        let value = value.trim_matches([' ', '\t']);
        let fields: Vec<&str> = value.split('-').collect();
        let hex = |field: &str, len: usize| {
            field.len() == len
                && field
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        };
        fields.len() >= 4
            && hex(fields[0], 2)
            && fields[0] != "ff"
            && (fields[0] != "00" || fields.len() == 4)
            && hex(fields[1], 32)
            && fields[1] != "0".repeat(32)
            && hex(fields[2], 16)
            && fields[2] != "0".repeat(16)
            && hex(fields[3], 2)
            && value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    }

    /// A valid header: version `00`, or a future version with or without
    /// more fields.
    fn valid_header() -> impl Strategy<Value = String> {
        let version = prop_oneof![
            Just("00".to_owned()),
            "[0-9a-f]{2}".prop_filter("ff is invalid", |v| v != "ff")
        ];
        (
            version,
            any::<u128>().prop_filter("not zero", |&id| id != 0),
            any::<u64>().prop_filter("not zero", |&id| id != 0),
            any::<u8>(),
            prop_oneof![Just(String::new()), "-[a-z0-9-]{0,12}"],
        )
            .prop_map(|(version, trace, parent, flags, more)| {
                let more = if version == "00" { String::new() } else { more };
                format!("{version}-{trace:032x}-{parent:016x}-{flags:02x}{more}")
            })
    }

    /// One change to a header.
    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Truncate(usize),
        Uppercase,
        Pad(&'static str),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            // Often a character a header is made of, so that some
            // mutations stay valid.
            4 => proptest::sample::select(b"0123456789abcdef-".to_vec()),
            2 => proptest::sample::select(b"ABCDEF+gz .,_\t:".to_vec()),
            1 => any::<u8>(),
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Remove),
            any::<usize>().prop_map(Mutation::Truncate),
            Just(Mutation::Uppercase),
            proptest::sample::select(vec![" ", "\t", "-", "0"]).prop_map(Mutation::Pad),
        ]
    }

    fn apply(header: &str, mutations: &[Mutation]) -> Vec<u8> {
        let mut bytes = header.as_bytes().to_vec();
        for mutation in mutations {
            let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
            match *mutation {
                Mutation::Replace(i, b) if !bytes.is_empty() => {
                    let i = at(i, bytes.len());
                    bytes[i] = b;
                }
                Mutation::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
                Mutation::Remove(i) if !bytes.is_empty() => {
                    bytes.remove(at(i, bytes.len()));
                }
                Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
                Mutation::Uppercase => bytes.make_ascii_uppercase(),
                Mutation::Pad(pad) => {
                    bytes.splice(0..0, pad.bytes());
                    bytes.extend_from_slice(pad.as_bytes());
                }
                Mutation::Replace(..) | Mutation::Remove(_) => {}
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 4096,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random mutations of valid headers: exactly the valid ones
        /// continue, with the header's own ids and sampled flag.
        #[test]
        fn only_valid_mutations_continue_the_trace(
            header in valid_header(),
            mutations in proptest::collection::vec(mutation(), 0..4),
        ) {
            let bytes = apply(&header, &mutations);
            // Bytes no HTTP field value can hold never reach the layer.
            prop_assume!(HeaderValue::from_bytes(&bytes).is_ok());
            let text = String::from_utf8_lossy(&bytes);
            let expected = std::str::from_utf8(&bytes).is_ok_and(valid_by_fields);
            let outcome = continued(&[&bytes]);
            prop_assert_eq!(outcome.is_some(), expected, "{:?}", text);
            if let Some((trace_id, parent_id, sampled)) = outcome {
                let fields: Vec<&str> = text.trim_matches([' ', '\t']).split('-').collect();
                prop_assert_eq!(trace_id.as_str(), fields[1]);
                prop_assert_eq!(parent_id.as_str(), fields[2]);
                let flags = u8::from_str_radix(fields[3], 16).unwrap();
                prop_assert_eq!(sampled, flags & 1 == 1);
            }
        }
    }

    proptest! {
        /// `encode` writes what the propagator writes.
        #[test]
        fn encode_writes_what_the_propagator_writes(
            trace in 1_u128..,
            span in 1_u64..,
            flags in any::<u8>(),
        ) {
            use opentelemetry::propagation::TextMapPropagator;
            use opentelemetry::trace::{SpanId, TraceId, TraceState};
            use opentelemetry_sdk::propagation::TraceContextPropagator;

            let ids = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::new(flags),
                false,
                TraceState::default(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(ids.clone());
            let mut written = std::collections::HashMap::new();
            TraceContextPropagator::new().inject_context(&cx, &mut written);
            prop_assert_eq!(
                written.get("traceparent").map(String::as_bytes),
                Some(&encode(&ids)[..])
            );
        }
    }
}
