//! Judging an open file: resolve it, decide the access it grants against the session's
//! policy, report it. The same for a descriptor returned by an open syscall (tier 2,
//! at syscall exit) and for a file the LSM `file_open` / `file_receive` hooks are
//! about to hand out (tier 1).

use monitor_common::{
    event::{FileOpenEvent, flags, fmode, kind},
    maps::Counter,
    policy::{ProtectedInode, SELF_PROTECTION_RULE, allow},
    session::SessionMember,
};

use crate::{
    kernel::{ReadError, config, count, emit_with_path, fill_header, read},
    maps::{FILE_SCRATCH, PROTECTED_INODES},
    path::{self, Resolved},
    policy::{self, Object, Tier, Verdict},
    scratch::{PathScratch, claim_scratch},
};

const O_TRUNC: u32 = 0o1000;
const O_ACCMODE: u32 = 0o3;

/// What an open asks of a file: writing includes creating and truncating it. Decided
/// from the file the kernel opened; the caller's flags add only what the file does not
/// show (truncation, and access mode 3, which opens for ioctls with neither mode bit).
#[inline(always)]
pub fn requested_access(f_mode: u32, open_flags: u32) -> u32 {
    if f_mode & fmode::PATH != 0 {
        return 0; // an O_PATH descriptor gives no access to the contents
    }
    let mut requested = 0;
    if f_mode & fmode::READ != 0 || open_flags & O_ACCMODE == O_ACCMODE {
        requested |= allow::READ;
    }
    if f_mode & (fmode::WRITE | fmode::CREATED) != 0 || open_flags & O_TRUNC != 0 || open_flags & O_ACCMODE == O_ACCMODE
    {
        requested |= allow::WRITE;
    }
    requested
}

/// Path and inode of an open file.
pub struct Described {
    /// `f_mode`.
    pub mode: u32,
    pub resolved: Resolved,
    pub ino: u64,
    /// `struct inode *` and `struct dentry *` of the file.
    pub inode: u64,
    pub dentry: u64,
}

/// Resolves `file` (a `struct file *`) into `scratch` and reads its mode and inode
/// number.
#[inline(always)]
/// `scratch` is entry `index` of the key scratch, which the caller holds.
pub fn describe_file(file: u64, scratch: &mut PathScratch, index: u32) -> Result<Described, ReadError> {
    let fields = &mut scratch.file;
    fields.read(file, config!(spans.file))?;
    let mode = fields.field::<u32>(config!(offsets.file_f_mode));
    let inode = fields.field::<u64>(config!(offsets.file_f_inode));
    let dentry = fields.field::<u64>(config!(offsets.file_f_path) + config!(offsets.path_dentry));
    if dentry == 0 {
        return Err(ReadError);
    }
    let resolved = path::resolve(dentry, scratch, index)?;
    let ino = if inode == 0 { 0 } else { read::<u64>(inode, config!(offsets.inode_i_ino)).unwrap_or(0) };
    Ok(Described { mode, resolved, ino, inode, dentry })
}

/// Whether (dev, ino) is one of the monitor's own files (policy, binary).
#[inline(always)]
pub fn is_protected(dev: u32, ino: u64) -> bool {
    ino != 0 && PROTECTED_INODES.get_ptr(&ProtectedInode { dev, _pad: 0, ino }).is_some()
}

const CGROUP_SUPER_MAGIC: u64 = 0x27e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Whether the file is a cgroup control file. Writing one moves processes between
/// cgroups (out of the session's), or freezes or kills a whole cgroup (the monitor's)
/// without the signal checks: the monitor's to write, never a session member's.
#[inline(always)]
fn on_cgroup_fs(resolved: &Resolved) -> bool {
    matches!(resolved.magic, CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC)
}

/// Judges `file` (a `struct file *`) being opened by a session member and reports it
/// as a `FILE_OPEN` record. `open_flags` are the caller's flags (trusted as far as the
/// caller says), `fd` the descriptor (`NO_FD` when there is none yet).
#[inline(always)]
pub fn judge_open(member: &SessionMember, file: u64, syscall: u32, open_flags: u32, fd: u32, tier: Tier) -> Verdict {
    let Some(claimed) = claim_scratch() else {
        return policy::fail_closed(member, tier);
    };
    let Some(event) = FILE_SCRATCH.get_ptr_mut(claimed.index) else {
        return policy::fail_closed(member, tier);
    };
    let index = claimed.index;
    let scratch = &mut *claimed.scratch;
    // SAFETY: entry `index` of the per-CPU records, held with the key scratch's.
    let event: &mut FileOpenEvent = unsafe { &mut *event };
    let mut event_flags = if tier == Tier::Lsm { flags::LSM } else { 0 };
    if !fill_header(&mut event.header, kind::FILE_OPEN, 0, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.syscall = syscall;
    event.open_flags = open_flags;
    event.fd = fd;
    // Each field is written once, below: zeros written first would be merged into a
    // byte-at-a-time memset call (see `zero_by_words`).
    let mut verdict = Verdict::UNCHECKED;
    let (mut f_mode, mut path_len, mut ino, mut dev) = (0, 0, 0, 0);
    match describe_file(file, &mut scratch.path, index) {
        Ok(described) => {
            f_mode = described.mode;
            path_len = path::copy_path(&scratch.path, &described.resolved, &mut event.path);
            ino = described.ino;
            dev = described.resolved.dev;
            event_flags |= described.resolved.flags;
            let requested = requested_access(f_mode, open_flags);
            // Only an LSM hook can refuse a write to the monitor's own files; the
            // lookups are not made where nothing would come of them.
            if requested & allow::WRITE != 0
                && tier == Tier::Lsm
                && (is_protected(described.resolved.dev, described.ino) || on_cgroup_fs(&described.resolved))
            {
                verdict = Verdict { action: policy::always_action(member, tier), rule_id: SELF_PROTECTION_RULE };
            } else {
                let object = Object {
                    inode: described.inode,
                    dentry: described.dentry,
                    by_directory: f_mode & fmode::CREATED != 0,
                    ino: described.ino,
                };
                verdict = policy::decide(member, false, requested, &described.resolved, &object, scratch, tier);
            }
        }
        Err(ReadError) => event_flags |= flags::READ_ERROR,
    }
    event.f_mode = f_mode;
    event.path_len = path_len;
    event.ino = ino;
    event.dev = dev;
    if event_flags & flags::READ_ERROR != 0 {
        count(Counter::KernelReadError);
        // An enforcing session fails closed: what cannot be resolved is not allowed.
        verdict = policy::unresolved(member, tier);
    }
    policy::carry_out(verdict.action);
    event.action = verdict.action;
    event.rule_id = verdict.rule_id;
    event.header.flags = event_flags;
    emit_with_path(event);
    verdict
}
