//! Paged searches on an LDAP connection, shared by the LDAP destination and the LDAP source:
//! pages handed over as they arrive, continuation references skipped, and attributes a server
//! answers in ranges (Active Directory's `member;range=0-1499`) asked for until they are whole.

use ldap3::{LdapConn, LdapError, SearchEntry};

/// A search result entry as [`SearchEntry`], or `None` when it is malformed: what
/// `SearchEntry::construct` does, without its panics on what a server sends.
pub(crate) fn decode_entry(raw: ldap3::ResultEntry) -> Option<SearchEntry> {
    let mut parts = raw.0.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut bin_attrs: std::collections::HashMap<String, Vec<Vec<u8>>> = Default::default();
    for attribute in parts.next()?.expect_constructed()? {
        let mut pair = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(pair.next()?.expect_primitive()?).ok()?;
        let raw_values: Vec<Vec<u8>> = pair
            .next()?
            .expect_constructed()?
            .into_iter()
            .map(|v| v.expect_primitive())
            .collect::<Option<_>>()?;
        // A binary attribute's bytes are carried as base64 (see `is_binary_attribute`).
        if crate::entry::is_binary_attribute(&name) {
            use base64::Engine;
            let values = raw_values
                .iter()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
                .collect();
            attrs.insert(name, values);
            continue;
        }
        // As ldap3 does: an attribute with any value that is not UTF-8 is binary throughout.
        if raw_values.iter().all(|v| std::str::from_utf8(v).is_ok()) {
            let values = raw_values
                .into_iter()
                .filter_map(|v| String::from_utf8(v).ok())
                .collect();
            attrs.insert(name, values);
        } else {
            bin_attrs.insert(name, raw_values);
        }
    }
    Some(SearchEntry {
        dn,
        attrs,
        bin_attrs,
    })
}

/// Active Directory's `MaxValRange`: the most values of one attribute it hands out at once.
pub(crate) const AD_RANGE_WINDOW: u32 = 1500;

/// The attributes asked for in ranges when a window is given: the large multi-valued ones.
pub(crate) fn asked_in_ranges(attribute: &str) -> bool {
    attribute.eq_ignore_ascii_case("member")
}

/// An attribute description with a range option, `name;range=LOW-HIGH` (`HIGH` a number or
/// `*`): the name, the first value's place and the last's (`None` for `*`, the end).
pub(crate) fn ranged(description: &str) -> Option<(&str, u64, Option<u64>)> {
    let (name, options) = description.split_once(';')?;
    let range = options.split(';').find_map(|o| {
        o.get(..6)
            .filter(|p| p.eq_ignore_ascii_case("range="))
            .map(|_| &o[6..])
    })?;
    let (low, high) = range.split_once('-')?;
    let low = low.parse().ok()?;
    let high = if high == "*" {
        None
    } else {
        Some(high.parse().ok()?)
    };
    Some((name, low, high))
}

/// Where the range after an answer's `low`-`high` starts, `None` when that answer was the
/// last: its range ends in `*`, or it does not move on (no values, or a range that ends before
/// it starts, or at the end of the numbers), which would otherwise be asked for forever.
pub(crate) fn next_range(low: u64, high: Option<u64>, values: usize) -> Option<u64> {
    high.filter(|high| *high >= low && values > 0)?
        .checked_add(1)
}

/// The attributes of `entry` that came in ranges, renamed to their plain names (values of one
/// name gathered), with where each must go on from: empty when every one is complete.
pub(crate) fn gather_ranges(entry: &mut SearchEntry) -> Vec<(String, u64)> {
    let ranged_descriptions: Vec<String> = entry
        .attrs
        .keys()
        .filter(|k| ranged(k).is_some())
        .cloned()
        .collect();
    let mut unfinished = Vec::new();
    for description in ranged_descriptions {
        let (Some(values), Some((name, low, high))) =
            (entry.attrs.remove(&description), ranged(&description))
        else {
            continue;
        };
        if let Some(next) = next_range(low, high, values.len()) {
            unfinished.push((name.to_string(), next));
        }
        entry
            .attrs
            .entry(name.to_string())
            .or_default()
            .extend(values);
    }
    unfinished
}

