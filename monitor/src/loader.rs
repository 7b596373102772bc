//! Loads the embedded eBPF object with this kernel's configuration and attaches every
//! program. What a kernel lacks is a typed error naming the hook and the fix.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, FEntry, FExit, Lsm, Program, ProgramError, RawTracePoint,
        TracePoint,
    },
};
use monitor_common::{
    config::{KERNEL_CONFIG, NO_SYSCALL, SyscallNumbers},
    maps::{self, Counter},
    policy::ProtectedInode,
};

use crate::{
    btf::{Btf, BtfError},
    enforcement::{Enforcement, LsmChoice, Tier},
    kernel_config::kernel_config,
    rule_maps::RuleMaps,
    session_map::SessionMap,
    skipped_runs::SkippedRuns,
    verifier::{ProgramFailure, Verifications, error_chain},
};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// (program name in the object, raw tracepoint it attaches to).
const RAW_TRACEPOINTS: [(&str, &str); 5] = [
    // Membership first: a fork must copy membership before the child can act.
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("sched_process_exec", "sched_process_exec"),
    // Adoption by unit or cgroup: new cgroups' ids (see `monitor-ebpf/src/adopt.rs`).
    ("cgroup_mkdir", "cgroup_mkdir"),
    ("cgroup_rmdir", "cgroup_rmdir"),
];

/// Syscall tracepoints (`syscalls:sys_enter_NAME`, `syscalls:sys_exit_NAME`): only
/// where tier 2 judges opens or reports connects. Once any is attached, every task on
/// the host takes the kernel's slower syscall path (about 70 ns per syscall measured);
/// only these syscalls run a program. A syscall the architecture lacks (aarch64: open,
/// creat) is skipped.
struct WatchedSyscall {
    name: &'static str,
    /// On this architecture; `NO_SYSCALL` if it has none.
    nr: u32,
    at_entry: bool,
    at_exit: bool,
}

fn watched_syscalls(n: &SyscallNumbers) -> [WatchedSyscall; 9] {
    let watch = |name, nr, at_entry, at_exit| WatchedSyscall { name, nr, at_entry, at_exit };
    [
        watch("open", n.open, false, true),
        watch("creat", n.creat, false, true),
        watch("openat", n.openat, false, true),
        watch("openat2", n.openat2, false, true),
        watch("open_by_handle_at", n.open_by_handle_at, true, true),
        watch("connect", n.connect, true, true),
        watch("io_uring_setup", n.io_uring_setup, true, false),
        watch("pidfd_getfd", n.pidfd_getfd, true, false),
        watch("socket", n.socket, true, false),
    ]
}

/// What an LSM program enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Files,
    Exec,
    Network,
    SelfProtection,
}

/// (program name in the object, LSM hook, resource). A resource is enforced by the
/// LSM only if every one of its programs attached.
pub const LSM_PROGRAMS: [(&str, &str, Resource); 34] = [
    ("file_open", "file_open", Resource::Files),
    ("file_receive", "file_receive", Resource::Files),
    ("path_unlink", "path_unlink", Resource::Files),
    ("path_rmdir", "path_rmdir", Resource::Files),
    ("path_rename", "path_rename", Resource::Files),
    ("path_truncate", "path_truncate", Resource::Files),
    ("path_mknod", "path_mknod", Resource::Files),
    ("path_mkdir", "path_mkdir", Resource::Files),
    ("path_symlink", "path_symlink", Resource::Files),
    ("path_link", "path_link", Resource::Files),
    ("path_chmod", "path_chmod", Resource::Files),
    ("path_chown", "path_chown", Resource::Files),
    ("bprm_check_security", "bprm_check_security", Resource::Exec),
    ("mmap_file", "mmap_file", Resource::Exec),
    ("file_mprotect", "file_mprotect", Resource::Exec),
    ("socket_connect", "socket_connect", Resource::Network),
    ("socket_bind", "socket_bind", Resource::Network),
    ("socket_sendmsg", "socket_sendmsg", Resource::Network),
    ("socket_create", "socket_create", Resource::Network),
    ("task_kill", "task_kill", Resource::SelfProtection),
    ("ptrace_access_check", "ptrace_access_check", Resource::SelfProtection),
    ("bpf_syscall", "bpf", Resource::SelfProtection),
    ("sb_mount", "sb_mount", Resource::SelfProtection),
    ("sb_umount", "sb_umount", Resource::SelfProtection),
    ("sb_remount", "sb_remount", Resource::SelfProtection),
    ("move_mount", "move_mount", Resource::SelfProtection),
    ("task_setscheduler", "task_setscheduler", Resource::SelfProtection),
    ("task_setnice", "task_setnice", Resource::SelfProtection),
    ("task_setioprio", "task_setioprio", Resource::SelfProtection),
    ("task_movememory", "task_movememory", Resource::SelfProtection),
    ("task_prlimit", "task_prlimit", Resource::SelfProtection),
    ("file_send_sigiotask", "file_send_sigiotask", Resource::SelfProtection),
    ("unix_stream_connect", "unix_stream_connect", Resource::Files),
    ("unix_may_send", "unix_may_send", Resource::Files),
];

