//! The environment variables the crate reads, and their parsers.

use std::ffi::OsString;

use super::{OtlpCompression, OtlpProtocol};
use crate::Error;

/// Environment variables the crate reads.
pub(crate) mod vars {
    pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    pub(crate) const RUST_LOG: &str = "RUST_LOG";
    pub(crate) const MULTIWEB_METRICS_ADDR: &str = "MULTIWEB_METRICS_ADDR";
    pub(crate) const MULTIWEB_LOG_FORMAT: &str = "MULTIWEB_LOG_FORMAT";
    pub(crate) const MULTIWEB_METRICS_TOKEN: &str = "MULTIWEB_METRICS_TOKEN";
    pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str =
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str =
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    pub(crate) const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub(crate) const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub(crate) const MULTIWEB_TRACES_KEEP_ERRORS: &str = "MULTIWEB_TRACES_KEEP_ERRORS";
    pub(crate) const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    pub(crate) const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str =
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    pub(crate) const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str =
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
    pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str =
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
    pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str =
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
    pub(crate) const OTEL_EXPORTER_OTLP_INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_INSECURE: &str =
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE";
    pub(crate) const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
    pub(crate) const OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str =
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a variable's value was rejected: what was expected, and the parser's error.
pub(super) type Rejection = (&'static str, Option<BoxError>);

/// Reads environment variables through a lookup function (the process
/// environment, or a map in tests).
pub(super) struct Env<'a>(pub(super) &'a dyn Fn(&str) -> Option<OsString>);

impl Env<'_> {
    /// The variable's value; unset and empty are both `None`.
    pub(super) fn get(&self, name: &'static str) -> Result<Option<String>, Error> {
        match (self.0)(name) {
            None => Ok(None),
            Some(raw) => match raw.into_string() {
                Ok(s) if s.trim().is_empty() => Ok(None),
                Ok(s) => Ok(Some(s)),
                Err(raw) => Err(Error::InvalidEnv {
                    name,
                    value: shown(name, &raw.to_string_lossy()),
                    expected: "valid UTF-8",
                    source: None,
                }),
            },
        }
    }

    /// The variable parsed by `parse`, whose error says what was expected.
    pub(super) fn parse<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, Rejection>,
    ) -> Result<Option<T>, Error> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        parse(&raw)
            .map(Some)
            .map_err(|(expected, source)| Error::InvalidEnv {
                name,
                value: shown(name, &raw),
                expected,
                source,
            })
    }
}

/// How the value of variable `name` may appear in an error: not at all for
/// a variable that holds a secret (the metrics token, header values), and
/// without its userinfo for an endpoint URL.
fn shown(name: &str, value: &str) -> String {
    if name == vars::MULTIWEB_METRICS_TOKEN || name.ends_with("_HEADERS") {
        REDACTED.to_owned()
    } else if name.ends_with("_ENDPOINT") {
        without_userinfo(value)
    } else {
        value.to_owned()
    }
}

/// What an error shows instead of a secret.
pub(super) const REDACTED: &str = "<redacted>";

/// `url` with the userinfo of its authority (`user:password@`) replaced by
/// `<redacted>@`. Erring on the side of secrecy, everything before the
/// last `@` counts as userinfo, with or without a scheme: a raw `/`, `?` or
/// `#` typed in a password would otherwise end the authority early and
/// leave the rest of the password shown. An `@` in a query or fragment
/// hides the host too, which an endpoint rarely has.
pub(super) fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + "://".len());
    match url[start..].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// Checks a `/metrics` bearer token: surrounding whitespace (a secret
/// file's trailing newline) is trimmed; what is left must be visible ASCII,
/// the only token an `Authorization` header can carry whole. `None` when
/// nothing is left.
pub(super) fn parse_metrics_token(raw: &str) -> Result<Option<String>, &'static str> {
    let token = raw.trim();
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok((!token.is_empty()).then(|| token.to_owned()))
    } else {
        Err(
            "a token of visible ASCII characters, with no whitespace or control \
             characters inside (surrounding whitespace is trimmed)",
        )
    }
}

/// Checks an OTLP endpoint and returns it with its scheme: an `http://` or
/// `https://` URL with a host; for gRPC also `host:port` without a scheme,
/// which is `https://` unless `insecure` (the specification's
/// `OTEL_EXPORTER_OTLP_INSECURE`).
pub(super) fn parse_endpoint(
    raw: &str,
    protocol: OtlpProtocol,
    insecure: bool,
) -> Result<String, Rejection> {
    const HTTP: &str = "an http:// or https:// URL such as `http://tempo:4318`";
    const GRPC: &str = "an http:// or https:// URL such as `http://tempo:4317`, or \
                        `host:port` (TLS unless OTEL_EXPORTER_OTLP_INSECURE is `true`)";
    let expected = match protocol {
        OtlpProtocol::Grpc => GRPC,
        OtlpProtocol::HttpProtobuf => HTTP,
    };
    let raw = raw.trim();
    match raw.parse::<http::Uri>() {
        // `http` takes any text after the host's last `:` as the port.
        Ok(uri) if !uri.authority().is_some_and(port_is_valid) => Err((expected, None)),
        Ok(uri) if uri.host().is_some() && matches!(uri.scheme_str(), Some("http" | "https")) => {
            Ok(raw.to_owned())
        }
        Ok(uri)
            if protocol == OtlpProtocol::Grpc
                && uri.scheme().is_none()
                && uri.host().is_some()
                && uri.path_and_query().is_none() =>
        {
            let scheme = if insecure { "http" } else { "https" };
            Ok(format!("{scheme}://{raw}"))
        }
        Ok(_) => Err((expected, None)),
        Err(err) => Err((expected, Some(Box::new(err)))),
    }
}

