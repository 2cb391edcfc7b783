//! Destinations: where entries are written. Every destination implements [`Destination`]; the
//! engine reads it once per object type (one search, one key index) and then writes through it
//! from several threads.

mod directory_source;
mod embedded;
#[cfg(feature = "ldap")]
mod ldap;
pub use crate::entry::ldif;
mod store;
mod table;

use std::path::PathBuf;

pub use crate::entry::{
    Attribute, AttributeName, Entry, binary_bytes, check_attribute_description,
    is_binary_attribute, is_password_attribute, value_key,
};
pub use directory_source::DirectorySource;
pub use embedded::{LdifDirectory, verify_password};
#[cfg(feature = "ldap")]
pub use ldap::{LdapDirectory, ServerKind};
pub use store::Store;
pub use table::{TABLE_DN, TableDestination, TableSpec, row_dn};

use crate::Secret;
use crate::dn::DnError;
use crate::query::Filter;

/// How far below the base a search reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry only.
    Base,
    /// The base's direct children.
    OneLevel,
    /// The base and everything below it.
    Subtree,
}

/// One change to an existing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Modification {
    /// Replace the values of an attribute; no values removes it.
    Replace(AttributeName, Vec<String>),
    /// Add these values to an attribute, keeping the values it has (LDAP modify `add`).
    /// A value the attribute has already is left as it is, not an error, so that a retried or
    /// repeated change converges: the LDAP destination sends it with the permissive-modify
    /// control (`1.2.840.113556.1.4.1413`), which Active Directory, Samba and OpenLDAP honour.
    /// Values compare as the destination compares them; DN values by their normal form.
    AddValues(AttributeName, Vec<String>),
    /// Remove these values from an attribute, keeping the others (LDAP modify `delete` with
    /// values). A value the attribute does not have is not an error (see
    /// [`AddValues`](Self::AddValues)). No values is no change, never the whole attribute.
    DeleteValues(AttributeName, Vec<String>),
    /// Set the password; the destination stores it in its own form (a salted hash in the
    /// embedded directory, `unicodePwd` in Active Directory).
    SetPassword(Secret),
}

impl Modification {
    /// The attribute changed, `None` for a password.
    pub fn attribute(&self) -> Option<&AttributeName> {
        match self {
            Modification::Replace(name, _)
            | Modification::AddValues(name, _)
            | Modification::DeleteValues(name, _) => Some(name),
            Modification::SetPassword(_) => None,
        }
    }

    /// The values given, none for a password.
    pub fn values(&self) -> &[String] {
        match self {
            Modification::Replace(_, values)
            | Modification::AddValues(_, values)
            | Modification::DeleteValues(_, values) => values,
            Modification::SetPassword(_) => &[],
        }
    }
}

/// What a destination could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// The directory file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory file is not valid LDIF.
    #[error("{path}: {source}")]
    Ldif {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: ldif::LdifError,
    },
    /// Another run holds the directory file.
    #[error("{path} is in use by another run (lock file {path}.lock)")]
    Locked {
        /// The directory file.
        path: PathBuf,
    },
    /// A DN does not parse.
    #[error(transparent)]
    InvalidDn(#[from] DnError),
    /// The entry (or the parent it needs) does not exist.
    #[error("no such object: {dn}")]
    NoSuchObject {
        /// The missing DN.
        dn: String,
    },
    /// An entry with that DN exists already.
    #[error("entry already exists: {dn}")]
    AlreadyExists {
        /// The DN.
        dn: String,
    },
    /// The entry has children, so it cannot be deleted.
    #[error("{dn} has entries below it and cannot be deleted")]
    NotLeaf {
        /// The DN.
        dn: String,
    },
    /// The server could not be reached, or the connection broke, through every retry.
    #[error("{message}")]
    Unavailable {
        /// The server and the last failure.
        message: String,
        /// The client library's error, when there was one (ldap3's, for an LDAP server).
        #[source]
        source: Option<crate::BoxError>,
    },
    /// The server could not be logged on to, and trying again would not help: a bad URL, a
    /// TLS handshake or certificate check that failed, a refused bind, an unreadable CA file.
    #[error("{message}")]
    Connection {
        /// The server and what happened.
        message: String,
        /// The client library's error, when there was one (ldap3's, for an LDAP server).
        #[source]
        source: Option<crate::BoxError>,
    },
    /// An LDAP server refused an operation: its result code and its own message.
    #[error("LDAP {code} {name}: cannot {operation} {dn}: {message}")]
    Ldap {
        /// What was attempted (`add`, `modify`, …).
        operation: &'static str,
        /// The entry.
        dn: String,
        /// The LDAP result code (RFC 4511, appendix A).
        code: u32,
        /// The result code's name (`objectClassViolation`).
        name: &'static str,
        /// The server's diagnostic message.
        message: String,
    },
    /// Active Directory refused a change for a reason its extended error (`0000052D:`, a
    /// uniqueness check) names: the reason in plain words, then the server's own message.
    #[error(transparent)]
    Domain(Box<DomainRefusal>),
    /// The embedded store's database (SQLite) failed: the file and SQLite's own error.
    #[error("{path}: {source}")]
    Database {
        /// The store's file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: crate::BoxError,
    },
    /// The destination refused the change for another reason.
    #[error("{message}")]
    Rejected {
        /// The destination's explanation.
        message: String,
    },
}

