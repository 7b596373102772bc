//! Map names and sizes, used by both sides.

/// Session membership: tgid -> [`crate::session::SessionMember`].
pub const SESSIONS: &str = "SESSIONS";
/// Capacity of [`SESSIONS`]: processes in all sessions at once.
pub const SESSIONS_MAX: u32 = 65_536;

/// One bit per tgid, the filter in front of [`SESSIONS`]: a process outside every
/// session is told so by one inlined array load instead of a hash lookup. Invariant:
/// every writer of a `SESSIONS` entry sets the tgid's bit first (the kernel at fork and
/// adoption, userspace through `monitor::member_bits`); the bit is cleared only after
/// the entry is removed. A set bit without an entry costs a lookup, never a verdict.
pub const MEMBER_BITS: &str = "MEMBER_BITS";
/// Words of [`MEMBER_BITS`]: one bit for each tgid below the kernel's `PID_MAX_LIMIT`
/// (2^22 on 64-bit), 512 KiB.
pub const MEMBER_BITS_WORDS: u32 = (1 << 22) / 64;
/// `BPF_F_MMAPABLE`: userspace sets its bits in place, atomically.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Telemetry ring buffer (file, exec, process and network events).
pub const EVENTS: &str = "EVENTS";
/// Size of [`EVENTS`] in bytes (a power of two, a multiple of the page size). The
/// ingest thread empties it every 5 ms at most into a queue of 65,536 events; 8 MiB
/// (about 0.3 s of file events at 100,000/s) lost nothing in `cargo xtask bench
/// pipeline`. Mapped twice into the reader, it counts 16 MiB in the daemon's RSS.
pub const EVENTS_BYTES: u32 = 8 * 1024 * 1024;

/// Decisions ring buffer: violations travel here, apart from telemetry, so that a
/// flood of ordinary events cannot crowd them out.
pub const DECISIONS: &str = "DECISIONS";
pub const DECISIONS_BYTES: u32 = 2 * 1024 * 1024;

/// Compiled path rules for opens: [`crate::policy::PathKey`] -> [`crate::policy::RuleValue`].
pub const FILE_RULES: &str = "FILE_RULES";
/// Compiled path rules for exec.
pub const EXEC_RULES: &str = "EXEC_RULES";
/// Compiled file-name rules: [`crate::policy::NameKey`] -> [`crate::policy::RuleValue`].
pub const NAME_RULES: &str = "NAME_RULES";
/// Compiled network rules: [`crate::policy::NetKey`] -> [`crate::policy::RuleValue`].
pub const NET_RULES: &str = "NET_RULES";
/// Socket families a policy names: policy id -> a bit per family (see
/// [`crate::policy::socket_family`]).
pub const POLICY_FAMILIES: &str = "POLICY_FAMILIES";
/// Files denied by identity: [`crate::policy::InodeKey`] -> [`crate::policy::RuleValue`].
pub const DENIED_INODES: &str = "DENIED_INODES";
/// Capacity of [`DENIED_INODES`] (files under deny entries, all policies).
pub const DENIED_INODES_MAX: u32 = 262_144;

/// Which resources the BPF LSM hooks enforce: index 0 -> bits of [`lsm_tier`].
pub const LSM_TIERS: &str = "LSM_TIERS";
/// Index 0: what the ring buffers' reader is doing, one of [`reader_state`]; it says
/// which records wake it.
pub const READER_STATE: &str = "READER_STATE";

/// Values of [`READER_STATE`].
pub mod reader_state {
    /// Passing every few ms: a record wakes the reader only if 64 KiB are waiting.
    pub const READING: u32 = 0;
    /// Found nothing and sleeps: every record wakes it.
    pub const ASLEEP: u32 = 1;
    /// Its queue is full, so it reads no telemetry for now: no record wakes it (a
    /// wakeup per record, in a full ring buffer, would cost every producer).
    pub const BACKED_UP: u32 = 2;
}

/// Bits of [`LSM_TIERS`]. The daemon sets a bit only once the hooks attached and were
/// seen to run; where a bit is clear, the tracepoint and cgroup programs (tier 2)
/// enforce that resource and the LSM hooks stand aside.
pub mod lsm_tier {
    pub const FILES: u32 = 1;
    pub const EXEC: u32 = 2;
    pub const NET: u32 = 4;
}

/// The monitor's own files: [`crate::policy::ProtectedInode`] -> 1.
pub const PROTECTED_INODES: &str = "PROTECTED_INODES";
/// The host's dynamic loaders, by identity (see `allow::LOADER`).
pub const LOADER_INODES: &str = "LOADER_INODES";

/// Principals by policy id: u32 -> [`crate::policy::Principal`].
pub const PRINCIPALS: &str = "PRINCIPALS";
/// The principals' groups: [policy id, gid] -> 1 (one lookup instead of a loop in
/// the kernel's permission check).
pub const PRINCIPAL_GROUP_SET: &str = "PRINCIPAL_GROUP_SET";
/// Capacity of each rule map.
pub const RULES_MAX: u32 = 65_536;

/// Entries of the per-CPU scratch a judgement works in (its path walk, rule keys and
/// record). A judgement takes one for itself and gives it back when done: on a kernel
/// with full or lazy preemption, several can be under way on one CPU at once (one task's
/// LSM or fentry/fexit program preempted, another's running). With none free, the
/// judgement fails closed.
pub const SCRATCH_ENTRIES: u32 = 4;

/// Per-CPU loss and error counters, indexed by [`Counter`].
pub const COUNTERS: &str = "COUNTERS";

/// Syscalls of session members between entry and exit: pid_tgid -> pending state.
pub const PENDING_MAX: u32 = 16_384;

/// What the kernel side counts. Indices into [`COUNTERS`]; only ever appended.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// An event was dropped because the ring buffer was full.
    RingbufFull = 0,
    /// A child could not be added to [`SESSIONS`] (map full): it left the session.
    SessionMapFull = 1,
    /// A kernel read failed while building an event; the event was sent incomplete.
    KernelReadError = 2,
    /// A syscall's entry state could not be stored; its exit produced no event.
    PendingMapFull = 3,
    /// A violation could not be reported: the decisions ring buffer was full (the
    /// violation was still enforced).
    DecisionRingbufFull = 4,
    /// The LSM `file_open` hook ran for the monitor's own process: proof, checked at
    /// start, that BPF LSM programs are active on this kernel (they can attach and
    /// still never run when `bpf` is missing from the kernel's `lsm=` list).
    LsmSelfTest = 5,
}

/// Number of entries of [`COUNTERS`].
pub const COUNTERS_LEN: u32 = 6;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS_LEN as usize] = [
        Counter::RingbufFull,
        Counter::SessionMapFull,
        Counter::KernelReadError,
        Counter::PendingMapFull,
        Counter::DecisionRingbufFull,
        Counter::LsmSelfTest,
    ];

    /// Stable name used in events and status output.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RingbufFull => "ringbuf_full",
            Counter::SessionMapFull => "session_map_full",
            Counter::KernelReadError => "kernel_read_error",
            Counter::PendingMapFull => "pending_map_full",
            Counter::DecisionRingbufFull => "decision_ringbuf_full",
            Counter::LsmSelfTest => "lsm_self_test",
        }
    }
}
