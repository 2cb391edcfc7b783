//! One entry's attributes packed in one buffer: how the embedded store keeps a record, and
//! how a run holds the objects it will create until it writes them (a few hundred bytes in
//! two allocations instead of two allocations per value).
//!
//! The layout: the attribute count, then for each attribute its name and its values, every
//! count and length a LEB128 varint, every string UTF-8. In memory, a run may give a table of
//! the names its objects use: a name is then its place in the table (a byte), or 0 and the name
//! itself when it is not there. The store's records carry every name (no table).

use super::{AttributeName, Entry};

/// Appends `n` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 varint at `*at`, moving past it.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: usize = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn get_str<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let len = get_varint(bytes, at)?;
    let end = at.checked_add(len)?;
    let s = std::str::from_utf8(bytes.get(*at..end)?).ok()?;
    *at = end;
    Some(s)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Appends an attribute's name: itself without a table, else its place in `names` (from 1),
/// or 0 and itself.
fn put_name(out: &mut Vec<u8>, name: &str, names: &[AttributeName]) {
    if names.is_empty() {
        return put_str(out, name);
    }
    match names.iter().position(|n| n.as_str() == name) {
        Some(p) => put_varint(out, p + 1),
        None => {
            put_varint(out, 0);
            put_str(out, name);
        }
    }
}

/// Reads what [`put_name`] wrote.
fn get_name<'a>(bytes: &'a [u8], at: &mut usize, names: &'a [AttributeName]) -> Option<&'a str> {
    if names.is_empty() {
        return get_str(bytes, at);
    }
    match get_varint(bytes, at)? {
        0 => get_str(bytes, at),
        p => names.get(p - 1).map(AttributeName::as_str),
    }
}

/// An entry's attributes in one buffer: the attribute count, then for each its name and its
/// values, every count and length a varint. One allocation per record, read back without
/// parsing text.
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) {
    encode_with(entry, out, &[]);
}

/// [`encode`] of the attributes of `entry` named in `keep` (compared without case) only.
pub(crate) fn encode_only(entry: &Entry, keep: &[String], out: &mut Vec<u8>) {
    let kept = |a: &&crate::entry::Attribute| keep.iter().any(|k| k.eq_ignore_ascii_case(&a.name));
    let attrs = entry.attributes();
    put_varint(out, attrs.iter().filter(kept).count());
    for a in attrs.iter().filter(kept) {
        put_attribute(out, &a.name, &a.values, &[]);
    }
}

/// [`encode`], with names found in `names` written as their place in it.
pub(crate) fn encode_with(entry: &Entry, out: &mut Vec<u8>, names: &[AttributeName]) {
    let attrs = entry.attributes();
    put_varint(out, attrs.len());
    for a in attrs {
        put_attribute(out, &a.name, &a.values, names);
    }
}

/// Appends one attribute: its name (see [`put_name`]), its value count and its values.
fn put_attribute(out: &mut Vec<u8>, name: &str, values: &[String], names: &[AttributeName]) {
    put_name(out, name, names);
    put_varint(out, values.len());
    for v in values {
        put_str(out, v);
    }
}

/// [`encode`] of `entry` with `overrides` in it: each replaces the entry's attribute of the
/// same name (compared without case) in its place, or comes after the entry's own, as
/// [`Entry::set`] would have put it. What the store writes for a new entry, whose hashed
/// password and account control are made without copying the entry.
pub(crate) fn encode_stored(
    entry: &Entry,
    overrides: &[crate::entry::Attribute],
    out: &mut Vec<u8>,
) {
    let overridden = |name: &str| overrides.iter().find(|o| o.name.eq_ignore_ascii_case(name));
    let attrs = entry.attributes();
    let added: Vec<&crate::entry::Attribute> = overrides
        .iter()
        .filter(|o| entry.get(&o.name).is_empty())
        .collect();
    put_varint(out, attrs.len() + added.len());
    for a in attrs {
        let values = overridden(&a.name).map_or(&a.values, |o| &o.values);
        put_attribute(out, &a.name, values, &[]);
    }
    for o in added {
        put_attribute(out, &o.name, &o.values, &[]);
    }
}

