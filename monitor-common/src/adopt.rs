//! Adoption: the kernel makes a process the first of a new session when an exec
//! matches a profile's `match:` selector. Userspace compiles the selectors into these
//! maps; the `sched_process_exec` program evaluates them for processes outside every
//! session.
//!
//! A selector is a conjunction of fields. For each field the kernel looks up the
//! process's value and gets the mask of selectors that value satisfies; a selector
//! that does not constrain a field has its bit in `unconstrained[field]`. The selector
//! chosen is the lowest bit of
//! `defined & AND over fields (satisfied[field] | unconstrained[field])`.
//!
//! Two generations of tables exist so that a reload writes the new one completely
//! before `ADOPT_ACTIVE` (one u32, written atomically) switches to it.

/// Index 0: the active generation (0 or 1).
pub const ADOPT_ACTIVE: &str = "ADOPT_ACTIVE";
/// [`AdoptConfig`] per generation (index = generation).
pub const ADOPT_CONFIG: &str = "ADOPT_CONFIG";
/// [`AdoptSelector`] per generation and selector (index = generation * MAX_SELECTORS + selector).
pub const ADOPT_SELECTORS: &str = "ADOPT_SELECTORS";
/// [`FileKey`] -> mask of selectors (executable and parent executable).
pub const ADOPT_FILES: &str = "ADOPT_FILES";
/// [`IdKey`] -> mask of selectors (uids and cgroup ids).
pub const ADOPT_IDS: &str = "ADOPT_IDS";

/// [`IdKey`] with `field` = selector and `id` = uid -> [`AdoptSelector`] for that user.
pub const ADOPT_USERS: &str = "ADOPT_USERS";
/// [`NameKey`] -> mask of selectors: cgroup names (`unit:`) and paths (`cgroup:`).
/// When a cgroup of that name is made, the kernel adds its id to [`ADOPT_IDS`].
pub const ADOPT_CGROUP_NAMES: &str = "ADOPT_CGROUP_NAMES";
/// Longest cgroup name or path a selector may give (key bytes, NUL included).
pub const CGROUP_NAME_BYTES: usize = 120;

/// Most selectors over all profiles (bits of a u64 mask).
pub const MAX_SELECTORS: u32 = 64;
/// Capacity of [`ADOPT_FILES`] and [`ADOPT_IDS`] (both generations).
pub const ADOPT_KEYS_MAX: u32 = 4096;
/// Cgroup levels the kernel checks, from the root down: deeper cgroups match through
/// their ancestors at these levels.
pub const MAX_CGROUP_LEVELS: u32 = 16;

/// What a selector can constrain (index into `AdoptConfig::unconstrained`).
pub mod field {
    /// The executed file (dev, inode).
    pub const EXE: u32 = 0;
    /// The parent process's executable (dev, inode).
    pub const PARENT_EXE: u32 = 1;
    /// The real uid after the exec.
    pub const UID: u32 = 2;
    /// A cgroup v2 id the process is in, or below.
    pub const CGROUP: u32 = 3;
    pub const COUNT: usize = 4;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptConfig {
    /// Bit i: selector i exists in this generation. 0: adoption is off.
    pub defined: u64,
    /// Per field: selectors that do not constrain it.
    pub unconstrained: [u64; field::COUNT],
}

/// What a matching exec starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptSelector {
    /// Policy the new session is held to.
    pub policy_id: u32,
    /// Its `crate::policy::session_flags`.
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub generation: u32,
    /// [`field::EXE`] or [`field::PARENT_EXE`].
    pub field: u32,
    pub ino: u64,
    /// Kernel encoding: major << 20 | minor.
    pub dev: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdKey {
    pub generation: u32,
    /// [`field::UID`] or [`field::CGROUP`].
    pub field: u32,
    pub id: u64,
}

/// A cgroup name or path, NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NameKey {
    pub generation: u32,
    /// [`name_kind::UNIT`] or [`name_kind::PATH`].
    pub kind: u32,
    pub name: [u8; CGROUP_NAME_BYTES],
}

pub mod name_kind {
    /// The cgroup's own name (a systemd unit's cgroup is named after the unit).
    pub const UNIT: u32 = 1;
    /// The cgroup's path below the root, `/a/b`.
    pub const PATH: u32 = 2;
}

const _: () = assert!(core::mem::size_of::<NameKey>() == 128);
const _: () = assert!(core::mem::size_of::<AdoptConfig>() == 40);
const _: () = assert!(core::mem::size_of::<AdoptSelector>() == 8);
const _: () = assert!(core::mem::size_of::<FileKey>() == 24);
const _: () = assert!(core::mem::size_of::<IdKey>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all five): repr(C), only integers, no implicit padding.
    unsafe impl aya::Pod for super::AdoptConfig {}
    unsafe impl aya::Pod for super::AdoptSelector {}
    unsafe impl aya::Pod for super::FileKey {}
    unsafe impl aya::Pod for super::IdKey {}
    unsafe impl aya::Pod for super::NameKey {}
}

/// Which selector the fields' masks choose, if any.
pub fn choose(config: &AdoptConfig, satisfied: &[u64; field::COUNT]) -> Option<u32> {
    let mut matching = config.defined;
    let mut f = 0;
    while f < field::COUNT {
        matching &= satisfied[f] | config.unconstrained[f];
        f += 1;
    }
    if matching == 0 { None } else { Some(matching.trailing_zeros()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_needs_every_field_it_constrains() {
        // Selector 0: exe only. Selector 1: exe and uid. Selector 2: cgroup only.
        let config = AdoptConfig { defined: 0b111, unconstrained: [0b100, 0b111, 0b101, 0b011] };
        let mut s = [0u64; field::COUNT];
        assert_eq!(choose(&config, &s), None);
        s[field::EXE as usize] = 0b011;
        assert_eq!(choose(&config, &s), Some(0));
        s[field::EXE as usize] = 0b010;
        assert_eq!(choose(&config, &s), None, "selector 1 also needs the uid");
        s[field::UID as usize] = 0b010;
        assert_eq!(choose(&config, &s), Some(1));
        let only_cgroup = [0, 0, 0, 0b100];
        assert_eq!(choose(&config, &only_cgroup), Some(2));
        assert_eq!(choose(&AdoptConfig::default(), &[u64::MAX; 4]), None, "no selectors: nothing adopted");
    }
}
