//! One path for every sample, live or replayed: the detector's verdict,
//! then each sink in turn. `lbwatch run` steps scraped samples through it
//! (sinks: recorder, accounting, views, stdout, outboxes, state) and
//! `lbwatch replay` recorded ones (sink: stdout), so a replay raises the
//! live run's events by construction.

use std::io::Write;

use crate::detect::Detector;
use crate::model::{AlertEvent, AlertState, Sample};

/// Why a sink could not take a step's results.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl SinkError {
    pub fn io(what: &'static str) -> impl Fn(std::io::Error) -> SinkError + Copy {
        move |source| SinkError::Io { what, source }
    }
}

/// Takes each sample with the events it raised, and may read the detector
/// (never change it) as it stands after that sample.
pub trait Sink {
    fn take(
        &mut self,
        sample: &Sample<'_>,
        events: &[AlertEvent],
        detector: &Detector,
    ) -> Result<(), SinkError>;

    /// The last samples are in: write out whatever is buffered.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// `target` is no longer watched (as of `now`); `resolved` ends its
    /// alerts. No sample comes with them: only the sinks that keep
    /// per-target state or deliver events take them.
    fn forgotten(
        &mut self,
        _target: &str,
        _now: crate::model::Timestamp,
        _resolved: &[AlertEvent],
    ) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The detector and the sinks it feeds.
pub struct Pipeline {
    detector: Detector,
    events: Vec<AlertEvent>,
    sinks: Vec<Box<dyn Sink + Send>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline({} sinks)", self.sinks.len())
    }
}

impl Pipeline {
    pub fn new(detector: Detector) -> Self {
        Pipeline {
            detector,
            events: Vec::new(),
            sinks: Vec::new(),
        }
    }

    /// Adds a sink; sinks take each step in the order they were added.
    pub fn with(mut self, sink: impl Sink + Send + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// One sample through the detector and every sink; the events it
    /// raised.
    pub fn step(&mut self, sample: &Sample<'_>) -> Result<&[AlertEvent], SinkError> {
        self.events.clear();
        self.detector.observe_into(sample, &mut self.events);
        for sink in &mut self.sinks {
            sink.take(sample, &self.events, &self.detector)?;
        }
        Ok(&self.events)
    }

    /// A target removed from the configuration: the detector forgets it
    /// (the caller made `resolved` from what it had firing), and every sink
    /// takes the resolves.
    /// Every sink takes them even when one fails (its error is returned):
    /// a history that cannot be written must not keep the resolves from
    /// the notifiers.
    pub fn forget(
        &mut self,
        target: &str,
        now: crate::model::Timestamp,
        resolved: &[AlertEvent],
    ) -> Result<(), SinkError> {
        let mut first = Ok(());
        for s in &mut self.sinks {
            if let Err(e) = s.forgotten(target, now, resolved) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Every sink writes out what it buffered.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|s| s.finish())
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// For what happens between samples: a reload's new settings, a target
    /// forgotten.
    pub fn detector_mut(&mut self) -> &mut Detector {
        &mut self.detector
    }
}

/// How alert events are shown on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON Lines, the replay format.
    Json,
    /// One readable line per event (the demo).
    Human,
}

/// Writes each event as a line: JSON (the replay format) or readable.
#[derive(Debug)]
pub struct EventWriter<W> {
    out: W,
    format: Output,
    /// Flush after each step (a live run, read as it goes) or only when
    /// dropped (a replay, read at the end).
    flush_each: bool,
}

impl<W: Write> EventWriter<W> {
    pub fn new(out: W, format: Output, flush_each: bool) -> Self {
        EventWriter {
            out,
            format,
            flush_each,
        }
    }
}

impl<W: Write> Sink for EventWriter<W> {
    fn take(
        &mut self,
        _: &Sample<'_>,
        events: &[AlertEvent],
        _: &Detector,
    ) -> Result<(), SinkError> {
        let err = SinkError::io("writing alert events");
        for e in events {
            match self.format {
                Output::Json => {
                    serde_json::to_writer(&mut self.out, e).map_err(|e| err(e.into()))?
                }
                Output::Human => self.out.write_all(human_line(e).as_bytes()).map_err(err)?,
            }
            self.out.write_all(b"\n").map_err(err)?;
        }
        if self.flush_each && !events.is_empty() {
            self.out.flush().map_err(err)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out
            .flush()
            .map_err(SinkError::io("writing alert events"))
    }
}

/// One readable line for an event.
pub fn human_line(e: &AlertEvent) -> String {
    let what = match (&e.pool, &e.server) {
        (Some(p), Some(s)) => format!("{}/{p}/{s}", e.target),
        (Some(p), None) => format!("{}/{p}", e.target),
        _ => e.target.clone(),
    };
    let (h, m, s) = e.ts.hms();
    let state = match e.state {
        AlertState::Firing => "FIRING  ",
        AlertState::Resolved => "RESOLVED",
    };
    let severity = serde_json::to_value(e.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!(
        "{h:02}:{m:02}:{s:02}Z {state} {severity:<8} {:<22} {what}",
        e.alert.as_str()
    );
    if let Some(summary) = &e.summary {
        line.push_str("\n          ");
        line.push_str(summary);
    }
    line
}
