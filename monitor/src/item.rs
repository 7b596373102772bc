//! What the ingest thread hands the pipeline, through the queue or the backlog.

use crate::decode::KernelEvent;

/// What the pipeline receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Kernel(KernelEvent),
    /// The whole session was killed (kill-session); `pids` were its processes.
    SessionKilled {
        session: u64,
        time_ns: u64,
        pids: Vec<u32>,
        trigger_pid: u32,
        error: Option<String>,
    },
}
