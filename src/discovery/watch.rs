//! Kind `file`: the directories of its files watched with inotify, so that
//! a file a discovery tool rewrites applies within a second, not at the
//! next `refresh`. The refresh still reads every block, as Prometheus does:
//! a watch misses changes on network filesystems, and in directories that
//! do not exist yet.
//!
//! Directories are watched, not files: tools replace a file by renaming a
//! new one over it, and Kubernetes swaps a ConfigMap's files by renaming a
//! symlink beside them; a watch on the old file would see neither.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};

use inotify::{EventMask, EventStream, Inotify, StreamExt, WatchDescriptor, WatchMask};

use super::{DiscoveryConfig, DiscoveryKind};

/// A change in a watched directory: a file written, created, renamed in or
/// out, or removed; or the directory itself removed or renamed (a tool
/// that swaps a whole directory in: the watch would follow the old one).
const CHANGES: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The watched directories of a config's `file` blocks, each with the names
/// in it that matter: a busy directory (logs, editors' swap files) wakes
/// no reading.
pub struct FileWatch {
    events: EventStream<Vec<u8>>,
    dirs: BTreeMap<WatchDescriptor, Watched>,
}

struct Watched {
    dir: PathBuf,
    /// The patterns' components in this directory (`*.json`, `lbs.yml`).
    names: Vec<String>,
}

/// What the watch saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A file that a block reads changed: read them again.
    Changed,
    /// A directory's watch ended (removed, renamed, unmounted): its files
    /// are read every refresh until a reload.
    Lost(String),
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
    /// refresh until a reload.
    pub fn start(blocks: &[DiscoveryConfig]) -> (Option<FileWatch>, Vec<String>) {
        let wanted = directories(blocks);
        if wanted.is_empty() {
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
        let mut dirs = BTreeMap::new();
        for (dir, names) in wanted {
            match inotify.watches().add(&dir, CHANGES) {
                // Two paths to one directory (a symlink, a relative path)
                // share its watch, and their names.
                Ok(wd) => dirs
                    .entry(wd)
                    .or_insert_with(|| Watched {
                        dir,
                        names: Vec::new(),
                    })
                    .names
                    .extend(names),
                Err(e) => problems.push(format!(
                    "discovery: cannot watch {} ({e}); its files are read every refresh",
                    dir.display()
                )),
            }
        }
        if dirs.is_empty() {
            return (None, problems);
        }
        match inotify.into_event_stream(vec![0; 4096]) {
            Ok(events) => (Some(FileWatch { events, dirs }), problems),
            Err(e) => {
                problems.push(format!("discovery: cannot watch files ({e})"));
                (None, problems)
            }
        }
    }

    /// Waits for the next change that matters; `Err` once the watch fails
    /// (it is then of no more use).
    pub async fn changed(&mut self) -> Result<Seen, String> {
        loop {
            let event = match self.events.next().await {
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(format!("discovery: the file watch failed ({e})")),
                None => return Err("discovery: the file watch ended".into()),
            };
            // Events were lost: anything may have changed.
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                return Ok(Seen::Changed);
            }
            let Some(w) = self.dirs.get(&event.wd) else {
                continue;
            };
            let gone = EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF;
            if event.mask.intersects(gone) {
                let dir = w.dir.display().to_string();
                self.dirs.remove(&event.wd);
                // A renamed directory's watch would go on, on the old one.
                let _ = self.events.watches().remove(event.wd);
                return Ok(Seen::Lost(format!(
                    "discovery: the watch of {dir} ended (removed, renamed or unmounted); its files are read every refresh until a reload"
                )));
            }
            let name = event.name.as_deref().map(|n| n.to_string_lossy());
            if name.is_some_and(|n| w.matters(&n)) {
                return Ok(Seen::Changed);
            }
        }
    }
}

impl Watched {
    /// Kubernetes writes a ConfigMap's files by renaming a new link over
    /// its `..data` symlink, which the files link through (the link's own
    /// creation, as `..data_tmp`, comes before the data is in place).
    fn matters(&self, name: &str) -> bool {
        name == "..data" || self.names.iter().any(|p| crate::glob::wildcard(p, name))
    }
}

