//! Deciding an open or exec against the session's compiled policy (tier 2: a
//! violation in an enforcing session gets SIGKILL before the syscall returns to user
//! space, so the agent never uses what it reached for).

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_send_signal},
    macros::map,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use monitor_common::{
    event::{PATH_MAX_BYTES, flags},
    maps::{DENIED_INODES_MAX, RULES_MAX},
    policy::{
        DEVICE_RULE, InodeKey, LOADER_RULE, NO_RULE, NameKey, OTHER_PROCESS_RULE, PATH_KEY_BYTES, PRINCIPAL_GROUPS,
        PRINCIPAL_RULE, PathKey, Principal, ProtectedInode, RuleValue, action, allow, session_flags,
    },
    session::SessionMember,
};

use crate::{
    kernel::{config, opaque, read, read_ptr},
    maps::LOADER_INODES,
    path::{self, Resolved},
    scratch::KeyScratch,
    special_files::{self, ProcEntry},
};

/// Rule maps are written only by userspace: `BPF_F_NO_PREALLOC`, so that they take
/// kernel memory for the rules a policy has, not for the most it could have (the
/// preallocated `DENIED_INODES` alone was 22 MiB). (LPM tries are never preallocated.)
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static FILE_RULES: LpmTrie<[u8; 8 + PATH_KEY_BYTES], RuleValue> =
    LpmTrie::with_max_entries(RULES_MAX, BPF_F_NO_PREALLOC);
#[map]
pub static EXEC_RULES: LpmTrie<[u8; 8 + PATH_KEY_BYTES], RuleValue> =
    LpmTrie::with_max_entries(RULES_MAX, BPF_F_NO_PREALLOC);
#[map]
pub static NAME_RULES: HashMap<NameKey, RuleValue> = HashMap::with_max_entries(RULES_MAX, BPF_F_NO_PREALLOC);
/// Files under deny entries, by (policy, dev, inode): a hard link elsewhere is the same
/// file, and is denied the same.
#[map]
pub static DENIED_INODES: HashMap<InodeKey, RuleValue> =
    HashMap::with_max_entries(DENIED_INODES_MAX, BPF_F_NO_PREALLOC);
#[map]
pub static PRINCIPALS: HashMap<u32, Principal> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
/// [policy id, gid] -> 1: the principals' groups, one lookup per check.
#[map]
pub static PRINCIPAL_GROUP_SET: HashMap<[u32; 2], u8> =
    HashMap::with_max_entries(1024 * PRINCIPAL_GROUPS as u32, BPF_F_NO_PREALLOC);

/// The file an access concerns, for the principal's permission check.
pub struct Object {
    /// `struct inode *` of the file.
    pub inode: u64,
    /// `struct dentry *` of the file (its parent decides creation).
    pub dentry: u64,
    /// The access is judged by the file's directory (the file is being created,
    /// removed or renamed): the principal needs write and search permission there.
    pub by_directory: bool,
    /// Inode number (for `DENIED_INODES`).
    pub ino: u64,
}

/// Whether the principal could make this access under the file's owner, group and mode
/// bits (ACLs and capabilities are not considered). The file's own directory must be
/// searchable; a file created, removed or renamed is judged by that directory alone
/// (write and search). Directories further up are not checked: doing so inside the path walk
/// exceeds the verifier's budget (a second, tail-called program is the planned fix).
#[inline(always)]
fn principal_allows(policy: u32, object: &Object, requested: u32) -> bool {
    // SAFETY: map value (too large for the stack), only read here.
    let Some(principal) = (unsafe { PRINCIPALS.get(&policy) }) else {
        return false; // a session marked as acting for a user must have one: fail closed
    };
    let Ok(dir) = read_ptr(object.dentry, config!(offsets.dentry_d_parent))
        .and_then(|parent| read_ptr(parent, config!(offsets.dentry_d_inode)))
    else {
        return false;
    };
    let (inode, need) = if object.by_directory {
        (dir, 0o3) // write + search
    } else {
        if !may(policy, principal, dir, 0o1) {
            return false;
        }
        let mut need = 0;
        if requested & allow::READ != 0 {
            need |= 0o4;
        }
        if requested & allow::WRITE != 0 {
            need |= 0o2;
        }
        if requested & allow::EXEC != 0 {
            need |= 0o1;
        }
        (object.inode, need)
    };
    may(policy, principal, inode, need)
}

/// Whether `principal` has the `need` bits (r=4, w=2, x=1) on `inode`.
#[inline(always)]
fn may(policy: u32, principal: &Principal, inode: u64, need: u32) -> bool {
    let (Ok(mode), Ok(uid), Ok(gid)) = (
        read::<u16>(inode, config!(offsets.inode_i_mode)),
        read::<u32>(inode, config!(offsets.inode_i_uid)),
        read::<u32>(inode, config!(offsets.inode_i_gid)),
    ) else {
        return false;
    };
    let bits = if uid == principal.uid {
        (mode >> 6) & 7
    } else if PRINCIPAL_GROUP_SET.get_ptr(&[policy, gid]).is_some() {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    bits as u32 & need == need
}

const SIGKILL: u32 = 9;
const _: () = assert!(core::mem::size_of::<Key<[u8; 8 + PATH_KEY_BYTES]>>() == core::mem::size_of::<PathKey>());

/// Where a check runs, which decides what enforcement can do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// A BPF LSM hook, before the operation: refuse it (and kill the violator if the
    /// profile says so).
    Lsm,
    /// A tracepoint, after the operation: only SIGKILL can stop the violator before
    /// it returns to user space.
    Tracepoint,
}

