//! Starts a command as the first process of a new session.
//!
//! The child adds itself to the kernel's session map between fork and exec, so the
//! exec and every instruction after it are inside the session; its children inherit
//! membership in the kernel at fork. If registration fails, the command never runs.

use std::{
    ffi::{CString, OsString},
    io,
    os::unix::process::CommandExt,
    process::{Child, Command},
};

use monitor_common::session::SessionMember;

use crate::{
    capabilities::CapabilityEnvelope, cgroup_fence::ReadOnlyCgroups, guard_filter::GuardFilter,
    seccomp::ForeignAbiFilter, session_map::Registrar,
};

/// Starts `command` in the session (`registrar`: the session maps); with `cgroup` (its `cgroup.procs`), inside that
/// cgroup first; with `foreign_abi`, under the seccomp filter that kills syscalls made
/// through a foreign ABI; with `guard`, under the seccomp envelope (and tier-2
/// self-protection); with `capabilities`, inside the capability envelope.
#[allow(clippy::too_many_arguments, reason = "each argument is one independent envelope of the session")]
pub fn spawn_in_session(
    command: &[OsString],
    registrar: Registrar,
    member: SessionMember,
    cgroup: Option<CString>,
    foreign_abi: Option<ForeignAbiFilter>,
    guard: Option<GuardFilter>,
    capabilities: Option<CapabilityEnvelope>,
    read_only_cgroups: Option<ReadOnlyCgroups>,
) -> io::Result<Child> {
    let (program, args) = command.split_first().ok_or_else(|| io::Error::other("no command given"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (sigprocmask, open/write/close, unshare, statvfs, mount,
    // seccomp, getpid, bpf, prctl, capget/capset) with no allocation.
    unsafe {
        cmd.pre_exec(move || {
            // The monitor blocks the signals it forwards; the agent starts with none blocked.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if let Some(procs) = &cgroup {
                crate::cgroup::join_raw(procs)?;
            }
            // After joining (a write to the cgroup filesystem), while it may still mount.
            if let Some(fence) = &read_only_cgroups {
                fence.apply()?;
            }
            if let Some(filter) = &foreign_abi {
                filter.install()?;
            }
            let tgid = libc::getpid() as u32;
            registrar.register(tgid, &member)?;
            if let Some(envelope) = &capabilities {
                envelope.apply()?;
            }
            // Last: it refuses bpf(), which registering needs.
            if let Some(filter) = &guard {
                filter.install()?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Signals the monitor passes on to the session's first process instead of dying from
/// them: if the monitor went away, the agent would run on unobserved.
const FORWARDED: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGHUP];

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the forwarded signals in the calling thread (and the threads it starts
/// afterwards). Call before starting any thread.
pub fn block_forwarded_signals() {
    let set = forwarded_set();
    // SAFETY: valid set; changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Starts a thread that passes SIGTERM and SIGHUP sent to the monitor on to `pid` (the
/// session's first process, not yet reaped), through a pidfd.
pub fn forward_signals_to(pid: u32) {
    let Some(target) = crate::pidfd::open(pid) else {
        log::warn!("cannot open a pidfd for the agent: signals to the monitor are not forwarded");
        return;
    };
    let set = forwarded_set();
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: valid set and out-pointer; the signals are blocked in every thread.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                crate::pidfd::send(&target, signal);
            }
        }
    });
    if let Err(error) = spawned {
        log::warn!("cannot forward signals to the agent: {error}");
    }
}
