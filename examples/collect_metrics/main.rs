//! Collects the guide's metrics from Prometheus into CSV files, and reports
//! traffic patterns, slow and failing endpoints, and anomalies: the guide's
//! `collect_metrics.py` and pandas notebook, without Python.
//!
//! ```text
//! cargo run --example collect_metrics -- --prometheus http://127.0.0.1:9090 \
//!     --range 1h --step 15s --out analytics/data --report
//! ```
//!
//! Writes `http_metrics_YYYYMMDD_HHMMSS.csv`, `system_metrics_…` and
//! `business_metrics_…` (UTC) with the columns `timestamp,metric,value`
//! (`timestamp,metric,path,value` for the HTTP file), which the guide's
//! `pd.read_csv(..., parse_dates=['timestamp'])` loads unchanged. The PromQL
//! behind each metric name is in `queries.rs`.

mod analysis;
mod queries;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use analysis::Row;
use queries::{File, QUERIES};

/// What went wrong, naming the thing that was wrong.
#[derive(Debug)]
enum CollectError {
    Usage(String),
    Unreachable {
        url: String,
        reason: String,
    },
    Rejected {
        query: String,
        error: String,
    },
    EmptyRange {
        start: String,
        end: String,
    },
    Output {
        path: PathBuf,
        reason: std::io::Error,
    },
    Answer {
        query: String,
        reason: String,
    },
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => write!(f, "{message}"),
            Self::Unreachable { url, reason } => {
                write!(f, "cannot reach Prometheus at {url}: {reason}")
            }
            Self::Rejected { query, error } => {
                write!(f, "Prometheus rejected the query `{query}`: {error}")
            }
            Self::EmptyRange { start, end } => write!(
                f,
                "Prometheus has no data from {start} to {end}: is it scraping the application?"
            ),
            Self::Output { path, reason } => write!(f, "cannot write {}: {reason}", path.display()),
            Self::Answer { query, reason } => write!(f, "unexpected answer to `{query}`: {reason}"),
        }
    }
}

struct Args {
    prometheus: String,
    range: u64,
    step: u64,
    out: PathBuf,
    rate_window: String,
    increase_window: String,
    report: bool,
    json: bool,
}

const USAGE: &str = "usage: collect_metrics --prometheus URL [--range 1h] [--step 15s] \
[--out analytics/data] [--rate-window 5m] [--increase-window 1h] [--report [--json]]";

/// `90s`, `15m`, `1h`, `2d` in seconds.
fn parse_duration(raw: &str) -> Option<u64> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(unit).filter(|s| *s > 0)
}

impl Args {
    fn parse(mut raw: impl Iterator<Item = String>) -> Result<Self, CollectError> {
        let usage = |message: String| CollectError::Usage(format!("{message}\n{USAGE}"));
        let mut args = Self {
            prometheus: String::new(),
            range: 3_600,
            step: 15,
            out: PathBuf::from("analytics/data"),
            rate_window: "5m".to_owned(),
            increase_window: "1h".to_owned(),
            report: false,
            json: false,
        };
        while let Some(flag) = raw.next() {
            let mut value = |name: &str| {
                raw.next()
                    .ok_or_else(|| usage(format!("{name} needs a value")))
            };
            match flag.as_str() {
                "--prometheus" => args.prometheus = value("--prometheus")?,
                "--range" | "--step" => {
                    let text = value(&flag)?;
                    let seconds = parse_duration(&text).ok_or_else(|| {
                        usage(format!(
                            "{flag} {text:?}: expected a duration such as 15s, 5m, 1h"
                        ))
                    })?;
                    if flag == "--range" {
                        args.range = seconds;
                    } else {
                        args.step = seconds;
                    }
                }
                "--out" => args.out = PathBuf::from(value("--out")?),
                "--rate-window" => args.rate_window = value("--rate-window")?,
                "--increase-window" => args.increase_window = value("--increase-window")?,
                "--report" => args.report = true,
                "--json" => args.json = true,
                "--help" | "-h" => return Err(CollectError::Usage(USAGE.to_owned())),
                other => return Err(usage(format!("unknown argument {other:?}"))),
            }
        }
        if args.prometheus.is_empty() {
            return Err(usage("--prometheus is required".to_owned()));
        }
        args.prometheus = args.prometheus.trim_end_matches('/').to_owned();
        Ok(args)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds.
fn iso8601(secs: i64) -> String {
    let (date, time) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(date);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        time / 3_600,
        time / 60 % 60,
        time % 60
    )
}

/// Days since 1970-01-01 to (year, month, day).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Prometheus {
    url: String,
    agent: ureq::Agent,
}

