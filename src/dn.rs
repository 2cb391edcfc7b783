//! Distinguished names (RFC 4514): escaping values into DNs, parsing DNs, and the normal form
//! that makes `CN=Ann,OU=API,DC=lab` and `cn=ann, ou=api, dc=lab` the same entry.
//!
//! Escaping uses `ldap3::dn_escape`, which escapes every special character as `\XX`. Parsing is
//! ours, because a DN must be compared as AD compares it: attribute types and values case-folded,
//! escapes decoded, spaces around separators ignored.

use std::fmt;

/// Escapes one attribute value for use in a DN (RFC 4514): `,` `+` `"` `\` `<` `>` `;` `=`, NUL,
/// a leading space or `#`, and a trailing space.
///
/// ```
/// assert_eq!(datasync::dn::escape_value("Smith, John"), "Smith\\2c John");
/// ```
pub fn escape_value(value: &str) -> String {
    crate::text::escape_dn_value(value).into_owned()
}

/// A DN that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DN \"{dn}\": {reason}")]
pub struct DnError {
    /// The DN as given.
    pub dn: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One `type=value` pair of an RDN, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    /// The attribute type as written (`CN`, `ou`, …).
    pub attr: String,
    /// The attribute value, escapes decoded.
    pub value: String,
}

/// A parsed DN: RDNs from the leaf (`CN=…`) to the root (`DC=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    /// Each RDN is one or more AVAs (`CN=a+UID=b` has two).
    pub rdns: Vec<Vec<Ava>>,
}

impl Dn {
    /// Parses an RFC 4514 string. The empty string is the root DN (no RDNs).
    pub fn parse(dn: &str) -> Result<Dn, DnError> {
        let err = |reason: &str| DnError {
            dn: dn.to_string(),
            reason: reason.to_string(),
        };
        let mut rdns = Vec::new();
        if dn.trim().is_empty() {
            return Ok(Dn { rdns });
        }
        let mut rdn = Vec::new();
        let mut chars = dn.chars().peekable();
        loop {
            // attribute type
            let mut attr = String::new();
            let mut has_equals = false;
            for c in chars.by_ref() {
                if c == '=' {
                    has_equals = true;
                    break;
                }
                attr.push(c);
            }
            let attr = attr.trim().to_string();
            if !has_equals {
                return Err(err(&format!("\"{attr}\" has no '=' (expected type=value)")));
            }
            if attr.is_empty() {
                return Err(err("an RDN has no attribute type"));
            }
            if !attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(err(&format!("\"{attr}\" is not an attribute type")));
            }
            // attribute value
            let mut value: Vec<u8> = Vec::new();
            let mut end_of_escaped = 0; // trailing unescaped spaces are not part of the value
            let mut terminator = None;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        let first = chars.next().ok_or_else(|| err("the DN ends with '\\'"))?;
                        if first.is_ascii_hexdigit() {
                            let second = chars
                                .next()
                                .filter(char::is_ascii_hexdigit)
                                .ok_or_else(|| err("a \\ escape needs two hex digits"))?;
                            let byte = u8::from_str_radix(&format!("{first}{second}"), 16)
                                .map_err(|_| err("bad hex escape"))?;
                            value.push(byte);
                        } else if matches!(
                            first,
                            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | ' ' | '#' | '='
                        ) {
                            value.push(first as u8);
                        } else {
                            // RFC 4514 escapes only its special characters and hex pairs;
                            // reading `\z` as `z` would rename the entry on its next write.
                            return Err(err(&format!(
                                "\\{first} is not an escape (a \\ comes before one of \" + , ; < > \\ # = or a space, or two hex digits)"
                            )));
                        }
                        end_of_escaped = value.len();
                    }
                    ',' | ';' | '+' => {
                        terminator = Some(c);
                        break;
                    }
                    '"' if value.is_empty() => {
                        return Err(err("quoted values are not supported"));
                    }
                    _ => {
                        if value.is_empty() && c == ' ' {
                            continue; // leading spaces are not part of the value
                        }
                        let mut buf = [0u8; 4];
                        value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            while value.len() > end_of_escaped && value.last() == Some(&b' ') {
                value.pop();
            }
            let value =
                String::from_utf8(value).map_err(|_| err("an escaped value is not UTF-8"))?;
            rdn.push(Ava { attr, value });
            match terminator {
                Some('+') => continue,
                Some(_) => rdns.push(std::mem::take(&mut rdn)),
                None => {
                    rdns.push(rdn);
                    break;
                }
            }
        }
        Ok(Dn { rdns })
    }

    /// The normal form used as a key: types and values lower-cased, values re-escaped, no spaces
    /// around separators, multi-valued RDNs sorted.
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&normalize_rdn(rdn));
        }
        out
    }

    /// The DN of the parent entry (the root DN has none).
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() {
            return None;
        }
        Some(Dn {
            rdns: self.rdns[1..].to_vec(),
        })
    }

    /// True when `self` is `base` or below it.
    pub fn is_within(&self, base: &Dn) -> bool {
        self.rdns.len() >= base.rdns.len()
            && self.rdns[self.rdns.len() - base.rdns.len()..]
                .iter()
                .zip(&base.rdns)
                .all(|(a, b)| normalize_rdn(a) == normalize_rdn(b))
    }
}

