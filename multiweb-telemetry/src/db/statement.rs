//! What a query's span and metrics say about its statement: the operation
//! (`SELECT`), the collection (`products`), and the text without literals.
//!
//! This is a scanner, not a SQL parser: it reads the first keyword, the
//! first table named after `FROM`, `INTO`, `UPDATE` or `TABLE` outside
//! parentheses, and replaces literals. That is what the OpenTelemetry
//! conventions ask of a client that cannot parse the dialect.

use std::borrow::Cow;

/// Operation names: the keywords a statement may start with. Anything else
/// is [`OTHER`], so the `db_operation` label stays a small closed set.
const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "MERGE",
    "REPLACE",
    "UPSERT",
    "PRAGMA",
    "SET",
    "SHOW",
    "EXPLAIN",
    "ANALYZE",
    "VACUUM",
    "COPY",
    "CALL",
    "GRANT",
    "REVOKE",
    "LOCK",
    "VALUES",
    "LISTEN",
    "NOTIFY",
];

/// The operation of a statement that starts with no known keyword.
pub(crate) const OTHER: &str = "OTHER";

/// How many distinct operations there are: [`OPERATIONS`] and [`OTHER`].
pub(crate) const OPERATION_COUNT: usize = OPERATIONS.len() + 1;

/// The operation of a statement: its name (`SELECT`, ... or [`OTHER`]) and
/// the name's position in `0..OPERATION_COUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operation {
    pub(crate) name: &'static str,
    pub(crate) index: usize,
}

impl Operation {
    /// The operation `word` names, if it is a known keyword.
    fn named(word: &str) -> Option<Self> {
        OPERATIONS
            .iter()
            .position(|op| op.eq_ignore_ascii_case(word))
            .map(|index| Self {
                name: OPERATIONS[index],
                index,
            })
    }

    /// The operation of `sql`: its first keyword, or for `WITH x AS (...)
    /// SELECT ...` the main statement's.
    pub(crate) fn of(sql: &str) -> Self {
        let mut words = Words::new(sql);
        let other = Self {
            name: OTHER,
            index: OPERATIONS.len(),
        };
        let Some(first) = words.next().and_then(Self::named) else {
            return other;
        };
        if first.name != "WITH" {
            return first;
        }
        words
            .find_map(|w| {
                ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"]
                    .iter()
                    .any(|op| op.eq_ignore_ascii_case(w))
                    .then(|| Self::named(w))
                    .flatten()
            })
            .unwrap_or(first)
    }
}

/// The first table `sql` names after `FROM`, `INTO`, `UPDATE`, `TABLE` or
/// `JOIN` outside parentheses, without quotes.
pub(crate) fn collection(sql: &str) -> Option<&str> {
    let mut words = Words::new(sql);
    let mut expecting_table = false;
    while let Some(word) = words.next() {
        if expecting_table && words.depth == 0 && !is_keyword(word) {
            return Some(unquote(word));
        }
        expecting_table = (expecting_table && is_keyword(word))
            || ["FROM", "INTO", "UPDATE", "TABLE", "JOIN"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(word));
    }
    None
}

/// Words that may follow `FROM`/`INTO`/`TABLE` without being a table.
fn is_keyword(word: &str) -> bool {
    ["IF", "NOT", "EXISTS", "ONLY", "LATERAL", "SELECT"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
}

fn unquote(word: &str) -> &str {
    word.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
}

/// The identifier-like words of a statement outside string literals and
/// comments, with the parenthesis depth at each.
#[derive(Clone)]
struct Words<'q> {
    rest: &'q str,
    depth: u32,
}

impl<'q> Words<'q> {
    fn new(sql: &'q str) -> Self {
        Self {
            rest: sql,
            depth: 0,
        }
    }
}

impl<'q> Iterator for Words<'q> {
    type Item = &'q str;

