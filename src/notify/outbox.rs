//! A notifier's outbox: every notification accepted is appended to an
//! fsync'd journal before anything is sent, and removed only once the
//! receiver has it. After a crash or `kill -9` the journal is read back and
//! delivery resumes where it stopped, in order.
//!
//! Why a journal and not an embedded database: the access pattern is a
//! queue (append at the tail, acknowledge from the head) of a few events a
//! minute; a JSON Lines file with one fsync per batch gives the same
//! durability with no C library to build, and stays readable with `cat`
//! during an incident. The file is rewritten (to a temporary file, fsync'd,
//! renamed) once enough of it is acknowledged.
//!
//! Records, one JSON object per line:
//! - `{"put":N,"event":{...},"incident":{...}}`: notification N accepted,
//!   with its incident as the event left it (when it has one);
//! - `{"ack":N}`: every notification up to N is done with;
//! - `{"state":{...},"incident":{...}}`: the latest event of an alert (and
//!   its incident), written by a rewrite so the alerts' states outlive the
//!   records that set them.
//!
//! The outbox also knows each alert's latest state, and refuses an event
//! that would not change it (a second firing of an alert already firing, a
//! resolve of one not firing): a restart that re-detects what was already
//! sent pages nobody twice.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::incident::notice::IncidentNote;
use crate::model::{AlertEvent, AlertState};

/// Acknowledged records that trigger a rewrite of the journal.
const REWRITE_AFTER: usize = 4096;
/// Resolved alerts remembered (Alertmanager re-sends recent resolves).
const RESOLVED_KEPT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An alert event with the incident it belongs to, as it left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: AlertEvent,
    pub incident: Option<IncidentNote>,
}

impl From<AlertEvent> for Notice {
    fn from(event: AlertEvent) -> Notice {
        Notice {
            event,
            incident: None,
        }
    }
}

/// A notification waiting for its receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub event: AlertEvent,
    pub incident: Option<IncidentNote>,
    /// When it was accepted by this process (`None` if recovered from the
    /// journal), for the delivery latency.
    pub accepted: Option<std::time::Instant>,
}

/// What became of the events offered to `push`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    pub accepted: usize,
    /// Would not change the alert's state (already sent).
    pub unchanged: usize,
    /// The outbox was full.
    pub dropped: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Put {
        put: u64,
        event: AlertEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<IncidentNote>,
    },
    Ack {
        ack: u64,
    },
    State {
        state: AlertEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<IncidentNote>,
    },
}

/// What receivers were last told of one alert.
#[derive(Debug, Clone)]
pub struct Told {
    pub event: AlertEvent,
    /// The event it fired with, once resolved.
    pub fired: Option<AlertEvent>,
    pub incident: Option<IncidentNote>,
}

/// What one journal line holds: a notification put (its sequence number),
/// an acknowledgement, or a remembered alert state; `None` for a line that
/// is none of these (a torn last line).
pub fn decode_line(line: &str) -> Option<u64> {
    match serde_json::from_str::<Record>(line).ok()? {
        Record::Put { put, .. } => Some(put),
        Record::Ack { ack } => Some(ack),
        Record::State { .. } => Some(0),
    }
}

