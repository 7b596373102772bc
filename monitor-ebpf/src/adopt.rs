//! Adoption at exec (see `monitor_common::adopt`): a process outside every session
//! whose exec matches a selector becomes the first process of a new session, before
//! the new program runs its first instruction.

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::{
        bpf_get_current_uid_gid,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_prandom_u32, bpf_probe_read_kernel_str},
    },
    macros::{map, raw_tracepoint},
    maps::{Array, HashMap},
    programs::RawTracePointContext,
};
use monitor_common::{
    adopt::{
        ADOPT_KEYS_MAX, AdoptConfig, AdoptSelector, CGROUP_NAME_BYTES, FileKey, IdKey, MAX_CGROUP_LEVELS,
        MAX_SELECTORS, NameKey, choose, field, name_kind,
    },
    event::{AdoptEvent, kind},
    maps::Counter,
    session::SessionMember,
};

use crate::{
    kernel::{ReadError, config, count, current_task, fill_header, join_session, read, read_ptr},
    maps::DECISIONS,
};

#[map]
static ADOPT_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static ADOPT_CONFIG: Array<AdoptConfig> = Array::with_max_entries(2, 0);
#[map]
static ADOPT_SELECTORS: Array<AdoptSelector> = Array::with_max_entries(2 * MAX_SELECTORS, 0);
#[map]
static ADOPT_FILES: HashMap<FileKey, u64> = HashMap::with_max_entries(ADOPT_KEYS_MAX, 0);
#[map]
static ADOPT_IDS: HashMap<IdKey, u64> = HashMap::with_max_entries(ADOPT_KEYS_MAX, 0);
/// (generation, selector, uid) -> the session a selector starts for that user (its
/// profile compiled with the user's home); other users get `ADOPT_SELECTORS`.
#[map]
static ADOPT_USERS: HashMap<IdKey, AdoptSelector> = HashMap::with_max_entries(ADOPT_KEYS_MAX, 0);
#[map]
static ADOPT_CGROUP_NAMES: HashMap<NameKey, u64> = HashMap::with_max_entries(256, 0);

/// `cgroup_mkdir(struct cgroup *cgrp, const char *path)`: a cgroup named by a `unit:`
/// or `cgroup:` selector gets its id into `ADOPT_IDS` before any process can join it
/// (systemd makes a unit's cgroup anew at every start).
#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    let _ = try_cgroup_mkdir(&ctx);
    0
}

fn try_cgroup_mkdir(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let Some(&generation) = ADOPT_ACTIVE.get(0) else { return Ok(()) };
    let generation = generation & 1;
    if ADOPT_CONFIG.get(generation).is_none_or(|c| c.defined == 0) {
        return Ok(());
    }
    let cgroup: u64 = ctx.arg(0);
    let path: u64 = ctx.arg(1);
    let kn = read_ptr(cgroup, config!(offsets.cgroup_kn))?;
    let id = read::<u64>(kn, config!(offsets.kernfs_node_id))?;
    let name = read_ptr(kn, config!(offsets.kernfs_node_name))?;
    let mut key = NameKey { generation, kind: name_kind::UNIT, name: [0; CGROUP_NAME_BYTES] };
    let mut mask = name_mask(&mut key, name);
    key = NameKey { generation, kind: name_kind::PATH, name: [0; CGROUP_NAME_BYTES] };
    mask |= name_mask(&mut key, path);
    if mask != 0 {
        let _ = ADOPT_IDS.insert(&IdKey { generation, field: field::CGROUP, id }, &mask, 0);
    }
    Ok(())
}

/// `cgroup_rmdir(struct cgroup *cgrp, const char *path)`: forgets a removed cgroup's id.
#[raw_tracepoint(tracepoint = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: RawTracePointContext) -> i32 {
    let _ = try_cgroup_rmdir(&ctx);
    0
}

fn try_cgroup_rmdir(ctx: &RawTracePointContext) -> Result<(), ReadError> {
    let Some(&generation) = ADOPT_ACTIVE.get(0) else { return Ok(()) };
    let kn = read_ptr(ctx.arg(0), config!(offsets.cgroup_kn))?;
    let id = read::<u64>(kn, config!(offsets.kernfs_node_id))?;
    let _ = ADOPT_IDS.remove(&IdKey { generation: generation & 1, field: field::CGROUP, id });
    Ok(())
}

/// The selectors naming the string at `text` (a kernel string) as `key.kind`.
fn name_mask(key: &mut NameKey, text: u64) -> u64 {
    // SAFETY: bounded by the key; the helper checks the source.
    let n =
        unsafe { bpf_probe_read_kernel_str(key.name.as_mut_ptr().cast(), CGROUP_NAME_BYTES as u32, text as *const _) };
    if n <= 1 || n as usize >= CGROUP_NAME_BYTES {
        return 0; // empty, unreadable, or longer than any selector may name
    }
    // SAFETY: the value is copied out at once.
    unsafe { ADOPT_CGROUP_NAMES.get(key) }.copied().unwrap_or(0)
}