/// How attaching one LSM hook went (for `agent-monitor doctor`).
#[derive(Debug, Clone)]
pub struct HookStatus {
    pub hook: &'static str,
    pub resource: Resource,
    /// `None`: attached.
    pub error: Option<String>,
}

/// What this kernel offers the LSM tier.
#[derive(Debug, Clone)]
pub struct LsmReport {
    /// Whether `bpf` is in /sys/kernel/security/lsm (`None`: securityfs not readable).
    pub listed: Option<bool>,
    /// Whether an attached LSM program was seen to run (the self-test).
    pub active: bool,
    pub hooks: Vec<HookStatus>,
    /// Why the LSM tier is not used, if it is not.
    pub unavailable: Option<String>,
}

/// (program, what it hooks), attached to each session's cgroup.
const CGROUP_PROGRAMS: [(&str, &str); 6] = [
    ("connect4", "cgroup/connect4"),
    ("connect6", "cgroup/connect6"),
    ("sendmsg4", "cgroup/sendmsg4"),
    ("sendmsg6", "cgroup/sendmsg6"),
    ("bind4", "cgroup/bind4"),
    ("bind6", "cgroup/bind6"),
];

/// Attaches the network programs to a session's cgroup (inherited by every cgroup
/// below it; no program may be attached below it, so an agent cannot override them).
/// The links live as long as `ebpf`.
pub fn attach_network(ebpf: &mut Ebpf, cgroup: &std::fs::File) -> Result<(), LoadError> {
    attach_network_in(ebpf, cgroup, CgroupAttachMode::Single)
}

/// The daemon's variant: attached once to the root cgroup, so that they cover adopted
/// processes wherever they run. Attached as BPF links, they run beside any other
/// programs there and below (a link attachment is always multi; the kernel refuses
/// the `BPF_F_ALLOW_MULTI` flag on links). The programs let every process outside
/// the sessions pass after one map lookup.
pub fn attach_network_everywhere(ebpf: &mut Ebpf, root: &std::fs::File) -> Result<(), LoadError> {
    attach_network_in(ebpf, root, CgroupAttachMode::Single)
}

fn attach_network_in(ebpf: &mut Ebpf, cgroup: &std::fs::File, mode: CgroupAttachMode) -> Result<(), LoadError> {
    for (program, attach) in CGROUP_PROGRAMS {
        cgroup_program(ebpf, program, attach)?.attach(cgroup, mode).map_err(|source| LoadError::Cgroup {
            program,
            attach,
            source,
        })?;
    }
    let (program, attach) = SOCK_CREATE;
    sock_create_program(ebpf)?.attach(cgroup, mode).map_err(|source| LoadError::Cgroup { program, attach, source })?;
    Ok(())
}

fn sock_create_program(ebpf: &mut Ebpf) -> Result<&mut CgroupSock, LoadError> {
    let (program, attach) = SOCK_CREATE;
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Cgroup { program, attach, source })
}

/// Refuses raw and ICMP sockets where connections are restricted.
const SOCK_CREATE: (&str, &str) = ("sock_create", "cgroup/sock_create");

