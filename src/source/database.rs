//! What the database sources share: how a connection is named and secured
//! ([`DatabaseConfig`]), how a delta run's watermark is pushed into the query
//! ([`Since`]), and how a stop reaches a query the server is still computing.

// The helpers serve the drivers: a build without any leaves them unused.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "odbc")),
    allow(dead_code)
)]

use crate::Secret;
use crate::tls::TlsVerify;

use super::SourceError;

/// How to reach a database source.
///
/// The URL names the server, the user and the database (`postgres://hr@db.lab:5432/hr`,
/// `mysql://hr@db.lab/hr`); it never holds the password, which comes apart (the command line
/// reads it from `DATASYNC_SOURCE_PASSWORD`), so that a URL can be shown in messages and logs.
///
/// TLS: `?sslmode=require` (or `verify-ca`, `verify-full`) on a PostgreSQL URL, or
/// `?ssl-mode=REQUIRED` (or `VERIFY_CA`, `VERIFY_IDENTITY`) on a MySQL one, or any
/// [`TlsVerify::CaFile`], makes the connection encrypted, and the server's certificate is then
/// always checked, by the same rules as an LDAP server's (the CA file's certificates, or the
/// system's roots). Without them the connection is plain, as on a loopback or a private network.
///
/// ```
/// use datasync::source::DatabaseConfig;
/// let config = DatabaseConfig::new("postgres://hr@127.0.0.1:5432/hr").with_password("s3cret");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The server's URL, without a password.
    pub url: String,
    /// The password, if the server asks for one.
    pub password: Option<Secret>,
    /// How the server's certificate is checked when the connection is encrypted.
    pub tls_verify: TlsVerify,
}

impl DatabaseConfig {
    /// A connection to `url`, without a password, checking certificates against the system's
    /// roots when encrypted.
    pub fn new(url: impl Into<String>) -> DatabaseConfig {
        DatabaseConfig {
            url: url.into(),
            password: None,
            tls_verify: TlsVerify::SystemRoots,
        }
    }

    /// The same connection, with this password.
    pub fn with_password(mut self, password: impl Into<String>) -> DatabaseConfig {
        self.password = Some(Secret::new(password));
        self
    }

    /// The same connection, checking the server's certificate this way.
    pub fn with_tls_verify(mut self, tls_verify: TlsVerify) -> DatabaseConfig {
        self.tls_verify = tls_verify;
        self
    }

    /// The TLS client configuration for an encrypted connection.
    #[cfg(feature = "postgres")]
    pub(crate) fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        match &self.tls_verify {
            TlsVerify::CaFile(path) => crate::tls::verify::ca_file_config(path),
            TlsVerify::SystemRoots => crate::tls::verify::system_roots_config(),
            TlsVerify::DangerouslyAcceptAnyCertificate => Err(
                "a database source always checks the server's certificate; give its CA with \
                 --ca-file"
                    .into(),
            ),
        }
    }

    /// A connection error naming this server.
    pub(crate) fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Database {
            server: self.url.clone(),
            message: message.into(),
        }
    }
}

/// Whether `url` names a database source: `postgres://`, `postgresql://`, `mysql://` or
/// `mariadb://` (MariaDB and MySQL), or `odbc:` and an ODBC connection string.
pub fn is_database_url(url: &str) -> bool {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    [
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
        "odbc:",
    ]
    .iter()
    .any(|scheme| lower.starts_with(scheme))
}

/// A delta run's watermark, for a source that can have its server send only the rows past
/// it: the column the job's `timeStampField` names and the highest value the last run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since<'a> {
    /// The column that stamps each row with its last change.
    pub column: &'a str,
    /// The last run's watermark, as the source gave it then.
    pub value: &'a str,
}

/// `config`'s URL without its TLS parameter (any of `keys`, read by `wants`), and whether the
/// connection is to be encrypted: asked for by that parameter, or by a CA file. The drivers
/// parse the rest of the URL themselves; the TLS mode is ours, as the certificate check is.
pub(crate) fn take_tls_mode(
    config: &DatabaseConfig,
    keys: &[&str],
    wants: fn(&str) -> Result<bool, String>,
) -> Result<(String, bool), SourceError> {
    let (base, params) = split_query(&config.url);
    let mut tls = matches!(config.tls_verify, TlsVerify::CaFile(_));
    let mut rest = Vec::new();
    for (key, value) in params {
        if keys.iter().any(|k| k.eq_ignore_ascii_case(&key)) {
            tls |= wants(&value).map_err(|m| config.error(m))?;
        } else {
            rest.push(format!("{key}={value}"));
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, tls))
}

/// Splits `url`'s query string into its parameters, and the URL without them.
fn split_query(url: &str) -> (&str, Vec<(String, String)>) {
    match url.split_once('?') {
        None => (url, Vec::new()),
        Some((base, query)) => (
            base,
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect(),
        ),
    }
}

