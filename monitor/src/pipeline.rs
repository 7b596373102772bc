//! Kernel events -> process tree -> JSON events -> sink.

use std::{collections::HashMap, io, sync::Arc};

use monitor_common::{
    event::{EventHeader, NO_FD, file_op, flags, fmode, kind, open_syscall, pseudo_syscall, tamper_op},
    policy::{
        DEVICE_RULE, IO_URING_RULE, LOADER_RULE, NO_RULE, OPEN_BY_HANDLE_RULE, OTHER_PROCESS_RULE, PIDFD_GETFD_RULE,
        PRINCIPAL_RULE, RAW_SOCKET_RULE, SELF_PROTECTION_RULE, SHARED_FILES_RULE, SOCKET_FAMILY_RULE, action,
    },
};

use crate::{
    clock::BootClock,
    decode::{KernelEvent, SocketAddress, Verdict},
    event::{self, Change, Decision, Event, Exec, Exit, File, Latency, Net, Process, Tamper, text, types},
    event_context::{Context, session_ref},
    mounts::Mounts,
    policy::{Mode, OnViolation, model::Origin},
    process_tree::{ProcessImage, ProcessTree},
    sink::Sink,
};

/// What the pipeline needs of the session's policy to explain decisions.
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub profile: String,
    pub mode: Mode,
    pub on_violation: OnViolation,
    /// Rule id -> origin (from the compiled profile).
    pub rules: Vec<Origin>,
    /// The user the session acts for, as `name (uid N)`.
    pub principal: String,
}

pub struct Pipeline {
    pub context: Context,
    pub tree: ProcessTree,
    pub sink: Sink,
    mounts: Mounts,
    /// Each session's policy.
    pub session_policies: HashMap<u64, Arc<PolicyView>>,
    /// Counters of what was written (the daemon's metrics).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Kernel event -> written, in microseconds (the first `LATENCY_SAMPLES`).
    latencies_us: Vec<u32>,
    /// Whether a sink failure was reported already.
    sink_failed: bool,
}

const LATENCY_SAMPLES: usize = 1_000_000;

impl Pipeline {
    pub fn new(context: Context, tree: ProcessTree, sink: Sink) -> Pipeline {
        Pipeline {
            context,
            tree,
            sink,
            mounts: Mounts::new(),
            session_policies: HashMap::new(),
            metrics: None,
            latencies_us: Vec::new(),
            sink_failed: false,
        }
    }

    fn policy_of(&self, session_id: u64) -> Option<&PolicyView> {
        self.session_policies.get(&session_id).map(|p| p.as_ref())
    }

    /// Updates the process tree with `kernel_event` and writes the JSON event.
    pub fn handle(&mut self, kernel_event: KernelEvent) {
        let happened_ns = kernel_event.header().time_ns;
        let event = self.translate(kernel_event);
        self.write(&event);
        if self.latencies_us.len() < LATENCY_SAMPLES {
            let delay_ns = BootClock::now_boot_ns().saturating_sub(happened_ns);
            self.latencies_us.push((delay_ns / 1_000).min(u32::MAX as u64) as u32);
        }
    }

    /// Writes an event. A failing sink loses (and counts) events but never stops the
    /// pipeline: the session's enforcement actions depend on it draining.
    pub fn write(&mut self, event: &Event) {
        if let Some(metrics) = &self.metrics {
            metrics.record(event);
        }
        let result = self.sink.write(event);
        self.sink_result(result);
    }

    pub fn flush(&mut self) {
        let result = self.sink.flush();
        self.sink_result(result);
    }

    fn sink_result(&mut self, result: io::Result<()>) {
        if let Err(error) = result
            && !self.sink_failed
        {
            self.sink_failed = true;
            log::error!("writing events failed ({error}); counting the events lost");
        }
    }

    /// Delay from the kernel event to its line being handed to the sink.
    pub fn latency(&mut self) -> Option<Latency> {
        if self.latencies_us.is_empty() {
            return None;
        }
        self.latencies_us.sort_unstable();
        let at = |q: f64| self.latencies_us[((self.latencies_us.len() - 1) as f64 * q) as usize];
        Some(Latency { p50_us: at(0.5), p99_us: at(0.99), max_us: at(1.0), samples: self.latencies_us.len() as u64 })
    }

