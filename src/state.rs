//! The detector's state on disk, one file per target under
//! `<state dir>/targets/`, so a restarted lbwatch resumes where it stopped:
//! same baselines, same alerts firing.
//!
//! A target's file is rewritten (temporary file, rename) after every sample
//! that changed an alert, fsync'd, after the notifications are in their
//! outboxes; and every `SAVE_EVERY` otherwise, without fsync (a crash of
//! lbwatch leaves the page cache intact: it loses at most that much of
//! baseline learning, which spans hours; a crash of the machine, also
//! what the kernel had not written yet, half a minute by its default).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a target's state is saved when nothing happens. Each save
/// replaces a file, which the filesystem starts writing at once: at a
/// minute, 1,000 targets cost about 17 of them a second, a tenth of a
/// fleet's CPU at 30 s.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// A file name for any target name: safe characters kept, the rest
/// percent-encoded, so names never collide and never escape the directory.
fn file_name(target: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    format!(
        "{}.state",
        percent_encoding::utf8_percent_encode(target, KEEP)
    )
}

impl StateStore {
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let dir = dir.join("targets");
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(StateStore { dir })
    }

    pub fn path(&self, target: &str) -> PathBuf {
        self.dir.join(file_name(target))
    }

    /// Writes `target`'s snapshot; `durable` waits for the disk.
    pub fn save(&self, target: &str, bytes: &[u8], durable: bool) -> Result<(), StateError> {
        let path = self.path(target);
        let tmp = path.with_extension("tmp");
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io { path: p, source }
        };
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
            f.write_all(bytes).map_err(err(&tmp))?;
            if durable {
                f.sync_all().map_err(err(&tmp))?;
            }
        }
        std::fs::rename(&tmp, &path).map_err(err(&path))?;
        if durable {
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Every saved snapshot, with its file.
    pub fn load_all(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, StateError> {
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io { path: p, source }
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(err(&self.dir))? {
            let path = entry.map_err(err(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "state") {
                let bytes = std::fs::read(&path).map_err(err(&path))?;
                out.push((path, bytes));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn remove(&self, target: &str) {
        let _ = std::fs::remove_file(self.path(target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_target_name_is_a_safe_distinct_file_name() {
        assert_eq!(file_name("lb-1"), "lb-1.state");
        assert_eq!(file_name("../etc/passwd"), "%2E%2E%2Fetc%2Fpasswd.state");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
    }
}