/// The directory each `file` pattern's files are in, with the component
/// of the pattern found there: its parent, up to the first component with a
/// wildcard (a new directory matching it shows as a change there; files
/// inside it wait for the refresh).
fn directories(blocks: &[DiscoveryConfig]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let files = blocks
        .iter()
        .filter(|b| b.kind == DiscoveryKind::File)
        .flat_map(|b| &b.files);
    for f in files {
        let parts: Vec<Component<'_>> = f.components().collect();
        let wild = |c: &Component<'_>| crate::glob::is_wild(&c.as_os_str().to_string_lossy());
        let at = parts
            .iter()
            .position(wild)
            .unwrap_or(parts.len().saturating_sub(1));
        let Some(name) = parts.get(at) else { continue };
        let mut dir: PathBuf = parts[..at].iter().collect();
        if dir.as_os_str().is_empty() {
            dir.push(".");
        }
        let name = name.as_os_str().to_string_lossy().into_owned();
        dirs.entry(dir).or_default().push(name);
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_block(files: &[&str]) -> DiscoveryConfig {
        serde_json::from_value(serde_json::json!({"kind": "file", "files": files})).unwrap()
    }

    /// What the watch sees within a second, if anything.
    async fn seen(w: &mut FileWatch) -> Option<Seen> {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(1), w.changed());
        wait.await.ok().map(|r| r.expect("the watch works"))
    }

    /// Takes every event left of the last step.
    async fn drain(w: &mut FileWatch) {
        while seen(w).await.is_some() {}
    }

    #[test]
    fn each_pattern_is_watched_in_its_directory_up_to_a_wildcard() {
        let blocks = [
            file_block(&["/etc/lbwatch/sd/*.json", "/etc/lbwatch/sd/extra.yml"]),
            file_block(&["/srv/sd/*/lbs.json", "lbs.json"]),
        ];
        let got: Vec<(String, Vec<String>)> = directories(&blocks)
            .into_iter()
            .map(|(d, n)| (d.display().to_string(), n))
            .collect();
        let want = |d: &str, n: &[&str]| (d.to_string(), n.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got,
            [
                want("/etc/lbwatch/sd", &["*.json", "extra.yml"]),
                want("/srv/sd", &["*"]),
                want(".", &["lbs.json"]),
            ]
        );
    }

    /// What the watch sees next, the changes before it skipped; `None`
    /// when it sees no end of a watch within a second.
    async fn lost(w: &mut FileWatch) -> Option<String> {
        loop {
            match seen(w).await? {
                Seen::Lost(why) => return Some(why),
                Seen::Changed => continue,
            }
        }
    }

    /// A ConfigMap mounted in `dir`: `lbs.json` a link to `..data/lbs.json`,
    /// `..data` a link to a timestamped directory. Kubernetes updates it by
    /// writing a new directory and a `..data_tmp` link, which wake
    /// nothing, then renaming the link over `..data`, which does.
    async fn kubernetes_swap(dir: &std::path::Path, watch: &mut FileWatch) {
        use std::os::unix::fs::symlink;
        std::fs::create_dir(dir.join("..2026_01")).unwrap();
        std::fs::write(dir.join("..2026_01").join("lbs.json"), "[]").unwrap();
        symlink("..2026_01", dir.join("..data")).unwrap();
        symlink("..data/lbs.json", dir.join("lbs.json")).unwrap();
        drain(watch).await;
        std::fs::create_dir(dir.join("..2026_02")).unwrap();
        std::fs::write(dir.join("..2026_02").join("lbs.json"), "[]").unwrap();
        symlink("..2026_02", dir.join("..data_tmp")).unwrap();
        assert_eq!(seen(watch).await, None, "the new data alone woke it");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert_eq!(seen(watch).await, Some(Seen::Changed), "..data swapped");
        drain(watch).await;
    }

    /// Events past the kernel's queue (files that do not match, created
    /// and removed while the watch is not read) are lost: the watch says
    /// something changed, since a matching file may be among them.
    async fn overflow(dir: &std::path::Path, watch: &mut FileWatch) {
        let queued: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(16384);
        for i in 0..queued / 2 + 16 {
            let f = dir.join(format!("noise-{i}.tmp"));
            std::fs::write(&f, "").unwrap();
            std::fs::remove_file(&f).unwrap();
        }
        assert_eq!(seen(watch).await, Some(Seen::Changed), "overflowed");
        drain(watch).await;
    }

    /// A matching file renamed in, written in place or removed wakes the
    /// watch, each alone; another file in the directory does not; nor do
    /// two paths to one directory lose one path's files; the directory
    /// removed, or renamed away, ends its watch, said. A directory that
    /// does not exist is a problem said, not an error.
    #[tokio::test]
    async fn the_files_of_a_block_wake_the_watch_and_no_other() {
        let root = std::env::temp_dir().join(format!("lbwatch-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, other, staging) = (root.join("sd"), root.join("sd2"), root.join("staging"));
        for d in [&dir, &other, &staging] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&dir, root.join("link")).unwrap();
        let path = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
        let blocks = [file_block(&[
            &path(dir.join("*.json")),
            &path(root.join("link").join("extra.yml")),
            &path(other.join("*.json")),
            &path(root.join("nowhere").join("lbs.json")),
        ])];
        let (watch, problems) = FileWatch::start(&blocks);
        let mut watch = watch.expect("a watch");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("nowhere"), "{problems:?}");
        std::fs::write(dir.join("lbwatch.log"), "busy").unwrap();
        assert_eq!(seen(&mut watch).await, None, "another file woke it");
        std::fs::write(staging.join("lbs.json"), "[]").unwrap();
        std::fs::rename(staging.join("lbs.json"), dir.join("lbs.json")).unwrap();
        assert_eq!(seen(&mut watch).await, Some(Seen::Changed), "renamed in");
        drain(&mut watch).await;
        std::fs::write(dir.join("lbs.json"), "[]").unwrap();
        assert_eq!(seen(&mut watch).await, Some(Seen::Changed), "written");
        drain(&mut watch).await;
        std::fs::write(dir.join("extra.yml"), "[]").unwrap();
        assert_eq!(seen(&mut watch).await, Some(Seen::Changed), "via the link");
        drain(&mut watch).await;
        std::fs::remove_file(dir.join("lbs.json")).unwrap();
        assert_eq!(seen(&mut watch).await, Some(Seen::Changed), "removed");
        drain(&mut watch).await;
        std::fs::remove_dir_all(&dir).unwrap();
        let why = lost(&mut watch)
            .await
            .expect("the directory's removal said");
        // Named by either of its paths.
        let named = why.contains("/sd ") || why.contains("/link ");
        assert!(named && why.contains("refresh"), "{why}");
        kubernetes_swap(&other, &mut watch).await;
        overflow(&other, &mut watch).await;
        std::fs::rename(&other, root.join("sd2.old")).unwrap();
        let why = lost(&mut watch).await.expect("the directory's rename said");
        assert!(why.contains("/sd2 "), "{why}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
