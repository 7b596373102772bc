//! Syscall entry and exit: open-family syscalls and `connect`.
//!
//! `raw_syscalls:sys_enter/sys_exit` fire for every syscall of every task; the first
//! thing each does is compare the syscall number against the few watched ones, so
//! unrelated syscalls cost a handful of instructions and no map lookup.
//! Opens are reported at exit, from the file the returned descriptor refers to: the
//! path is the one the kernel resolved, never the string the caller passed.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{
    event::{
        ConnectEvent, PendingConnect,
        SOCKADDR_MAX_BYTES, SyscallEvent, flags, kind, open_syscall,
    },
    maps::Counter,
    policy::{IO_URING_RULE, NO_RULE, OPEN_BY_HANDLE_RULE, PIDFD_GETFD_RULE, action, allow, session_flags},
    session::SessionMember,
};

use crate::{
    path::{self, PathScratch, Resolved},
    policy::{self, Object, Verdict, key_scratch},
    kernel::{
        ReadError, config, count, current_task, emit_with_path, fill_header, read, read_ptr, session_of,
        wakeup_flags,
    },
    maps::{DECISIONS, EVENTS, FILE_SCRATCH, PENDING_CONNECTS},
};

const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_ACCMODE: u32 = 0o3;
/// Flags of an open whose flags cannot be trusted (openat2): judged as a truncation.
const UNTRUSTED_FLAGS: u32 = O_TRUNC;

/// What the syscall being entered or left is, for the watched ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watched {
    Open(u32),
    Connect,
    IoUringSetup,
    PidfdGetfd,
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
    } else {
        None
    }
}

#[inline(always)]
fn syscall_arg(regs: u64, n: usize) -> Result<u64, ReadError> {
    let offset = match n {
        0 => config!(regs.arg0),
        1 => config!(regs.arg1),
        _ => config!(regs.arg2),
    };
    read::<u64>(regs, offset)
}

/// `sys_enter(struct pt_regs *regs, long id)`; raw tracepoint, Linux >= 4.17.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let nr: i64 = ctx.arg(1);
    match watched(nr) {
        // Opens are judged at exit only.
        Some(Watched::Open(syscall)) if syscall != open_syscall::OPEN_BY_HANDLE_AT => {}
        Some(what) => {
            let _ = try_enter(&ctx, what);
        }
        None => {}
    }
    0
}

fn try_enter(ctx: &RawTracePointContext, what: Watched) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    let regs: u64 = ctx.arg(0);
    match what {
        Watched::IoUringSetup => {
            if member.flags & session_flags::DENY_IO_URING != 0 {
                refuse_syscall(&member, config!(syscalls.io_uring_setup), IO_URING_RULE);
            }
        }
        // Taking another process's descriptor could take one a killed violator opened,
        // in the instant before it died.
        Watched::PidfdGetfd => {
            if member.flags & session_flags::RESTRICTS_FILES != 0 {
                refuse_syscall(&member, config!(syscalls.pidfd_getfd), PIDFD_GETFD_RULE);
            }
        }
        // Opens are judged at exit, from the saved registers (which no other thread
        // can change). open_by_handle_at can yield a disconnected dentry whose path
        // cannot be named: refused where files are restricted.
        Watched::Open(open_syscall::OPEN_BY_HANDLE_AT) => {
            if member.flags & session_flags::RESTRICTS_FILES != 0 {
                refuse_syscall(&member, config!(syscalls.open_by_handle_at), OPEN_BY_HANDLE_RULE);
            }
        }
        Watched::Open(_) => {}
        Watched::Connect => {
            let fd = syscall_arg(regs, 0)? as u32;
            let addr = syscall_arg(regs, 1)?;
            let addr_len = syscall_arg(regs, 2)? as u32;
            let mut pending =
                PendingConnect { fd, addr_len, action: action::ALLOW, rule_id: NO_RULE, addr: [0; SOCKADDR_MAX_BYTES] };
            let mut n = addr_len;
            if n > SOCKADDR_MAX_BYTES as u32 {
                n = SOCKADDR_MAX_BYTES as u32;
            }
            if n > 0 {
                // SAFETY: n <= pending.addr.len(); the helper checks the user address.
                let ret = unsafe {
                    bpf_probe_read_user(pending.addr.as_mut_ptr().cast(), n, addr as *const _)
                };
                if ret < 0 {
                    count(Counter::KernelReadError);
                }
            }
            if PENDING_CONNECTS.insert(&pid_tgid, &pending, 0).is_err() {
                count(Counter::PendingMapFull);
            }
        }
    }
    Ok(())
}