    fn next(&mut self) -> Option<&'q str> {
        loop {
            let bytes = self.rest.as_bytes();
            let &first = bytes.first()?;
            let word_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'"');
            match first {
                b'(' => {
                    self.depth += 1;
                    self.rest = &self.rest[1..];
                }
                b')' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.rest = &self.rest[1..];
                }
                b'\'' => {
                    self.rest = &self.rest[literal_end(bytes, 0, false).min(self.rest.len())..];
                }
                b'-' if bytes.get(1) == Some(&b'-') => {
                    let end = self.rest.find('\n').unwrap_or(self.rest.len());
                    self.rest = &self.rest[end..];
                }
                b'/' if bytes.get(1) == Some(&b'*') => {
                    let end = self.rest[2..].find("*/").map_or(self.rest.len(), |i| i + 4);
                    self.rest = &self.rest[end..];
                }
                b if word_char(b) => {
                    let end = bytes
                        .iter()
                        .position(|&b| !word_char(b))
                        .unwrap_or(bytes.len());
                    let (word, rest) = self.rest.split_at(end);
                    self.rest = rest;
                    return Some(word);
                }
                _ => {
                    let width = self.rest.chars().next().map_or(1, char::len_utf8);
                    self.rest = &self.rest[width..];
                }
            }
        }
    }
}

