//! Wire format of the records the eBPF programs write into the `EVENTS` ring buffer.
//!
//! Every record starts with an [`EventHeader`]; `kind` says which body follows and
//! `size` how many bytes the record holds in all. Records that end in a path are
//! variable-sized: only `offset_of(path) + path_len` bytes are sent.
//!
//! Paths travel as the path inside the file's filesystem, root first, every component
//! followed by `/` (`/etc/hostname/`; the filesystem's root is `/`), with the
//! filesystem's device in `dev`. Userspace drops the final `/` and places the result
//! under the filesystem's mount point. The same bytes (first 248) are the key of the
//! kernel's rule tries (`crate::policy`).

/// Kinds are numbered in ranges (process 1.., file 100.., network 200..) and only ever
/// appended.
pub mod kind {
    /// A session member created a new process ([`super::ForkEvent`]).
    pub const PROCESS_FORK: u16 = 1;
    /// A session member executed a program ([`super::ExecEvent`]).
    pub const PROCESS_EXEC: u16 = 2;
    /// The last thread of a session member exited ([`super::ExitEvent`]).
    pub const PROCESS_EXIT: u16 = 3;
    /// A session member made a syscall its profile refuses ([`super::SyscallEvent`]).
    pub const PROCESS_SYSCALL: u16 = 4;
    /// A session member acted against the monitor itself ([`super::TamperEvent`]).
    pub const PROCESS_TAMPER: u16 = 5;
    /// An exec outside every session matched a `match:` selector: the process is the
    /// first of a new session ([`super::AdoptEvent`]), sent on the decisions ring buffer
    /// so that no telemetry flood drops it; its exec record follows.
    pub const SESSION_ADOPT: u16 = 6;
    /// A session member opened a file ([`super::FileOpenEvent`]).
    pub const FILE_OPEN: u16 = 100;
    /// A session member changed the file tree: unlink, rename, truncate, create,
    /// link, chmod, ... ([`super::FileChangeEvent`]; BPF LSM tier only).
    pub const FILE_CHANGE: u16 = 101;
    /// A session member called `connect` ([`super::ConnectEvent`]).
    pub const NET_CONNECT: u16 = 200;
    /// A session member sent to an address it may not (reported only when refused).
    pub const NET_SEND: u16 = 201;
    /// A session member bound an address it may not (reported only when refused).
    pub const NET_BIND: u16 = 202;
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The path walk stopped before the root (too deep or too long).
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    /// Only the first bytes of the argument vector were captured.
    pub const ARGV_TRUNCATED: u16 = 1 << 1;
    /// A kernel read failed; some fields are zero.
    pub const READ_ERROR: u16 = 1 << 2;
    /// Fork: the child could not be added to the session (membership map full).
    pub const CHILD_NOT_TRACKED: u16 = 1 << 3;
    /// Decided by a BPF LSM hook, before the operation took place.
    pub const LSM: u16 = 1 << 4;
    /// Exec record: an executable mapping of the file (`mmap` with `PROT_EXEC`), not an
    /// exec; with [`MPROTECT`], a mapping made executable by `mprotect`.
    pub const MAPPED: u16 = 1 << 5;
    pub const MPROTECT: u16 = 1 << 6;
}

/// Bytes of path a record can carry (a longer path is flagged `PATH_TRUNCATED`).
pub const PATH_MAX_BYTES: usize = 4095;
/// One component is read with this bound (NAME_MAX + NUL).
pub const NAME_MAX_BYTES: usize = 256;
/// Size of a path buffer inside a record.
pub const PATH_BUF_BYTES: usize = 4096;
/// Most components a path walk follows (mount crossings included).
pub const PATH_MAX_COMPONENTS: u32 = 96;
/// Bytes of the NUL-separated argument vector an exec record carries.
pub const ARGV_MAX_BYTES: usize = 4096;
/// Bytes of the socket address a connect record carries (`sizeof(sockaddr_storage)`).
pub const SOCKADDR_MAX_BYTES: usize = 128;

/// Common head of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// One of [`kind`].
    pub kind: u16,
    /// Bits of [`flags`].
    pub flags: u16,
    /// Bytes in the whole record, header included.
    pub size: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds when the event happened.
    pub time_ns: u64,
    /// Session of the process.
    pub session_id: u64,
    /// Process id (thread group id).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Start of the process (its group leader) in `CLOCK_BOOTTIME` ns: with `tgid`, the
    /// identity of the process, immune to pid reuse.
    pub start_time_ns: u64,
}

/// A new process in the session (threads are not reported: they share the process).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_tgid: u32,
    pub _pad: u32,
    pub child_start_time_ns: u64,
}

/// The process ended (its last thread exited).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code`: a wait status (exit code << 8, or the terminating signal).
    pub exit_code: u32,
    pub _pad: u32,
}

/// A process was adopted into a new session (`header.session_id`, made by the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdoptEvent {
    pub header: EventHeader,
    /// Selector index in the generation below (see `crate::adopt`).
    pub selector: u32,
    pub generation: u32,
    pub policy_id: u32,
    pub flags: u32,
}