/// The verdict on one access.
pub struct Verdict {
    pub action: u32,
    pub rule_id: u32,
}

impl Verdict {
    pub const UNCHECKED: Verdict = Verdict { action: action::ALLOW, rule_id: NO_RULE };
}

/// Fills the trie key (policy, dev, first bytes of the path) from the walk. A path
/// longer than the key keeps its first bytes: every rule is shorter, so the longest
/// matching rule is still found.
#[inline(always)]
fn build_key(scratch: &mut KeyScratch, resolved: &Resolved, policy: u32) -> bool {
    scratch.policy = policy;
    scratch.dev = resolved.dev;
    let mut len = resolved.len;
    if len > PATH_KEY_BYTES as u32 {
        len = PATH_KEY_BYTES as u32;
    }
    let start = opaque(resolved.start) & (PATH_MAX_BYTES as u32);
    let n = opaque(len) & 0xff;
    if n as usize > PATH_KEY_BYTES {
        return false;
    }
    // SAFETY: start + n stays inside the walk buffer (start <= 4095, n <= 255,
    // buffer 4352); n <= key.len().
    let copied = unsafe {
        bpf_probe_read_kernel_buf(
            scratch.path.buf.as_ptr().add(start as usize),
            core::slice::from_raw_parts_mut(scratch.key.as_mut_ptr(), n as usize),
        )
    };
    scratch.prefix_len = 64 + 8 * n;
    copied.is_ok()
}

/// The entry `**/NAME` for the leaf's name, if any.
#[inline(always)]
fn name_rule(scratch: &mut KeyScratch, resolved: &Resolved, policy: u32) -> Option<RuleValue> {
    scratch.name.policy = policy;
    path::copy_leaf(&scratch.path, resolved, &mut scratch.name.name);
    // SAFETY: copied out at once.
    unsafe { NAME_RULES.get(&scratch.name) }.copied()
}

/// Decides an access of `requested` (bits of `monitor_common::policy::allow`) to the
/// file walked into `resolved`, and the action a violation gets (see
/// [`violation_action`]). It takes no action itself: the caller carries the verdict out
/// ([`carry_out`]) once, when its record is complete.
#[inline(always)]
pub fn decide(
    member: &SessionMember,
    exec: bool,
    requested: u32,
    resolved: &Resolved,
    object: &Object,
    scratch: &mut KeyScratch,
    tier: Tier,
) -> Verdict {
    let restricted = if exec { session_flags::RESTRICTS_EXEC } else { session_flags::RESTRICTS_FILES };
    if member.flags & session_flags::HAS_POLICY == 0 || requested == 0 {
        return Verdict::UNCHECKED;
    }
    // A section the profile leaves out is not checked, unless the session acts for a
    // user (whose permissions are checked whatever the profile says).
    if member.flags & (restricted | session_flags::HAS_PRINCIPAL) == 0 {
        return Verdict::UNCHECKED;
    }
    let mut rule: Option<RuleValue> = None;
    if member.flags & restricted == 0 {
        // Only the principal's permissions apply.
        rule = Some(RuleValue { rule_id: NO_RULE, allow: requested });
    } else if resolved.flags & flags::PATH_TRUNCATED == 0 {
        if resolved.components > 0 && !exec {
            rule = name_rule(scratch, resolved, member.policy_id);
        }
        if rule.is_none() && build_key(scratch, resolved, member.policy_id) {
            // SAFETY: (prefix_len, policy, dev, key) are laid out as an LPM key.
            let key = unsafe { &*(core::ptr::addr_of!(scratch.prefix_len) as *const Key<[u8; 8 + PATH_KEY_BYTES]>) };
            let table = if exec { &EXEC_RULES } else { &FILE_RULES };
            rule = table.get(key).copied();
        }
    }
    let (mut allowed, mut rule_id) = match rule {
        Some(value) => (value.allow & requested == requested, value.rule_id),
        // A filesystem object without a mounted filesystem (pipe, socket, anonymous
        // inode reopened through /proc) is not a file a rule can name. Exec of one
        // (a memfd) is not allowed this way: it is code from nowhere on the list. An
        // executable mapping of one (a memfd, shared anonymous memory) is allowed like
        // anonymous memory, which no hook judges (a JIT's).
        None if (!exec || requested == allow::MAP)
            && resolved.components == 0
            && resolved.flags & flags::PATH_TRUNCATED == 0 =>
        {
            (true, NO_RULE)
        }
        None => (false, NO_RULE),
    };
    let restricts_files = !exec && member.flags & restricted != 0;
    // Under /proc the path names a process (see `special_files::proc_entry`).
    if restricts_files {
        match special_files::proc_entry(member, &scratch.path, resolved) {
            // A process's own entries, unless a deny entry covers them.
            ProcEntry::Own
                if !allowed
                    && rule.is_none_or(|r| r.allow != 0)
                    && special_files::own_entry_allows(&scratch.path, resolved, requested) =>
            {
                allowed = true
            }
            ProcEntry::OthersSecret => {
                allowed = false;
                rule_id = OTHER_PROCESS_RULE;
            }
            _ => {}
        }
    }
    // A raw device, unless the entry that decides names it.
    if allowed
        && restricts_files
        && !object.by_directory
        && rule.map_or(0, |r| r.allow) & allow::DEVICES == 0
        && special_files::is_raw_device(object.inode)
    {
        allowed = false;
        rule_id = DEVICE_RULE;
    }
    // A dynamic loader runs whatever program it is given (`ld.so PROGRAM` maps it, no
    // exec of it): executed directly only where the entry that allows it names it.
    // (Mapped, as at every dynamic program's exec, it is a library like any other.)
    if allowed
        && exec
        && requested & allow::EXEC != 0
        && rule.map_or(0, |r| r.allow) & allow::LOADER == 0
        && is_loader(resolved.dev, object.ino)
    {
        allowed = false;
        rule_id = LOADER_RULE;
    }
    // Another name for a denied file (a hard link) is the same file.
    if allowed && !exec {
        let key = InodeKey { policy: member.policy_id, dev: resolved.dev, ino: object.ino };
        // SAFETY: copied out at once.
        if let Some(denied) = unsafe { DENIED_INODES.get(&key) }.copied() {
            allowed = false;
            rule_id = denied.rule_id;
        }
    }
    // The agent never reaches further than the person it works for.
    if allowed
        && member.flags & session_flags::HAS_PRINCIPAL != 0
        && !principal_allows(member.policy_id, object, requested)
    {
        allowed = false;
        rule_id = PRINCIPAL_RULE;
    }
    if allowed {
        return Verdict { action: action::ALLOW, rule_id };
    }
    Verdict { action: violation_action(member, tier), rule_id }
}

