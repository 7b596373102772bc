//! Ring buffer -> bounded queue. Runs on its own thread so that a slow sink never
//! stalls reading the kernel's buffer; what cannot be queued is counted, not lost
//! silently.

use std::{
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    thread::JoinHandle,
};

use aya::maps::{MapData, RingBuf};

use crate::decode::{KernelEvent, decode};

/// How often the ring buffer is read when the kernel sends no wakeup: the kernel
/// wakes the reader only once 64 KiB are pending, so this bounds event latency.
pub const POLL_INTERVAL_MS: i32 = 5;

/// Capacity of the queue between ingest and the pipeline, in events.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Losses counted in userspace.
#[derive(Debug, Default)]
pub struct UserspaceLoss {
    pub decode_error: AtomicU64,
    pub queue_full: AtomicU64,
}

pub struct Ingest {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Ingest {
    pub fn spawn(mut ring: RingBuf<MapData>, queue: SyncSender<KernelEvent>, loss: Arc<UserspaceLoss>) -> Ingest {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                loop {
                    // Read the flag before draining: everything submitted before
                    // `stop()` was called is drained before the thread ends.
                    let last_round = stopping.load(Ordering::Acquire);
                    wait_readable(ring.as_raw_fd(), POLL_INTERVAL_MS);
                    while let Some(record) = ring.next() {
                        match decode(&record) {
                            Ok(event) => match queue.try_send(event) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => {
                                    loss.queue_full.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            },
                            Err(error) => {
                                log::debug!("undecodable record: {error}");
                                loss.decode_error.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if last_round {
                        return;
                    }
                }
            })
            .expect("spawning the ingest thread");
        Ingest { stop, thread }
    }

    /// Drains what the kernel has submitted so far, then ends the thread (which closes
    /// the queue).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

fn wait_readable(fd: i32, timeout_ms: i32) {
    let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
}
