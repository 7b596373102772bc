//! Syscall entry and exit: open-family syscalls and `connect`.
//!
//! The programs attach to the per-syscall tracepoints (`syscalls:sys_exit_openat`, ...)
//! of the watched syscalls only, never to `raw_syscalls`: the kernel then runs no
//! program at all for the other syscalls (a bitmap test in C), where a raw
//! `sys_enter`/`sys_exit` program would run twice for every syscall of every task.
//! Opens are reported at exit, from the file the returned descriptor refers to: the
//! path is the one the kernel resolved, never the string the caller passed.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    event::{ConnectEvent, SOCKADDR_MAX_BYTES, SyscallEvent, flags, kind, open_syscall},
    maps::{Counter, lsm_tier},
    policy::{
        IO_URING_RULE, NO_RULE, OPEN_BY_HANDLE_RULE, PIDFD_GETFD_RULE, SOCKET_FAMILY_RULE, action, session_flags,
        socket_family,
    },
    session::SessionMember,
};

use crate::{
    file,
    kernel::{
        ReadError, Typed, config, count, fill_header, lsm_enforces, read_ptr, session_of, wakeup_flags, zero_by_words,
    },
    maps::{DECISIONS, EVENTS, PENDING_CONNECTS, PENDING_SCRATCH},
    net::family_allowed,
    policy::{self, Tier},
    unix,
};

const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
/// Flags of an open whose flags cannot be trusted (openat2): judged as a truncation.
const UNTRUSTED_FLAGS: u32 = O_TRUNC;

/// `SOCK_TYPE_MASK` and the obsolete `SOCK_PACKET` (include/linux/net.h).
const SOCK_TYPE_MASK: u32 = 0xf;
const SOCK_PACKET: u32 = 10;

/// What the syscall being entered or left is, for the watched ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    Open(u32),
    Connect,
    IoUringSetup,
    PidfdGetfd,
    Socket,
}

#[inline(always)]
fn watched(nr: i64) -> Option<Watched> {
    if nr == config!(syscalls.openat) as i64 {
        Some(Watched::Open(open_syscall::OPENAT))
    } else if nr == config!(syscalls.open) as i64 {
        Some(Watched::Open(open_syscall::OPEN))
    } else if nr == config!(syscalls.openat2) as i64 {
        Some(Watched::Open(open_syscall::OPENAT2))
    } else if nr == config!(syscalls.creat) as i64 {
        Some(Watched::Open(open_syscall::CREAT))
    } else if nr == config!(syscalls.open_by_handle_at) as i64 {
        Some(Watched::Open(open_syscall::OPEN_BY_HANDLE_AT))
    } else if nr == config!(syscalls.connect) as i64 {
        Some(Watched::Connect)
    } else if nr == config!(syscalls.io_uring_setup) as i64 {
        Some(Watched::IoUringSetup)
    } else if nr == config!(syscalls.pidfd_getfd) as i64 {
        Some(Watched::PidfdGetfd)
    } else if nr == config!(syscalls.socket) as i64 {
        Some(Watched::Socket)
    } else {
        None
    }
}

/// Offsets in the record of a `syscalls:sys_enter_*` / `sys_exit_*` tracepoint
/// (kernel/trace/trace_syscalls.c; the same since Linux 3.x on every architecture):
/// the 8-byte common header, the syscall number, then at 16 the arguments (enter,
/// 8 bytes each, copied from the registers at entry) or the return value (exit).
const RECORD_NR: usize = 8;
const RECORD_ARGS: usize = 16;
const RECORD_RET: usize = 16;

#[inline(always)]
fn record<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: a direct load from the record; the verifier checks offset and size.
    unsafe { *(ctx.as_ptr().add(offset) as *const T) }
}

/// Argument `n` of the current syscall, from the user registers saved at its entry
/// (which no other thread can change; at exit as at entry).
#[inline(always)]
pub(crate) fn syscall_arg(current: Typed, n: usize) -> u64 {
    let offset = match n {
        0 => config!(regs.arg0),
        1 => config!(regs.arg1),
        _ => config!(regs.arg2),
    };
    current.user_regs().load::<u64>(offset)
}

/// `syscalls:sys_enter_NAME` of connect, socket, io_uring_setup, pidfd_getfd and
/// open_by_handle_at (see `monitor::loader`).
#[tracepoint]
pub fn syscall_enter(ctx: TracePointContext) -> u32 {
    let nr = record::<i32>(&ctx, RECORD_NR) as i64;
    match watched(nr) {
        // Opens are judged at exit only.
        Some(Watched::Open(syscall)) if syscall != open_syscall::OPEN_BY_HANDLE_AT => {}
        Some(what) => {
            // Read with the helper, not loaded directly: the kernel refuses to attach a
            // program that loads past the end of the smallest record it is attached to
            // (io_uring_setup has two arguments).
            // SAFETY: offsets inside connect's and socket's records (three arguments),
            // the only ones read through this.
            let connect_args = || unsafe {
                Ok((
                    ctx.read_at::<u64>(RECORD_ARGS).map_err(|_| ReadError)? as u32,
                    ctx.read_at::<u64>(RECORD_ARGS + 8).map_err(|_| ReadError)?,
                    ctx.read_at::<u64>(RECORD_ARGS + 16).map_err(|_| ReadError)? as u32,
                ))
            };
            let _ = try_enter(what, connect_args);
        }
        None => {}
    }
    0
}