/// The index just past the string literal starting at `start` (a `'`),
/// where `''` is an escaped quote, and so is `\'` in PostgreSQL's `E'...'`
/// strings (`backslash_escapes`).
fn literal_end(bytes: &[u8], start: usize, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `sql` with every literal value replaced by `?`: string literals
/// (`'kim'`, `E'..'`, `X'ff'`), PostgreSQL dollar-quoted strings
/// (`$tag$...$tag$`) and numbers (`42`, `1.5e3`). Placeholders (`$1`, `?`,
/// `?1`, `:name`), identifiers (also quoted ones), keywords and comments are
/// kept. Returns `sql` itself when it has no literal, as statements written
/// with bind parameters usually have not.
pub(crate) fn without_literals(sql: &str) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    let mut out: Option<String> = None;
    // Bytes of `sql` before `copied` are in `out` already (when it exists).
    let mut copied = 0;
    let mut i = 0;
    let replace = |out: &mut Option<String>, copied: &mut usize, start: usize, end: usize| {
        let out = out.get_or_insert_with(|| String::with_capacity(sql.len()));
        out.push_str(&sql[*copied..start]);
        out.push('?');
        *copied = end;
    };
    while i < bytes.len() {
        let b = bytes[i];
        let previous = i.checked_sub(1).map(|p| bytes[p]);
        let in_word =
            previous.is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, b'_' | b'$'));
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(bytes.len(), |n| i + n + 4);
            }
            b'"' | b'`' => {
                // A quoted identifier: kept.
                i = sql[i + 1..]
                    .find(char::from(b))
                    .map_or(bytes.len(), |n| i + n + 2);
            }
            b'\'' => {
                // `E'..'`, `X'..'`, `B'..'`, `N'..'`: the prefix goes too.
                let start = if in_word
                    && previous.is_some_and(|p| b"eExXbBnN".contains(&p))
                    && (i < 2 || !is_word_byte(bytes[i - 2]))
                {
                    i - 1
                } else {
                    i
                };
                let escaped = start < i && matches!(bytes[start], b'e' | b'E');
                let end = literal_end(bytes, i, escaped).min(bytes.len());
                replace(&mut out, &mut copied, start, end);
                i = end;
            }
            b'$' if !in_word => {
                // `$1` is a placeholder; `$tag$...$tag$` or `$$...$$` a string.
                let tag_len = sql[i + 1..]
                    .bytes()
                    .position(|c| !is_word_byte(c) || c == b'$')
                    .unwrap_or(bytes.len() - i - 1);
                let after_tag = i + 1 + tag_len;
                let tag = &sql[i..after_tag];
                let is_placeholder = tag_len > 0 && tag[1..].bytes().all(|c| c.is_ascii_digit());
                if bytes.get(after_tag) == Some(&b'$') && !is_placeholder {
                    let delimiter = &sql[i..=after_tag];
                    let body = after_tag + 1;
                    let end = sql[body..]
                        .find(delimiter)
                        .map_or(bytes.len(), |n| body + n + delimiter.len());
                    replace(&mut out, &mut copied, i, end);
                    i = end;
                } else {
                    i = after_tag;
                }
            }
            b'?' | b':' => {
                // `?`, `?1`, `:name`: placeholders, kept with their digits.
                i += 1;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
            }
            b'0'..=b'9' if !in_word => {
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'.'
                        || (matches!(bytes[end], b'+' | b'-')
                            && matches!(bytes[end - 1], b'e' | b'E')))
                {
                    end += 1;
                }
                replace(&mut out, &mut copied, i, end);
                i = end;
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut out) => {
            out.push_str(&sql[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(sql),
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_operation_and_first_table() {
        let cases = [
            (
                "SELECT id, name FROM products WHERE id = $1",
                "SELECT",
                Some("products"),
            ),
            (
                "select * from \"Products\" p join users u on u.id = p.owner",
                "SELECT",
                Some("Products"),
            ),
            (
                "INSERT INTO products (name, price_cents) VALUES ($1, $2) RETURNING id",
                "INSERT",
                Some("products"),
            ),
            (
                "UPDATE public.users SET name = ? WHERE id = ?",
                "UPDATE",
                Some("public.users"),
            ),
            (
                "DELETE FROM sessions WHERE token = $1",
                "DELETE",
                Some("sessions"),
            ),
            (
                "SELECT COUNT(*) FROM (SELECT id FROM inner_t) AS t",
                "SELECT",
                None,
            ),
            (
                "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
                "SELECT",
                Some("recent"),
            ),
            (
                "CREATE TABLE IF NOT EXISTS products (id BIGINT)",
                "CREATE",
                Some("products"),
            ),
            ("  -- leading comment\n  SELECT 1", "SELECT", None),
            ("SELECT 1", "SELECT", None),
            ("frobnicate the database", OTHER, None),
            ("", OTHER, None),
        ];
        for (sql, operation, table) in cases {
            let op = Operation::of(sql);
            assert_eq!((op.name, collection(sql)), (operation, table), "{sql}");
            assert_eq!(OPERATIONS.get(op.index).copied().unwrap_or(OTHER), op.name);
        }
    }

    #[test]
    fn literals_are_replaced_and_placeholders_kept() {
        let cases = [
            (
                "SELECT * FROM t WHERE id = $1",
                "SELECT * FROM t WHERE id = $1",
            ),
            (
                "SELECT * FROM t WHERE id = ?1 AND n = :name",
                "SELECT * FROM t WHERE id = ?1 AND n = :name",
            ),
            (
                "SELECT * FROM t WHERE name = 'kim' LIMIT 10",
                "SELECT * FROM t WHERE name = ? LIMIT ?",
            ),
            (
                "SELECT 'it''s', E'a\\'b', X'ff', -1.5e-3",
                "SELECT ?, ?, ?, -?",
            ),
            (
                "SELECT $$secret$$, $body$ x $body$ FROM t2",
                "SELECT ?, ? FROM t2",
            ),
            (
                "SELECT col1, \"weird 'name\" FROM t3",
                "SELECT col1, \"weird 'name\" FROM t3",
            ),
            (
                "SELECT 1 -- it's a comment\n, 2",
                "SELECT ? -- it's a comment\n, ?",
            ),
            ("SELECT 'unterminated", "SELECT ?"),
            (
                "INSERT INTO t (a) VALUES ('é', 3)",
                "INSERT INTO t (a) VALUES (?, ?)",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(without_literals(sql), expected, "{sql}");
        }
        assert!(matches!(
            without_literals("SELECT a FROM t WHERE b = $2"),
            Cow::Borrowed(_)
        ));
        // Never a panic, whatever the text: cuts fall on character boundaries.
        for sql in [
            "'é", "E'\\é'", "E'é\\", "$é$", "$$é", "1é", "é1", "\"é", "--é", "/*é", "x'é'", ":é",
            "?é",
        ] {
            let _ = without_literals(sql);
            let _ = (Operation::of(sql), collection(sql));
        }
    }
}
