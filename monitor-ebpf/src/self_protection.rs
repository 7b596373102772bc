//! The monitor protects itself from the agents it watches (BPF LSM tier): no session
//! member may signal, ptrace, limit or reschedule the monitor or its watchdog (the
//! protected processes), use `bpf()`, or change mounts. Each attempt is refused and
//! reported, in every session, audit mode included (see `policy::enforce_always`).
//! Writing the monitor's own files (policy, binary) is refused by the file hooks
//! (`PROTECTED_INODES`).
//!
//! A process outside every session is not a member's to address either: ptrace, limits
//! and scheduling of one are refused and reported, not punished (`OTHER_PROCESS_RULE`).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use monitor_common::{
    event::{TamperEvent, flags, kind, tamper_op},
    maps::Counter,
    policy::{OTHER_PROCESS_RULE, SELF_PROTECTION_RULE, action, session_flags},
    session::SessionMember,
};

use crate::{
    kernel::{config, count, current_tgid, fill_header, read, session_of},
    lsm::answer,
    maps::DECISIONS,
    policy::{self, Tier},
};

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const
/// struct cred *cred)`: kill(2), tgkill(2), pidfd_send_signal(2), ... aimed at the
/// monitor (any of its threads).
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    let target = read::<u32>(ctx.arg(0), config!(offsets.task_tgid)).unwrap_or(0);
    if !is_protected(target) {
        return 0;
    }
    refuse(&member, tamper_op::SIGNAL, target, ctx.arg::<i32>(2) as u64)
}

/// `file_send_sigiotask(struct task_struct *tsk, struct fown_struct *fown, int sig)`:
/// a signal for I/O on a descriptor whose owner is `tsk` (`F_SETOWN`: `SIGIO`, `SIGURG`
/// or the signal `F_SETSIG` chose), sent in whatever context caused the I/O, not
/// through `task_kill`. Never to the monitor or its watchdog, which own no descriptor
/// for signals; reported when a session member is the one causing it.
#[lsm(hook = "file_send_sigiotask")]
pub fn file_send_sigiotask(ctx: LsmContext) -> i32 {
    let target = read::<u32>(ctx.arg(0), config!(offsets.task_tgid)).unwrap_or(0);
    if !is_protected(target) {
        return 0;
    }
    if let Some(member) = session_of(current_tgid()) {
        report(&member, tamper_op::SIGIO, target, ctx.arg::<i32>(2) as u64, action::DENY, SELF_PROTECTION_RULE);
    }
    answer(action::DENY)
}

/// The monitor or its watchdog.
#[inline(always)]
fn is_protected(tgid: u32) -> bool {
    tgid == config!(monitor_tgid) || (tgid != 0 && tgid == config!(watchdog_tgid))
}

/// `task_setscheduler(struct task_struct *p)`: sched_setscheduler, sched_setparam,
/// sched_setattr, sched_setaffinity (and moves into a cpuset) of another process.
#[lsm(hook = "task_setscheduler")]
pub fn task_setscheduler(ctx: LsmContext) -> i32 {
    on_other_task(&ctx, tamper_op::SCHEDULER, 0)
}

/// `task_setnice(struct task_struct *p, int nice)`: setpriority.
#[lsm(hook = "task_setnice")]
pub fn task_setnice(ctx: LsmContext) -> i32 {
    on_other_task(&ctx, tamper_op::NICE, ctx.arg::<i32>(1) as u64)
}

/// `task_setioprio(struct task_struct *p, int ioprio)`: ioprio_set.
#[lsm(hook = "task_setioprio")]
pub fn task_setioprio(ctx: LsmContext) -> i32 {
    on_other_task(&ctx, tamper_op::IOPRIO, ctx.arg::<i32>(1) as u64)
}

/// `task_movememory(struct task_struct *p)`: migrate_pages, move_pages.
#[lsm(hook = "task_movememory")]
pub fn task_movememory(ctx: LsmContext) -> i32 {
    on_other_task(&ctx, tamper_op::MOVE_MEMORY, 0)
}

/// `task_prlimit(const struct cred *cred, const struct cred *tcred, unsigned int
/// flags)`: prlimit64 of another process (the kernel asks only then). The hook is not
/// told which process: every change of another's limits is refused (reading them is
/// not).
#[lsm(hook = "task_prlimit")]
pub fn task_prlimit(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    let flags = ctx.arg::<u32>(2);
    if flags & LSM_PRLIMIT_WRITE == 0 {
        return 0;
    }
    refuse(&member, tamper_op::PRLIMIT, 0, flags as u64)
}

/// `LSM_PRLIMIT_WRITE` (include/linux/security.h).
const LSM_PRLIMIT_WRITE: u32 = 2;

