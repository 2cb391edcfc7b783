//! LDIF content records (RFC 2849): reading a file into entries and writing entries out, with
//! base64 for values that need it and lines folded at 76 columns, so `ldapadd` reads our files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::entry::Entry;

/// LDIF that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LdifError {
    /// 1-based line number where the record or value starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses LDIF content records. Change records, URL values (`attr:< file://…`) and binary
/// values are refused with the line they are on, never skipped.
pub fn parse(text: &str) -> Result<Vec<Entry>, LdifError> {
    Ok(parse_with_lines(text)?
        .into_iter()
        .map(|(entry, _)| entry)
        .collect())
}

/// Parses LDIF as [`parse`] does, each entry with the line its `dn:` is on, so that a later
/// check (a DN given twice) can say where.
pub(crate) fn parse_with_lines(text: &str) -> Result<Vec<(Entry, usize)>, LdifError> {
    // Unfold: a line that starts with one space continues the previous line.
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = line.strip_prefix(' ') {
            match lines.last_mut() {
                Some((_, prev)) if !prev.is_empty() => prev.push_str(rest),
                _ => {
                    return Err(LdifError {
                        line: i + 1,
                        message: "a continuation line follows no line".into(),
                    });
                }
            }
        } else {
            lines.push((i + 1, line.to_string()));
        }
    }
    let mut entries = Vec::new();
    let mut current: Option<(Entry, usize)> = None;
    let mut first_record = true;
    for (line_no, line) in lines {
        let err = |message: String| LdifError {
            line: line_no,
            message,
        };
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if let Some(e) = current.take() {
                entries.push(e);
            }
            continue;
        }
        let (name, value) = attr_value(&line).map_err(err)?;
        if first_record && current.is_none() && name.eq_ignore_ascii_case("version") {
            if value != "1" {
                return Err(err(format!("LDIF version {value} is not supported")));
            }
            first_record = false;
            continue;
        }
        first_record = false;
        match current.as_mut() {
            None => {
                if !name.eq_ignore_ascii_case("dn") {
                    return Err(err(format!("a record must start with dn:, not {name}:")));
                }
                crate::dn::Dn::parse(&value).map_err(|e| err(e.to_string()))?;
                current = Some((Entry::new(value), line_no));
            }
            Some((entry, _)) => {
                if name.eq_ignore_ascii_case("changetype") {
                    return Err(err(
                        "change records are not supported in a directory file".into()
                    ));
                }
                if name.eq_ignore_ascii_case("dn") {
                    return Err(err(
                        "a second dn: in one record (blank line missing?)".into()
                    ));
                }
                let mut values = entry.get(&name).to_vec();
                values.push(value);
                entry.set(&name, values);
            }
        }
    }
    if let Some(e) = current.take() {
        entries.push(e);
    }
    Ok(entries)
}

fn attr_value(line: &str) -> Result<(String, String), String> {
    let Some(colon) = line.find(':') else {
        return Err(format!("\"{}\" is not an attribute line", preview(line)));
    };
    let name = &line[..colon];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.')
    {
        return Err(format!("\"{}\" is not an attribute name", preview(name)));
    }
    let rest = &line[colon + 1..];
    let value = if let Some(b64) = rest.strip_prefix(':') {
        let bytes = BASE64
            .decode(b64.trim())
            .map_err(|e| format!("{name}: bad base64 value: {e}"))?;
        if super::is_binary_attribute(name) {
            // Kept as base64, as every binary value is (see `is_binary_attribute`).
            BASE64.encode(bytes)
        } else {
            String::from_utf8(bytes).map_err(|_| {
                format!(
                    "{name}: the value is not UTF-8 text (only binary attributes such as \
                     jpegPhoto hold bytes)"
                )
            })?
        }
    } else if rest.starts_with('<') {
        return Err(format!("{name}: URL values are not supported"));
    } else {
        rest.trim_start_matches(' ').to_string()
    };
    Ok((name.to_string(), value))
}

