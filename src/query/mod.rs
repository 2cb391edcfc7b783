//! The destination query: the GroupID query language (`objectClass is exactly "user"`) or a raw
//! LDAP filter, compiled once into a [`Filter`].
//!
//! | GroupID spelling | LDAP filter |
//! |---|---|
//! | `attr is exactly "v"` | `(attr=v)` |
//! | `attr is not "v"` | `(!(attr=v))` |
//! | `attr starts with "v"` / `does not start with` | `(attr=v*)` / `(!(attr=v*))` |
//! | `attr ends with "v"` / `does not end with` | `(attr=*v)` / `(!(attr=*v))` |
//! | `attr contains "v"` / `does not contain` | `(attr=*v*)` / `(!(attr=*v*))` |
//! | `attr is present` (or `present`) | `(attr=*)` |
//! | `attr is not present` (or `not present`) | `(!(attr=*))` |
//! | `attr is greater or equal "v"` (or `greater or equal`) | `(attr>=v)` |
//! | `attr is less or equal "v"` (or `less or equal`) | `(attr<=v)` |
//!
//! Conditions combine with `AND`, `OR`, `NOT` and parentheses (`AND` binds tighter than `OR`).
//! Values are quoted (`"a \"b\""`) or a single bare word. Keywords are case-insensitive. Only
//! `is exactly` is spelled in the product's documentation; the other spellings are ours, in
//! the same style. A query that starts with `(` and parses as an RFC 4515 filter is taken as one.
//!
//! ```
//! use datasync::query::parse_destination_query;
//! let f = parse_destination_query(r#"objectClass is exactly "user" AND (department contains "R&D" OR title is present)"#).unwrap();
//! assert_eq!(f.to_string(), "(&(objectClass=user)(|(department=*R&D*)(title=*)))");
//! ```

mod filter;

pub use filter::{Filter, FilterError};

/// A destination query that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query is empty.
    #[error("the destination query is empty")]
    Empty,
    /// A GroupID query with a mistake at a word.
    #[error("{reason} (at \"{near}\")")]
    Syntax {
        /// What was expected.
        reason: String,
        /// The text from the point of the mistake.
        near: String,
    },
    /// A raw LDAP filter that does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// Compiles a destination query: a raw LDAP filter when it starts with `(` and parses as one,
/// the GroupID language otherwise.
pub fn parse_destination_query(text: &str) -> Result<Filter, QueryError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(QueryError::Empty);
    }
    if text.starts_with('(') {
        match Filter::parse(text) {
            Ok(f) => return Ok(f),
            // `(a is exactly "b") OR …` is GroupID with parentheses; only report the LDAP
            // error when the text does not read as GroupID either.
            Err(ldap_error) => {
                return parse_groupid(text).map_err(|groupid_error| match groupid_error {
                    QueryError::Syntax { .. } if !looks_like_groupid(text) => {
                        QueryError::Filter(ldap_error)
                    }
                    other => other,
                });
            }
        }
    }
    parse_groupid(text)
}

fn looks_like_groupid(text: &str) -> bool {
    let lower = text.to_lowercase();
    OPERATORS.iter().any(|(words, _)| lower.contains(words))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push((i, Token::Open));
            }
            ')' => {
                chars.next();
                out.push((i, Token::Close));
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(next);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(QueryError::Syntax {
                        reason: "a quoted value is not closed".into(),
                        near: text[i..].to_string(),
                    });
                }
                out.push((i, Token::Quoted(value)));
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push((i, Token::Word(word)));
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Op {
    Exactly,
    IsNot,
    StartsWith,
    EndsWith,
    Contains,
    NotContains,
    NotStartsWith,
    NotEndsWith,
    Present,
    NotPresent,
    GreaterOrEqual,
    LessOrEqual,
}