/// A refused syscall (sent on the decisions ring buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    pub header: EventHeader,
    /// Syscall number (of the running architecture).
    pub nr: u32,
    /// One of `crate::policy::action`.
    pub action: u32,
    pub rule_id: u32,
    /// What the refusal was about, where an argument tells: `socket`'s family; else 0.
    pub arg: u32,
}

/// A successful exec. Variable-sized: ends after `path_len` bytes of `path`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub path_len: u32,
    pub argv_len: u32,
    pub ino: u64,
    pub dev: u32,
    /// One of `crate::policy::action`.
    pub action: u32,
    /// Entry that decided (`crate::policy::NO_RULE` if none matched).
    pub rule_id: u32,
    pub _pad: u32,
    /// NUL-separated arguments as the new program sees them.
    pub argv: [u8; ARGV_MAX_BYTES],
    /// Path of the executed file (see the module doc for the encoding).
    pub path: [u8; PATH_BUF_BYTES],
}

/// `SyscallEvent::nr` values that are no syscall's number: refusals made by hooks
/// that cannot tell which syscall asked.
pub mod pseudo_syscall {
    /// A new process sharing its parent's descriptor table, refused at fork (the fork
    /// hook cannot tell clone from clone3).
    pub const SHARED_FILES: u32 = u32::MAX;
    /// A refused socket (the hook cannot tell socket(2) from socketpair or io_uring's
    /// socket op): raw and ICMP sockets, and families the profile does not name.
    pub const SOCKET: u32 = u32::MAX - 1;
}

/// The `fd` of a record made before a descriptor exists (an LSM hook's).
pub const NO_FD: u32 = u32::MAX;

/// `struct file`'s `f_mode` bits the monitor reads (include/linux/fs.h, stable since
/// 4.19).
pub mod fmode {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const PATH: u32 = 0x4000;
    pub const CREATED: u32 = 0x10_0000;
}

/// Which syscall opened a file (`FileOpenEvent::syscall`).
pub mod open_syscall {
    pub const OPEN: u32 = 1;
    pub const OPENAT: u32 = 2;
    pub const OPENAT2: u32 = 3;
    pub const CREAT: u32 = 4;
    pub const OPEN_BY_HANDLE_AT: u32 = 5;
    /// Seen by the LSM `file_open` hook, which does not know the syscall.
    pub const LSM_OPEN: u32 = 6;
    /// A descriptor received from another process (`SCM_RIGHTS`, `pidfd_getfd`),
    /// judged like an open by the LSM `file_receive` hook.
    pub const RECEIVE: u32 = 7;
}

/// What a [`FileChangeEvent`] did (`op`).
pub mod file_op {
    pub const UNLINK: u32 = 1;
    pub const RMDIR: u32 = 2;
    /// The old name of a rename.
    pub const RENAME_FROM: u32 = 3;
    /// The new name of a rename.
    pub const RENAME_TO: u32 = 4;
    pub const TRUNCATE: u32 = 5;
    /// A new file (`mknod`, or `open` with `O_CREAT`).
    pub const CREATE: u32 = 6;
    pub const MKDIR: u32 = 7;
    pub const SYMLINK: u32 = 8;
    /// The new name of a hard link.
    pub const LINK: u32 = 9;
    pub const CHMOD: u32 = 10;
    pub const CHOWN: u32 = 11;
    /// A stream connect to the unix socket the name is bound to (a write to it).
    pub const CONNECT: u32 = 12;
    /// A datagram connect or send to the unix socket the name is bound to.
    pub const SEND: u32 = 13;
}

/// What a [`TamperEvent`] attempted (`op`).
pub mod tamper_op {
    /// A signal to the monitor (`arg`: the signal).
    pub const SIGNAL: u32 = 1;
    /// ptrace or /proc/PID/mem access to the monitor (`arg`: the ptrace mode bits).
    pub const PTRACE: u32 = 2;
    /// The `bpf()` syscall (`arg`: the command).
    pub const BPF: u32 = 3;
    /// mount, bind mount or move_mount.
    pub const MOUNT: u32 = 4;
    pub const UMOUNT: u32 = 5;
    pub const REMOUNT: u32 = 6;
    /// Scheduling policy, priority or CPU affinity of another process.
    pub const SCHEDULER: u32 = 7;
    /// The nice value of another process (`arg`: the value).
    pub const NICE: u32 = 8;
    /// The I/O priority of another process (`arg`: the value).
    pub const IOPRIO: u32 = 9;
    /// Moving another process's memory between NUMA nodes.
    pub const MOVE_MEMORY: u32 = 10;
    /// Changing another process's resource limits (the kernel does not say whose).
    pub const PRLIMIT: u32 = 11;
    /// A signal for I/O on a descriptor the monitor was made owner of (`arg`: the
    /// signal).
    pub const SIGIO: u32 = 12;
    /// The last op: records carry one of `SIGNAL..=LAST`.
    pub const LAST: u32 = SIGIO;
}

