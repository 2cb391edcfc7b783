//! The embedded directory: a tree of entries kept in an LDIF file, so a job runs with no server.
//!
//! The file is read once when the directory is opened; changes happen in memory and
//! [`commit`](Destination::commit) writes the whole file back atomically (a temporary file
//! beside it, fsync, rename), so a run that fails or is killed leaves the old file as it was.
//! A lock file (`PATH.lock`) keeps two runs from writing the same directory at once.
//! Passwords are stored as `{SSHA256}` salted hashes, never as text.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngExt;
use sha2::{Digest, Sha256, Sha512};

use super::{Destination, DestinationError, Entry, Modification, Scope, ldif};
use crate::Secret;
use crate::dn::Dn;
use crate::query::Filter;

/// Separates RDNs in a tree key. Keys list RDNs root first, so a parent sorts right before its
/// children and a subtree is one contiguous range of the map.
pub(super) use crate::dn::SEP;

/// An LDAP-like directory held in memory and kept in an LDIF file.
///
/// ```
/// use datasync::{Destination, Entry, LdifDirectory};
/// let dir = LdifDirectory::in_memory();
/// let mut e = Entry::new("DC=lab");
/// e.set("dc", vec!["lab".into()]);
/// dir.add(&e, None).unwrap();
/// assert!(dir.exists("dc=LAB").unwrap());
/// ```
pub struct LdifDirectory {
    path: Option<PathBuf>,
    // Held for the directory's lifetime; the OS releases the lock when the file closes.
    _lock: Option<File>,
    /// Entries are shared (`Arc`) so that a run's scan takes them without copying; a change
    /// replaces the entry, never edits one a scan may hold.
    tree: RwLock<BTreeMap<String, Arc<Entry>>>,
    dirty: AtomicBool,
    parents: ParentCache,
}

impl std::fmt::Debug for LdifDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdifDirectory")
            .field("path", &self.path)
            .field("entries", &self.read().len())
            .finish()
    }
}

use crate::dn::push_key_segment;
pub(crate) use crate::dn::{key, sort_key};

/// Appends the key segment of an RDN such as `CN=Ann Lee` (a name, `=`, then ASCII with
/// nothing to escape or trim) without parsing it; `false`, with `out` untouched, for
/// anything else, which takes the full parse. Nearly every object a job creates is named
/// so, and the parse cost four allocations per object.
fn push_plain_rdn_segment(out: &mut String, rdn: &str) -> bool {
    let Some((attr, value)) = rdn.split_once('=') else {
        return false;
    };
    let plain_attr = attr.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let bytes = value.as_bytes();
    let plain_value = !bytes.is_empty()
        && !matches!(bytes[0], b' ' | b'#')
        && bytes.last() != Some(&b' ')
        && bytes.iter().all(|&b| {
            (b' '..0x7f).contains(&b)
                && !matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' | b'=')
        });
    if !(plain_attr && plain_value) {
        return false;
    }
    crate::text::push_lowercase(out, attr);
    out.push('=');
    crate::text::push_lowercase(out, value);
    true
}

