//! A destination on a real LDAP server through `ldap3`: Active Directory or any RFC 4511 server
//! (OpenLDAP in the tests).
//!
//! Reads are paged searches asking only for the attributes the job maps; writes go through a
//! pool of bound connections, one per worker in flight, with transient failures retried (see
//! [`RetryPolicy`](crate::ldap::RetryPolicy)). Passwords follow the server: Active Directory
//! takes `unicodePwd` (and only over TLS or StartTLS), other servers the Password Modify
//! extended operation (RFC 3062), falling back to `userPassword`.

use std::collections::HashSet;

use ldap3::exop::PasswordModify;
use ldap3::{LdapConn, LdapError, Mod, SearchEntry};

use super::{Destination, DestinationError, Entry, Modification, Scope};
use crate::Secret;
use crate::dn::Dn;
use crate::ldap::{Failure, LdapConfig, Pool};
use crate::query::Filter;

/// Which kind of server: it decides how passwords are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Microsoft Active Directory: passwords go to `unicodePwd`, over an encrypted connection only.
    ActiveDirectory,
    /// Any other LDAP server: passwords through Password Modify (RFC 3062).
    Ldap,
}

impl ServerKind {
    /// The kind a job's `Destination.ProviderName` names: `Active Directory` (any case) is AD,
    /// anything else a plain LDAP server.
    pub fn from_provider_name(name: Option<&str>) -> ServerKind {
        match name {
            Some(n) if n.to_ascii_lowercase().contains("active directory") => {
                ServerKind::ActiveDirectory
            }
            _ => ServerKind::Ldap,
        }
    }
}

/// An LDAP server as a [`Destination`].
///
/// ```no_run
/// use datasync::destination::{LdapDirectory, ServerKind};
/// use datasync::ldap::LdapConfig;
/// let config = LdapConfig::parse("ldaps://dc1.example.com")?
///     .with_bind("CN=sync,CN=Users,DC=example,DC=com", datasync::Secret::new(std::env::var("PW")?));
/// let directory = LdapDirectory::connect(config, ServerKind::ActiveDirectory)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LdapDirectory {
    pool: Pool,
    kind: ServerKind,
}

/// A result code and the server's text, as a [`DestinationError`] for `operation` on `dn`.
fn destination_error(failure: Failure, operation: &'static str, dn: &str) -> DestinationError {
    match failure {
        Failure::Unavailable(message) => DestinationError::Unavailable { message },
        Failure::Other(message) => DestinationError::Rejected { message },
        Failure::Result { code: 32, .. } => DestinationError::NoSuchObject { dn: dn.into() },
        Failure::Result { code: 68, .. } => DestinationError::AlreadyExists { dn: dn.into() },
        Failure::Result { code: 66, .. } => DestinationError::NotLeaf { dn: dn.into() },
        Failure::Result { code, text } => DestinationError::Ldap {
            operation,
            dn: dn.into(),
            code,
            name: crate::ldap::result_name(code),
            message: text,
        },
    }
}

/// AD's form of a password: the password in double quotes, as UTF-16LE bytes.
fn unicode_pwd(password: &Secret) -> Vec<u8> {
    format!("\"{}\"", password.expose())
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn values_set(values: &[String]) -> HashSet<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

/// Result codes meaning "this server has no Password Modify operation".
fn passmod_unsupported(code: u32) -> bool {
    matches!(code, 2 | 12 | 53)
}

impl LdapDirectory {
    /// Connects (and binds) once, so an unreachable server or a wrong password is an error
    /// here, before a job reads anything.
    pub fn connect(
        config: LdapConfig,
        kind: ServerKind,
    ) -> Result<LdapDirectory, DestinationError> {
        let pool = Pool::new(config).map_err(|f| destination_error(f, "connect", ""))?;
        pool.run(|_, _| Ok(()))
            .map_err(|f| destination_error(f, "connect", ""))?;
        Ok(LdapDirectory { pool, kind })
    }

    /// The server kind.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    fn refuse_plain_password(&self, dn: &str) -> Result<(), DestinationError> {
        if self.kind == ServerKind::ActiveDirectory && !self.pool.config().is_encrypted() {
            return Err(DestinationError::Rejected {
                message: format!(
                    "not setting the password of {dn}: Active Directory takes passwords only over \
                     an encrypted connection (use ldaps:// or ?starttls); nothing was sent"
                ),
            });
        }
        Ok(())
    }

    /// Sets a password on a server that is not AD: Password Modify, else `userPassword`.
    fn set_password(&self, dn: &str, password: &Secret) -> Result<(), DestinationError> {
        let exop = self.pool.run(|conn, _| {
            conn.extended(PasswordModify {
                user_id: Some(dn),
                old_pass: None,
                new_pass: Some(password.expose()),
            })?
            .success()
            .map(|_| ())
        });
        match exop {
            Ok(()) => Ok(()),
            Err(Failure::Result { code, .. }) if passmod_unsupported(code) => self
                .pool
                .run(|conn, _| {
                    let m = Mod::Replace(
                        b"userPassword".to_vec(),
                        HashSet::from([password.expose().as_bytes().to_vec()]),
                    );
                    conn.modify(dn, vec![m])?.success().map(|_| ())
                })
                .map_err(|f| destination_error(f, "set the password of", dn)),
            Err(f) => Err(destination_error(f, "set the password of", dn)),
        }
    }
}