fn normalize_rdn(rdn: &[Ava]) -> String {
    let mut out = String::new();
    push_normalized_rdn(&mut out, rdn);
    out
}

/// Appends the normal form of one RDN: `type=value`, both lower-cased, the value escaped;
/// the AVAs of a multi-valued RDN sorted and joined by `+`. This sits on the path of every
/// directory write, so the common single-AVA case allocates only the lower-cased value.
pub(crate) fn push_normalized_rdn(out: &mut String, rdn: &[Ava]) {
    fn push_ava(out: &mut String, ava: &Ava) {
        out.extend(ava.attr.chars().map(|c| c.to_ascii_lowercase()));
        out.push('=');
        let lower = crate::text::lowercase(&ava.value);
        out.push_str(&crate::text::escape_dn_value(lower.as_ref()));
    }
    if let [ava] = rdn {
        push_ava(out, ava);
        return;
    }
    let mut parts: Vec<String> = rdn
        .iter()
        .map(|ava| {
            let mut s = String::new();
            push_ava(&mut s, ava);
            s
        })
        .collect();
    parts.sort();
    out.push_str(&parts.join("+"));
}

impl fmt::Display for Dn {
    /// Writes the DN in RFC 4514 form with the types as given and values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{}={}", ava.attr, escape_value(&ava.value))?;
            }
        }
        Ok(())
    }
}

/// The normal form of a DN string (see [`Dn::normalized`]).
pub fn normalize(dn: &str) -> Result<String, DnError> {
    Ok(Dn::parse(dn)?.normalized())
}

/// Joins an RDN `attr=value` (the value escaped here) onto a parent DN.
///
/// ```
/// assert_eq!(datasync::dn::child("CN", "Doe, Jane", "OU=API,DC=lab"), "CN=Doe\\2c Jane,OU=API,DC=lab");
/// ```
pub fn child(attr: &str, value: &str, parent: &str) -> String {
    // Built in one string of the right size: every object a job creates is named here, and
    // a value that needs no escape is not copied first.
    let escaped = crate::text::escape_dn_value(value);
    let parent = if parent.trim().is_empty() { "" } else { parent };
    let mut dn = String::with_capacity(attr.len() + escaped.len() + parent.len() + 2);
    dn.push_str(attr);
    dn.push('=');
    dn.push_str(&escaped);
    if !parent.is_empty() {
        dn.push(',');
        dn.push_str(parent);
    }
    dn
}

/// What separates the RDNs of a tree key (below every character a DN's normal form keeps).
pub(crate) const SEP: char = '\u{1}';

