//! A destination on a real LDAP server through `ldap3`: Active Directory or any RFC 4511 server
//! (OpenLDAP in the tests).
//!
//! Reads are paged searches asking only for the attributes the job maps; writes go through a
//! pool of bound connections, one per worker in flight, with transient failures retried (see
//! [`RetryPolicy`](crate::ldap::RetryPolicy)). Passwords follow the server: Active Directory
//! takes `unicodePwd` (and only over TLS or StartTLS), other servers the Password Modify
//! extended operation (RFC 3062), falling back to `userPassword`.
//!
//! Large multi-valued attributes are read range by range, as Active Directory hands them out:
//! it answers a request for `member` with at most 1,500 values, named `member;range=0-1499`,
//! and the rest must be asked for (`member;range=1500-*`) until an answer's range ends in
//! `*`. Every search here follows such answers to their end and gives the attribute its plain
//! name; on Active Directory it also asks for `member` in ranges itself (Samba answers a plain
//! request whole but honours the ranges it is asked for), in windows of
//! [`LdapDirectory::with_range_window`].

use std::collections::HashSet;

use ldap3::controls::RawControl;
use ldap3::exop::PasswordModify;
use ldap3::{LdapConn, LdapError, Mod, SearchEntry};

use super::{Destination, DestinationError, Entry, Modification, Scope};
use crate::Secret;
use crate::dn::Dn;
use crate::ldap::search::{AD_RANGE_WINDOW, PagedSearch, decode_entry, paged_search_each};
use crate::ldap::{Failure, LdapConfig, Pool};
use crate::query::Filter;

/// Which kind of server: it decides how passwords are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    must_change_password: bool,
    /// How many values of a large attribute to ask for at once (Active Directory only).
    range_window: Option<u32>,
    /// The domain's password policy (Active Directory), read at connect.
    password_rules: Option<super::PasswordRules>,
}

/// The domain's password policy, from the domain object named by the root DSE's
/// `defaultNamingContext`; `None` when the server does not say.
fn read_password_rules(conn: &mut LdapConn) -> Result<Option<super::PasswordRules>, LdapError> {
    let first = |conn: &mut LdapConn, base: &str, attrs: Vec<&str>| {
        conn.search(base, ldap3::Scope::Base, "(objectClass=*)", attrs)
            .and_then(|r| r.success())
            .map(|(entries, _)| {
                entries
                    .into_iter()
                    .filter(|e| !e.is_ref() && !e.is_intermediate())
                    .find_map(decode_entry)
            })
    };
    let Some(root) = first(conn, "", vec!["defaultNamingContext"])? else {
        return Ok(None);
    };
    let Some(domain) = root
        .attrs
        .get("defaultNamingContext")
        .and_then(|v| v.first())
    else {
        return Ok(None);
    };
    let Some(policy) = first(conn, domain, vec!["minPwdLength", "pwdProperties"])? else {
        return Ok(None);
    };
    let number = |name: &str| -> Option<u64> { policy.attrs.get(name)?.first()?.parse().ok() };
    Ok(Some(super::PasswordRules::new(
        number("minPwdLength").unwrap_or(0) as usize,
        number("pwdProperties").unwrap_or(0) & 1 == 1,
    )))
}