/// The entry [`encode`] wrote; `Err` names what is damaged.
pub(crate) fn decode(dn: String, bytes: &[u8]) -> Result<Entry, String> {
    decode_some(dn, bytes, &Wanted::All)
}

/// Which attributes a read decodes: the others are passed over without a copy.
pub(crate) enum Wanted<'a> {
    All,
    Only(Vec<&'a str>),
}

impl<'a> Wanted<'a> {
    /// What a search needs: the attributes asked for and those its filter reads (none asked
    /// for: all of them).
    pub(crate) fn for_search(
        attributes: &'a [String],
        filter_attributes: &'a [String],
    ) -> Wanted<'a> {
        if attributes.is_empty() {
            return Wanted::All;
        }
        Wanted::Only(
            attributes
                .iter()
                .chain(filter_attributes)
                .map(String::as_str)
                .collect(),
        )
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Wanted::All => true,
            Wanted::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// A reader of many records that wants the same attributes of each: what a scan decodes with.
///
/// Records of one store mostly list the same names in the same order, so the reader keeps,
/// for each place in a record, the name last met there and its answer (the name itself,
/// ready to clone into an entry, or `None`: not wanted). A name is then compared once, byte
/// for byte, and never parsed into a new [`AttributeName`].
pub(crate) struct Decoder<'a> {
    wanted: Wanted<'a>,
    seen: Vec<(Box<str>, Option<AttributeName>)>,
}

