//! `datasync export` and `datasync import`: the store to LDIF and back.

use super::*;

/// A store's path from `PATH` or `db:PATH`.
pub(crate) fn store_path(given: &str) -> &Path {
    Path::new(given.strip_prefix("db:").unwrap_or(given))
}

/// `datasync export STORE --ldif FILE`: the store as LDIF, streamed; a file is replaced
/// whole once every entry is written, and never the store itself.
pub(crate) fn export(store: &str, ldif: &Path) -> Result<String, String> {
    let path = store_path(store);
    let store = Store::open_to_read(path).map_err(|e| e.to_string())?;
    let count = if ldif.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        store.export_ldif(&mut out).map_err(|e| e.to_string())?
    } else {
        let target =
            datasync::files::resolve(ldif).map_err(|e| format!("{}: {e}", ldif.display()))?;
        // The store's path is resolved already (through symlinks, canonical).
        if target == store.path() {
            return Err(format!(
                "--ldif {} is the store itself; nothing was written",
                ldif.display()
            ));
        }
        let io = |e: std::io::Error| format!("{}: {e}", target.display());
        let mut replacement = datasync::files::Replacement::begin(&target, 0o600).map_err(io)?;
        let count = {
            let mut out = std::io::BufWriter::new(replacement.file());
            let count = store.export_ldif(&mut out).map_err(|e| e.to_string())?;
            out.flush().map_err(io)?;
            count
        };
        replacement.commit().map_err(io)?;
        count
    };
    Ok(format!(
        "exported {count} entries from {}",
        store.path().display()
    ))
}

/// `datasync import FILE --into STORE`: the file's entries added in one transaction.
pub(crate) fn import(file: &Path, into: &str) -> Result<String, String> {
    let store = Store::open(store_path(into)).map_err(|e| e.to_string())?;
    let count = if file.as_os_str() == "-" {
        store.import_ldif(std::io::stdin().lock(), Path::new("standard input"))
    } else {
        let input = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        store.import_ldif(std::io::BufReader::new(input), file)
    }
    .map_err(|e| format!("{e}; nothing was imported"))?;
    store.commit().map_err(|e| e.to_string())?;
    Ok(format!(
        "imported {count} entries into {}",
        store.path().display()
    ))
}
