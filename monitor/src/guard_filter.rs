//! The seccomp filter the launcher installs on a `run` session's first process,
//! inherited by every descendant and never removable.
//!
//! In every session, the envelope: `clone3` fails with `ENOSYS`, so that no child is
//! born into another cgroup than the session's (`CLONE_INTO_CGROUP`, which a filter
//! cannot see inside clone3's argument struct; C libraries fall back to `clone`, as
//! they do under container runtimes' default filters); loading or removing kernel
//! modules, `kexec` and `reboot` fail with `EPERM` (a root agent would change the kernel
//! under the monitor); injecting input into the terminal (`ioctl` `TIOCSTI`,
//! `TIOCLINUX`: typed into the shell the agent was started from) fails with `EPERM`.
//! The same syscalls through the 32-bit ABI (where 32-bit programs
//! may run: with BPF LSM, in a session that does not enforce files) are refused by
//! their 32-bit numbers; x32 syscalls (x86_64, native arch with bit 30 set) are refused
//! whatever they are, as no comparison with a native number would catch them.
//!
//! Self-protection where the kernel runs no BPF LSM programs (tier 2) adds refusals
//! with `EPERM`:
//! - `bpf()` (detaching or rewriting the monitor's programs and maps);
//! - `mount`, `umount2` and the new mount API (mount changes under the policy's paths);
//! - signals that could reach the monitor or its watchdog (the protected pids): `kill`
//!   of their pids, of their process groups, of every process (`-1`) and of the
//!   caller's own group (`0`, which the monitor shares), `tgkill`, `rt_sigqueueinfo`
//!   and `rt_tgsigqueueinfo` of their pids, `tkill` (the monitor's thread ids are not
//!   known in advance), `pidfd_open` of their pids and `pidfd_send_signal` (a pidfd can
//!   also come from opening `/proc/PID`);
//! - `ptrace`, `process_vm_readv`, `process_vm_writev` and `perf_event_open` on them;
//! - signals by I/O ownership (`SIGIO`, `SIGURG`, or any signal `F_SETSIG` names): a
//!   descriptor's owner set to them or to the monitor's group (`fcntl` `F_SETOWN`), and
//!   the ownership calls the filter cannot read (`F_SETOWN_EX`, `ioctl` `FIOSETOWN` and
//!   `SIOCSPGRP`, whose owner is behind a pointer);
//! - the resource limits of any other process (`prlimit64` with a pid and new limits),
//!   and the monitor's and watchdog's scheduling (`sched_setaffinity`,
//!   `sched_setscheduler`, `sched_setparam`, `sched_setattr`, `setpriority` and
//!   `ioprio_set` of their pids or the monitor's process group, or of the caller's own
//!   group).
//!
//! Thread ids of the monitor are not known when the filter is made. ptrace,
//! `process_vm_*`, `/proc/PID/mem` and perf of any monitor thread are refused by the
//! kernel instead: the monitor is non-dumpable ([`undumpable`]) and the session has no
//! `CAP_SYS_PTRACE` (see `capabilities`). What remains: `kill` with the id of a monitor
//! thread other than the first ends the monitor; its watchdog then ends the session
//! (see `watchdog`).
//!
//! Syscall numbers are the native ones, so a syscall through a foreign ABI (32-bit
//! `int 0x80`, AArch32) is refused whatever it is: 32-bit programs do not run in a
//! tier-2 session.
//!
//! Unlike the LSM tier these refusals are not reported as events: seccomp only returns
//! the error. With BPF LSM the `self_protection` hooks do this instead, and report it.

use crate::{
    arch::Arch,
    seccomp::{
        AUDIT_ARCH_ARM, AUDIT_ARCH_I386, DATA_ARCH, DATA_NR, JEQ_K, JGE_K, LD_W_ABS, RET_K, SECCOMP_RET_ALLOW,
        X32_SYSCALL_BIT, native_audit_arch, op,
    },
};

const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const DENY: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
/// `args[i]` of `struct seccomp_data` (low 32 bits, little-endian) is at 16 + 8i.
const fn data_arg(i: u32) -> u32 {
    16 + 8 * i
}

const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// The envelope: refused in every session, whatever their arguments.
const ENVELOPE_REFUSED: [libc::c_long; 6] = [
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
];

