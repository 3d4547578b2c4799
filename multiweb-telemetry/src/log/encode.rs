//! Byte encoders of the JSON lines: escaped strings, numbers, ids.

use std::fmt::{self, Write as _};

use opentelemetry::trace::{SpanId, TraceId};
use tracing_core::Level;

/// Longest string value written, in bytes; longer values are cut at a
/// character boundary and end with `…`.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Appends `trace_id` and `span_id`, unless they are invalid (zero).
pub(super) fn write_ids(line: &mut Vec<u8>, trace_id: TraceId, span_id: SpanId) {
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

pub(super) fn level_str(level: Level) -> &'static str {
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
pub(super) fn hex8(value: u32) -> [u8; 8] {
    // Each nibble into a byte of its own, the first nibble in the top byte.
    let x = u64::from(value);
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // Digits above 9 need `'a' - '0' - 10` more.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

pub(super) fn write_u64(buf: &mut Vec<u8>, value: u64) {
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

pub(super) fn write_i64(buf: &mut Vec<u8>, value: i64) {
    if value < 0 {
        buf.push(b'-');
    }
    write_u64(buf, value.unsigned_abs());
}

pub(super) fn write_bool(buf: &mut Vec<u8>, value: bool) {
    buf.extend_from_slice(if value { b"true" } else { b"false" });
}

/// The shortest representation that reads back as the same `f64` (what
/// `ryu` and `serde_json` write: `0.003`, `1.0`, `1e-7`).
pub(super) fn write_f64(buf: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        // JSON has no NaN or infinity.
        write_json_str(buf, &value.to_string());
    }
}

pub(super) fn write_json_str(buf: &mut Vec<u8>, value: &str) {
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

pub(super) fn write_json_debug(buf: &mut Vec<u8>, value: &dyn fmt::Debug) {
    buf.push(b'"');
    let mut writer = EscapingWriter::new(buf);
    let _ = write!(writer, "{value:?}");
    writer.finish();
}

pub(super) fn write_json_display(buf: &mut Vec<u8>, value: &dyn fmt::Display) {
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
pub(super) fn escape_into(buf: &mut Vec<u8>, s: &str) {
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
}
