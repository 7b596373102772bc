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
    Ok((syscall_arg(current, 0) as u32, syscall_arg(current, 1), syscall_arg(current, 2) as u32))
}

/// `fexit_<syscall>`: the open check at the exit of one open syscall's function.
macro_rules! open_exit {
    ($program:ident, $syscall:expr) => {
        #[fexit]
        pub fn $program(ctx: FExitContext) -> i32 {
            let _ = try_exit_open(returned(&ctx), $syscall);
            0
        }
    };
}

/// `fentry_<syscall>`: the entry check of one syscall's function.
macro_rules! entry {
    ($program:ident, $what:expr) => {
        #[fentry]
        pub fn $program(_ctx: FEntryContext) -> i32 {
            let _ = try_enter($what, connect_args);
            0
        }
    };
}

open_exit!(fexit_open, open_syscall::OPEN);
open_exit!(fexit_creat, open_syscall::CREAT);
open_exit!(fexit_openat, open_syscall::OPENAT);
open_exit!(fexit_openat2, open_syscall::OPENAT2);
open_exit!(fexit_open_by_handle_at, open_syscall::OPEN_BY_HANDLE_AT);
entry!(fentry_open_by_handle_at, Watched::Open(open_syscall::OPEN_BY_HANDLE_AT));
entry!(fentry_connect, Watched::Connect);
entry!(fentry_io_uring_setup, Watched::IoUringSetup);
entry!(fentry_pidfd_getfd, Watched::PidfdGetfd);
entry!(fentry_socket, Watched::Socket);

#[fexit]
pub fn fexit_connect(ctx: FExitContext) -> i32 {
    let _ = try_exit_connect(returned(&ctx));
    0
}
