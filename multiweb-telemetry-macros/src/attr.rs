//! Parsing `#[business_metric(...)]` arguments.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Path, Token, Type};

/// One `key: Type` inside `labels(...)`.
pub(crate) struct LabelArg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

impl Parse for LabelArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = input.parse()?;
        input.parse::<Token![:]>()?;
        Ok(Self {
            name,
            ty: input.parse()?,
        })
    }
}

/// The arguments, all optional.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) namespace: Option<LitStr>,
    pub(crate) labels: Vec<LabelArg>,
    pub(crate) buckets: Option<syn::ExprArray>,
    /// `count = STATIC` on a function.
    pub(crate) count: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Self::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            match key.to_string().as_str() {
                "name" => {
                    input.parse::<Token![=]>()?;
                    args.name = Some(input.parse()?);
                }
                "namespace" => {
                    input.parse::<Token![=]>()?;
                    args.namespace = Some(input.parse()?);
                }
                "count" => {
                    input.parse::<Token![=]>()?;
                    args.count = Some(input.parse()?);
                }
                "buckets" => {
                    input.parse::<Token![=]>()?;
                    args.buckets = Some(input.parse()?);
                }
                "labels" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let labels: Punctuated<LabelArg, Token![,]> =
                        content.parse_terminated(LabelArg::parse, Token![,])?;
                    args.labels = labels.into_iter().collect();
                }
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        "unknown argument: expected `name`, `namespace`, `labels`, `buckets` or `count`",
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}
