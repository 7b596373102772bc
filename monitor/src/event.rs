//! The JSON events agent-monitor emits, one object per line (docs/EVENTS.md,
//! docs/event.schema.json). Changes are additive: fields are added, never renamed or
//! removed, and `schema_version` changes only if that promise is ever broken.

use serde::Serialize;

use crate::rendered::Rendered;

pub const SCHEMA_VERSION: u32 = 1;

/// Event types (`type` field).
pub mod types {
    pub const SESSION_START: &str = "session.start";
    pub const SESSION_END: &str = "session.end";
    pub const PROCESS_START: &str = "process.start";
    pub const PROCESS_EXEC: &str = "process.exec";
    pub const PROCESS_EXIT: &str = "process.exit";
    /// A syscall the profile refuses (io_uring_setup where files are restricted).
    pub const PROCESS_SYSCALL: &str = "process.syscall";
    pub const FILE_OPEN: &str = "file.open";
    /// A change to the file tree: unlink, rename, truncate, create, ... (BPF LSM tier).
    pub const FILE_CHANGE: &str = "file.change";
    /// An attempt against the monitor itself, refused (BPF LSM tier).
    pub const PROCESS_TAMPER: &str = "process.tamper";
    pub const NET_CONNECT: &str = "net.connect";
    /// A send to an address the profile does not allow (only refusals are reported).
    pub const NET_SEND: &str = "net.send";
    /// A bind the profile does not allow (only refusals are reported).
    pub const NET_BIND: &str = "net.bind";
    pub const MONITOR_LOSS: &str = "monitor.loss";
    pub const SESSION_KILLED: &str = "session.killed";
    /// The monitor died and its watchdog froze the session (`--on-monitor-death freeze`).
    pub const SESSION_FROZEN: &str = "session.frozen";
    /// The monitor's own output was tampered with: its event file was removed, moved
    /// or replaced (a new one is made in its place).
    pub const MONITOR_TAMPER: &str = "monitor.tamper";
    /// The daemon started, reloaded its policy (or refused to), and stopped.
    pub const MONITOR_START: &str = "monitor.start";
    pub const MONITOR_RELOAD: &str = "monitor.reload";
    pub const MONITOR_STOP: &str = "monitor.stop";
}

/// `session.id` of the daemon's own `monitor.*` events, which belong to no session.
pub const NO_SESSION: &str = "0000000000000000";

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub schema_version: u32,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub host: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub session: Session,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tamper: Option<Tamper>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<Net>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<Syscall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// monitor.start, monitor.reload: the policy in force, or why a new one was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyState>,
    /// A kernel read failed while the event was built: some fields are zero or empty.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// 16 hex digits.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_pid: Option<u32>,
    /// session.start: the command the session runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// session.end: session processes still running when the session's first process
    /// exited; they were killed with the session (or, without a session cgroup, left
    /// running unobserved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_pids: Option<Vec<u32>>,
    /// session.killed: every process of the session when it was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed_pids: Option<Vec<u32>>,
    /// session.killed: `violation` (kill-session) or `kill-switch` (`agent-monitor kill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<&'static str>,
    /// session.killed: the process whose violation ended the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed_because_of: Option<u32>,
    /// session.start: the user the session acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalRef>,
    /// session.start: profile and mode the session is held to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// session.start of a session the daemon adopted: the profile's selector that
    /// matched, as written (`match[0] {"exe":"/usr/bin/agent"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted_by: Option<String>,
    /// session.start: `exec` (adopted by the kernel at exec), `running` (adopted from
    /// /proc when the daemon started), `run` (agent-monitor run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
}

/// The daemon's policy (`monitor.start`, `monitor.reload`).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyState {
    /// The policy file (absent: the built-in policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Whether the policy was taken; `false`: the previous one stays in force.
    pub accepted: bool,
    /// Profiles in force after the event.
    pub profiles: Vec<String>,
    /// Why the new policy was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sessions moved onto the new policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_updated: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrincipalRef {
    pub name: String,
    pub uid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The program the process runs (resolved path), null before its first exec is seen.
    pub exe: Rendered<Option<String>>,
    pub argv: Rendered<Vec<String>>,
    pub start_time: Rendered<String>,
    /// With `pid`, the identity of the process (immune to pid reuse).
    pub start_boottime_ns: u64,
    /// Parent pids, nearest first, up to the session root's parent.
    pub ancestry: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct File {
    /// Absolute path of the opened file, resolved by the kernel.
    pub path: String,
    /// `read`, `write`, `read_write`, or `none` (O_PATH descriptors).
    pub access: &'static str,
    /// The open created the file.
    pub created: bool,
    /// The open asked to truncate the file (O_TRUNC).
    pub truncate: bool,
    /// Open flags the caller passed, by name (`O_CREAT`, `O_APPEND`, ...).
    pub flags: Vec<&'static str>,
    /// The open syscall; `unknown` when the LSM hook judged it (it does not see the
    /// syscall), `receive` for a descriptor received from another process.
    pub syscall: &'static str,
    /// Absent when the LSM hook judged the open (before a descriptor exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    pub inode: u64,
    pub device: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// No mount of the file's filesystem is visible to the monitor (an internal or
    /// detached filesystem): `path` is relative to that filesystem's root.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mount_unknown: bool,
}

/// `file.change`: what changed in the file tree.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Absolute path of the name changed, resolved by the kernel.
    pub path: String,
    /// `unlink`, `rmdir`, `rename_from`, `rename_to`, `truncate`, `create`, `mkdir`,
    /// `symlink`, `link`, `chmod` or `chown`.
    pub operation: &'static str,
    /// Inode of the file (0 for a name not created yet).
    pub inode: u64,
    pub device: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mount_unknown: bool,
}