/// `dn` split after its first RDN: (`CN=Ann`, `OU=API,DC=lab`), or `None` when it has one
/// RDN or quotes (which the full parse handles).
fn split_first_rdn(dn: &str) -> Option<(&str, &str)> {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return None,
            b',' | b';' => return Some((&dn[..i], &dn[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// What adding under a parent needs to know of it, computed once per parent DN.
#[derive(Debug, Clone)]
pub(super) struct ParentKey {
    /// Its tree key.
    pub(super) key: String,
    /// It need not exist (see [`rdns_may_be_absent`]).
    pub(super) may_be_absent: bool,
    /// It as a DN, for messages.
    pub(super) display: String,
}

/// An entry ready to go into the tree (see [`LdifDirectory::stage_add`]).
struct StagedAdd {
    key: String,
    /// The parent that must exist (`None`: it need not).
    parent: Option<Arc<ParentKey>>,
    entry: Arc<Entry>,
}

/// Parents seen by [`LdifDirectory::add`], by DN as written. Bounded: a job whose every row
/// names its own container only loses the shortcut.
#[derive(Debug, Default)]
pub(super) struct ParentCache(RwLock<HashMap<String, Arc<ParentKey>>>);

impl ParentCache {
    const LIMIT: usize = 4096;

    /// `None` when `parent` is not a DN (the caller's full parse then says why).
    fn get(&self, parent: &str) -> Option<Arc<ParentKey>> {
        // Rows share few parents: a read lock, so parallel adds do not queue on a hit.
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = known.get(parent) {
            return Some(found.clone());
        }
        drop(known);
        let parsed = Dn::parse(parent).ok()?;
        let found = Arc::new(ParentKey {
            key: key(&parsed),
            may_be_absent: rdns_may_be_absent(&parsed.rdns),
            display: parsed.to_string(),
        });
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::LIMIT {
            map.clear();
        }
        map.insert(parent.to_string(), found.clone());
        Some(found)
    }
}

pub(super) fn parse_key(dn: &str) -> Result<(Dn, String), DestinationError> {
    let parsed = Dn::parse(dn)?;
    let k = key(&parsed);
    Ok((parsed, k))
}

/// How many RDNs a tree key has, counted on the key: no DN parsing per entry.
pub(super) fn key_depth(key: &str) -> usize {
    if key.is_empty() {
        0
    } else {
        key.matches(SEP).count() + 1
    }
}

/// A parent that need not exist as an entry: the root, or a naming context made only of
/// `DC=` components (a suffix a server would hold, absent from a partial export).
pub(super) fn rdns_may_be_absent(rdns: &[Vec<crate::dn::Ava>]) -> bool {
    rdns.iter()
        .all(|rdn| rdn.iter().all(|ava| ava.attr.eq_ignore_ascii_case("dc")))
}

/// The tree key of `dn` from its parent's cached key and its own first RDN, with the
/// parent to check (`None` when it need not exist). `None`: take the full parse.
/// `last` is the parent of the entry before (entries added together share few parents),
/// then this one's.
pub(super) fn fast_key(
    parents: &ParentCache,
    dn: &str,
    last: &mut Option<(String, Arc<ParentKey>)>,
) -> Option<(String, Option<Arc<ParentKey>>)> {
    let (rdn, parent_dn) = split_first_rdn(dn)?;
    let parent = match last {
        Some((known, key)) if known == parent_dn => key.clone(),
        _ => {
            let key = parents.get(parent_dn)?;
            *last = Some((parent_dn.to_string(), key.clone()));
            key
        }
    };
    let mut k = String::with_capacity(parent.key.len() + 1 + dn.len());
    k.push_str(&parent.key);
    k.push(SEP);
    if !push_plain_rdn_segment(&mut k, rdn) {
        let Dn { rdns } = Dn::parse(rdn).ok()?;
        let [rdn] = rdns.as_slice() else {
            return None;
        };
        push_key_segment(&mut k, rdn);
    }
    Some((k, Some(parent).filter(|p| !p.may_be_absent)))
}

/// The tree key of a new entry's DN and the parent that must exist (`None`: it need not).
/// Only a DN of one RDN (under the root, which need not exist) misses the fast path, or one
/// that is no DN at all, which the parse rejects.
pub(super) fn new_entry_key(
    parents: &ParentCache,
    dn: &str,
    last: &mut Option<(String, Arc<ParentKey>)>,
) -> Result<(String, Option<Arc<ParentKey>>), DestinationError> {
    match fast_key(parents, dn, last) {
        Some(found) => Ok(found),
        None => Ok((parse_key(dn)?.1, None)),
    }
}

/// A new entry as this directory keeps it: names checked, passwords hashed (any a hook or a
/// field map put in as text, and `password` if given), and an account's
/// `userAccountControl` and a group's `groupType` set as Active Directory would (see
/// `new_account_control` and `new_group_type`), so a job gives the same objects here as on AD.
pub(super) fn stored_entry(
    entry: &Entry,
    password: Option<&Secret>,
) -> Result<Entry, DestinationError> {
    let mut stored = entry.clone();
    for a in stored_overrides(entry, password)? {
        stored.set(&a.name, a.values);
    }
    Ok(stored)
}

/// What [`stored_entry`] changes in `entry`, without copying the rest: attributes that
/// replace the entry's own of the same name where it has one, and are added after its own
/// where it has not (as [`Entry::set`] does). The store encodes the entry with these in
/// place (see `record::encode_stored`).
pub(super) fn stored_overrides(
    entry: &Entry,
    password: Option<&Secret>,
) -> Result<Vec<super::Attribute>, DestinationError> {
    let mut overrides = Vec::new();
    // One look at every attribute: names checked, passwords found.
    let mut has_password = password.is_some();
    for a in entry.attributes() {
        check_names(&entry.dn, std::iter::once(a.name.as_str()))?;
        if super::is_password_attribute(&a.name) {
            has_password = true;
            if a.values.iter().any(|v| !is_stored_form(v)) {
                overrides.push(super::Attribute {
                    name: a.name.clone(),
                    values: a.values.iter().map(|v| stored_form(v)).collect(),
                });
            }
        }
    }
    if let Some(uac) = super::new_account_control(entry, has_password) {
        overrides.push(super::Attribute {
            name: "userAccountControl".into(),
            values: vec![uac.to_string()],
        });
    }
    if let Some(kind) = super::new_group_type(entry) {
        overrides.push(super::Attribute {
            name: "groupType".into(),
            values: vec![kind.to_string()],
        });
    }
    if let Some(p) = password {
        let hashed = stored_password(p);
        overrides.retain(|a| !a.name.eq_ignore_ascii_case(&hashed.name));
        overrides.push(hashed);
    }
    Ok(overrides)
}

impl LdifDirectory {
    /// A directory with no file: for tests, dry runs and benchmarks.
    pub fn in_memory() -> LdifDirectory {
        LdifDirectory {
            path: None,
            _lock: None,
            tree: RwLock::new(BTreeMap::new()),
            dirty: AtomicBool::new(false),
            parents: ParentCache::default(),
        }
    }

    /// Opens (or, when the file does not exist yet, starts) the directory kept in `path`.
    /// Bad LDIF is an error naming the line; no entry is ever dropped silently.
    ///
    /// The path is resolved through symlinks first: the file written is the link's target
    /// (the link stays), and the lock is taken on the target, so two runs that name one file
    /// by different paths are kept apart. A read-only file is refused: it would be replaced.
    /// Temporary files an earlier, killed run left beside the file are removed.
    pub fn open(path: impl AsRef<Path>) -> Result<LdifDirectory, DestinationError> {
        let path = super::resolve_directory_file(path.as_ref(), "ldif:PATH")?;
        let io = |source| DestinationError::Io {
            path: path.clone(),
            source,
        };
        let lock = super::lock_beside(&path)?;
        crate::files::remove_stale_temps(&path);
        // Whether the file can be replaced (not read-only, its folder writable) is found now,
        // not when the run commits: a run whose changes could not be kept does not start.
        drop(crate::files::Replacement::begin(&path, 0o600).map_err(io)?);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let entries = ldif::parse_with_lines(&text).map_err(|source| DestinationError::Ldif {
            path: path.clone(),
            source,
        })?;
        let mut tree = BTreeMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        for (entry, line) in entries {
            let (_, k) = parse_key(&entry.dn).map_err(|e| DestinationError::Ldif {
                path: path.clone(),
                source: ldif::LdifError {
                    line,
                    message: e.to_string(),
                },
            })?;
            if let Some(first) = first_lines.get(&k) {
                return Err(DestinationError::Ldif {
                    path: path.clone(),
                    source: ldif::LdifError {
                        line,
                        message: format!(
                            "the entry {} is already on line {first} (one DN, one entry)",
                            entry.dn
                        ),
                    },
                });
            }
            first_lines.insert(k.clone(), line);
            tree.insert(k, Arc::new(entry));
        }
        Ok(LdifDirectory {
            path: Some(path),
            _lock: Some(lock),
            tree: RwLock::new(tree),
            dirty: AtomicBool::new(false),
            parents: ParentCache::default(),
        })
    }

    /// A directory holding `entries` (parents need not come first).
    pub fn from_entries(entries: Vec<Entry>) -> Result<LdifDirectory, DestinationError> {
        let dir = LdifDirectory::in_memory();
        {
            let mut tree = dir.write();
            for entry in entries {
                let (_, k) = parse_key(&entry.dn)?;
                if tree.insert(k, Arc::new(entry.clone())).is_some() {
                    return Err(DestinationError::AlreadyExists { dn: entry.dn });
                }
            }
        }
        Ok(dir)
    }

    // A poisoned lock means a thread panicked mid-change; the map itself is still whole (every
    // change is a single insert/remove), so carry on with it.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry, parents before children.
    pub fn entries(&self) -> Vec<Entry> {
        self.read().values().map(|e| Entry::clone(e)).collect()
    }

    /// The entry at `dn`, if any.
    pub fn get(&self, dn: &str) -> Option<Entry> {
        let (_, k) = parse_key(dn).ok()?;
        self.read().get(&k).map(|e| Entry::clone(e))
    }

    /// The directory as LDIF, parents before children (what `commit` writes).
    pub fn to_ldif(&self) -> String {
        ldif::write(self.read().values().map(|e| &**e))
    }

    /// The file this directory is kept in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Hands `take` every entry at or below `base` (per `scope`) that matches `filter`, in
    /// tree order, under one read lock.
    fn select(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        mut take: impl FnMut(&Arc<Entry>),
    ) -> Result<(), DestinationError> {
        let (_, base_key) = parse_key(base)?;
        let tree = self.read();
        let mut walk = ScopeWalk::new(&base_key, scope);
        for (key, entry) in in_subtree(&tree, &base_key) {
            if walk.in_scope(key) && filter.matches(entry) {
                take(entry);
            }
        }
        walk.finish(base, &base_key)
    }

    /// An add's work that needs no lock: the tree key, the parent to check and the password's
    /// hash. The parent's key comes from the cache and only the new RDN is parsed: adding
    /// 100,000 objects to one container parsed that container 100,000 times.
    fn stage_add(
        &self,
        entry: &Entry,
        password: Option<&Secret>,
        last_parent: &mut Option<(String, Arc<ParentKey>)>,
    ) -> Result<StagedAdd, DestinationError> {
        let (key, parent) = new_entry_key(&self.parents, &entry.dn, last_parent)?;
        let stored = stored_entry(entry, password)?;
        Ok(StagedAdd {
            key,
            parent,
            entry: Arc::new(stored),
        })
    }

    /// The locked half of an add. `present` is a parent found in the tree by an earlier
    /// insert under the same lock (entries added together share their parent, and a parent
    /// is not removed while the lock is held), so it is looked up once, not per entry.
    fn insert(
        tree: &mut BTreeMap<String, Arc<Entry>>,
        staged: StagedAdd,
        present: &mut Option<Arc<ParentKey>>,
    ) -> Result<(), DestinationError> {
        check_parent_once(present, staged.parent.as_ref(), &staged.entry.dn, |k| {
            Ok(tree.contains_key(k))
        })?;
        match tree.entry(staged.key) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(DestinationError::AlreadyExists {
                    dn: staged.entry.dn.clone(),
                })
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(staged.entry);
                Ok(())
            }
        }
    }
}

/// Checks that the parent of `dn` (whose tree key is `k`) exists, asking `exists` of its
/// key. The parent's key is the child's up to its last separator, so no second DN is built.
/// `original` is the DN as the caller wrote it, for the message.
pub(super) fn check_parent(
    dn: &Dn,
    k: &str,
    original: &str,
    exists: impl FnOnce(&str) -> Result<bool, DestinationError>,
) -> Result<(), DestinationError> {
    let parent = dn.rdns.get(1..).unwrap_or(&[]);
    if parent.is_empty() || rdns_may_be_absent(parent) {
        return Ok(());
    }
    let parent_key = k.rfind(SEP).map_or("", |i| &k[..i]);
    if exists(parent_key)? {
        Ok(())
    } else {
        let parent = Dn {
            rdns: parent.to_vec(),
        };
        Err(DestinationError::NoSuchObject {
            dn: format!("{parent} (the parent of {original})"),
        })
    }
}

/// The parent check of an add under its directory's lock: `parent` (from [`new_entry_key`];
/// `None` when it need not exist) is asked of `exists` unless it is `present`, the parent an
/// earlier add under the same lock found (adds share their parent, and a parent is not
/// removed while the lock is held), which it then becomes.
pub(super) fn check_parent_once(
    present: &mut Option<Arc<ParentKey>>,
    parent: Option<&Arc<ParentKey>>,
    dn: &str,
    exists: impl FnOnce(&str) -> Result<bool, DestinationError>,
) -> Result<(), DestinationError> {
    let Some(parent) = parent else {
        return Ok(());
    };
    if present.as_ref().is_some_and(|p| Arc::ptr_eq(p, parent)) {
        return Ok(());
    }
    if !exists(&parent.key)? {
        return Err(DestinationError::NoSuchObject {
            dn: format!("{} (the parent of {dn})", parent.display),
        });
    }
    *present = Some(parent.clone());
    Ok(())
}

/// Which entries of a base's subtree range a search in one scope hands over, and whether the
/// base was there at all: the walk the embedded directories share over their key-ordered
/// entries.
pub(super) struct ScopeWalk {
    scope: Scope,
    base_depth: usize,
    found: bool,
}

impl ScopeWalk {
    pub(super) fn new(base_key: &str, scope: Scope) -> ScopeWalk {
        ScopeWalk {
            scope,
            base_depth: key_depth(base_key),
            found: false,
        }
    }

    /// Whether the entry at `key`, next in the base's range, is in scope.
    pub(super) fn in_scope(&mut self, key: &str) -> bool {
        self.found = true;
        self.scope == Scope::Subtree
            || key_depth(key) == self.base_depth + usize::from(self.scope == Scope::OneLevel)
    }

    /// After the walk: a base that is not there (other than the root) is no such object.
    pub(super) fn finish(self, base: &str, base_key: &str) -> Result<(), DestinationError> {
        if !self.found && !base_key.is_empty() {
            return Err(DestinationError::NoSuchObject {
                dn: base.to_string(),
            });
        }
        Ok(())
    }
}

/// The attribute that holds an entry's password, hashed.
const PASSWORD_ATTRIBUTE: &str = "userPassword";

/// How an entry keeps `password`: its salted hash in `userPassword`. Every way a password
/// gets in (an add, a change) goes through here.
pub(super) fn stored_password(password: &Secret) -> super::Attribute {
    super::Attribute {
        name: PASSWORD_ATTRIBUTE.into(),
        values: vec![hash_password(password)],
    }
}

/// Refuses attribute names that are not LDAP attribute descriptions: written to the file,
/// `info\nobjectClass` would be two lines, and the file unreadable.
fn check_names<'a>(
    dn: &str,
    mut names: impl Iterator<Item = &'a str>,
) -> Result<(), DestinationError> {
    match names.find_map(|n| super::check_attribute_description(n).err()) {
        Some(why) => Err(DestinationError::Rejected {
            message: format!("{dn}: {why}"),
        }),
        None => Ok(()),
    }
}

/// Whether a password attribute's value is already in a `{SCHEME}` form.
fn is_stored_form(value: &str) -> bool {
    value.starts_with('{') && value.find('}').is_some_and(|end| end > 1)
}

/// A password attribute's value as it is kept: a value already in a `{SCHEME}` form (a hash
/// read back, an import) as it is, anything else hashed.
fn stored_form(value: &str) -> String {
    if is_stored_form(value) {
        value.to_string()
    } else {
        hash_password(&Secret::new(value))
    }
}

/// The scheme new passwords are hashed with. SHA-256 rather than SHA-512: both are salted
/// hashes OpenLDAP's `pw-sha2` module reads, and neither is slower to brute-force than the
/// other, but SHA-256 runs on the CPU's SHA extensions where they exist (most x86 and ARM
/// servers), a quarter of SHA-512's cost. A job that creates 100,000 users hashes 100,000
/// passwords.
const SCHEME: &str = "{SSHA256}";

/// Hashes a password as OpenLDAP's `{SSHA256}`: base64(SHA-256(password ‖ salt) ‖ salt),
/// with a 16-byte salt from a cryptographic RNG.
pub fn hash_password(password: &Secret) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let mut hasher = Sha256::new();
    hasher.update(password.expose().as_bytes());
    hasher.update(salt);
    // Digest and salt on the stack, encoded straight after the scheme: one allocation.
    let mut raw = [0u8; 32 + 16];
    raw[..32].copy_from_slice(&hasher.finalize());
    raw[32..].copy_from_slice(&salt);
    let mut out = String::with_capacity(SCHEME.len() + 64);
    out.push_str(SCHEME);
    BASE64.encode_string(raw, &mut out);
    out
}