/// If the exec of `bprm` by the current process (outside every session) matches a
/// selector, makes it a session's first process and reports the adoption.
#[inline(always)]
pub fn adopt_at_exec(tgid: u32, bprm: u64) -> Option<SessionMember> {
    let generation = *ADOPT_ACTIVE.get(0)? & 1;
    let config = *ADOPT_CONFIG.get(generation)?;
    if config.defined == 0 {
        return None;
    }
    let mut satisfied = [0u64; field::COUNT];
    if let Ok(file) = read_ptr(bprm, config!(offsets.binprm_file)) {
        satisfied[field::EXE as usize] = file_mask(generation, field::EXE, file);
    }
    if let Ok(file) = parent_exe() {
        satisfied[field::PARENT_EXE as usize] = file_mask(generation, field::PARENT_EXE, file);
    }
    let uid = bpf_get_current_uid_gid() as u32 as u64;
    satisfied[field::UID as usize] = id_mask(generation, field::UID, uid);
    let mut cgroups = 0;
    for level in 0..MAX_CGROUP_LEVELS {
        // SAFETY: helper without preconditions.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        cgroups |= id_mask(generation, field::CGROUP, id);
    }
    satisfied[field::CGROUP as usize] = cgroups;
    let selector = choose(&config, &satisfied)?;
    let user_key = IdKey { generation, field: selector, id: uid };
    // SAFETY: the value is copied out at once.
    let chosen = match unsafe { ADOPT_USERS.get(&user_key) } {
        Some(for_user) => *for_user,
        None => *ADOPT_SELECTORS.get(generation * MAX_SELECTORS + (selector & (MAX_SELECTORS - 1)))?,
    };
    let member = SessionMember { session_id: new_session_id(), policy_id: chosen.policy_id, flags: chosen.flags };
    if join_session(tgid, &member).is_err() {
        count(Counter::SessionMapFull);
        return None;
    }
    report(&member, selector, generation);
    aya_log_ebpf::info!(&(), target: "monitor_ebpf::adopt", "tgid {} adopted by selector {} into session {:x}", tgid, selector, member.session_id);
    Some(member)
}

fn file_mask(generation: u32, which: u32, file: u64) -> u64 {
    let Ok((dev, ino)) = file_identity(file) else { return 0 };
    let key = FileKey { generation, field: which, ino, dev, _pad: 0 };
    // SAFETY: the value is copied out at once.
    unsafe { ADOPT_FILES.get(&key) }.copied().unwrap_or(0)
}

fn id_mask(generation: u32, which: u32, id: u64) -> u64 {
    let key = IdKey { generation, field: which, id };
    // SAFETY: the value is copied out at once.
    unsafe { ADOPT_IDS.get(&key) }.copied().unwrap_or(0)
}

/// (kernel dev, inode number) of an open file.
fn file_identity(file: u64) -> Result<(u32, u64), ReadError> {
    let inode = read_ptr(file, config!(offsets.file_f_inode))?;
    let ino = read::<u64>(inode, config!(offsets.inode_i_ino))?;
    let dentry = read_ptr(file, config!(offsets.file_f_path) + config!(offsets.path_dentry))?;
    let sb = read_ptr(dentry, config!(offsets.dentry_d_sb))?;
    let dev = read::<u32>(sb, config!(offsets.super_block_s_dev))?;
    Ok((dev, ino))
}

/// `current->real_parent->mm->exe_file` (none for a kernel thread parent).
fn parent_exe() -> Result<u64, ReadError> {
    let parent = read_ptr(current_task(), config!(offsets.task_real_parent))?;
    let mm = read_ptr(parent, config!(offsets.task_mm))?;
    read_ptr(mm, config!(offsets.mm_exe_file))
}

/// A random, non-zero session id.
fn new_session_id() -> u64 {
    // SAFETY: helpers without preconditions.
    let (high, low) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    ((high as u64) << 32 | low as u64) | 1
}

/// Adoption records travel on the decisions ring buffer, beside violations: a flood of
/// telemetry cannot crowd out the record that says whose a session is.
fn report(member: &SessionMember, selector: u32, generation: u32) {
    let Some(mut entry) = DECISIONS.reserve::<AdoptEvent>(0) else {
        count(Counter::DecisionRingbufFull);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let complete =
        fill_header(&mut event.header, kind::SESSION_ADOPT, size_of::<AdoptEvent>() as u32, member.session_id);
    if !complete {
        event.header.flags = monitor_common::event::flags::READ_ERROR;
    }
    event.selector = selector;
    event.generation = generation;
    event.policy_id = member.policy_id;
    event.flags = member.flags;
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
}