/// Refuses a URL that carries a password (`user:password@host`): it would be shown wherever
/// the URL is, and the command line's arguments are visible to every user of the machine.
pub(crate) fn refuse_password_in_url(config: &DatabaseConfig) -> Result<(), SourceError> {
    let after_scheme = config.url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
    if let Some((user_info, _)) = authority.rsplit_once('@')
        && user_info.contains(':')
    {
        return Err(SourceError::Database {
            // Not the URL as given: it holds the password.
            server: redact(&config.url),
            message: "the URL holds a password; give it in DATASYNC_SOURCE_PASSWORD (or \
                      DatabaseConfig::password) instead"
                .into(),
        });
    }
    Ok(())
}

/// `url` with the password of its user part, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Watches a stop signal while a query runs, and calls `cancel` once when it fires, so that a
/// cancelled or timed-out run does not wait for a long query to finish on the server.
pub(crate) fn cancel_on_stop<T>(
    stop: Option<super::StopSignal>,
    cancel: impl FnOnce() + Send,
    work: impl FnOnce() -> T,
) -> T {
    let Some(stop) = stop else {
        return work();
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if stop.should_stop() {
                    cancel();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let answer = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        answer
    })
}

/// A change to one row of a database table, cells by their place in the table's columns.
#[derive(Debug)]
pub(crate) enum RowChange<'a> {
    /// A new row: every cell (empty ones are left to the column's default).
    Insert(&'a [String]),
    /// The row whose key cells hold `keys` (as read) gets these cells.
    Update {
        keys: Vec<(usize, &'a str)>,
        cells: Vec<(usize, &'a str)>,
    },
    /// The row whose key cells hold `keys` is removed.
    Delete { keys: Vec<(usize, &'a str)> },
}

/// A database table behind a table destination: it applies a run's row changes, all in one
/// transaction or none (the server's message when not).
pub(crate) trait DatabaseTable: Send + std::fmt::Debug {
    fn apply(&mut self, changes: &[RowChange<'_>]) -> Result<(), String>;
}

/// One statement of a database table's commit: its SQL, and its parameters as the column each
/// is for and its text, in placeholder order.
pub(crate) struct TableStatement<'a> {
    pub sql: String,
    pub params: Vec<(usize, &'a str)>,
}

/// The SQL for `changes` to `table` (a name already checked): columns named by `column(i)`,
/// each parameter written as `placeholder(i, n)` for column `i`, `n` counting from 1. An
/// insert names only its non-empty cells, leaving the others to the columns' defaults.
pub(crate) fn table_statements<'a>(
    table: &str,
    changes: &[RowChange<'a>],
    column: &dyn Fn(usize) -> String,
    placeholder: &dyn Fn(usize, usize) -> String,
) -> Vec<TableStatement<'a>> {
    let assignments = |pairs: &[(usize, &str)], first: usize, separator: &str| -> String {
        pairs
            .iter()
            .enumerate()
            .map(|(n, (i, _))| format!("{} = {}", column(*i), placeholder(*i, first + n)))
            .collect::<Vec<_>>()
            .join(separator)
    };
    changes
        .iter()
        .map(|change| match change {
            RowChange::Insert(cells) => {
                let params: Vec<(usize, &str)> = cells
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(i, v)| (i, v.as_str()))
                    .collect();
                TableStatement {
                    sql: format!(
                        "INSERT INTO {table} ({}) VALUES ({})",
                        params
                            .iter()
                            .map(|(i, _)| column(*i))
                            .collect::<Vec<_>>()
                            .join(", "),
                        params
                            .iter()
                            .enumerate()
                            .map(|(n, (i, _))| placeholder(*i, n + 1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    params,
                }
            }
            RowChange::Update { keys, cells } => TableStatement {
                sql: format!(
                    "UPDATE {table} SET {} WHERE {}",
                    assignments(cells, 1, ", "),
                    assignments(keys, cells.len() + 1, " AND ")
                ),
                params: cells.iter().chain(keys.iter()).copied().collect(),
            },
            RowChange::Delete { keys } => TableStatement {
                sql: format!(
                    "DELETE FROM {table} WHERE {}",
                    assignments(keys, 1, " AND ")
                ),
                params: keys.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_not_repeated() {
        let config = DatabaseConfig::new("postgres://hr:hunter2@db/hr");
        let e = refuse_password_in_url(&config).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("postgres://hr:***@db/hr"), "{e}");
        assert!(e.contains("DATASYNC_SOURCE_PASSWORD"), "{e}");
        assert!(refuse_password_in_url(&DatabaseConfig::new("postgres://hr@db/hr")).is_ok());
        // An `@` in a query parameter is not a user part.
        assert!(refuse_password_in_url(&DatabaseConfig::new("mysql://db/hr?x=a:b@c")).is_ok());
    }

    #[test]
    fn database_urls() {
        assert!(is_database_url("postgres://db/hr"));
        assert!(is_database_url("PostgreSQL://db/hr"));
        assert!(is_database_url("mysql://db/hr"));
        assert!(!is_database_url("ldap://db"));
        assert!(!is_database_url("people.csv"));
        assert_eq!(
            split_query("postgres://db/hr?sslmode=require&x"),
            (
                "postgres://db/hr",
                vec![
                    ("sslmode".to_string(), "require".to_string()),
                    ("x".to_string(), String::new())
                ]
            )
        );
    }
}
