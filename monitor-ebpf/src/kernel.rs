//! Reading kernel memory at offsets patched in from BTF, and the pieces every hook
//! shares: the load-time config, the event header, counters and emission.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
    generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_ktime_get_boot_ns, bpf_task_pt_regs},
};
use monitor_common::{
    config::{KernelConfig, SPAN_MAX_BYTES, Span},
    event::{
        EXEC_PATH_OFFSET, EventHeader, ExecEvent, FILE_CHANGE_PATH_OFFSET, FILE_OPEN_PATH_OFFSET, FileChangeEvent,
        FileOpenEvent, PATH_BUF_BYTES,
    },
    maps::{Counter, reader_state},
    session::SessionMember,
};

use core::intrinsics::{AtomicOrdering, atomic_and, atomic_or};

use crate::maps::{COUNTERS, DECISIONS, EVENTS, LSM_TIERS, MEMBER_BITS, READER_STATE, SESSIONS};

/// Patched by the daemon before load (see `monitor_common::config`).
#[unsafe(no_mangle)]
pub(crate) static KERNEL_CONFIG: KernelConfig = KernelConfig::ZERO;

/// Reads one field of the load-time config. The volatile read keeps the compiler from
/// folding in the all-zero value the object was built with.
macro_rules! config {
    ($($field:tt).+) => {
        // SAFETY: KERNEL_CONFIG is a plain static; the read is in bounds.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(crate::kernel::KERNEL_CONFIG.$($field).+)) }
    };
}
pub(crate) use config;

/// Hides `value` from the optimizer. A bounds check LLVM considers redundant (a mask
/// after a comparison) is otherwise deleted, and the verifier, which tracks registers
/// rather than facts, then rejects the access it guarded.
#[inline(always)]
pub fn opaque<T: Copy>(value: T) -> T {
    // SAFETY: reading a local through a valid pointer.
    unsafe { core::ptr::read_volatile(&value) }
}

/// Zeroes `bytes` eight at a time. Zeros assigned to a buffer compile to a call to a
/// byte-at-a-time `memset` in BPF (five instructions a byte). `bytes` must be in a map
/// value or a ring buffer record: the verifier allows 8-byte stores at any alignment
/// there, not on the stack.
#[inline(always)]
pub fn zero_by_words<const N: usize>(bytes: &mut [u8; N]) {
    const { assert!(N.is_multiple_of(8)) };
    let words = bytes.as_mut_ptr().cast::<u64>();
    let mut i = 0;
    while i < N / 8 {
        // SAFETY: word i lies inside `bytes`; the volatile store keeps LLVM from
        // merging the stores back into a memset.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// A failed kernel read.
pub struct ReadError;

/// A copy of a [`Span`] of a kernel struct. Userspace starts a span 8-aligned, so a
/// naturally aligned field is aligned here too.
#[repr(C, align(8))]
pub struct SpanCopy {
    /// Room for an 8-byte field at any offset the mask in `field` lets through.
    bytes: [u8; SPAN_MAX_BYTES as usize + 8],
    start: u32,
}

impl SpanCopy {
    /// Copies `span` of the struct at `base` in one read.
    #[inline(always)]
    pub fn read(&mut self, base: u64, span: Span) -> Result<(), ReadError> {
        let len = opaque(span.len) & (2 * SPAN_MAX_BYTES - 1);
        if len > SPAN_MAX_BYTES {
            return Err(ReadError);
        }
        self.start = span.start;
        // SAFETY: len <= bytes.len(); the helper checks the kernel address.
        unsafe {
            bpf_probe_read_kernel_buf(
                (base + span.start as u64) as *const u8,
                core::slice::from_raw_parts_mut(self.bytes.as_mut_ptr(), len as usize),
            )
        }
        .map_err(|_| ReadError)
    }

    /// The field at `offset` in the struct (an offset inside the span read).
    #[inline(always)]
    pub fn field<T: Copy>(&self, offset: u32) -> T {
        let at = opaque(offset.wrapping_sub(self.start)) & (SPAN_MAX_BYTES - 1);
        // SAFETY: at + size_of::<T>() <= bytes.len() for T of up to 8 bytes; aligned
        // for a naturally aligned field (see the type's comment).
        unsafe { core::ptr::read_volatile(self.bytes.as_ptr().add(at as usize).cast::<T>()) }
    }
}

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Result<T, ReadError> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|_| ReadError)
}

/// Reads a kernel pointer at `base + offset`; null is an error.
#[inline(always)]
pub fn read_ptr(base: u64, offset: u32) -> Result<u64, ReadError> {
    match read::<u64>(base, offset)? {
        0 => Err(ReadError),
        p => Ok(p),
    }
}