fn ldap_scope(scope: Scope) -> ldap3::Scope {
    match scope {
        Scope::Base => ldap3::Scope::Base,
        Scope::OneLevel => ldap3::Scope::OneLevel,
        Scope::Subtree => ldap3::Scope::Subtree,
    }
}

/// A search result as an [`Entry`]; binary values (not UTF-8) are left out.
pub(crate) fn entry_from(result: SearchEntry, attributes: &[String]) -> Entry {
    let mut entry = Entry::new(result.dn);
    let mut attrs: Vec<(String, Vec<String>)> = result.attrs.into_iter().collect();
    // The server's map has no order: requested attributes first, in the order asked, then
    // the rest by name, so an entry reads the same every time.
    let rank = |name: &str| {
        attributes
            .iter()
            .position(|a| a.eq_ignore_ascii_case(name))
            .unwrap_or(usize::MAX)
    };
    attrs.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    for (name, values) in attrs {
        entry.set(&name, values);
    }
    entry
}

/// A search result entry as [`SearchEntry`], or `None` when it is malformed: what
/// `SearchEntry::construct` does, without its panics on what a server sends.
fn decode_entry(raw: ldap3::ResultEntry) -> Option<SearchEntry> {
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
    let asked: Vec<&str> = if attributes.is_empty() {
        vec!["*"]
    } else {
        attributes.iter().map(String::as_str).collect()
    };
    let paging = ldap3::adapters::PagedResults::new(page_size);
    let mut stream = conn.streaming_search_with(paging, base, scope, filter, asked)?;
    let mut entries = Vec::new();
    while let Some(raw) = stream.next()? {
        // Referrals and continuation references (AD answers a search of the domain root with
        // its DomainDnsZones, ForestDnsZones and Configuration partitions) are not entries of
        // ours: they are skipped, never followed.
        if raw.is_ref() || raw.is_intermediate() {
            continue;
        }
        let Some(entry) = decode_entry(raw) else {
            return Err(LdapError::from(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the server sent a search entry that is not well-formed",
            )));
        };
        let key = Dn::parse(&entry.dn)
            .map(|d| super::embedded::key(&d))
            .unwrap_or_else(|_| entry.dn.to_lowercase());
        entries.push((key, entry));
    }
    stream.result().success()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

