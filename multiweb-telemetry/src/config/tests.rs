//! How settings resolve from code, the environment and the defaults.

use std::ffi::OsString;

use super::*;
use crate::Error;
use std::collections::HashMap;

pub(super) fn resolve(builder: &TelemetryBuilder, env: &[(&str, &str)]) -> Result<Config, Error> {
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    builder.resolve(&|name| env.get(name).cloned())
}

fn env_error(name: &str, value: &str) -> String {
    match resolve(&TelemetryBuilder::default(), &[(name, value)]) {
        Err(err @ Error::InvalidEnv { .. }) => err.to_string(),
        other => panic!("expected InvalidEnv for {name}={value:?}, got {other:?}"),
    }
}

#[test]
fn defaults_apply_without_environment() {
    let config = resolve(&TelemetryBuilder::default(), &[]).unwrap();
    assert!(config.service_name.starts_with("unknown_service"));
    assert!(!config.disabled);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_addr, None);
    assert_eq!(config.log_filter.to_string(), "info");
    assert_eq!(config.buckets.default, DEFAULT_BUCKETS);
    assert!(DEFAULT_BUCKETS.contains(&0.5) && DEFAULT_BUCKETS.contains(&1.0));
}

#[test]
fn environment_is_read() {
    let config = resolve(
        &TelemetryBuilder::default(),
        &[
            ("OTEL_SERVICE_NAME", "multiweb-api"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=web%20shop",
            ),
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("RUST_LOG", "warn,multiweb=debug"),
            ("MULTIWEB_LOG_FORMAT", "pretty"),
            ("MULTIWEB_METRICS_ADDR", "127.0.0.1:9464"),
        ],
    )
    .unwrap();
    assert_eq!(config.service_name, "multiweb-api");
    assert_eq!(
        config.resource_attributes,
        vec![
            ("deployment.environment".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "web shop".to_owned())
        ]
    );
    assert!(config.disabled);
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(config.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(config.log_filter.to_string(), "multiweb=debug,warn");
}

#[test]
fn builder_wins_over_environment() {
    let builder = TelemetryBuilder::default()
        .service_name("from-code")
        .disabled(false)
        .log_format(LogFormat::Json)
        .metrics_addr("127.0.0.1:1".parse().unwrap())
        .resource_attribute("team", "code");
    let config = resolve(
        &builder,
        &[
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_SDK_DISABLED", "true"),
            ("MULTIWEB_LOG_FORMAT", "pretty"),
            ("MULTIWEB_METRICS_ADDR", "127.0.0.1:2"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=env,region=eu"),
        ],
    )
    .unwrap();
    assert_eq!(config.service_name, "from-code");
    assert!(!config.disabled);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_addr, Some("127.0.0.1:1".parse().unwrap()));
    assert_eq!(
        config.resource_attributes,
        vec![
            ("region".to_owned(), "eu".to_owned()),
            ("team".to_owned(), "code".to_owned())
        ]
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let config = resolve(
        &TelemetryBuilder::default(),
        &[("OTEL_SDK_DISABLED", ""), ("MULTIWEB_METRICS_ADDR", "  ")],
    )
    .unwrap();
    assert!(!config.disabled);
    assert_eq!(config.metrics_addr, None);
}

#[test]
fn bad_environment_values_name_the_variable_and_value() {
    assert_eq!(
        env_error("MULTIWEB_METRICS_ADDR", "localhost:port"),
        "invalid value \"localhost:port\" for environment variable MULTIWEB_METRICS_ADDR: \
         expected a socket address such as `127.0.0.1:9464`"
    );
    assert_eq!(
        env_error("OTEL_SDK_DISABLED", "yes"),
        "invalid value \"yes\" for environment variable OTEL_SDK_DISABLED: \
         expected `true` or `false`"
    );
    assert_eq!(
        env_error("MULTIWEB_LOG_FORMAT", "xml"),
        "invalid value \"xml\" for environment variable MULTIWEB_LOG_FORMAT: \
         expected `json` or `pretty`"
    );
    assert!(
        env_error("RUST_LOG", "info,[")
            .starts_with("invalid value \"info,[\" for environment variable RUST_LOG")
    );
    assert!(
        env_error("OTEL_RESOURCE_ATTRIBUTES", "novalue").starts_with(
            "invalid value \"novalue\" for environment variable OTEL_RESOURCE_ATTRIBUTES"
        )
    );
    assert!(env_error("OTEL_RESOURCE_ATTRIBUTES", "=x").contains("OTEL_RESOURCE_ATTRIBUTES"));
    assert!(env_error("OTEL_RESOURCE_ATTRIBUTES", "k=%zz").contains("OTEL_RESOURCE_ATTRIBUTES"));
}

#[cfg(unix)]
#[test]
fn non_utf8_environment_value_is_an_error() {
    use std::os::unix::ffi::OsStringExt;
    let raw = OsString::from_vec(vec![0x66, 0xff]);
    let err = TelemetryBuilder::default()
        .resolve(&|name| (name == "OTEL_SERVICE_NAME").then(|| raw.clone()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidEnv {
                name: "OTEL_SERVICE_NAME",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn trace_settings_follow_the_standard_variables() {
    let config = resolve(&TelemetryBuilder::default(), &[]).unwrap();
    assert!(config.traces.export.is_none(), "no endpoint, no export");
    assert_eq!(config.traces.sampler, TraceSampler::ParentBasedAlwaysOn);
    let config_http = resolve(
        &TelemetryBuilder::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")],
    )
    .unwrap();
    let export = config_http.traces.export.expect("export on");
    assert_eq!(export.protocol, OtlpProtocol::HttpProtobuf, "the default");
    assert!(config.traces.keep_errors);

    let config = resolve(
        &TelemetryBuilder::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.05"),
        ],
    )
    .unwrap();
    let export = config.traces.export.as_ref().expect("export on");
    assert_eq!(export.protocol, OtlpProtocol::Grpc);
    assert_eq!(export.endpoint, "http://tempo:4317", "gRPC: as given");
    assert_eq!(export.timeout, std::time::Duration::from_secs(10));
    assert!(export.headers.is_empty());
    assert_eq!(
        config.traces.sampler,
        TraceSampler::ParentBasedTraceIdRatio(0.05)
    );

    let config = resolve(
        &TelemetryBuilder::default(),
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://tempo:4318/v1/traces",
            ),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("MULTIWEB_TRACES_KEEP_ERRORS", "false"),
        ],
    )
    .unwrap();
    assert!(
        config.traces.export.is_none(),
        "OTEL_SDK_DISABLED turns export off"
    );
    assert_eq!(config.traces.sampler, TraceSampler::TraceIdRatio(0.1));
    assert!(!config.traces.keep_errors);
}

#[test]
fn bad_trace_variables_name_themselves() {
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "ten percent"),
        ("MULTIWEB_TRACES_KEEP_ERRORS", "maybe"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://tempo:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:43x8"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:70000/"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "yes"),
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "1"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8k"),
    ] {
        let message = env_error(name, value);
        assert!(
            message.starts_with(&format!(
                "invalid value {value:?} for environment variable {name}"
            )),
            "{message}"
        );
    }
}

#[test]
fn malformed_otlp_headers_are_errors_that_do_not_print_the_value() {
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let message = env_error(name, "api-key-s3cret");
        assert_eq!(
            message,
            format!(
                "invalid value \"<redacted>\" for environment variable {name}: \
                 expected comma-separated `key=value` pairs with non-empty keys, \
                 valid as HTTP header names and values"
            )
        );
        // Not a header name: also an error, still redacted.
        let message = env_error(name, "bad name=s3cret");
        assert!(
            message.starts_with("invalid value \"<redacted>\""),
            "{message}"
        );
    }
    let config = resolve(
        &TelemetryBuilder::default(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc,tenant=t1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "tenant=t2,x-scope=a%20b,X-Scope=c",
            ),
        ],
    )
    .unwrap();
    let headers = &config.traces.export.expect("export on").headers;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("tenant", "t2"), ("x-scope", "c")],
        "the traces variable replaces the general one; one value per \
         header name, in any case, the last"
    );
    assert!(headers.values().all(http::HeaderValue::is_sensitive));
    assert!(!format!("{headers:?}").contains("t2"), "{headers:?}");
}