/// The action a violation of the current process gets at `tier`: audit mode only
/// reports; an LSM hook refuses (`DENY`), and also kills when the profile says so
/// (`KILL`: the caller refuses too); a tracepoint can only kill.
#[inline(always)]
pub fn violation_action(member: &SessionMember, tier: Tier) -> u32 {
    if member.flags & session_flags::ENFORCE == 0 {
        return action::AUDIT;
    }
    if tier == Tier::Lsm && member.flags & session_flags::KILL_ON_VIOLATION == 0 {
        return action::DENY;
    }
    action::KILL
}

/// Whether (dev, ino) is one of the host's dynamic loaders (a hard link to one too).
#[inline(always)]
fn is_loader(dev: u32, ino: u64) -> bool {
    ino != 0 && LOADER_INODES.get_ptr(&ProtectedInode { dev, _pad: 0, ino }).is_some()
}

/// Takes `action` against the current process: SIGKILL for `KILL`; a refusal is the
/// caller's return value.
#[inline(always)]
pub fn carry_out(action: u32) {
    if action == action::KILL {
        // SAFETY: signals the current process; every caller checked that it is a
        // session member, so it is never the monitor or pid 1.
        unsafe { bpf_send_signal(SIGKILL) };
    }
}

/// Stops a violation of the current process as `tier` can ([`violation_action`]) and
/// returns the action taken.
#[inline(always)]
pub fn enforce(member: &SessionMember, tier: Tier) -> u32 {
    let action = violation_action(member, tier);
    carry_out(action);
    action
}

/// The action against an attempt on the monitor itself: refused in every session, audit
/// mode included (an agent that may disable the monitor is not observed any more);
/// killed too where the profile enforces with `kill`. Only the LSM tier can refuse.
#[inline(always)]
pub fn always_action(member: &SessionMember, tier: Tier) -> u32 {
    if member.flags & session_flags::ENFORCE != 0 && member.flags & session_flags::KILL_ON_VIOLATION != 0 {
        return violation_action(member, tier);
    }
    action::DENY
}

/// [`always_action`], taken.
#[inline(always)]
pub fn enforce_always(member: &SessionMember, tier: Tier) -> u32 {
    let action = always_action(member, tier);
    carry_out(action);
    action
}

/// The verdict when the file could not be resolved: a violation in a session with a
/// policy (fail closed), nothing otherwise. Not taken (see [`carry_out`]).
#[inline(always)]
pub fn unresolved(member: &SessionMember, tier: Tier) -> Verdict {
    if member.flags & session_flags::HAS_POLICY == 0 {
        return Verdict::UNCHECKED;
    }
    Verdict { action: violation_action(member, tier), rule_id: NO_RULE }
}

/// [`unresolved`], taken.
#[inline(always)]
pub fn fail_closed(member: &SessionMember, tier: Tier) -> Verdict {
    let verdict = unresolved(member, tier);
    carry_out(verdict.action);
    verdict
}
