//! The guide's naming rules: `<namespace>_<name>_<unit>_<suffix>`, checked at
//! compile time.

use proc_macro2::Span;

/// The kinds of metric a static can declare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub(crate) fn from_type_name(name: &str) -> Option<(Self, bool)> {
        Some(match name {
            "Counter" => (Self::Counter, false),
            "CounterVec" => (Self::Counter, true),
            "Gauge" => (Self::Gauge, false),
            "GaugeVec" => (Self::Gauge, true),
            "Histogram" => (Self::Histogram, false),
            "Summary" => (Self::Summary, false),
            _ => return None,
        })
    }
}

/// Units that are not base units, with the base unit to use instead.
const NON_BASE_UNITS: &[(&str, &str)] = &[
    ("milliseconds", "seconds"),
    ("microseconds", "seconds"),
    ("nanoseconds", "seconds"),
    ("ms", "seconds"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("kilobytes", "bytes"),
    ("megabytes", "bytes"),
    ("gigabytes", "bytes"),
    ("kb", "bytes"),
    ("mb", "bytes"),
];

const RESERVED_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count", "_created"];

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// The exported name for `kind`, from the explicit `name` or from the
/// static's identifier, or an error saying which rule is broken.
pub(crate) fn metric_name(
    kind: Kind,
    explicit: Option<(&str, Span)>,
    namespace: (&str, Span),
    ident: &syn::Ident,
) -> syn::Result<String> {
    let (base, span) = match explicit {
        Some((name, span)) => (name.to_owned(), span),
        None => {
            let ident_name = ident.to_string();
            if ident_name.chars().any(|c| c.is_ascii_lowercase()) {
                return Err(syn::Error::new(
                    ident.span(),
                    "a metric static is named in SCREAMING_SNAKE_CASE (e.g. `PRODUCTS_CREATED`); \
                     its metric name is derived from it",
                ));
            }
            let (namespace, _) = namespace;
            (
                format!("{namespace}_{}", ident_name.to_ascii_lowercase()),
                ident.span(),
            )
        }
    };
    if !is_snake_case(&base) {
        return Err(syn::Error::new(
            span,
            format!(
                "metric name `{base}` is not snake_case (lowercase letters, digits, single `_`)"
            ),
        ));
    }
    for part in base.split('_') {
        if let Some((unit, base_unit)) = NON_BASE_UNITS.iter().find(|(u, _)| *u == part) {
            return Err(syn::Error::new(
                span,
                format!(
                    "metric name `{base}` uses the unit `{unit}`; use the base unit `{base_unit}` \
                     (Prometheus convention: `_seconds`, `_bytes`)"
                ),
            ));
        }
    }
    let name = match kind {
        Kind::Counter if base.ends_with("_total") => base,
        Kind::Counter => format!("{base}_total"),
        Kind::Gauge | Kind::Histogram | Kind::Summary if base.ends_with("_total") => {
            return Err(syn::Error::new(
                span,
                format!(
                    "metric name `{base}` ends in `_total`, which is for counters only; a gauge, \
                     histogram or summary must not use it"
                ),
            ));
        }
        _ => base,
    };
    // Checked on the exported name: `x_created_total` is a fine counter.
    let base = &name;
    for suffix in RESERVED_SUFFIXES {
        if base.ends_with(suffix) {
            return Err(syn::Error::new(
                span,
                format!(
                    "metric name `{base}` ends in `{suffix}`, which Prometheus reserves for the \
                     series of histograms and summaries"
                ),
            ));
        }
    }
    Ok(name)
}

/// Label types that are open sets: a compile error that says why.
pub(crate) fn check_label_type(ty: &syn::Type) -> syn::Result<()> {
    let open = match ty {
        syn::Type::Reference(_) => true,
        syn::Type::Path(path) => path.path.segments.last().is_some_and(|s| {
            matches!(
                s.ident.to_string().as_str(),
                "String"
                    | "str"
                    | "Cow"
                    | "u8"
                    | "u16"
                    | "u32"
                    | "u64"
                    | "u128"
                    | "usize"
                    | "i8"
                    | "i16"
                    | "i32"
                    | "i64"
                    | "i128"
                    | "isize"
                    | "f32"
                    | "f64"
                    | "char"
            )
        }),
        _ => false,
    };
    if open {
        return Err(syn::Error::new_spanned(
            ty,
            "label values must come from a closed set: use an enum that derives `LabelValue`. \
             A free value such as a `String` user_id creates one series per value \
             (unbounded cardinality), which the monitoring guide forbids",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(kind: Kind, ident: &str) -> Result<String, String> {
        let ident = syn::Ident::new(ident, Span::call_site());
        metric_name(kind, None, ("multiweb", Span::call_site()), &ident).map_err(|e| e.to_string())
    }

    #[test]
    fn names_follow_the_guide() {
        assert_eq!(
            name(Kind::Counter, "PRODUCTS_CREATED").unwrap(),
            "multiweb_products_created_total"
        );
        assert_eq!(
            name(Kind::Counter, "REQUESTS_TOTAL").unwrap(),
            "multiweb_requests_total"
        );
        assert_eq!(
            name(Kind::Gauge, "ACTIVE_USERS").unwrap(),
            "multiweb_active_users"
        );
        assert!(
            name(Kind::Gauge, "USERS_TOTAL")
                .unwrap_err()
                .contains("counters only")
        );
        assert!(
            name(Kind::Gauge, "ITEMS_COUNT")
                .unwrap_err()
                .contains("reserves")
        );
        assert!(
            name(Kind::Gauge, "JOBS_CREATED")
                .unwrap_err()
                .contains("reserves")
        );
        assert_eq!(
            name(Kind::Counter, "ITEMS_COUNT").unwrap(),
            "multiweb_items_count_total"
        );
        assert!(
            name(Kind::Histogram, "LATENCY_MILLISECONDS")
                .unwrap_err()
                .contains("`seconds`")
        );
        assert!(
            name(Kind::Counter, "Products")
                .unwrap_err()
                .contains("SCREAMING_SNAKE_CASE")
        );
    }
}
