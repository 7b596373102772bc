//! A change to the file tree (create, unlink, rename, link, truncate, chmod, chown, a
//! unix socket's connect or send) judged as a write to the name it concerns, on
//! either tier.

use monitor_common::{
    event::{FileChangeEvent, file_op, flags, kind},
    maps::Counter,
    policy::{SELF_PROTECTION_RULE, action, allow},
    session::SessionMember,
};

use crate::{
    file::is_protected,
    kernel::{ReadError, config, count, emit_with_path, fill_header, read, read_ptr},
    maps::CHANGE_SCRATCH,
    path,
    policy::{self, Object, Tier, Verdict},
    scratch::claim_scratch,
};

/// Judges and reports (`FILE_CHANGE`) a change to the name `dentry` as a write, at
/// `tier`; carries out the verdict and returns its action.
#[inline(always)]
pub(crate) fn judge_change(member: &SessionMember, dentry: u64, op: u32, link_ino: u64, tier: Tier) -> u32 {
    let Some(claimed) = claim_scratch() else {
        return policy::fail_closed(member, tier).action;
    };
    let Some(event) = CHANGE_SCRATCH.get_ptr_mut(claimed.index) else {
        return policy::fail_closed(member, tier).action;
    };
    let index = claimed.index;
    let scratch = &mut *claimed.scratch;
    // SAFETY: entry `index` of the per-CPU records, held with the key scratch's.
    let event: &mut FileChangeEvent = unsafe { &mut *event };
    let mut event_flags = if tier == Tier::Lsm { flags::LSM } else { 0 };
    if !fill_header(&mut event.header, kind::FILE_CHANGE, 0, member.session_id) {
        event_flags |= flags::READ_ERROR;
    }
    event.op = op;
    event.dev = 0;
    event.path_len = 0;
    event._pad = 0;
    // A name about to be created has no inode yet.
    let inode = read_ptr(dentry, config!(offsets.dentry_d_inode)).unwrap_or(0);
    let own_ino = if inode == 0 { 0 } else { read::<u64>(inode, config!(offsets.inode_i_ino)).unwrap_or(0) };
    let ino = if link_ino != 0 { link_ino } else { own_ino };
    event.ino = ino;
    let mut verdict = Verdict::UNCHECKED;
    match path::resolve(dentry, &mut scratch.path, index) {
        Ok(resolved) => {
            event.path_len = path::copy_path(&scratch.path, &resolved, &mut event.path);
            event.dev = resolved.dev;
            event_flags |= resolved.flags;
            if is_protected(resolved.dev, ino) || is_protected(resolved.dev, own_ino) {
                verdict = Verdict { action: policy::always_action(member, tier), rule_id: SELF_PROTECTION_RULE };
            } else {
                // Creating, removing or renaming a name is judged by its directory;
                // truncate, chmod, chown and a unix connect or send by the file.
                let by_directory = !matches!(
                    op,
                    file_op::TRUNCATE | file_op::CHMOD | file_op::CHOWN | file_op::CONNECT | file_op::SEND
                );
                let object = Object { inode, dentry, by_directory, ino };
                verdict = policy::decide(member, false, allow::WRITE, &resolved, &object, scratch, tier);
            }
        }
        Err(ReadError) => event_flags |= flags::READ_ERROR,
    }
    if event_flags & flags::READ_ERROR != 0 {
        count(Counter::KernelReadError);
        verdict = policy::unresolved(member, tier);
    }
    policy::carry_out(verdict.action);
    event.action = verdict.action;
    event.rule_id = verdict.rule_id;
    event.header.flags = event_flags;
    // A file created by an open is reported by its `file.open` (created: true).
    if verdict.action != action::ALLOW || op != file_op::CREATE {
        emit_with_path(event);
    }
    verdict.action
}
