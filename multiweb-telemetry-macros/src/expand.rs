//! Code generation for `#[business_metric]`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemFn, Token, Type, Visibility};

use crate::attr::Args;
use crate::valid::{self, Kind};

/// `static NAME: Type;`, the form a metric is declared in (no initializer:
/// the macro writes it).
struct MetricStatic {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    ty: Type,
}

impl Parse for MetricStatic {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![static]>()?;
        let ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        input.parse::<Token![;]>()?;
        Ok(Self {
            attrs,
            vis,
            ident,
            ty,
        })
    }
}

/// The entry point: a static declares a metric, a function counts its successes.
pub(crate) fn business_metric(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = syn::parse2::<Args>(args);
    if let Ok(function) = syn::parse2::<ItemFn>(item.clone()) {
        return match parsed.and_then(|args| counted_fn(&args, function.clone())) {
            Ok(tokens) => tokens,
            // Still emit the function, so one mistake gives one message.
            Err(err) => {
                let error = err.to_compile_error();
                quote! { #error #function }
            }
        };
    }
    match parsed.and_then(|args| {
        let metric = syn::parse2::<MetricStatic>(item.clone())?;
        metric_static(&args, &metric)
    }) {
        Ok(tokens) => tokens,
        Err(err) => fallback(&err, item),
    }
}

/// On error: the error, and a placeholder static of the declared type so
/// that uses of it elsewhere do not add errors of their own.
fn fallback(err: &syn::Error, item: TokenStream) -> TokenStream {
    let error = err.to_compile_error();
    match syn::parse2::<MetricStatic>(item) {
        // A placeholder of an ill-formed type (`CounterVec<String>`) would
        // only add a second error.
        Ok(MetricStatic { ty, .. })
            if type_parts(&ty)
                .and_then(|(_, generic)| generic)
                .is_some_and(|label| valid::check_label_type(&label).is_err()) =>
        {
            error
        }
        Ok(MetricStatic { vis, ident, ty, .. }) => quote! {
            #error
            #vis static #ident: #ty = <#ty as ::multiweb_telemetry::business::__private::Placeholder>::PLACEHOLDER;
        },
        Err(_) => error,
    }
}

fn help_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// The metric type's last path segment and its generic argument, if any.
fn type_parts(ty: &Type) -> Option<(Ident, Option<Type>)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let generic = match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    };
    Some((last.ident.clone(), generic))
}

