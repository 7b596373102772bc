//! The eBPF programs' own diagnostics (aya-log: `aya_log_ebpf::warn!` and the like in
//! `monitor-ebpf`), off unless `--ebpf-log LEVEL` asks for them.
//!
//! Off costs nothing: the level is a global in the object's `.rodata`, set to 0 before
//! loading, which the verifier reads as a constant; every log statement is then a
//! branch it proves dead and removes. Their ring buffer shrinks to one page.

use std::os::fd::AsRawFd;

use aya::{Ebpf, EbpfLoader};

/// aya-log's ring buffer in the object (`aya_log_ebpf::macro_support::AYA_LOGS`).
const LOG_RING: &str = "AYA_LOGS";

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

/// Forwards what the programs log to this process's logger (stderr, target
/// `monitor_ebpf::...`), from a thread of its own, for as long as the process runs.
pub fn forward(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut logger = aya_log::EbpfLogger::init(ebpf)?;
    std::thread::Builder::new().name("ebpf-log".into()).spawn(move || {
        let fd = logger.as_raw_fd();
        loop {
            let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; the descriptor lives as long as `logger`.
            if unsafe { libc::poll(&mut poll, 1, -1) } < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                log::error!("the eBPF programs' log: {}", std::io::Error::last_os_error());
                return;
            }
            logger.flush();
        }
    })?;
    Ok(())
}
