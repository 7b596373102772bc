//! The one place that counts what was lost and reports it as `monitor.loss`.

use std::sync::{Arc, atomic::Ordering};

use aya::maps::{MapData, PerCpuArray};
use monitor_common::maps::Counter;

use crate::{
    clock::BootClock,
    event::{Loss, NO_SESSION, types},
    event_context::session_ref,
    ingest::UserspaceLoss,
    pipeline::Pipeline,
    skipped_runs::SkippedRuns,
};

/// What loss is counted in: the kernel's counters, the programs' skipped runs, and what
/// userspace could not decode (the sinks count their own).
pub struct LossCounters {
    pub kernel: PerCpuArray<MapData, u64>,
    pub skipped_runs: SkippedRuns,
    pub user: Arc<UserspaceLoss>,
}

impl LossCounters {
    /// Everything lost so far: in the kernel, in decoding, in `pipeline`'s sinks.
    pub fn current(&self, pipeline: &Pipeline) -> Loss {
        let kernel = |c: Counter| self.kernel.get(&(c as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
        Loss {
            ringbuf_full: kernel(Counter::RingbufFull),
            session_map_full: kernel(Counter::SessionMapFull),
            kernel_read_error: kernel(Counter::KernelReadError),
            pending_map_full: kernel(Counter::PendingMapFull),
            decision_ringbuf_full: kernel(Counter::DecisionRingbufFull),
            decode_error: self.user.decode_error.load(Ordering::Relaxed),
            queue_full: 0,
            sink_error: pipeline.sink.lost(),
            programs_skipped: self.skipped_runs.total(),
        }
    }
}

/// Writes `monitor.loss` as loss grows: about one session (`run`) or about none (the
/// daemon as a whole).
pub struct LossReport {
    counters: LossCounters,
    session: Option<u64>,
    reported: Loss,
}

impl LossReport {
    pub fn new(counters: LossCounters, session: Option<u64>) -> LossReport {
        LossReport { counters, session, reported: Loss::default() }
    }

    /// From now on, reports are about `session` (a standalone `run`'s one session).
    pub fn about(&mut self, session: u64) {
        self.session = Some(session);
    }

    pub fn current(&self, pipeline: &Pipeline) -> Loss {
        self.counters.current(pipeline)
    }

    /// A `monitor.loss` event if anything more was lost since the last one.
    pub fn report(&mut self, pipeline: &mut Pipeline) {
        let loss = self.current(pipeline);
        if loss.total() > self.reported.total() {
            let mut event = pipeline.context.event(
                types::MONITOR_LOSS,
                BootClock::now_boot_ns(),
                session_ref(self.session.unwrap_or(0)),
            );
            if self.session.is_none() {
                event.session.id = NO_SESSION.to_owned();
            }
            event.loss = Some(loss);
            pipeline.write(&event);
            self.reported = loss;
        }
    }
}
