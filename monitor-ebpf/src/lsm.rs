//! What every BPF LSM hook shares: which session the hooks enforce for, and the
//! answer a refusing hook returns.

use monitor_common::{policy::action, session::SessionMember};

use crate::kernel::{current_tgid, lsm_enforces, session_of};

/// `-EPERM`, what a refusing hook returns.
pub const EPERM: i32 = -1;

/// `EPERM` as the answer reads it: from the object's read-only data, which the kernel
/// freezes, so the verifier knows its value and LLVM does not.
static REFUSAL: i32 = EPERM;

/// The hook's answer for a verdict.
///
/// Since Linux 6.12 the verifier requires an LSM program's return value to be provably
/// within `[-MAX_ERRNO, 0]`. Left alone, LLVM turns "`EPERM` or 0" into arithmetic
/// (`r0 = -(deny & 1)`), and the verifier does not track a range through a negation:
/// it rejected every hook written that way ("R0 has unknown scalar value should have
/// been in [-4095, 0]"). Reading the refusal from [`REFUSAL`] keeps the choice a
/// branch between a known constant and 0. (Hiding it on the stack instead, as
/// `black_box` does, is not enough: a 4-byte spill at an unaligned slot is not
/// tracked, and the verifier then sees any `u32`.)
#[inline(always)]
pub fn answer(verdict_action: u32) -> i32 {
    if verdict_action == action::DENY || verdict_action == action::KILL {
        // SAFETY: a plain static, read in bounds.
        unsafe { core::ptr::read_volatile(&REFUSAL) }
    } else {
        0
    }
}

/// The session of the current process, if the LSM hooks enforce `resource` for it.
#[inline(always)]
pub(crate) fn member_for(resource: u32) -> Option<SessionMember> {
    let member = session_of(current_tgid())?;
    lsm_enforces(resource).then_some(member)
}
