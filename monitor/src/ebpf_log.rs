//! The eBPF programs' own diagnostics (aya-log: `aya_log_ebpf::warn!` and the like in
//! `monitor-ebpf`), off unless `--ebpf-log LEVEL` asks for them.
//!
//! Off costs nothing on the paths agents use: the level is a global in the object's
//! `.rodata`, set to 0 before loading, which the verifier reads as a constant; every log
//! statement is then a branch it proves dead and removes. Their ring buffer shrinks to
//! one page.

use std::{
    os::fd::AsRawFd,
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::{Ebpf, EbpfLoader};

/// aya-log's ring buffer in the object (`aya_log_ebpf::macro_support::AYA_LOGS`).
const LOG_RING: &str = "AYA_LOGS";

/// At most this many records a second reach the log: a session member can make the
/// programs lose events on purpose, each one a record, and the journal's rate limit
/// would then drop the monitor's own messages.
const RECORDS_PER_SECOND: u32 = 50;

/// Sets the programs' log level before the object loads: `None` turns every log
/// statement off.
pub fn configure(loader: &mut EbpfLoader<'_>, level: Option<log::Level>) {
    // aya-log's levels are log's, numbered alike (Error = 1 ... Trace = 5); 0 is off.
    static OFF: u8 = 0;
    static LEVELS: [u8; 6] = [0, 1, 2, 3, 4, 5];
    let value = level.map_or(&OFF, |level| &LEVELS[level as usize]);
    loader.override_global(aya_log::LEVEL, value, true);
    if level.is_none() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
        loader.map_max_entries(LOG_RING, page);
    }
}

/// The programs' log ring buffer, taken from the loaded object, not read yet.
pub struct Reader(aya_log::EbpfLogger<RateLimited>);

impl Reader {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Reader> {
        Ok(Reader(aya_log::EbpfLogger::init_with_logger(ebpf, RateLimited::new(log::logger()))?))
    }

    /// Forwards what the programs log to this process's logger (stderr, target
    /// `monitor_ebpf::...`) from a thread of its own, for as long as the process runs.
    /// Started once the programs are loaded: not while the process is in a mount
    /// namespace of its own (`tracefs::with_tracefs`), which a second thread would
    /// keep it from leaving.
    pub fn spawn(self) -> std::io::Result<()> {
        let mut logger = self.0;
        std::thread::Builder::new().name("ebpf-log".into()).spawn(move || {
            let fd = logger.as_raw_fd();
            loop {
                let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd; the descriptor lives as long as `logger`.
                if unsafe { libc::poll(&mut poll, 1, -1) } < 0 {
                    let error = std::io::Error::last_os_error();
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        log::error!("the eBPF programs' log: {error}");
                        return;
                    }
                }
                logger.flush();
            }
        })?;
        Ok(())
    }
}

/// A logger that passes on at most [`RECORDS_PER_SECOND`] records a second and says
/// how many it dropped.
pub struct RateLimited {
    inner: &'static dyn log::Log,
    /// (start of the current second, records passed in it, records dropped in it).
    window: Mutex<(Instant, u32, u64)>,
}

impl RateLimited {
    fn new(inner: &'static dyn log::Log) -> RateLimited {
        RateLimited { inner, window: Mutex::new((Instant::now(), 0, 0)) }
    }

    /// Whether `record` may pass now; reports the records dropped in the last second
    /// once a new one begins.
    fn admit(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.elapsed() >= Duration::from_secs(1) {
            let dropped = window.2;
            *window = (Instant::now(), 0, 0);
            if dropped > 0 {
                // To the process's own logger, not through this one.
                log::warn!(
                    "the eBPF programs logged {dropped} more records in a second than the {RECORDS_PER_SECOND} shown"
                );
            }
        }
        if window.1 < RECORDS_PER_SECOND {
            window.1 += 1;
            true
        } else {
            window.2 += 1;
            false
        }
    }
}

impl log::Log for RateLimited {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.inner.enabled(record.metadata()) && self.admit() {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    struct Counting(AtomicU32);

    impl log::Log for Counting {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, _: &log::Record<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn flush(&self) {}
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_and_the_next_second_passes_again() {
        let inner: &'static Counting = Box::leak(Box::new(Counting(AtomicU32::new(0))));
        let limited = RateLimited::new(inner);
        let record = log::Record::builder().level(log::Level::Warn).target("monitor_ebpf::kernel").build();
        for _ in 0..1000 {
            log::Log::log(&limited, &record);
        }
        assert_eq!(inner.0.load(Ordering::Relaxed), RECORDS_PER_SECOND);
        // A second later the window opens again.
        limited.window.lock().unwrap().0 -= Duration::from_secs(1);
        log::Log::log(&limited, &record);
        assert_eq!(inner.0.load(Ordering::Relaxed), RECORDS_PER_SECOND + 1);
    }
}