/// A member acting on the task `arg(0)`: on itself or its own session, allowed; on the
/// monitor or its watchdog, refused like every attempt on them; on any other process,
/// refused and reported, not punished.
#[inline(always)]
fn on_other_task(ctx: &LsmContext, op: u32, arg: u64) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    let target = read::<u32>(ctx.arg(0), config!(offsets.task_tgid)).unwrap_or(0);
    if is_protected(target) {
        return refuse(&member, op, target, arg);
    }
    if target == current_tgid() || session_of(target).is_some_and(|t| t.session_id == member.session_id) {
        return 0;
    }
    let action = if member.flags & session_flags::ENFORCE != 0 { action::DENY } else { action::AUDIT };
    report(&member, op, target, arg, action, OTHER_PROCESS_RULE);
    answer(action)
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`: ptrace attach,
/// /proc/PID/mem and environ, the /proc/PID/fd, map_files, cwd and root links,
/// process_vm_readv/writev, pidfd_getfd, kcmp, ... on another process.
///
/// On the monitor: refused, like every attempt on it. On any other process outside the
/// session: refused too (a member reaches nothing outside its session), except the
/// checks the kernel makes quietly (`PTRACE_MODE_NOAUDIT`: what `ps` reads of every
/// process); refused, not killed (tools like `lsof` try every process), and reported.
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    let target = read::<u32>(ctx.arg(0), config!(offsets.task_tgid)).unwrap_or(0);
    let mode = ctx.arg::<u32>(1);
    if is_protected(target) {
        if mode & PTRACE_MODE_NOAUDIT != 0 {
            // What `ps` reads of every process (the monitor is `run`'s parent): refused
            // quietly, as the kernel itself would, neither reported nor punished.
            return answer(action::DENY);
        }
        return refuse(&member, tamper_op::PTRACE, target, mode as u64);
    }
    if mode & PTRACE_MODE_NOAUDIT != 0 || target == current_tgid() {
        return 0;
    }
    if session_of(target).is_some_and(|t| t.session_id == member.session_id) {
        return 0;
    }
    let action = if member.flags & session_flags::ENFORCE != 0 { action::DENY } else { action::AUDIT };
    report(&member, tamper_op::PTRACE, target, mode as u64, action, OTHER_PROCESS_RULE);
    answer(action)
}

/// `PTRACE_MODE_NOAUDIT` (include/linux/ptrace.h): an access check the caller makes
/// only to decide what to show, not to hand anything over.
const PTRACE_MODE_NOAUDIT: u32 = 0x04;

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size)`: a session member could
/// detach, replace or read the monitor's programs and maps.
#[lsm(hook = "bpf")]
pub fn bpf_syscall(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    refuse(&member, tamper_op::BPF, 0, ctx.arg::<i32>(0) as u64)
}

/// `sb_mount(const char *dev_name, const struct path *path, const char *type,
/// unsigned long flags, void *data)`: mounts, bind mounts and remounts by mount(2).
#[lsm(hook = "sb_mount")]
pub fn sb_mount(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    refuse(&member, tamper_op::MOUNT, 0, ctx.arg::<u64>(3))
}

/// `sb_umount(struct vfsmount *mnt, int flags)`.
#[lsm(hook = "sb_umount")]
pub fn sb_umount(ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    refuse(&member, tamper_op::UMOUNT, 0, ctx.arg::<i32>(1) as u64)
}

/// `sb_remount(struct super_block *sb, void *mnt_opts)`: remounts by mount(2) and
/// fsconfig(2).
#[lsm(hook = "sb_remount")]
pub fn sb_remount(_ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    refuse(&member, tamper_op::REMOUNT, 0, 0)
}

/// `move_mount(const struct path *from_path, const struct path *to_path)`: attaching a
/// mount made with the new mount API (open_tree, fsmount).
#[lsm(hook = "move_mount")]
pub fn move_mount(_ctx: LsmContext) -> i32 {
    let Some(member) = session_of(current_tgid()) else {
        return 0;
    };
    refuse(&member, tamper_op::MOUNT, 0, 0)
}

#[inline(always)]
fn refuse(member: &SessionMember, op: u32, target_tgid: u32, arg: u64) -> i32 {
    let verdict = policy::enforce_always(member, Tier::Lsm);
    report(member, op, target_tgid, arg, verdict, SELF_PROTECTION_RULE);
    answer(verdict)
}

/// Sends the `PROCESS_TAMPER` record of an attempt and what was done about it.
#[inline(always)]
fn report(member: &SessionMember, op: u32, target_tgid: u32, arg: u64, verdict: u32, rule_id: u32) {
    if let Some(mut entry) = DECISIONS.reserve::<TamperEvent>(0) {
        // SAFETY: the entry is ours until submitted; every field is written below.
        let event = unsafe { &mut *entry.as_mut_ptr() };
        let complete =
            fill_header(&mut event.header, kind::PROCESS_TAMPER, size_of::<TamperEvent>() as u32, member.session_id);
        event.header.flags = flags::LSM | if complete { 0 } else { flags::READ_ERROR };
        event.op = op;
        event.target_tgid = target_tgid;
        event.arg = arg;
        event.action = verdict;
        event.rule_id = rule_id;
        entry.submit(2 /* BPF_RB_FORCE_WAKEUP */);
    } else {
        count(Counter::DecisionRingbufFull);
    }
}