fn cgroup_program<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
    attach: &'static str,
) -> Result<&'a mut CgroupSockAddr, LoadError> {
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Cgroup { program, attach, source })
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "{program} ({attach}) failed: {source:#}; network policy needs cgroup v2 and cgroup socket-address programs (Linux >= 4.17, pid lookup >= 6.1)"
    )]
    Cgroup { program: &'static str, attach: &'static str, source: ProgramError },
    #[error("agent-monitor must run as root (it loads eBPF programs: CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE)")]
    NotRoot,
    #[error("reading the kernel's type information (BTF): {0}")]
    Btf(#[from] BtfError),
    #[error("the kernel refused the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("eBPF object has no program {0} (build mismatch)")]
    MissingProgram(&'static str),
    #[error("eBPF object has no map {0} (build mismatch)")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error(transparent)]
    SessionMap(#[from] crate::session_map::SessionMapError),
    #[error(transparent)]
    Program(#[from] ProgramFailure),
    #[error(
        "attaching {program} to the raw tracepoint {tracepoint} failed: {source:#}; the kernel needs CONFIG_BPF_EVENTS and raw tracepoint support (Linux >= 4.17)"
    )]
    Attach { program: &'static str, tracepoint: &'static str, source: ProgramError },
    #[error(
        "attaching {program} to the tracepoint syscalls:{tracepoint} failed: {source:#}; the kernel needs CONFIG_FTRACE_SYSCALLS, and tracefs mounted (mount -t tracefs tracefs /sys/kernel/tracing)"
    )]
    SyscallTracepoint { program: &'static str, tracepoint: String, source: ProgramError },
}

/// The loaded programs and the maps userspace works with. Dropping it detaches every
/// program and frees every map (nothing is pinned).
pub struct Probes {
    pub ebpf: Ebpf,
    pub enforcement: Enforcement,
    pub lsm: LsmReport,
    pub protected: HashMap<MapData, ProtectedInode, u8>,
    pub sessions: SessionMap,
    pub events: RingBuf<MapData>,
    pub decisions: RingBuf<MapData>,
    /// What the ring buffers' reader is doing (`ingest`).
    pub reader_state: Array<MapData, u32>,
    pub counters: PerCpuArray<MapData, u64>,
    pub skipped_runs: SkippedRuns,
    pub rules: RuleMaps,
    #[allow(dead_code, reason = "held for its drop, which detaches tier 2's syscall hooks")]
    pub syscall_links: SyscallLinks,
    /// Where tier 2 watches opens and connects.
    pub syscall_hooks: SyscallHooks,
    /// What the verifier said of each program loaded.
    pub programs: Verifications,
}

/// Where tier 2 hooks the watched syscalls (none where BPF LSM enforces files and
/// network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallHooks {
    None,
    /// fentry/fexit on the syscall functions (`__x64_sys_openat`, ...): only the watched
    /// syscalls pay, where the kernel has BPF trampolines.
    Functions,
    /// The `syscalls:sys_enter_*`/`sys_exit_*` tracepoints: every task of the host takes
    /// the syscall slow path while one is attached.
    Tracepoints,
}

impl SyscallHooks {
    pub fn name(self) -> &'static str {
        match self {
            SyscallHooks::None => "none",
            SyscallHooks::Functions => "functions",
            SyscallHooks::Tracepoints => "tracepoints",
        }
    }
}

/// Tier 2's syscall links (tracepoints, or fentry/fexit), detached all at once when
/// dropped. Removing a syscall tracepoint makes the kernel wait for a grace period
/// (about 70 ms on 6.18); one after the other, the ten links added 0.7 s to every exit
/// of a monitor.
#[derive(Default)]
pub struct SyscallLinks(Vec<Box<dyn Send>>);

impl Drop for SyscallLinks {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
    }
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer. Failure only matters on old kernels,
    // where loading then fails with its own error.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

impl Probes {
    pub fn load(choice: LsmChoice) -> Result<Probes, LoadError> {
        Probes::load_recording(choice, &mut Verifications::default())
    }

