//! Start-up never prints a secret: errors about a variable that holds one
//! (the metrics token, OTLP header values, the userinfo of an endpoint URL)
//! name the variable and the problem, never the value, and nothing the app
//! logs afterwards shows them either.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use multiweb_tests::{run_marketplace_to_exit, start_marketplace};

/// Secret-bearing variables with values `init()` refuses, and the secret
/// inside each value.
fn refused() -> Vec<(&'static str, OsString, &'static str)> {
    let os = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
    vec![
        (
            "MULTIWEB_METRICS_TOKEN",
            os(b"SECRETtoken\xff\xfe"),
            "SECRETtoken",
        ),
        ("MULTIWEB_METRICS_TOKEN", os(b"SECRET token"), "SECRET"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            os(b"authorization=Bearer SECRETkey\xff"),
            "SECRETkey",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            os(b"authorization=SECRETkey,oops"),
            "SECRETkey",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            os(b"ftp://user:SECRETpass@tempo:4318"),
            "SECRETpass",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            os(b"http://user:SECRETpass@"),
            "SECRETpass",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            os(b"user:SECRETpass@tempo:4318"),
            "SECRETpass",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            os(b"http://user:SECRETpass@tempo:4318/\xff"),
            "SECRETpass",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            os(b"http://user:SECRETpa?ss@tempo:4318"),
            "SECRETpa",
        ),
    ]
}

#[test]
fn start_up_errors_name_the_variable_never_the_secret() {
    for (name, value, secret) in refused() {
        let output = run_marketplace_to_exit(&["--listen", "127.0.0.1:0"], &[(name, &value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{name}={value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("environment variable {name}")),
            "the error names the variable: {stderr}"
        );
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{name}={value:?} printed its secret:\n{stderr}{stdout}"
        );
    }
}

/// An endpoint with credentials in its userinfo is accepted (this build
/// sends no credentials from it); nothing the app logs shows them, even
/// when exporting to it fails.
#[test]
fn an_endpoint_with_userinfo_is_never_logged() {
    let app = start_marketplace(
        &[],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://user:SECRETpass@127.0.0.1:9",
        )],
    );
    assert_eq!(app.get("/health", &[]).status, 200);
    // The export to a closed port fails and is logged.
    app.wait_json(|line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("export failed"))
    });
    let (_, stdout) = app.stop();
    let printed = stdout.join("\n");
    assert!(!printed.contains("SECRETpass"), "{printed}");
}