/// The file a directory named `given` is kept in, resolved through symlinks (the file written
/// is the link's target; the link stays). An empty path is refused with `hint`, the form to
/// write instead.
pub(crate) fn resolve_directory_file(
    given: &std::path::Path,
    hint: &str,
) -> Result<PathBuf, DestinationError> {
    if given.as_os_str().is_empty() {
        return Err(DestinationError::Rejected {
            message: format!("the directory file's path is empty (write {hint})"),
        });
    }
    crate::files::resolve(given).map_err(|source| DestinationError::Io {
        path: given.to_path_buf(),
        source,
    })
}

/// Takes the lock file beside a directory or table file (`PATH.lock`) for this run: a second
/// run on the same file is refused as locked rather than mixed with this one. The OS releases
/// the lock when the returned file closes, also when the process dies.
pub(crate) fn lock_beside(path: &std::path::Path) -> Result<std::fs::File, DestinationError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| DestinationError::Io {
            path: lock_path.clone(),
            source,
        })?;
    if lock.try_lock().is_err() {
        return Err(DestinationError::Locked {
            path: path.to_path_buf(),
        });
    }
    Ok(lock)
}

/// What a directory asks of every password: Active Directory's domain policy (`minPwdLength`
/// and the complexity bit of `pwdProperties` on the domain object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordRules {
    /// The fewest characters a password may have.
    pub min_length: usize,
    /// Complexity: characters of at least three kinds (upper case, lower case, digits,
    /// symbols).
    pub complex: bool,
}

impl PasswordRules {
    /// Rules of this length and complexity.
    pub fn new(min_length: usize, complex: bool) -> PasswordRules {
        PasswordRules {
            min_length,
            complex,
        }
    }
}

/// `userAccountControl` for a normal account, and its "disabled" bit (Active Directory).
pub const NORMAL_ACCOUNT: u32 = 512;
/// The "account disabled" bit of `userAccountControl`.
pub const ACCOUNT_DISABLED: u32 = 2;

/// The `userAccountControl` a new account gets when its field map sets none, as Active
/// Directory needs it: enabled (512) with a password, disabled (514) without one. AD itself
/// would make it 546 (disabled, and needing no password). `None` for an entry that is not an
/// account (`objectClass` user or computer) or that has the value already.
pub fn new_account_control(entry: &Entry, has_password: bool) -> Option<u32> {
    // One pass over the attributes: this runs for every new object.
    let (mut is_account, mut has_value) = (false, false);
    for a in entry.attributes() {
        if a.name.eq_ignore_ascii_case("objectClass") {
            is_account |= a
                .values
                .iter()
                .any(|c| c.eq_ignore_ascii_case("user") || c.eq_ignore_ascii_case("computer"));
        } else if a.name.eq_ignore_ascii_case("userAccountControl") {
            has_value = true;
        }
    }
    (is_account && !has_value).then_some(if has_password {
        NORMAL_ACCOUNT
    } else {
        NORMAL_ACCOUNT | ACCOUNT_DISABLED
    })
}

/// Active Directory's `groupType` of a global security group: what a new group gets when its
/// field map sets none (AD's own default, written out so the job's groups do not depend on it).
pub const GLOBAL_SECURITY_GROUP: i32 = GROUP_GLOBAL | GROUP_SECURITY;
const GROUP_GLOBAL: i32 = 0x2;
const GROUP_DOMAIN_LOCAL: i32 = 0x4;
const GROUP_UNIVERSAL: i32 = 0x8;
const GROUP_SECURITY: i32 = i32::MIN; // 0x80000000