    pub fn translate(&mut self, kernel_event: KernelEvent) -> Event {
        match kernel_event {
            KernelEvent::Fork { header, child_tgid, child_start_time_ns } => {
                self.tree.fork(header.tgid, header.start_time_ns, child_tgid, child_start_time_ns, header.session_id);
                let mut event = self.base(types::PROCESS_START, &header);
                let child =
                    EventHeader { tgid: child_tgid, tid: child_tgid, start_time_ns: child_start_time_ns, ..header };
                event.process = Some(self.process(&child));
                event.decision = Some(Decision::ALLOW);
                event
            }
            KernelEvent::Exec { header, path, argv, ino, dev, verdict } => {
                let (path, mounted) = self.mounts.resolve(dev, &path.bytes);
                let mapping = (header.flags & flags::MAPPED != 0).then_some(if header.flags & flags::MPROTECT != 0 {
                    "mprotect"
                } else {
                    "mmap"
                });
                if mapping.is_none() {
                    self.tree.exec(header.tgid, header.start_time_ns, header.session_id, path.clone(), argv.clone());
                }
                let mut event = self.base(types::PROCESS_EXEC, &header);
                event.exec = Some(Exec {
                    path: text(&path),
                    argv: argv.iter().map(|a| text(a)).collect(),
                    inode: ino,
                    device: event::device(dev),
                    argv_truncated: header.flags & flags::ARGV_TRUNCATED != 0,
                    path_truncated: header.flags & flags::PATH_TRUNCATED != 0,
                    mount_unknown: !mounted,
                    mapping,
                });
                let hook = match mapping {
                    Some("mprotect") => "kernel:lsm/file_mprotect",
                    Some(_) => "kernel:lsm/mmap_file",
                    None if header.flags & flags::LSM != 0 => "kernel:lsm/bprm_check_security",
                    None => "kernel:sched_process_exec",
                };
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
            KernelEvent::Syscall { header, nr, verdict, arg } => {
                let mut event = self.base(types::PROCESS_SYSCALL, &header);
                let name = match nr as i64 {
                    libc::SYS_io_uring_setup => "io_uring_setup",
                    libc::SYS_pidfd_getfd => "pidfd_getfd",
                    libc::SYS_open_by_handle_at => "open_by_handle_at",
                    libc::SYS_socket => "socket",
                    _ if nr == pseudo_syscall::SHARED_FILES => "clone(CLONE_FILES)",
                    _ if nr == pseudo_syscall::SOCKET => "socket(raw or ICMP)",
                    _ => "unknown",
                };
                let family = (name.starts_with("socket") && arg != 0)
                    .then(|| crate::socket_families::name(arg).map_or_else(|| arg.to_string(), str::to_owned));
                event.syscall = Some(event::Syscall { name, nr, family });
                let hook = match () {
                    _ if header.flags & flags::LSM != 0 => "kernel:lsm/socket_create",
                    _ if nr == pseudo_syscall::SHARED_FILES => "kernel:sched_process_fork",
                    _ if nr == pseudo_syscall::SOCKET => "kernel:cgroup/sock_create",
                    _ => "kernel:sys_enter",
                };
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
            KernelEvent::Exit { header, exit_code } => {
                let mut event = self.base(types::PROCESS_EXIT, &header);
                event.exit = Some(exit_status(exit_code));
                self.tree.exit(header.tgid, header.start_time_ns);
                event
            }
            KernelEvent::FileOpen { header, syscall, open_flags, f_mode, fd, ino, dev, path, verdict } => {
                let (path, mounted) = self.mounts.resolve(dev, &path.bytes);
                let mut event = self.base(types::FILE_OPEN, &header);
                event.file = Some(File {
                    path: text(&path),
                    mount_unknown: !mounted,
                    access: access(f_mode, open_flags),
                    created: f_mode & fmode::CREATED != 0,
                    truncate: open_flags & libc::O_TRUNC as u32 != 0,
                    flags: open_flag_names(open_flags),
                    syscall: open_syscall_name(syscall),
                    fd: (fd != NO_FD).then_some(fd),
                    inode: ino,
                    device: event::device(dev),
                    path_truncated: header.flags & flags::PATH_TRUNCATED != 0,
                });
                let hook = match syscall {
                    _ if header.flags & flags::LSM == 0 => "kernel:sys_exit",
                    open_syscall::RECEIVE => "kernel:lsm/file_receive",
                    _ => "kernel:lsm/file_open",
                };
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
            KernelEvent::FileChange { header, op, ino, dev, path, verdict } => {
                let (path, mounted) = self.mounts.resolve(dev, &path.bytes);
                let mut event = self.base(types::FILE_CHANGE, &header);
                let (operation, lsm_hook) = file_op_names(op);
                // Tier 2 sees a unix connect when the syscall returns.
                let hook = if header.flags & flags::LSM == 0 { "kernel:sys_exit" } else { lsm_hook };
                event.change = Some(Change {
                    path: text(&path),
                    operation,
                    inode: ino,
                    device: event::device(dev),
                    path_truncated: header.flags & flags::PATH_TRUNCATED != 0,
                    mount_unknown: !mounted,
                });
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
            KernelEvent::Tamper { header, op, target_tgid, arg, verdict } => {
                let mut event = self.base(types::PROCESS_TAMPER, &header);
                let (operation, hook) = tamper_op_names(op);
                event.tamper = Some(Tamper {
                    target_pid: (target_tgid != 0).then_some(target_tgid),
                    signal: matches!(op, tamper_op::SIGNAL | tamper_op::SIGIO).then_some(arg as i32),
                    bpf_command: (op == tamper_op::BPF).then_some(arg as u32),
                    ..Tamper::new(operation)
                });
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
            KernelEvent::Adopt { header, .. } => {
                // The daemon reports adoptions itself (with the profile and selector);
                // this is the bare record for any other reader.
                let mut event = self.base(types::SESSION_START, &header);
                event.session.root_pid = Some(header.tgid);
                event
            }
            KernelEvent::Connect { header, ret, fd, addr, verdict } => {
                let lsm = header.flags & flags::LSM != 0;
                let (event_type, hook) = match (header.kind, lsm) {
                    (kind::NET_SEND, false) => (types::NET_SEND, "kernel:cgroup/sendmsg"),
                    (kind::NET_BIND, false) => (types::NET_BIND, "kernel:cgroup/bind"),
                    (_, false) => (types::NET_CONNECT, "kernel:cgroup/connect"),
                    (kind::NET_SEND, true) => (types::NET_SEND, "kernel:lsm/socket_sendmsg"),
                    (kind::NET_BIND, true) => (types::NET_BIND, "kernel:lsm/socket_bind"),
                    (_, true) => (types::NET_CONNECT, "kernel:lsm/socket_connect"),
                };
                let mut event = self.base(event_type, &header);
                let mut details = net(addr, fd, ret);
                if lsm && ret == 0 {
                    details.errno = None; // allowed before the call: its outcome is not seen
                }
                event.net = Some(details);
                event.decision = Some(self.decision(header.session_id, verdict, hook));
                event
            }
        }
    }

    /// Explains what the kernel decided.
    fn decision(&self, session_id: u64, verdict: Verdict, hook: &'static str) -> Decision {
        let Some(policy) = self.policy_of(session_id) else { return unexplained(verdict, hook) };
        let rule = if verdict.rule_id == SHARED_FILES_RULE {
            Some("a process may not share its parent's descriptor table in a session with a policy: it would keep what a killed violator opened".to_owned())
        } else if verdict.rule_id == SOCKET_FAMILY_RULE {
            Some("a socket family other than unix, IPv4, IPv6 and netlink is refused unless network.families names it: it reaches around the network rules (packet sockets send hand-built frames and read others' traffic)".to_owned())
        } else if verdict.rule_id == RAW_SOCKET_RULE {
            Some("raw and ICMP sockets are refused where connections are restricted: they send without the connect checks".to_owned())
        } else if verdict.rule_id == OPEN_BY_HANDLE_RULE {
            Some("open_by_handle_at is refused where files are restricted: the file it opens may have no path a rule can name".to_owned())
        } else if verdict.rule_id == PIDFD_GETFD_RULE {
            Some("pidfd_getfd is refused in a session with a policy: it could take a descriptor a violator opened before it died".to_owned())
        } else if verdict.rule_id == IO_URING_RULE {
            Some("io_uring is refused without BPF LSM: its opens and sockets would bypass the file and socket-family checks (allow_io_uring: true opts in)".to_owned())
        } else if verdict.rule_id == SELF_PROTECTION_RULE {
            Some("self-protection: no session member may signal, ptrace, limit or reschedule the monitor or its watchdog, use bpf(), change mounts, or change the monitor's policy or binary".to_owned())
        } else if verdict.rule_id == DEVICE_RULE {
            Some("a raw device (block device, /dev/mem, /dev/kmem, /dev/port) is refused unless an entry names the device itself: reading one reads around every path rule".to_owned())
        } else if verdict.rule_id == OTHER_PROCESS_RULE {
            Some("another process is out of reach unless it is in the session: its memory, environment and descriptors (ptrace, process_vm_readv, /proc/PID/mem, environ, fd), its limits and its scheduling".to_owned())
        } else if verdict.rule_id == LOADER_RULE {
            Some("the dynamic loader runs whatever program it is given: it may be executed directly only where an exec entry names it".to_owned())
        } else if verdict.rule_id == PRINCIPAL_RULE {
            Some(format!("on behalf of {}: that user's permissions do not allow this access", policy.principal))
        } else if verdict.rule_id == NO_RULE {
            let what = if hook.starts_with("kernel:cgroup/") || hook.starts_with("kernel:lsm/socket_") {
                "address"
            } else {
                "path"
            };
            (verdict.action != action::ALLOW).then(|| format!("no entry covers this {what}"))
        } else {
            policy.rules.get(verdict.rule_id as usize).map(|origin| origin.to_string())
        };
        let mut decision = Decision { rule, profile: Some(policy.profile.clone()), ..Decision::ALLOW };
        match verdict.action {
            action::ALLOW => {}
            action::AUDIT => {
                decision.action = "audit";
                decision.would = Some(
                    if hook.starts_with("kernel:cgroup/")
                        || (hook.starts_with("kernel:lsm/") && policy.on_violation == OnViolation::Deny)
                    {
                        "deny"
                    } else {
                        "kill"
                    },
                );
            }
            action::DENY => {
                decision.action = "deny";
                decision.enforced_by = Some(hook);
                decision.note = match policy.on_violation {
                    _ if verdict.rule_id == OTHER_PROCESS_RULE => Some(
                        "refused only, whatever on_violation says: tools like lsof and ss -p look at every process"
                            .into(),
                    ),
                    _ if verdict.rule_id == SELF_PROTECTION_RULE && policy.mode == Mode::Audit => {
                        Some("refused although the session only audits: the monitor always protects itself".into())
                    }
                    OnViolation::Deny => None,
                    OnViolation::Kill => {
                        Some("refused; the process is then killed from userspace (on_violation: kill)".into())
                    }
                    OnViolation::KillSession => {
                        Some("refused; kill-session: every process of the session is killed".into())
                    }
                };
            }
            _ => {
                decision.action = "kill";
                decision.enforced_by = Some(hook);
                decision.note = match policy.on_violation {
                    OnViolation::Kill if hook.starts_with("kernel:lsm/") => {
                        Some("refused, and the process killed".into())
                    }
                    OnViolation::Kill => None,
                    OnViolation::Deny => {
                        Some("deny escalated to kill: without BPF LSM the kernel cannot refuse this operation".into())
                    }
                    OnViolation::KillSession => Some("kill-session: every process of the session is killed".into()),
                };
            }
        }
        decision
    }

    /// The whole session was killed.
    pub fn session_killed(
        &mut self,
        session_id: u64,
        time_ns: u64,
        pids: Vec<u32>,
        trigger_pid: u32,
        error: Option<String>,
    ) -> Event {
        let mut event = self.context.event(types::SESSION_KILLED, time_ns, session_ref(session_id));
        event.session.killed_pids = Some(pids);
        event.session.killed_by = Some("violation");
        event.session.killed_because_of = Some(trigger_pid);
        let profile = self.policy_of(session_id).map(|p| p.profile.clone());
        event.decision = Some(Decision {
            action: "kill",
            profile,
            enforced_by: Some("userspace:cgroup.kill"),
            note: error,
            ..Decision::ALLOW
        });
        event
    }

    fn base(&mut self, event_type: &'static str, header: &EventHeader) -> Event {
        let mut event = self.context.event(event_type, header.time_ns, session_ref(header.session_id));
        event.process = Some(self.process(header));
        event.incomplete = header.flags & (flags::READ_ERROR | flags::CHILD_NOT_TRACKED) != 0;
        event
    }

    fn process(&mut self, header: &EventHeader) -> Process {
        let known = self.tree.observe(header.tgid, header.start_time_ns, header.session_id);
        // Records from the cgroup socket hooks cannot read the start time: the process
        // tree knows it.
        let start_time_ns = if header.start_time_ns == 0 { known.start_time_ns } else { header.start_time_ns };
        let image = match &known.image {
            Some(image) if image.start_time_ns == start_time_ns => image.clone(),
            _ => {
                let image = ProcessImage {
                    start_time_ns,
                    exe: known.exe.as_deref().map(text).into(),
                    argv: known.argv.iter().map(|a| text(a)).collect::<Vec<_>>().into(),
                    start_time: self.context.clock.rfc3339(start_time_ns).into(),
                };
                known.image = Some(image.clone());
                image
            }
        };
        let ppid = known.ppid;
        Process {
            pid: header.tgid,
            tid: header.tid,
            ppid,
            uid: header.uid,
            gid: header.gid,
            exe: image.exe,
            argv: image.argv,
            start_time: image.start_time,
            start_boottime_ns: start_time_ns,
            ancestry: self.tree.ancestry(header.tgid),
        }
    }
}

/// What the descriptor allows, from the file's own mode (falling back to the flags the
/// caller passed if the mode could not be read).
fn access(f_mode: u32, open_flags: u32) -> &'static str {
    let (read, write) = if f_mode != 0 {
        (f_mode & fmode::READ != 0, f_mode & fmode::WRITE != 0)
    } else {
        match open_flags & libc::O_ACCMODE as u32 {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        }
    };
    match (read, write) {
        (true, true) => "read_write",
        (true, false) => "read",
        (false, true) => "write",
        (false, false) => "none",
    }
}

fn open_flag_names(open_flags: u32) -> Vec<&'static str> {
    let flags = open_flags as i32;
    let mut names = Vec::new();
    let named = [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    for (bit, name) in named {
        if flags & bit == bit {
            names.push(name);
        }
    }
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        names.push("O_TMPFILE");
    } else if flags & libc::O_DIRECTORY != 0 {
        names.push("O_DIRECTORY");
    }
    if flags & libc::O_SYNC == libc::O_SYNC {
        names.push("O_SYNC");
    }
    names
}

fn open_syscall_name(syscall: u32) -> &'static str {
    match syscall {
        open_syscall::OPEN => "open",
        open_syscall::OPENAT => "openat",
        open_syscall::OPENAT2 => "openat2",
        open_syscall::CREAT => "creat",
        open_syscall::OPEN_BY_HANDLE_AT => "open_by_handle_at",
        open_syscall::RECEIVE => "receive",
        _ => "unknown",
    }
}

/// (`change.operation`, the LSM hook that judged it).
fn file_op_names(op: u32) -> (&'static str, &'static str) {
    match op {
        file_op::UNLINK => ("unlink", "kernel:lsm/path_unlink"),
        file_op::RMDIR => ("rmdir", "kernel:lsm/path_rmdir"),
        file_op::RENAME_FROM => ("rename_from", "kernel:lsm/path_rename"),
        file_op::RENAME_TO => ("rename_to", "kernel:lsm/path_rename"),
        file_op::TRUNCATE => ("truncate", "kernel:lsm/path_truncate"),
        file_op::CREATE => ("create", "kernel:lsm/path_mknod"),
        file_op::MKDIR => ("mkdir", "kernel:lsm/path_mkdir"),
        file_op::SYMLINK => ("symlink", "kernel:lsm/path_symlink"),
        file_op::LINK => ("link", "kernel:lsm/path_link"),
        file_op::CHMOD => ("chmod", "kernel:lsm/path_chmod"),
        file_op::CHOWN => ("chown", "kernel:lsm/path_chown"),
        file_op::CONNECT => ("connect", "kernel:lsm/unix_stream_connect"),
        _ => ("send", "kernel:lsm/unix_may_send"),
    }
}

/// (`tamper.operation`, the LSM hook that refused it).
fn tamper_op_names(op: u32) -> (&'static str, &'static str) {
    match op {
        tamper_op::SIGNAL => ("signal", "kernel:lsm/task_kill"),
        tamper_op::SIGIO => ("signal", "kernel:lsm/file_send_sigiotask"),
        tamper_op::PTRACE => ("ptrace", "kernel:lsm/ptrace_access_check"),
        tamper_op::BPF => ("bpf", "kernel:lsm/bpf"),
        tamper_op::MOUNT => ("mount", "kernel:lsm/sb_mount"),
        tamper_op::UMOUNT => ("umount", "kernel:lsm/sb_umount"),
        tamper_op::REMOUNT => ("remount", "kernel:lsm/sb_remount"),
        tamper_op::SCHEDULER => ("scheduler", "kernel:lsm/task_setscheduler"),
        tamper_op::NICE => ("nice", "kernel:lsm/task_setnice"),
        tamper_op::IOPRIO => ("ioprio", "kernel:lsm/task_setioprio"),
        tamper_op::MOVE_MEMORY => ("move-memory", "kernel:lsm/task_movememory"),
        _ => ("prlimit", "kernel:lsm/task_prlimit"),
    }
}

/// Decodes a wait status (`task->exit_code`).
pub fn exit_status(status: u32) -> Exit {
    let signal = status & 0x7f;
    if signal == 0 {
        Exit { code: Some(((status >> 8) & 0xff) as i32), signal: None, core_dumped: false }
    } else {
        Exit { code: None, signal: Some(signal as i32), core_dumped: status & 0x80 != 0 }
    }
}

fn net(addr: SocketAddress, fd: u32, ret: i32) -> Net {
    let mut net = Net {
        family: "other",
        address: String::new(),
        port: None,
        mapped_ipv4: None,
        family_number: None,
        fd: (fd != NO_FD).then_some(fd),
        errno: Some(-ret),
    };
    match addr {
        SocketAddress::Inet { addr, port } => {
            net.family = "inet";
            net.address = addr.to_string();
            net.port = Some(port);
        }
        SocketAddress::Inet6 { addr, port, .. } => {
            net.family = "inet6";
            net.address = addr.to_string();
            net.port = Some(port);
            net.mapped_ipv4 = addr.to_ipv4_mapped().map(|v4| v4.to_string());
        }
        SocketAddress::Unix { path, abstract_name } => {
            net.family = "unix";
            net.address = if abstract_name { format!("@{}", text(&path)) } else { text(&path) };
        }
        SocketAddress::Other { family } => net.family_number = Some(family),
    }
    net
}

/// What the kernel decided in a session whose policy userspace does not know (its
/// adoption record was lost under load): the verdict stands and is reported, without
/// the rule or profile that would explain it.
fn unexplained(verdict: Verdict, hook: &'static str) -> Decision {
    let note = Some("the session's start was lost (see monitor.loss): rule and profile unknown".to_owned());
    match verdict.action {
        action::ALLOW => Decision::ALLOW,
        action::AUDIT => Decision { action: "audit", note, ..Decision::ALLOW },
        action::DENY => Decision { action: "deny", enforced_by: Some(hook), note, ..Decision::ALLOW },
        _ => Decision { action: "kill", enforced_by: Some(hook), note, ..Decision::ALLOW },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_without_a_known_policy_is_still_reported() {
        let kill = unexplained(Verdict { action: action::KILL, rule_id: 3 }, "kernel:sys_exit");
        assert_eq!((kill.action, kill.enforced_by), ("kill", Some("kernel:sys_exit")));
        assert!(kill.note.is_some());
        assert_eq!(unexplained(Verdict { action: action::DENY, rule_id: 3 }, "kernel:lsm/file_open").action, "deny");
        assert_eq!(unexplained(Verdict { action: action::AUDIT, rule_id: 3 }, "kernel:sys_exit").action, "audit");
        assert_eq!(unexplained(Verdict::ALLOW, "kernel:sys_exit").action, "allow");
    }

    #[test]
    fn wait_status() {
        let e = exit_status(3 << 8);
        assert_eq!((e.code, e.signal), (Some(3), None));
        let e = exit_status(9);
        assert_eq!((e.code, e.signal), (None, Some(9)));
        assert!(exit_status(11 | 0x80).core_dumped);
    }

    #[test]
    fn access_from_mode_then_flags() {
        assert_eq!(access(fmode::READ, 0), "read");
        assert_eq!(access(fmode::READ | fmode::WRITE, 0), "read_write");
        assert_eq!(access(fmode::WRITE, libc::O_RDONLY as u32), "write");
        assert_eq!(access(0x4000, libc::O_PATH as u32), "none");
        assert_eq!(access(0, libc::O_WRONLY as u32), "write");
    }

    #[test]
    fn flag_names() {
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
        assert_eq!(open_flag_names(f), vec!["O_CREAT", "O_TRUNC", "O_CLOEXEC"]);
        assert_eq!(open_flag_names(libc::O_TMPFILE as u32), vec!["O_TMPFILE"]);
        assert_eq!(open_flag_names(libc::O_DIRECTORY as u32), vec!["O_DIRECTORY"]);
    }

    #[test]
    fn mapped_ipv4_is_named() {
        let n = net(SocketAddress::Inet6 { addr: "::ffff:127.0.0.1".parse().unwrap(), port: 80, scope_id: 0 }, 3, -111);
        assert_eq!((n.family, n.mapped_ipv4.as_deref(), n.errno), ("inet6", Some("127.0.0.1"), Some(111)));
    }
}
