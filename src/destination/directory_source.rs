//! The embedded directory as a source: the SQLite store (`db:PATH`) or an LDIF file
//! (`ldif:PATH`), so the directory a job filled can be exported or fed to another job.
//!
//! As with an LDAP source, the job's source query is an LDAP filter or a GroupID query, and
//! each matching entry is a row: a `dn` column, then one column per attribute the matching
//! entries have (in name order), a multi-valued attribute's values joined with `;`. Entries
//! come in tree order (parents first), so rows come in the same order on every run. Password
//! attributes (`userPassword`, `unicodePwd`) are never columns: the store keeps only their
//! hashes, and those are not for a file or table.

use std::path::{Path, PathBuf};

use super::Store;
use crate::source::ldif::{entries_as_rows, parse_query, take_matching};
use crate::source::{LdifSource, RowSet, Source, SourceError};

/// The embedded directory's entries, as rows.
///
/// ```
/// use datasync::destination::DirectorySource;
/// use datasync::source::Source;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("people.ldif");
/// std::fs::write(&path, "dn: DC=lab\nobjectClass: domain\ndc: lab\n\n\
///     dn: CN=Ann,DC=lab\nobjectClass: user\ncn: Ann\ntelephoneNumber: 1\ntelephoneNumber: 2\n")?;
/// let mut source = DirectorySource::open(&format!("ldif:{}", path.display()))?;
/// let rows = source.query("(objectClass=user)")?;
/// assert_eq!(rows.columns.names(), ["dn", "cn", "objectClass", "telephoneNumber"]);
/// assert_eq!(rows.rows[0].values[3].as_deref(), Some("1;2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DirectorySource {
    path: PathBuf,
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// The store, opened to read.
    Store(Store),
    /// An LDIF file, read whole.
    Ldif(LdifSource),
}

impl DirectorySource {
    /// Opens `db:PATH` (the store, read only: a run elsewhere may hold it for writing) or
    /// `ldif:PATH` (an LDIF file of content records).
    pub fn open(url: &str) -> Result<DirectorySource, SourceError> {
        if let Some(path) = url.strip_prefix("db:") {
            DirectorySource::store(Path::new(path))
        } else if let Some(path) = url.strip_prefix("ldif:") {
            DirectorySource::ldif(Path::new(path))
        } else {
            Err(SourceError::Unsupported {
                path: PathBuf::from(url),
            })
        }
    }

    /// The store at `path`, which must exist.
    pub fn store(path: &Path) -> Result<DirectorySource, SourceError> {
        // Opening a store that is not there would make an empty one.
        std::fs::metadata(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Store::open_to_read(path).map_err(|source| SourceError::DirectoryFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(DirectorySource {
            path: path.to_path_buf(),
            held: Held::Store(store),
        })
    }

    /// The LDIF file at `path` (see [`LdifSource`]).
    pub fn ldif(path: &Path) -> Result<DirectorySource, SourceError> {
        Ok(DirectorySource {
            path: path.to_path_buf(),
            held: Held::Ldif(LdifSource::open(path)?),
        })
    }
}

impl Source for DirectorySource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        let filter = parse_query(query)?;
        let mut found = Vec::new();
        match &self.held {
            Held::Ldif(file) => file
                .entries()
                .iter()
                .for_each(|e| take_matching(&filter, e, &mut found)),
            Held::Store(store) => store
                .each_entry(&mut |e| take_matching(&filter, e, &mut found))
                .map_err(|source| SourceError::DirectoryFile {
                    path: self.path.clone(),
                    source: Box::new(source),
                })?,
        }
        Ok(entries_as_rows(found))
    }
}
