//! Where events go: NDJSON, one object per line, to stdout or a file.
//!
//! Lines are buffered and written in batches; `written` counts lines the destination
//! took, and a failed write counts every line of its batch as lost.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::event::Event;

/// A batch is written once it reaches this size (or at `flush`).
const BATCH_BYTES: usize = 64 * 1024;

pub struct Sink {
    out: Box<dyn Write + Send>,
    batch: Vec<u8>,
    batch_lines: u64,
    written: u64,
    lost: u64,
}

impl Sink {
    pub fn stdout() -> Sink {
        Sink::new(Box::new(io::stdout()))
    }

    /// Appends to `path`, creating it readable by its owner only (events name files
    /// and arguments that may be sensitive).
    pub fn file(path: &Path) -> io::Result<Sink> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(Sink::new(Box::new(file)))
    }

    pub fn new(out: Box<dyn Write + Send>) -> Sink {
        Sink { out, batch: Vec::with_capacity(BATCH_BYTES), batch_lines: 0, written: 0, lost: 0 }
    }

    /// Queues one event line; writes the batch when it is full.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.batch, event)?;
        self.batch.push(b'\n');
        self.batch_lines += 1;
        if self.batch.len() >= BATCH_BYTES { self.flush() } else { Ok(()) }
    }

    /// Writes the batch. On failure its lines are counted as lost and dropped.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = self.out.write_all(&self.batch).and_then(|()| self.out.flush());
        match result {
            Ok(()) => self.written += self.batch_lines,
            Err(_) => self.lost += self.batch_lines,
        }
        self.batch.clear();
        self.batch_lines = 0;
        result
    }

    /// Lines the destination took.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines lost to failed writes.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}