/// A result code and the server's text, as a [`DestinationError`] for `operation` on `dn`.
fn destination_error(failure: Failure, operation: &'static str, dn: &str) -> DestinationError {
    match failure {
        Failure::Unavailable { message, cause } => DestinationError::Unavailable {
            message,
            source: crate::ldap::source_of(cause),
        },
        Failure::Other { message, cause } => DestinationError::Connection {
            message,
            source: crate::ldap::source_of(cause),
        },
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

/// What Active Directory's answer means, in plain words, when its extended error says: the
/// password policy (`0000052D`), a value that must be unique in the domain, an attribute the
/// domain refuses. `entry` is what was sent (to name the attribute and its value).
fn ad_reason(code: u32, text: &str, dn: &str, sent: &[(&str, &[String])]) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    if upper.contains("0000052D") {
        return Some("the password does not meet the domain's password policy".into());
    }
    // A DN-valued attribute naming no object (`000020B5`): say which, and what it names.
    if upper.contains("000020B5") {
        let named = sent.iter().find(|(name, values)| {
            !name.eq_ignore_ascii_case("objectClass")
                && values
                    .iter()
                    .any(|v| Dn::parse(v).is_ok_and(|d| d.rdns.len() > 1))
        });
        return Some(match named {
            Some((name, values)) => format!(
                "{name} names an object that does not exist: {}",
                values.join("; ")
            ),
            None => "a value names an object that does not exist".into(),
        });
    }
    // Samba: "samldb: samAccountName 'x' already in use!", "userPrincipalName 'x' is already
    // in use".
    static IN_USE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let in_use = IN_USE.get_or_init(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9-]*) '([^']*)' (?:is )?already in use").ok()
    });
    if let Some(caps) = in_use.as_ref().and_then(|re| re.captures(text)) {
        let said = caps.get(1).map_or("", |m| m.as_str());
        let attribute = sent
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(said))
            .map_or(said, |(n, _)| *n);
        let value = caps.get(2).map_or("", |m| m.as_str());
        return Some(format!(
            "{attribute} \"{value}\" is already used by another object in the domain"
        ));
    }
    // Any other refusal that names one of the attributes sent: say which, and its value.
    // (The entry's DN, which servers repeat in their messages, is not a mention.)
    if matches!(code, 19 | 21 | 65 | 67 | 53) {
        let lower = text
            .to_ascii_lowercase()
            .replace(&dn.to_ascii_lowercase(), " ");
        let named = sent.iter().find(|(name, _)| {
            lower
                .match_indices(&name.to_ascii_lowercase())
                .any(|(i, m)| {
                    let before = lower[..i].chars().next_back();
                    let after = lower[i + m.len()..].chars().next();
                    !before.is_some_and(|c| c.is_ascii_alphanumeric())
                        && !after.is_some_and(|c| c.is_ascii_alphanumeric())
                })
        });
        if let Some((name, values)) = named {
            if lower.contains("single-value") || lower.contains("single value") {
                return Some(format!(
                    "{name} holds one value in this domain, and the row gives {}",
                    values.len()
                ));
            }
            return Some(match values.first() {
                Some(v) => format!("the domain refuses {name} \"{v}\""),
                None => format!("the domain refuses {name}"),
            });
        }
    }
    None
}