fn metric_static(args: &Args, metric: &MetricStatic) -> syn::Result<TokenStream> {
    if let Some(count) = &args.count {
        return Err(syn::Error::new_spanned(
            count,
            "`count = ...` belongs on a function, not on a metric",
        ));
    }
    let (type_ident, label_ty) = type_parts(&metric.ty).ok_or_else(|| {
        syn::Error::new_spanned(
            &metric.ty,
            "expected a metric type: Counter, CounterVec<L>, Gauge, GaugeVec<L>, Histogram or Summary",
        )
    })?;
    let (kind, labelled) = Kind::from_type_name(&type_ident.to_string()).ok_or_else(|| {
        syn::Error::new_spanned(
            &metric.ty,
            "expected a metric type: Counter, CounterVec<L>, Gauge, GaugeVec<L>, Histogram or Summary",
        )
    })?;
    let help = help_text(&metric.attrs);
    if help.is_empty() {
        return Err(syn::Error::new(
            metric.ident.span(),
            "a business metric needs a `///` doc comment: it becomes the metric's HELP text",
        ));
    }
    let namespace = args.namespace.as_ref().map_or_else(
        || ("multiweb".to_owned(), metric.ident.span()),
        |lit| (lit.value(), lit.span()),
    );
    let explicit = args.name.as_ref().map(|lit| (lit.value(), lit.span()));
    let name = valid::metric_name(
        kind,
        explicit.as_ref().map(|(n, s)| (n.as_str(), *s)),
        (&namespace.0, namespace.1),
        &metric.ident,
    )?;

    let label_name = check_labels(args, labelled, label_ty.as_ref(), &metric.ty)?;
    if args.buckets.is_some() && kind != Kind::Histogram {
        return Err(syn::Error::new_spanned(
            &args.buckets,
            "`buckets` is for histograms only",
        ));
    }

    let MetricStatic {
        attrs,
        vis,
        ident,
        ty,
    } = metric;
    let krate = quote!(::multiweb_telemetry::business);
    let kind_tokens = match kind {
        Kind::Counter => quote!(#krate::Kind::Counter),
        Kind::Gauge => quote!(#krate::Kind::Gauge),
        Kind::Histogram => quote!(#krate::Kind::Histogram),
        Kind::Summary => quote!(#krate::Kind::Summary),
    };
    let label_tokens = match &label_name {
        Some(label) => quote!(::core::option::Option::Some(#label)),
        None => quote!(::core::option::Option::None),
    };
    let meta = quote! {
        static __MULTIWEB_META: #krate::Meta = #krate::Meta::new(
            #name, #help, #kind_tokens, #label_tokens, ::core::file!(), ::core::line!(),
        );
    };
    let init = initializer(kind, label_ty.as_ref(), labelled, args.buckets.as_ref());
    Ok(quote! {
        #(#attrs)*
        #vis static #ident: #ty = {
            #meta
            #init
        };
        #krate::__private::inventory::submit! {
            #krate::Registration::new(&#ident)
        }
    })
}

/// The expression that builds the metric's value, with the statics it needs.
fn initializer(
    kind: Kind,
    label_ty: Option<&Type>,
    labelled: bool,
    buckets: Option<&syn::ExprArray>,
) -> TokenStream {
    let krate = quote!(::multiweb_telemetry::business);
    match (kind, label_ty, labelled) {
        (Kind::Counter | Kind::Gauge, Some(label), true) => {
            let label = quote_spanned!(label.span()=> #label);
            let constructor = if kind == Kind::Counter {
                quote!(CounterVec)
            } else {
                quote!(GaugeVec)
            };
            quote! {
                static __MULTIWEB_SLOTS: [::core::sync::atomic::AtomicU64; <#label as #krate::LabelValue>::VALUES.len()] =
                    [const { ::core::sync::atomic::AtomicU64::new(0) }; <#label as #krate::LabelValue>::VALUES.len()];
                #krate::#constructor::new(&__MULTIWEB_META, &__MULTIWEB_SLOTS)
            }
        }
        (Kind::Counter, _, _) => quote!(#krate::Counter::new(&__MULTIWEB_META)),
        (Kind::Gauge, _, _) => quote!(#krate::Gauge::new(&__MULTIWEB_META)),
        (Kind::Summary, _, _) => quote!(#krate::Summary::new(&__MULTIWEB_META)),
        (Kind::Histogram, _, _) => {
            let bounds = match buckets {
                Some(array) => quote!(&#array),
                None => quote!(::multiweb_telemetry::DEFAULT_BUCKETS),
            };
            quote! {
                const __MULTIWEB_BOUNDS: &[f64] = #bounds;
                static __MULTIWEB_BUCKETS: [::core::sync::atomic::AtomicU64; __MULTIWEB_BOUNDS.len() + 2] =
                    [const { ::core::sync::atomic::AtomicU64::new(0) }; __MULTIWEB_BOUNDS.len() + 2];
                #krate::Histogram::new(&__MULTIWEB_META, __MULTIWEB_BOUNDS, &__MULTIWEB_BUCKETS)
            }
        }
    }
}

/// The label of a labelled metric (`labels(name: Type)`), checked.
fn check_labels(
    args: &Args,
    labelled: bool,
    label_ty: Option<&Type>,
    metric_ty: &Type,
) -> syn::Result<Option<String>> {
    Ok(match (labelled, args.labels.as_slice()) {
        (true, [label]) => {
            valid::check_label_type(&label.ty)?;
            if label_ty.map(|t| t.to_token_stream().to_string())
                != Some(label.ty.to_token_stream().to_string())
            {
                return Err(syn::Error::new_spanned(
                    &label.ty,
                    "the label's type must be the metric type's parameter, e.g. \
                     `labels(method: PaymentMethod)` with `CounterVec<PaymentMethod>`",
                ));
            }
            let label_name = label.name.to_string();
            if label_name.starts_with("__") || label_name == "le" || label_name == "quantile" {
                return Err(syn::Error::new(
                    label.name.span(),
                    "this label name is reserved by Prometheus",
                ));
            }
            Some(label_name)
        }
        (true, []) => {
            return Err(syn::Error::new_spanned(
                metric_ty,
                "a labelled metric needs `labels(name: Type)` in `#[business_metric(...)]`",
            ));
        }
        (true, [_, second, ..]) => {
            return Err(syn::Error::new(
                second.name.span(),
                "one label per metric is supported",
            ));
        }
        (false, [first, ..]) => {
            valid::check_label_type(&first.ty)?;
            return Err(syn::Error::new(
                first.name.span(),
                "labels need a labelled type: CounterVec<L> or GaugeVec<L>",
            ));
        }
        (false, []) => None,
    })
}

/// `#[business_metric(count = STATIC)]` on a function: counts each call that
/// succeeds (`Ok` for a `Result`, any return otherwise).
fn counted_fn(args: &Args, mut function: ItemFn) -> syn::Result<TokenStream> {
    let Some(counter) = &args.count else {
        return Err(syn::Error::new(
            function.sig.ident.span(),
            "on a function, `#[business_metric(count = STATIC)]` names the counter to increment",
        ));
    };
    if args.name.is_some()
        || args.namespace.is_some()
        || !args.labels.is_empty()
        || args.buckets.is_some()
    {
        return Err(syn::Error::new(
            function.sig.ident.span(),
            "on a function only `count = STATIC` is accepted",
        ));
    }
    let krate = quote!(::multiweb_telemetry::business);
    let block = &function.block;
    let output = match &function.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let body = if function.sig.asyncness.is_some() {
        quote_spanned! {block.span()=>
            let __multiweb_result: #output = async move #block.await;
        }
    } else {
        quote_spanned! {block.span()=>
            #[allow(clippy::redundant_closure_call)]
            let __multiweb_result: #output = (move || -> #output #block)();
        }
    };
    let counter_span = counter.span();
    let increment = quote_spanned! {counter_span=>
        if {
            #[allow(unused_imports)]
            use #krate::__private::{IsSuccess as _, AlwaysSuccess as _};
            (&__multiweb_result).__multiweb_is_success()
        } {
            #krate::Increment::increment_by_one(&#counter);
        }
    };
    function.block = syn::parse2(quote! {{
        #body
        #increment
        __multiweb_result
    }})?;
    Ok(function.into_token_stream())
}
