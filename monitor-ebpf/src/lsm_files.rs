//! Tier 1 for files and exec: BPF LSM hooks that refuse a forbidden access before it
//! happens (`-EPERM`), with the same compiled rules, path walk and records as the
//! tracepoint tier. Active only where the daemon set `lsm_tier::FILES` / `EXEC`
//! (the hooks attached and were seen to run); otherwise they stand aside.
//!
//! Every hook starts with the session lookup: a process outside every session is
//! never refused. Besides opens and exec, the `path_*` hooks govern what changes the
//! file tree (unlink, rename, truncate, create, link, chmod, chown), all as writes to
//! the names involved.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use monitor_common::{
    event::{ExecEvent, NO_FD, file_op, flags, open_syscall},
    maps::{Counter, lsm_tier},
    policy::{action, allow},
    session::SessionMember,
};

use crate::{
    file,
    file_change::judge_change,
    kernel::{ReadError, config, count, current_tgid, emit_with_path, read, read_ptr},
    lsm::{answer, member_for},
    maps::EXEC_SCRATCH,
    policy::{self, Tier},
    process,
    scratch::claim_scratch,
};

/// `file_open(struct file *file)`: every open, io_uring's and open_by_handle_at's
/// included, after permission checks and before the file is handed out (and before
/// `O_TRUNC` truncates it).
#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    if current_tgid() == config!(monitor_tgid) {
        // Proof for the daemon that LSM programs run on this kernel.
        count(Counter::LsmSelfTest);
        return 0;
    }
    let Some(member) = member_for(lsm_tier::FILES) else {
        return 0;
    };
    let file: u64 = ctx.arg(0);
    let open_flags = read::<u32>(file, config!(offsets.file_f_flags)).unwrap_or(0);
    answer(file::judge_open(&member, file, open_syscall::LSM_OPEN, open_flags, NO_FD, Tier::Lsm).action)
}

/// `file_receive(struct file *file)`: a descriptor passed over a unix socket
/// (`SCM_RIGHTS`) or taken with `pidfd_getfd` is judged like an open: a file the
/// session may not open cannot come in from another process either.
#[lsm(hook = "file_receive")]
pub fn file_receive(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::FILES) else {
        return 0;
    };
    let file: u64 = ctx.arg(0);
    let open_flags = read::<u32>(file, config!(offsets.file_f_flags)).unwrap_or(0);
    answer(file::judge_open(&member, file, open_syscall::RECEIVE, open_flags, NO_FD, Tier::Lsm).action)
}

/// `bprm_check_security(struct linux_binprm *bprm)`: before a program (or a script's
/// interpreter) is loaded. Refusals are reported here; allowed execs are reported by
/// `sched_process_exec`, with the new argument vector.
#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::EXEC) else {
        return 0;
    };
    let bprm: u64 = ctx.arg(0);
    answer(judge_exec(&member, read_ptr(bprm, config!(offsets.binprm_file)).unwrap_or(0), allow::EXEC, flags::LSM))
}

/// `PROT_EXEC` (include/uapi/asm-generic/mman-common.h).
const PROT_EXEC: u64 = 4;

/// `mmap_file(struct file *file, unsigned long reqprot, unsigned long prot, unsigned
/// long flags)`: code mapped from a file runs as surely as a program executed, so an
/// executable mapping of a file (`dlopen`, `LD_PRELOAD`, a loader mapping a program, a
/// memfd) is judged against `exec:`, before it is made (`allow::MAP`: exec entries, and
/// the system's library directories). The kernel's own mappings of a program and its
/// interpreter at exec come here too. Anonymous memory (a JIT) is not a file.
#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::EXEC) else {
        return 0;
    };
    let (file, prot): (u64, u64) = (ctx.arg(0), ctx.arg(2));
    if file == 0 || prot & PROT_EXEC == 0 {
        return 0;
    }
    answer(judge_exec(&member, file, allow::MAP, flags::LSM | flags::MAPPED))
}

/// `file_mprotect(struct vm_area_struct *vma, unsigned long reqprot, unsigned long
/// prot)`: a file mapped readable, then made executable, is judged like [`mmap_file`].
#[lsm(hook = "file_mprotect")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::EXEC) else {
        return 0;
    };
    let (vma, prot): (u64, u64) = (ctx.arg(0), ctx.arg(2));
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    // Anonymous memory (vm_file NULL, a JIT's) is not a file; an unreadable one fails
    // closed.
    let file = match read::<u64>(vma, config!(offsets.vma_vm_file)) {
        Ok(0) => return 0,
        Ok(file) => file,
        Err(ReadError) => 0,
    };
    answer(judge_exec(&member, file, allow::MAP, flags::LSM | flags::MAPPED | flags::MPROTECT))
}

