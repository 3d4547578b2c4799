//! Procedural macros for `multiweb-telemetry`.
//!
//! The `#[business_metric]` family is planned here; the crate currently
//! exports nothing.
