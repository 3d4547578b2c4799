//! Which exposition format a scrape asked for (its `Accept` header).

use http::HeaderMap;
use http::header::ACCEPT;

use super::openmetrics;

/// The content type of the classic Prometheus text format.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An exposition format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4, for any client that does not ask
    /// for OpenMetrics.
    Classic,
    /// The OpenMetrics text format 1.0.0, with exemplars.
    OpenMetrics,
}

impl Format {
    /// The format `headers` ask for: the acceptable media range with the
    /// highest quality (`q`), the first one on a tie, as Prometheus' own
    /// client libraries choose. `application/openmetrics-text` is acceptable
    /// with no version or version 1.0.0 or 0.0.1; `text/plain` with no
    /// version or 0.0.4, and `*/*` and `text/*` mean the classic format.
    /// Anything else, or no `Accept` header, gets the classic format.
    pub(crate) fn negotiate(headers: &HeaderMap) -> Self {
        let mut best: Option<(f32, Self)> = None;
        let ranges = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        for range in ranges {
            let Some((quality, format)) = Self::of_range(range) else {
                continue;
            };
            if quality > 0.0 && best.is_none_or(|(best, _)| quality > best) {
                best = Some((quality, format));
            }
        }
        best.map_or(Self::Classic, |(_, format)| format)
    }

    /// The quality and format of one media range, if it is one we serve.
    fn of_range(range: &str) -> Option<(f32, Self)> {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next()?;
        let mut version = None;
        let mut quality = 1.0;
        for parameter in parts {
            let (name, value) = parameter.split_once('=')?;
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    quality = value
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))?;
                }
                "version" => version = Some(value),
                _ => {}
            }
        }
        let format = if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            matches!(version, None | Some("1.0.0" | "0.0.1")).then_some(Self::OpenMetrics)?
        } else if media_type.eq_ignore_ascii_case("text/plain") {
            matches!(version, None | Some("0.0.4")).then_some(Self::Classic)?
        } else if media_type == "*/*" || media_type.eq_ignore_ascii_case("text/*") {
            Self::Classic
        } else {
            return None;
        };
        Some((quality, format))
    }

    /// The `Content-Type` of an answer in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Classic => CLASSIC,
            Self::OpenMetrics => openmetrics::CONTENT_TYPE,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn negotiate(accept: &[&str]) -> Format {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        Format::negotiate(&headers)
    }

    #[test]
    fn prometheus_gets_openmetrics() {
        // What Prometheus 2.x sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,\
                          application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(&[prometheus]), Format::OpenMetrics);
        assert_eq!(
            negotiate(&["application/openmetrics-text"]),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(&["Application/OpenMetrics-Text; Version=\"1.0.0\"; charset=utf-8"]),
            Format::OpenMetrics,
            "case and quotes do not matter"
        );
        assert_eq!(
            negotiate(&["text/plain;q=0.2", "application/openmetrics-text;q=0.3"]),
            Format::OpenMetrics,
            "several headers are one list"
        );
    }

    #[test]
    fn anything_else_gets_the_classic_format() {
        assert_eq!(negotiate(&[]), Format::Classic);
        assert_eq!(negotiate(&["*/*"]), Format::Classic);
        assert_eq!(
            negotiate(&["text/html,application/xhtml+xml,*/*;q=0.8"]),
            Format::Classic,
            "a browser"
        );
        assert_eq!(
            negotiate(&["text/plain;version=0.0.4,application/openmetrics-text"]),
            Format::Classic,
            "a tie goes to the first"
        );
        assert_eq!(
            negotiate(&["text/plain;q=0.5,application/openmetrics-text;q=0.4"]),
            Format::Classic
        );
        assert_eq!(
            negotiate(&["application/openmetrics-text;q=0"]),
            Format::Classic,
            "q=0 refuses"
        );
        assert_eq!(
            negotiate(&["application/openmetrics-text;version=2.0.0"]),
            Format::Classic,
            "a version we cannot write"
        );
        assert_eq!(
            negotiate(&["application/openmetrics-text;q=lots"]),
            Format::Classic,
            "an unreadable range is skipped"
        );
        assert_eq!(negotiate(&["application/json"]), Format::Classic);
    }
}