/// The `groupType` a field map value names, as Active Directory stores it (a signed 32-bit
/// number): the number itself, or a scope (`global`, `domain local`, `universal`) and a kind
/// (`security`, `distribution`) in either order, in any case, separated by spaces, `-` or `_`.
/// A scope alone is a security group; a kind alone is global.
///
/// ```
/// use datasync::destination::group_type;
/// assert_eq!(group_type("Universal Distribution"), Ok(8));
/// assert_eq!(group_type("domain-local security"), Ok(-2147483644));
/// assert_eq!(group_type("security"), Ok(-2147483646));
/// assert_eq!(group_type("-2147483646"), Ok(-2147483646));
/// assert!(group_type("global global").is_err());
/// ```
pub fn group_type(value: &str) -> Result<i32, String> {
    let text = value.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Ok(n);
    }
    // Unsigned, as some tools print it (2147483650 for a global security group).
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n as i32);
    }
    let lower = text.to_ascii_lowercase().replace(['-', '_'], " ");
    let words: Vec<&str> = lower.split_whitespace().collect();
    let (mut scope, mut security) = (None, None);
    let mut i = 0;
    while i < words.len() {
        let (found_scope, found_kind, used) = match (words[i], words.get(i + 1)) {
            ("domain", Some(&"local")) => (Some(GROUP_DOMAIN_LOCAL), None, 2),
            ("domainlocal" | "local", _) => (Some(GROUP_DOMAIN_LOCAL), None, 1),
            ("global", _) => (Some(GROUP_GLOBAL), None, 1),
            ("universal", _) => (Some(GROUP_UNIVERSAL), None, 1),
            ("security", _) => (None, Some(true), 1),
            ("distribution", _) => (None, Some(false), 1),
            (word, _) => {
                return Err(format!(
                    "groupType {value:?}: {word:?} is not a group scope (global, domain local, universal) or kind (security, distribution)"
                ));
            }
        };
        if (found_scope.is_some() && scope.is_some())
            || (found_kind.is_some() && security.is_some())
        {
            return Err(format!("groupType {value:?} names a scope or a kind twice"));
        }
        scope = scope.or(found_scope);
        security = security.or(found_kind);
        i += used;
    }
    if scope.is_none() && security.is_none() {
        return Err("groupType is empty".into());
    }
    let kind = if security.unwrap_or(true) {
        GROUP_SECURITY
    } else {
        0
    };
    Ok(scope.unwrap_or(GROUP_GLOBAL) | kind)
}

/// The `groupType` a new Active Directory group gets when it has none: a global security
/// group. `None` for an entry that is not a group (`objectClass` group) or that has one.
pub fn new_group_type(entry: &Entry) -> Option<i32> {
    let is_group = entry
        .get("objectClass")
        .iter()
        .any(|c| c.eq_ignore_ascii_case("group"));
    (is_group && entry.get("groupType").is_empty()).then_some(GLOBAL_SECURITY_GROUP)
}

/// What Active Directory refused, and why (see [`DestinationError::Domain`]).
#[derive(Debug, thiserror::Error)]
#[error("{reason}: cannot {operation} {dn} (LDAP {code} {name}: {message})")]
pub struct DomainRefusal {
    /// What was attempted (`add`, `modify`, …).
    pub operation: &'static str,
    /// The entry.
    pub dn: String,
    /// The LDAP result code.
    pub code: u32,
    /// The result code's name (`constraintViolation`).
    pub name: &'static str,
    /// What is wrong, in plain words, naming the attribute and value where there is one.
    pub reason: String,
    /// The server's diagnostic message.
    pub message: String,
}

impl DestinationError {
    /// True when trying the same operation again later may succeed (used by retries).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DestinationError::Io { .. }
                | DestinationError::Locked { .. }
                | DestinationError::Unavailable { .. }
                | DestinationError::Ldap { code: 51 | 52, .. }
        )
    }
}

/// What a destination tells the engine about itself before a run (see
/// [`Destination::capabilities`]).
///
/// ```
/// let mut ad = datasync::destination::Capabilities::default();
/// ad.references_must_exist = true;
/// ad.connections = Some(8);
/// assert!(ad.password_rules.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// What the directory asks of every password, when it says (Active Directory's domain
    /// policy). The engine checks the job's generated passwords against it before it reads
    /// anything.
    pub password_rules: Option<PasswordRules>,
    /// A DN-valued attribute (`manager`, `member`) must name an entry that exists when it is
    /// written, as Active Directory requires. The engine then writes the objects a row names
    /// before the row.
    pub references_must_exist: bool,
    /// How many operations the destination can have in flight at once (an LDAP server's
    /// connection pool). A run the caller leaves the worker count to runs that many workers,
    /// to cover the round trips; `None` runs one per core.
    pub connections: Option<usize>,
    /// The directory keeps DN-valued attributes true itself: a renamed object's DN changes in
    /// every group's `member`, a deleted one leaves them (Active Directory's linked
    /// attributes). Otherwise the engine edits the groups in the job's scope after renames and
    /// deletes.
    pub maintains_references: bool,
}

