//! The embedded store: the default destination, a directory kept in one SQLite database file
//! (`db:PATH` on the command line), so a job runs with no server and a million entries stay
//! on disk rather than in memory.
//!
//! **Layout.** One table, `entry`, holds one record per entry: its tree key (normalised RDNs
//! from the root down, so a parent sorts right before its children), its DN as written, and
//! its attributes encoded in one buffer. The table is keyed by the tree key (`WITHOUT ROWID`),
//! so that key is the index of normalised DNs, and a subtree or a container's children are
//! one range of it: a lookup, an existence check, a parent check and a scope are index reads.
//! A run matches rows to objects by their key attributes in memory, after one scan of the
//! scope, so no per-attribute index is kept (it would double every write for lookups the
//! engine does not make).
//!
//! **Transactions.** Everything a run does — its scan, every write — is one transaction,
//! begun at the run's first read (`BEGIN IMMEDIATE`, which also keeps a second run out: it is
//! refused as [`Locked`](DestinationError::Locked)) and ended by
//! [`commit`](Destination::commit). A run that fails or is killed at any point leaves the
//! previous state (SQLite's rollback journal undoes what was not committed, at the next open
//! if need be); a run that changes nothing writes nothing, and the file keeps every byte.
//! Opening a store reads no entry.
//!
//! Passwords are stored as `{SSHA256}` salted hashes, as in the LDIF directory.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::embedded::{self, ParentCache, ParentKey, SEP, parse_key};
use super::{Destination, DestinationError, Entry, Modification, Scope, ldif};
use crate::Secret;
use crate::entry::record::{self, Decoder, Wanted, decode, encode};
use crate::query::Filter;

/// SQLite's `application_id` for a datasync store ("dsyn"), so a file of another program is
/// refused rather than written to.
const APPLICATION_ID: i64 = 0x6473_796e;
/// The layout's version (`user_version`).
const LAYOUT_VERSION: i64 = 1;

/// A directory kept in an SQLite database file: the default destination.
///
/// ```
/// use datasync::{Destination, Entry, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("directory.db")).unwrap();
/// let mut e = Entry::new("DC=lab");
/// e.set("dc", vec!["lab".into()]);
/// store.add(&e, None).unwrap();
/// store.commit().unwrap();
/// assert!(store.exists("dc=LAB").unwrap());
/// ```
pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
    parents: ParentCache,
}

