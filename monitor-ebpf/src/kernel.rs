//! Reading kernel memory at offsets patched in from BTF, and the pieces every hook
//! shares: the load-time config, the event header, counters and emission.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_ktime_get_boot_ns},
};
use monitor_common::{
    config::KernelConfig,
    event::{
        EXEC_PATH_OFFSET, EventHeader, ExecEvent, FILE_CHANGE_PATH_OFFSET, FILE_OPEN_PATH_OFFSET, FileChangeEvent,
        FileOpenEvent, PATH_BUF_BYTES,
    },
    maps::Counter,
    session::SessionMember,
};

use crate::maps::{COUNTERS, DECISIONS, EVENTS, LSM_TIERS, READER_ASLEEP, SESSIONS};

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
    const { assert!(N % 8 == 0) };
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

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: always valid in tracing programs.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The session of `tgid`, if it is in one. This lookup is all a process outside every
/// session pays.
#[inline(always)]
pub fn session_of(tgid: u32) -> Option<SessionMember> {
    // SAFETY: the value is copied out at once; entries are plain integers.
    unsafe { SESSIONS.get(&tgid) }.copied()
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
    match process_start_time(current_task()) {
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

/// Start time of the process `task` belongs to (its group leader's).
#[inline(always)]
pub fn process_start_time(task: u64) -> Result<u64, ReadError> {
    let leader = read_ptr(task, config!(offsets.task_group_leader))?;
    read::<u64>(leader, config!(offsets.task_start_boottime))
}

/// Bytes pending in the ring buffer above which a record wakes the reader at once.
const WAKEUP_THRESHOLD: u64 = 64 * 1024;

/// Flags for a record to `EVENTS`. While telemetry flows the reader passes every 5 ms
/// (`monitor::ingest::POLL_INTERVAL_MS`), and a record wakes it only if 64 KiB are
/// waiting: one wakeup per record would cost more than building the record. A reader
/// that found nothing sleeps (`READER_ASLEEP`), and any record wakes it.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let asleep = READER_ASLEEP.get(0).is_some_and(|asleep| *asleep != 0);
    if asleep || EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_THRESHOLD { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
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