fn preview(s: &str) -> String {
    s.chars().take(40).collect()
}

/// True when the value can be written as is (RFC 2849 SAFE-STRING, and no trailing space).
fn is_safe(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => return true,
        Some(b' ' | b':' | b'<') => return false,
        _ => {}
    }
    bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|&b| b.is_ascii() && b != 0 && b != b'\n' && b != b'\r')
}

/// Appends one `name: value` line (or `name:: base64`), folded at 76 columns.
fn write_line(out: &mut String, name: &str, value: &str) {
    let line = if super::is_binary_attribute(name) && BASE64.decode(value).is_ok() {
        // Already base64: the bytes, as LDIF writes bytes.
        format!("{name}:: {value}")
    } else if is_safe(value) {
        format!("{name}: {value}")
    } else {
        format!("{name}:: {}", BASE64.encode(value.as_bytes()))
    };
    // The line is ASCII by construction (safe strings are ASCII, base64 is), so byte slicing
    // never splits a character.
    let mut rest = line.as_str();
    let mut first = true;
    while !rest.is_empty() {
        let width = if first { 76 } else { 75 };
        let cut = rest.len().min(width);
        if !first {
            out.push(' ');
        }
        out.push_str(&rest[..cut]);
        out.push('\n');
        rest = &rest[cut..];
        first = false;
    }
}

/// Writes entries as LDIF content records, in the order given.
pub fn write<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    let mut out = String::from("version: 1\n");
    for entry in entries {
        out.push('\n');
        write_entry(&mut out, entry);
    }
    out
}

/// Appends one entry's content record (no blank line before or after it): for writers that
/// stream a directory out entry by entry.
pub fn write_entry(out: &mut String, entry: &Entry) {
    write_line(out, "dn", &entry.dn);
    for attr in entry.attributes() {
        for v in &attr.values {
            write_line(out, &attr.name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folded_base64_and_comments() {
        let text = "version: 1\n# a comment\n continued comment\n\ndn: CN=Ann,DC=lab\nobjectClass: top\nobjectClass: user\ndescription: a long\n  value\ncn:: w4Fubg==\n\n\ndn: DC=lab\ndc: lab\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].get("objectclass"), ["top", "user"]);
        assert_eq!(entries[0].first("description"), Some("a long value"));
        assert_eq!(entries[0].first("cn"), Some("Ánn"));
    }

    #[test]
    fn writes_base64_and_folds() {
        let mut e = Entry::new("CN=Ánn,DC=lab");
        e.set("description", vec!["x".repeat(200)]);
        e.set(
            "sn",
            vec![" leading space".into(), "trailing ".into(), ":colon".into()],
        );
        let text = write([&e]);
        assert!(text.contains("dn:: "), "{text}");
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        assert_eq!(parse(&text).unwrap(), vec![e]);
    }

    #[test]
    fn binary_attributes_keep_their_bytes_as_base64() {
        let text = "dn: CN=a\njpegPhoto:: /9j/4AAQ\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries[0].first("jpegPhoto"), Some("/9j/4AAQ"));
        assert_eq!(write(&entries), format!("version: 1\n\n{text}"));
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        for (text, line, needle) in [
            ("dn: CN=a\nchangetype: add\n", 2, "change records"),
            ("cn: a\n", 1, "must start with dn"),
            ("dn: CN=a\ncn:< file:///etc/passwd\n", 2, "URL values"),
            ("dn: CN=a\ncn:: !!!\n", 2, "bad base64"),
            ("dn: CN=a\ndescription:: /9j/\n", 2, "not UTF-8"),
            ("dn: CN=a\nno colon here\n", 2, "not an attribute line"),
            (" continuation\n", 1, "continuation"),
            ("dn: CN=a\ndn: CN=b\n", 2, "second dn"),
            ("dn: nonsense\n", 1, "invalid DN"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}
