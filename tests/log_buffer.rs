//! Log lines written in memory, for tests that run the library in-process.

use std::sync::{Arc, Mutex};

/// Log lines written in memory: give a clone to
/// `TelemetryBuilder::log_writer` (or a `JsonLayer`), read them back.
#[derive(Clone, Default, Debug)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 log lines")
    }

    /// The lines written.
    pub fn raw_lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// The lines written, parsed as JSON.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.raw_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The HTTP layer's access lines (target `multiweb_telemetry::http`).
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.json()
            .into_iter()
            .filter(|line| line["target"] == "multiweb_telemetry::http")
            .collect()
    }
}
