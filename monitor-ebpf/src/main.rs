//! agent-monitor's eBPF programs.
//!
//! Every hook starts with `kernel::session_of` of the current tgid; processes
//! outside every session return right there. The one exception is exec, where such a
//! process may be adopted into a new session (`adopt`): a few map lookups.
//!
//! Two tiers enforce the same compiled policy. Tier 1, where the kernel runs BPF LSM
//! programs: LSM hooks refuse an operation before it happens (`lsm_files`, `lsm_net`,
//! `self_protection`). Tier 2, everywhere: the tracepoints of the watched syscalls
//! (whose records carry the syscall number, so one object serves x86_64 and aarch64)
//! kill a violator before it returns to user space, and cgroup socket hooks refuse
//! network access. Process lifecycle comes from raw tracepoints in both tiers.
//! Userspace picks the tier per resource and says which in `LSM_TIERS`.
#![no_std]
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "core_intrinsics: the atomic and, or and exchange on map values (kernel.rs, scratch.rs)"
)]
#![allow(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys and values are passed by reference as written: by value, one that lies in map memory is copied onto the stack (a NameKey taken by value tripled file_open's verification on 6.1)"
)]
#![no_main]

mod adopt;
mod file;
mod file_change;
mod kernel;
mod lsm;
mod lsm_files;
mod lsm_net;
mod maps;
mod net;
mod path;
mod policy;
mod process;
mod scratch;
mod self_protection;
mod special_files;
mod syscall_functions;
mod syscalls;
mod unix;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: never reached: the verifier rejects programs with a reachable panic path.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