/// True when `stored` is an `{SSHA256}` or `{SSHA512}` hash of `password` (a directory
/// written before hashes became SHA-256 holds the latter).
pub fn verify_password(stored: &str, password: &Secret) -> bool {
    if let Some(b64) = stored.strip_prefix(SCHEME) {
        verify_salted::<Sha256>(b64, password)
    } else if let Some(b64) = stored.strip_prefix("{SSHA512}") {
        verify_salted::<Sha512>(b64, password)
    } else {
        false
    }
}

/// Whether `password` is the one whose hash `entry` keeps.
pub(super) fn entry_password_matches(entry: &Entry, password: &Secret) -> bool {
    entry
        .get(PASSWORD_ATTRIBUTE)
        .iter()
        .any(|stored| verify_password(stored, password))
}

/// Checks base64(H(password ‖ salt) ‖ salt) for the hash `H`.
fn verify_salted<H: Digest>(b64: &str, password: &Secret) -> bool {
    let Ok(bytes) = BASE64.decode(b64) else {
        return false;
    };
    let size = <H as Digest>::output_size();
    if bytes.len() <= size {
        return false;
    }
    let (digest, salt) = bytes.split_at(size);
    let mut hasher = H::new();
    hasher.update(password.expose().as_bytes());
    hasher.update(salt);
    hasher.finalize().as_slice() == digest
}