impl<'a> Decoder<'a> {
    /// A decoder of the attributes `wanted`.
    pub(crate) fn new(wanted: Wanted<'a>) -> Decoder<'a> {
        Decoder {
            wanted,
            seen: Vec::new(),
        }
    }

    /// The name to give the record's `place`-th attribute, `name`, or `None` to pass it over.
    fn name_at(&mut self, place: usize, name: &str) -> Option<AttributeName> {
        if let Some((known, answer)) = self.seen.get(place)
            && **known == *name
        {
            return answer.clone();
        }
        let answer = self.wanted.has(name).then(|| AttributeName::from(name));
        // A handful of places is enough for the records of one job.
        if place < 64 {
            if self.seen.len() <= place {
                self.seen.resize(place + 1, (Box::from(""), None));
            }
            self.seen[place] = (name.into(), answer.clone());
        }
        answer
    }

    /// Makes `entry` the entry `dn` whose record is `bytes`, of the wanted attributes,
    /// reusing what `entry` held: its strings and vectors take the new values, so records of
    /// one shape, decoded one after another, allocate nothing. The whole record is still
    /// checked; `Err` names what is damaged (and `entry` is then left half made).
    pub(crate) fn decode_reusing(
        &mut self,
        entry: &mut Entry,
        dn: &str,
        bytes: &[u8],
    ) -> Result<(), String> {
        let damaged = || format!("the record of {dn} is damaged");
        let text = std::str::from_utf8(bytes).ok();
        let string = |at: &mut usize| get_str_in(bytes, text, at);
        entry.dn.clear();
        entry.dn.push_str(dn);
        let attrs = entry.attribute_slots();
        let mut used = 0;
        let mut at = 0;
        let count = get_varint(bytes, &mut at).ok_or_else(damaged)?;
        for place in 0..count {
            let name = string(&mut at).ok_or_else(damaged)?;
            let n = get_varint(bytes, &mut at).ok_or_else(damaged)?;
            let Some(name) = self.name_at(place, name) else {
                skip_values(bytes, &mut at, n).ok_or_else(damaged)?;
                continue;
            };
            if used == attrs.len() {
                attrs.push(crate::entry::Attribute {
                    name,
                    values: Vec::new(),
                });
            } else if attrs[used].name != name.as_str() {
                attrs[used].name = name;
            }
            let values = &mut attrs[used].values;
            for k in 0..n {
                let v = string(&mut at).ok_or_else(damaged)?;
                match values.get_mut(k) {
                    Some(held) => {
                        held.clear();
                        held.push_str(v);
                    }
                    None => values.push(v.to_string()),
                }
            }
            values.truncate(n);
            used += 1;
        }
        attrs.truncate(used);
        if at != bytes.len() {
            return Err(damaged());
        }
        entry.settle();
        Ok(())
    }
}

/// [`decode`], of the attributes `wanted` only. The whole record is still checked.
pub(crate) fn decode_some(dn: String, bytes: &[u8], wanted: &Wanted<'_>) -> Result<Entry, String> {
    decode_with(dn, bytes, wanted, &[])
}

/// [`decode_some`] of what [`encode_with`] wrote with the table `names`.
pub(crate) fn decode_with(
    dn: String,
    bytes: &[u8],
    wanted: &Wanted<'_>,
    names: &[AttributeName],
) -> Result<Entry, String> {
    // Most records are UTF-8 through and through (ASCII, lengths below 128 included):
    // checked once here, their strings need no check of their own.
    let text = std::str::from_utf8(bytes).ok();
    let string = |at: &mut usize| get_str_in(bytes, text, at);
    let damaged = || format!("the record of {dn} is damaged");
    let mut at = 0;
    let count = get_varint(bytes, &mut at).ok_or_else(damaged)?;
    let mut attrs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = if names.is_empty() {
            string(&mut at)
        } else {
            get_name(bytes, &mut at, names)
        }
        .ok_or_else(damaged)?;
        let n = get_varint(bytes, &mut at).ok_or_else(damaged)?;
        if wanted.has(name) {
            let mut values = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                values.push(string(&mut at).ok_or_else(damaged)?.to_string());
            }
            attrs.push(crate::entry::Attribute {
                name: name.into(),
                values,
            });
        } else {
            skip_values(bytes, &mut at, n).ok_or_else(damaged)?;
        }
    }
    if at != bytes.len() {
        return Err(damaged());
    }
    Ok(Entry::from_attribute_list(dn, attrs))
}

/// Moves `*at` past `n` values without reading them; `None` when the record ends first.
fn skip_values(bytes: &[u8], at: &mut usize, n: usize) -> Option<()> {
    for _ in 0..n {
        let len = get_varint(bytes, at)?;
        *at = at.checked_add(len).filter(|end| *end <= bytes.len())?;
    }
    Some(())
}

/// Reads a string of a record at `*at`: sliced from `text`, the whole record when it is
/// UTF-8 through and through (checked once, for every string in it), else checked alone.
fn get_str_in<'a>(bytes: &'a [u8], text: Option<&'a str>, at: &mut usize) -> Option<&'a str> {
    let len = get_varint(bytes, at)?;
    let end = at.checked_add(len)?;
    let s = match text {
        Some(text) => text.get(*at..end)?,
        None => std::str::from_utf8(bytes.get(*at..end)?).ok()?,
    };
    *at = end;
    Some(s)
}

/// The values of `name` in a packed buffer, borrowed (none when it has no such attribute or
/// the buffer is damaged).
pub(crate) fn values_of<'a>(bytes: &'a [u8], name: &str) -> Vec<&'a str> {
    values_of_with(bytes, name, &[])
}

/// [`values_of`] in what [`encode_with`] wrote with the table `names`.
pub(crate) fn values_of_with<'a>(
    bytes: &'a [u8],
    name: &str,
    names: &'a [AttributeName],
) -> Vec<&'a str> {
    let Some((mut at, n)) = locate(bytes, name, names) else {
        return Vec::new();
    };
    (0..n).map_while(|_| get_str(bytes, &mut at)).collect()
}