/// `sys_exit(struct pt_regs *regs, long ret)`; raw tracepoint, Linux >= 4.17.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let nr = if config!(regs.syscall_nr_size) == 8 {
        read::<i64>(regs, config!(regs.syscall_nr))
    } else {
        read::<i32>(regs, config!(regs.syscall_nr)).map(|nr| nr as i64)
    };
    let Ok(nr) = nr else {
        return 0;
    };
    match watched(nr) {
        Some(Watched::Open(syscall)) => {
            let _ = try_exit_open(&ctx, regs, syscall);
        }
        Some(Watched::Connect) => {
            let _ = try_exit_connect(&ctx);
        }
        Some(Watched::IoUringSetup | Watched::PidfdGetfd) | None => {}
    }
    0
}

fn try_exit_open(ctx: &RawTracePointContext, regs: u64, syscall: u32) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
    // The flags the caller passed, from the saved user registers: stable, unlike user
    // memory. openat2 keeps them in user memory (`struct open_how`), which another
    // thread could change between the kernel's copy and ours: its opens are judged as
    // if they could truncate (`UNTRUSTED_FLAGS`).
    let open_flags = match syscall {
        open_syscall::OPEN => syscall_arg(regs, 1)? as u32,
        open_syscall::OPENAT | open_syscall::OPEN_BY_HANDLE_AT => syscall_arg(regs, 2)? as u32,
        open_syscall::CREAT => O_CREAT | O_WRONLY | O_TRUNC,
        _ => UNTRUSTED_FLAGS,
    };
    let ret: i64 = ctx.arg(1);
    if ret < 0 {
        return Ok(()); // nothing was opened, so there is no file to resolve
    }
    let Some(event) = FILE_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let Some(scratch) = key_scratch() else {
        return Ok(());
    };
    // SAFETY: per-CPU scratch; this program is its only user on this CPU.
    let event = unsafe { &mut *event };
    let mut event_flags = 0;
    if !fill_header(&mut event.header, kind::FILE_OPEN, 0, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.syscall = syscall;
    event.open_flags = open_flags;
    event.fd = ret as u32;
    event.f_mode = 0;
    event.ino = 0;
    event.dev = 0;
    event.path_len = 0;
    let mut verdict = Verdict::UNCHECKED;
    match fd_to_file(ret as u32) {
        Ok(file) => {
            if let Ok(mode) = read::<u32>(file, config!(offsets.file_f_mode)) {
                event.f_mode = mode;
            } else {
                event_flags |= flags::READ_ERROR;
            }
            match describe_file(file, &mut scratch.path) {
                Ok(described) => {
                    event.path_len = path::copy_path(&scratch.path, &described.resolved, &mut event.path);
                    event.ino = described.ino;
                    event.dev = described.resolved.dev;
                    event_flags |= described.resolved.flags;
                    let requested = requested_access(event.f_mode, open_flags);
                    let object = Object {
                        inode: described.inode,
                        dentry: described.dentry,
                        created: event.f_mode & FMODE_CREATED != 0,
                        ino: described.ino,
                    };
                    verdict = policy::decide(&member, false, requested, &described.resolved, &object, scratch);
                }
                Err(ReadError) => event_flags |= flags::READ_ERROR,
            }
        }
        Err(ReadError) => event_flags |= flags::READ_ERROR,
    }
    if event_flags & flags::READ_ERROR != 0 {
        count(Counter::KernelReadError);
        // An enforcing session fails closed: what cannot be resolved is not allowed.
        verdict = policy::fail_closed(&member);
    }
    event.action = verdict.action;
    event.rule_id = verdict.rule_id;
    event.header.flags = event_flags;
    emit_with_path(event);
    Ok(())
}