/// What a modify needs before the entry is read: its names checked and its new passwords
/// hashed, one per change (`None` for a change that sets no password).
pub(super) fn stage_modifications(
    dn: &str,
    changes: &[Modification],
) -> Result<Vec<Option<super::Attribute>>, DestinationError> {
    check_names(
        dn,
        changes
            .iter()
            .filter_map(|c| c.attribute().map(super::AttributeName::as_str)),
    )?;
    Ok(changes
        .iter()
        .map(|c| match c {
            Modification::SetPassword(p) => Some(stored_password(p)),
            _ => None,
        })
        .collect())
}

/// Applies `changes` to `entry` (whose DN is `parsed`), with the hashes
/// [`stage_modifications`] made: all of them, or an error and `entry` must be dropped.
pub(super) fn apply_modifications(
    parsed: &Dn,
    dn: &str,
    entry: &mut Entry,
    changes: &[Modification],
    hashed: Vec<Option<super::Attribute>>,
) -> Result<(), DestinationError> {
    for (change, hash) in changes.iter().zip(hashed) {
        match change {
            Modification::AddValues(attr, _) | Modification::DeleteValues(attr, _)
                if super::is_password_attribute(attr) =>
            {
                // A password is replaced whole (and stored hashed), never edited by value.
                return Err(DestinationError::Rejected {
                    message: format!(
                        "{dn}: {attr} is a password: replace it, do not edit its values"
                    ),
                });
            }
            Modification::AddValues(attr, values) => {
                let mut kept = entry.get(attr).to_vec();
                let mut present: std::collections::HashSet<String> =
                    kept.iter().map(|v| super::value_key(v)).collect();
                for value in values {
                    if present.insert(super::value_key(value)) {
                        kept.push(value.clone());
                    }
                }
                entry.set(attr, kept);
            }
            Modification::DeleteValues(attr, values) => {
                let removed: std::collections::HashSet<String> =
                    values.iter().map(|v| super::value_key(v)).collect();
                let naming = parsed.rdns.first().into_iter().flatten().any(|ava| {
                    ava.attr.eq_ignore_ascii_case(attr)
                        && removed.contains(&super::value_key(&ava.value))
                });
                if naming {
                    return Err(DestinationError::Rejected {
                        message: format!(
                            "{dn}: {attr} is the naming attribute; rename the entry to change it"
                        ),
                    });
                }
                let kept: Vec<String> = entry
                    .get(attr)
                    .iter()
                    .filter(|v| !removed.contains(&super::value_key(v)))
                    .cloned()
                    .collect();
                entry.set(attr, kept);
            }
            Modification::Replace(attr, values) => {
                if let Some(ava) = parsed
                    .rdns
                    .first()
                    .and_then(|rdn| rdn.iter().find(|ava| ava.attr.eq_ignore_ascii_case(attr)))
                    && !values
                        .iter()
                        .any(|v| crate::entry::eq_ignore_case(v, &ava.value))
                {
                    return Err(DestinationError::Rejected {
                        message: format!(
                            "{dn}: {attr} is the naming attribute; rename the entry to change it"
                        ),
                    });
                }
                if super::is_password_attribute(attr) {
                    entry.set(attr, values.iter().map(|v| stored_form(v)).collect());
                } else {
                    entry.set(attr, values.clone());
                }
            }
            Modification::SetPassword(_) => {
                if let Some(hashed) = hash {
                    entry.set(&hashed.name, hashed.values);
                }
            }
        }
    }
    Ok(())
}

