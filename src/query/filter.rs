//! LDAP search filters (RFC 4515): the tree, its string form, a parser, and evaluation over an
//! [`Entry`] with the case-insensitive matching AD applies to string attributes.

use std::fmt;

use crate::entry::{Entry, eq_ignore_case};

/// An LDAP filter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// `(&…)`: every part matches (an empty AND is true).
    And(Vec<Filter>),
    /// `(|…)`: some part matches (an empty OR is false).
    Or(Vec<Filter>),
    /// `(!…)`.
    Not(Box<Filter>),
    /// `(attr=value)`.
    Equal(String, String),
    /// `(attr~=value)`, matched as equality.
    Approx(String, String),
    /// `(attr>=value)`.
    GreaterOrEqual(String, String),
    /// `(attr<=value)`.
    LessOrEqual(String, String),
    /// `(attr=*)`.
    Present(String),
    /// `(attr=initial*any*…*final)`.
    Substring {
        /// The attribute.
        attr: String,
        /// What the value starts with.
        initial: Option<String>,
        /// What the value contains, in order.
        any: Vec<String>,
        /// What the value ends with.
        last: Option<String>,
    },
}

/// A filter that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LDAP filter at character {position}: {reason}")]
pub struct FilterError {
    /// 0-based character offset where parsing stopped.
    pub position: usize,
    /// What was wrong.
    pub reason: String,
}

impl Filter {
    /// True when `entry` matches.
    pub fn matches(&self, entry: &Entry) -> bool {
        self.matches_by(&|attr| entry.get(attr))
    }

    /// True when the object whose attribute values `values` gives matches (for objects not
    /// yet built as an [`Entry`], such as one about to be created).
    pub fn matches_by<'a>(&self, values: &dyn Fn(&str) -> &'a [String]) -> bool {
        let entry = Lookup(values);
        match self {
            Filter::And(parts) => parts.iter().all(|f| f.matches_by(values)),
            Filter::Or(parts) => parts.iter().any(|f| f.matches_by(values)),
            Filter::Not(inner) => !inner.matches_by(values),
            Filter::Equal(attr, value) | Filter::Approx(attr, value) => {
                entry.get(attr).iter().any(|v| eq_ignore_case(v, value))
            }
            Filter::Present(attr) => !entry.get(attr).is_empty(),
            Filter::GreaterOrEqual(attr, value) => entry
                .get(attr)
                .iter()
                .any(|v| compare(v, value) != std::cmp::Ordering::Less),
            Filter::LessOrEqual(attr, value) => entry
                .get(attr)
                .iter()
                .any(|v| compare(v, value) != std::cmp::Ordering::Greater),
            Filter::Substring {
                attr,
                initial,
                any,
                last,
            } => entry
                .get(attr)
                .iter()
                .any(|v| substring_matches(&v.to_lowercase(), initial, any, last)),
        }
    }

    /// The attribute names the filter reads (for asking a server only for those).
    pub fn attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_attributes(&mut out);
        out
    }

    fn collect_attributes(&self, out: &mut Vec<String>) {
        match self {
            Filter::And(p) | Filter::Or(p) => p.iter().for_each(|f| f.collect_attributes(out)),
            Filter::Not(f) => f.collect_attributes(out),
            Filter::Equal(a, _)
            | Filter::Approx(a, _)
            | Filter::GreaterOrEqual(a, _)
            | Filter::LessOrEqual(a, _)
            | Filter::Present(a)
            | Filter::Substring { attr: a, .. } => {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
                    out.push(a.clone());
                }
            }
        }
    }

    /// Parses an RFC 4515 filter such as `(&(objectClass=user)(!(cn=admin*)))`.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let chars: Vec<char> = text.trim().chars().collect();
        let mut parser = Parser {
            chars,
            pos: 0,
            depth: 0,
        };
        let filter = parser.filter()?;
        if parser.pos != parser.chars.len() {
            return Err(parser.error("text after the end of the filter"));
        }
        Ok(filter)
    }
}

