//! Loads the embedded eBPF object with this kernel's configuration and attaches every
//! program. What a kernel lacks is a typed error naming the hook and the fix.

mod lsm;
mod map;
mod network;
mod syscalls;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{Program, ProgramError, RawTracePoint},
};
use monitor_common::{
    config::{KERNEL_CONFIG, NO_SYSCALL},
    maps,
    policy::ProtectedInode,
};

use self::syscalls::watched_syscalls;
pub use self::{
    lsm::{LSM_PROGRAMS, LsmReport, Resource},
    network::{attach_network, attach_network_everywhere},
    syscalls::{SyscallHooks, SyscallLinks},
};
use crate::{
    btf::{Btf, BtfError},
    enforcement::{Enforcement, LsmChoice, Tier},
    kernel_config::kernel_config,
    rule_maps::RuleMaps,
    session_map::SessionMap,
    skipped_runs::SkippedRuns,
    verifier::{ProgramFailure, Verifications},
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
    #[error("reading the eBPF programs' log (--ebpf-log): {0:#}")]
    Log(anyhow::Error),
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
    /// The programs' log, with `--ebpf-log`: to be read with [`Probes::read_ebpf_log`].
    ebpf_log: Option<crate::ebpf_log::Reader>,
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer. Failure only matters on old kernels,
    // where loading then fails with its own error.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

impl Probes {
    /// Loads and attaches for the tiers `choice` allows; `ebpf_log`: the programs' own
    /// diagnostics at that level (`None`: off, at no cost).
    pub fn load(choice: LsmChoice, ebpf_log: Option<log::Level>) -> Result<Probes, LoadError> {
        Probes::load_recording(choice, ebpf_log, &mut Verifications::default())
    }

    /// [`Probes::load`], recording each program's verification in `programs` (kept
    /// when loading fails, for `doctor`).
    pub fn load_recording(
        choice: LsmChoice,
        ebpf_log: Option<log::Level>,
        programs: &mut Verifications,
    ) -> Result<Probes, LoadError> {
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
        crate::ebpf_log::configure(&mut loader, ebpf_log);
        let mut ebpf = loader.btf(None).override_global(KERNEL_CONFIG, &config, true).load(EBPF_OBJECT)?;
        let ebpf_log =
            ebpf_log.map(|_| crate::ebpf_log::Reader::take(&mut ebpf)).transpose().map_err(LoadError::Log)?;
        log::debug!("object loaded (maps created) at {:?}", started.elapsed());
        for (program, tracepoint) in RAW_TRACEPOINTS {
            attach_raw_tracepoint(&mut ebpf, programs, program, tracepoint)?;
        }
        log::debug!("process tracepoints attached at {:?}", started.elapsed());
        let counters = map::take(&mut ebpf, maps::COUNTERS)?;
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
        let mut tiers: Array<&mut MapData, u32> = map::borrow_mut(&mut ebpf, maps::LSM_TIERS)?;
        tiers.set(0, enforcement.lsm_bits(), 0).map_err(|source| LoadError::Map { name: maps::LSM_TIERS, source })?;
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
                    .and_then(|btf| syscalls::attach_functions(&mut ebpf, programs, btf, &present))
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
                    syscalls::attach_tracepoints(&mut ebpf, programs, "syscall_enter", &entered, &mut syscall_links)?;
                    syscalls::attach_tracepoints(&mut ebpf, programs, "syscall_exit", &left, &mut syscall_links)?;
                    SyscallHooks::Tracepoints
                }
            };
            log::debug!("syscall hooks ({}) attached at {:?}", syscall_hooks.name(), started.elapsed());
        }
        let sessions = ebpf.take_map(maps::SESSIONS).ok_or(LoadError::MissingMap(maps::SESSIONS))?;
        // Borrowed, not taken: programs loaded later refer to the map by its descriptor.
        let member_bits = ebpf.map(maps::MEMBER_BITS).ok_or(LoadError::MissingMap(maps::MEMBER_BITS))?;
        let sessions = SessionMap::new(sessions, member_bits)?;
        let events = map::take(&mut ebpf, maps::EVENTS)?;
        let reader_state = map::take(&mut ebpf, maps::READER_STATE)?;
        let decisions = map::take(&mut ebpf, maps::DECISIONS)?;
        let protected = map::take(&mut ebpf, maps::PROTECTED_INODES)?;
        map::record_loaders(&mut ebpf)?;
        let rules = map::rule_maps(&mut ebpf)?;
        if enforcement.network == Tier::Cgroup {
            network::load(&mut ebpf, programs)?;
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
            ebpf_log,
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
            let function = syscall.map(syscalls::function);
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

    /// With `--ebpf-log`, starts forwarding what the programs log to stderr. Called once
    /// the load is done, outside `tracefs::with_tracefs` (see [`crate::ebpf_log::Reader::spawn`]).
    pub fn read_ebpf_log(&mut self) -> std::io::Result<()> {
        let Some(reader) = self.ebpf_log.take() else { return Ok(()) };
        // Refused by the verifier (not by a kernel without BPF LSM): maybe for the size
        // the log statements add.
        let refused: Vec<&str> = self
            .lsm
            .hooks
            .iter()
            .filter(|hook| hook.error.as_deref().is_some_and(|e| e.contains("the verifier said")))
            .map(|hook| hook.hook)
            .collect();
        if !refused.is_empty() {
            log::warn!(
                "--ebpf-log: the verifier refused the LSM hooks {refused:?}, which are verified with their log statements (several times the instructions): without --ebpf-log they may load (agent-monitor doctor)"
            );
        }
        reader.spawn()
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