/// `entry`, at or below `old`, moved with it to `new` (written `new_dn`): its DN, and for
/// the moved entry itself its naming attribute, which follows the new RDN (LDAP modify DN
/// with deleteoldrdn). Returns the entry's new DN, parsed.
pub(super) fn moved_entry(
    entry: &mut Entry,
    old: &Dn,
    new: &Dn,
    new_dn: &str,
) -> Result<Dn, DestinationError> {
    let entry_dn = Dn::parse(&entry.dn)?;
    let own = entry_dn.rdns.len().saturating_sub(old.rdns.len());
    let renamed = Dn {
        rdns: entry_dn.rdns[..own]
            .iter()
            .chain(new.rdns.iter())
            .cloned()
            .collect(),
    };
    if own == 0 {
        for ava in old.rdns.first().into_iter().flatten() {
            let kept: Vec<String> = entry
                .get(&ava.attr)
                .iter()
                .filter(|v| !crate::entry::eq_ignore_case(v, &ava.value))
                .cloned()
                .collect();
            entry.set(&ava.attr, kept);
        }
        for ava in new.rdns.first().into_iter().flatten() {
            entry.add_values(&ava.attr, std::slice::from_ref(&ava.value));
        }
        entry.dn = new_dn.to_string();
    } else {
        let head = Dn {
            rdns: entry_dn.rdns[..own].to_vec(),
        };
        entry.dn = format!("{head},{new_dn}");
    }
    Ok(renamed)
}

/// A copy of `entry` with only `attributes` (all of them when none are named).
fn project(entry: &Entry, attributes: &[String]) -> Entry {
    if attributes.is_empty() {
        return entry.clone();
    }
    let mut out = Entry::new(entry.dn.clone());
    for attr in entry.attributes() {
        if attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&attr.name))
        {
            out.set(&attr.name, attr.values.clone());
        }
    }
    out
}

fn in_subtree<'a>(
    tree: &'a BTreeMap<String, Arc<Entry>>,
    base: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Arc<Entry>)> + 'a {
    let prefix = format!("{base}{SEP}");
    tree.range(base.to_string()..)
        .take_while(move |(k, _)| base.is_empty() || *k == base || k.starts_with(&prefix))
}