/// A kernel pointer whose type the verifier knows from the kernel's BTF: the current
/// task, its saved registers, or a pointer field loaded from one of those. Its fields
/// are plain loads, not `bpf_probe_read_kernel` calls (a call and return cost 25-30 ns
/// each on hosts with return-thunk mitigations; a load, about one). The offsets come
/// from `KERNEL_CONFIG`, a frozen read-only map, which the verifier reads as constants
/// and checks against the BTF type. A load the kernel cannot make yields zero (the
/// JIT's exception table), never a fault.
///
/// Only a field that is itself a pointer to a struct may become a `Typed` (the verifier
/// rejects the program otherwise, at load time, on every kernel the suites boot).
#[derive(Clone, Copy)]
pub struct Typed(u64);

impl Typed {
    /// `current` (tracing and LSM programs only).
    #[inline(always)]
    pub fn current_task() -> Typed {
        // SAFETY: helper without preconditions.
        Typed(unsafe { bpf_get_current_task_btf() } as u64)
    }

    /// The user registers this task (a `task_struct`) saved on entering the kernel,
    /// which no other thread can change.
    #[inline(always)]
    pub fn user_regs(self) -> Typed {
        // SAFETY: the verifier checks that `self` is a task_struct.
        Typed(unsafe { bpf_task_pt_regs(self.0 as *mut _) } as u64)
    }

    /// The plain value (integer, or a pointer kept as an address) at `offset`.
    #[inline(always)]
    pub fn load<T: Copy>(self, offset: u32) -> T {
        // SAFETY: the verifier checks the access against the BTF type; the volatile
        // read keeps LLVM from merging or widening loads the verifier checks one by one.
        unsafe { core::ptr::read_volatile((self.0 + offset as u64) as *const T) }
    }

    /// The pointer to a struct at `offset`; null is an error.
    #[inline(always)]
    pub fn load_ptr(self, offset: u32) -> Result<Typed, ReadError> {
        match self.load::<u64>(offset) {
            0 => Err(ReadError),
            p => Ok(Typed(p)),
        }
    }
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: always valid in tracing programs.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The session of `tgid`, if it is in one. A process outside every session pays one
/// inlined load of its bit in `MEMBER_BITS`, which every writer of `SESSIONS` sets
/// before the entry; a tgid beyond the bitmap is looked up.
#[inline(always)]
pub fn session_of(tgid: u32) -> Option<SessionMember> {
    if let Some(word) = MEMBER_BITS.get(tgid / 64)
        && *word & member_bit(tgid) == 0
    {
        return None;
    }
    // SAFETY: the value is copied out at once; entries are plain integers.
    unsafe { SESSIONS.get(&tgid) }.copied()
}

#[inline(always)]
fn member_bit(tgid: u32) -> u64 {
    1 << (tgid % 64)
}

/// Adds `tgid` to `SESSIONS`, its bit first. The bit is set atomically: other CPUs and
/// userspace set and clear the bits of other tgids in the same word.
#[inline(always)]
pub fn join_session(tgid: u32, member: &SessionMember) -> Result<(), i32> {
    if let Some(word) = MEMBER_BITS.get_ptr_mut(tgid / 64) {
        // SAFETY: a map value of 8 aligned bytes; the same RMW userspace uses.
        unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, member_bit(tgid)) };
    }
    SESSIONS.insert(&tgid, member, 0)
}

/// Removes `tgid` from `SESSIONS`, then clears its bit.
#[inline(always)]
pub fn leave_session(tgid: u32) {
    let _ = SESSIONS.remove(&tgid);
    if let Some(word) = MEMBER_BITS.get_ptr_mut(tgid / 64) {
        // SAFETY: as in `join_session`.
        unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(word, !member_bit(tgid)) };
    }
}

/// Whether the LSM hooks enforce `resource` (a bit of `monitor_common::maps::lsm_tier`).
#[inline(always)]
pub fn lsm_enforces(resource: u32) -> bool {
    LSM_TIERS.get(0).is_some_and(|bits| *bits & resource != 0)
}

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, this program is its only writer on this CPU.
        unsafe { *slot += 1 };
    }
    // The diagnostics of `--ebpf-log warn`. Off, the level in `.rodata` is 0 and the
    // verifier drops the call as dead code. (`macro_support` is what aya-log's macros
    // expand to; the crate's version is pinned.)
    if counter != Counter::LsmSelfTest
        && aya_log_ebpf::macro_support::level_enabled(aya_log_ebpf::macro_support::Level::Warn)
    {
        log_loss(counter as u32);
    }
}