impl Destination for LdapDirectory {
    fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
    ) -> Result<Vec<Entry>, DestinationError> {
        let filter = filter.to_string();
        let page = self.pool.config().page_size;
        let found = self
            .pool
            .run(|conn, _| paged_search(conn, page, base, ldap_scope(scope), &filter, attributes))
            .map_err(|f| destination_error(f, "search", base))?;
        Ok(found
            .into_iter()
            .map(|e| entry_from(e, attributes))
            .collect())
    }

    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        let found = self.pool.run(|conn, _| {
            let r = conn.search(dn, ldap3::Scope::Base, "(objectClass=*)", vec!["1.1"])?;
            match r.1.rc {
                0 => Ok(true),
                32 => Ok(false),
                _ => r.success().map(|_| true),
            }
        });
        found.map_err(|f| destination_error(f, "look up", dn))
    }

    fn add(&self, entry: Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        let dn = entry.dn.clone();
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = entry
            .attributes()
            .iter()
            .filter(|a| !a.values.is_empty())
            .map(|a| (a.name.as_bytes().to_vec(), values_set(&a.values)))
            .collect();
        if let Some(password) = password {
            self.refuse_plain_password(&dn)?;
            if self.kind == ServerKind::ActiveDirectory {
                attrs.push((
                    b"unicodePwd".to_vec(),
                    HashSet::from([unicode_pwd(password)]),
                ));
            }
        }
        self.pool
            .run(|conn, attempt| {
                let r = conn.add(&dn, attrs.clone())?;
                // A retry after a broken connection may find the entry its first try made.
                if r.rc == 68 && attempt > 1 {
                    return Ok(());
                }
                r.success().map(|_| ())
            })
            .map_err(|f| destination_error(f, "add", &dn))?;
        if let (Some(password), ServerKind::Ldap) = (password, self.kind)
            && let Err(e) = self.set_password(&dn, password)
        {
            // The add and its password are one operation to the engine: take the entry back
            // so a re-run creates it again, password included.
            let _ = self.pool.run(|conn, _| conn.delete(&dn)?.success());
            return Err(e);
        }
        Ok(())
    }

    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let mut mods: Vec<Mod<Vec<u8>>> = Vec::with_capacity(changes.len());
        let mut password = None;
        for change in changes {
            match change {
                Modification::Replace(attr, values) => {
                    mods.push(Mod::Replace(attr.as_bytes().to_vec(), values_set(values)));
                }
                Modification::SetPassword(secret) => {
                    self.refuse_plain_password(dn)?;
                    if self.kind == ServerKind::ActiveDirectory {
                        mods.push(Mod::Replace(
                            b"unicodePwd".to_vec(),
                            HashSet::from([unicode_pwd(secret)]),
                        ));
                    } else {
                        password = Some(secret);
                    }
                }
            }
        }
        if !mods.is_empty() {
            self.pool
                .run(|conn, _| conn.modify(dn, mods.clone())?.success().map(|_| ()))
                .map_err(|f| destination_error(f, "modify", dn))?;
        }
        if let Some(secret) = password {
            self.set_password(dn, secret)?;
        }
        Ok(())
    }

    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        let old = Dn::parse(dn)?;
        let new = Dn::parse(new_dn)?;
        let (Some(new_rdn), Some(new_parent)) = (new.rdns.first(), new.parent()) else {
            return Err(DestinationError::Rejected {
                message: format!("cannot rename {dn} to the root"),
            });
        };
        let rdn = Dn {
            rdns: vec![new_rdn.clone()],
        }
        .to_string();
        let moves = old.parent().map(|p| p.normalized()) != Some(new_parent.normalized());
        let superior = new_parent.to_string();
        self.pool
            .run(|conn, attempt| {
                let r = conn.modifydn(dn, &rdn, true, moves.then_some(superior.as_str()))?;
                // A retry may find its first try done: the old DN gone.
                if r.rc == 32 && attempt > 1 {
                    return Ok(());
                }
                r.success().map(|_| ())
            })
            .map_err(|f| destination_error(f, "rename", dn))
    }

    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        self.pool
            .run(|conn, attempt| {
                let r = conn.delete(dn)?;
                if r.rc == 32 && attempt > 1 {
                    return Ok(());
                }
                r.success().map(|_| ())
            })
            .map_err(|f| destination_error(f, "delete", dn))
    }

    fn preferred_workers(&self) -> Option<usize> {
        Some(self.pool.config().max_connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_the_quoted_password_in_utf16le() {
        assert_eq!(
            unicode_pwd(&Secret::new("Ab1")),
            [0x22, 0, b'A', 0, b'b', 0, b'1', 0, 0x22, 0]
        );
    }

    #[test]
    fn provider_names_pick_the_server_kind() {
        assert_eq!(
            ServerKind::from_provider_name(Some("Active Directory")),
            ServerKind::ActiveDirectory
        );
        assert_eq!(
            ServerKind::from_provider_name(Some("OpenLDAP")),
            ServerKind::Ldap
        );
        assert_eq!(ServerKind::from_provider_name(None), ServerKind::Ldap);
    }

    #[test]
    fn ad_passwords_are_refused_over_plain_ldap_before_anything_is_sent() {
        // No server listens on port 1: had anything been sent, the error would say unavailable.
        let dir = LdapDirectory {
            pool: Pool::new(LdapConfig::parse("ldap://127.0.0.1:1").unwrap()).unwrap(),
            kind: ServerKind::ActiveDirectory,
        };
        let err = dir
            .add(Entry::new("CN=a,DC=lab"), Some(&Secret::new("pw")))
            .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
        let err = dir
            .modify(
                "CN=a,DC=lab",
                &[Modification::SetPassword(Secret::new("pw"))],
            )
            .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }
}