impl Destination for LdifDirectory {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        self.select(base, scope, filter, |e| each(&project(e, attributes)))
    }

    fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
    ) -> Result<Vec<Entry>, DestinationError> {
        // The tree is in tree order already.
        let mut out = Vec::new();
        self.select(base, scope, filter, |e| out.push(project(e, attributes)))?;
        Ok(out)
    }

    fn read_entry(
        &self,
        dn: &str,
        attributes: &[String],
    ) -> Result<Option<Entry>, DestinationError> {
        let (_, k) = parse_key(dn)?;
        Ok(self.read().get(&k).map(|e| project(e, attributes)))
    }

    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        let (_, k) = parse_key(dn)?;
        Ok(self.read().contains_key(&k))
    }

    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        let staged = self.stage_add(entry, password, &mut None)?;
        let result = Self::insert(&mut self.write(), staged, &mut None);
        if result.is_ok() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    fn add_batch(&self, adds: &[(&Entry, Option<&Secret>)]) -> Vec<Result<(), DestinationError>> {
        // Everything but the map itself is done before the lock, which is then taken once.
        let mut last_parent = None;
        let staged: Vec<_> = adds
            .iter()
            .map(|(entry, password)| self.stage_add(entry, *password, &mut last_parent))
            .collect();
        let mut tree = self.write();
        let mut present = None;
        let results: Vec<_> = staged
            .into_iter()
            .map(|s| s.and_then(|s| Self::insert(&mut tree, s, &mut present)))
            .collect();
        if results.iter().any(Result::is_ok) {
            self.dirty.store(true, Ordering::Release);
        }
        results
    }

    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let (parsed, k) = parse_key(dn)?;
        // Checked and hashed outside the lock: hashing is the slow part.
        let staged = stage_modifications(dn, changes)?;
        let mut tree = self.write();
        let current = tree
            .get(&k)
            .ok_or_else(|| DestinationError::NoSuchObject { dn: dn.to_string() })?;
        let mut updated = Entry::clone(current);
        apply_modifications(&parsed, dn, &mut updated, changes, staged)?;
        tree.insert(k, Arc::new(updated));
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        let (old, old_key) = parse_key(dn)?;
        let (new, new_key) = parse_key(new_dn)?;
        let mut tree = self.write();
        if !tree.contains_key(&old_key) {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        }
        if old_key == new_key {
            return Ok(());
        }
        if tree.contains_key(&new_key) {
            return Err(DestinationError::AlreadyExists {
                dn: new_dn.to_string(),
            });
        }
        check_parent(&new, &new_key, new_dn, |k| Ok(tree.contains_key(k)))?;
        if new.is_within(&old) {
            return Err(DestinationError::Rejected {
                message: format!("cannot move {dn} below itself"),
            });
        }
        let moved: Vec<String> = in_subtree(&tree, &old_key)
            .map(|(k, _)| k.clone())
            .collect();
        for k in moved {
            let Some(entry) = tree.remove(&k) else {
                continue;
            };
            let mut entry = Arc::unwrap_or_clone(entry);
            let renamed = moved_entry(&mut entry, &old, &new, new_dn)?;
            tree.insert(key(&renamed), Arc::new(entry));
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        let (_, k) = parse_key(dn)?;
        let mut tree = self.write();
        if !tree.contains_key(&k) {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        }
        if in_subtree(&tree, &k).nth(1).is_some() {
            return Err(DestinationError::NotLeaf { dn: dn.to_string() });
        }
        tree.remove(&k);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn password_matches(
        &self,
        dn: &str,
        password: &Secret,
    ) -> Result<Option<bool>, DestinationError> {
        let (_, k) = parse_key(dn)?;
        let tree = self.read();
        let entry = tree
            .get(&k)
            .ok_or_else(|| DestinationError::NoSuchObject { dn: dn.to_string() })?;
        Ok(Some(entry_password_matches(entry, password)))
    }

    fn commit(&self) -> Result<(), DestinationError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(()); // nothing changed: leave the file (and its time stamp) alone
        }
        let io = |source| DestinationError::Io {
            path: path.clone(),
            source,
        };
        let text = self.to_ldif();
        // A new directory file holds password hashes: only its owner reads it. An existing
        // one keeps the mode its owner gave it.
        let mut replacement = crate::files::Replacement::begin(path, 0o600).map_err(io)?;
        replacement.file().write_all(text.as_bytes()).map_err(io)?;
        replacement.commit().map_err(io)?;
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_parent_keys_equal_full_parse() {
        let dir = LdifDirectory::in_memory();
        let mut last = None;
        for dn in [
            "CN=Ann Lee,OU=API,DC=groupid,DC=lab",
            "cn=ANN LEE, ou=api ,dc=GROUPID,dc=lab",
            "CN=Doe\\, Jane,OU=API,DC=lab",
            "CN=a\\2cb;OU=x,DC=lab",
            "CN=Ann+UID=ann,OU=API,DC=lab",
            "CN=Ünïcödé \\+ x,OU=Über,DC=lab",
            "CN=tab\\09here,OU=API,DC=lab",
            "CN=x,DC=lab",
            "CN=First1 Last1,OU=API,DC=lab",
            "cn=a-b.c_d@e.f (g),OU=API,DC=lab",
            "CN= lead,OU=API,DC=lab",
            "CN=trail ,OU=API,DC=lab",
            "CN=#hash,OU=API,DC=lab",
            "CN=a=b,OU=API,DC=lab",
            "CN=a<b>c,OU=API,DC=lab",
            "CN=,OU=API,DC=lab",
            "2.5.4.3=oid,OU=API,DC=lab",
            "CN=del\\7f,OU=API,DC=lab",
        ] {
            // One memo across DNs of two parents: a parent is reused only when it is the same.
            let (fast, _) =
                fast_key(&dir.parents, dn, &mut last).expect("simple DN takes the fast path");
            assert_eq!(fast, parse_key(dn).unwrap().1, "{dn}");
        }
        // The plain path takes exactly what it can write without the parse.
        let plain = |rdn: &str| {
            let mut k = String::new();
            push_plain_rdn_segment(&mut k, rdn).then_some(k)
        };
        assert_eq!(plain("CN=Ann Lee").as_deref(), Some("cn=ann lee"));
        for other in [
            "CN= Ann",
            "CN=Ann ",
            "CN=#1",
            "CN=a+b",
            "CN=é",
            "CN=",
            "2.5.4.3=x",
        ] {
            assert_eq!(plain(other), None, "{other}");
        }
        assert!(fast_key(&dir.parents, "CN=only", &mut None).is_none());
        assert!(fast_key(&dir.parents, "CN=\"quoted, value\",DC=lab", &mut None).is_none());
        assert!(fast_key(&dir.parents, "CN=a,not a dn", &mut None).is_none());
    }

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> Entry {
        let mut e = Entry::new(dn);
        for (a, v) in attrs {
            e.add_values(a, &[v.to_string()]);
        }
        e
    }

    fn all() -> Filter {
        Filter::Present("objectClass".into())
    }

    #[test]
    fn a_streamed_search_hands_each_entry_once_projected() {
        let d = LdifDirectory::in_memory();
        d.add(
            &entry("OU=S,DC=lab", &[("objectClass", "organizationalUnit")]),
            None,
        )
        .unwrap();
        d.add(
            &entry(
                "CN=Ann,OU=S,DC=lab",
                &[("objectClass", "user"), ("title", "Clerk")],
            ),
            None,
        )
        .unwrap();
        let users = Filter::Equal("objectClass".into(), "user".into());
        let mut handed = Vec::new();
        d.search_each(
            "OU=S,DC=lab",
            Scope::Subtree,
            &users,
            &["cn".into()],
            &mut |e| handed.push(e.clone()),
        )
        .unwrap();
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].first("title"), None, "not projected");
        let whole = d.read_entry("cn=ann,ou=s,dc=lab", &[]).unwrap().unwrap();
        assert_eq!(whole.first("title"), Some("Clerk"));
        assert!(d.read_entry("CN=Bob,OU=S,DC=lab", &[]).unwrap().is_none());
    }

    #[test]
    fn an_entry_needs_its_parent_unless_the_parent_is_a_naming_context() {
        let d = LdifDirectory::in_memory();
        let ou = "OU=Staff,DC=example,DC=com";
        let ann = "CN=Ann\\, Jr+UID=7,OU=Staff,DC=example,DC=com";
        match d.add(&entry(ann, &[("objectClass", "user")]), None) {
            Err(DestinationError::NoSuchObject { dn }) => {
                assert_eq!(dn, format!("{ou} (the parent of {ann})"))
            }
            other => panic!("{other:?}"),
        }
        // Directly under DC= components: the suffix may be absent from a partial tree.
        d.add(&entry(ou, &[("objectClass", "organizationalUnit")]), None)
            .unwrap();
        // The parent, spelled in another case, is found.
        d.add(
            &entry(
                "CN=Bob,ou=STAFF,dc=Example,dc=com",
                &[("objectClass", "user")],
            ),
            None,
        )
        .unwrap();
        d.add(&entry(ann, &[("objectClass", "user")]), None)
            .unwrap();
        assert!(matches!(
            d.rename(
                "CN=Bob,ou=STAFF,dc=Example,dc=com",
                "CN=Bob,OU=Gone,DC=example,DC=com"
            ),
            Err(DestinationError::NoSuchObject { .. })
        ));
    }

    #[test]
    fn adding_in_a_batch_is_adding_one_by_one() {
        let d = LdifDirectory::in_memory();
        let ou = "OU=Staff,DC=example,DC=com";
        let secret = Secret::new("s3cret!".to_string());
        let adds = [
            // The parent comes first.
            (entry(ou, &[("objectClass", "organizationalUnit")]), None),
            (
                entry("CN=Ann,OU=Staff,DC=example,DC=com", &[("sn", "Lee")]),
                Some(&secret),
            ),
            (
                entry("cn=ANN,ou=staff,DC=example,DC=com", &[("sn", "Twice")]),
                None,
            ),
            (
                entry("CN=Bob,OU=Gone,DC=example,DC=com", &[("sn", "Orphan")]),
                None,
            ),
            (entry("not a dn", &[("sn", "Bad")]), None),
            (
                entry("CN=Cy,OU=Staff,DC=example,DC=com", &[("sn", "Last")]),
                None,
            ),
        ];
        let one_by_one = LdifDirectory::in_memory();
        let singly: Vec<_> = adds.iter().map(|(e, p)| one_by_one.add(e, *p)).collect();
        let lent: Vec<(&Entry, Option<&Secret>)> = adds.iter().map(|(e, p)| (e, *p)).collect();
        let results = d.add_batch(&lent);
        assert_eq!(
            format!("{singly:?}"),
            format!("{results:?}"),
            "one result per entry, as one by one"
        );
        let kinds: Vec<&str> = results
            .iter()
            .map(|r| match r {
                Ok(()) => "ok",
                Err(DestinationError::AlreadyExists { .. }) => "exists",
                Err(DestinationError::NoSuchObject { .. }) => "no parent",
                Err(_) => "error",
            })
            .collect();
        assert_eq!(kinds, ["ok", "ok", "exists", "no parent", "error", "ok"]);
        let dns: Vec<String> = d.entries().into_iter().map(|e| e.dn).collect();
        assert_eq!(
            dns,
            [
                ou,
                "CN=Ann,OU=Staff,DC=example,DC=com",
                "CN=Cy,OU=Staff,DC=example,DC=com"
            ]
        );
        let ann = d.get("CN=Ann,OU=Staff,DC=example,DC=com").unwrap();
        assert_eq!(ann.first("sn"), Some("Lee"));
        assert!(verify_password(ann.first("userPassword").unwrap(), &secret));
    }

    #[test]
    fn tree_operations() {
        let dir = LdifDirectory::in_memory();
        dir.add(&entry("DC=lab", &[("objectClass", "domain")]), None)
            .unwrap();
        dir.add(
            &entry("OU=API,DC=lab", &[("objectClass", "organizationalUnit")]),
            None,
        )
        .unwrap();
        let e = dir
            .add(
                &entry("CN=x,OU=Nope,DC=lab", &[("objectClass", "user")]),
                None,
            )
            .unwrap_err();
        assert!(matches!(e, DestinationError::NoSuchObject { .. }), "{e}");
        dir.add(
            &entry(
                "CN=Ann,OU=API,DC=lab",
                &[("objectClass", "user"), ("cn", "Ann")],
            ),
            Some(&Secret::new("pw")),
        )
        .unwrap();
        assert!(matches!(
            dir.add(&entry("cn=ann,ou=api,dc=LAB", &[]), None),
            Err(DestinationError::AlreadyExists { .. })
        ));
        assert_eq!(
            dir.search("OU=API,DC=lab", Scope::Subtree, &all(), &[])
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            dir.search("OU=API,DC=lab", Scope::OneLevel, &all(), &[])
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            dir.search("DC=lab", Scope::Base, &all(), &[])
                .unwrap()
                .len(),
            1
        );
        assert!(
            dir.search("OU=Other,DC=lab", Scope::Subtree, &all(), &[])
                .is_err()
        );
        assert_eq!(
            dir.password_matches("CN=Ann,OU=API,DC=lab", &Secret::new("pw"))
                .unwrap(),
            Some(true)
        );
        assert_eq!(
            dir.password_matches("CN=Ann,OU=API,DC=lab", &Secret::new("no"))
                .unwrap(),
            Some(false)
        );
        assert!(matches!(
            dir.delete("OU=API,DC=lab"),
            Err(DestinationError::NotLeaf { .. })
        ));

        dir.rename("CN=Ann,OU=API,DC=lab", "CN=Ann Lee,OU=API,DC=lab")
            .unwrap();
        let moved = dir.get("cn=ann lee,ou=api,dc=lab").unwrap();
        assert_eq!(moved.get("cn"), ["Ann Lee"]);
        assert!(dir.get("CN=Ann,OU=API,DC=lab").is_none());

        let e = dir
            .modify(
                "CN=Ann Lee,OU=API,DC=lab",
                &[Modification::Replace("cn".into(), vec!["Bob".into()])],
            )
            .unwrap_err();
        assert!(e.to_string().contains("naming attribute"), "{e}");

        // moving a container moves what is below it
        dir.rename("OU=API,DC=lab", "OU=People,DC=lab").unwrap();
        assert!(dir.get("CN=Ann Lee,OU=People,DC=lab").is_some());
        dir.delete("CN=Ann Lee,OU=People,DC=lab").unwrap();
        dir.delete("OU=People,DC=lab").unwrap();
        assert_eq!(dir.entries().len(), 1);
    }

    #[test]
    fn passwords_are_salted_hashes() {
        let a = hash_password(&Secret::new("same"));
        let b = hash_password(&Secret::new("same"));
        assert_ne!(a, b);
        assert!(a.starts_with("{SSHA256}"));
        assert!(verify_password(&a, &Secret::new("same")));
        assert!(!verify_password(&a, &Secret::new("other")));
        assert!(!verify_password("{SSHA256}!!", &Secret::new("same")));
        assert!(!verify_password("{SSHA256}", &Secret::new("same")));
        assert!(!verify_password("same", &Secret::new("same")));
    }

    #[test]
    fn older_ssha512_hashes_still_verify() {
        // `{SSHA512}` of "same" with the salt 0x00..0x0f, as earlier versions stored it.
        let salt: Vec<u8> = (0u8..16).collect();
        let mut hasher = Sha512::new();
        hasher.update(b"same");
        hasher.update(&salt);
        let mut raw = hasher.finalize().to_vec();
        raw.extend(&salt);
        let stored = format!("{{SSHA512}}{}", BASE64.encode(raw));
        assert!(verify_password(&stored, &Secret::new("same")));
        assert!(!verify_password(&stored, &Secret::new("other")));
        // The same bytes under the other scheme's name do not pass.
        let renamed = stored.replace("{SSHA512}", "{SSHA256}");
        assert!(!verify_password(&renamed, &Secret::new("same")));
    }

    #[test]
    fn a_second_opener_is_locked_out_and_commit_is_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d.ldif");
        let dir = LdifDirectory::open(&path).unwrap();
        assert!(matches!(
            LdifDirectory::open(&path),
            Err(DestinationError::Locked { .. })
        ));
        dir.add(&entry("DC=lab", &[("dc", "lab")]), None).unwrap();
        dir.commit().unwrap();
        drop(dir);
        let again = LdifDirectory::open(&path).unwrap();
        assert_eq!(again.entries().len(), 1);
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