/// Longest spellings first, so `is not present` wins over `is not`.
const OPERATORS: &[(&str, Op)] = &[
    ("is greater or equal", Op::GreaterOrEqual),
    ("is less or equal", Op::LessOrEqual),
    ("does not start with", Op::NotStartsWith),
    ("does not end with", Op::NotEndsWith),
    ("does not contain", Op::NotContains),
    ("is not present", Op::NotPresent),
    ("greater or equal", Op::GreaterOrEqual),
    ("less or equal", Op::LessOrEqual),
    ("not present", Op::NotPresent),
    ("is exactly", Op::Exactly),
    ("starts with", Op::StartsWith),
    ("ends with", Op::EndsWith),
    ("is present", Op::Present),
    ("is not", Op::IsNot),
    ("contains", Op::Contains),
    ("present", Op::Present),
];

struct GroupIdParser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
    depth: usize,
}

fn parse_groupid(text: &str) -> Result<Filter, QueryError> {
    let mut p = GroupIdParser {
        text,
        tokens: tokenize(text)?,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos < p.tokens.len() {
        return Err(p.error("expected AND, OR or the end of the query"));
    }
    Ok(f)
}

impl GroupIdParser<'_> {
    fn error(&self, reason: &str) -> QueryError {
        let near = match self.tokens.get(self.pos) {
            Some((at, _)) => self.text[*at..].chars().take(40).collect(),
            None => "end of query".to_string(),
        };
        QueryError::Syntax {
            reason: reason.to_string(),
            near,
        }
    }

    fn keyword(&self, offset: usize, word: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset), Some((_, Token::Word(w))) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Filter, QueryError> {
        let mut parts = vec![self.and()?];
        while self.keyword(0, "or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter, QueryError> {
        let mut parts = vec![self.unary()?];
        while self.keyword(0, "and") {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Filter, QueryError> {
        self.depth += 1;
        if self.depth > filter::MAX_DEPTH {
            return Err(self.error(&format!("nested more than {} deep", filter::MAX_DEPTH)));
        }
        let result = self.unary_body();
        self.depth -= 1;
        result
    }

    fn unary_body(&mut self) -> Result<Filter, QueryError> {
        if self.keyword(0, "not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if matches!(self.tokens.get(self.pos), Some((_, Token::Open))) {
            self.pos += 1;
            let inner = self.or()?;
            if !matches!(self.tokens.get(self.pos), Some((_, Token::Close))) {
                return Err(self.error("expected ')'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Filter, QueryError> {
        let attr = match self.tokens.get(self.pos) {
            Some((_, Token::Word(w)))
                if w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.') =>
            {
                w.clone()
            }
            _ => return Err(self.error("expected an attribute name")),
        };
        self.pos += 1;
        let op = OPERATORS.iter().find_map(|(spelling, op)| {
            let words: Vec<&str> = spelling.split(' ').collect();
            words
                .iter()
                .enumerate()
                .all(|(i, w)| self.keyword(i, w))
                .then_some((words.len(), *op))
        });
        let Some((len, op)) = op else {
            return Err(self.error(
                "expected an operator (is exactly, is not, starts with, ends with, contains, \
                 does not contain, does not start with, does not end with, is present, \
                 is not present, is greater or equal, is less or equal)",
            ));
        };
        self.pos += len;
        let value = if matches!(op, Op::Present | Op::NotPresent) {
            String::new()
        } else {
            let value = match self.tokens.get(self.pos) {
                Some((_, Token::Quoted(v))) => v.clone(),
                Some((_, Token::Word(w)))
                    if !["and", "or", "not"].contains(&w.to_lowercase().as_str()) =>
                {
                    w.clone()
                }
                _ => return Err(self.error("expected a value")),
            };
            self.pos += 1;
            value
        };
        // A value that starts with, ends with or contains "" is any value: presence (a
        // substring filter cannot hold an empty part, and `(c=**)` would read back as `(c=*)`).
        let substring = |initial: bool, last: bool| match value.is_empty() {
            true => Filter::Present(attr.clone()),
            false => Filter::Substring {
                attr: attr.clone(),
                initial: initial.then(|| value.clone()),
                any: if initial || last {
                    vec![]
                } else {
                    vec![value.clone()]
                },
                last: last.then(|| value.clone()),
            },
        };
        let not = |f: Filter| Filter::Not(Box::new(f));
        Ok(match op {
            Op::Exactly => Filter::Equal(attr, value),
            Op::IsNot => not(Filter::Equal(attr, value)),
            Op::StartsWith => substring(true, false),
            Op::EndsWith => substring(false, true),
            Op::Contains => substring(false, false),
            Op::NotStartsWith => not(substring(true, false)),
            Op::NotEndsWith => not(substring(false, true)),
            Op::NotContains => not(substring(false, false)),
            Op::GreaterOrEqual => Filter::GreaterOrEqual(attr, value),
            Op::LessOrEqual => Filter::LessOrEqual(attr, value),
            Op::Present => Filter::Present(attr),
            Op::NotPresent => not(Filter::Present(attr)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> String {
        parse_destination_query(text).unwrap().to_string()
    }

    #[test]
    fn every_operator() {
        assert_eq!(q(r#"objectClass is exactly "user""#), "(objectClass=user)");
        assert_eq!(q(r#"cn is not "a""#), "(!(cn=a))");
        assert_eq!(q(r#"cn starts with "a""#), "(cn=a*)");
        assert_eq!(q(r#"cn ends with "a""#), "(cn=*a)");
        assert_eq!(q(r#"cn contains "a""#), "(cn=*a*)");
        assert_eq!(q(r#"cn does not contain "a""#), "(!(cn=*a*))");
        // Found by the query fuzz target: "" is in every value.
        assert_eq!(q(r#"c does not contain """#), "(!(c=*))");
        assert_eq!(q(r#"c starts with """#), "(c=*)");
        assert_eq!(q(r#"cn does not start with "a""#), "(!(cn=a*))");
        assert_eq!(q(r#"cn does not end with "a""#), "(!(cn=*a))");
        assert_eq!(q("mail is present"), "(mail=*)");
        assert_eq!(q("mail present"), "(mail=*)");
        assert_eq!(q("mail is not present"), "(!(mail=*))");
        assert_eq!(q("mail not present"), "(!(mail=*))");
        assert_eq!(q("uSNChanged is greater or equal 10"), "(uSNChanged>=10)");
        assert_eq!(q(r#"id less or equal "5""#), "(id<=5)");
    }

    #[test]
    fn precedence_and_parentheses() {
        assert_eq!(
            q(r#"a is exactly 1 OR b is exactly 2 and c is exactly 3"#),
            "(|(a=1)(&(b=2)(c=3)))"
        );
        assert_eq!(
            q(r#"(a is exactly 1 OR b is exactly 2) AND NOT c is present"#),
            "(&(|(a=1)(b=2))(!(c=*)))"
        );
        assert_eq!(q("(&(a=1)(b=2))"), "(&(a=1)(b=2))");
    }

    #[test]
    fn values_are_escaped_in_the_filter() {
        assert_eq!(q(r#"cn is exactly "a*(b)""#), "(cn=a\\2a\\28b\\29)");
        assert_eq!(q(r#"cn is exactly "say \"hi\"""#), "(cn=say \"hi\")");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{}cn is present{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let e = parse_destination_query(&deep).unwrap_err();
        assert!(e.to_string().contains("nested more than 100 deep"), "{e}");
        let deep = format!("{}cn is present", "NOT ".repeat(100_000));
        assert!(parse_destination_query(&deep).is_err());
    }

    #[test]
    fn errors_name_the_place() {
        let e = parse_destination_query(r#"objectClass is exactish "user""#).unwrap_err();
        assert!(e.to_string().contains("expected an operator"), "{e}");
        assert!(e.to_string().contains("is exactish"), "{e}");
        assert!(parse_destination_query(r#"cn is exactly "open"#).is_err());
        assert!(parse_destination_query("").is_err());
        assert!(parse_destination_query("(cn=a").is_err());
        assert!(parse_destination_query(r#"cn is exactly "a" extra"#).is_err());
    }
}
