//! Reading and checking expositions: exemplars parsed out of OpenMetrics
//! text, and `promtool` on both text formats.

use std::fmt::Write as _;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::{free_port, require_tool};

/// An exemplar of an OpenMetrics exposition, with the sample it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarLine {
    /// The sample's name, e.g. `http_requests_total`.
    pub sample: String,
    /// The sample's labels, unescaped, in the order they appear.
    pub labels: Vec<(String, String)>,
    /// The exemplar's `trace_id` label.
    pub trace_id: String,
    /// The exemplar's `span_id` label.
    pub span_id: String,
    /// The exemplar's value.
    pub value: f64,
    /// The exemplar's timestamp, in seconds.
    pub timestamp: f64,
}

impl ExemplarLine {
    /// The value of the sample's label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `{name="value",...}` (OpenMetrics escapes) at the start of `text`;
/// returns the labels and what follows `}`.
fn parse_label_set(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut rest = text.strip_prefix('{')?;
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// Every exemplar of the OpenMetrics exposition `text`.
///
/// # Panics
///
/// On an exemplar that is not `# {trace_id="…",span_id="…"} value timestamp`.
pub fn exemplars_in(text: &str) -> Vec<ExemplarLine> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((sample, exemplar)) = line.split_once(" # ") else {
            continue;
        };
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        let (name, rest) = sample.split_at(name_end);
        let labels = parse_label_set(rest).map_or_else(Vec::new, |(labels, _)| labels);
        let (ids, rest) =
            parse_label_set(exemplar).unwrap_or_else(|| panic!("exemplar labels in {line:?}"));
        let id = |key: &str| {
            ids.iter()
                .find(|(k, _)| k == key)
                .map_or_else(|| panic!("no {key} in {line:?}"), |(_, v)| v.clone())
        };
        assert_eq!(ids.len(), 2, "only trace_id and span_id: {line:?}");
        let numbers: Vec<f64> = rest
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("number {n:?} in {line:?}"))
            })
            .collect();
        assert_eq!(numbers.len(), 2, "a value and a timestamp: {line:?}");
        found.push(ExemplarLine {
            sample: name.to_owned(),
            labels,
            trace_id: id("trace_id"),
            span_id: id("span_id"),
            value: numbers[0],
            timestamp: numbers[1],
        });
    }
    found
}

/// Runs `promtool` with `args`, `input` on its stdin; returns whether it
/// succeeded, and its stdout and stderr together.
fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let promtool = require_tool("promtool", "apt-get install -y prometheus");
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(input.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// Lints a classic text exposition with `promtool check metrics`: `Ok`
/// when promtool accepts it and reports no problem, else its report.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    match promtool(&["check", "metrics"], text) {
        (true, report) if report.trim().is_empty() => Ok(()),
        (_, report) => Err(report),
    }
}

/// Checks an OpenMetrics exposition with Prometheus' own OpenMetrics parser,
/// through `promtool tsdb create-blocks-from openmetrics` (`promtool check
/// metrics` reads the classic format only, prometheus/prometheus#8932).
/// Backfilling needs a timestamp on every sample, so the current time is
/// added to each; nothing else is changed. `Ok` with promtool's report when
/// the whole exposition was read.
pub fn promtool_check_openmetrics(text: &str) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let mut stamped = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        if line.starts_with('#') {
            stamped.push_str(line);
        } else {
            match line.split_once(" # ") {
                Some((sample, exemplar)) => {
                    let _ = write!(stamped, "{sample} {now} # {exemplar}");
                }
                None => {
                    let _ = write!(stamped, "{line} {now}");
                }
            }
        }
        stamped.push('\n');
    }
    let dir = std::env::temp_dir().join(format!(
        "multiweb-openmetrics-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("exposition.txt");
    std::fs::write(&input, stamped).expect("write the exposition");
    let blocks = dir.join("blocks");
    let (ok, report) = promtool(
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().expect("UTF-8 path"),
            blocks.to_str().expect("UTF-8 path"),
        ],
        "",
    );
    let _ = std::fs::remove_dir_all(&dir);
    if ok { Ok(report) } else { Err(report) }
}