struct Lookup<'f, 'a>(&'f dyn Fn(&str) -> &'a [String]);

impl<'a> Lookup<'_, 'a> {
    fn get(&self, attr: &str) -> &'a [String] {
        (self.0)(attr)
    }
}

/// Integers compare as numbers (so `employeeID>=1000` works), everything else case-insensitively.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

fn substring_matches(
    value: &str,
    initial: &Option<String>,
    any: &[String],
    last: &Option<String>,
) -> bool {
    let mut rest = value;
    if let Some(initial) = initial {
        match rest.strip_prefix(initial.to_lowercase().as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for part in any {
        let part = part.to_lowercase();
        match rest.find(part.as_str()) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    match last {
        Some(last) => rest.ends_with(last.to_lowercase().as_str()),
        None => true,
    }
}

impl fmt::Display for Filter {
    /// The RFC 4515 string, with every value escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esc = |v: &str| crate::text::escape_filter_value(v).into_owned();
        match self {
            Filter::And(parts) | Filter::Or(parts) => {
                f.write_str(if matches!(self, Filter::And(_)) {
                    "(&"
                } else {
                    "(|"
                })?;
                for p in parts {
                    write!(f, "{p}")?;
                }
                f.write_str(")")
            }
            Filter::Not(inner) => write!(f, "(!{inner})"),
            Filter::Equal(a, v) => write!(f, "({a}={})", esc(v)),
            Filter::Approx(a, v) => write!(f, "({a}~={})", esc(v)),
            Filter::GreaterOrEqual(a, v) => write!(f, "({a}>={})", esc(v)),
            Filter::LessOrEqual(a, v) => write!(f, "({a}<={})", esc(v)),
            Filter::Present(a) => write!(f, "({a}=*)"),
            Filter::Substring {
                attr,
                initial,
                any,
                last,
            } => {
                write!(f, "({attr}=")?;
                if let Some(i) = initial {
                    f.write_str(&esc(i))?;
                }
                f.write_str("*")?;
                // An empty part is no part: `**` would not read back as this filter.
                for a in any.iter().filter(|a| !a.is_empty()) {
                    write!(f, "{}*", esc(a))?;
                }
                if let Some(l) = last {
                    f.write_str(&esc(l))?;
                }
                f.write_str(")")
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

/// How deeply filters may nest: far beyond any real query, well within the stack.
pub(crate) const MAX_DEPTH: usize = 100;

impl Parser {
    fn error(&self, reason: &str) -> FilterError {
        FilterError {
            position: self.pos,
            reason: reason.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), FilterError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{c}'")))
        }
    }

    fn filter(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nested more than {MAX_DEPTH} deep")));
        }
        let result = self.filter_body();
        self.depth -= 1;
        result
    }

    fn filter_body(&mut self) -> Result<Filter, FilterError> {
        self.expect('(')?;
        let filter = match self.peek() {
            Some('&') => {
                self.pos += 1;
                Filter::And(self.list()?)
            }
            Some('|') => {
                self.pos += 1;
                Filter::Or(self.list()?)
            }
            Some('!') => {
                self.pos += 1;
                Filter::Not(Box::new(self.filter()?))
            }
            _ => self.item()?,
        };
        self.expect(')')?;
        Ok(filter)
    }

    fn list(&mut self) -> Result<Vec<Filter>, FilterError> {
        let mut parts = Vec::new();
        while self.peek() == Some('(') {
            parts.push(self.filter()?);
        }
        Ok(parts)
    }

    fn item(&mut self) -> Result<Filter, FilterError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let attr: String = self.chars[start..self.pos].iter().collect();
        if attr.is_empty() {
            return Err(self.error("expected an attribute name"));
        }
        let op = match (self.peek(), self.chars.get(self.pos + 1)) {
            (Some('>'), Some('=')) => ">=",
            (Some('<'), Some('=')) => "<=",
            (Some('~'), Some('=')) => "~=",
            (Some(':'), _) => return Err(self.error("extensible match is not supported")),
            (Some('='), _) => "=",
            _ => return Err(self.error("expected =, >=, <= or ~=")),
        };
        self.pos += op.len();
        // The value: split on unescaped '*' for substring filters.
        let mut pieces: Vec<String> = vec![String::new()];
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("the filter ends inside a value")),
                Some(')') => break,
                Some('(') => return Err(self.error("'(' must be escaped as \\28 in a value")),
                Some('*') => {
                    self.pos += 1;
                    let text = self.take_utf8(&mut bytes)?;
                    if let Some(last) = pieces.last_mut() {
                        last.push_str(&text);
                    }
                    pieces.push(String::new());
                }
                Some('\\') => {
                    let hex: String = self.chars.iter().skip(self.pos + 1).take(2).collect();
                    let byte = u8::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2)
                        .ok_or_else(|| self.error("a \\ escape needs two hex digits"))?;
                    bytes.push(byte);
                    self.pos += 3;
                }
                Some(c) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += 1;
                }
            }
        }
        let text = self.take_utf8(&mut bytes)?;
        if let Some(last) = pieces.last_mut() {
            last.push_str(&text);
        }
        if pieces.len() == 1 {
            let value = pieces.remove(0);
            return Ok(match op {
                ">=" => Filter::GreaterOrEqual(attr, value),
                "<=" => Filter::LessOrEqual(attr, value),
                "~=" => Filter::Approx(attr, value),
                _ => Filter::Equal(attr, value),
            });
        }
        if op != "=" {
            return Err(self.error("'*' is only allowed with ="));
        }
        if pieces.len() == 2 && pieces.iter().all(String::is_empty) {
            return Ok(Filter::Present(attr));
        }
        let last = pieces.pop().filter(|s| !s.is_empty());
        let initial = Some(pieces.remove(0)).filter(|s| !s.is_empty());
        let any = pieces.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Filter::Substring {
            attr,
            initial,
            any,
            last,
        })
    }

    fn take_utf8(&self, bytes: &mut Vec<u8>) -> Result<String, FilterError> {
        String::from_utf8(std::mem::take(bytes))
            .map_err(|_| self.error("an escaped value is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry::new("CN=Ann,DC=lab");
        e.set("objectClass", vec!["top".into(), "User".into()]);
        e.set("cn", vec!["Ann Lee".into()]);
        e.set("employeeID", vec!["1001".into()]);
        e
    }

    #[test]
    fn parses_prints_and_matches() {
        let f = Filter::parse("(&(objectClass=user)(|(cn=ann*)(cn=*bob))(!(employeeID>=2000)))")
            .unwrap();
        assert!(f.matches(&entry()));
        assert_eq!(
            f.to_string(),
            "(&(objectClass=user)(|(cn=ann*)(cn=*bob))(!(employeeID>=2000)))"
        );
        assert!(
            !Filter::parse("(employeeID<=999)")
                .unwrap()
                .matches(&entry())
        );
        assert!(Filter::parse("(cn=*n*e*)").unwrap().matches(&entry()));
        assert!(!Filter::parse("(mail=*)").unwrap().matches(&entry()));
    }

    #[test]
    fn escapes_values() {
        let f = Filter::Equal("cn".into(), "a*(b)\\".into());
        assert_eq!(f.to_string(), "(cn=a\\2a\\28b\\29\\5c)");
        assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}(cn=a){}", "(!".repeat(100_000), ")".repeat(100_000));
        let e = Filter::parse(&deep).unwrap_err();
        assert!(e.reason.contains("nested more than"), "{e}");
        let ok = format!("{}(cn=a){}", "(!".repeat(50), ")".repeat(50));
        assert!(Filter::parse(&ok).is_ok());
    }

    #[test]
    fn rejects_bad_filters() {
        for bad in [
            "cn=a",
            "(cn=a",
            "(=a)",
            "(cn:dn:=a)",
            "(cn=a)(x=b)",
            "(cn=\\4)",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