/// Whether the port of `authority`, if written, is a number from 0 to 65535
/// (or empty, the scheme's default): `http` gives no port for one that is
/// not, so the text after the host must then be nothing or a lone `:`.
fn port_is_valid(authority: &http::uri::Authority) -> bool {
    let text = authority.as_str();
    authority.port().is_some()
        || text
            .strip_suffix(':')
            .unwrap_or(text)
            .ends_with(authority.host())
}

/// The value of the traces variable `traces` if it is set, else of the
/// general one: the signal's own variable replaces the general one, which is
/// then not read (it may be meant for other signals or SDKs).
pub(super) fn traces_or_general<T>(
    env: &Env<'_>,
    traces: &'static str,
    general: &'static str,
    parse: impl Fn(&str) -> Result<T, Rejection>,
) -> Result<Option<T>, Error> {
    match env.parse(traces, &parse)? {
        Some(value) => Ok(Some(value)),
        None => env.parse(general, &parse),
    }
}

/// The OTLP export headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else
/// `OTEL_EXPORTER_OTLP_HEADERS` (not merged: the general headers may carry
/// credentials for another backend). A malformed entry is an error naming
/// the variable, with the value redacted: headers carry credentials.
pub(super) fn otlp_headers(env: &Env<'_>) -> Result<http::HeaderMap, Error> {
    const EXPECTED: &str = "comma-separated `key=value` pairs with non-empty keys, \
                            valid as HTTP header names and values";
    let parse = |raw: &str| {
        parse_resource_attributes(raw)
            .map_err(|_| (EXPECTED, None))?
            .into_iter()
            .map(|(key, value)| {
                match (
                    http::HeaderName::from_bytes(key.as_bytes()),
                    http::HeaderValue::from_str(&value),
                ) {
                    (Ok(key), Ok(mut value)) => {
                        value.set_sensitive(true);
                        Ok((key, value))
                    }
                    _ => Err((EXPECTED, None)),
                }
            })
            .collect::<Result<Vec<_>, Rejection>>()
            .map(|pairs| {
                // `insert`, not `extend` (which appends): names differing
                // only in case are one header, and the last value wins.
                let mut headers = http::HeaderMap::with_capacity(pairs.len());
                for (key, value) in pairs {
                    headers.insert(key, value);
                }
                headers
            })
    };
    let headers = traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        vars::OTEL_EXPORTER_OTLP_HEADERS,
        parse,
    )
    .map_err(|err| match err {
        // Header values are credentials: never print them.
        Error::InvalidEnv {
            name,
            expected,
            source,
            ..
        } => Error::InvalidEnv {
            name,
            value: "<redacted>".to_owned(),
            expected,
            source,
        },
        other => other,
    })?;
    Ok(headers.unwrap_or_default())
}

/// The export request timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default.
pub(super) fn otlp_timeout(env: &Env<'_>) -> Result<std::time::Duration, Error> {
    let parse = |raw: &str| match raw.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms)),
        _ => Err((
            "a whole number of milliseconds above 0, such as `10000`",
            None,
        )),
    };
    let timeout = traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        vars::OTEL_EXPORTER_OTLP_TIMEOUT,
        parse,
    )?;
    Ok(timeout.unwrap_or(std::time::Duration::from_secs(10)))
}

/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else
/// `OTEL_EXPORTER_OTLP_COMPRESSION`: `none` or `gzip` (any case).
pub(super) fn otlp_compression(env: &Env<'_>) -> Result<Option<OtlpCompression>, Error> {
    let parse = |raw: &str| {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("none") {
            Ok(OtlpCompression::None)
        } else if raw.eq_ignore_ascii_case("gzip") {
            Ok(OtlpCompression::Gzip)
        } else {
            Err(("`none` or `gzip`", None))
        }
    };
    traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        vars::OTEL_EXPORTER_OTLP_COMPRESSION,
        parse,
    )
}

/// `OTEL_EXPORTER_OTLP_TRACES_INSECURE`, else `OTEL_EXPORTER_OTLP_INSECURE`.
pub(super) fn otlp_insecure(env: &Env<'_>) -> Result<Option<bool>, Error> {
    traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_INSECURE,
        vars::OTEL_EXPORTER_OTLP_INSECURE,
        |raw| parse_bool(raw).ok_or(("`true` or `false`", None)),
    )
}

/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`: the longest attribute value, in
/// characters.
pub(super) fn attribute_value_length_limit(env: &Env<'_>) -> Result<Option<usize>, Error> {
    traces_or_general(
        env,
        vars::OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        vars::OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        |raw| {
            raw.trim()
                .parse::<usize>()
                .map_err(|_| ("a whole number of characters, such as `8192`", None))
        },
    )
}

/// `url` with `/v1/traces` appended to its path (before any query), as the
/// specification says for `OTEL_EXPORTER_OTLP_ENDPOINT` over HTTP.
pub(super) fn with_traces_path(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!(
                "{}://{}{}/v1/traces{query}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", http::uri::Authority::as_str),
                uri.path().trim_end_matches('/'),
            )
        }
        Err(_) => format!("{}/v1/traces", url.trim_end_matches('/')),
    }
}

pub(super) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses `key1=value1,key2=value2` (W3C Baggage octets, values may be percent-encoded).
pub(super) fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, Rejection> {
    const EXPECTED: Rejection = (
        "comma-separated `key=value` pairs with non-empty keys",
        None,
    );
    let mut attributes = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(EXPECTED)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(EXPECTED);
        }
        let value = percent_decode(value.trim()).ok_or(EXPECTED)?;
        attributes.retain(|(k, _): &(String, String)| k != key);
        attributes.push((key.to_owned(), value));
    }
    Ok(attributes)
}

pub(super) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
