//! Kind `file`: the directories of its files watched with inotify, so that
//! a file a discovery tool rewrites applies within a second, not at the
//! next `refresh`. The refresh still reads every block, as Prometheus does:
//! a watch misses changes on network filesystems, and in directories that
//! do not exist yet.
//!
//! Directories are watched, not files: tools replace a file by renaming a
//! new one over it, and Kubernetes swaps a ConfigMap's files by renaming a
//! symlink beside them; a watch on the old file would see neither.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use inotify::{EventStream, Inotify, StreamExt, WatchMask};

use super::{DiscoveryConfig, DiscoveryKind};

/// A change in a watched directory: a file written, created, renamed in or
/// out, or removed.
const CHANGES: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE);

/// The watched directories of a config's `file` blocks.
pub struct FileWatch {
    events: EventStream<Vec<u8>>,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatch")
    }
}

impl FileWatch {
    /// Watches the directories of every `file` block's files; `None` when
    /// there is none to watch. A directory that cannot be watched (missing,
    /// no inotify) is said in the returned problems, and left to the
    /// refresh.
    pub fn start(blocks: &[DiscoveryConfig]) -> (Option<FileWatch>, Vec<String>) {
        let dirs = directories(blocks);
        if dirs.is_empty() {
            return (None, Vec::new());
        }
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                let why = format!("discovery: cannot watch files ({e}); read every refresh");
                return (None, vec![why]);
            }
        };
        let mut problems = Vec::new();
        let mut watched = 0;
        for dir in &dirs {
            match inotify.watches().add(dir, CHANGES) {
                Ok(_) => watched += 1,
                Err(e) => problems.push(format!(
                    "discovery: cannot watch {} ({e}); its files are read every refresh",
                    dir.display()
                )),
            }
        }
        if watched == 0 {
            return (None, problems);
        }
        match inotify.into_event_stream(vec![0; 4096]) {
            Ok(events) => (Some(FileWatch { events }), problems),
            Err(e) => {
                problems.push(format!("discovery: cannot watch files ({e})"));
                (None, problems)
            }
        }
    }

    /// Waits for the next change; `Err` once the watch fails (it is then
    /// of no more use).
    pub async fn changed(&mut self) -> Result<(), String> {
        match self.events.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(format!("discovery: the file watch failed ({e})")),
            None => Err("discovery: the file watch ended".into()),
        }
    }
}

/// The directory each `file` pattern's files are in: its parent, up to the
/// first component with a wildcard (a new directory matching it shows as a
/// change there; files inside it wait for the refresh).
fn directories(blocks: &[DiscoveryConfig]) -> BTreeSet<PathBuf> {
    blocks
        .iter()
        .filter(|b| b.kind == DiscoveryKind::File)
        .flat_map(|b| &b.files)
        .map(|f| fixed_prefix(f.parent().unwrap_or(Path::new(""))))
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect()
}

fn fixed_prefix(dir: &Path) -> PathBuf {
    let wild = |c: &Component<'_>| c.as_os_str().to_string_lossy().contains(['*', '?', '[']);
    dir.components().take_while(|c| !wild(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_block(files: &[&str]) -> DiscoveryConfig {
        serde_json::from_value(serde_json::json!({"kind": "file", "files": files})).unwrap()
    }

    /// Whether the watch wakes within a second.
    async fn woken(w: &mut FileWatch) -> bool {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(1), w.changed());
        matches!(wait.await, Ok(Ok(())))
    }

    #[test]
    fn each_pattern_is_watched_in_its_directory_up_to_a_wildcard() {
        let blocks = [
            file_block(&["/etc/lbwatch/sd/*.json", "/etc/lbwatch/sd/extra.yml"]),
            file_block(&["/srv/sd/*/lbs.json", "lbs.json"]),
        ];
        let got: Vec<String> = directories(&blocks)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        assert_eq!(got, ["/etc/lbwatch/sd", "/srv/sd", "."]);
    }

    /// A file renamed into a watched directory, then one written in place,
    /// each wake the watch; a directory that does not exist is a problem
    /// said, not an error.
    #[tokio::test]
    async fn a_file_renamed_in_or_written_wakes_the_watch() {
        let dir = std::env::temp_dir().join(format!("lbwatch-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pattern = dir.join("*.json");
        let missing = dir.join("nowhere").join("lbs.json");
        let blocks = [file_block(&[
            pattern.to_str().unwrap(),
            missing.to_str().unwrap(),
        ])];
        let (watch, problems) = FileWatch::start(&blocks);
        let mut watch = watch.expect("a watch");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("nowhere"), "{problems:?}");
        std::fs::write(dir.join("lbs.tmp"), "[]").unwrap();
        std::fs::rename(dir.join("lbs.tmp"), dir.join("lbs.json")).unwrap();
        assert!(woken(&mut watch).await);
        // The rename's several events, taken before the next change.
        while woken(&mut watch).await {}
        std::fs::write(dir.join("lbs.json"), "[]").unwrap();
        assert!(woken(&mut watch).await);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
