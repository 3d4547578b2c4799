//! Label values from small closed sets: methods and the reserved `path`
//! values. Shared by the metrics, the request span and the access line.

/// `path` of requests that matched no route.
pub const UNMATCHED_PATH: &str = "unmatched";

/// `path` of requests diverted because the series cap was reached.
pub const OVERFLOW_PATH: &str = "overflow";

/// `method` of requests whose method is not one of the nine standard ones
/// (the OpenTelemetry convention).
pub const OTHER_METHOD: &str = "_OTHER";

/// The method label values, in [`Method`]'s order.
const METHODS: [&str; Method::COUNT] = [
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

/// A request method as a label: one of the nine standard methods, or
/// [`OTHER_METHOD`] for any other, so that a client cannot create series
/// with made-up methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Method(u8);

impl Method {
    /// How many label values there are: arrays indexed by [`Method::index`]
    /// have this length.
    pub(crate) const COUNT: usize = 10;

    /// The label of `method`.
    pub(crate) fn of(method: &http::Method) -> Self {
        Self(match *method {
            http::Method::GET => 0,
            http::Method::POST => 1,
            http::Method::PUT => 2,
            http::Method::DELETE => 3,
            http::Method::PATCH => 4,
            http::Method::HEAD => 5,
            http::Method::OPTIONS => 6,
            http::Method::CONNECT => 7,
            http::Method::TRACE => 8,
            _ => 9,
        })
    }

    /// The label value, e.g. `GET` or `_OTHER`.
    pub(crate) fn as_str(self) -> &'static str {
        METHODS.get(self.index()).copied().unwrap_or(OTHER_METHOD)
    }

    /// Where this method's entry is in an array of [`Method::COUNT`] entries.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_closed_set() {
        assert_eq!(Method::of(&http::Method::GET).as_str(), "GET");
        assert_eq!(Method::of(&http::Method::TRACE).as_str(), "TRACE");
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(Method::of(&odd).as_str(), "_OTHER");
        assert_eq!(Method::of(&odd).index(), Method::COUNT - 1);
        let standard = [
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::DELETE,
            http::Method::PATCH,
            http::Method::HEAD,
            http::Method::OPTIONS,
            http::Method::CONNECT,
            http::Method::TRACE,
        ];
        for (index, method) in standard.iter().enumerate() {
            assert_eq!(Method::of(method).index(), index);
            assert_eq!(Method::of(method).as_str(), method.as_str());
        }
    }
}
