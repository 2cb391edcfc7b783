//! An LDAP directory as a source, so a directory-to-directory job runs.
//!
//! The job's source query is an LDAP filter (`(objectClass=user)`) or a GroupID query
//! (`objectClass is exactly "user"`), run as a paged subtree search under the base DN. Each entry
//! is a row: a `dn` column, then one column per attribute the entries have (in name order), a
//! multi-valued attribute's values joined with `;` (give the field the delimiter `;` to write
//! them back as several values).

use super::{RowSet, Source, SourceError, rows_from_entries};
use crate::ldap::search::paged_search;
use crate::ldap::{Failure, LdapConfig, Pool, result_name};
use crate::query::parse_destination_query;

/// An LDAP server's entries under a base DN, as rows.
///
/// ```no_run
/// use datasync::ldap::LdapConfig;
/// use datasync::source::{LdapSource, Source};
/// let config = LdapConfig::parse("ldaps://dc1.example.com/OU=Staff,DC=example,DC=com")?;
/// let mut source = LdapSource::connect(config)?;
/// let rows = source.query("(objectClass=user)")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LdapSource {
    pool: Pool,
    base: String,
}

fn source_error(failure: Failure, server: &str) -> SourceError {
    let (message, cause) = match failure {
        Failure::Unavailable { message, cause } | Failure::Other { message, cause } => {
            (message, cause)
        }
        Failure::Result { code, text } => {
            (format!("LDAP {code} {}: {text}", result_name(code)), None)
        }
    };
    SourceError::Directory {
        server: server.to_string(),
        message,
        source: crate::ldap::source_of(cause),
    }
}

impl LdapSource {
    /// Connects and binds; the search base is the URL's DN (`ldap://host/OU=Staff,DC=lab`).
    pub fn connect(config: LdapConfig) -> Result<LdapSource, SourceError> {
        let server = config.url.clone();
        let base = config
            .base_dn
            .clone()
            .ok_or_else(|| SourceError::Directory {
                server: server.clone(),
                message: "no base DN to search under: give it as the URL's path \
                      (ldap://host/OU=Staff,DC=example,DC=com)"
                    .into(),
                source: None,
            })?;
        let pool = Pool::new(config).map_err(|f| source_error(f, &server))?;
        pool.run(|_, _| Ok(()))
            .map_err(|f| source_error(f, &server))?;
        Ok(LdapSource { pool, base })
    }
}

impl Source for LdapSource {
    fn query(&mut self, query: &str) -> Result<RowSet, SourceError> {
        let filter = parse_destination_query(query).map_err(|e| SourceError::Query {
            query: query.to_string(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        let filter = filter.to_string();
        let server = self.pool.config().url.clone();
        let page = self.pool.config().page_size;
        let base = self.base.clone();
        // In tree order, so rows come in the same order on every run.
        let entries = self
            .pool
            .run(|conn, _| paged_search(conn, page, &base, ldap3::Scope::Subtree, &filter, &[]))
            .map_err(|f| source_error(f, &server))?;
        Ok(rows_from_entries(
            entries
                .into_iter()
                .map(|e| (e.dn, e.attrs.into_iter().collect())),
        ))
    }
}