#[test]
fn otlp_endpoints_resolve_as_the_specification_says() {
    let endpoint = |builder: &TelemetryBuilder, vars: &[(&str, &str)]| {
        resolve(builder, vars)
            .unwrap()
            .traces
            .export
            .expect("export on")
            .endpoint
    };
    let default = TelemetryBuilder::default();
    // HTTP: the general variable is a base URL, the traces one is used as is.
    assert_eq!(
        endpoint(
            &default,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318/")]
        ),
        "http://tempo:4318/v1/traces"
    );
    assert_eq!(
        endpoint(
            &default,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/custom"
                ),
            ]
        ),
        "http://tempo:4318/custom"
    );
    assert_eq!(
        endpoint(
            &default,
            &[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://tempo:4318/otlp/?tenant=a"
            )]
        ),
        "http://tempo:4318/otlp/v1/traces?tenant=a",
        "the path goes before the query"
    );
    // The general variable is not read when the traces one is set (it
    // may be meant for other signals: here, with TLS).
    assert_eq!(
        endpoint(
            &default,
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://metrics.example:4318"
                ),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/v1/traces"
                ),
            ]
        ),
        "http://tempo:4318/v1/traces"
    );
    let in_code = TelemetryBuilder::default().otlp_endpoint("http://tempo:4318");
    assert_eq!(endpoint(&in_code, &[]), "http://tempo:4318/v1/traces");
    let grpc = in_code.otlp_protocol(OtlpProtocol::Grpc);
    assert_eq!(endpoint(&grpc, &[]), "http://tempo:4318");
}

