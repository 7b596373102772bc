//! Tier 2 on the syscall functions themselves, where the kernel has BPF trampolines:
//! the checks of `syscalls` (the same functions), at the entry and exit of
//! `__x64_sys_openat`, `__arm64_sys_connect`, ... (the loader names the function of
//! each program for its architecture).
//!
//! A syscall tracepoint, once any program is attached to one, puts every task of the
//! host on the syscall slow path and builds a record for each watched syscall before
//! the program runs; a trampoline costs only the calls of the watched syscalls, and
//! nothing else. Each program serves one syscall, so none dispatches on the number.
//! Like the tracepoints, these see native syscalls only: foreign ABIs go through
//! other functions (`__ia32_sys_*`), which the launcher's seccomp filter closes off.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use monitor_common::event::open_syscall;

use crate::{
    kernel::{ReadError, Typed},
    syscalls::{Watched, syscall_arg, try_enter, try_exit_connect, try_exit_open},
};

/// The value the syscall function returned: the slot after its one argument (`const
/// struct pt_regs *regs`).
#[inline(always)]
fn returned(ctx: &FExitContext) -> i64 {
    ctx.arg::<i64>(1)
}

/// Connect's arguments, from the user registers saved at entry.
#[inline(always)]
fn connect_args() -> Result<(u32, u64, u32), ReadError> {
    let current = Typed::current_task();
    Ok((
        syscall_arg(current, 0) as u32,
        syscall_arg(current, 1),
        syscall_arg(current, 2) as u32,
    ))
}

#[fexit]
pub fn fexit_open(ctx: FExitContext) -> i32 {
    let _ = try_exit_open(returned(&ctx), open_syscall::OPEN);
    0
}

#[fexit]
pub fn fexit_creat(ctx: FExitContext) -> i32 {
    let _ = try_exit_open(returned(&ctx), open_syscall::CREAT);
    0
}

#[fexit]
pub fn fexit_openat(ctx: FExitContext) -> i32 {
    let _ = try_exit_open(returned(&ctx), open_syscall::OPENAT);
    0
}

#[fexit]
pub fn fexit_openat2(ctx: FExitContext) -> i32 {
    let _ = try_exit_open(returned(&ctx), open_syscall::OPENAT2);
    0
}

#[fexit]
pub fn fexit_open_by_handle_at(ctx: FExitContext) -> i32 {
    let _ = try_exit_open(returned(&ctx), open_syscall::OPEN_BY_HANDLE_AT);
    0
}

#[fexit]
pub fn fexit_connect(ctx: FExitContext) -> i32 {
    let _ = try_exit_connect(returned(&ctx));
    0
}

#[fentry]
pub fn fentry_open_by_handle_at(_ctx: FEntryContext) -> i32 {
    let _ = try_enter(Watched::Open(open_syscall::OPEN_BY_HANDLE_AT), connect_args);
    0
}

#[fentry]
pub fn fentry_connect(_ctx: FEntryContext) -> i32 {
    let _ = try_enter(Watched::Connect, connect_args);
    0
}

#[fentry]
pub fn fentry_io_uring_setup(_ctx: FEntryContext) -> i32 {
    let _ = try_enter(Watched::IoUringSetup, connect_args);
    0
}

#[fentry]
pub fn fentry_pidfd_getfd(_ctx: FEntryContext) -> i32 {
    let _ = try_enter(Watched::PidfdGetfd, connect_args);
    0
}
