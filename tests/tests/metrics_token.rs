//! The `/metrics` bearer token as operators set it: read from a secret file
//! with its trailing newline, sent with the scheme in any case.

use multiweb_tests::{run_marketplace_to_exit, start_marketplace};

#[test]
fn a_token_with_surrounding_whitespace_is_trimmed() {
    for token in ["s3cr3t\n", "  s3cr3t\r\n", "\ts3cr3t "] {
        let app = start_marketplace(&[], &[("MULTIWEB_METRICS_TOKEN", token)]);
        for authorization in [
            "Bearer s3cr3t",
            "bearer s3cr3t",
            "BEARER s3cr3t",
            "Bearer   s3cr3t",
        ] {
            let response = app.get("/metrics", &[("authorization", authorization)]);
            assert_eq!(
                response.status, 200,
                "token {token:?}, {authorization:?}: {}",
                response.body
            );
        }
        for wrong in ["", "Bearer", "Bearer s3cr3", "Basic s3cr3t", "Bearers3cr3t"] {
            let headers: &[(&str, &str)] = if wrong.is_empty() {
                &[]
            } else {
                &[("authorization", wrong)]
            };
            assert_eq!(app.get("/metrics", headers).status, 401, "{wrong:?}");
        }
    }
}

/// A token with whitespace or control characters inside could never match
/// a header Prometheus sends: `init()` refuses it, naming the variable.
#[test]
fn a_token_that_can_never_match_is_refused_at_start() {
    for token in [
        "s3 cr3t",
        "s3\tcr3t",
        "s3\u{1}cr3t",
        "s3cr3t\u{7f}",
        "s3\ncr3t",
        "sécret",
    ] {
        let output = run_marketplace_to_exit(
            &["--listen", "127.0.0.1:0"],
            &[("MULTIWEB_METRICS_TOKEN", token)],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{token:?}: {stderr}");
        assert!(
            stderr.contains("environment variable MULTIWEB_METRICS_TOKEN"),
            "{token:?}: {stderr}"
        );
        assert!(
            !stderr.contains("cr3t") && !stderr.contains("cret"),
            "{token:?}: {stderr}"
        );
    }
}