/// The checks at a watched syscall's entry; `connect_args` gives the first three
/// arguments: connect's (fd, address, address length), socket's family first.
#[inline(always)]
pub(crate) fn try_enter(
    what: Watched,
    connect_args: impl FnOnce() -> Result<(u32, u64, u32), ReadError>,
) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    match what {
        // The LSM hooks see every file io_uring, open_by_handle_at or pidfd_getfd
        // would hand out; these refusals are for the tracepoint tier only.
        Watched::IoUringSetup | Watched::PidfdGetfd | Watched::Open(_) if lsm_enforces(lsm_tier::FILES) => {}
        Watched::Connect | Watched::Socket if lsm_enforces(lsm_tier::NET) => {}
        // The kernel makes the socket (loading its family's module if need be) before
        // the kill lands: refused before the effect only with BPF LSM.
        Watched::Socket => {
            let (family, socket_type, _) = connect_args()?;
            // The kernel makes `socket(AF_INET, SOCK_PACKET)` a packet socket.
            let family = if family == socket_family::INET && socket_type as u32 & SOCK_TYPE_MASK == SOCK_PACKET {
                socket_family::PACKET
            } else {
                family
            };
            if !family_allowed(&member, family) {
                refuse_syscall(&member, config!(syscalls.socket), SOCKET_FAMILY_RULE, family);
            }
        }
        Watched::IoUringSetup => {
            if member.flags & session_flags::DENY_IO_URING != 0 {
                refuse_syscall(&member, config!(syscalls.io_uring_setup), IO_URING_RULE, 0);
            }
        }
        // Taking another process's descriptor could take one a killed violator opened
        // (a file, a socket of a refused family), in the instant before it died.
        Watched::PidfdGetfd => {
            if member.flags & session_flags::HAS_POLICY != 0 {
                refuse_syscall(&member, config!(syscalls.pidfd_getfd), PIDFD_GETFD_RULE, 0);
            }
        }
        // Opens are judged at exit, from the saved registers (which no other thread
        // can change). open_by_handle_at can yield a disconnected dentry whose path
        // cannot be named: refused where files are restricted.
        Watched::Open(open_syscall::OPEN_BY_HANDLE_AT) => {
            if member.flags & session_flags::RESTRICTS_FILES != 0 {
                refuse_syscall(&member, config!(syscalls.open_by_handle_at), OPEN_BY_HANDLE_RULE, 0);
            }
        }
        Watched::Open(_) => {}
        Watched::Connect => {
            let (fd, addr, addr_len) = connect_args()?;
            let Some(pending) = PENDING_SCRATCH.get_ptr_mut(0) else {
                return Err(ReadError);
            };
            // SAFETY: per-CPU scratch; this program is its only user on this CPU.
            let pending = unsafe { &mut *pending };
            pending.fd = fd;
            pending.addr_len = addr_len;
            pending.action = action::ALLOW;
            pending.rule_id = NO_RULE;
            zero_by_words(&mut pending.addr);
            let mut n = addr_len;
            if n > SOCKADDR_MAX_BYTES as u32 {
                n = SOCKADDR_MAX_BYTES as u32;
            }
            if n > 0 {
                // SAFETY: n <= pending.addr.len(); the helper checks the user address.
                let ret = unsafe { bpf_probe_read_user(pending.addr.as_mut_ptr().cast(), n, addr as *const _) };
                if ret < 0 {
                    count(Counter::KernelReadError);
                }
            }
            if PENDING_CONNECTS.insert(&pid_tgid, &*pending, 0).is_err() {
                count(Counter::PendingMapFull);
            }
        }
    }
    Ok(())
}

/// `syscalls:sys_exit_NAME` of the open syscalls and connect (see `monitor::loader`).
#[tracepoint]
pub fn syscall_exit(ctx: TracePointContext) -> u32 {
    let nr = record::<i32>(&ctx, RECORD_NR) as i64;
    let ret = record::<i64>(&ctx, RECORD_RET);
    match watched(nr) {
        Some(Watched::Open(syscall)) => {
            let _ = try_exit_open(ret, syscall);
        }
        Some(Watched::Connect) => {
            let _ = try_exit_connect(ret);
        }
        Some(Watched::IoUringSetup | Watched::PidfdGetfd | Watched::Socket) | None => {}
    }
    0
}

