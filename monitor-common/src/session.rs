//! Session membership as the kernel keeps it.

/// Value of the `SESSIONS` map, keyed by tgid. A child copies its parent's entry at
/// fork, inside the kernel, before it runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionMember {
    /// Session id, chosen by userspace; never 0.
    pub session_id: u64,
}

const _: () = assert!(core::mem::size_of::<SessionMember>() == 8);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integers, no padding.
unsafe impl aya::Pod for SessionMember {}