impl Prometheus {
    fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            url: url.to_owned(),
            agent,
        }
    }

    /// A range query: one `Row` per point of every series.
    fn range(
        &self,
        query: &queries::Query,
        args: &Args,
        start: i64,
        end: i64,
    ) -> Result<Vec<Row>, CollectError> {
        let promql = query.promql(&args.rate_window, &args.increase_window);
        let answer = self
            .agent
            .get(format!("{}/api/v1/query_range", self.url))
            .query("query", &promql)
            .query("start", start.to_string())
            .query("end", end.to_string())
            .query("step", args.step.to_string())
            .call()
            .map_err(|err| CollectError::Unreachable {
                url: self.url.clone(),
                reason: err.to_string(),
            })?
            .body_mut()
            .read_to_string()
            .map_err(|err| CollectError::Unreachable {
                url: self.url.clone(),
                reason: err.to_string(),
            })?;
        let answer: serde_json::Value =
            serde_json::from_str(&answer).map_err(|err| CollectError::Answer {
                query: promql.clone(),
                reason: format!("{err}: {answer:.200}"),
            })?;
        if answer["status"] != "success" {
            return Err(CollectError::Rejected {
                query: promql,
                error: answer["error"]
                    .as_str()
                    .unwrap_or("no error text")
                    .to_owned(),
            });
        }
        let label = query.file.label();
        let mut rows = Vec::new();
        for series in answer["data"]["result"].as_array().into_iter().flatten() {
            let label_value = label.map(|l| series["metric"][l].as_str().unwrap_or("").to_owned());
            for point in series["values"].as_array().into_iter().flatten() {
                let (Some(time), Some(value)) = (point[0].as_f64(), point[1].as_str()) else {
                    continue;
                };
                let Ok(value) = value.parse::<f64>() else {
                    continue;
                };
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "Prometheus times are whole seconds here"
                )]
                let time = time as i64;
                rows.push(Row {
                    time,
                    metric: query.metric,
                    label: label_value.clone(),
                    value,
                });
            }
        }
        Ok(rows)
    }
}

/// Writes `rows` of `file` as CSV to a temporary file, then renames it, so
/// that a failed run never leaves a half-written file under the final name.
fn write_csv(dir: &Path, file: File, stamp: &str, rows: &[Row]) -> Result<PathBuf, CollectError> {
    let path = dir.join(format!("{}_{stamp}.csv", file.prefix()));
    let partial = dir.join(format!(".{}_{stamp}.csv.partial", file.prefix()));
    let output_error = |reason| CollectError::Output {
        path: path.clone(),
        reason,
    };
    let mut writer = csv::Writer::from_path(&partial).map_err(|e| output_error(e.into()))?;
    let mut header = vec!["timestamp", "metric"];
    header.extend(file.label());
    header.push("value");
    writer
        .write_record(&header)
        .map_err(|e| output_error(e.into()))?;
    for row in rows {
        let mut record = vec![iso8601(row.time), row.metric.to_owned()];
        if file.label().is_some() {
            record.push(row.label.clone().unwrap_or_default());
        }
        record.push(row.value.to_string());
        writer
            .write_record(&record)
            .map_err(|e| output_error(e.into()))?;
    }
    writer.flush().map_err(output_error)?;
    drop(writer);
    std::fs::rename(&partial, &path).map_err(output_error)?;
    Ok(path)
}

fn run(args: &Args) -> Result<(), CollectError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let range = i64::try_from(args.range).unwrap_or(i64::MAX / 2);
    let (start, end) = (now - range, now);
    std::fs::create_dir_all(&args.out).map_err(|reason| CollectError::Output {
        path: args.out.clone(),
        reason,
    })?;
    let prometheus = Prometheus::new(&args.prometheus);
    let mut all = Vec::new();
    for query in QUERIES {
        all.push((query.file, prometheus.range(query, args, start, end)?));
    }
    if all.iter().all(|(_, rows)| rows.is_empty()) {
        return Err(CollectError::EmptyRange {
            start: iso8601(start),
            end: iso8601(end),
        });
    }
    let stamp = {
        let iso = iso8601(end);
        format!(
            "{}{}{}_{}{}{}",
            &iso[0..4],
            &iso[5..7],
            &iso[8..10],
            &iso[11..13],
            &iso[14..16],
            &iso[17..19]
        )
    };
    let mut rows_all = Vec::new();
    for file in File::ALL {
        let rows: Vec<Row> = all
            .iter()
            .filter(|(f, _)| *f == file)
            .flat_map(|(_, rows)| rows.iter().cloned())
            .collect();
        let path = write_csv(&args.out, file, &stamp, &rows)?;
        eprintln!("wrote {} ({} rows)", path.display(), rows.len());
        rows_all.extend(rows);
    }
    if args.report {
        let report = analysis::report(&rows_all, iso8601);
        let mut stdout = std::io::stdout().lock();
        let text = if args.json {
            serde_json::to_string_pretty(&report).unwrap_or_default()
        } else {
            report.to_table()
        };
        let _ = writeln!(stdout, "{text}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = Args::parse(std::env::args().skip(1)).and_then(|args| run(&args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CollectError::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