#[test]
fn otlp_timeout_and_compression_are_read_not_ignored() {
    let with = |vars: &[(&str, &str)]| {
        let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")];
        all.extend_from_slice(vars);
        resolve(&TelemetryBuilder::default(), &all)
            .unwrap()
            .traces
            .export
            .expect("export on")
    };
    assert_eq!(
        with(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]).timeout,
        std::time::Duration::from_millis(2500)
    );
    // The traces variable wins, and the general one is then not read.
    assert_eq!(
        with(&[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "junk, not read"),
        ])
        .timeout,
        std::time::Duration::from_millis(700)
    );
    assert_eq!(with(&[]).compression, OtlpCompression::None);
    assert_eq!(
        with(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "None")]).compression,
        OtlpCompression::None
    );
    assert_eq!(
        with(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]).compression,
        OtlpCompression::Gzip
    );
    assert_eq!(
        with(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ])
        .compression,
        OtlpCompression::None,
        "the traces variable replaces the general one"
    );
    let in_code = TelemetryBuilder::default()
        .otlp_endpoint("http://tempo:4318")
        .otlp_compression(OtlpCompression::Gzip);
    let export = resolve(&in_code, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")])
        .unwrap()
        .traces
        .export
        .unwrap();
    assert_eq!(export.compression, OtlpCompression::Gzip, "code wins");
    for (name, value, expected) in [
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "10s",
            "a whole number of milliseconds",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "0",
            "a whole number of milliseconds",
        ),
        (
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "brotli",
            "`none` or `gzip`",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "zstd",
            "`none` or `gzip`",
        ),
    ] {
        let message = env_error(name, value);
        assert!(
            message.starts_with(&format!(
                "invalid value {value:?} for environment variable {name}: expected {expected}"
            )),
            "{message}"
        );
    }
}

#[test]
fn invalid_buckets_are_rejected() {
    for bounds in [&[][..], &[0.5, 0.1][..], &[0.1, f64::NAN][..]] {
        let builder = TelemetryBuilder::default().histogram_buckets_for("latency_seconds", bounds);
        let err = resolve(&builder, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid setting histogram_buckets_for(\"latency_seconds\")"),
            "{err}"
        );
    }
}