/// Asks for the rest of `entry`'s ranged attributes, window by window (or as the server's
/// answers go), until each answer's range ends in `*`.
pub(crate) fn complete_ranges(
    conn: &mut LdapConn,
    entry: &mut SearchEntry,
    mut unfinished: Vec<(String, u64)>,
    window: Option<u32>,
) -> Result<(), LdapError> {
    let malformed =
        |what: String| LdapError::from(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    while let Some((name, from)) = unfinished.pop() {
        let asked = match window {
            Some(w) => format!(
                "{name};range={from}-{}",
                from.saturating_add(u64::from(w) - 1)
            ),
            None => format!("{name};range={from}-*"),
        };
        let (found, _) = conn
            .search(
                &entry.dn,
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec![asked.as_str()],
            )?
            .success()?;
        let Some(mut part) = found
            .into_iter()
            .filter(|r| !r.is_ref() && !r.is_intermediate())
            .find_map(decode_entry)
        else {
            return Err(malformed(format!("{}: no answer for {asked}", entry.dn)));
        };
        let answer = part.attrs.keys().find_map(|k| {
            let (n, low, high) = ranged(k)?;
            n.eq_ignore_ascii_case(&name)
                .then(|| (k.clone(), low, high))
        });
        let Some((description, low, high)) = answer else {
            // The values ran out exactly at the end of the last window: nothing more.
            continue;
        };
        let values = part.attrs.remove(&description).unwrap_or_default();
        if low != from {
            return Err(malformed(format!(
                "{}: asked for {asked}, the server answered {description}",
                entry.dn
            )));
        }
        let next = next_range(low, high, values.len());
        entry.attrs.entry(name.clone()).or_default().extend(values);
        if let Some(next) = next {
            unfinished.push((name, next));
        }
    }
    Ok(())
}

/// What [`paged_search_each`] asks a server for.
#[derive(Clone, Copy)]
pub(crate) struct PagedSearch<'a> {
    /// Entries a page.
    pub page_size: i32,
    pub base: &'a str,
    pub scope: ldap3::Scope,
    pub filter: &'a str,
    /// The attributes (none: all of them).
    pub attributes: &'a [String],
    /// Ask for `member` in ranges of this many values (Active Directory).
    pub range_window: Option<u32>,
}

/// Runs a paged search on `conn`, handing `each` its entries as pages arrive: a search over
/// 100,000 objects holds one page, not all of them. Returns how many it handed over.
///
/// Attributes the server answers in ranges are asked for again until they are whole (see
/// the module docs); `range_window`, when given, asks for `member` in ranges of that many
/// values from the start. An entry with such an attribute is handed over after the paged
/// search ends, as the connection is the search's until then.
pub(crate) fn paged_search_each(
    conn: &mut LdapConn,
    search: &PagedSearch<'_>,
    each: &mut dyn FnMut(SearchEntry),
) -> Result<usize, LdapError> {
    let PagedSearch {
        page_size,
        base,
        scope,
        filter,
        attributes,
        range_window,
    } = *search;
    let asked: Vec<String> = if attributes.is_empty() {
        vec!["*".into()]
    } else {
        attributes
            .iter()
            .map(|a| match range_window {
                Some(w) if asked_in_ranges(a) => format!("{a};range=0-{}", w - 1),
                _ => a.clone(),
            })
            .collect()
    };
    let paging = ldap3::adapters::PagedResults::new(page_size);
    let mut stream = conn.streaming_search_with(paging, base, scope, filter, asked)?;
    let mut handed = 0;
    let mut waiting: Vec<(SearchEntry, Vec<(String, u64)>)> = Vec::new();
    while let Some(raw) = stream.next()? {
        // Referrals and continuation references (AD answers a search of the domain root with
        // its DomainDnsZones, ForestDnsZones and Configuration partitions) are not entries of
        // ours: they are skipped, never followed.
        if raw.is_ref() || raw.is_intermediate() {
            continue;
        }
        let Some(mut entry) = decode_entry(raw) else {
            return Err(LdapError::from(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the server sent a search entry that is not well-formed",
            )));
        };
        let unfinished = gather_ranges(&mut entry);
        if unfinished.is_empty() {
            each(entry);
            handed += 1;
        } else {
            waiting.push((entry, unfinished));
        }
    }
    // The search is over (`result` takes the stream): the connection is free for the rest
    // of the ranges.
    stream.result().success()?;
    for (mut entry, unfinished) in waiting {
        complete_ranges(conn, &mut entry, unfinished, range_window)?;
        each(entry);
        handed += 1;
    }
    Ok(handed)
}

/// Runs a paged search on `conn` and collects its entries in tree order (parents before
/// children, then by name), as the embedded directory lists them: the same order on every run,
/// whatever order the server keeps.
pub(crate) fn paged_search(
    conn: &mut LdapConn,
    page_size: i32,
    base: &str,
    scope: ldap3::Scope,
    filter: &str,
    attributes: &[String],
) -> Result<Vec<SearchEntry>, LdapError> {
    let mut entries = Vec::new();
    let search = PagedSearch {
        page_size,
        base,
        scope,
        filter,
        attributes,
        range_window: None,
    };
    paged_search_each(conn, &search, &mut |entry| {
        entries.push((crate::dn::sort_key(&entry.dn), entry));
    })?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}