/// A syscall the session may not make: in enforce mode SIGKILL is sent at entry; the
/// syscall still runs and the process dies on its way back to user space.
#[inline(always)]
pub fn refuse_syscall(member: &SessionMember, nr: u32, rule_id: u32) {
    let verdict = policy::violation(member);
    let Some(mut entry) = DECISIONS.reserve::<SyscallEvent>(0) else {
        count(Counter::DecisionRingbufFull);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let complete = fill_header(&mut event.header, kind::PROCESS_SYSCALL, size_of::<SyscallEvent>() as u32, member.session_id);
    event.header.flags = if complete { 0 } else { flags::READ_ERROR };
    event.nr = nr;
    event.action = verdict;
    event.rule_id = rule_id;
    event._pad = 0;
    entry.submit(2 /* BPF_RB_FORCE_WAKEUP */);
}

/// `FMODE_READ`, `FMODE_WRITE`, `FMODE_CREATED` (include/linux/fs.h, stable since 4.19).
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_CREATED: u32 = 0x10_0000;
const FMODE_PATH: u32 = 0x4000;

/// What an open asks of a file: writing includes creating and truncating it. Decided
/// from the file the kernel opened; the caller's flags add only what the file does not
/// show (truncation, and access mode 3, which opens for ioctls with neither mode bit).
#[inline(always)]
fn requested_access(f_mode: u32, open_flags: u32) -> u32 {
    if f_mode & FMODE_PATH != 0 {
        return 0; // an O_PATH descriptor gives no access to the contents
    }
    let mut requested = 0;
    if f_mode & FMODE_READ != 0 || open_flags & O_ACCMODE == O_ACCMODE {
        requested |= allow::READ;
    }
    if f_mode & (FMODE_WRITE | FMODE_CREATED) != 0 || open_flags & O_TRUNC != 0 || open_flags & O_ACCMODE == O_ACCMODE {
        requested |= allow::WRITE;
    }
    requested
}

/// `current->files->fdt->fd[fd]`.
#[inline(always)]
fn fd_to_file(fd: u32) -> Result<u64, ReadError> {
    let files = read_ptr(current_task(), config!(offsets.task_files))?;
    let fdt = read_ptr(files, config!(offsets.files_fdt))?;
    let max_fds = read::<u32>(fdt, config!(offsets.fdtable_max_fds))?;
    if fd >= max_fds {
        return Err(ReadError);
    }
    let fd_array = read_ptr(fdt, config!(offsets.fdtable_fd))?;
    read_ptr(fd_array, fd * 8)
}

/// Path and inode of an open file.
pub struct Described {
    pub resolved: Resolved,
    pub ino: u64,
    /// `struct inode *` and `struct dentry *` of the file.
    pub inode: u64,
    pub dentry: u64,
}

/// Resolves `file` (a `struct file *`) into `scratch` and reads its inode number.
#[inline(always)]
pub fn describe_file(file: u64, scratch: &mut PathScratch) -> Result<Described, ReadError> {
    let dentry = read_ptr(file, config!(offsets.file_f_path) + config!(offsets.path_dentry))?;
    let resolved = path::resolve(dentry, scratch)?;
    let inode = read_ptr(file, config!(offsets.file_f_inode)).unwrap_or(0);
    let ino = if inode == 0 { 0 } else { read::<u64>(inode, config!(offsets.inode_i_ino)).unwrap_or(0) };
    Ok(Described { resolved, ino, inode, dentry })
}

fn try_exit_connect(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return Ok(());
    };
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
    event.ret = ctx.arg::<i64>(1) as i32;
    // SAFETY: map value pointer, valid until removed below.
    let pending = unsafe { &*pending };
    event.fd = pending.fd;
    event.addr_len = pending.addr_len;
    event.action = pending.action;
    event.rule_id = pending.rule_id;
    event._pad = 0;
    event.addr = pending.addr;
    let _ = PENDING_CONNECTS.remove(&pid_tgid);
    entry.submit(if verdict == action::ALLOW { wakeup_flags() } else { 2 /* BPF_RB_FORCE_WAKEUP */ });
    Ok(())
}
