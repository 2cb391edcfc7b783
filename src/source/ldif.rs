//! An LDIF file of content records as a source: each entry a row (see
//! [`rows_from_entries`](super::rows_from_entries)), in tree order, without password
//! attributes. The embedded store as a source is [`DirectorySource`](crate::destination::DirectorySource),
//! which reads LDIF files through this one.

use std::path::{Path, PathBuf};

use super::{RowSet, Source, SourceError, rows_from_entries};
use crate::entry::{Entry, is_password_attribute, ldif};
use crate::query::{Filter, parse_destination_query};

/// An LDIF file's entries, read whole, as rows.
///
/// ```
/// use datasync::source::{LdifSource, Source};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("people.ldif");
/// std::fs::write(&path, "dn: DC=lab\nobjectClass: domain\ndc: lab\n\n\
///     dn: CN=Ann,DC=lab\nobjectClass: user\ncn: Ann\nuserPassword: secret\n")?;
/// let mut source = LdifSource::open(&path)?;
/// let rows = source.query("(objectClass=user)")?;
/// assert_eq!(rows.columns.names(), ["dn", "cn", "objectClass"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LdifSource {
    entries: Vec<Entry>,
}

impl LdifSource {
    /// Reads the LDIF file at `path`.
    pub fn open(path: &Path) -> Result<LdifSource, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let entries = ldif::parse(&text).map_err(|source| SourceError::DirectoryFile {
            path: PathBuf::from(path),
            source: Box::new(source),
        })?;
        let mut keyed: Vec<(String, Entry)> = entries
            .into_iter()
            .map(|e| (crate::dn::sort_key(&e.dn), e))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(LdifSource {
            entries: keyed.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// The entries, in tree order.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Source for LdifSource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        let filter = parse_query(query)?;
        let mut found = Vec::new();
        self.entries
            .iter()
            .for_each(|e| take_matching(&filter, e, &mut found));
        Ok(entries_as_rows(found))
    }
}

/// The job's source query as a filter (an LDAP filter or a GroupID query).
pub(crate) fn parse_query(query: &str) -> Result<Filter, SourceError> {
    parse_destination_query(query).map_err(|e| SourceError::Query {
        query: query.to_string(),
        message: e.to_string(),
        source: Some(Box::new(e)),
    })
}

/// Keeps a copy of `entry` in `found` when it matches, without its password attributes (a
/// store keeps only their hashes, and those are not for a file or a table).
pub(crate) fn take_matching(filter: &Filter, entry: &Entry, found: &mut Vec<Entry>) {
    if filter.matches_by(&|name: &str| entry.get(name)) {
        let mut e = entry.clone();
        e.retain(|name| !is_password_attribute(name));
        found.push(e);
    }
}

/// Entries as rows, in their order.
pub(crate) fn entries_as_rows(entries: Vec<Entry>) -> RowSet {
    rows_from_entries(entries.into_iter().map(|e| {
        let dn = e.dn.clone();
        let attributes = e
            .into_attributes()
            .into_iter()
            .map(|(name, values)| (name.to_string(), values))
            .collect();
        (dn, attributes)
    }))
}
