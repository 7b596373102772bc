//! Session membership follows the process tree: fork copies it, exit removes it.

use aya_ebpf::{helpers::generated::bpf_probe_read_user, macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{
    event::{ARGV_MAX_BYTES, ExecEvent, ExitEvent, ForkEvent, flags, kind, pseudo_syscall},
    maps::{Counter, lsm_tier},
    policy::{SHARED_FILES_RULE, allow, session_flags},
    session::SessionMember,
};

use crate::{
    file::describe_file,
    kernel::{
        ReadError, config, count, current_task, current_tgid, emit_with_path, fill_header, join_session, leave_session,
        lsm_enforces, read, read_ptr, session_of, wakeup_flags,
    },
    maps::{EVENTS, EXEC_SCRATCH},
    path,
    policy::{self, Object, Tier, Verdict},
    scratch::{KeyScratch, claim_scratch},
};

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`;
/// raw tracepoint, Linux >= 4.17. Runs in the parent before the child is first
/// scheduled, so the child is in the session before its first instruction.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let parent_tgid = current_tgid();
    let Some(member) = session_of(parent_tgid) else {
        return Ok(());
    };
    let child: u64 = ctx.arg(1);
    let child_tgid = match read::<u32>(child, config!(offsets.task_tgid)) {
        Ok(tgid) => tgid,
        Err(e) => {
            // Without the child's tgid it cannot join the session: that must not pass
            // silently.
            count(Counter::SessionMapFull);
            return Err(e);
        }
    };
    if child_tgid == parent_tgid {
        return Ok(()); // a new thread: already a member through its tgid
    }
    // A new process sharing the parent's descriptor table (clone(CLONE_FILES) without
    // CLONE_THREAD) would keep whatever the other opens (a file, a socket of a refused
    // family), even once that one is killed for it: in a session with a policy, that is
    // itself a violation.
    if member.flags & session_flags::HAS_POLICY != 0
        && !lsm_enforces(lsm_tier::FILES) // the LSM hooks refuse before any descriptor exists
        && let (Ok(child_files), Ok(parent_files)) =
            (read::<u64>(child, config!(offsets.task_files)), read::<u64>(current_task(), config!(offsets.task_files)))
        && child_files == parent_files
        && child_files != 0
    {
        crate::syscalls::refuse_syscall(&member, pseudo_syscall::SHARED_FILES, SHARED_FILES_RULE, 0);
    }
    let mut event_flags = 0;
    if join_session(child_tgid, &member).is_err() {
        count(Counter::SessionMapFull);
        event_flags |= flags::CHILD_NOT_TRACKED;
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count(Counter::RingbufFull);
        return Ok(());
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    if !fill_header(&mut event.header, kind::PROCESS_FORK, size_of::<ForkEvent>() as u32, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.child_tgid = child_tgid;
    event._pad = 0;
    event.child_start_time_ns = match read::<u64>(child, config!(offsets.task_start_boottime)) {
        Ok(t) => t,
        Err(ReadError) => {
            event_flags |= flags::READ_ERROR;
            0
        }
    };
    event.header.flags = event_flags;
    entry.submit(wakeup_flags());
    Ok(())
}

/// `sched_process_exit(struct task_struct *p)` (6.16+ adds `bool group_dead`);
/// raw tracepoint, Linux >= 4.17. Fires for every thread, after
/// `signal->live` was decremented: the process is gone when `live` is 0.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let tgid = current_tgid();
    let Some(member) = session_of(tgid) else {
        return Ok(());
    };
    let task: u64 = ctx.arg(0);
    let signal = read_ptr(task, config!(offsets.task_signal))?;
    let live = read::<i32>(signal, config!(offsets.signal_live))?;
    if live != 0 {
        return Ok(()); // another thread of the process is still running
    }
    leave_session(tgid);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count(Counter::RingbufFull);
        return Ok(());
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let mut event_flags = 0;
    if !fill_header(&mut event.header, kind::PROCESS_EXIT, size_of::<ExitEvent>() as u32, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.exit_code = match read::<u32>(task, config!(offsets.task_exit_code)) {
        Ok(code) => code,
        Err(ReadError) => {
            event_flags |= flags::READ_ERROR;
            0
        }
    };
    event._pad = 0;
    event.header.flags = event_flags;
    entry.submit(wakeup_flags());
    Ok(())
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`;
/// raw tracepoint, Linux >= 4.17. Runs after the new image is set up: `current->mm`
/// holds the new argument vector.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let tgid = current_tgid();
    let (member, adopted) = match session_of(tgid) {
        Some(member) => (member, false),
        None => match crate::adopt::adopt_at_exec(tgid, ctx.arg(2)) {
            Some(member) => (member, true),
            None => return Ok(()),
        },
    };
    // Where the LSM hook enforces exec, it judged this one before it began. The exec
    // that starts an adopted session is its entry point, not judged by its rules.
    let judge = (!lsm_enforces(lsm_tier::EXEC) && !adopted).then_some(Tier::Tracepoint);
    let claimed = claim_scratch();
    let Some((claimed, event)) = claimed.and_then(|c| EXEC_SCRATCH.get_ptr_mut(c.index).map(|e| (c, e))) else {
        // No scratch: nothing can be reported, and an exec to judge fails closed.
        if let Some(tier) = judge {
            policy::fail_closed(&member, tier);
        }
        return Ok(());
    };
    let index = claimed.index;
    // SAFETY: entry `index` of the per-CPU records, held with the key scratch's.
    let event = unsafe { &mut *event };
    let mut argv_flags = 0;
    event.argv_len = 0;
    if read_argv(event).is_err() {
        argv_flags |= flags::READ_ERROR;
    }
    if event.argv_len as usize == ARGV_MAX_BYTES {
        argv_flags |= flags::ARGV_TRUNCATED;
    }
    let file = read_ptr(ctx.arg(2), config!(offsets.binprm_file));
    build_exec(&member, file, allow::EXEC, event, argv_flags, judge, &mut *claimed.scratch, index);
    emit_with_path(event);
    Ok(())
}

