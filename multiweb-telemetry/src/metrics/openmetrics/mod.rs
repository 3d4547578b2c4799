//! The OpenMetrics text format 1.0.0, converted from the classic text
//! exposition, with exemplars.
//!
//! # Why a conversion
//!
//! `metrics-exporter-prometheus` 0.18 renders the classic format only
//! (`PrometheusHandle::render`, or protobuf behind a feature), and its
//! snapshot of counters, gauges and distributions is private. Writing the
//! OpenMetrics answer from the data itself would mean replacing it with a
//! recorder of our own, and its histogram storage, upkeep and per-metric
//! buckets with it. The other sources (process metrics, business metrics)
//! write the classic format too. So the whole classic exposition, the one
//! `/metrics` serves to any other client, is converted: both answers come
//! from one rendering and cannot disagree on a series. The classic format is
//! small and fully specified, the converter parses only what the exposition
//! writers produce (HELP and TYPE lines, samples with escaped label values),
//! and a scrape is rare next to a request.
//!
//! # What changes
//!
//! - A counter's family (`# TYPE`, `# HELP`) is named without `_total`; its
//!   samples keep it. A counter whose name does not end in `_total` is
//!   exposed as `unknown`, so that its series keeps its name whichever
//!   format Prometheus asks for.
//! - A family whose name ends in a base unit of the Prometheus naming
//!   conventions (`_seconds`, `_bytes`, `_ratio`, …) gets a `# UNIT` line.
//! - `le` and `quantile` label values are written as canonical numbers
//!   (`1.0`, `10.0`, `1e+06`), as the specification asks.
//! - HELP texts escape `"` too; blank lines and other comments go; `# EOF`
//!   ends the exposition. No `_created` samples are written (optional).
//! - Counter `_total` samples and histogram `_bucket` samples carry the
//!   exemplar the [`Index`] has for them:
//!   `# {trace_id="…",span_id="…"} value timestamp`.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::exemplar::{Exemplar, Index};

/// The content type of the OpenMetrics text format.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The base units of the Prometheus naming conventions.
const UNITS: [&str; 9] = [
    "seconds", "bytes", "ratio", "meters", "grams", "volts", "amperes", "joules", "celsius",
];

/// Converts the classic text exposition `classic` to OpenMetrics, with the
/// exemplars of `exemplars`.
pub(crate) fn convert(classic: &str, exemplars: &mut Index) -> String {
    let mut out = String::with_capacity(classic.len() + classic.len() / 8 + 8);
    for family in parse(classic) {
        family.write(&mut out, exemplars);
    }
    out.push_str("# EOF\n");
    out
}

/// A metric family of the classic exposition.
#[derive(Debug)]
struct Family<'a> {
    name: &'a str,
    /// The classic type: `counter`, `gauge`, `histogram`, `summary` or
    /// `untyped`.
    kind: &'a str,
    /// Escaped as the classic format escapes it.
    help: Option<&'a str>,
    samples: Vec<Sample<'a>>,
}

/// A sample of the classic exposition.
#[derive(Debug)]
struct Sample<'a> {
    name: &'a str,
    /// Unescaped values.
    labels: Vec<(&'a str, Cow<'a, str>)>,
    value: &'a str,
    /// Milliseconds.
    timestamp: Option<&'a str>,
}

fn parse(text: &str) -> Vec<Family<'_>> {
    let mut families: Vec<Family<'_>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let (keyword, rest) = comment.trim_start().split_once(' ').unwrap_or_default();
            let (name, text) = rest.trim_start().split_once(' ').unwrap_or((rest, ""));
            match keyword {
                "HELP" => family_for(&mut families, name.trim()).help = Some(text),
                "TYPE" => family_for(&mut families, name.trim()).kind = text.trim(),
                _ => {}
            }
            continue;
        }
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        if !families.last().is_some_and(|f| f.owns(sample.name)) {
            families.push(Family::new(sample.name));
        }
        if let Some(family) = families.last_mut() {
            family.samples.push(sample);
        }
    }
    families
}

/// The family a `# HELP` or `# TYPE` line of `name` describes: the last
/// one if it has that name and no sample yet, else a new one.
fn family_for<'f, 'a>(families: &'f mut Vec<Family<'a>>, name: &'a str) -> &'f mut Family<'a> {
    let continues = families
        .last()
        .is_some_and(|f| f.name == name && f.samples.is_empty());
    if !continues {
        families.push(Family::new(name));
    }
    let last = families.len() - 1;
    &mut families[last]
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Self {
        Self {
            name,
            kind: "untyped",
            help: None,
            samples: Vec::new(),
        }
    }

    /// Whether sample `name` belongs to this family.
    fn owns(&self, name: &str) -> bool {
        let suffixes: &[&str] = match self.kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        name.strip_prefix(self.name)
            .is_some_and(|suffix| suffixes.contains(&suffix))
    }

    fn write(&self, out: &mut String, exemplars: &mut Index) {
        let (kind, name) = match self.kind {
            "counter" => match self.name.strip_suffix("_total") {
                Some(base) if !base.is_empty() => (Kind::Counter, base),
                _ => (Kind::Unknown, self.name),
            },
            "gauge" => (Kind::Gauge, self.name),
            "histogram" => (Kind::Histogram, self.name),
            "summary" => (Kind::Summary, self.name),
            _ => (Kind::Unknown, self.name),
        };
        let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
        if let Some(unit) = unit_of(name) {
            let _ = writeln!(out, "# UNIT {name} {unit}");
        }
        if let Some(help) = self.help.filter(|help| !help.is_empty()) {
            let _ = write!(out, "# HELP {name} ");
            write_help(out, help);
            out.push('\n');
        }
        for sample in &self.samples {
            sample.write(out, kind, self.name, exemplars);
        }
    }
}

