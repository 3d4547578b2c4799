//! Label values: methods, routes and status codes, from small closed sets.

use http::Method;

/// `path` of requests that matched no route.
pub const UNMATCHED_PATH: &str = "unmatched";

/// `path` of requests diverted because the series cap was reached.
pub const OVERFLOW_PATH: &str = "overflow";

/// `method` of requests whose method is not one of the nine standard ones
/// (the OpenTelemetry convention).
pub const OTHER_METHOD: &str = "_OTHER";

/// The method label values, indexed by [`method_index`].
pub(crate) const METHODS: [&str; 10] = [
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    OTHER_METHOD,
];

/// The index of `method` in [`METHODS`]; non-standard methods share the last.
pub(crate) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_closed_set() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::TRACE)], "TRACE");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(METHODS[method_index(&odd)], "_OTHER");
    }
}
