//! agent-monitor's eBPF programs.
//!
//! Every hook starts with one lookup of the current tgid in `SESSIONS`; processes
//! outside every session return right there. Only raw tracepoints are used: they need
//! no tracefs, work on every kernel this project supports, and carry the syscall
//! number so one object serves x86_64 and aarch64 (numbers come from userspace).
#![no_std]
#![no_main]

mod kernel;
mod maps;
mod net;
mod path;
mod policy;
mod process;
mod syscalls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: never reached: the verifier rejects programs with a reachable panic path.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