    /// [`Probes::load`], recording each program's verification in `programs` (kept
    /// when loading fails, for `doctor`).
    pub fn load_recording(choice: LsmChoice, programs: &mut Verifications) -> Result<Probes, LoadError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LoadError::NotRoot);
        }
        raise_memlock_limit();
        let started = std::time::Instant::now();
        let btf = Btf::from_sys_fs()?;
        let config = kernel_config(&btf)?;
        log::debug!("kernel BTF read in {:?}", started.elapsed());
        let mut loader = EbpfLoader::new();
        // Debugging a verifier rejection: the full log of every program.
        if std::env::var_os("AGENT_MONITOR_VERIFIER_LOG").is_some() {
            loader.verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
        }
        let mut ebpf = loader.btf(None).override_global(KERNEL_CONFIG, &config, true).load(EBPF_OBJECT)?;
        log::debug!("object loaded (maps created) at {:?}", started.elapsed());
        for (program, tracepoint) in RAW_TRACEPOINTS {
            attach_raw_tracepoint(&mut ebpf, programs, program, tracepoint)?;
        }
        log::debug!("process tracepoints attached at {:?}", started.elapsed());
        let counters = ebpf.take_map(maps::COUNTERS).ok_or(LoadError::MissingMap(maps::COUNTERS))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|source| LoadError::Map { name: maps::COUNTERS, source })?;
        // Parsed once for the LSM and the syscall-function programs (both load by name).
        let aya_btf = aya::Btf::from_sys_fs().map_err(|error| format!("no kernel BTF: {error}"));
        let (enforcement, lsm) = match choice {
            // Loading and attaching the 34 hooks only to find they never run cost 12 s of a
            // 19 s start on Debian's 6.1 under emulation (and 10% of a start on hardware).
            LsmChoice::Auto if lsm::listed() == Some(false) => {
                (Enforcement::FALLBACK, LsmReport::not_used(lsm::NOT_LISTED))
            }
            LsmChoice::Auto | LsmChoice::Probe => {
                lsm::attach(&mut ebpf, programs, &counters, aya_btf.as_ref(), choice == LsmChoice::Probe)
            }
            LsmChoice::Off => (Enforcement::FALLBACK, LsmReport::not_used("turned off (--no-lsm)")),
        };
        let tiers = ebpf.map_mut(maps::LSM_TIERS).ok_or(LoadError::MissingMap(maps::LSM_TIERS))?;
        Array::<_, u32>::try_from(tiers)
            .and_then(|mut tiers| tiers.set(0, enforcement.lsm_bits(), 0))
            .map_err(|source| LoadError::Map { name: maps::LSM_TIERS, source })?;
        log::debug!("LSM hooks tried at {:?}: {enforcement:?}", started.elapsed());
        let mut syscall_links = SyscallLinks::default();
        let mut syscall_hooks = SyscallHooks::None;
        if enforcement.needs_syscall_tracepoints() {
            let present: Vec<_> =
                watched_syscalls(&config.syscalls).into_iter().filter(|s| s.nr != NO_SYSCALL).collect();
            // `AGENT_MONITOR_SYSCALL_HOOKS=tracepoints`: the tracepoints even where the
            // functions could be hooked (the same checks; `cargo xtask vm --bench` compares).
            let functions = if std::env::var("AGENT_MONITOR_SYSCALL_HOOKS").as_deref() == Ok("tracepoints") {
                Err("AGENT_MONITOR_SYSCALL_HOOKS=tracepoints".to_owned())
            } else {
                aya_btf
                    .as_ref()
                    .map_err(String::clone)
                    .and_then(|btf| syscall_functions::attach(&mut ebpf, programs, btf, &present))
            };
            syscall_hooks = match functions {
                Ok(links) => {
                    syscall_links = links;
                    SyscallHooks::Functions
                }
                Err(why) => {
                    log::debug!("syscall functions not hooked ({why}): the syscall tracepoints instead");
                    let entered: Vec<String> =
                        present.iter().filter(|s| s.at_entry).map(|s| format!("sys_enter_{}", s.name)).collect();
                    let left: Vec<String> =
                        present.iter().filter(|s| s.at_exit).map(|s| format!("sys_exit_{}", s.name)).collect();
                    attach_syscall_tracepoints(&mut ebpf, programs, "syscall_enter", &entered, &mut syscall_links)?;
                    attach_syscall_tracepoints(&mut ebpf, programs, "syscall_exit", &left, &mut syscall_links)?;
                    SyscallHooks::Tracepoints
                }
            };
            log::debug!("syscall hooks ({}) attached at {:?}", syscall_hooks.name(), started.elapsed());
        }
        let sessions = ebpf.take_map(maps::SESSIONS).ok_or(LoadError::MissingMap(maps::SESSIONS))?;
        // Borrowed, not taken: programs loaded later refer to the map by its descriptor.
        let member_bits = ebpf.map(maps::MEMBER_BITS).ok_or(LoadError::MissingMap(maps::MEMBER_BITS))?;
        let sessions = SessionMap::new(sessions, member_bits)?;
        let events = ebpf.take_map(maps::EVENTS).ok_or(LoadError::MissingMap(maps::EVENTS))?;
        let events = RingBuf::try_from(events).map_err(|source| LoadError::Map { name: maps::EVENTS, source })?;
        let reader_state = ebpf.take_map(maps::READER_STATE).ok_or(LoadError::MissingMap(maps::READER_STATE))?;
        let reader_state =
            Array::try_from(reader_state).map_err(|source| LoadError::Map { name: maps::READER_STATE, source })?;
        let decisions = ebpf.take_map(maps::DECISIONS).ok_or(LoadError::MissingMap(maps::DECISIONS))?;
        let decisions =
            RingBuf::try_from(decisions).map_err(|source| LoadError::Map { name: maps::DECISIONS, source })?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap(name));
        let (files, exec, names) = (take(maps::FILE_RULES)?, take(maps::EXEC_RULES)?, take(maps::NAME_RULES)?);
        let net = take(maps::NET_RULES)?;
        let principals = take(maps::PRINCIPALS)?;
        let principal_groups = take(maps::PRINCIPAL_GROUP_SET)?;
        let denied_inodes = take(maps::DENIED_INODES)?;
        let families = take(maps::POLICY_FAMILIES)?;
        let protected = take(maps::PROTECTED_INODES)?;
        let protected =
            HashMap::try_from(protected).map_err(|source| LoadError::Map { name: maps::PROTECTED_INODES, source })?;
        let loaders = take(maps::LOADER_INODES)?;
        let mut loaders: HashMap<_, ProtectedInode, u8> =
            HashMap::try_from(loaders).map_err(|source| LoadError::Map { name: maps::LOADER_INODES, source })?;
        for (dev, ino) in crate::loaders::identities() {
            loaders
                .insert(ProtectedInode { dev, _pad: 0, ino }, 1, 0)
                .map_err(|source| LoadError::Map { name: maps::LOADER_INODES, source })?;
        }
        let rules = RuleMaps {
            files: LpmTrie::try_from(files).map_err(|source| LoadError::Map { name: maps::FILE_RULES, source })?,
            exec: LpmTrie::try_from(exec).map_err(|source| LoadError::Map { name: maps::EXEC_RULES, source })?,
            names: HashMap::try_from(names).map_err(|source| LoadError::Map { name: maps::NAME_RULES, source })?,
            net: LpmTrie::try_from(net).map_err(|source| LoadError::Map { name: maps::NET_RULES, source })?,
            principals: HashMap::try_from(principals)
                .map_err(|source| LoadError::Map { name: maps::PRINCIPALS, source })?,
            principal_groups: HashMap::try_from(principal_groups)
                .map_err(|source| LoadError::Map { name: maps::PRINCIPAL_GROUP_SET, source })?,
            denied_inodes: HashMap::try_from(denied_inodes)
                .map_err(|source| LoadError::Map { name: maps::DENIED_INODES, source })?,
            families: HashMap::try_from(families)
                .map_err(|source| LoadError::Map { name: maps::POLICY_FAMILIES, source })?,
        };
        if enforcement.network == Tier::Cgroup {
            for (program, _) in CGROUP_PROGRAMS {
                programs.load(&mut ebpf, program, |p| <&mut CgroupSockAddr>::try_from(p)?.load())?;
            }
            programs.load(&mut ebpf, SOCK_CREATE.0, |p| <&mut CgroupSock>::try_from(p)?.load())?;
        }
        log::debug!("all programs loaded at {:?}", started.elapsed());
        let skipped_runs = SkippedRuns::of(&ebpf);
        Ok(Probes {
            ebpf,
            enforcement,
            lsm,
            protected,
            sessions,
            events,
            decisions,
            reader_state,
            counters,
            skipped_runs,
            rules,
            syscall_links,
            syscall_hooks,
            programs: programs.clone(),
        })
    }

    /// Loads (without attaching) every program of the object that the chosen tiers did
    /// not load, so that [`Probes::programs`] says what the verifier makes of each one
    /// on this kernel (`agent-monitor doctor --all-programs`, the verifier budget test).
    /// A program this kernel refuses is recorded with its error; one with no hook on this
    /// architecture, as skipped.
    pub fn verify_unused(&mut self) {
        let btf = aya::Btf::from_sys_fs().map_err(|error| format!("no kernel BTF: {error}"));
        let numbers = crate::kernel_config::syscall_numbers();
        let unused: Vec<String> = self
            .ebpf
            .programs()
            .map(|(name, _)| name.to_owned())
            .filter(|name| !self.programs.contains(name))
            .collect();
        for name in &unused {
            let kind = self.ebpf.program(name).map_or("unknown", crate::verifier::kind_of);
            let lsm_hook =
                LSM_PROGRAMS.iter().find(|(program, _, _)| program == name).map_or(name.as_str(), |(_, hook, _)| hook);
            let syscall = name.strip_prefix("fentry_").or_else(|| name.strip_prefix("fexit_"));
            if let Some(syscall) = syscall
                && watched_syscalls(&numbers).iter().any(|s| s.name == syscall && s.nr == NO_SYSCALL)
            {
                self.programs.skipped(name, kind, format!("{} has no {syscall} syscall", std::env::consts::ARCH));
                continue;
            }
            let function = syscall.map(syscall_functions::function);
            let function = function.as_deref().unwrap_or(name);
            let btf = match (&btf, matches!(kind, "lsm" | "fentry" | "fexit")) {
                (Err(why), true) => {
                    self.programs.skipped(name, kind, why.clone());
                    continue;
                }
                (Ok(btf), _) => Some(btf),
                (Err(_), false) => None,
            };
            // A refusal is in the record; nothing else is to be done with it here.
            let _ = self.programs.load(&mut self.ebpf, name, |program| match (program, btf) {
                (Program::Lsm(p), Some(btf)) => p.load(lsm_hook, btf),
                (Program::FEntry(p), Some(btf)) => p.load(function, btf),
                (Program::FExit(p), Some(btf)) => p.load(function, btf),
                (Program::RawTracePoint(p), _) => p.load(),
                (Program::TracePoint(p), _) => p.load(),
                (Program::CgroupSockAddr(p), _) => p.load(),
                (Program::CgroupSock(p), _) => p.load(),
                _ => Err(ProgramError::UnexpectedProgramType),
            });
        }
    }

    /// Marks the monitor's own files (policy, binary) as files no session member may
    /// change (effective with the LSM tier).
    pub fn protect(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        let dev = (libc::major(meta.dev()) << 20) | libc::minor(meta.dev());
        self.protected
            .insert(ProtectedInode { dev, _pad: 0, ino: meta.ino() }, 1, 0)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    programs: &mut Verifications,
    program: &'static str,
    tracepoint: &'static str,
) -> Result<(), LoadError> {
    programs.load(ebpf, program, |p| <&mut RawTracePoint>::try_from(p)?.load())?;
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Attach { program, tracepoint, source })?;
    prog.attach(tracepoint).map_err(|source| LoadError::Attach { program, tracepoint, source })?;
    programs.set_attached(program, true);
    Ok(())
}