/// What `count` counts, logged: one copy per program, called from each counting site
/// (inlined there, the log statements made the object 7% larger and the daemon's heap
/// 0.6 MiB).
#[inline(never)]
fn log_loss(counter: u32) {
    // The context argument of aya-log's macros is unused (aya-log-ebpf 0.2). The target
    // is explicit: the module path would be `monitor::...`, the name of this crate's
    // binary, which is also the userspace crate's.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let why = match counter {
        c if c == Counter::RingbufFull as u32 => "event dropped, the events ring buffer is full",
        c if c == Counter::SessionMapFull as u32 => "not added to its session, the session map is full",
        c if c == Counter::KernelReadError as u32 => "a kernel read failed, event incomplete",
        c if c == Counter::PendingMapFull as u32 => "syscall entry not kept, the pending map is full",
        _ => "violation not reported, the decisions ring buffer is full",
    };
    aya_log_ebpf::warn!(&(), target: "monitor_ebpf::kernel", "tgid {}: {}", tgid, why);
}

/// Fills the common header for the current task. Returns false if a kernel read
/// failed (the header is still usable; the caller flags the event).
#[inline(always)]
pub fn fill_header(header: &mut EventHeader, kind: u16, size: u32, session_id: u64) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = kind;
    header.flags = 0;
    header.size = size;
    // SAFETY: helper without preconditions.
    header.time_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.session_id = session_id;
    header.tgid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    let leader = Typed::current_task().load_ptr(config!(offsets.task_group_leader));
    match leader.map(|leader| leader.load::<u64>(config!(offsets.task_start_boottime))) {
        Ok(start) => {
            header.start_time_ns = start;
            true
        }
        Err(ReadError) => {
            header.start_time_ns = 0;
            false
        }
    }
}

/// Bytes pending in the ring buffer above which a record wakes the reader at once.
const WAKEUP_THRESHOLD: u64 = 64 * 1024;

/// Flags for a record to `EVENTS`. While telemetry flows the reader passes every 5 ms
/// (`monitor::ingest::POLL_INTERVAL_MS`), and a record wakes it only if 64 KiB are
/// waiting: one wakeup per record would cost more than building the record. A reader
/// that found nothing sleeps, and any record wakes it; one whose queue is full is woken
/// by none (`READER_STATE`).
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    match READER_STATE.get(0).copied() {
        Some(reader_state::ASLEEP) => BPF_RB_FORCE_WAKEUP,
        Some(reader_state::BACKED_UP) => BPF_RB_NO_WAKEUP,
        _ if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_THRESHOLD => BPF_RB_FORCE_WAKEUP,
        _ => BPF_RB_NO_WAKEUP,
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Sends `record` to the ring buffer, counting a full buffer.
#[inline(always)]
pub fn emit(record: &[u8]) {
    if EVENTS.output::<[u8]>(record, wakeup_flags()).is_err() {
        count(Counter::RingbufFull);
    }
}

/// Sends a violation to the decisions ring buffer and wakes the reader at once.
#[inline(always)]
pub fn emit_decision(record: &[u8]) {
    if DECISIONS.output::<[u8]>(record, BPF_RB_FORCE_WAKEUP).is_err() {
        count(Counter::DecisionRingbufFull);
    }
}

/// A record that ends in a path buffer, of which only the used part is sent.
pub trait PathRecord: Sized {
    /// Bytes before the path buffer.
    const PATH_OFFSET: usize;
    fn header_mut(&mut self) -> &mut EventHeader;
    fn path_len(&self) -> u32;
    /// One of `monitor_common::policy::action`.
    fn action(&self) -> u32;
}

/// `PathRecord` for a record with `header`, `path_len` and `action` fields.
macro_rules! path_record {
    ($record:ty, $path_offset:expr) => {
        impl PathRecord for $record {
            const PATH_OFFSET: usize = $path_offset;
            fn header_mut(&mut self) -> &mut EventHeader {
                &mut self.header
            }
            fn path_len(&self) -> u32 {
                self.path_len
            }
            fn action(&self) -> u32 {
                self.action
            }
        }
    };
}

path_record!(ExecEvent, EXEC_PATH_OFFSET);
path_record!(FileOpenEvent, FILE_OPEN_PATH_OFFSET);
path_record!(FileChangeEvent, FILE_CHANGE_PATH_OFFSET);

/// Sends the used part of `record`, to the decisions ring buffer if the kernel decided
/// anything but allow; sets the header's size first.
#[inline(always)]
pub fn emit_with_path<T: PathRecord>(record: &mut T) {
    let mut len = record.path_len() as usize;
    if len > PATH_BUF_BYTES {
        len = PATH_BUF_BYTES;
    }
    let size = T::PATH_OFFSET + len;
    if size > size_of::<T>() {
        return;
    }
    record.header_mut().size = size as u32;
    let action = record.action();
    // SAFETY: size <= size_of::<T>(), checked above.
    let bytes = unsafe { core::slice::from_raw_parts((record as *const T).cast::<u8>(), size) };
    if action == monitor_common::policy::action::ALLOW { emit(bytes) } else { emit_decision(bytes) }
}
