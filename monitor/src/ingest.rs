//! Ring buffers -> bounded queue. Runs on its own thread so that a slow sink never
//! stalls reading the kernel's buffers. Violations arrive on their own ring buffer
//! and are read first; they are handed to the `actions` hook before being queued (so
//! a kill-session does not wait behind telemetry). Nothing is dropped here: while the
//! queue is full, telemetry waits in the kernel's ring buffer (see `backlog`).

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use aya::maps::{Array, MapData, RingBuf};
use monitor_common::maps::reader_state;

use crate::{
    backlog::Backlog,
    decode::{KernelEvent, decode},
    queue::Sender,
};

/// While telemetry flows, the ring buffer is read every 5 ms: a record wakes the reader
/// only once 64 KiB are pending, so this bounds event latency and batches the reads.
/// (Violations wake the reader at once.)
pub const POLL_INTERVAL_MS: i32 = 5;

/// While the queue is full, the reader looks at violations this often, and tries again
/// to queue the telemetry it holds.
pub const BACKED_UP_POLL_MS: i32 = 1;

/// When a pass found no telemetry, the reader says so in `READER_STATE` and sleeps
/// until a record wakes it; this timeout is only a safety net.
pub const IDLE_POLL_MS: i32 = 1000;
/// Records read from each ring buffer in a last round at most: more than a full ring
/// buffer holds, so that all it held when the stop began is read, while a session that
/// goes on producing faster than they are decoded cannot hold the stop up for ever.
const LAST_ROUND_MAX: usize = 1 << 18;

pub use crate::item::Item;

/// Losses counted in userspace.
#[derive(Debug, Default)]
pub struct UserspaceLoss {
    pub decode_error: AtomicU64,
}

/// Called for every violation before it is queued; may return an item to queue after it.
pub type DecisionHook = Box<dyn FnMut(&KernelEvent) -> Option<Item> + Send>;

pub struct Ingest {
    stop: Arc<AtomicBool>,
    /// Written by `stop()` to end the thread's wait at once.
    wake: OwnedFd,
    thread: JoinHandle<()>,
}

impl Ingest {
    pub fn spawn(
        mut events: RingBuf<MapData>,
        mut decisions: RingBuf<MapData>,
        mut reader_state: Array<MapData, u32>,
        queue: Sender<Item>,
        loss: Arc<UserspaceLoss>,
        mut on_decision: DecisionHook,
    ) -> Ingest {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        // SAFETY: eventfd has no preconditions; the descriptor is checked and owned below.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(wake >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor, owned by nothing else.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let woken = wake.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                let mut backlog = Backlog::default();
                let mut flowing = false;
                let mut backed_up = false;
                // As last written to `READER_STATE`.
                let mut state = reader_state::READING;
                let mut tell_kernel = |want: u32| {
                    if want != state && reader_state.set(0, want, 0).is_ok() {
                        state = want;
                    }
                    state
                };
                loop {
                    // Read the flag before draining: everything submitted before
                    // `stop()` was called is drained before the thread ends.
                    let last_round = stopping.load(Ordering::Acquire);
                    // While telemetry flows, records wake us once 64 KiB wait, violations
                    // at once. Otherwise we sleep, and from the state on every record
                    // wakes us; one written since the last pass makes the ring buffer
                    // readable, so poll returns at once. While the queue is full, the
                    // telemetry waiting in the ring buffer neither wakes us nor is
                    // waited for.
                    if backed_up {
                        tell_kernel(reader_state::BACKED_UP);
                        // A ring buffer we do not read from now stays readable.
                        if backlog.has_room_for_decisions() {
                            wait_readable(&[decisions.as_raw_fd(), woken], BACKED_UP_POLL_MS);
                        } else {
                            wait_readable(&[woken], BACKED_UP_POLL_MS);
                        }
                    } else {
                        let asleep = !flowing && tell_kernel(reader_state::ASLEEP) == reader_state::ASLEEP;
                        if !asleep {
                            tell_kernel(reader_state::READING);
                        }
                        wait_readable(
                            &[events.as_raw_fd(), decisions.as_raw_fd(), woken],
                            if asleep { IDLE_POLL_MS } else { POLL_INTERVAL_MS },
                        );
                        if asleep {
                            tell_kernel(reader_state::READING);
                        }
                    }
                    // Violations first, and their actions (kill-session) at once.
                    let mut last_round_left = LAST_ROUND_MAX;
                    while backlog.has_room_for_decisions() || last_round && last_round_left > 0 {
                        last_round_left = last_round_left.saturating_sub(1);
                        let Some(record) = decisions.next() else { break };
                        match decode(&record) {
                            Ok(event) => {
                                let follow_up = on_decision(&event);
                                backlog.push_violation(event, follow_up);
                            }
                            Err(error) => {
                                log::warn!("undecodable decision record: {error}");
                                loss.decode_error.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    // Telemetry, as far as the backlog has room (all of it at the end).
                    let mut ring_drained = false;
                    let mut read = false;
                    let mut last_round_left = LAST_ROUND_MAX;
                    while backlog.has_room() || last_round && last_round_left > 0 {
                        last_round_left = last_round_left.saturating_sub(1);
                        let Some(record) = events.next() else {
                            ring_drained = true;
                            break;
                        };
                        read = true;
                        match decode(&record) {
                            Ok(event) => backlog.push_telemetry(event),
                            Err(error) => {
                                log::debug!("undecodable record: {error}");
                                loss.decode_error.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    // In a last round nothing more is read: every violation goes.
                    if backlog.forward(&queue, ring_drained || last_round, last_round).is_err() {
                        return;
                    }
                    backed_up = backlog.waiting_for_room();
                    flowing = read || backed_up;
                    if last_round {
                        return;
                    }
                }
            })
            .expect("spawning the ingest thread");
        Ingest { stop, wake, thread }
    }

    /// Drains what the kernel has submitted so far, then ends the thread (which closes
    /// the queue).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        // Never read back: the thread's later waits return at once too.
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&1u64 as *const u64).cast(), 8) };
        let _ = self.thread.join();
    }
}

/// Waits until one of `fds` (at most 3) is readable or `timeout_ms` passes.
fn wait_readable(fds: &[i32], timeout_ms: i32) {
    let mut pollfds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 3];
    for (pollfd, &fd) in pollfds.iter_mut().zip(fds) {
        pollfd.fd = fd;
    }
    let count = fds.len().min(pollfds.len());
    // SAFETY: the first `count` entries of a valid array of pollfds.
    unsafe { libc::poll(pollfds.as_mut_ptr(), count as libc::nfds_t, timeout_ms) };
}