/// A successful open. Variable-sized: ends after `path_len` bytes of `path`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    /// One of [`open_syscall`].
    pub syscall: u32,
    /// Flags the caller asked for (`O_*`, lower 32 bits).
    pub open_flags: u32,
    /// `file->f_mode` of the opened file (`FMODE_*`).
    pub f_mode: u32,
    /// The descriptor the syscall returned.
    pub fd: u32,
    pub ino: u64,
    /// Device of the filesystem `path` is relative to (kernel `dev_t`).
    pub dev: u32,
    pub path_len: u32,
    /// One of `crate::policy::action`.
    pub action: u32,
    /// Entry that decided (`crate::policy::NO_RULE` if none matched).
    pub rule_id: u32,
    /// Path of the opened file (see the module doc for the encoding).
    pub path: [u8; PATH_BUF_BYTES],
}

/// A change to the file tree (BPF LSM tier). Variable-sized: ends after `path_len`
/// bytes of `path`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileChangeEvent {
    pub header: EventHeader,
    /// One of [`file_op`].
    pub op: u32,
    /// One of `crate::policy::action`.
    pub action: u32,
    /// Entry that decided (`crate::policy::NO_RULE` if none matched).
    pub rule_id: u32,
    /// Device of the filesystem `path` is relative to (kernel `dev_t`).
    pub dev: u32,
    /// Inode of the file (0 for a name that does not exist yet).
    pub ino: u64,
    pub path_len: u32,
    pub _pad: u32,
    /// Path of the name changed (see the module doc for the encoding).
    pub path: [u8; PATH_BUF_BYTES],
}

/// An attempt against the monitor itself, always refused (BPF LSM tier; sent on the
/// decisions ring buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TamperEvent {
    pub header: EventHeader,
    /// One of [`tamper_op`].
    pub op: u32,
    /// Process the attempt was aimed at (0 when none: `bpf`, mounts).
    pub target_tgid: u32,
    /// Signal, ptrace mode or `bpf` command, per `op`.
    pub arg: u64,
    /// One of `crate::policy::action` (`DENY`, or `KILL`: refused and killed).
    pub action: u32,
    pub rule_id: u32,
}

/// A `connect` call and its result (kind `NET_CONNECT`), or a refused send or bind
/// (`NET_SEND`, `NET_BIND`, from the cgroup socket hooks; `ret` is then -EPERM).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// Return value of the syscall (0 or a negative errno).
    pub ret: i32,
    /// The socket's descriptor (u32::MAX when not known: io_uring, sendmsg, bind).
    pub fd: u32,
    /// Bytes of `addr` that are valid.
    pub addr_len: u32,
    /// One of `crate::policy::action`.
    pub action: u32,
    /// Entry that decided (`crate::policy::NO_RULE` if none matched).
    pub rule_id: u32,
    pub _pad: u32,
    /// The socket address (`struct sockaddr_*`): the caller's for a connect seen at
    /// syscall entry, the kernel's copy for the cgroup hooks.
    pub addr: [u8; SOCKADDR_MAX_BYTES],
}

/// State kept between entry and exit of a `connect` (map value). The cgroup connect
/// hook records its verdict here, so the exit reports one event with both.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingConnect {
    pub fd: u32,
    pub addr_len: u32,
    pub action: u32,
    pub rule_id: u32,
    pub addr: [u8; SOCKADDR_MAX_BYTES],
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 48);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 48 + 16);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 48 + 8);
const _: () = assert!(core::mem::size_of::<AdoptEvent>() == 48 + 16);
const _: () = assert!(core::mem::size_of::<SyscallEvent>() == 48 + 16);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48 + 32 + ARGV_MAX_BYTES + PATH_BUF_BYTES);
const _: () = assert!(core::mem::size_of::<FileOpenEvent>() == 48 + 40 + PATH_BUF_BYTES);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 48 + 24 + SOCKADDR_MAX_BYTES);
const _: () = assert!(core::mem::size_of::<FileChangeEvent>() == 48 + 32 + PATH_BUF_BYTES);
const _: () = assert!(core::mem::size_of::<TamperEvent>() == 48 + 24);
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 16 + SOCKADDR_MAX_BYTES);
const _: () = assert!(PATH_BUF_BYTES.is_power_of_two() && PATH_MAX_BYTES < PATH_BUF_BYTES);
const _: () = assert!(ARGV_MAX_BYTES.is_power_of_two());

/// Bytes of an exec record before its path.
pub const EXEC_PATH_OFFSET: usize = core::mem::offset_of!(ExecEvent, path);
/// Bytes of a file-open record before its path.
pub const FILE_OPEN_PATH_OFFSET: usize = core::mem::offset_of!(FileOpenEvent, path);
/// Bytes of a file-change record before its path.
pub const FILE_CHANGE_PATH_OFFSET: usize = core::mem::offset_of!(FileChangeEvent, path);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C), integers and byte arrays only, padding spelled out.
    unsafe impl aya::Pod for super::PendingConnect {}
}