/// Self-protection: syscalls refused whatever their arguments.
const ALWAYS_REFUSED: [libc::c_long; 12] = [
    libc::SYS_bpf,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_open_tree,
    libc::SYS_pivot_root,
    libc::SYS_tkill,
    libc::SYS_pidfd_send_signal,
];

/// The filter, built before the fork (installing it allocates nothing).
pub struct GuardFilter {
    program: Vec<libc::sock_filter>,
}

/// The envelope's syscalls through the 32-bit ABI: (numbers, what they get), for
/// x86_64's ia32 (arch/x86/entry/syscalls/syscall_32.tbl) and aarch64's AArch32
/// (arch/arm/tools/syscall.tbl): clone3, then init_module, delete_module, finit_module,
/// kexec_load and reboot.
const fn foreign_envelope(arch: Arch) -> (u32, [(u32, u32); 6]) {
    match arch {
        Arch::X86_64 => {
            (AUDIT_ARCH_I386, [(435, ENOSYS), (128, DENY), (129, DENY), (350, DENY), (283, DENY), (88, DENY)])
        }
        Arch::Aarch64 => {
            (AUDIT_ARCH_ARM, [(435, ENOSYS), (128, DENY), (129, DENY), (379, DENY), (347, DENY), (88, DENY)])
        }
    }
}

impl GuardFilter {
    /// The envelope alone (sessions whose monitor the BPF LSM tier protects).
    pub fn envelope() -> GuardFilter {
        let (foreign, numbers) = foreign_envelope(Arch::NATIVE);
        // ld arch; native: skip the 32-bit block; 32-bit: its numbers; anything else: allow.
        let mut program = vec![
            op(LD_W_ABS, 0, 0, DATA_ARCH),
            op(JEQ_K, 2 + 3 * numbers.len() as u8 + 1, 0, native_audit_arch(Arch::NATIVE)),
            op(JEQ_K, 0, 3 * numbers.len() as u8 + 1, foreign),
        ];
        for (nr, answer) in numbers {
            program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JEQ_K, 0, 1, nr), op(RET_K, 0, 0, answer)]);
        }
        program.extend([op(RET_K, 0, 0, SECCOMP_RET_ALLOW), op(RET_K, 0, 0, SECCOMP_RET_ALLOW)]);
        push_x32(&mut program);
        push_envelope(&mut program);
        program.push(op(RET_K, 0, 0, SECCOMP_RET_ALLOW));
        GuardFilter { program }
    }

    /// The envelope, and the refusals that protect the processes `protected` (the
    /// monitor, whose process group is `monitor_pgid`, and its watchdog, which leads its
    /// own group).
    pub fn new(protected: &[u32], monitor_pgid: u32) -> GuardFilter {
        // ld arch; native: go on; else refuse.
        let mut program = vec![
            op(LD_W_ABS, 0, 0, DATA_ARCH),
            op(JEQ_K, 1, 0, native_audit_arch(Arch::NATIVE)),
            op(RET_K, 0, 0, DENY),
        ];
        push_x32(&mut program);
        push_envelope(&mut program);
        for nr in ALWAYS_REFUSED {
            program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JEQ_K, 0, 1, nr as u32), op(RET_K, 0, 0, DENY)]);
        }
        let minus = |pid: u32| (pid as i32).wrapping_neg() as u32;
        // Each protected pid, and as a process group (the watchdog leads its own).
        let groups: Vec<u32> = protected.iter().map(|&pid| minus(pid)).chain([minus(monitor_pgid)]).collect();
        let kill_targets: Vec<u32> = protected.iter().copied().chain(groups).chain([u32::MAX /* -1 */, 0]).collect();
        // `who` of setpriority and ioprio_set: a pid or a process group id.
        let who: Vec<u32> = protected.iter().copied().chain([monitor_pgid]).collect();
        let by_pid: [(libc::c_long, u32); 12] = [
            (libc::SYS_tgkill, 0),
            (libc::SYS_rt_sigqueueinfo, 0),
            (libc::SYS_rt_tgsigqueueinfo, 0),
            (libc::SYS_pidfd_open, 0),
            (libc::SYS_ptrace, 1),
            (libc::SYS_process_vm_readv, 0),
            (libc::SYS_process_vm_writev, 0),
            (libc::SYS_perf_event_open, 1),
            (libc::SYS_sched_setaffinity, 0),
            (libc::SYS_sched_setscheduler, 0),
            (libc::SYS_sched_setparam, 0),
            (libc::SYS_sched_setattr, 0),
        ];
        push_arg_rule(&mut program, libc::SYS_kill, 0, &kill_targets);
        let owners: Vec<u32> = kill_targets.iter().copied().filter(|&t| t != 0 && t != u32::MAX).collect();
        push_fcntl_owner_rule(&mut program, &owners);
        push_arg_rule(&mut program, libc::SYS_fcntl, 1, &[F_SETOWN_EX]);
        push_arg_rule(&mut program, libc::SYS_ioctl, 1, &[FIOSETOWN, SIOCSPGRP]);
        for (nr, arg) in by_pid {
            push_arg_rule(&mut program, nr, arg, protected);
        }
        // (which, who): a protected pid or group as `who`, or `who` 0 with a process
        // group `which` (the caller's own group, the monitor's).
        push_arg_rule(&mut program, libc::SYS_setpriority, 1, &who);
        push_own_group_rule(&mut program, libc::SYS_setpriority, libc::PRIO_PGRP);
        push_arg_rule(&mut program, libc::SYS_ioprio_set, 1, &who);
        push_own_group_rule(&mut program, libc::SYS_ioprio_set, IOPRIO_WHO_PGRP);
        push_other_limits_rule(&mut program);
        program.push(op(RET_K, 0, 0, SECCOMP_RET_ALLOW));
        GuardFilter { program }
    }

    /// Installs the filter on the calling thread. Async-signal-safe (no allocation).
    pub fn install(&self) -> std::io::Result<()> {
        let fprog = libc::sock_fprog { len: self.program.len() as u16, filter: self.program.as_ptr().cast_mut() };
        // SAFETY: fprog points at the program, alive across the call; the kernel copies it.
        let ret = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
        };
        if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// Without the LSM tier's ptrace hook, the monitor makes itself non-dumpable: ptrace,
