//! Compiled policy as the kernel looks it up.
//!
//! Path rules live in LPM tries keyed by (policy, filesystem device, path inside that
//! filesystem, root first, each component followed by `/`): `/etc` is stored as the
//! bytes `/etc/` and matches `/etc/` and `/etc/passwd/` but not `/etcx/`; the
//! filesystem root is `/`. Userspace compiles absolute rule paths into these
//! coordinates with the mount table, so the kernel never needs to know where a
//! filesystem is mounted, and an alias (bind mount, chroot) cannot dodge a rule.

/// Bytes of path a trie key carries (the trie's data may be at most 256 bytes).
pub const PATH_KEY_BYTES: usize = 248;

/// Key of `FILE_RULES` and `EXEC_RULES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKey {
    /// Bits of (policy, dev, path) that must match: 64 + 8 * path bytes.
    pub prefix_len: u32,
    pub policy: u32,
    pub dev: u32,
    pub path: [u8; PATH_KEY_BYTES],
}

/// Bytes of a file name a `NAME_RULES` key carries.
pub const NAME_KEY_BYTES: usize = 64;

/// Key of `NAME_RULES`: a file name matched anywhere (`**/NAME` entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameKey {
    pub policy: u32,
    pub name: [u8; NAME_KEY_BYTES],
}

/// Bits of [`RuleValue::allow`].
pub mod allow {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const EXEC: u32 = 4;
    pub const NET: u32 = 8;
    /// The entry names a raw device itself (see [`super::raw_device`]): only such an
    /// entry lets one be opened.
    pub const DEVICES: u32 = 16;
    /// The entry names a dynamic loader itself: only such an entry lets one be executed
    /// directly (`ld.so PROGRAM` runs a program no exec entry allows).
    pub const LOADER: u32 = 32;
    /// The file may be mapped executable (`mmap`/`mprotect` with `PROT_EXEC`): every
    /// exec entry, and the system's library directories where exec is restricted.
    pub const MAP: u32 = 64;
}

/// Device files that reach around the file tree: every block device (a filesystem read
/// from its device ignores every path rule), the memory devices `/dev/mem`, `/dev/kmem`
/// and `/dev/port`, and the character devices that pass commands to disks or memory
/// (SCSI generic, block SG, NVMe, MTD flash, model-specific registers, device DAX, VFIO,
/// UIO, device-mapper control, the hibernation snapshot). Refused by type, wherever the
/// node is (a node made with `mknod` in an allowed directory is the same device), unless
/// the entry that decides names the node itself ([`allow::DEVICES`]).
pub mod raw_device {
    /// `S_IFMT`, `S_IFBLK`, `S_IFCHR` (include/uapi/linux/stat.h).
    pub const S_IFMT: u16 = 0o170000;
    pub const S_IFBLK: u16 = 0o060000;
    pub const S_IFCHR: u16 = 0o020000;
    /// The memory devices' major number and minors (Documentation/admin-guide/devices.txt).
    pub const MEMORY_MAJOR: u32 = 1;
    pub const MEMORY_MINORS: [u32; 3] = [1, 2, 4];
    /// The misc devices' major, and the minors of `/dev/snapshot` and
    /// `/dev/mapper/control`.
    pub const MISC_MAJOR: u32 = 10;
    pub const MISC_MINORS: [u32; 2] = [231, 236];
    /// Fixed majors, whatever `/proc/devices` says at load: SCSI generic, MTD, MSR. Their
    /// drivers load on the first open of a node (`char-major-N` module aliases), so a
    /// list read at load would miss them.
    pub const FIXED_CHAR_MAJORS: [u32; 3] = [21, 90, 202];
    /// Character devices of these names in `/proc/devices` (their majors are assigned at
    /// boot): userspace hands their majors to the programs (`KernelConfig::raw_majors`).
    pub const CHAR_NAMES: [&str; RAW_MAJORS] =
        ["sg", "bsg", "nvme", "nvme-generic", "mtd", "cpu/msr", "dax", "vfio", "uio", ""];
    pub const RAW_MAJORS: usize = 10;
    /// The kernel's own `dev_t` (`inode.i_rdev`): major above bit 20.
    pub const MINOR_BITS: u32 = 20;

