//! The TLS files of the OTLP exporter: read and checked when the settings
//! resolve, with errors that name the variable and the file.

use std::fmt::Write as _;

use super::tests::resolve;
use super::*;
use crate::Error;

/// Certificates made for the test: a CA, a client certificate it signed,
/// and their keys, written into a directory of their own.
struct TlsFiles {
    dir: std::path::PathBuf,
}

impl TlsFiles {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("multiweb-config-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
            ("other.key", other_key.serialize_pem()),
            ("junk.pem", "not a certificate\n".to_owned()),
        ] {
            std::fs::write(dir.join(file), pem).unwrap();
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn key_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("client.key")).unwrap()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn export_with(builder: &TelemetryBuilder, vars: &[(&str, &str)]) -> Result<OtlpExport, Error> {
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://tempo:4318")];
    all.extend_from_slice(vars);
    resolve(builder, &all).map(|config| config.traces.export.expect("export on"))
}

#[test]
fn tls_files_are_read_and_checked_at_start() {
    let files = TlsFiles::new("ok");
    let default = TelemetryBuilder::default();
    let export = export_with(&default, &[]).unwrap();
    assert!(
        export.tls.roots.is_none(),
        "the platform's roots by default"
    );
    assert!(export.tls.client.is_none());

    let (ca, cert, key) = (
        files.path("ca.pem"),
        files.path("client.pem"),
        files.path("client.key"),
    );
    let export = export_with(
        &default,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
        ],
    )
    .unwrap();
    assert_eq!(export.tls.roots.as_ref().map(|r| r.len()), Some(1));
    assert!(export.tls.client.is_some());
    assert!(!format!("{export:?}").contains("PRIVATE KEY"), "{export:?}");

    // The traces variables replace the general ones, which are then not read.
    let export = export_with(
        &default,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nowhere/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nowhere/client.key"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", &cert),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", &key),
        ],
    )
    .unwrap();
    assert!(export.tls.roots.is_some() && export.tls.client.is_some());

    // The builder wins.
    let in_code = TelemetryBuilder::default()
        .otlp_certificate(&ca)
        .otlp_client_certificate(&cert)
        .otlp_client_key(&key);
    let export = export_with(
        &in_code,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nowhere/ca.pem")],
    )
    .unwrap();
    assert!(export.tls.roots.is_some() && export.tls.client.is_some());

    // Without an endpoint nothing is read.
    resolve(
        &default,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nowhere/ca.pem")],
    )
    .unwrap();
}

#[test]
fn bad_tls_files_name_the_variable_and_the_file_never_the_key() {
    let files = TlsFiles::new("bad");
    let default = TelemetryBuilder::default();
    let key_text = files.key_text();
    let error = |vars: &[(&str, &str)]| {
        let err = export_with(&default, vars).unwrap_err();
        let message = err.to_string();
        let mut full = message.clone();
        let mut source = std::error::Error::source(&err);
        while let Some(err) = source {
            let _ = write!(full, ": {err}");
            source = err.source();
        }
        assert!(!full.contains(&key_text[40..80]), "{full}");
        assert!(!full.contains("PRIVATE KEY"), "{full}");
        message
    };
    let (ca, cert, key, other, junk) = (
        files.path("ca.pem"),
        files.path("client.pem"),
        files.path("client.key"),
        files.path("other.key"),
        files.path("junk.pem"),
    );
    let missing = files.path("missing.pem");
    for (vars, name, file) in [
        (
            vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", missing.as_str())],
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            &missing,
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", junk.as_str())],
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            &junk,
        ),
        (
            // A key is not a certificate.
            vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", key.as_str())],
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            &key,
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.as_str()),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", other.as_str()),
            ],
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            &other,
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.as_str()),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", ca.as_str()),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            &ca,
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", key.as_str()),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.as_str()),
            ],
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            &key,
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.as_str())],
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            &key,
        ),
    ] {
        let message = error(&vars);
        assert!(
            message.starts_with(&format!(
                "invalid value {file:?} for environment variable {name}: expected "
            )),
            "{message}"
        );
    }
    let in_code = TelemetryBuilder::default()
        .otlp_client_certificate(&cert)
        .otlp_client_key(&other);
    let message = export_with(&in_code, &[]).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("invalid setting otlp_client_key({other:?}): ")),
        "{message}"
    );
}