/// Loads `program` once and attaches it to each `syscalls:` tracepoint in `tracepoints`;
/// the links go to `links`.
fn attach_syscall_tracepoints(
    ebpf: &mut Ebpf,
    programs: &mut Verifications,
    program: &'static str,
    tracepoints: &[String],
    links: &mut SyscallLinks,
) -> Result<(), LoadError> {
    let error = |tracepoint: &str| {
        let tracepoint = tracepoint.to_owned();
        move |source| LoadError::SyscallTracepoint { program, tracepoint, source }
    };
    let first = tracepoints.first().map(String::as_str).unwrap_or_default();
    programs.load(ebpf, program, |p| <&mut TracePoint>::try_from(p)?.load())?;
    let prog: &mut TracePoint =
        ebpf.program_mut(program).ok_or(LoadError::MissingProgram(program))?.try_into().map_err(error(first))?;
    for tracepoint in tracepoints {
        let link = prog.attach("syscalls", tracepoint).map_err(error(tracepoint))?;
        links.0.push(Box::new(prog.take_link(link).map_err(error(tracepoint))?));
    }
    programs.set_attached(program, !tracepoints.is_empty());
    Ok(())
}

/// Tier 2 on the syscall functions (`monitor-ebpf/src/syscall_functions.rs`).
mod syscall_functions {
    use super::*;