    /// Whether a file of this mode and kernel `dev_t` is a raw device, `majors` being
    /// the majors of [`CHAR_NAMES`] on this host (0: none).
    #[inline(always)]
    pub fn is_raw(mode: u16, rdev: u32, majors: &[u32; RAW_MAJORS]) -> bool {
        match mode & S_IFMT {
            S_IFBLK => true,
            S_IFCHR => {
                let (major, minor) = (rdev >> MINOR_BITS, rdev & ((1 << MINOR_BITS) - 1));
                (major == MEMORY_MAJOR && MEMORY_MINORS.contains(&minor))
                    || (major == MISC_MAJOR && MISC_MINORS.contains(&minor))
                    || FIXED_CHAR_MAJORS.contains(&major)
                    || (major != 0 && majors.contains(&major))
            }
            _ => false,
        }
    }
}

/// Key of `NET_RULES`: (policy, operation, port) then the address, IPv4 as an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so one trie serves both families and a
/// mapped destination meets the IPv4 rules. `port` 0 is "any port"; the kernel looks
/// up the actual port first, then 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetKey {
    /// 64 + prefix bits of `addr`.
    pub prefix_len: u32,
    pub policy: u32,
    /// One of [`net_op`].
    pub op: u16,
    /// Host byte order; 0 for any port.
    pub port: u16,
    pub addr: [u8; 16],
}

/// Operations network rules govern.
pub mod net_op {
    /// connect(), and sendmsg() to an address (UDP).
    pub const CONNECT: u16 = 1;
    pub const BIND: u16 = 2;
}

/// What a matching entry allows, and which entry it was.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleValue {
    /// Index into the compiled policy's rule list (for events); `NO_RULE` when no
    /// entry matched.
    pub rule_id: u32,
    /// Bits of [`allow`]; 0 for a `deny` entry.
    pub allow: u32,
}

/// `rule_id` of a decision that no entry made (nothing matched).
pub const NO_RULE: u32 = u32::MAX;
/// `rule_id` of a refused `io_uring_setup` (see `session_flags::DENY_IO_URING`).
pub const IO_URING_RULE: u32 = u32::MAX - 2;

/// `rule_id` of a process that shares its parent's descriptor table without being a
/// thread (`clone(CLONE_FILES)`): it would keep a descriptor its killed parent opened.
pub const SHARED_FILES_RULE: u32 = u32::MAX - 3;
/// `rule_id` of a refused raw or ICMP socket (they send without the connect and
/// sendmsg hooks).
pub const RAW_SOCKET_RULE: u32 = u32::MAX - 6;

/// `rule_id` of a refused `open_by_handle_at` (its file may have no nameable path).
pub const OPEN_BY_HANDLE_RULE: u32 = u32::MAX - 5;
/// `rule_id` of a refused `pidfd_getfd` (taking another process's descriptor).
pub const PIDFD_GETFD_RULE: u32 = u32::MAX - 4;
/// `rule_id` of an operation against the monitor itself (signal, ptrace, `bpf()`,
/// mount changes, writing its policy or binary): refused for every session member,
/// whatever its profile.
pub const SELF_PROTECTION_RULE: u32 = u32::MAX - 7;
/// `rule_id` of a raw device ([`raw_device`]) opened under an entry that does not name
/// it.
pub const DEVICE_RULE: u32 = u32::MAX - 8;
/// `rule_id` of an open of another process's memory or environment through /proc
/// (`/proc/PID/mem`, `/proc/PID/environ`, and their `task/TID/` forms) when that
/// process is not in the session, and (BPF LSM) of any ptrace-class access to it. The
/// LSM refusal is never escalated to a kill: tools like `lsof` try every process.
pub const OTHER_PROCESS_RULE: u32 = u32::MAX - 9;
/// `rule_id` of a dynamic loader executed directly under an exec entry that does not
/// name it ([`allow::LOADER`]).
pub const LOADER_RULE: u32 = u32::MAX - 10;
/// `rule_id` of a socket of a family the profile does not name ([`socket_family`]).
pub const SOCKET_FAMILY_RULE: u32 = u32::MAX - 11;

/// Socket families (`AF_*`, the same numbers on every architecture).
pub mod socket_family {
    pub const UNIX: u32 = 1;
    pub const INET: u32 = 2;
    pub const INET6: u32 = 10;
    pub const NETLINK: u32 = 16;
    pub const PACKET: u32 = 17;

    /// The families every session may use: unix sockets (governed as files), IPv4 and
    /// IPv6 (network rules) and netlink (the kernel's own, never the network). Any
    /// other reaches around the rules (a packet socket sends hand-built frames and
    /// reads other processes' traffic; vsock reaches the hypervisor host; an unloaded
    /// family's module is loaded on demand), so it is refused unless the profile names
    /// it (`network.families`, map `POLICY_FAMILIES`).
    pub const fn always_allowed(family: u32) -> bool {
        matches!(family, UNIX | INET | INET6 | NETLINK)
    }