/// `process_vm_*`, `/proc/PID/mem` and perf of any of its threads (which the seccomp
/// guard knows only by the first one's id) then need `CAP_SYS_PTRACE`, which the
/// capability envelope takes from `run` sessions.
pub fn undumpable() {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        log::warn!("PR_SET_DUMPABLE: {}", std::io::Error::last_os_error());
    }
}

/// `ioctl` requests that set a descriptor's owner (include/uapi/asm-generic/sockios.h).
const FIOSETOWN: u32 = 0x8901;
/// `fcntl` with a `struct f_owner_ex` (include/uapi/asm-generic/fcntl.h).
const F_SETOWN_EX: u32 = 15;
const SIOCSPGRP: u32 = 0x8902;
/// `ioctl` requests that type into a terminal (include/uapi/asm-generic/ioctls.h).
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;

/// `ld nr; jeq fcntl; ld args[1]; jeq F_SETOWN; ld args[2]; (jeq owner; ret EPERM)*`.
fn push_fcntl_owner_rule(program: &mut Vec<libc::sock_filter>, owners: &[u32]) {
    let rest = u8::try_from(2 * owners.len()).expect("a short list of owners");
    program.extend([
        op(LD_W_ABS, 0, 0, DATA_NR),
        op(JEQ_K, 0, rest + 3, libc::SYS_fcntl as u32),
        op(LD_W_ABS, 0, 0, data_arg(1)),
        op(JEQ_K, 0, rest + 1, libc::F_SETOWN as u32),
        op(LD_W_ABS, 0, 0, data_arg(2)),
    ]);
    for &owner in owners {
        program.extend([op(JEQ_K, 0, 1, owner), op(RET_K, 0, 0, DENY)]);
    }
}

/// `ioprio_set`'s `which` for a process group (include/uapi/linux/ioprio.h).
const IOPRIO_WHO_PGRP: u32 = 2;

/// `ld nr; jeq NR (else skip the block); ld args[arg]; (jeq v; ret EPERM)*`.
fn push_arg_rule(program: &mut Vec<libc::sock_filter>, nr: libc::c_long, arg: u32, values: &[u32]) {
    let skip = u8::try_from(1 + 2 * values.len()).expect("a short list of protected pids");
    program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JEQ_K, 0, skip, nr as u32), op(LD_W_ABS, 0, 0, data_arg(arg))]);
    for &value in values {
        program.extend([op(JEQ_K, 0, 1, value), op(RET_K, 0, 0, DENY)]);
    }
}