    /// The functions the syscall table calls, named `<prefix><syscall>`.
    #[cfg(target_arch = "x86_64")]
    const PREFIX: &str = "__x64_sys_";
    #[cfg(target_arch = "aarch64")]
    const PREFIX: &str = "__arm64_sys_";

    /// The kernel function of the syscall `name`.
    pub fn function(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// Attaches `fentry_<name>` and `fexit_<name>` to each syscall's function, as it is
    /// watched at entry and exit; all of them, or none (the links made before a failure
    /// are dropped, which detaches them, for the tracepoints to take over).
    pub fn attach(
        ebpf: &mut Ebpf,
        programs: &mut Verifications,
        btf: &aya::Btf,
        present: &[WatchedSyscall],
    ) -> Result<SyscallLinks, String> {
        let mut links = SyscallLinks::default();
        let mut hooked = Vec::new();
        // FEntry and FExit share these methods but no trait.
        macro_rules! hook {
            ($kind:ty, $program:expr, $function:expr) => {{
                let (program, function) = ($program, $function);
                programs
                    .load(ebpf, &program, |p| <&mut $kind>::try_from(p)?.load(function, btf))
                    .map_err(|e| e.short())?;
                let prog: &mut $kind = program_of(ebpf, &program)?;
                let id = prog.attach().map_err(failed("attaching", &program, function))?;
                links.0.push(Box::new(prog.take_link(id).map_err(failed("keeping", &program, function))?));
                hooked.push(program);
            }};
        }
        let mut attach_all = || -> Result<(), String> {
            for syscall in present {
                let function = function(syscall.name);
                if syscall.at_entry {
                    hook!(FEntry, format!("fentry_{}", syscall.name), &function);
                }
                if syscall.at_exit {
                    hook!(FExit, format!("fexit_{}", syscall.name), &function);
                }
            }
            Ok(())
        };
        let attached = attach_all();
        // On a failure the links are dropped with `links`: none stays attached.
        for program in &hooked {
            programs.set_attached(program, attached.is_ok());
        }
        attached.map(|()| links)
    }

    fn failed<'a>(what: &'a str, program: &'a str, function: &'a str) -> impl Fn(ProgramError) -> String + 'a {
        move |e| format!("{what} {program} for {function}: {e:#}")
    }

    fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        ebpf.program_mut(name)
            .ok_or_else(|| format!("no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))
    }
}