#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    file: File,
    next_seq: u64,
    pending: VecDeque<Entry>,
    /// Latest event of every alert firing now, and of recently resolved
    /// ones (with the event they fired with), by alert key.
    latest: BTreeMap<String, Told>,
    /// Order in which alerts resolved, oldest first, to forget the oldest.
    resolved_order: VecDeque<String>,
    acked_records: usize,
    capacity: usize,
    /// Lines of the journal that could not be read on opening.
    pub unreadable_lines: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Outbox {
    /// Opens (or creates) the journal at `path` and recovers what it holds.
    pub fn open(path: &Path, capacity: usize) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut outbox = Outbox {
            path: path.to_path_buf(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io(path))?,
            next_seq: 1,
            pending: VecDeque::new(),
            latest: BTreeMap::new(),
            resolved_order: VecDeque::new(),
            acked_records: 0,
            capacity,
            unreadable_lines: 0,
        };
        let reader = BufReader::new(File::open(path).map_err(io(path))?);
        for line in reader.lines() {
            let line = line.map_err(io(path))?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (killed mid-write) was never acknowledged to
            // anyone: skipping it loses nothing that was promised.
            match serde_json::from_str::<Record>(&line) {
                Ok(Record::Put {
                    put,
                    event,
                    incident,
                }) => {
                    outbox.next_seq = outbox.next_seq.max(put + 1);
                    outbox.remember(&event, &incident);
                    outbox.pending.push_back(Entry {
                        seq: put,
                        event,
                        incident,
                        accepted: None,
                    });
                }
                Ok(Record::Ack { ack }) => {
                    outbox.next_seq = outbox.next_seq.max(ack + 1);
                    while outbox.pending.front().is_some_and(|e| e.seq <= ack) {
                        outbox.pending.pop_front();
                    }
                }
                Ok(Record::State { state, incident }) => outbox.remember(&state, &incident),
                Err(_) => outbox.unreadable_lines += 1,
            }
        }
        // Start every run from a compact journal.
        outbox.rewrite()?;
        Ok(outbox)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remember(&mut self, e: &AlertEvent, incident: &Option<IncidentNote>) {
        let key = e.key();
        if e.state == AlertState::Resolved {
            self.resolved_order.push_back(key.clone());
            while self.resolved_order.len() > RESOLVED_KEPT {
                if let Some(old) = self.resolved_order.pop_front() {
                    if self
                        .latest
                        .get(&old)
                        .is_some_and(|t| t.event.state == AlertState::Resolved)
                    {
                        self.latest.remove(&old);
                    }
                }
            }
        }
        let fired = match e.state {
            AlertState::Firing => None,
            AlertState::Resolved => self
                .latest
                .remove(&key)
                .and_then(|t| (t.event.state == AlertState::Firing).then_some(t.event)),
        };
        let told = Told {
            event: e.clone(),
            fired,
            incident: incident.clone(),
        };
        self.latest.insert(key, told);
    }

    /// Whether `e` changes what receivers were told of its alert.
    fn changes_state(&self, e: &AlertEvent) -> bool {
        let firing = self
            .latest
            .get(&e.key())
            .is_some_and(|t| t.event.state == AlertState::Firing);
        match e.state {
            AlertState::Firing => !firing,
            AlertState::Resolved => firing,
        }
    }

    /// Appends `notices` to the journal (one fsync) and queues them.
    pub fn push(
        &mut self,
        notices: &[Notice],
        now: std::time::Instant,
    ) -> Result<Pushed, OutboxError> {
        let mut pushed = Pushed::default();
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        for Notice { event: e, incident } in notices {
            // A resolve goes under the key its firing was paged with: an
            // alert paged on its own (before it had an incident, or by an
            // older lbwatch) resolves on its own.
            let told_alone = self
                .latest
                .get(&e.key())
                .is_some_and(|t| t.event.state == AlertState::Firing && t.incident.is_none());
            let incident = &if e.state == AlertState::Resolved && told_alone {
                None
            } else {
                incident.clone()
            };
            if !self.changes_state(e) {
                pushed.unchanged += 1;
                continue;
            }
            if self.pending.len() + entries.len() >= self.capacity {
                pushed.dropped += 1;
                // Its state still counts: what follows it (its resolve)
                // must not be refused as a change of nothing.
                self.remember(e, incident);
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            serde_json::to_writer(
                &mut buf,
                &Record::Put {
                    put: seq,
                    event: e.clone(),
                    incident: incident.clone(),
                },
            )
            .expect("an alert event serialises");
            buf.push(b'\n');
            self.remember(e, incident);
            entries.push(Entry {
                seq,
                event: e.clone(),
                incident: incident.clone(),
                accepted: Some(now),
            });
        }
        // Queued even when the disk refuses: delivered from memory then,
        // rather than lost.
        let written = if buf.is_empty() {
            Ok(())
        } else {
            self.append(&buf)
        };
        pushed.accepted = entries.len();
        self.pending.extend(entries);
        written.map(|()| pushed)
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), OutboxError> {
        self.file.write_all(buf).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Up to `n` notifications, oldest first.
    pub fn pending(&self, n: usize) -> Vec<Entry> {
        self.pending.iter().take(n).cloned().collect()
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    /// Every notification up to `seq` is done with (delivered, or refused
    /// for good).
    pub fn ack(&mut self, seq: u64) -> Result<(), OutboxError> {
        let before = self.pending.len();
        while self.pending.front().is_some_and(|e| e.seq <= seq) {
            self.pending.pop_front();
        }
        if before == self.pending.len() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&Record::Ack { ack: seq }).expect("serialises");
        line.push(b'\n');
        self.append(&line)?;
        self.acked_records += before - self.pending.len() + 1;
        if self.acked_records >= REWRITE_AFTER {
            self.rewrite()?;
        }
        Ok(())
    }

    /// The latest event of each alert firing now, and of the recently
    /// resolved ones (for receivers that want the whole picture each time).
    pub fn latest(&self) -> impl Iterator<Item = &Told> {
        self.latest.values()
    }

    /// Replaces the journal with one holding only what is still needed.
    fn rewrite(&mut self) -> Result<(), OutboxError> {
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::new();
        let pending_keys: std::collections::BTreeSet<u64> =
            self.pending.iter().map(|e| e.seq).collect();
        for t in self.latest.values() {
            for state in t.fired.iter().chain([&t.event]) {
                let incident = (state == &t.event).then(|| t.incident.clone()).flatten();
                serde_json::to_writer(
                    &mut out,
                    &Record::State {
                        state: state.clone(),
                        incident,
                    },
                )
                .expect("serialises");
                out.push(b'\n');
            }
        }
        // The sequence must keep growing across rewrites.
        if pending_keys.is_empty() && self.next_seq > 1 {
            serde_json::to_writer(
                &mut out,
                &Record::Ack {
                    ack: self.next_seq - 1,
                },
            )
            .expect("serialises");
            out.push(b'\n');
        }
        for e in &self.pending {
            serde_json::to_writer(
                &mut out,
                &Record::Put {
                    put: e.seq,
                    event: e.event.clone(),
                    incident: e.incident.clone(),
                },
            )
            .expect("serialises");
            out.push(b'\n');
        }
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&out).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must reach the disk.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.acked_records = 0;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{AlertName, Severity, Timestamp};

    /// A ServerDown of pool web on lb1 at `secs`.
    pub(in crate::notify) fn event(state: AlertState, server: &str, secs: i64) -> AlertEvent {
        AlertEvent {
            ts: Timestamp::from_micros(secs * 1_000_000),
            state,
            alert: AlertName::ServerDown,
            severity: Severity::Warning,
            target: "lb1".into(),
            pool: Some("web".into()),
            server: Some(server.into()),
            summary: (state == AlertState::Firing).then(|| format!("{server} is down")),
            value: Some(1.0),
        }
    }

    pub(in crate::notify) fn notices(events: &[AlertEvent]) -> Vec<Notice> {
        events.iter().cloned().map(Notice::from).collect()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lbwatch-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn now() -> std::time::Instant {
        crate::clock::monotonic()
    }

    #[test]
    fn what_is_not_acknowledged_survives_reopening_in_order() {
        let path = dir("reopen").join("hook.log");
        let mut o = Outbox::open(&path, 100).unwrap();
        let fired = [
            event(AlertState::Firing, "web1", 1),
            event(AlertState::Firing, "web2", 2),
            event(AlertState::Resolved, "web1", 3),
        ];
        assert_eq!(o.push(&notices(&fired), now()).unwrap().accepted, 3);
        let first = o.pending(1)[0].seq;
        o.ack(first).unwrap();
        drop(o);
        let o = Outbox::open(&path, 100).unwrap();
        let left: Vec<_> = o.pending(10).into_iter().map(|e| e.event).collect();
        assert_eq!(left, fired[1..].to_vec());
        assert!(
            o.pending(10)[0].seq > first,
            "sequence numbers keep growing"
        );
    }

    #[test]
    fn an_event_that_changes_nothing_is_not_sent_again() {
        let path = dir("dedup").join("hook.log");
        let mut o = Outbox::open(&path, 100).unwrap();
        let p = o
            .push(&notices(&[event(AlertState::Firing, "web1", 1)]), now())
            .unwrap();
        assert_eq!(p.accepted, 1);
        o.ack(o.pending(1)[0].seq).unwrap();
        drop(o);
        // After a restart the alert is re-detected: nobody is paged again.
        let mut o = Outbox::open(&path, 100).unwrap();
        let again = o
            .push(
                &notices(&[
                    event(AlertState::Firing, "web1", 5),
                    event(AlertState::Resolved, "web2", 5),
                ]),
                now(),
            )
            .unwrap();
        assert_eq!((again.accepted, again.unchanged), (0, 2));
        let resolve = o
            .push(&notices(&[event(AlertState::Resolved, "web1", 9)]), now())
            .unwrap();
        assert_eq!(resolve.accepted, 1);
    }

    #[test]
    fn an_alert_paged_alone_resolves_alone_and_incidents_survive_reopening() {
        let path = dir("keyed").join("pd.log");
        let mut o = Outbox::open(&path, 100).unwrap();
        let note = |id: &str| crate::incident::notice::IncidentNote::sample(id, 0);
        // web1 fired with no incident (an older lbwatch); web2 with one.
        o.push(&notices(&[event(AlertState::Firing, "web1", 1)]), now())
            .unwrap();
        let with = |e: AlertEvent, id: &str| Notice {
            event: e,
            incident: Some(note(id)),
        };
        o.push(&[with(event(AlertState::Firing, "web2", 1), "i")], now())
            .unwrap();
        o.push(
            &[
                with(event(AlertState::Resolved, "web1", 2), "i"),
                with(event(AlertState::Resolved, "web2", 2), "i"),
            ],
            now(),
        )
        .unwrap();
        drop(o);
        let o = Outbox::open(&path, 100).unwrap();
        let ids: Vec<Option<String>> = o
            .pending(10)
            .iter()
            .map(|e| e.incident.as_ref().map(|n| n.id.clone()))
            .collect();
        assert_eq!(ids, [None, Some("i".into()), None, Some("i".into())]);
        let told: Vec<bool> = o.latest().map(|t| t.incident.is_some()).collect();
        assert_eq!(told, [false, true]);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let path = dir("torn").join("hook.log");
        let mut o = Outbox::open(&path, 100).unwrap();
        o.push(&notices(&[event(AlertState::Firing, "web1", 1)]), now())
            .unwrap();
        drop(o);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"put\":7,\"event\":{\"ts\":").unwrap();
        drop(f);
        let o = Outbox::open(&path, 100).unwrap();
        assert_eq!(o.unreadable_lines, 1);
        assert_eq!(o.depth(), 1);
    }

    #[test]
    fn a_full_outbox_drops_new_events_and_keeps_their_state() {
        let path = dir("full").join("hook.log");
        let mut o = Outbox::open(&path, 1).unwrap();
        let p = o
            .push(
                &notices(&[
                    event(AlertState::Firing, "web1", 1),
                    event(AlertState::Firing, "web2", 1),
                ]),
                now(),
            )
            .unwrap();
        assert_eq!((p.accepted, p.dropped), (1, 1));
        o.ack(o.pending(1)[0].seq).unwrap();
        let p = o
            .push(&notices(&[event(AlertState::Resolved, "web2", 2)]), now())
            .unwrap();
        assert_eq!(
            p.accepted, 1,
            "the resolve of a dropped firing still goes out"
        );
    }

    #[test]
    fn rewrites_keep_the_journal_small() {
        let path = dir("rewrite").join("hook.log");
        let mut o = Outbox::open(&path, 100_000).unwrap();
        for i in 0..3000 {
            let s = format!("web{i}");
            o.push(&notices(&[event(AlertState::Firing, &s, i)]), now())
                .unwrap();
            o.push(&notices(&[event(AlertState::Resolved, &s, i + 1)]), now())
                .unwrap();
            let last = o.pending(usize::MAX).last().unwrap().seq;
            o.ack(last).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 2_000_000, "journal of {size} bytes");
        let o = Outbox::open(&path, 100).unwrap();
        assert_eq!(o.depth(), 0);
        assert!(o.latest().count() <= RESOLVED_KEPT);
    }
}