/// AD's form of a password: the password in double quotes, as UTF-16LE bytes.
fn unicode_pwd(password: &Secret) -> Vec<u8> {
    format!("\"{}\"", password.expose())
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The values of `name` as sent: their text, or for a binary attribute the bytes their
/// base64 stands for.
fn values_set(name: &str, values: &[String]) -> Result<HashSet<Vec<u8>>, DestinationError> {
    if !super::is_binary_attribute(name) {
        return Ok(values.iter().map(|v| v.as_bytes().to_vec()).collect());
    }
    values
        .iter()
        .map(|v| super::binary_bytes(name, v))
        .collect::<Result<_, _>>()
        .map_err(|message| DestinationError::Rejected { message })
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
        let password_rules = pool
            .run(|conn, _| match kind {
                ServerKind::ActiveDirectory => read_password_rules(conn),
                ServerKind::Ldap => Ok(None),
            })
            .map_err(|f| destination_error(f, "connect", ""))?;
        Ok(LdapDirectory {
            pool,
            kind,
            must_change_password: false,
            range_window: match kind {
                ServerKind::ActiveDirectory => Some(AD_RANGE_WINDOW),
                ServerKind::Ldap => None,
            },
            password_rules,
        })
    }

    /// On Active Directory, how many values of a large multi-valued attribute (`member`) one
    /// request asks for: 1,500 by default, as Active Directory's own `MaxValRange`. Smaller
    /// windows mean more requests; a window the server finds too large is answered with the
    /// server's own, which is followed as well. Ignored on other servers, which know no ranges.
    pub fn with_range_window(mut self, values: u32) -> LdapDirectory {
        if self.kind == ServerKind::ActiveDirectory {
            self.range_window = Some(values.max(1));
        }
        self
    }

    /// On Active Directory, new users with a password must change it at their first logon
    /// (`pwdLastSet` 0). Off by default.
    pub fn with_password_change_at_next_logon(mut self, on: bool) -> LdapDirectory {
        self.must_change_password = on;
        self
    }

    /// The server kind.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// A failed operation as a [`DestinationError`], in plain words where Active Directory's
    /// answer says what is wrong. `sent` is what the operation sent.
    fn failed(
        &self,
        failure: Failure,
        operation: &'static str,
        dn: &str,
        sent: &[(&str, &[String])],
    ) -> DestinationError {
        if self.kind == ServerKind::ActiveDirectory
            && let Failure::Result { code, text } = &failure
        {
            let reason = ad_reason(*code, text, dn, sent).or_else(|| {
                // AD answers a value already used elsewhere in the domain with the same
                // "entry exists" as a DN that exists: tell them apart.
                (*code == 68 && operation == "add" && self.exists(dn).ok() == Some(false)).then(
                    || {
                        let name = sent
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("sAMAccountName"))
                            .and_then(|(_, v)| v.first())
                            .map(|v| format!("sAMAccountName \"{v}\" (or another value unique in the domain, such as userPrincipalName)"))
                            .unwrap_or_else(|| "a value unique in the domain".into());
                        format!("{name} is already used by another object in the domain")
                    },
                )
            });
            if let Some(reason) = reason {
                return DestinationError::Domain(Box::new(super::DomainRefusal {
                    operation,
                    dn: dn.to_string(),
                    code: *code,
                    name: crate::ldap::result_name(*code),
                    reason,
                    message: text.clone(),
                }));
            }
        }
        destination_error(failure, operation, dn)
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

/// The permissive-modify control (`LDAP_SERVER_PERMISSIVE_MODIFY_OID`): adding a value an
/// attribute has, or deleting one it lacks, succeeds instead of failing the whole modify.
const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";

impl LdapDirectory {
    /// One modify request (and for a plain LDAP server, the password after it).
    fn modify_once(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let mut mods: Vec<Mod<Vec<u8>>> = Vec::with_capacity(changes.len());
        let mut password = None;
        // Value edits ask AD for permissive modify (see `modify`).
        let mut permissive = false;
        for change in changes {
            match change {
                Modification::Replace(attr, values) => {
                    mods.push(Mod::Replace(
                        attr.as_bytes().to_vec(),
                        values_set(attr, values)?,
                    ));
                }
                // No values to edit is nothing to do (to LDAP, a delete without values
                // would remove the whole attribute).
                Modification::AddValues(_, values) | Modification::DeleteValues(_, values)
                    if values.is_empty() => {}
                Modification::AddValues(attr, values) => {
                    permissive = true;
                    mods.push(Mod::Add(
                        attr.as_bytes().to_vec(),
                        values_set(attr, values)?,
                    ));
                }
                Modification::DeleteValues(attr, values) => {
                    permissive = true;
                    mods.push(Mod::Delete(
                        attr.as_bytes().to_vec(),
                        values_set(attr, values)?,
                    ));
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
            // What was sent, for the message of a refusal only.
            let sent = || -> Vec<(&str, &[String])> {
                changes
                    .iter()
                    .filter_map(|c| Some((c.attribute()?.as_str(), c.values())))
                    .collect()
            };
            self.pool
                .run(|conn, _| {
                    if permissive && self.kind == ServerKind::ActiveDirectory {
                        conn.with_controls(RawControl {
                            ctype: PERMISSIVE_MODIFY.to_string(),
                            crit: false,
                            val: None,
                        });
                    }
                    conn.modify(dn, mods.clone())?.success().map(|_| ())
                })
                .map_err(|f| self.failed(f, "modify", dn, &sent()))?;
        }
        if let Some(secret) = password {
            self.set_password(dn, secret)?;
        }
        Ok(())
    }

    /// `changes` without the values the entry has settled already: values it has among those
    /// to add, values it lacks among those to delete (compared as [`super::value_key`] does).
    /// A value edit left with no values is dropped.
    fn unsettled(
        &self,
        dn: &str,
        changes: &[Modification],
    ) -> Result<Vec<Modification>, DestinationError> {
        let names: Vec<String> = changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Modification::AddValues(..) | Modification::DeleteValues(..)
                )
            })
            .filter_map(|c| Some(c.attribute()?.to_string()))
            .collect();
        let entry = self
            .read_entry(dn, &names)?
            .ok_or_else(|| DestinationError::NoSuchObject { dn: dn.to_string() })?;
        let has = |name: &str| -> std::collections::HashSet<String> {
            entry
                .get(name)
                .iter()
                .map(|v| super::value_key(v))
                .collect()
        };
        let mut left = Vec::with_capacity(changes.len());
        for change in changes {
            let kept = match change {
                Modification::AddValues(name, values) => {
                    let present = has(name);
                    let missing: Vec<String> = values
                        .iter()
                        .filter(|v| !present.contains(&super::value_key(v)))
                        .cloned()
                        .collect();
                    (!missing.is_empty()).then(|| Modification::AddValues(name.clone(), missing))
                }
                Modification::DeleteValues(name, values) => {
                    let present = has(name);
                    let there: Vec<String> = values
                        .iter()
                        .filter(|v| present.contains(&super::value_key(v)))
                        .cloned()
                        .collect();
                    (!there.is_empty()).then(|| Modification::DeleteValues(name.clone(), there))
                }
                other => Some(other.clone()),
            };
            left.extend(kept);
        }
        Ok(left)
    }
}

