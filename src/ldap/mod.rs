//! Talking to an LDAP server (OpenLDAP, Active Directory, any RFC 4511 server): where it is, how
//! to bind, how TLS is checked, and how failures are retried. [`LdapDirectory`] (the destination)
//! and [`LdapSource`] (the source) both connect through an [`LdapConfig`].
//!
//! ```
//! use datasync::ldap::{LdapConfig, Security};
//! let config = LdapConfig::parse("ldap://dc1.example.com:389/OU=People,DC=example,DC=com?starttls").unwrap();
//! assert_eq!(config.security, Security::StartTls);
//! assert_eq!(config.base_dn.as_deref(), Some("OU=People,DC=example,DC=com"));
//! ```
//!
//! [`LdapDirectory`]: crate::destination::LdapDirectory
//! [`LdapSource`]: crate::source::LdapSource

mod pool;
pub(crate) mod search;

use std::time::Duration;

pub(crate) use pool::{Failure, Pool, result_name, source_of};

use crate::Secret;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// `ldap://`: nothing is encrypted. Active Directory passwords are refused over it.
    Plain,
    /// `ldap://` upgraded with the StartTLS extended operation before the bind.
    StartTls,
    /// `ldaps://`: TLS from the first byte.
    Tls,
}

pub use crate::tls::TlsVerify;

pub use crate::retry::RetryPolicy;

/// Where an LDAP server is and how to talk to it.
///
/// The bind password is a [`Secret`]: it never shows in `Debug` output or errors.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`, without a path or query.
    pub url: String,
    /// Plain, StartTLS or TLS.
    pub security: Security,
    /// The DN to bind as; `None` binds anonymously.
    pub bind_dn: Option<String>,
    /// The bind password.
    pub bind_password: Option<Secret>,
    /// How the server's certificate is checked.
    pub tls_verify: TlsVerify,
    /// The DN a URL's path named (`ldap://host/OU=People,DC=lab`): the source's search base.
    pub base_dn: Option<String>,
    /// Entries per page of a paged search (1000, the most Active Directory returns at once).
    pub page_size: i32,
    /// The most connections open at once; also how many writes are in flight.
    pub max_connections: usize,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// How long to wait for a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// How long to wait for the answer to one operation.
    pub operation_timeout: Duration,
}

/// An LDAP URL that datasync cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad LDAP URL \"{url}\": {reason}")]
pub struct LdapUrlError {
    /// The URL.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// `url` with any `user:password@` before its host replaced by `***@`, for messages.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

impl LdapConfig {
    /// A configuration for `url`: `ldap://host[:port][/BASE][?starttls]` or
    /// `ldaps://host[:port][/BASE]`. The base DN may be percent-encoded (RFC 4516); the other
    /// settings take their defaults and can be changed on the value.
    ///
    /// Credentials in the URL (`ldap://user:password@host`) are refused, and never repeated
    /// in the error: the bind DN is given apart and its password comes from the environment.
    pub fn parse(url: &str) -> Result<LdapConfig, LdapUrlError> {
        let shown = without_userinfo(url);
        let bad = |reason: &str| LdapUrlError {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("it does not start with ldap:// or ldaps://"))?;
        let mut security = match scheme.to_ascii_lowercase().as_str() {
            "ldap" => Security::Plain,
            "ldaps" => Security::Tls,
            _ => return Err(bad("the scheme is neither ldap nor ldaps")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if let Some(query) = query {
            for part in query.split(['?', '&']).filter(|p| !p.is_empty()) {
                if part.eq_ignore_ascii_case("starttls") {
                    if security == Security::Tls {
                        return Err(bad("StartTLS applies to ldap://, not ldaps://"));
                    }
                    security = Security::StartTls;
                } else {
                    return Err(bad(&format!("unknown option \"{part}\" (known: starttls)")));
                }
            }
        }
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        if host.contains('@') {
            return Err(bad(
                "credentials in the URL are not used: give the bind DN apart (--bind-dn) and \
                 its password in the environment (DATASYNC_BIND_PASSWORD)",
            ));
        }
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        let base_dn = percent_decode(path).map_err(|r| bad(&r))?;
        Ok(LdapConfig {
            url: format!("{}://{host}", scheme.to_ascii_lowercase()),
            security,
            bind_dn: None,
            bind_password: None,
            tls_verify: TlsVerify::SystemRoots,
            base_dn: Some(base_dn).filter(|b| !b.is_empty()),
            page_size: 1000,
            max_connections: 8,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(120),
        })
    }

    /// The same configuration binding as `dn` with `password`.
    pub fn with_bind(mut self, dn: impl Into<String>, password: Secret) -> LdapConfig {
        self.bind_dn = Some(dn.into());
        self.bind_password = Some(password);
        self
    }

    /// True when what is sent cannot be read on the way (TLS or StartTLS).
    pub fn is_encrypted(&self) -> bool {
        self.security != Security::Plain
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a % in the path is not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the path is not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_security_and_base() {
        let c = LdapConfig::parse("ldaps://dc1:636").unwrap();
        assert_eq!(
            (c.url.as_str(), c.security),
            ("ldaps://dc1:636", Security::Tls)
        );
        assert_eq!(c.base_dn, None);
        let c = LdapConfig::parse("LDAP://dc1/OU=A%20B,DC=lab?starttls").unwrap();
        assert_eq!(
            (c.url.as_str(), c.security),
            ("ldap://dc1", Security::StartTls)
        );
        assert_eq!(c.base_dn.as_deref(), Some("OU=A B,DC=lab"));
        for bad in [
            "dc1:389",
            "http://dc1",
            "ldap:///dc=lab",
            "ldaps://dc1?starttls",
            "ldap://dc1?tls",
            "ldap://dc1/%zz",
        ] {
            assert!(LdapConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let r = RetryPolicy::default();
        let waits: Vec<u64> = (1..=6).map(|a| r.wait(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000]);
    }

    #[test]
    fn debug_hides_the_bind_password() {
        let c = LdapConfig::parse("ldap://dc1")
            .unwrap()
            .with_bind("cn=admin", Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
