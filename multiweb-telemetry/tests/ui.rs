//! Compile-time rules of `#[business_metric]`: each `fail/` case gives one
//! error pointing at the offending token (see its `.stderr`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