impl Destination for LdapDirectory {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        let filter = filter.to_string();
        let page = self.pool.config().page_size;
        // A search the pool tries again (the connection broke) starts over on the server;
        // the entries an earlier attempt handed over are passed over, so each is handed once
        // (servers answer one search in one order).
        let mut handed = 0usize;
        self.pool
            .run(|conn, _| {
                let mut seen = 0usize;
                let search = PagedSearch {
                    page_size: page,
                    base,
                    scope: ldap_scope(scope),
                    filter: &filter,
                    attributes,
                    range_window: self.range_window,
                };
                paged_search_each(conn, &search, &mut |e| {
                    seen += 1;
                    if seen > handed {
                        handed += 1;
                        each(&entry_from(e, attributes));
                    }
                })
            })
            .map_err(|f| destination_error(f, "search", base))?;
        Ok(())
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

    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        let dn = entry.dn.clone();
        if password.is_some() {
            self.refuse_plain_password(&dn)?;
        }
        // What AD needs beside the entry's own attributes.
        let mut extra: Vec<(&str, Vec<String>)> = Vec::new();
        if self.kind == ServerKind::ActiveDirectory {
            // The password goes in the add itself, so AD checks it against the domain's
            // policy with the rest, and a refused one leaves no object behind.
            if let Some(uac) = super::new_account_control(entry, password.is_some()) {
                extra.push(("userAccountControl", vec![uac.to_string()]));
            }
            if let Some(kind) = super::new_group_type(entry) {
                extra.push(("groupType", vec![kind.to_string()]));
            }
            if password.is_some() && self.must_change_password {
                extra.push(("pwdLastSet", vec!["0".into()]));
            }
        }
        let sent = || {
            entry
                .attributes()
                .iter()
                .filter(|a| !a.values.is_empty())
                .map(|a| (a.name.as_str(), a.values.as_slice()))
                .chain(extra.iter().map(|(n, v)| (*n, v.as_slice())))
        };
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = sent()
            .map(|(name, values)| Ok((name.as_bytes().to_vec(), values_set(name, values)?)))
            .collect::<Result<_, DestinationError>>()?;
        if let (Some(password), ServerKind::ActiveDirectory) = (password, self.kind) {
            attrs.push((
                b"unicodePwd".to_vec(),
                HashSet::from([unicode_pwd(password)]),
            ));
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
            .map_err(|f| self.failed(f, "add", &dn, &sent().collect::<Vec<_>>()))?;
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

    /// Value adds and deletes are permissive (see [`Modification::AddValues`]): a value
    /// already there, or already gone, is not an error, so a change retried after a broken
    /// connection, or one AD made itself when a member was renamed or deleted, converges.
    /// Active Directory (and Samba) take the permissive-modify control for it. OpenLDAP 2.5
    /// offers no such control, so when a server answers `attributeOrValueExists` or
    /// `noSuchAttribute` the attributes are read and the change is sent again without the
    /// values that are settled already.
    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let edits_values = changes.iter().any(|c| {
            matches!(
                c,
                Modification::AddValues(..) | Modification::DeleteValues(..)
            )
        });
        match self.modify_once(dn, changes) {
            Err(DestinationError::Ldap { code: 16 | 20, .. }) if edits_values => {
                let unsettled = self.unsettled(dn, changes)?;
                if unsettled.is_empty() {
                    return Ok(());
                }
                self.modify_once(dn, &unsettled)
            }
            done => done,
        }
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

    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            password_rules: self.password_rules,
            references_must_exist: self.kind == ServerKind::ActiveDirectory,
            connections: Some(self.pool.config().max_connections),
            maintains_references: self.kind == ServerKind::ActiveDirectory,
        }
    }

    /// Every write was made as it happened: nothing is left to do.
    fn commit(&self) -> Result<(), DestinationError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ldap::search::*;

    #[test]
    fn range_options_are_read_as_the_server_writes_them() {
        assert_eq!(
            ranged("member;range=0-1499"),
            Some(("member", 0, Some(1499)))
        );
        assert_eq!(ranged("member;Range=1500-*"), Some(("member", 1500, None)));
        assert_eq!(
            ranged("member;binary;range=3-4"),
            Some(("member", 3, Some(4)))
        );
        assert_eq!(ranged("member"), None);
        assert_eq!(ranged("member;range=x-2"), None);
        assert_eq!(ranged("member;range=2"), None);
    }

    #[test]
    fn ranged_answers_get_their_plain_name_and_say_where_to_go_on() {
        let values = |n: std::ops::Range<u32>| n.map(|i| format!("CN=u{i}")).collect::<Vec<_>>();
        let mut entry = SearchEntry {
            dn: "CN=g".into(),
            attrs: [
                ("member;range=0-2".to_string(), values(0..3)),
                ("cn".to_string(), vec!["g".to_string()]),
                (
                    "otherTelephone;range=0-*".to_string(),
                    vec!["1".to_string()],
                ),
            ]
            .into_iter()
            .collect(),
            bin_attrs: Default::default(),
        };
        let unfinished = gather_ranges(&mut entry);
        assert_eq!(unfinished, vec![("member".to_string(), 3)]);
        assert_eq!(entry.attrs["member"], values(0..3));
        assert_eq!(entry.attrs["otherTelephone"], vec!["1".to_string()]);
        assert!(entry.attrs.keys().all(|k| !k.contains(';')));
        // A server's range at the very end of the numbers ends the attribute, not the run.
        let mut entry = SearchEntry {
            dn: "CN=g".into(),
            attrs: [(format!("member;range=0-{}", u64::MAX), values(0..1))]
                .into_iter()
                .collect(),
            bin_attrs: Default::default(),
        };
        assert!(gather_ranges(&mut entry).is_empty());
        assert_eq!(entry.attrs["member"], values(0..1));
    }

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
            must_change_password: false,
            range_window: Some(AD_RANGE_WINDOW),
            password_rules: None,
        };
        let err = dir
            .add(&Entry::new("CN=a,DC=lab"), Some(&Secret::new("pw")))
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
