//! Examples for `multiweb-telemetry`; see the `[[example]]` targets.
