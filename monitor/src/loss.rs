//! The one place that counts what was lost and reports it as `monitor.loss`.

use std::{sync::atomic::Ordering, time::Duration};

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

/// How often the loss counters are read.
pub const LOSS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Writes a `monitor.loss` event about `session` (`None`: the daemon as a whole) if
/// anything more was lost since `reported`.
pub fn report_loss(pipeline: &mut Pipeline, reported: &mut Loss, loss: Loss, session: Option<u64>) {
    if loss.total() > reported.total() {
        let mut event =
            pipeline.context.event(types::MONITOR_LOSS, BootClock::now_boot_ns(), session_ref(session.unwrap_or(0)));
        if session.is_none() {
            event.session.id = NO_SESSION.to_owned();
        }
        event.loss = Some(loss);
        pipeline.write(&event);
        *reported = loss;
    }
}

/// Everything lost so far: in the kernel, in decoding, in the sinks.
pub fn current_loss(
    counters: &PerCpuArray<MapData, u64>,
    skipped_runs: &SkippedRuns,
    user: &UserspaceLoss,
    pipeline: &Pipeline,
) -> Loss {
    let kernel = |c: Counter| counters.get(&(c as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
    Loss {
        ringbuf_full: kernel(Counter::RingbufFull),
        session_map_full: kernel(Counter::SessionMapFull),
        kernel_read_error: kernel(Counter::KernelReadError),
        pending_map_full: kernel(Counter::PendingMapFull),
        decision_ringbuf_full: kernel(Counter::DecisionRingbufFull),
        decode_error: user.decode_error.load(Ordering::Relaxed),
        queue_full: 0,
        sink_error: pipeline.sink.lost(),
        programs_skipped: skipped_runs.total(),
    }
}
