//! Where delta runs keep their watermark between runs: a small [`StateStore`] trait, with a
//! JSON file implementation ([`FileStateStore`], written atomically) and one in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Per job, per object type code, the highest source timestamp a successful run saw.
pub type Watermarks = BTreeMap<i64, String>;

/// Keeps watermarks between runs.
pub trait StateStore: Send + Sync {
    /// The watermarks the last successful run of `job` left (empty before the first).
    fn load(&self, job: &str) -> Result<Watermarks, std::io::Error>;
    /// Replaces `job`'s watermarks; all of them are written or none.
    fn save(&self, job: &str, watermarks: &Watermarks) -> Result<(), std::io::Error>;
}

/// Watermarks in memory (tests, hosts with their own persistence).
#[derive(Debug, Default)]
pub struct MemoryStateStore(Mutex<BTreeMap<String, Watermarks>>);

impl StateStore for MemoryStateStore {
    fn load(&self, job: &str) -> Result<Watermarks, std::io::Error> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(job).cloned().unwrap_or_default())
    }
    fn save(&self, job: &str, watermarks: &Watermarks) -> Result<(), std::io::Error> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(job.to_string(), watermarks.clone());
        Ok(())
    }
}

/// Watermarks in one JSON file, `{"job": {"1": "2026-11-01T10:00:00"}}`, replaced atomically
/// (a temporary file beside it, fsync, rename), so a crash leaves the old state or the new.
#[derive(Debug)]
pub struct FileStateStore {
    path: PathBuf,
    // One writer at a time within this process: load-modify-save must not interleave.
    lock: Mutex<()>,
}

impl FileStateStore {
    /// A store kept in `path` (created on the first save).
    pub fn new(path: impl AsRef<Path>) -> FileStateStore {
        FileStateStore {
            path: path.as_ref().to_path_buf(),
            lock: Mutex::new(()),
        }
    }

    fn read_all(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, std::io::Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }
}

impl StateStore for FileStateStore {
    fn load(&self, job: &str) -> Result<Watermarks, std::io::Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let all = self.read_all()?;
        Ok(all
            .get(job)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v.clone())))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn save(&self, job: &str, watermarks: &Watermarks) -> Result<(), std::io::Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.read_all()?;
        all.insert(
            job.to_string(),
            watermarks
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
        crate::files::replace(&self.path, text.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_keeps_each_jobs_watermarks() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path().join("state.json"));
        assert!(store.load("a").unwrap().is_empty());
        store
            .save("a", &Watermarks::from([(1, "2026-01-02".into())]))
            .unwrap();
        store
            .save("b", &Watermarks::from([(4, "7".into())]))
            .unwrap();
        let again = FileStateStore::new(dir.path().join("state.json"));
        assert_eq!(again.load("a").unwrap()[&1], "2026-01-02");
        assert_eq!(again.load("b").unwrap()[&4], "7");
        std::fs::write(dir.path().join("state.json"), "not json").unwrap();
        assert!(again.load("a").is_err());
    }
}
