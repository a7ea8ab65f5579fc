//! The incident history in the state directory: `incidents.jsonl`, one
//! line per change of an incident (the last line of an id wins), each
//! fsync'd before lbwatch goes on, so that an incident that was paged is
//! never lost, even to `kill -9`. Rewritten (temporary file, fsync, rename)
//! when it grows, dropping incidents past the retention or the count.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::Incident;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub retention_s: f64,
    pub max: usize,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// Every incident, by id, as last written.
    incidents: BTreeMap<String, Incident>,
    lines: usize,
    limits: Limits,
}

pub const FILE: &str = "incidents.jsonl";

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the history of `dir` (empty when there is none).
pub fn load(dir: &Path) -> Result<BTreeMap<String, Incident>, StoreError> {
    let path = dir.join(FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut out = BTreeMap::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(&path))?;
        if line.trim().is_empty() {
            continue;
        }
        // A line cut by a crash mid-write is the last one: the incident it
        // updated is in the line before it.
        match serde_json::from_str::<Incident>(&line) {
            Ok(i) => {
                out.insert(i.id.clone(), i);
            }
            Err(e) if e.is_eof() => break,
            Err(e) => {
                return Err(StoreError::Invalid {
                    path: path.clone(),
                    line: n + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

impl Store {
    pub fn open(dir: &Path, limits: Limits) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let incidents = load(dir)?;
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut store = Store {
            path,
            file,
            lines: incidents.len(),
            incidents,
            limits,
        };
        store.compact()?;
        Ok(store)
    }

    pub fn incidents(&self) -> &BTreeMap<String, Incident> {
        &self.incidents
    }

    /// Writes `incident` as it is now, durably.
    pub fn put(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(incident).expect("an incident serialises");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.lines += 1;
        self.incidents.insert(incident.id.clone(), incident.clone());
        if self.lines > 4 * self.incidents.len() + 64 {
            self.compact()?;
        }
        Ok(())
    }

    /// Keeps what the limits allow (never an open incident), one line each.
    /// Retention counts back from the newest incident's time: the store
    /// reads no clock, so a history is never emptied by a wrong one.
    fn compact(&mut self) -> Result<(), StoreError> {
        let newest = self
            .incidents
            .values()
            .map(|i| i.end.unwrap_or(i.detected))
            .max();
        let limits = self.limits;
        self.incidents.retain(|_, i| {
            !i.closed
                || newest
                    .is_none_or(|n| n.secs_since(i.end.unwrap_or(i.detected)) <= limits.retention_s)
        });
        let mut by_age: Vec<(crate::model::Timestamp, String, bool)> = self
            .incidents
            .values()
            .map(|i| (i.start, i.id.clone(), i.closed))
            .collect();
        by_age.sort();
        let excess = by_age.len().saturating_sub(limits.max);
        for (_, id, _) in by_age.iter().filter(|(_, _, closed)| *closed).take(excess) {
            self.incidents.remove(id);
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
        for i in self.incidents.values() {
            let mut line = serde_json::to_vec(i).expect("an incident serialises");
            line.push(b'\n');
            out.write_all(&line).map_err(io_err(&tmp))?;
        }
        out.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        // The rename itself must survive a power loss.
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.lines = self.incidents.len();
        Ok(())
    }
}