/// An OpenMetrics family type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Unknown => "unknown",
        }
    }
}

/// The unit a family's name ends in, if it is a base unit.
fn unit_of(name: &str) -> Option<&'static str> {
    UNITS.into_iter().find(|unit| {
        name.strip_suffix(unit)
            .and_then(|rest| rest.strip_suffix('_'))
            .is_some_and(|rest| !rest.is_empty())
    })
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let end = line.find(|c: char| c == '{' || c.is_ascii_whitespace())?;
        let (name, mut rest) = line.split_at(end);
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = parse_labels(after, &mut labels)?;
        }
        let mut fields = rest.split_ascii_whitespace();
        Some(Self {
            name,
            labels,
            value: fields.next()?,
            timestamp: fields.next(),
        })
    }

    /// Writes the sample of a family of type `kind` whose classic name is
    /// `family`.
    fn write(&self, out: &mut String, kind: Kind, family: &str, exemplars: &mut Index) {
        let bucket = kind == Kind::Histogram && self.name.strip_prefix(family) == Some("_bucket");
        let quantile = kind == Kind::Summary && self.name == family;
        out.push_str(self.name);
        if !self.labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in self.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                let number = (bucket && *name == "le") || (quantile && *name == "quantile");
                match value.parse::<f64>().ok().filter(|_| number) {
                    Some(number) => write_canonical(out, number),
                    None => write_escaped(out, value),
                }
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        write_value(out, self.value);
        if let Some(millis) = self.timestamp.and_then(|t| t.parse::<i64>().ok()) {
            let sign = if millis < 0 { "-" } else { "" };
            let millis = millis.unsigned_abs();
            let _ = write!(out, " {sign}{}.{:03}", millis / 1000, millis % 1000);
        }
        if !exemplars.is_empty()
            && let Some(exemplar) = self.exemplar(kind, bucket, exemplars)
        {
            write_exemplar(out, &exemplar);
        }
        out.push('\n');
    }

    /// The exemplar of a counter's `_total` sample or a histogram's bucket.
    fn exemplar(&self, kind: Kind, bucket: bool, exemplars: &mut Index) -> Option<Exemplar> {
        let mut le = None;
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(self.labels.len());
        for (name, value) in &self.labels {
            if bucket && *name == "le" {
                le = Some(value.parse::<f64>().ok()?);
            } else {
                labels.push((name, value));
            }
        }
        match kind {
            Kind::Counter => exemplars.find(self.name, &mut labels, None),
            Kind::Histogram if bucket => exemplars.find(self.name, &mut labels, Some(le?)),
            _ => None,
        }
    }
}

/// Parses the labels after `{` into `labels`; returns what follows `}`.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Option<&'a str> {
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if let Some(after) = rest.strip_prefix('}') {
            return Some(after);
        }
        let (name, after) = rest.split_once('=')?;
        let (value, after) = unescape_quoted(after.trim_start().strip_prefix('"')?)?;
        labels.push((name.trim(), value));
        rest = after;
    }
}

/// The label value before the closing quote, unescaped (`\\`, `\"`, `\n`),
/// and what follows the quote.
fn unescape_quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut unescaped: Option<String> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = unescaped.map_or(Cow::Borrowed(&text[..i]), Cow::Owned);
                return Some((value, &text[i + 1..]));
            }
            '\\' => {
                let value = unescaped.get_or_insert_with(|| text[..i].to_owned());
                match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            }
            c => {
                if let Some(value) = &mut unescaped {
                    value.push(c);
                }
            }
        }
    }
    None
}

/// Writes `value` escaped as OpenMetrics escapes strings: `\\`, `\"`, `\n`.
fn write_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a HELP text escaped by the classic format (`\\` and `\n`) as
/// OpenMetrics escapes it (`\\`, `\n` and `\"`).
fn write_help(out: &mut String, help: &str) {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push_str("\\n"),
                Some('\\') | None => out.push_str("\\\\"),
                Some('"') => out.push_str("\\\\\\\""),
                Some(other) => {
                    out.push_str("\\\\");
                    out.push(other);
                }
            },
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes a sample value, with the infinities and NaN as OpenMetrics spells
/// them.
fn write_value(out: &mut String, value: &str) {
    let (negative, magnitude) = match value.strip_prefix('-') {
        Some(magnitude) => (true, magnitude),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if magnitude.eq_ignore_ascii_case("inf") || magnitude.eq_ignore_ascii_case("infinity") {
        out.push_str(if negative { "-Inf" } else { "+Inf" });
    } else if magnitude.eq_ignore_ascii_case("nan") {
        out.push_str("NaN");
    } else {
        out.push_str(value);
    }
}

/// Writes `value` as a number: shortest, with the infinities and NaN
/// spelled as OpenMetrics spells them.
fn write_number(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Writes `value` as a canonical number (the `le` and `quantile` label
/// values): Go's shortest `%g`, with `.0` where it has neither a point nor
/// an exponent (`0.005`, `1.0`, `100000.0`, `1e+06`, `1e-05`).
fn write_canonical(out: &mut String, value: f64) {
    if !value.is_finite() {
        return write_number(out, value);
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value != 0.0 && !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    } else {
        let start = out.len();
        let _ = write!(out, "{value}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
    }
}

/// Writes ` # {trace_id="…",span_id="…"} value timestamp`.
fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} ",
        exemplar.ids.trace_id, exemplar.ids.span_id
    );
    write_number(out, exemplar.value);
    let _ = write!(
        out,
        " {}.{:03}",
        exemplar.time.as_secs(),
        exemplar.time.subsec_millis()
    );
}

#[cfg(test)]
mod tests;