/// The first value of `name` in what [`encode_with`] wrote with the table `names`, found
/// without gathering the others: what most lookups ask for.
pub(crate) fn first_of_with<'a>(
    bytes: &'a [u8],
    name: &str,
    names: &'a [AttributeName],
) -> Option<&'a str> {
    let (mut at, n) = locate(bytes, name, names)?;
    if n == 0 {
        return None;
    }
    get_str(bytes, &mut at)
}

/// Where the values of `name` start in a packed buffer, and how many there are; `None` when
/// it has no such attribute or the buffer is damaged.
fn locate(bytes: &[u8], name: &str, names: &[AttributeName]) -> Option<(usize, usize)> {
    let mut at = 0;
    let count = get_varint(bytes, &mut at)?;
    for _ in 0..count {
        let attr = get_name(bytes, &mut at, names)?;
        let n = get_varint(bytes, &mut at)?;
        if attr.eq_ignore_ascii_case(name) {
            return Some((at, n));
        }
        for _ in 0..n {
            get_str(bytes, &mut at)?;
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry with these attributes, for the destinations' tests.
    pub(crate) fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        let mut e = Entry::new(dn);
        for (name, values) in attrs {
            e.set(name, values.iter().map(|v| v.to_string()).collect());
        }
        e
    }

    #[test]
    fn one_entry_reused_for_records_of_any_shape_reads_each_exactly() {
        let records = [
            entry(
                "CN=Ann,DC=lab",
                &[
                    ("objectClass", &["top", "user"]),
                    ("cn", &["Ann"]),
                    ("telephoneNumber", &["1", "2", "3"]),
                    ("title", &["Clerk"]),
                ],
            ),
            // Fewer attributes, fewer values, another order, text that is not ASCII.
            entry(
                "CN=Åsa,DC=lab",
                &[("cn", &["Åsa"]), ("objectClass", &["user"])],
            ),
            entry(
                "CN=Bob,DC=lab",
                &[
                    ("objectClass", &["top", "person", "user"]),
                    ("cn", &["Bob"]),
                    ("telephoneNumber", &["9"]),
                    ("title", &["Boss"]),
                    ("mail", &["bob@lab"]),
                ],
            ),
        ];
        let all = Wanted::All;
        let wanted = ["cn".to_string(), "TELEPHONENUMBER".to_string()];
        let some = Wanted::for_search(&wanted, &[]);
        for (wanted, names) in [(all, None), (some, Some(&wanted))] {
            let mut decoder = Decoder::new(wanted);
            let mut reused = Entry::new("");
            for record in records.iter().chain(records.iter().rev()) {
                let mut bytes = Vec::new();
                encode(record, &mut bytes);
                decoder
                    .decode_reusing(&mut reused, &record.dn, &bytes)
                    .unwrap();
                let mut expected = record.clone();
                if let Some(names) = names {
                    expected.retain(|n| names.iter().any(|w| w.eq_ignore_ascii_case(n)));
                }
                assert_eq!(reused, expected);
            }
        }
    }

    #[test]
    fn a_damaged_record_is_an_error_not_an_entry() {
        let mut bytes = Vec::new();
        encode(&entry("CN=Ann,DC=lab", &[("cn", &["Ann"])]), &mut bytes);
        let mut decoder = Decoder::new(Wanted::All);
        let mut reused = Entry::new("");
        for cut in [bytes.len() - 1, 2] {
            let err = decoder
                .decode_reusing(&mut reused, "CN=Ann,DC=lab", &bytes[..cut])
                .unwrap_err();
            assert!(err.contains("CN=Ann,DC=lab"), "{err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decoder.decode_reusing(&mut reused, "x", &longer).is_err());
        // Invalid UTF-8 in a value.
        let at = bytes.len() - 1;
        bytes[at] = 0xff;
        assert!(decoder.decode_reusing(&mut reused, "x", &bytes).is_err());
    }
}
