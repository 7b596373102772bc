//! The floor under any syscall tracepoint: once one is enabled, the kernel sends every
//! task on the host through its slower syscall entry and exit, whatever runs there.
//! Enabling the tracefs events of one syscall the loops never make (`getppid`) puts
//! the loops on that path with nothing attached to their own syscalls.

use std::path::PathBuf;

use anyhow::{Context, bail};

const EVENTS: [&str; 2] = ["sys_enter_getppid", "sys_exit_getppid"];

/// The two events enabled; disabled again when dropped.
pub struct SlowPath {
    enabled: Vec<PathBuf>,
}

impl SlowPath {
    pub fn enable() -> anyhow::Result<SlowPath> {
        let dir = PathBuf::from("/sys/kernel/tracing/events/syscalls");
        let mut path = SlowPath { enabled: Vec::new() };
        for event in EVENTS {
            let enable = dir.join(event).join("enable");
            let state =
                std::fs::read_to_string(&enable).with_context(|| format!("{} (tracefs mounted?)", enable.display()))?;
            if state.trim() != "0" {
                bail!("{} is already enabled by someone else: not touching it", enable.display());
            }
            std::fs::write(&enable, "1").with_context(|| format!("enabling {}", enable.display()))?;
            path.enabled.push(enable);
        }
        Ok(path)
    }
}

impl Drop for SlowPath {
    fn drop(&mut self) {
        for enable in &self.enabled {
            let _ = std::fs::write(enable, "0");
        }
    }
}