#[inline(always)]
pub(crate) fn try_exit_open(ret: i64, syscall: u32) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    if lsm_enforces(lsm_tier::FILES) {
        return Ok(()); // the LSM file_open hook judged it
    }
    // The flags the caller passed, from the saved user registers: stable, unlike user
    // memory. openat2 keeps them in user memory (`struct open_how`), which another
    // thread could change between the kernel's copy and ours: its opens are judged as
    // if they could truncate (`UNTRUSTED_FLAGS`).
    let current = Typed::current_task();
    let open_flags = match syscall {
        open_syscall::OPEN => syscall_arg(current, 1) as u32,
        open_syscall::OPENAT | open_syscall::OPEN_BY_HANDLE_AT => syscall_arg(current, 2) as u32,
        open_syscall::CREAT => O_CREAT | O_WRONLY | O_TRUNC,
        _ => UNTRUSTED_FLAGS,
    };
    if ret < 0 {
        return Ok(()); // nothing was opened, so there is no file to resolve
    }
    match fd_to_file(current, ret as u32) {
        Ok(file) => {
            file::judge_open(&member, file, syscall, open_flags, ret as u32, Tier::Tracepoint);
        }
        Err(ReadError) => {
            count(Counter::KernelReadError);
            policy::fail_closed(&member, Tier::Tracepoint);
        }
    }
    Ok(())
}

/// A syscall the session may not make: in enforce mode SIGKILL is sent at entry; the
/// syscall still runs and the process dies on its way back to user space.
#[inline(always)]
pub fn refuse_syscall(member: &SessionMember, nr: u32, rule_id: u32, arg: u32) {
    let verdict = policy::enforce(member, Tier::Tracepoint);
    let Some(mut entry) = DECISIONS.reserve::<SyscallEvent>(0) else {
        count(Counter::DecisionRingbufFull);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let complete =
        fill_header(&mut event.header, kind::PROCESS_SYSCALL, size_of::<SyscallEvent>() as u32, member.session_id);
    event.header.flags = if complete { 0 } else { flags::READ_ERROR };
    event.nr = nr;
    event.action = verdict;
    event.rule_id = rule_id;
    event.arg = arg;
    entry.submit(2 /* BPF_RB_FORCE_WAKEUP */);
}

/// `current->files->fdt->fd[fd]` (`current`: the current task). The array is `struct file **`, which BTF does not
/// type (a pointer to a pointer): its element is read with the helper.
#[inline(always)]
fn fd_to_file(current: Typed, fd: u32) -> Result<u64, ReadError> {
    let fdt = current.load_ptr(config!(offsets.task_files))?.load_ptr(config!(offsets.files_fdt))?;
    let max_fds = fdt.load::<u32>(config!(offsets.fdtable_max_fds));
    let files = fdt.load::<u64>(config!(offsets.fdtable_fd));
    if fd >= max_fds || files == 0 {
        return Err(ReadError);
    }
    read_ptr(files, fd * 8)
}

#[inline(always)]
pub(crate) fn try_exit_connect(ret: i64) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    // A unix socket's name is a file: judged as one, unless the LSM hooks did.
    if ret == 0 && !lsm_enforces(lsm_tier::FILES) {
        let current = Typed::current_task();
        match fd_to_file(current, syscall_arg(current, 0) as u32).and_then(|file| unix::judge_connected(&member, file))
        {
            Ok(()) => {}
            Err(ReadError) => {
                count(Counter::KernelReadError);
                policy::fail_closed(&member, Tier::Tracepoint);
            }
        }
    }
    let Some(pending) = PENDING_CONNECTS.get_ptr(&pid_tgid) else {
        return Ok(());
    };
    // SAFETY: map value pointer, valid until removed below.
    let verdict = unsafe { (*pending).action };
    let ring = if verdict == action::ALLOW { &EVENTS } else { &DECISIONS };
    let Some(mut entry) = ring.reserve::<ConnectEvent>(0) else {
        count(if verdict == action::ALLOW { Counter::RingbufFull } else { Counter::DecisionRingbufFull });
        let _ = PENDING_CONNECTS.remove(&pid_tgid);
        return Ok(());
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let mut event_flags = 0;
    if !fill_header(&mut event.header, kind::NET_CONNECT, size_of::<ConnectEvent>() as u32, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.header.flags = event_flags;
    event.ret = ret as i32;
    // SAFETY: map value pointer, valid until removed below.
    let pending = unsafe { &*pending };
    event.fd = pending.fd;
    event.addr_len = pending.addr_len;
    event.action = pending.action;
    event.rule_id = pending.rule_id;
    event._pad = 0;
    // A helper copy: an assignment compiles to a byte-at-a-time memmove call.
    // SAFETY: both buffers are SOCKADDR_MAX_BYTES long; a failed copy zeroes `addr`.
    let _ = unsafe { bpf_probe_read_kernel_buf(pending.addr.as_ptr(), &mut event.addr) };
    let _ = PENDING_CONNECTS.remove(&pid_tgid);
    entry.submit(if verdict == action::ALLOW {
        wakeup_flags()
    } else {
        2 /* BPF_RB_FORCE_WAKEUP */
    });
    Ok(())
}