impl LsmReport {
    fn not_used(why: &str) -> LsmReport {
        LsmReport { listed: lsm::listed(), active: false, hooks: Vec::new(), unavailable: Some(why.to_owned()) }
    }
}

/// The LSM tier: attach every hook, prove one runs, choose per resource.
mod lsm {
    use super::*;

    /// Why the LSM tier is not used where `bpf` is not an active LSM.
    pub const NOT_LISTED: &str = "bpf is not in the kernel's active LSM list: boot with lsm=...,bpf";

    /// Whether `bpf` is among the kernel's active LSMs; `None` where securityfs is not
    /// what is mounted there (what else is could say anything).
    pub fn listed() -> Option<bool> {
        use std::{io::Read, os::fd::AsRawFd};
        const SECURITYFS_MAGIC: i64 = 0x7363_6673;
        let mut file = std::fs::File::open("/sys/kernel/security/lsm").ok()?;
        // SAFETY: a zeroed statfs is a valid out-parameter for fstatfs.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and out-pointer.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 || fs.f_type as i64 != SECURITYFS_MAGIC {
            return None;
        }
        let mut list = String::new();
        file.read_to_string(&mut list).ok()?;
        Some(list.trim().split(',').any(|name| name == "bpf"))
    }

    /// Attaches every hook; without `every_hook`, stops at a refused `file_open`,
    /// without which the tier is not used (on arm64 before Linux 6.4, which has no BPF
    /// trampolines, verifying the other 33 only to be refused cost 7 s of every start
    /// under emulation).
    pub fn attach(
        ebpf: &mut Ebpf,
        programs: &mut Verifications,
        counters: &PerCpuArray<MapData, u64>,
        btf: Result<&aya::Btf, &String>,
        every_hook: bool,
    ) -> (Enforcement, LsmReport) {
        let btf = match btf {
            Ok(btf) => btf,
            Err(error) => return (Enforcement::FALLBACK, LsmReport::not_used(error)),
        };
        let mut hooks = Vec::new();
        for (program, hook, resource) in LSM_PROGRAMS {
            let started = std::time::Instant::now();
            let attached = programs
                .load(ebpf, program, |p| <&mut Lsm>::try_from(p)?.load(hook, btf))
                .map_err(|failure| failure.short())
                .and_then(|()| {
                    let prog: &mut Lsm =
                        ebpf.program_mut(program).and_then(|p| p.try_into().ok()).ok_or("no LSM program")?;
                    prog.attach().map(drop).map_err(|e| error_chain(&e))
                });
            match &attached {
                Ok(()) => programs.set_attached(program, true),
                Err(error) => programs.attach_failed(program, error.clone()),
            }
            match &attached {
                Ok(()) => log::debug!("lsm/{hook}: attached in {:?}", started.elapsed()),
                Err(error) => log::debug!("lsm/{hook}: not attached after {:?}: {error}", started.elapsed()),
            }
            let refused = attached.is_err();
            hooks.push(HookStatus { hook, resource, error: attached.err() });
            if refused && hook == "file_open" && !every_hook {
                break;
            }
        }
        let listed = listed();
        let active = self_test(counters);
        let file_open_ok = hooks.iter().any(|h| h.hook == "file_open" && h.error.is_none());
        let unavailable = if !file_open_ok {
            let why = hooks.iter().find(|h| h.hook == "file_open").and_then(|h| h.error.clone()).unwrap_or_default();
            // ENOTSUPP from the attach: the programs loaded, but this kernel cannot call
            // them from its functions (BPF trampolines; arm64 has them from Linux 6.4).
            let hint = if why.contains("os error 524") {
                format!(": this kernel has no BPF trampolines on {}", std::env::consts::ARCH)
            } else {
                String::new()
            };
            Some(format!("the kernel refused BPF LSM programs ({why}){hint}"))
        } else if !active {
            Some(match listed {
                Some(false) => NOT_LISTED.to_owned(),
                _ => "attached LSM programs do not run (is bpf in the kernel's lsm= list?)".to_owned(),
            })
        } else {
            None
        };
        if unavailable.is_some() {
            // Inert or refused: unload what did attach.
            for (program, _, _) in LSM_PROGRAMS {
                if let Some(prog) = ebpf.program_mut(program).and_then(|p| <&mut Lsm>::try_from(p).ok()) {
                    let _ = prog.unload();
                }
                programs.set_attached(program, false);
            }
            return (Enforcement::FALLBACK, LsmReport { listed, active, hooks, unavailable });
        }
        let all = |resource: Resource| hooks.iter().filter(|h| h.resource == resource).all(|h| h.error.is_none());
        let enforcement = Enforcement {
            files: if all(Resource::Files) { Tier::Lsm } else { Tier::Tracepoint },
            exec: if all(Resource::Exec) { Tier::Lsm } else { Tier::Tracepoint },
            network: if all(Resource::Network) { Tier::Lsm } else { Tier::Cgroup },
            self_protection: if all(Resource::SelfProtection) { Tier::Lsm } else { Tier::Seccomp },
        };
        (enforcement, LsmReport { listed, active, hooks, unavailable })
    }

    /// Opens a file and checks that the `file_open` program counted it: on a kernel
    /// without `bpf` in its LSM list, programs attach and never run.
    fn self_test(counters: &PerCpuArray<MapData, u64>) -> bool {
        let seen =
            || counters.get(&(Counter::LsmSelfTest as u32), 0).map(|values| values.iter().sum::<u64>()).unwrap_or(0);
        let before = seen();
        let _ = std::fs::File::open("/proc/self/stat");
        seen() > before
    }
}
