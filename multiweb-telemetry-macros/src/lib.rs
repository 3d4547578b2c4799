//! Procedural macros for `multiweb-telemetry`, re-exported by it: use them
//! as `multiweb_telemetry::business_metric` and
//! `multiweb_telemetry::LabelValue`.
//!
//! Each entry point parses (`attr.rs`), checks the guide's naming rules
//! (`valid.rs`) and generates code (`expand.rs`). An error becomes a
//! `compile_error!` pointing at the offending token, and the user's item is
//! still emitted, so one mistake gives one message.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod label;
mod valid;

/// Declares a business metric, or counts the successful calls of a function.
///
/// See `multiweb_telemetry::business` for the full documentation.
#[proc_macro_attribute]
pub fn business_metric(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::business_metric(args.into(), item.into()).into()
}

/// Derives `LabelValue` for a field-less enum: its variants become the
/// closed set of label values, in snake_case.
#[proc_macro_derive(LabelValue)]
pub fn derive_label_value(item: TokenStream) -> TokenStream {
    label::derive(item.into()).into()
}