/// Refusals only: an allowed exec is reported by `sched_process_exec`, with its argv;
/// an allowed mapping is not reported. `file` 0: it could not be read (fails closed).
/// (A plain pointer, not a `Result`: as a BPF-to-BPF call argument an `Err` leaves a
/// register unset, which the verifier refuses to pass.)
fn judge_exec(member: &SessionMember, file: u64, requested: u32, event_flags: u16) -> u32 {
    let file = if file == 0 { Err(ReadError) } else { Ok(file) };
    let Some(claimed) = claim_scratch() else {
        return policy::fail_closed(member, Tier::Lsm).action;
    };
    let Some(event) = EXEC_SCRATCH.get_ptr_mut(claimed.index) else {
        return policy::fail_closed(member, Tier::Lsm).action;
    };
    let index = claimed.index;
    // SAFETY: entry `index` of the per-CPU records, held with the key scratch's.
    let event: &mut ExecEvent = unsafe { &mut *event };
    event.argv_len = 0;
    let verdict =
        process::build_exec(member, file, requested, event, event_flags, Some(Tier::Lsm), &mut *claimed.scratch, index);
    if verdict.action != action::ALLOW {
        emit_with_path(event);
    }
    verdict.action
}

/// `path_unlink(const struct path *dir, struct dentry *dentry)`.
#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    change(ctx.arg(1), file_op::UNLINK, 0)
}

/// `path_rmdir(const struct path *dir, struct dentry *dentry)`.
#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    change(ctx.arg(1), file_op::RMDIR, 0)
}

/// `path_mknod(const struct path *dir, struct dentry *dentry, umode_t mode, unsigned
/// int dev)`: also every `open(O_CREAT)` that creates a file, before it exists.
#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    change(ctx.arg(1), file_op::CREATE, 0)
}

/// `path_mkdir(const struct path *dir, struct dentry *dentry, umode_t mode)`.
#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    change(ctx.arg(1), file_op::MKDIR, 0)
}

/// `path_symlink(const struct path *dir, struct dentry *dentry, const char *old_name)`.
#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    change(ctx.arg(1), file_op::SYMLINK, 0)
}

/// `path_link(struct dentry *old_dentry, const struct path *new_dir, struct dentry
/// *new_dentry)`: both names are writes. The new name, because it is made; the file
/// linked, because a new name in a writable directory is a way to write it (a file
/// outside `files.write` linked into `/tmp` and written there). The file keeps its
/// identity, so a denied file (by inode) cannot gain an allowed name either.
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    let old: u64 = ctx.arg(0);
    let from = change(old, file_op::LINK, 0);
    if from != 0 {
        return from;
    }
    let ino = read_ptr(old, config!(offsets.dentry_d_inode))
        .and_then(|inode| read::<u64>(inode, config!(offsets.inode_i_ino)))
        .unwrap_or(0);
    change(ctx.arg(2), file_op::LINK, ino)
}

/// `path_rename(const struct path *old_dir, struct dentry *old_dentry, const struct
/// path *new_dir, struct dentry *new_dentry, unsigned int flags)`: both names are
/// writes (an exchange moves both files).
#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let from = change(ctx.arg(1), file_op::RENAME_FROM, 0);
    if from != 0 {
        return from;
    }
    change(ctx.arg(3), file_op::RENAME_TO, 0)
}

/// `path_truncate(const struct path *path)`: truncate(2), ftruncate(2) and `O_TRUNC`.
#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    change_path(ctx.arg(0), file_op::TRUNCATE)
}

/// `path_chmod(const struct path *path, umode_t mode)`.
#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    change_path(ctx.arg(0), file_op::CHMOD)
}

/// `path_chown(const struct path *path, kuid_t uid, kgid_t gid)`.
#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    change_path(ctx.arg(0), file_op::CHOWN)
}

#[inline(always)]
fn change_path(path: u64, op: u32) -> i32 {
    match read_ptr(path, config!(offsets.path_dentry)) {
        Ok(dentry) => change(dentry, op, 0),
        Err(ReadError) => match member_for(lsm_tier::FILES) {
            Some(member) => answer(policy::fail_closed(&member, Tier::Lsm).action),
            None => 0,
        },
    }
}

/// Judges a change to the name `dentry` (an existing file, or a name about to be
/// created) as a write. `link_ino` is the inode a new hard link would name.
#[inline(always)]
fn change(dentry: u64, op: u32, link_ino: u64) -> i32 {
    let Some(member) = member_for(lsm_tier::FILES) else {
        return 0;
    };
    answer(judge_change(&member, dentry, op, link_ino, Tier::Lsm))
}