    /// Bit of `family` in a `POLICY_FAMILIES` value (families are below 64).
    pub const fn bit(family: u32) -> u64 {
        if family < 64 { 1 << family } else { 0 }
    }
}

/// Key of `PROTECTED_INODES`: a file of the monitor's own (policy, binary) that no
/// session member may change.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectedInode {
    /// Kernel-internal dev_t of the filesystem (as the walk reads it).
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// `rule_id` of a denial by the principal's permissions: the profile allowed the
/// access, the user the session acts for could not have made it.
pub const PRINCIPAL_RULE: u32 = u32::MAX - 1;

/// Key of `DENIED_INODES`: a file a deny entry covers, by identity, so that another name
/// for it (a hard link) is denied too.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeKey {
    pub policy: u32,
    /// Kernel-internal dev_t of the filesystem (as the walk reads it).
    pub dev: u32,
    pub ino: u64,
}

/// Most supplementary groups a principal carries into the kernel check.
pub const PRINCIPAL_GROUPS: usize = 32;

/// The user a session acts for (`--on-behalf-of`), by policy id (map `PRINCIPALS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub uid: u32,
    /// Entries of `groups` in use (primary group included).
    pub ngroups: u32,
    pub groups: [u32; PRINCIPAL_GROUPS],
}

/// Bits of [`crate::session::SessionMember::flags`].
pub mod session_flags {
    /// Violations are stopped (else only reported: `mode: audit`).
    pub const ENFORCE: u32 = 1;
    /// The session has a policy at all (else it is only observed).
    pub const HAS_POLICY: u32 = 2;
    /// The session acts for a non-root user: file access is also checked against that
    /// user's permissions (`PRINCIPALS`).
    pub const HAS_PRINCIPAL: u32 = 4;
    /// io_uring is refused: its opens would bypass the file checks of this tier (set
    /// for profiles that restrict files, unless they opt in with `allow_io_uring`).
    pub const DENY_IO_URING: u32 = 8;
    /// The profile restricts opens (has `files:`): without it opens are not checked.
    pub const RESTRICTS_FILES: u32 = 16;
    /// The profile restricts exec (has `exec:`).
    pub const RESTRICTS_EXEC: u32 = 32;
    /// The profile restricts connections (has `network.connect`): raw and ICMP
    /// sockets, which send without the connect/sendmsg hooks, are refused.
    pub const RESTRICTS_CONNECT: u32 = 64;
    /// A violation also kills the violator (`on_violation: kill` or `kill-session`);
    /// without it an LSM hook only refuses the operation (`deny`). The tracepoint tier
    /// cannot refuse, so it kills either way.
    pub const KILL_ON_VIOLATION: u32 = 128;
}

/// What the kernel did about an event (`FileOpenEvent::action`, `ExecEvent::action`).
pub mod action {
    pub const ALLOW: u32 = 0;
    /// A violation, reported only (audit mode).
    pub const AUDIT: u32 = 1;
    /// A violation; the process was sent SIGKILL before the syscall returned.
    pub const KILL: u32 = 2;
    /// A violation; the kernel refused the operation (EPERM).
    pub const DENY: u32 = 3;
}

const _: () = assert!(core::mem::size_of::<PathKey>() == 12 + PATH_KEY_BYTES);
const _: () = assert!(8 + PATH_KEY_BYTES <= 256);
const _: () = assert!(core::mem::size_of::<NameKey>() == 4 + NAME_KEY_BYTES);
const _: () = assert!(core::mem::size_of::<RuleValue>() == 8);
const _: () = assert!(core::mem::size_of::<NetKey>() == 4 + 24);
const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);
const _: () = assert!(core::mem::size_of::<Principal>() == 8 + 4 * PRINCIPAL_GROUPS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C), integers and byte arrays only, no padding.
    unsafe impl aya::Pod for super::PathKey {}
    unsafe impl aya::Pod for super::NameKey {}
    unsafe impl aya::Pod for super::RuleValue {}
    unsafe impl aya::Pod for super::ProtectedInode {}
    unsafe impl aya::Pod for super::NetKey {}
    unsafe impl aya::Pod for super::Principal {}
    unsafe impl aya::Pod for super::InodeKey {}
}
