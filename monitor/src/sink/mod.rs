//! Where events go: NDJSON, one object per line, to stdout, a file, any `Write`, and a
//! fan-out hub for live followers.
//!
//! Each event is redacted (if configured) and serialized once; the line goes to the hub
//! at once and into a batch that is written to every other destination when it is full
//! (or at `flush`). A destination that fails loses (and counts) that batch; the others
//! still get it.

mod file;
mod hub;
mod redact;
#[cfg(test)]
pub(crate) mod testdir;

use std::{
    borrow::Cow,
    io::{self, Write},
    path::Path,
};

pub use file::{Displacement, RotatingFile, Rotation, free_name};
pub use hub::{Filter, Follower, Hub, RecvTimeoutError};
pub use redact::Redaction;

use crate::{
    clock::BootClock,
    event::{Event, Tamper, types},
    event_context::{Context, session_ref},
};

/// A batch is written once it reaches this size (or at `flush`).
const BATCH_BYTES: usize = 64 * 1024;

/// What one destination took and lost, in lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    /// `stdout`, `file` or the name given to `SinkBuilder::writer`.
    pub name: String,
    pub written: u64,
    pub lost: u64,
}

enum Output {
    Writer(Box<dyn Write + Send>),
    File(RotatingFile),
}

struct Destination {
    name: String,
    output: Output,
    written: u64,
    lost: u64,
}

impl Destination {
    fn new(name: &str, output: Output) -> Destination {
        Destination { name: name.to_string(), output, written: 0, lost: 0 }
    }

    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        match &mut self.output {
            Output::Writer(out) => out.write_all(batch).and_then(|()| out.flush()),
            Output::File(file) => file.write_lines(batch),
        }
    }
}

pub struct Sink {
    destinations: Vec<Destination>,
    hub: Option<Hub>,
    redaction: Option<Redaction>,
    batch: Vec<u8>,
    batch_lines: u64,
    written: u64,
    lost: u64,
}

/// Builds a `Sink` with several destinations: `Sink::builder().stdout().file(..)?.hub(..)`.
#[derive(Default)]
pub struct SinkBuilder {
    destinations: Vec<Destination>,
    hub: Option<Hub>,
    redaction: Option<Redaction>,
}

impl SinkBuilder {
    pub fn stdout(self) -> SinkBuilder {
        self.writer("stdout", Box::new(io::stdout()))
    }

    /// Appends to `path` (created 0600), rotated as `rotation` says; a file that loses
    /// its name is replaced, and that reported (see `file`).
    pub fn file(self, path: &Path, rotation: Option<Rotation>) -> io::Result<SinkBuilder> {
        let file = RotatingFile::open(path, rotation)?.with_notice(Box::new(displacement_notice));
        Ok(self.push("file", Output::File(file)))
    }

    pub fn writer(self, name: &str, out: Box<dyn Write + Send>) -> SinkBuilder {
        self.push(name, Output::Writer(out))
    }

    /// Every line is also published to `hub`, unbatched.
    pub fn hub(mut self, hub: Hub) -> SinkBuilder {
        self.hub = Some(hub);
        self
    }

    /// Applied to every event before it is serialized, for every destination.
    pub fn redaction(mut self, redaction: Redaction) -> SinkBuilder {
        self.redaction = Some(redaction).filter(Redaction::is_active);
        self
    }

    pub fn build(self) -> Sink {
        Sink {
            destinations: self.destinations,
            hub: self.hub,
            redaction: self.redaction,
            batch: Vec::with_capacity(BATCH_BYTES),
            batch_lines: 0,
            written: 0,
            lost: 0,
        }
    }

    fn push(mut self, name: &str, output: Output) -> SinkBuilder {
        self.destinations.push(Destination::new(name, output));
        self
    }
}

impl Sink {
    pub fn builder() -> SinkBuilder {
        SinkBuilder::default()
    }

    pub fn stdout() -> Sink {
        Sink::builder().stdout().build()
    }

    /// Appends to `path`, creating it readable by its owner only (events name files
    /// and arguments that may be sensitive). Never rotated.
    pub fn file(path: &Path) -> io::Result<Sink> {
        Ok(Sink::builder().file(path, None)?.build())
    }

    pub fn new(out: Box<dyn Write + Send>) -> Sink {
        Sink::builder().writer("writer", out).build()
    }

    /// Queues one event line and publishes it to the hub; writes the batch when it is
    /// full.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        let event = match &self.redaction {
            Some(redaction) => Cow::Owned(redaction.apply(event)),
            None => Cow::Borrowed(event),
        };
        let start = self.batch.len();
        if let Err(error) = serde_json::to_writer(&mut self.batch, &*event) {
            // Never leave half a line in the batch.
            self.batch.truncate(start);
            self.lost += 1;
            for destination in &mut self.destinations {
                destination.lost += 1;
            }
            return Err(error.into());
        }
        self.batch.push(b'\n');
        self.batch_lines += 1;
        if let Some(hub) = &self.hub {
            hub.publish(event.event_type, &event.session.id, &self.batch[start..]);
        }
        if self.batch.len() >= BATCH_BYTES { self.flush() } else { Ok(()) }
    }

    /// Queues a line already serialized elsewhere (a `run` client copying the daemon's
    /// stream); `line` ends with `\n`. Not redacted again, not published.
    pub fn write_raw(&mut self, line: &[u8]) -> io::Result<()> {
        self.batch.extend_from_slice(line);
        self.batch_lines += 1;
        if self.batch.len() >= BATCH_BYTES { self.flush() } else { Ok(()) }
    }

    /// Writes the batch to every destination. A destination that fails has the batch's
    /// lines counted as lost; the first error is returned, naming its destination.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        for destination in &mut self.destinations {
            match destination.write_batch(&self.batch) {
                Ok(()) => destination.written += self.batch_lines,
                Err(error) => {
                    destination.lost += self.batch_lines;
                    let error = io::Error::new(error.kind(), format!("{}: {error}", destination.name));
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            None => self.written += self.batch_lines,
            Some(_) => self.lost += self.batch_lines,
        }
        self.batch.clear();
        self.batch_lines = 0;
        first_error.map_or(Ok(()), Err)
    }

    /// Lines every destination took.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines some destination failed to take (see `destinations` for which).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Per-destination counts, in the order the destinations were added. The hub is
    /// not among them: see `Hub::dropped_total`.
    pub fn destinations(&self) -> Vec<DestinationStats> {
        self.destinations
            .iter()
            .map(|d| DestinationStats { name: d.name.clone(), written: d.written, lost: d.lost })
            .collect()
    }

    pub fn hub(&self) -> Option<&Hub> {
        self.hub.as_ref()
    }
}

/// The `monitor.tamper` line that reports what happened to the event file at `path`.
pub fn displacement_notice(path: &Path, displacement: &Displacement) -> Vec<u8> {
    let mut event = Context::new().event(types::MONITOR_TAMPER, BootClock::now_boot_ns(), session_ref(0));
    let (operation, kept_as) = match displacement {
        Displacement::Removed => ("event-file-removed", None),
        Displacement::Moved => ("event-file-moved", None),
        Displacement::Replaced { kept_as } => ("event-file-replaced", Some(kept_as.display().to_string())),
    };
    event.tamper = Some(Tamper { path: Some(path.display().to_string()), kept_as, ..Tamper::new(operation) });
    event.monitor = Some(crate::event::monitor_info(None));
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
pub(crate) mod tests;