/// A directory the engine writes to.
///
/// All methods take `&self` and the type is `Sync`: the engine calls them from several worker
/// threads at once, so an implementation locks (or multiplexes) internally. An operation either
/// happens whole or returns an error and changes nothing; [`commit`](Self::commit) makes a
/// run's writes durable.
///
/// A run reads the destination once per object type through
/// [`search_each`](Self::search_each), keeping only what matching needs of each object (its
/// DN, key and a hash of its mapped attributes), and fetches a whole entry with
/// [`read_entry`](Self::read_entry) only for an object that changes: an implementation streams its
/// entries rather than gathering them.
pub trait Destination: Send + Sync {
    /// Hands `each` every entry at or below `base` (per `scope`) that matches `filter`, as
    /// they are read, in no promised order. `attributes` names what the caller will read (none:
    /// all of them); an implementation may hand over more. A `base` that does not exist gives
    /// [`DestinationError::NoSuchObject`]. `each` must not call back into the destination.
    ///
    /// Each entry is lent for the call only, so an implementation may hand over entries it
    /// keeps, or decode every record into the same one: a scan of a million objects then
    /// allocates nothing per object. The caller copies what it keeps.
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError>;

    /// [`search_each`](Self::search_each)'s entries gathered, in tree order (parents before
    /// children, then by normalised DN).
    fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
    ) -> Result<Vec<Entry>, DestinationError> {
        let mut found: Vec<(String, Entry)> = Vec::new();
        self.search_each(base, scope, filter, attributes, &mut |e| {
            found.push((embedded::sort_key(&e.dn), e.clone()));
        })?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().map(|(_, e)| e).collect())
    }

    /// The entry at `dn` with `attributes` (none: all), or `None` when there is none.
    fn read_entry(
        &self,
        dn: &str,
        attributes: &[String],
    ) -> Result<Option<Entry>, DestinationError> {
        let mut found = None;
        // Every entry has an objectClass: the filter every server takes for "any".
        let any = Filter::Present("objectClass".into());
        match self.search_each(dn, Scope::Base, &any, attributes, &mut |e| {
            found = Some(e.clone())
        }) {
            Ok(()) | Err(DestinationError::NoSuchObject { .. }) => Ok(found),
            Err(e) => Err(e),
        }
    }

    /// True when an entry with this DN exists.
    fn exists(&self, dn: &str) -> Result<bool, DestinationError>;

    /// Adds `entry`; its parent must exist. `password`, if any, is set with it, as the
    /// destination keeps passwords (a salted hash in the embedded directory, `unicodePwd` on
    /// Active Directory). The entry is lent, not given: the engine hands it on to the
    /// `row_added` hook afterwards without a copy.
    ///
    /// Several workers call this at once: an implementation does the work that needs no lock
    /// (checking names, hashing the password, encoding the record) before it takes one.
    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError>;

    /// Adds each entry of `adds` as [`add`](Self::add) would, in order (an entry's parent may
    /// come earlier in the same batch), with one result per entry: one failing leaves the
    /// others. The engine hands each worker's new objects over this way. The default adds them
    /// one by one, which is right for a server. A destination with one writer (the embedded
    /// store: one SQLite connection) takes its lock once per batch: adds taken one at a time
    /// from two workers made a million-row first run 1.4 times slower, the workers passing
    /// the connection, and its pages, back and forth.
    fn add_batch(&self, adds: &[(&Entry, Option<&Secret>)]) -> Vec<Result<(), DestinationError>> {
        adds.iter()
            .map(|(entry, password)| self.add(entry, *password))
            .collect()
    }

    /// Applies all `changes` to the entry at `dn`, or none of them.
    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError>;

    /// Moves the entry at `dn` (and anything below it) to `new_dn`; the RDN attribute's value
    /// follows the new RDN.
    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError>;

    /// Deletes the leaf entry at `dn`.
    fn delete(&self, dn: &str) -> Result<(), DestinationError>;

    /// What the destination is, as far as planning a run goes: its password policy, whether
    /// references must exist, how many writes it takes at once. Default:
    /// [`Capabilities::default`], a local directory with no policy.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Whether `password` is the entry's current password: `Some` when the destination can
    /// tell, `None` when it cannot (then a static password is only set on create).
    fn password_matches(
        &self,
        dn: &str,
        password: &Secret,
    ) -> Result<Option<bool>, DestinationError> {
        let _ = (dn, password);
        Ok(None)
    }

    /// Makes the run's writes durable: the embedded store commits its transaction, the LDIF
    /// directory replaces its file; a server destination, whose writes are made as they go,
    /// has nothing left to do. Called once at the end of every run that did not fail (a dry
    /// run's, which changed nothing, ends its read).
    fn commit(&self) -> Result<(), DestinationError>;
}
