//! Session membership as the kernel keeps it.

/// Value of the `SESSIONS` map, keyed by tgid. A child copies its parent's entry at
/// fork, inside the kernel, before it runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionMember {
    /// Session id, chosen by userspace; never 0.
    pub session_id: u64,
    /// Compiled policy the session is held to (key part of the rule maps).
    pub policy_id: u32,
    /// Bits of [`crate::policy::session_flags`].
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<SessionMember>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integers, no padding.
unsafe impl aya::Pod for SessionMember {}