/// `ld nr; jeq NR; ld args[1]; jeq 0; ld args[0]; jeq PGRP; ret EPERM`: `who` 0 of a
/// process-group `which` is the caller's own group, which the monitor leads.
fn push_own_group_rule(program: &mut Vec<libc::sock_filter>, nr: libc::c_long, pgrp_which: u32) {
    program.extend([
        op(LD_W_ABS, 0, 0, DATA_NR),
        op(JEQ_K, 0, 5, nr as u32),
        op(LD_W_ABS, 0, 0, data_arg(1)),
        op(JEQ_K, 0, 3, 0),
        op(LD_W_ABS, 0, 0, data_arg(0)),
        op(JEQ_K, 0, 1, pgrp_which),
        op(RET_K, 0, 0, DENY),
    ]);
}

/// `prlimit64(pid, new, old)` with a `pid` other than 0 and a `new` limit: another
/// process's limits are not the session's to change (the monitor's threads could be
/// named by any of their ids; the LSM tier refuses the same, `task_prlimit`). Reading
/// them, and changing the caller's own (`setrlimit`, `prlimit64(0, ...)`), is allowed.
fn push_other_limits_rule(program: &mut Vec<libc::sock_filter>) {
    program.extend([
        op(LD_W_ABS, 0, 0, DATA_NR),
        op(JEQ_K, 0, 7, libc::SYS_prlimit64 as u32),
        op(LD_W_ABS, 0, 0, data_arg(0)),
        op(JEQ_K, 5, 0, 0),
        // `new`, a pointer: NULL only if both halves are 0.
        op(LD_W_ABS, 0, 0, data_arg(2)),
        op(JEQ_K, 0, 2, 0),
        op(LD_W_ABS, 0, 0, data_arg(2) + 4),
        op(JEQ_K, 1, 0, 0),
        op(RET_K, 0, 0, DENY),
    ]);
}

/// x86_64: `ld nr; jge X32_SYSCALL_BIT; ret EPERM` (elsewhere such numbers are unknown
/// syscalls the kernel refuses itself).
fn push_x32(program: &mut Vec<libc::sock_filter>) {
    if Arch::NATIVE == Arch::X86_64 {
        program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JGE_K, 0, 1, X32_SYSCALL_BIT), op(RET_K, 0, 0, DENY)]);
    }
}