/// The connection and whether the run's transaction is open.
struct Inner {
    conn: Connection,
    in_transaction: bool,
    /// A parent the last add found present: rows share a few containers, so an add under
    /// the same parent skips the lookup. Forgotten at every delete and rename, the only
    /// writes that can take a parent away.
    present: Option<Arc<ParentKey>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The first key past `key`'s subtree: below a key come the keys that continue it with the
/// separator (U+0001), so every one of them sorts before `key` followed by U+0002.
fn past_subtree(key: &str) -> String {
    format!("{key}{}", char::from_u32(SEP as u32 + 1).unwrap_or(SEP))
}

/// What takes a record's key, DN and encoded attributes as SQLite has them.
type RawRecordSink<'a> = dyn FnMut(&str, &str, &[u8]) -> Result<(), DestinationError> + 'a;

/// The records a pipelined scan's reading thread hands over at once.
const RAW_CHUNK: usize = 1024;

/// How many chunks the reading thread may be ahead of the decoding one.
const RAW_CHUNKS_AHEAD: usize = 4;

/// Records as SQLite has them, copied into two buffers: their keys and DNs in one string,
/// their encoded attributes in one byte vector.
#[derive(Default)]
struct RawChunk {
    text: String,
    attrs: Vec<u8>,
    /// Where each record's key, DN and attributes end.
    ends: Vec<(usize, usize, usize)>,
}

impl RawChunk {
    fn push(&mut self, key: &str, dn: &str, attrs: &[u8]) {
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(dn);
        self.attrs.extend_from_slice(attrs);
        self.ends.push((key_end, self.text.len(), self.attrs.len()));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The chunk emptied, its room kept.
    fn cleared(mut self) -> RawChunk {
        self.text.clear();
        self.attrs.clear();
        self.ends.clear();
        self
    }

    /// Each record's key, DN and attributes.
    fn records(&self) -> impl Iterator<Item = (&str, &str, &[u8])> {
        let mut text_start = 0;
        let mut attrs_start = 0;
        self.ends.iter().map(move |&(key_end, dn_end, attrs_end)| {
            let record = (
                &self.text[text_start..key_end],
                &self.text[key_end..dn_end],
                &self.attrs[attrs_start..attrs_end],
            );
            text_start = dn_end;
            attrs_start = attrs_end;
            record
        })
    }
}

/// An SQLite failure on the store at `path`, as the destination's error.
fn sql_error(path: &Path, e: rusqlite::Error) -> DestinationError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    {
        return DestinationError::Locked {
            path: path.to_path_buf(),
        };
    }
    DestinationError::Database {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

impl Store {
    /// Opens the store kept in `path`, creating it (readable by its owner only: it holds
    /// password hashes) when the file does not exist. A file that is not a datasync store
    /// (another database, an LDIF file) is refused and left as it is.
    ///
    /// The path is resolved through symlinks first: the file written is the link's target.
    /// A read-only file, or a folder where SQLite cannot keep its journal, is refused now,
    /// not when the run writes.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, DestinationError> {
        Self::open_with(path.as_ref(), true)
    }

    /// Opens an existing store to read it (an export): it takes no lock until it reads, and
    /// then only SQLite's shared one, so a run may be writing the store meanwhile (the reader
    /// sees the state before that run).
    pub fn open_to_read(path: impl AsRef<Path>) -> Result<Store, DestinationError> {
        Self::open_with(path.as_ref(), false)
    }

    fn open_with(given: &Path, write: bool) -> Result<Store, DestinationError> {
        let path = super::resolve_directory_file(given, "db:PATH")?;
        let io = |source| DestinationError::Io {
            path: path.clone(),
            source,
        };
        let flags = if write {
            if !path.exists() {
                // Created here, not by SQLite, for its mode: SQLite would take the umask's.
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(e)),
                }
            }
            crate::files::refuse_read_only(&path).map_err(io)?;
            // The journal lives beside the file: its folder must take new files.
            drop(crate::files::Replacement::begin(&path, 0o600).map_err(io)?);
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            if !path.exists() {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no store here",
                )));
            }
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let conn =
            Connection::open_with_flags(&path, flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sql_error(&path, e))?;
        let store = Store {
            path,
            inner: Mutex::new(Inner {
                conn,
                in_transaction: false,
                present: None,
            }),
            parents: ParentCache::default(),
        };
        store.prepare(write)?;
        Ok(store)
    }

    /// Checks the file is a store (or empty) and, for writing, lays out an empty one.
    fn prepare(&self, write: bool) -> Result<(), DestinationError> {
        let inner = self.lock();
        let conn = &inner.conn;
        let err = |e| sql_error(&self.path, e);
        let not_a_store = |why: String| DestinationError::Rejected {
            message: format!(
                "{} is not a datasync store ({why}); nothing was written to it",
                self.path.display()
            ),
        };
        // A second run waits a moment for the first to finish a commit, then is refused.
        conn.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(err)?;
        // 16 MiB of page cache: pages beyond it come from the OS's cache. 64 MiB took a
        // 100k-row first run from 1.07 to 1.02 s and cost 50 MB of peak memory.
        conn.pragma_update(None, "cache_size", -16384)
            .map_err(|e| not_a_store(e.to_string()))?;
        let (app, version): (i64, i64) = conn
            .query_row(
                "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| not_a_store(e.to_string()))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| not_a_store(e.to_string()))?;
        if app == 0 && tables == 0 {
            if !write {
                return Err(not_a_store("it is empty".into()));
            }
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {LAYOUT_VERSION};
                 CREATE TABLE entry (
                     key   TEXT PRIMARY KEY,  -- normalised RDNs, root first, U+0001 between
                     dn    TEXT NOT NULL,     -- as written
                     attrs BLOB NOT NULL      -- see encode()
                 ) WITHOUT ROWID;
                 COMMIT;"
            ))
            .map_err(err)?;
            return Ok(());
        }
        if app != APPLICATION_ID {
            return Err(not_a_store(format!(
                "its SQLite application_id is {app:#x}"
            )));
        }
        if version != LAYOUT_VERSION {
            return Err(not_a_store(format!(
                "its layout version is {version}; this datasync reads {LAYOUT_VERSION}"
            )));
        }
        Ok(())
    }

    // A poisoned lock means a thread panicked mid-call; SQLite's own state is whole (a failed
    // statement changes nothing), so carry on with it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection with the run's transaction open (begun here at the run's first call).
    fn begin(&self) -> Result<MutexGuard<'_, Inner>, DestinationError> {
        let mut inner = self.lock();
        if !inner.in_transaction {
            inner
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| sql_error(&self.path, e))?;
            inner.in_transaction = true;
        }
        Ok(inner)
    }

    /// The file this store is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many entries the store holds.
    pub fn len(&self) -> Result<usize, DestinationError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT count(*) FROM entry", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| sql_error(&self.path, e))
    }

    /// True when the store holds no entry.
    pub fn is_empty(&self) -> Result<bool, DestinationError> {
        Ok(self.len()? == 0)
    }

    /// Hands `each` every entry of the store, in tree order (parents first), each lent for the
    /// call (see [`Destination::search_each`]).
    pub fn each_entry(&self, each: &mut dyn FnMut(&Entry)) -> Result<(), DestinationError> {
        self.each_in_range(None, Wanted::All, &mut |_, entry| each(entry))
    }

    /// Writes every entry to `out` as LDIF content records, parents before children (so
    /// `ldapadd` and [`import_ldif`](Self::import_ldif) take the file), one entry at a time;
    /// returns how many.
    pub fn export_ldif(&self, out: &mut dyn Write) -> Result<usize, DestinationError> {
        let io = |source| DestinationError::Io {
            path: self.path.clone(),
            source,
        };
        out.write_all(b"version: 1\n").map_err(io)?;
        let mut count = 0;
        let mut failed = None;
        let mut text = String::new();
        self.each_in_range(None, Wanted::All, &mut |_, entry| {
            if failed.is_some() {
                return;
            }
            text.clear();
            text.push('\n');
            ldif::write_entry(&mut text, entry);
            match out.write_all(text.as_bytes()) {
                Ok(()) => count += 1,
                Err(e) => failed = Some(e),
            }
        })?;
        if let Some(e) = failed {
            return Err(io(e));
        }
        out.flush().map_err(io)?;
        Ok(count)
    }

    /// Adds every entry of the LDIF read from `input` (content records, or `changetype: add`
    /// records as `ldapadd` takes them), record by record, as one transaction: all of them or,
    /// on the first entry that cannot be added (bad LDIF, a DN already there, a missing
    /// parent), none, with the error naming its line. Plain-text passwords are hashed.
    /// Returns how many entries were added. Errors name `input_name` (the file read) and
    /// the line.
    pub fn import_ldif(
        &self,
        input: impl BufRead,
        input_name: &Path,
    ) -> Result<usize, DestinationError> {
        let mut count = 0;
        let mut record = String::new();
        let mut record_line = 0;
        let mut line_no = 0;
        let add_record = |record: &mut String, first_line: usize| {
            let result = self.import_record(record, first_line, input_name);
            record.clear();
            result
        };
        for line in input.lines() {
            let line = line.map_err(|source| DestinationError::Io {
                path: input_name.to_path_buf(),
                source,
            })?;
            line_no += 1;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !record.is_empty() {
                    count += add_record(&mut record, record_line)?;
                }
                continue;
            }
            if record.is_empty() {
                record_line = line_no;
            }
            record.push_str(line);
            record.push('\n');
        }
        if !record.is_empty() {
            count += add_record(&mut record, record_line)?;
        }
        Ok(count)
    }

    /// One record of an import, starting on line `first_line`: 0 or 1 entries added.
    fn import_record(
        &self,
        record: &str,
        first_line: usize,
        input_name: &Path,
    ) -> Result<usize, DestinationError> {
        let at = |line: usize, message: String| DestinationError::Ldif {
            path: input_name.to_path_buf(),
            source: ldif::LdifError {
                line: first_line + line - 1,
                message,
            },
        };
        // `changetype: add` (what ldapadd's input may say) is the only change an import makes.
        let mut content = String::with_capacity(record.len());
        for (i, line) in record.lines().enumerate() {
            if let Some(kind) = line
                .split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("changetype"))
                .map(|(_, kind)| kind.trim())
            {
                if !kind.eq_ignore_ascii_case("add") {
                    return Err(at(
                        i + 1,
                        format!("changetype: {kind}: an import only adds entries"),
                    ));
                }
                continue;
            }
            content.push_str(line);
            content.push('\n');
        }
        let parsed = ldif::parse_with_lines(&content).map_err(|e| at(e.line, e.message))?;
        let mut added = 0;
        for (entry, line) in parsed {
            let dn = entry.dn.clone();
            self.add(&entry, None)
                .map_err(|e| at(line, format!("{dn}: {e}")))?;
            added += 1;
        }
        Ok(added)
    }

    /// Hands `each` every record whose key lies in `range` (a base key: it and the keys below
    /// it; `None`: all), in key order, decoded.
    fn each_in_range(
        &self,
        base_key: Option<&str>,
        wanted: Wanted<'_>,
        each: &mut dyn FnMut(&str, &Entry),
    ) -> Result<(), DestinationError> {
        let mut decoder = Decoder::new(wanted);
        // Every record is decoded into this one entry (see `Decoder::decode_reusing`).
        let mut entry = Entry::new("");
        self.read_range(base_key, &mut |key, dn, attrs| {
            self.decode_reusing(&mut decoder, &mut entry, dn, attrs)?;
            each(key, &entry);
            Ok(())
        })
    }

    /// [`each_in_range`](Self::each_in_range) in two stages, a thread each: a reading thread
    /// steps SQLite and copies the records into chunks while this one decodes the chunks read
    /// before and hands their entries to `each`. What a scan of a large scope takes: reading
    /// and decoding are each about half of it.
    fn each_in_range_pipelined(
        &self,
        base_key: Option<&str>,
        wanted: Wanted<'_>,
        each: &mut dyn FnMut(&str, &Entry),
    ) -> Result<(), DestinationError> {
        let (full, filled) = crossbeam_channel::bounded::<RawChunk>(RAW_CHUNKS_AHEAD);
        // Chunks come back to the reader to be filled again: no allocation per chunk, and
        // none freed on another thread than the one that made it.
        let (give_back, returned) = crossbeam_channel::unbounded::<RawChunk>();
        std::thread::scope(|threads| {
            let reader = std::thread::Builder::new()
                .name("datasync-store-read".into())
                .spawn_scoped(threads, move || {
                    let mut chunk = RawChunk::default();
                    let read = self.read_range(base_key, &mut |key, dn, attrs| {
                        chunk.push(key, dn, attrs);
                        if chunk.len() == RAW_CHUNK {
                            let next = returned.try_recv().unwrap_or_default();
                            // The decoding side stops taking chunks only after an error of
                            // its own, which it reports: the read stops too.
                            full.send(std::mem::replace(&mut chunk, next.cleared()))
                                .map_err(|_| DestinationError::Rejected {
                                    message: "the scan stopped".into(),
                                })?;
                        }
                        Ok(())
                    });
                    if read.is_ok() && chunk.len() > 0 {
                        let _ = full.send(chunk);
                    }
                    read
                })
                .map_err(|e| DestinationError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
            let mut decoder = Decoder::new(wanted);
            let mut entry = Entry::new("");
            let mut decoded = Ok(());
            for chunk in filled.iter() {
                decoded = chunk.records().try_for_each(|(key, dn, attrs)| {
                    self.decode_reusing(&mut decoder, &mut entry, dn, attrs)?;
                    each(key, &entry);
                    Ok(())
                });
                if decoded.is_err() {
                    break;
                }
                let _ = give_back.send(chunk);
            }
            drop(filled);
            let read = reader.join().unwrap_or_else(|_| {
                Err(DestinationError::Rejected {
                    message: format!("{}: reading the store panicked", self.path.display()),
                })
            });
            // A damaged record is the error to report, not the read it stopped.
            decoded.and(read)
        })
    }

    /// [`Decoder::decode_reusing`], its error naming the store.
    fn decode_reusing(
        &self,
        decoder: &mut Decoder<'_>,
        entry: &mut Entry,
        dn: &str,
        attrs: &[u8],
    ) -> Result<(), DestinationError> {
        decoder
            .decode_reusing(entry, dn, attrs)
            .map_err(|message| DestinationError::Rejected {
                message: format!("{}: {message}", self.path.display()),
            })
    }

    /// Hands `each` the key, DN and encoded attributes of every record whose key lies in
    /// `range` (see [`each_in_range`](Self::each_in_range)), in key order, as SQLite has them.
    fn read_range(
        &self,
        base_key: Option<&str>,
        each: &mut RawRecordSink<'_>,
    ) -> Result<(), DestinationError> {
        let inner = self.begin_or_read()?;
        let err = |e| sql_error(&self.path, e);
        let mut hand = |row: &rusqlite::Row<'_>| -> Result<(), DestinationError> {
            let text = |i| {
                row.get_ref(i)
                    .and_then(|v| v.as_str().map_err(Into::into))
                    .map_err(err)
            };
            let attrs = row
                .get_ref(2)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(err)?;
            each(text(0)?, text(1)?, attrs)
        };
        // The base and the keys below it (see `past_subtree`), or every key.
        let range = base_key
            .filter(|k| !k.is_empty())
            .map(|base| (base, past_subtree(base)));
        let mut stmt = inner
            .conn
            .prepare_cached(if range.is_some() {
                "SELECT key, dn, attrs FROM entry WHERE key >= ?1 AND key < ?2 ORDER BY key"
            } else {
                "SELECT key, dn, attrs FROM entry ORDER BY key"
            })
            .map_err(err)?;
        let mut rows = match &range {
            Some((base, upper)) => stmt.query(params![base, upper]),
            None => stmt.query([]),
        }
        .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            hand(row)?;
        }
        Ok(())
    }

    /// The connection for a read: inside the run's transaction when the store was opened to
    /// write (so the run reads what it wrote), else as it is.
    fn begin_or_read(&self) -> Result<MutexGuard<'_, Inner>, DestinationError> {
        let inner = self.lock();
        if inner.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Ok(inner);
        }
        drop(inner);
        self.begin()
    }

    /// The record at `key`, decoded.
    fn load(inner: &Inner, path: &Path, key: &str) -> Result<Option<Entry>, DestinationError> {
        let err = |e| sql_error(path, e);
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT dn, attrs FROM entry WHERE key = ?1")
            .map_err(err)?;
        let found: Option<(String, Vec<u8>)> = stmt
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)?;
        match found {
            None => Ok(None),
            Some((dn, attrs)) => {
                decode(dn, &attrs)
                    .map(Some)
                    .map_err(|message| DestinationError::Rejected {
                        message: format!("{}: {message}", path.display()),
                    })
            }
        }
    }

    fn contains(conn: &Connection, path: &Path, key: &str) -> Result<bool, DestinationError> {
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM entry WHERE key = ?1")
            .map_err(|e| sql_error(path, e))?;
        stmt.exists([key]).map_err(|e| sql_error(path, e))
    }

    /// Whether any key lies below `key`.
    fn has_children(inner: &Inner, path: &Path, key: &str) -> Result<bool, DestinationError> {
        let lower = format!("{key}{SEP}");
        let upper = past_subtree(key);
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT 1 FROM entry WHERE key >= ?1 AND key < ?2 LIMIT 1")
            .map_err(|e| sql_error(path, e))?;
        stmt.exists(params![lower, upper])
            .map_err(|e| sql_error(path, e))
    }

    fn write_record(
        inner: &Inner,
        path: &Path,
        key: &str,
        entry: &Entry,
        replace: bool,
    ) -> Result<(), DestinationError> {
        let mut buffer = Vec::with_capacity(256);
        encode(entry, &mut buffer);
        Self::write_encoded(inner, path, key, &entry.dn, &buffer, replace)
    }

    /// Writes a record already encoded (see [`record::encode_stored`]).
    fn write_encoded(
        inner: &Inner,
        path: &Path,
        key: &str,
        dn: &str,
        attrs: &[u8],
        replace: bool,
    ) -> Result<(), DestinationError> {
        let sql = if replace {
            "INSERT OR REPLACE INTO entry (key, dn, attrs) VALUES (?1, ?2, ?3)"
        } else {
            "INSERT INTO entry (key, dn, attrs) VALUES (?1, ?2, ?3)"
        };
        let mut stmt = inner
            .conn
            .prepare_cached(sql)
            .map_err(|e| sql_error(path, e))?;
        match stmt.execute(params![key, dn, attrs]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(DestinationError::AlreadyExists { dn: dn.to_string() })
            }
            Err(e) => Err(sql_error(path, e)),
        }
    }

    fn delete_record(inner: &Inner, path: &Path, key: &str) -> Result<(), DestinationError> {
        let mut stmt = inner
            .conn
            .prepare_cached("DELETE FROM entry WHERE key = ?1")
            .map_err(|e| sql_error(path, e))?;
        stmt.execute([key]).map_err(|e| sql_error(path, e))?;
        Ok(())
    }

    /// The locked half of an add: the parent's check (skipped when the last add found the
    /// same parent) and the write.
    fn insert(
        &self,
        inner: &mut Inner,
        key: &str,
        parent: Option<&Arc<ParentKey>>,
        dn: &str,
        attrs: &[u8],
    ) -> Result<(), DestinationError> {
        let Inner { conn, present, .. } = inner;
        embedded::check_parent_once(present, parent, dn, |k| Self::contains(conn, &self.path, k))?;
        Self::write_encoded(inner, &self.path, key, dn, attrs, false)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A run that did not commit (a dry run, a failure) leaves the store as it was.
        let inner = self.lock();
        if inner.in_transaction {
            let _ = inner.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Destination for Store {
    fn search_each(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attributes: &[String],
        each: &mut dyn FnMut(&Entry),
    ) -> Result<(), DestinationError> {
        let (_, base_key) = parse_key(base)?;
        if scope == Scope::Base {
            let inner = self.begin_or_read()?;
            return match Self::load(&inner, &self.path, &base_key)? {
                Some(e) => {
                    if filter.matches(&e) {
                        each(&project(e, attributes));
                    }
                    Ok(())
                }
                None => Err(DestinationError::NoSuchObject {
                    dn: base.to_string(),
                }),
            };
        }
        let mut walk = embedded::ScopeWalk::new(&base_key, scope);
        // Only what is asked for and what the filter reads is decoded; the entries handed
        // over may carry the filter's attributes too (the contract allows more).
        let filter_attributes = filter.attributes();
        let wanted = Wanted::for_search(attributes, &filter_attributes);
        // Pipelined: a search is what a run's scan makes, over a whole scope.
        self.each_in_range_pipelined(Some(&base_key), wanted, &mut |key, entry| {
            if walk.in_scope(key) && filter.matches(entry) {
                each(entry);
            }
        })?;
        walk.finish(base, &base_key)
    }

    fn read_entry(
        &self,
        dn: &str,
        attributes: &[String],
    ) -> Result<Option<Entry>, DestinationError> {
        let (_, k) = parse_key(dn)?;
        let inner = self.begin_or_read()?;
        Ok(Self::load(&inner, &self.path, &k)?.map(|e| project(e, attributes)))
    }

    fn exists(&self, dn: &str) -> Result<bool, DestinationError> {
        let (_, k) = parse_key(dn)?;
        let inner = self.begin_or_read()?;
        Self::contains(&inner.conn, &self.path, &k)
    }

    fn add(&self, entry: &Entry, password: Option<&Secret>) -> Result<(), DestinationError> {
        let mut results = self.add_batch(&[(entry, password)]);
        results.pop().unwrap_or_else(|| {
            Err(DestinationError::Rejected {
                message: "the store gave no answer for an add".into(),
            })
        })
    }

    fn add_batch(&self, adds: &[(&Entry, Option<&Secret>)]) -> Vec<Result<(), DestinationError>> {
        // The keys, the checks, the passwords' hashes and the records are made before the
        // lock, which is then taken once: workers queue only for SQLite's own writes.
        let mut last_parent = None;
        let staged: Vec<_> = adds
            .iter()
            .map(|(entry, password)| {
                let (key, parent) =
                    embedded::new_entry_key(&self.parents, &entry.dn, &mut last_parent)?;
                let overrides = embedded::stored_overrides(entry, *password)?;
                let mut attrs = Vec::with_capacity(512);
                record::encode_stored(entry, &overrides, &mut attrs);
                Ok((key, parent, attrs))
            })
            .collect();
        let mut inner = match self.begin() {
            Ok(inner) => inner,
            Err(e) => {
                let message = e.to_string();
                return adds
                    .iter()
                    .map(|_| {
                        Err(DestinationError::Rejected {
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
        };
        staged
            .into_iter()
            .zip(adds)
            .map(|(s, (entry, _))| {
                s.and_then(|(key, parent, attrs)| {
                    self.insert(&mut inner, &key, parent.as_ref(), &entry.dn, &attrs)
                })
            })
            .collect()
    }

    fn modify(&self, dn: &str, changes: &[Modification]) -> Result<(), DestinationError> {
        let (parsed, k) = parse_key(dn)?;
        let staged = embedded::stage_modifications(dn, changes)?;
        let inner = self.begin()?;
        let mut entry = Self::load(&inner, &self.path, &k)?
            .ok_or_else(|| DestinationError::NoSuchObject { dn: dn.to_string() })?;
        embedded::apply_modifications(&parsed, dn, &mut entry, changes, staged)?;
        Self::write_record(&inner, &self.path, &k, &entry, true)
    }

    fn rename(&self, dn: &str, new_dn: &str) -> Result<(), DestinationError> {
        let (old, old_key) = parse_key(dn)?;
        let (new, new_key) = parse_key(new_dn)?;
        // The subtree is read first: the range read holds the connection.
        let mut moved: Vec<(String, Entry)> = Vec::new();
        self.each_in_range(Some(&old_key), Wanted::All, &mut |key, entry| {
            moved.push((key.to_string(), entry.clone()))
        })?;
        if moved.first().is_none_or(|(k, _)| *k != old_key) {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        }
        if old_key == new_key {
            return Ok(());
        }
        let mut inner = self.begin()?;
        inner.present = None;
        if Self::contains(&inner.conn, &self.path, &new_key)? {
            return Err(DestinationError::AlreadyExists {
                dn: new_dn.to_string(),
            });
        }
        embedded::check_parent(&new, &new_key, new_dn, |k| {
            Self::contains(&inner.conn, &self.path, k)
        })?;
        if new.is_within(&old) {
            return Err(DestinationError::Rejected {
                message: format!("cannot move {dn} below itself"),
            });
        }
        // All or nothing: a savepoint inside the run's transaction.
        inner
            .conn
            .execute_batch("SAVEPOINT rename")
            .map_err(|e| sql_error(&self.path, e))?;
        let moved_all = (|| {
            for (key, mut entry) in moved {
                let renamed = embedded::moved_entry(&mut entry, &old, &new, new_dn)?;
                Self::delete_record(&inner, &self.path, &key)?;
                Self::write_record(&inner, &self.path, &embedded::key(&renamed), &entry, false)?;
            }
            Ok(())
        })();
        let end = if moved_all.is_ok() {
            "RELEASE rename"
        } else {
            "ROLLBACK TO rename; RELEASE rename"
        };
        inner
            .conn
            .execute_batch(end)
            .map_err(|e| sql_error(&self.path, e))?;
        moved_all
    }

    fn delete(&self, dn: &str) -> Result<(), DestinationError> {
        let (_, k) = parse_key(dn)?;
        let mut inner = self.begin()?;
        inner.present = None;
        if !Self::contains(&inner.conn, &self.path, &k)? {
            return Err(DestinationError::NoSuchObject { dn: dn.to_string() });
        }
        if Self::has_children(&inner, &self.path, &k)? {
            return Err(DestinationError::NotLeaf { dn: dn.to_string() });
        }
        Self::delete_record(&inner, &self.path, &k)
    }

    fn password_matches(
        &self,
        dn: &str,
        password: &Secret,
    ) -> Result<Option<bool>, DestinationError> {
        let (_, k) = parse_key(dn)?;
        let inner = self.begin_or_read()?;
        let entry = Self::load(&inner, &self.path, &k)?
            .ok_or_else(|| DestinationError::NoSuchObject { dn: dn.to_string() })?;
        Ok(Some(embedded::entry_password_matches(&entry, password)))
    }

    fn commit(&self) -> Result<(), DestinationError> {
        let mut inner = self.lock();
        if inner.in_transaction {
            // A transaction that wrote nothing commits without touching the file.
            inner
                .conn
                .execute_batch("COMMIT")
                .map_err(|e| sql_error(&self.path, e))?;
            inner.in_transaction = false;
        }
        Ok(())
    }
}

/// `entry` with only `attributes` (all of them when none are named).
fn project(mut entry: Entry, attributes: &[String]) -> Entry {
    if !attributes.is_empty() {
        entry.retain(|name| attributes.iter().any(|a| a.eq_ignore_ascii_case(name)));
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::record::tests::entry;

    #[test]
    fn records_round_trip_and_damage_is_named() {
        let e = entry(
            "CN=Ann,DC=lab",
            &[
                ("cn", &["Ann"]),
                ("mail", &["a@x", "é".repeat(200).as_str()]),
            ],
        );
        let mut buffer = Vec::new();
        encode(&e, &mut buffer);
        assert_eq!(decode(e.dn.clone(), &buffer).unwrap(), e);
        for cut in 0..buffer.len() {
            let err = decode("CN=Ann".into(), &buffer[..cut]).unwrap_err();
            assert!(err.contains("CN=Ann"), "{err}");
        }
    }

    #[test]
    fn a_scan_over_many_chunks_hands_every_entry_in_order_and_stops_at_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("d.db")).unwrap();
        store
            .add(&entry("DC=lab", &[("dc", &["lab"])]), None)
            .unwrap();
        // More than two of the reading thread's chunks.
        let count = RAW_CHUNK * 2 + 100;
        for i in 0..count {
            let cn = format!("u{i:05}");
            let e = entry(
                &format!("CN={cn},DC=lab"),
                &[("cn", &[cn.as_str()]), ("title", &["Clerk"])],
            );
            store.add(&e, None).unwrap();
        }
        let any = Filter::Present("cn".into());
        let cn = ["cn".to_string()];
        let mut seen = Vec::new();
        store
            .search_each("DC=lab", Scope::OneLevel, &any, &cn, &mut |e| {
                seen.push(e.first("cn").unwrap_or("").to_string());
                assert_eq!(e.first("title"), None, "only what was asked for");
            })
            .unwrap();
        let expected: Vec<String> = (0..count).map(|i| format!("u{i:05}")).collect();
        assert!(
            seen == expected,
            "{} of {count} entries, in another order",
            seen.len()
        );

        // A record in the second chunk is damaged: the scan hands the ones before it and
        // fails naming it.
        let damaged = format!("u{:05}", RAW_CHUNK + 10);
        store
            .lock()
            .conn
            .execute(
                "UPDATE entry SET attrs = x'0501' WHERE dn = ?1",
                [format!("CN={damaged},DC=lab")],
            )
            .unwrap();
        let mut seen = 0;
        let err = store
            .search_each("DC=lab", Scope::OneLevel, &any, &cn, &mut |_| seen += 1)
            .unwrap_err();
        assert!(err.to_string().contains(&damaged), "{err}");
        assert_eq!(seen, RAW_CHUNK + 10);
    }

    #[test]
    fn a_run_is_one_transaction_and_a_second_opener_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = Store::open(&path).unwrap();
        store
            .add(&entry("DC=lab", &[("dc", &["lab"])]), None)
            .unwrap();
        // While the run is open, another run is refused and a reader sees the old state.
        let second = Store::open(&path).unwrap();
        assert!(matches!(
            second.exists("DC=lab"),
            Err(DestinationError::Locked { .. })
        ));
        drop(second);
        let reader = Store::open_to_read(&path).unwrap();
        assert!(!reader.exists("DC=lab").unwrap());
        drop(reader);
        store.commit().unwrap();
        drop(store);
        let reader = Store::open_to_read(&path).unwrap();
        assert!(reader.exists("dc=LAB").unwrap());
        // A run that is dropped without its commit leaves nothing.
        drop(reader);
        let store = Store::open(&path).unwrap();
        store
            .add(&entry("OU=x,DC=lab", &[("ou", &["x"])]), None)
            .unwrap();
        drop(store);
        assert_eq!(Store::open_to_read(&path).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn an_unchanged_run_leaves_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = Store::open(&path).unwrap();
        store
            .add(&entry("DC=lab", &[("dc", &["lab"])]), None)
            .unwrap();
        store.commit().unwrap();
        drop(store);
        let before = std::fs::read(&path).unwrap();
        let store = Store::open(&path).unwrap();
        let found = store
            .search("DC=lab", Scope::Subtree, &Filter::Present("dc".into()), &[])
            .unwrap();
        assert_eq!(found.len(), 1);
        store.commit().unwrap();
        drop(store);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn other_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ldif = dir.path().join("d.ldif");
        std::fs::write(&ldif, "version: 1\n\ndn: DC=lab\ndc: lab\n").unwrap();
        let err = Store::open(&ldif).unwrap_err().to_string();
        assert!(err.contains("is not a datasync store"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&ldif).unwrap(),
            "version: 1\n\ndn: DC=lab\ndc: lab\n"
        );
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Store::open(&other).unwrap_err().to_string();
        assert!(err.contains("application_id"), "{err}");
    }

    #[test]
    fn tree_operations_match_the_ldif_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("d.db")).unwrap();
        let memory = super::super::LdifDirectory::in_memory();
        let both: [&dyn Destination; 2] = [&store, &memory];
        let all = Filter::Present("objectClass".into());
        for d in both {
            d.add(&entry("DC=lab", &[("objectClass", &["domain"])]), None)
                .unwrap();
            d.add(
                &entry("OU=a,DC=lab", &[("objectClass", &["ou"]), ("ou", &["a"])]),
                None,
            )
            .unwrap();
            d.add(
                &entry("OU=ab,DC=lab", &[("objectClass", &["ou"]), ("ou", &["ab"])]),
                None,
            )
            .unwrap();
            d.add(
                &entry(
                    "CN=Ann,OU=a,DC=lab",
                    &[("objectClass", &["person"]), ("cn", &["Ann"])],
                ),
                Some(&Secret::new("pw")),
            )
            .unwrap();
            assert!(matches!(
                d.add(&entry("CN=x,OU=none,DC=lab", &[("cn", &["x"])]), None),
                Err(DestinationError::NoSuchObject { .. })
            ));
            assert!(matches!(
                d.add(&entry("cn=ANN,ou=A,dc=lab", &[("cn", &["x"])]), None),
                Err(DestinationError::AlreadyExists { .. })
            ));
            assert!(matches!(
                d.delete("OU=a,DC=lab"),
                Err(DestinationError::NotLeaf { .. })
            ));
            d.modify(
                "CN=Ann,OU=a,DC=lab",
                &[Modification::Replace("mail".into(), vec!["a@lab".into()])],
            )
            .unwrap();
            assert_eq!(
                d.password_matches("CN=Ann,OU=a,DC=lab", &Secret::new("pw"))
                    .unwrap(),
                Some(true)
            );
            d.rename("OU=a,DC=lab", "OU=c,OU=ab,DC=lab").unwrap();
            assert_eq!(
                d.search("OU=ab,DC=lab", Scope::OneLevel, &all, &[])
                    .unwrap()
                    .len(),
                1
            );
            d.commit().unwrap();
        }
        let listed = |d: &dyn Destination| {
            d.search("DC=lab", Scope::Subtree, &all, &[])
                .unwrap()
                .into_iter()
                .map(|mut e| {
                    // Salted hashes differ; the rest must not.
                    e.remove("userPassword");
                    e
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&store), listed(&memory));
        assert_eq!(
            store
                .read_entry("cn=ann,ou=c,ou=ab,dc=lab", &["mail".into()])
                .unwrap()
                .unwrap()
                .first("mail"),
            Some("a@lab")
        );
        assert_eq!(listed(&store).len(), 4);
    }

    #[test]
    fn export_and_import_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("a.db")).unwrap();
        let text = "version: 1\n\ndn: DC=lab\nchangetype: add\ndc: lab\n\n\
                    dn: CN=Ann,DC=lab\ncn: Ann\ndescription:: w4Fubg==\nuserPassword: secret\n";
        assert_eq!(
            store
                .import_ldif(text.as_bytes(), Path::new("in.ldif"))
                .unwrap(),
            2
        );
        store.commit().unwrap();
        let mut out = Vec::new();
        assert_eq!(store.export_ldif(&mut out).unwrap(), 2);
        let exported = String::from_utf8(out).unwrap();
        assert!(exported.contains("description:: w4Fubg=="), "{exported}");
        assert!(!exported.contains("secret"), "a password kept as text");
        let again = Store::open(dir.path().join("b.db")).unwrap();
        assert_eq!(
            again
                .import_ldif(exported.as_bytes(), Path::new("out.ldif"))
                .unwrap(),
            2
        );
        again.commit().unwrap();
        let mut out2 = Vec::new();
        again.export_ldif(&mut out2).unwrap();
        assert_eq!(String::from_utf8(out2).unwrap(), exported);

        // A bad record names its line and adds nothing.
        let bad = Store::open(dir.path().join("c.db")).unwrap();
        let err = bad
            .import_ldif(
                "dn: DC=lab\ndc: lab\n\ndn: CN=x,DC=lab\nchangetype: delete\n".as_bytes(),
                Path::new("bad.ldif"),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.ldif: line 5"), "{err}");
        drop(bad);
        assert!(
            Store::open_to_read(dir.path().join("c.db"))
                .unwrap()
                .is_empty()
                .unwrap()
        );
    }
}