#[test]
#[cfg(feature = "tls")]
fn https_endpoints_are_accepted_and_insecure_decides_for_grpc_without_a_scheme() {
    let endpoint = |vars: &[(&str, &str)]| {
        resolve(&TelemetryBuilder::default(), vars)
            .unwrap()
            .traces
            .export
            .expect("export on")
            .endpoint
    };
    assert_eq!(
        endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example:4318")]),
        "https://otlp.example:4318/v1/traces"
    );
    for (ipv6, url) in [
        ("http://[::1]:4318", "http://[::1]:4318/v1/traces"),
        ("http://[::1]", "http://[::1]/v1/traces"),
        ("http://u:p@[::1]:4318", "http://u:p@[::1]:4318/v1/traces"),
    ] {
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", ipv6)]), url);
    }
    let grpc = ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    assert_eq!(
        endpoint(&[grpc, ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://tempo:4317")]),
        "https://tempo:4317"
    );
    assert_eq!(
        endpoint(&[grpc, ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317")]),
        "https://tempo:4317",
        "no scheme: TLS by default"
    );
    assert_eq!(
        endpoint(&[
            grpc,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ]),
        "http://tempo:4317"
    );
    assert_eq!(
        endpoint(&[
            grpc,
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "tempo:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
        ]),
        "https://tempo:4317",
        "the traces variable replaces the general one"
    );
    assert_eq!(
        endpoint(&[
            grpc,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://tempo:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ]),
        "https://tempo:4317",
        "a scheme wins over INSECURE"
    );
    let in_code = TelemetryBuilder::default()
        .otlp_protocol(OtlpProtocol::Grpc)
        .otlp_endpoint("tempo:4317")
        .otlp_insecure(true);
    let export = resolve(&in_code, &[("OTEL_EXPORTER_OTLP_INSECURE", "false")])
        .unwrap()
        .traces
        .export
        .unwrap();
    assert_eq!(export.endpoint, "http://tempo:4317");
    // HTTP/protobuf needs a URL.
    assert!(
        env_error("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "tempo:4318")
            .contains("expected an http:// or https:// URL")
    );
}

#[test]
fn the_log_buffer_is_bounded_in_bytes() {
    let config = resolve(&TelemetryBuilder::default(), &[]).unwrap();
    assert_eq!(config.log_buffer_bytes, DEFAULT_LOG_BUFFER_BYTES);
    assert_eq!(config.log_buffer_lines, None, "no line bound by default");
    let config = resolve(&TelemetryBuilder::default().log_buffer_bytes(4096), &[]).unwrap();
    assert_eq!(config.log_buffer_bytes, 4096);
    #[allow(deprecated)]
    let builder = TelemetryBuilder::default().log_buffer_lines(16);
    let config = resolve(&builder, &[]).unwrap();
    assert_eq!(config.log_buffer_lines, Some(16), "still honoured");
    assert_eq!(config.log_buffer_bytes, DEFAULT_LOG_BUFFER_BYTES);
    let err = resolve(&TelemetryBuilder::default().log_buffer_bytes(0), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid setting log_buffer_bytes(0): the buffer must hold at least one line"
    );
}

#[test]
fn the_metrics_token_is_trimmed_and_checked() {
    for (raw, expected) in [
        ("s3cr3t\n", Some("s3cr3t")),
        ("  s3cr3t\r\n", Some("s3cr3t")),
        ("tok\"en=/+~", Some("tok\"en=/+~")),
        (" \n", None),
    ] {
        let config = resolve(
            &TelemetryBuilder::default(),
            &[("MULTIWEB_METRICS_TOKEN", raw)],
        )
        .unwrap();
        assert_eq!(config.metrics_token.as_deref(), expected, "{raw:?}");
        let config = resolve(&TelemetryBuilder::default().metrics_token(raw), &[]).unwrap();
        assert_eq!(config.metrics_token.as_deref(), expected, "{raw:?}");
    }
    for raw in [
        "s3 cr3t",
        "s3\tcr3t",
        "s3\u{1}cr3t",
        "s3cr3t\u{7f}",
        "sécr3t",
    ] {
        let err = env_error("MULTIWEB_METRICS_TOKEN", raw);
        assert!(
            err.starts_with(
                "invalid value \"<redacted>\" for environment variable MULTIWEB_METRICS_TOKEN: \
                 expected a token of visible ASCII characters"
            ),
            "{err}"
        );
        let err = resolve(&TelemetryBuilder::default().metrics_token(raw), &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid setting metrics_token(<redacted>): a token of visible ASCII"),
            "{err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_secret_that_is_not_utf8_is_not_shown() {
    use std::os::unix::ffi::OsStringExt;
    let raw = OsString::from_vec(b"SECRET\xff".to_vec());
    for name in [
        "MULTIWEB_METRICS_TOKEN",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let err = TelemetryBuilder::default()
            .resolve(&|n| (n == name).then(|| raw.clone()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value \"<redacted>\" for environment variable {name}: \
                 expected valid UTF-8"
            )
        );
    }
    let raw = OsString::from_vec(b"http://user:SECRET@tempo:4318/\xff".to_vec());
    let err = TelemetryBuilder::default()
        .resolve(&|n| (n == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| raw.clone()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value \"http://<redacted>@tempo:4318/\u{fffd}\" for environment variable \
         OTEL_EXPORTER_OTLP_ENDPOINT: expected valid UTF-8"
    );
}

#[test]
fn attribute_value_length_limits_follow_the_standard_variables() {
    let limit = |builder: &TelemetryBuilder, vars: &[(&str, &str)]| {
        let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")];
        all.extend_from_slice(vars);
        resolve(builder, &all)
            .unwrap()
            .traces
            .export
            .expect("export on")
            .attribute_value_limit
    };
    let default = TelemetryBuilder::default();
    assert_eq!(limit(&default, &[]), DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT);
    assert_eq!(
        limit(&default, &[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1024")]),
        1024
    );
    assert_eq!(
        limit(
            &default,
            &[
                ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1024"),
                ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256"),
            ]
        ),
        256,
        "the span variable replaces the general one"
    );
    assert_eq!(
        limit(
            &default.attribute_value_length_limit(64),
            &[("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256")]
        ),
        64
    );
}

#[test]
fn endpoint_userinfo_is_never_shown() {
    let err = env_error(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "ftp://user:SECRET@tempo:4318",
    );
    assert!(
        err.starts_with(
            "invalid value \"ftp://<redacted>@tempo:4318\" for environment variable \
             OTEL_EXPORTER_OTLP_ENDPOINT: expected"
        ),
        "{err}"
    );
    let err = env_error(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "user:SECRET@tempo:4318",
    );
    assert!(
        !err.contains("SECRET") && err.contains("<redacted>@tempo:4318"),
        "{err}"
    );

    // A `?` in the password: `http` reads `user` as the host and the rest
    // of the password as its port.
    let err = env_error(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://user:SECRET?pass@tempo:4318",
    );
    assert!(
        err.starts_with(
            "invalid value \"http://<redacted>@tempo:4318\" for environment variable \
             OTEL_EXPORTER_OTLP_ENDPOINT: expected"
        ),
        "{err}"
    );

    let builder = TelemetryBuilder::default().otlp_endpoint("ftp://user:SECRET@tempo:4318");
    assert!(!format!("{builder:?}").contains("SECRET"), "{builder:?}");
    let err = resolve(&builder, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid setting otlp_endpoint(\"ftp://<redacted>@tempo:4318\")"),
        "{err}"
    );
}

#[test]
fn userinfo_is_everything_before_the_last_at_sign() {
    use super::env::without_userinfo;
    for (url, shown) in [
        ("http://tempo:4318/v1/traces", "http://tempo:4318/v1/traces"),
        (
            "https://user:pw@tempo:4318",
            "https://<redacted>@tempo:4318",
        ),
        ("https://user:p@ss@tempo/x", "https://<redacted>@tempo/x"),
        ("https://us/er:pw@tempo/x", "https://<redacted>@tempo/x"),
        ("user:pw@tempo:4318", "<redacted>@tempo:4318"),
        (
            "https://user:pa?ss@tempo:4318",
            "https://<redacted>@tempo:4318",
        ),
        (
            "https://user:pa#ss@tempo:4318",
            "https://<redacted>@tempo:4318",
        ),
        ("http://tempo/?q=a@b", "http://<redacted>@b"),
        ("", ""),
    ] {
        assert_eq!(without_userinfo(url), shown, "{url}");
    }
}

/// Without the `tls` feature an `https://` endpoint, or a TLS file, is an
/// error naming the feature, rather than an exporter that fails every
/// request.
#[test]
#[cfg(not(feature = "tls"))]
fn without_tls_https_endpoints_and_tls_files_name_the_feature() {
    let refused = |vars: &[(&str, &str)]| match resolve(&TelemetryBuilder::default(), vars) {
        Err(err @ Error::FeatureDisabled { feature: "tls", .. }) => err.to_string(),
        other => panic!("expected the tls feature to be named, got {other:?}"),
    };
    let message = refused(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example:4318")]);
    assert!(message.contains("`tls` feature"), "{message}");
    refused(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317"),
    ]);
    refused(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
    ]);
    let plain = resolve(
        &TelemetryBuilder::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")],
    )
    .unwrap();
    assert!(plain.traces.export.is_some(), "plain http:// is fine");
}