/// `ld nr; jeq NR; ret ERRNO` for each syscall of the envelope.
fn push_envelope(program: &mut Vec<libc::sock_filter>) {
    program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JEQ_K, 0, 1, libc::SYS_clone3 as u32), op(RET_K, 0, 0, ENOSYS)]);
    for nr in ENVELOPE_REFUSED {
        program.extend([op(LD_W_ABS, 0, 0, DATA_NR), op(JEQ_K, 0, 1, nr as u32), op(RET_K, 0, 0, DENY)]);
    }
    push_arg_rule(program, libc::SYS_ioctl, 1, &[TIOCSTI, TIOCLINUX]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(filter: &GuardFilter, nr: libc::c_long, args: [u32; 6]) -> u32 {
        crate::seccomp::simulate(
            &filter.program,
            &crate::seccomp::seccomp_data(nr as u32, native_audit_arch(Arch::NATIVE), args),
        )
    }

    const MONITOR: u32 = 4242;
    const PGID: u32 = 4200;
    const WATCHDOG: u32 = 4300;

    #[test]
    fn refuses_what_reaches_the_monitor_and_allows_the_rest() {
        let f = GuardFilter::new(&[MONITOR, WATCHDOG], PGID);
        let args = |a0: u32, a1: u32| [a0, a1, 0, 0, 0, 0];
        for (nr, a0, a1) in [
            (libc::SYS_bpf, 0, 0),
            (libc::SYS_mount, 0, 0),
            (libc::SYS_umount2, 0, 0),
            (libc::SYS_tkill, 1234, 9),
            (libc::SYS_pidfd_send_signal, 3, 9),
            (libc::SYS_kill, MONITOR, 9),
            (libc::SYS_kill, 0, 9),
            (libc::SYS_kill, u32::MAX, 9),
            (libc::SYS_kill, (PGID as i32).wrapping_neg() as u32, 9),
            (libc::SYS_tgkill, MONITOR, MONITOR + 1),
            (libc::SYS_pidfd_open, MONITOR, 0),
            (libc::SYS_ptrace, libc::PTRACE_SEIZE, MONITOR),
            (libc::SYS_process_vm_writev, MONITOR, 0),
            (libc::SYS_kill, WATCHDOG, 9),
            (libc::SYS_kill, (WATCHDOG as i32).wrapping_neg() as u32, 9),
            (libc::SYS_tgkill, WATCHDOG, WATCHDOG),
            (libc::SYS_rt_sigqueueinfo, MONITOR, 9),
            (libc::SYS_rt_tgsigqueueinfo, WATCHDOG, WATCHDOG),
            (libc::SYS_ptrace, libc::PTRACE_ATTACH, WATCHDOG),
            (libc::SYS_perf_event_open, 0, MONITOR),
            (libc::SYS_sched_setaffinity, WATCHDOG, 8),
            (libc::SYS_sched_setscheduler, MONITOR, libc::SCHED_FIFO as u32),
            (libc::SYS_sched_setattr, MONITOR, 0),
            (libc::SYS_setpriority, libc::PRIO_PROCESS, MONITOR),
            (libc::SYS_setpriority, libc::PRIO_PGRP, PGID),
            (libc::SYS_setpriority, libc::PRIO_PGRP, 0),
            (libc::SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, WATCHDOG),
            (libc::SYS_ioprio_set, IOPRIO_WHO_PGRP, 0),
            (libc::SYS_fcntl, 3, F_SETOWN_EX),
            (libc::SYS_ioctl, 3, FIOSETOWN),
            (libc::SYS_ioctl, 3, SIOCSPGRP),
        ] {
            assert_eq!(run(&f, nr, args(a0, a1)), DENY, "syscall {nr} ({a0}, {a1})");
        }
        for (nr, a0, a1) in [
            (libc::SYS_kill, 1234, 9),
            (libc::SYS_kill, (1234i32).wrapping_neg() as u32, 15),
            (libc::SYS_tgkill, 1234, 1235),
            (libc::SYS_pidfd_open, 1234, 0),
            (libc::SYS_ptrace, libc::PTRACE_SEIZE, 1234),
            (libc::SYS_ptrace, MONITOR, 1234), // the pid is the second argument
            (libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE), // its own limits
            (libc::SYS_sched_setaffinity, 0, 8),
            (libc::SYS_setpriority, libc::PRIO_PROCESS, 0), // `nice`
            (libc::SYS_setpriority, libc::PRIO_PROCESS, 1234),
            (libc::SYS_ioprio_set, 1, 0), // `ionice`
            (libc::SYS_openat, 0, 0),
            (libc::SYS_read, 0, 0),
        ] {
            assert_eq!(run(&f, nr, args(a0, a1)), SECCOMP_RET_ALLOW, "syscall {nr} ({a0}, {a1})");
        }
        // Any syscall through a foreign ABI (ia32 kill is 37) is refused.
        let foreign = crate::seccomp::seccomp_data(37, crate::seccomp::AUDIT_ARCH_I386, args(MONITOR, 9));
        assert_eq!(crate::seccomp::simulate(&f.program, &foreign), DENY);
    }

    #[test]
    fn no_descriptor_signals_its_io_to_the_monitor() {
        let f = GuardFilter::new(&[MONITOR, WATCHDOG], PGID);
        let setown = |owner: u32| run(&f, libc::SYS_fcntl, [3, libc::F_SETOWN as u32, owner, 0, 0, 0]);
        for owner in [MONITOR, WATCHDOG, (PGID as i32).wrapping_neg() as u32, (WATCHDOG as i32).wrapping_neg() as u32] {
            assert_eq!(setown(owner), DENY, "F_SETOWN {owner}");
        }
        for owner in [0, 1234, (1234i32).wrapping_neg() as u32] {
            assert_eq!(setown(owner), SECCOMP_RET_ALLOW, "F_SETOWN {owner}");
        }
        // Other fcntl commands with the monitor's pid as their argument are not ownership.
        assert_eq!(run(&f, libc::SYS_fcntl, [3, libc::F_SETFL as u32, MONITOR, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(&f, libc::SYS_fcntl, [3, libc::F_GETOWN as u32, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn no_session_types_into_its_terminal() {
        for f in [GuardFilter::new(&[MONITOR, WATCHDOG], PGID), GuardFilter::envelope()] {
            for request in [TIOCSTI, TIOCLINUX] {
                assert_eq!(run(&f, libc::SYS_ioctl, [0, request, 0, 0, 0, 0]), DENY, "ioctl {request:#x}");
            }
            assert_eq!(run(&f, libc::SYS_ioctl, [0, libc::TIOCGWINSZ as u32, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        }
    }

    #[test]
    fn another_processs_limits_are_not_to_be_changed() {
        let f = GuardFilter::new(&[MONITOR, WATCHDOG], PGID);
        let prlimit = |pid: u32, new_low: u32, new_high: u32| {
            let mut data = crate::seccomp::seccomp_data(
                libc::SYS_prlimit64 as u32,
                native_audit_arch(Arch::NATIVE),
                [pid, libc::RLIMIT_NOFILE, new_low, 0, 0, 0],
            );
            let high = data_arg(2) as usize + 4;
            data[high..high + 4].copy_from_slice(&new_high.to_ne_bytes());
            crate::seccomp::simulate(&f.program, &data)
        };
        assert_eq!(prlimit(1234, 0x1000, 0), DENY);
        assert_eq!(prlimit(MONITOR + 7, 0x1000, 0x7fff), DENY, "a monitor thread, by its id");
        assert_eq!(prlimit(1234, 0, 0x7fff), DENY, "a pointer whose low half is 0");
        assert_eq!(prlimit(1234, 0, 0), SECCOMP_RET_ALLOW, "reading them");
        assert_eq!(prlimit(0, 0x1000, 0x7fff), SECCOMP_RET_ALLOW, "its own");
    }

    #[test]
    fn the_envelope_is_in_both_filters() {
        for f in [GuardFilter::new(&[MONITOR, WATCHDOG], PGID), GuardFilter::envelope()] {
            assert_eq!(run(&f, libc::SYS_clone3, [0; 6]), ENOSYS, "clone3: C libraries fall back to clone");
            let refused = [
                libc::SYS_init_module,
                libc::SYS_finit_module,
                libc::SYS_delete_module,
                libc::SYS_kexec_file_load,
                libc::SYS_reboot,
            ];
            for nr in refused {
                assert_eq!(run(&f, nr, [0; 6]), DENY, "syscall {nr}");
            }
            for nr in [libc::SYS_clone, libc::SYS_openat, libc::SYS_execve] {
                assert_eq!(run(&f, nr, [0; 6]), SECCOMP_RET_ALLOW, "syscall {nr}");
            }
        }
        // The envelope alone refuses nothing of the monitor's.
        let envelope = GuardFilter::envelope();
        assert_eq!(run(&envelope, libc::SYS_kill, [MONITOR, 9, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(&envelope, libc::SYS_bpf, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(&envelope, libc::SYS_kexec_load, [0; 6]), DENY);
    }

    #[test]
    fn the_envelope_holds_for_the_32_bit_abi_and_x32() {
        let envelope = GuardFilter::envelope();
        let (foreign, numbers) = foreign_envelope(Arch::NATIVE);
        let foreign_call =
            |nr: u32| crate::seccomp::simulate(&envelope.program, &crate::seccomp::seccomp_data(nr, foreign, [0; 6]));
        for (nr, answer) in numbers {
            assert_eq!(foreign_call(nr), answer, "32-bit syscall {nr}");
        }
        // Other 32-bit syscalls run (ia32 and AArch32 `read` is 3, `kill` 37).
        assert_eq!(foreign_call(3), SECCOMP_RET_ALLOW);
        assert_eq!(foreign_call(37), SECCOMP_RET_ALLOW);
        if Arch::NATIVE == Arch::X86_64 {
            for f in [GuardFilter::envelope(), GuardFilter::new(&[MONITOR, WATCHDOG], PGID)] {
                // x32 finit_module, and x32 bpf.
                assert_eq!(run(&f, (X32_SYSCALL_BIT | 313) as libc::c_long, [0; 6]), DENY);
                assert_eq!(run(&f, (X32_SYSCALL_BIT | libc::SYS_bpf as u32) as libc::c_long, [0; 6]), DENY);
            }
        }
    }
}