/// The tree-order key of a DN as written: [`key`] of its parse, or, for a DN that does not
/// parse (a server may send one), the text lower-cased. What lists are sorted by, parents
/// first.
pub(crate) fn sort_key(dn: &str) -> String {
    Dn::parse(dn)
        .map(|d| key(&d))
        .unwrap_or_else(|_| dn.to_lowercase())
}

/// The tree-order key of a DN: normalized RDNs from the root down, so a sorted map lists
/// parents before their children.
pub(crate) fn key(dn: &Dn) -> String {
    let mut out = String::new();
    for (i, rdn) in dn.rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        push_key_segment(&mut out, rdn);
    }
    out
}

/// One RDN's part of a tree key.
pub(crate) fn push_key_segment(out: &mut String, rdn: &[Ava]) {
    let start = out.len();
    push_normalized_rdn(out, rdn);
    // The normal form escapes only some control characters; keep SEP unique.
    if out.as_bytes()[start..].iter().any(|b| *b < b' ') {
        let segment: String = out[start..]
            .chars()
            .map(|c| if c < ' ' { '\u{fffd}' } else { c })
            .collect();
        out.truncate(start);
        out.push_str(&segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let a = normalize("CN=Ann Lee,OU=API, DC=groupid ,DC=lab").unwrap();
        let b = normalize("cn=ann lee,ou=api,dc=GROUPID,dc=lab").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "cn=ann lee,ou=api,dc=groupid,dc=lab");
    }

    #[test]
    fn a_child_is_named_under_its_parent() {
        assert_eq!(
            child("CN", "Ann Lee", "OU=API,DC=lab"),
            "CN=Ann Lee,OU=API,DC=lab"
        );
        // The root (no parent, or only blanks) has no comma to join on.
        assert_eq!(child("CN", "Ann", ""), "CN=Ann");
        assert_eq!(child("OU", "a=b", "  "), "OU=a\\3db");
        assert_eq!(
            Dn::parse(&child("CN", "#1 ", "DC=lab")).unwrap().rdns[0][0].value,
            "#1 "
        );
    }

    #[test]
    fn escapes_round_trip() {
        let dn = child("CN", " Smith, John+Co #1 ", "OU=X,DC=lab");
        let parsed = Dn::parse(&dn).unwrap();
        assert_eq!(parsed.rdns[0][0].value, " Smith, John+Co #1 ");
        assert_eq!(parsed.rdns.len(), 3);
        // backslash-char escapes and hex escapes decode alike
        let a = Dn::parse("CN=Smith\\, John,DC=lab").unwrap();
        let b = Dn::parse("CN=Smith\\2C John,DC=lab").unwrap();
        assert_eq!(a.normalized(), b.normalized());
    }

    #[test]
    fn multi_valued_rdn_and_parent() {
        let dn = Dn::parse("CN=a+UID=b,DC=lab").unwrap();
        assert_eq!(dn.rdns[0].len(), 2);
        assert_eq!(dn.parent().unwrap().normalized(), "dc=lab");
        assert!(dn.is_within(&Dn::parse("dc=LAB").unwrap()));
        assert!(!dn.is_within(&Dn::parse("dc=other").unwrap()));
    }

    #[test]
    fn rejects_bad_dns() {
        assert!(Dn::parse("CN").is_err());
        assert!(Dn::parse("=x").is_err());
        assert!(Dn::parse("CN=a\\").is_err());
        // RFC 4514 escapes only special characters and hex pairs.
        let e = Dn::parse("CN=Ann\\zz Lee").unwrap_err();
        assert!(e.to_string().contains("\\z is not an escape"), "{e}");
        for special in [
            "\\,", "\\+", "\\\"", "\\\\", "\\<", "\\>", "\\;", "\\#", "\\=", "\\ ",
        ] {
            let dn = format!("CN=a{special}b,DC=lab");
            assert!(Dn::parse(&dn).is_ok(), "{dn}");
        }
        assert!(Dn::parse("CN=a\\4").is_err());
    }
}