/// `process.tamper`: what was attempted against the monitor.
#[derive(Debug, Clone, Serialize)]
pub struct Tamper {
    /// `signal`, `ptrace`, `bpf`, `mount`, `umount`, `remount`, `scheduler`, `nice`,
    /// `ioprio`, `move-memory` or `prlimit`.
    pub operation: &'static str,
    /// The process aimed at, but for `bpf`, the mounts and `prlimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The `bpf()` command number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_command: Option<u32>,
    /// `monitor.tamper`: the event file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `monitor.tamper` of `event-file-replaced`: where the file that had taken the
    /// event file's name was moved (kept as evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_as: Option<String>,
}

impl Tamper {
    pub fn new(operation: &'static str) -> Tamper {
        Tamper { operation, target_pid: None, signal: None, bpf_command: None, path: None, kept_as: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Exec {
    pub path: String,
    pub argv: Vec<String>,
    pub inode: u64,
    pub device: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// As for `file.mount_unknown`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mount_unknown: bool,
    /// Not an exec: the file mapped executable, by `mmap` or `mprotect` (a refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Net {
    /// `inet`, `inet6`, `unix`, or `other`.
    pub family: &'static str,
    /// IP address, unix socket path (`@name` for abstract sockets), or empty.
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// For an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), the IPv4 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped_ipv4: Option<String>,
    /// Address family number, for `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_number: Option<u16>,
    /// The socket's descriptor; absent when the kernel hook that refused the operation
    /// does not know it (io_uring, sendmsg, bind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    /// 0 on success, else the errno the call failed with (EINPROGRESS for a
    /// non-blocking connect under way). Absent for a connect the LSM hook allowed: the
    /// hook runs before the call completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Syscall {
    pub name: &'static str,
    /// Number on the monitor's architecture.
    pub nr: u32,
    /// `socket`: the family asked for (`packet`, or the number if Linux names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    /// Exit code when the process exited normally.
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// `allow`, `audit` (a violation, reported only), `deny` or `kill`.
    pub action: &'static str,
    /// The policy entry that decided (`files.deny[0] /etc/shadow`), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The profile the session is held to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Who stopped the violation and where: `kernel:sys_enter`, `kernel:sys_exit`,
    /// `kernel:sched_process_exec`,
    /// `kernel:cgroup/connect`, `kernel:cgroup/sendmsg`, `kernel:cgroup/bind`,
    /// `userspace:cgroup.kill`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced_by: Option<&'static str>,
    /// audit: what enforce mode would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'static str>,
    /// Why the action differs from the profile's `on_violation`, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Decision {
    pub const ALLOW: Decision =
        Decision { action: "allow", rule: None, profile: None, enforced_by: None, would: None, note: None };
}

/// Counts of what was lost, cumulative since the monitor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Kernel: records dropped because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Kernel: children that could not join their parent's session (map full).
    pub session_map_full: u64,
    /// Kernel: records sent with fields missing after a failed kernel read.
    pub kernel_read_error: u64,
    /// Kernel: syscalls whose entry state could not be kept (no event at exit).
    pub pending_map_full: u64,
    /// Kernel: violations that could not be reported (decisions ring buffer full);
    /// they were still enforced.
    pub decision_ringbuf_full: u64,
    /// Userspace: records that failed to decode.
    pub decode_error: u64,
    /// Always 0, kept so that schema version 1 does not change: while the processing
    /// queue is full, records wait in the kernel's ring buffer (whose overflow is
    /// `ringbuf_full`) instead of being dropped in userspace.
    pub queue_full: u64,
    /// Userspace: events the sink failed to take (closed pipe, full disk).
    pub sink_error: u64,
    /// Kernel: runs of the monitor's programs that the kernel skipped, because another
    /// BPF program was running on the CPU (`skipped_runs`). Any process's, not only
    /// sessions'.
    pub programs_skipped: u64,
}

impl Loss {
    pub fn total(&self) -> u64 {
        self.ringbuf_full
            + self.session_map_full
            + self.kernel_read_error
            + self.pending_map_full
            + self.decision_ringbuf_full
            + self.decode_error
            + self.queue_full
            + self.sink_error
            + self.programs_skipped
    }
}

/// About the monitor itself (session.start, session.end).
#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub version: &'static str,
    pub pid: u32,
    pub kernel: String,
    pub arch: &'static str,
    /// session.end: events written for this session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// session.end: delay from the kernel event to its line being written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// session.start: which tier enforces each resource on this kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<crate::enforcement::Enforcement>,
}

/// This monitor process, as events name it.
pub fn monitor_info(events: Option<u64>) -> Monitor {
    Monitor {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH,
        events,
        latency: None,
        enforcement: None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    pub samples: u64,
}

/// Renders bytes from the kernel as JSON text: valid UTF-8 as is, any other byte as
/// `\xNN` so that no byte of a hostile file name is lost or silently replaced.
pub fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `major:minor` of a kernel-internal dev_t (`MAJOR = dev >> 20`, `MINOR = dev & 0xfffff`).
pub fn device(dev: u32) -> String {
    // Not format!: this runs for every file event.
    let mut number = itoa::Buffer::new();
    let mut text = String::with_capacity(12);
    text.push_str(number.format(dev >> 20));
    text.push(':');
    text.push_str(number.format(dev & 0xf_ffff));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_every_byte() {
        assert_eq!(text(b"/etc/hostname"), "/etc/hostname");
        assert_eq!(text("/tmp/é".as_bytes()), "/tmp/é");
        assert_eq!(text(b"/tmp/\xff\xfeok"), "/tmp/\\xff\\xfeok");
    }

    #[test]
    fn device_numbers() {
        assert_eq!(device((8 << 20) | 1), "8:1");
        assert_eq!(device(0), "0:0");
    }
}
