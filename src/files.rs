//! Files a run writes, written so that what the user owns is never destroyed: a path is
//! resolved through its symlinks (the link stays a link, its target is what changes), a file
//! is replaced only as a whole (a temporary file beside it, fsync, rename, fsync of the
//! folder), keeps its permissions, and a read-only file is refused rather than replaced.
//!
//! Temporary files are named after the file they replace (`.NAME.datasync-XXXXXX.tmp`), so
//! one left by a killed run is recognised and removed by the next writer of that file.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many symlinks [`resolve`] follows before it gives up (a loop).
const MAX_LINKS: usize = 40;

/// Where writing to `path` really writes: symlinks followed (also one whose target does not
/// exist yet), relative links taken from the link's folder, and the folder made absolute, so
/// that two spellings of one file (`d.ldif`, `./link.ldif`) give one path.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return std::fs::canonicalize(&current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A file to be created: its folder must exist; its name is kept.
                let name = current.file_name().ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "the path names a folder, not a file",
                    )
                })?;
                let parent = match current.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                return Ok(std::fs::canonicalize(parent)?.join(name));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "too many levels of symbolic links",
    ))
}

/// The folder `path` is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The prefix of the temporary files that replace `path`.
fn temp_prefix(path: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".datasync-");
    prefix
}

/// Suffix of every temporary file this crate writes.
const TEMP_SUFFIX: &str = ".tmp";

/// Removes temporary files a killed writer of `path` left beside it. Call it only while
/// holding the lock that keeps other writers of `path` out: theirs would look the same.
pub(crate) fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(folder_of(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let (Some(name), Some(prefix)) = (name.to_str(), prefix.to_str()) else {
            continue;
        };
        if name.starts_with(prefix)
            && name.ends_with(TEMP_SUFFIX)
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Fails when `path` exists and is read-only (no write permission bit): a user who made it
/// so meant it to stay as it is.
pub(crate) fn refuse_read_only(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the file is read-only; make it writable to let datasync replace it",
        )),
        _ => Ok(()),
    }
}

/// A file being written beside the one it will replace; [`commit`](Self::commit) puts it in
/// place, dropping it removes it.
pub struct Replacement {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl Replacement {
    /// Starts replacing `target` (already [`resolve`]d). The temporary file gets the mode of
    /// the file it replaces, or `new_mode` when there is none yet; creating it here proves
    /// the folder is writable before anything else is done.
    pub fn begin(target: &Path, new_mode: u32) -> std::io::Result<Replacement> {
        refuse_read_only(target)?;
        let existing = std::fs::metadata(target).ok();
        let prefix = temp_prefix(target);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(TEMP_SUFFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = existing
                .as_ref()
                .map_or(new_mode, |m| m.permissions().mode() & 0o7777);
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        #[cfg(not(unix))]
        let _ = new_mode;
        let temp = builder.tempfile_in(folder_of(target))?;
        #[cfg(unix)]
        if let Some(meta) = &existing {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // `permissions` above is filtered by the umask; set the mode exactly, and keep
            // the owner when we may (as root).
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let _ = std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()));
        }
        Ok(Replacement {
            target: target.to_path_buf(),
            temp,
        })
    }

    /// The file being written.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.temp.as_file_mut()
    }

    /// Flushes the new content to disk and renames it over the target, durably.
    pub fn commit(self) -> std::io::Result<()> {
        let Replacement { target, mut temp } = self;
        temp.flush()?;
        temp.as_file().sync_all()?;
        temp.persist(&target).map_err(|e| e.error)?;
        if let Ok(folder) = std::fs::File::open(folder_of(&target)) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

/// Replaces `path` (resolved through symlinks) with `bytes` as a whole; see [`Replacement`].
pub fn replace(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    let mut replacement = Replacement::begin(&resolve(path)?, new_mode)?;
    replacement.file().write_all(bytes)?;
    replacement.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_written_through_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.txt");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        assert_eq!(resolve(&link).unwrap(), resolve(&target).unwrap());
        replace(&link, b"new", 0o600).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_read_only_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"new", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(replace(&path, b"newer", 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn stale_temps_of_one_file_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.ldif");
        let stale = dir.path().join(".d.ldif.datasync-abc123.tmp");
        let other = dir.path().join(".e.ldif.datasync-abc123.tmp");
        std::fs::write(&stale, "x").unwrap();
        std::fs::write(&other, "x").unwrap();
        remove_stale_temps(&path);
        assert!(!stale.exists());
        assert!(other.exists());
    }

    #[test]
    fn a_new_file_is_resolved_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.txt");
        assert_eq!(
            resolve(&path).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap().join("new.txt")
        );
        // A dangling link resolves to where its target would be.
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink("later.txt", &link).unwrap();
        assert_eq!(
            resolve(&link).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap().join("later.txt")
        );
    }
}
