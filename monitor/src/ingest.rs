//! Ring buffers -> bounded queue. Runs on its own thread so that a slow sink never
//! stalls reading the kernel's buffers. Violations arrive on their own ring buffer
//! and are read first; they are handed to the `actions` hook before being queued (so
//! a kill-session does not wait behind telemetry) and are never dropped for a full
//! queue, nor are adoptions (which start sessions). Telemetry that cannot be queued is
//! counted, not lost silently.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::TrySendError,
    },
    thread::JoinHandle,
};

use aya::maps::{Array, MapData, RingBuf};

use crate::{
    decode::{KernelEvent, decode},
    queue::Sender,
};

/// While telemetry flows, the ring buffer is read every 5 ms: a record wakes the reader
/// only once 64 KiB are pending, so this bounds event latency and batches the reads.
/// (Violations wake the reader at once.)
pub const POLL_INTERVAL_MS: i32 = 5;

/// When a pass found no telemetry, the reader says so in `READER_ASLEEP` and sleeps
/// until a record wakes it; this timeout is only a safety net.
pub const IDLE_POLL_MS: i32 = 1000;

/// What the pipeline receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Kernel(KernelEvent),
    /// The whole session was killed (kill-session); `pids` were its processes.
    SessionKilled { session: u64, time_ns: u64, pids: Vec<u32>, trigger_pid: u32, error: Option<String> },
}

/// Losses counted in userspace.
#[derive(Debug, Default)]
pub struct UserspaceLoss {
    pub decode_error: AtomicU64,
    pub queue_full: AtomicU64,
}

/// Called for every violation before it is queued; may return an item to queue after it.
pub type DecisionHook = Box<dyn FnMut(&KernelEvent) -> Option<Item> + Send>;

/// Runs once when stopping, after a last drain (whose violations may have killed the
/// session); one more drain follows it, so what it waited for is reported.
pub type Settle = Box<dyn FnOnce() + Send>;

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
        mut reader_asleep: Array<MapData, u32>,
        queue: Sender<Item>,
        loss: Arc<UserspaceLoss>,
        mut on_decision: DecisionHook,
        settle: Settle,
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
                let mut settle = Some(settle);
                let mut violations: Vec<(KernelEvent, Option<Item>)> = Vec::new();
                let mut telemetry: Vec<KernelEvent> = Vec::new();
                let mut flowing = false;
                loop {
                    // Read the flag before draining: everything submitted before
                    // `stop()` was called is drained before the thread ends.
                    let last_round = stopping.load(Ordering::Acquire);
                    // While telemetry flows, records wake us once 64 KiB wait, violations
                    // at once. Otherwise we sleep, and from the flag on every record wakes
                    // us; one written since the last pass makes the ring buffer readable,
                    // so poll returns at once.
                    let asleep = !flowing && reader_asleep.set(0, 1, 0).is_ok();
                    wait_readable(
                        &[events.as_raw_fd(), decisions.as_raw_fd(), woken],
                        if asleep { IDLE_POLL_MS } else { POLL_INTERVAL_MS },
                    );
                    if asleep {
                        let _ = reader_asleep.set(0, 0, 0);
                    }
                    // Violations first, and their actions (kill-session) at once.
                    while let Some(record) = decisions.next() {
                        match decode(&record) {
                            Ok(event) => {
                                let follow_up = on_decision(&event);
                                violations.push((event, follow_up));
                            }
                            Err(error) => {
                                log::warn!("undecodable decision record: {error}");
                                loss.decode_error.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    while let Some(record) = events.next() {
                        match decode(&record) {
                            Ok(event) => telemetry.push(event),
                            Err(error) => {
                                log::debug!("undecodable record: {error}");
                                loss.decode_error.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    flowing = !telemetry.is_empty();
                    // Queue both in kernel time order, so a violation is explained
                    // with the fork and exec that came before it.
                    let mut violations_in_order = violations.drain(..).peekable();
                    for event in telemetry.drain(..) {
                        while let Some((violation, _)) = violations_in_order.peek() {
                            if violation.header().time_ns > event.header().time_ns {
                                break;
                            }
                            let (violation, follow_up) = violations_in_order.next().expect("peeked");
                            if !send_violation(&queue, violation, follow_up) {
                                return;
                            }
                        }
                        // An adoption starts a session: without it the daemon cannot
                        // say whose the session's events are. Never dropped.
                        if matches!(event, KernelEvent::Adopt { .. }) {
                            if queue.send(Item::Kernel(event)).is_err() {
                                return;
                            }
                            continue;
                        }
                        match queue.try_send(Item::Kernel(event)) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                loss.queue_full.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    for (violation, follow_up) in violations_in_order {
                        if !send_violation(&queue, violation, follow_up) {
                            return;
                        }
                    }
                    if last_round {
                        match settle.take() {
                            Some(settle) => settle(),
                            None => return,
                        }
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

/// Queues a violation, waiting for room: violations are never dropped.
fn send_violation(queue: &Sender<Item>, violation: KernelEvent, follow_up: Option<Item>) -> bool {
    if queue.send(Item::Kernel(violation)).is_err() {
        return false;
    }
    follow_up.is_none_or(|item| queue.send(item).is_ok())
}

fn wait_readable(fds: &[i32; 3], timeout_ms: i32) {
    let mut pollfds = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    // SAFETY: valid array of pollfds.
    unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout_ms) };
}
