use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    event::{ExecEvent, FileChangeEvent, FileOpenEvent, PendingConnect},
    maps::{
        BPF_F_MMAPABLE, COUNTERS_LEN, DECISIONS_BYTES, EVENTS_BYTES, MEMBER_BITS_WORDS, PENDING_MAX, SCRATCH_ENTRIES,
        SESSIONS_MAX,
    },
    policy::ProtectedInode,
    session::SessionMember,
};

/// tgid -> session. Written by userspace for a session's first process, copied to
/// children at fork, removed when the last thread exits.
#[map]
pub static SESSIONS: HashMap<u32, SessionMember> = HashMap::with_max_entries(SESSIONS_MAX, 0);

/// tgid bit -> may be in `SESSIONS` (see `monitor_common::maps::MEMBER_BITS`).
#[map]
pub static MEMBER_BITS: Array<u64> = Array::with_max_entries(MEMBER_BITS_WORDS, BPF_F_MMAPABLE);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Violations (see `monitor_common::maps::DECISIONS`).
#[map]
pub static DECISIONS: RingBuf = RingBuf::with_byte_size(DECISIONS_BYTES, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// pid_tgid -> connect in flight.
#[map]
pub static PENDING_CONNECTS: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(PENDING_MAX, 0);

/// Per-CPU space for a connect's entry in `PENDING_CONNECTS`, built in a map value to
/// zero its address a word at a time (see `kernel::zero_by_words`).
#[map]
pub static PENDING_SCRATCH: PerCpuArray<PendingConnect> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space to build records too large for the 512-byte stack: entry N belongs to
/// whichever judgement holds entry N of the key scratch (`scratch::claim_scratch`).
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileOpenEvent> = PerCpuArray::with_max_entries(SCRATCH_ENTRIES, 0);
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(SCRATCH_ENTRIES, 0);
#[map]
pub static CHANGE_SCRATCH: PerCpuArray<FileChangeEvent> = PerCpuArray::with_max_entries(SCRATCH_ENTRIES, 0);

/// Index 0: bits of `monitor_common::maps::lsm_tier`, written by userspace at start.
#[map]
pub static LSM_TIERS: Array<u32> = Array::with_max_entries(1, 0);

/// Index 0: one of `monitor_common::maps::reader_state` (see `kernel::wakeup_flags`),
/// written by `monitor::ingest`.
#[map]
pub static READER_STATE: Array<u32> = Array::with_max_entries(1, 0);

/// The monitor's own files (see `monitor_common::maps::PROTECTED_INODES`).
#[map]
pub static PROTECTED_INODES: HashMap<ProtectedInode, u8> = HashMap::with_max_entries(64, 0);

/// The host's dynamic loaders (see `monitor_common::maps::LOADER_INODES`).
#[map]
pub static LOADER_INODES: HashMap<ProtectedInode, u8> = HashMap::with_max_entries(64, 0);
