//! Per-CPU space for one judgement, held by one run at a time: the path walk's state
//! and output (`path` does the walk) and the rule keys built from it (`policy`).

use core::intrinsics::{AtomicOrdering, atomic_xchg};

use aya_ebpf::{macros::map, maps::PerCpuArray};
use monitor_common::{
    event::{NAME_MAX_BYTES, PATH_MAX_BYTES},
    maps::{Counter, SCRATCH_ENTRIES},
    policy::{NameKey, PATH_KEY_BYTES},
};

use crate::kernel::SpanCopy;

/// Per-CPU space: the path walk and the key built from it.
#[repr(C)]
pub struct KeyScratch {
    /// 1 while a judgement holds this entry (see [`Claimed`]).
    pub busy: u64,
    pub path: PathScratch,
    pub prefix_len: u32,
    pub policy: u32,
    pub dev: u32,
    pub key: [u8; PATH_KEY_BYTES],
    pub name: NameKey,
}

#[map]
static KEY_SCRATCH: PerCpuArray<KeyScratch> = PerCpuArray::with_max_entries(SCRATCH_ENTRIES, 0);

/// Entry `index` of this CPU's key scratch, as the judgement that holds it reaches it
/// again (the path walk's steps). Only a holder of the entry may use it.
pub fn scratch_entry(index: u32) -> Option<&'static mut KeyScratch> {
    // SAFETY: per-CPU map value; the caller holds the entry (`claim_scratch`).
    KEY_SCRATCH.get_ptr_mut(index).map(|p| unsafe { &mut *p })
}

/// An entry of this CPU's key scratch held by one judgement, given back when dropped
/// (the judgement's records, `FILE_SCRATCH` and the others, use the same index).
///
/// Invariant: no two runs use one entry at once. Programs do not run in parallel on one
/// CPU, but on a kernel with full or lazy preemption an LSM or fentry/fexit program can
/// be preempted (they run with migration off, not preemption), and another task's
/// program then runs on the same CPU in the middle of the first one's walk; LSM
/// programs (since Linux 6.2, and 6.1.54) can even overlap themselves. A shared entry
/// let one judgement judge the path another wrote. The `busy` word is taken with an
/// atomic exchange, so of two runs that race for an entry only one gets it.
pub struct Claimed {
    pub index: u32,
    pub scratch: &'static mut KeyScratch,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        // SAFETY: this CPU's map value, held by this judgement until now.
        unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&mut self.scratch.busy, 0) };
    }
}

/// Takes the first free entry of this CPU's key scratch; None (counted as a kernel read
/// error: the caller fails closed) when every one is held.
#[inline(always)]
pub fn claim_scratch() -> Option<Claimed> {
    let mut index = 0;
    while index < SCRATCH_ENTRIES {
        if let Some(entry) = KEY_SCRATCH.get_ptr_mut(index) {
            // SAFETY: this CPU's map value; the exchange decides who holds it.
            let was = unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&mut (*entry).busy, 1) };
            if was == 0 {
                // SAFETY: held by this judgement alone until the `Claimed` is dropped.
                return Some(Claimed { index, scratch: unsafe { &mut *entry } });
            }
        }
        index += 1;
    }
    crate::kernel::count(Counter::KernelReadError);
    None
}

/// Per-CPU space for a walk.
#[repr(C)]
pub struct PathScratch {
    /// What one step of the walk hands the next. It lives here, in map memory, and not
    /// on the stack: see [`Walk`].
    pub(crate) walk: Walk,
    /// A name read on its own (after a rename raced the walk).
    pub name: [u8; NAME_MAX_BYTES],
    /// The path ends at `PATH_MAX_BYTES`; a component of up to `NAME_MAX_BYTES` is
    /// written below an offset under `PATH_MAX_BYTES`, so every write is in bounds.
    pub buf: [u8; PATH_MAX_BYTES + 1 + NAME_MAX_BYTES],
    /// The file's `struct file` and its filesystem's `struct super_block`, the fields
    /// the open hooks need of each read at once.
    pub file: SpanCopy,
    pub super_block: SpanCopy,
    /// The file's own `struct dentry`: its parent and name, and its filesystem.
    pub dentry: SpanCopy,
}

/// State of a walk between the steps `bpf_loop` runs.
///
/// Verifier invariant: this state is kept in the per-CPU scratch map value, never in the
/// caller's stack. Since Linux 6.7 the verifier checks a `bpf_loop` callback as a loop:
/// it verifies the step again and again until the state at its entry is equivalent to
/// one it has already proven. Values on the stack are tracked exactly, and `pos` and
/// `components` change on every step (and bound the writes, so they are precise):
/// no two entries were ever equivalent, and the verifier walked steps until it gave up
/// at 1,000,000 instructions, at a cost that depended on the path bounds and on the
/// code the compiler happened to emit. Loaded from map memory, every field is an
/// unknown scalar, each use is bounded by a mask, and the second entry into the step
/// equals the first: one step is verified for all of them.
#[repr(C)]
pub(crate) struct Walk {
    /// The dentry whose name the next step writes.
    pub(crate) dentry: u64,
    /// Its head, when `resolve` read it already (the first step); zero otherwise.
    pub(crate) head: DentryHead,
    /// The filesystem's `s_flags`.
    pub(crate) sb_flags: u64,
    /// The filesystem's root dentry, where the walk ends.
    pub(crate) root: u64,
    /// Where the path written so far starts; it ends with '/' at END - 1.
    pub(crate) pos: u32,
    pub(crate) components: u32,
    pub(crate) outcome: u32,
    pub(crate) leaf_len: u32,
}

/// `struct dentry` from `d_parent` to the end of `d_name` (a `struct qstr`), read at
/// once; `monitor::kernel_config` refuses a kernel laid out otherwise.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct DentryHead {
    pub(crate) parent: u64,
    pub(crate) hash: u32,
    pub(crate) len: u32,
    pub(crate) name: u64,
}
