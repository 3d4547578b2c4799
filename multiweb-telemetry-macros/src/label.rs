//! `#[derive(LabelValue)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn derive(item: TokenStream) -> TokenStream {
    match expand(item) {
        Ok(tokens) => tokens,
        Err(err) => err.to_compile_error(),
    }
}

fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "`LabelValue` is derived for enums: their variants are the closed set of label values",
        ));
    };
    if data.variants.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "a label needs at least one value",
        ));
    }
    let mut names = Vec::new();
    let mut arms = Vec::new();
    for (index, variant) in data.variants.iter().enumerate() {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                &variant.fields,
                "label values are field-less variants: a field would make the set open",
            ));
        }
        let ident = &variant.ident;
        names.push(snake_case(&ident.to_string()));
        arms.push(quote!(Self::#ident => #index));
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::multiweb_telemetry::business::LabelValue for #ident #ty_generics #where_clause {
            const VALUES: &'static [&'static str] = &[#(#names),*];
            #[inline]
            fn index(&self) -> usize {
                match self { #(#arms),* }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn variants_become_snake_case() {
        assert_eq!(super::snake_case("BankTransfer"), "bank_transfer");
        assert_eq!(super::snake_case("Card"), "card");
    }
}
