//! Where events go: NDJSON, one object per line, to stdout or a file.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::event::Event;

pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    written: u64,
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
        Sink { out: BufWriter::with_capacity(64 * 1024, out), written: 0 }
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn written(&self) -> u64 {
        self.written
    }
}