/// Fills the exec record `event` (all but the argument vector) with `file` (what a
/// `struct linux_binprm` runs, or what is mapped executable), and judges it against the
/// exec rules for `requested` (`allow::EXEC` or `allow::MAP`) as `judge` can (`None`:
/// not judged here), and takes the verdict's action. `event_flags` are header flags
/// already known; a read error among them or here fails closed. `scratch` is entry
/// `index` of the key scratch, which the caller holds. Returns the verdict, also
/// written to `event`.
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "inlined into each exec hook: the values are what each hook already read")]
pub fn build_exec(
    member: &SessionMember,
    file: Result<u64, ReadError>,
    requested: u32,
    event: &mut ExecEvent,
    mut event_flags: u16,
    judge: Option<Tier>,
    scratch: &mut KeyScratch,
    index: u32,
) -> Verdict {
    if !fill_header(&mut event.header, kind::PROCESS_EXEC, 0, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.path_len = 0;
    event.ino = 0;
    event.dev = 0;
    event._pad = 0;
    let mut verdict = Verdict::UNCHECKED;
    match file {
        Ok(file) => match describe_file(file, &mut scratch.path, index) {
            Ok(described) => {
                event.path_len = path::copy_path(&scratch.path, &described.resolved, &mut event.path);
                event.ino = described.ino;
                event.dev = described.resolved.dev;
                event_flags |= described.resolved.flags;
                if let Some(tier) = judge {
                    let object = Object {
                        inode: described.inode,
                        dentry: described.dentry,
                        by_directory: false,
                        ino: described.ino,
                    };
                    verdict = policy::decide(member, true, requested, &described.resolved, &object, scratch, tier);
                }
            }
            Err(ReadError) => event_flags |= flags::READ_ERROR,
        },
        Err(ReadError) => event_flags |= flags::READ_ERROR,
    }
    if event_flags & flags::READ_ERROR != 0 {
        count(Counter::KernelReadError);
        if let Some(tier) = judge {
            verdict = policy::unresolved(member, tier);
        }
    }
    policy::carry_out(verdict.action);
    event.action = verdict.action;
    event.rule_id = verdict.rule_id;
    event.header.flags = event_flags;
    verdict
}

fn read_argv(event: &mut ExecEvent) -> Result<(), ReadError> {
    let mm = read_ptr(current_task(), config!(offsets.task_mm))?;
    let start = read::<u64>(mm, config!(offsets.mm_arg_start))?;
    let end = read::<u64>(mm, config!(offsets.mm_arg_end))?;
    if end <= start {
        return Ok(());
    }
    let mut len = end - start;
    if len > ARGV_MAX_BYTES as u64 {
        len = ARGV_MAX_BYTES as u64;
    }
    // SAFETY: len <= argv.len(); the helper checks the user address.
    let ret = unsafe { bpf_probe_read_user(event.argv.as_mut_ptr().cast(), len as u32, start as *const _) };
    if ret < 0 {
        return Err(ReadError);
    }
    event.argv_len = len as u32;
    Ok(())
}
