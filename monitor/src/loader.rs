//! Loads the embedded eBPF object with this kernel's configuration and attaches every
//! program. What a kernel lacks is a typed error naming the hook and the fix.

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, ProgramError, RawTracePoint},
};
use monitor_common::{config::KERNEL_CONFIG, maps};

use crate::{
    btf::{Btf, BtfError},
    kernel_config::kernel_config,
    rule_maps::RuleMaps,
    session_map::SessionMap,
};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// (program name in the object, raw tracepoint it attaches to).
const RAW_TRACEPOINTS: [(&str, &str); 5] = [
    // Membership first: a fork must copy membership before the child can act.
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("sched_process_exec", "sched_process_exec"),
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
];

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
    for (program, attach) in CGROUP_PROGRAMS {
        cgroup_program(ebpf, program, attach)?
            .attach(cgroup, CgroupAttachMode::Single)
            .map_err(|source| LoadError::Cgroup { program, attach, source })?;
    }
    let (program, attach) = SOCK_CREATE;
    sock_create_program(ebpf)?
        .attach(cgroup, CgroupAttachMode::Single)
        .map_err(|source| LoadError::Cgroup { program, attach, source })?;
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
    #[error("{program} ({attach}) failed: {source:#}; network policy needs cgroup v2 and cgroup socket-address programs (Linux >= 4.17, pid lookup >= 6.1)")]
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
    #[error("loading {program} (raw tracepoint {tracepoint}) failed: {source:#}; the kernel needs CONFIG_BPF_EVENTS and raw tracepoint support (Linux >= 4.17)")]
    Attach { program: &'static str, tracepoint: &'static str, source: ProgramError },
}

/// The loaded programs and the maps userspace works with. Dropping it detaches every
/// program and frees every map (nothing is pinned).
pub struct Probes {
    pub ebpf: Ebpf,
    pub sessions: SessionMap,
    pub events: RingBuf<MapData>,
    pub decisions: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub rules: RuleMaps,
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer. Failure only matters on old kernels,
    // where loading then fails with its own error.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

impl Probes {
    pub fn load() -> Result<Probes, LoadError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LoadError::NotRoot);
        }
        raise_memlock_limit();
        let btf = Btf::from_sys_fs()?;
        let config = kernel_config(&btf)?;
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(KERNEL_CONFIG, &config, true)
            .load(EBPF_OBJECT)?;
        for (program, tracepoint) in RAW_TRACEPOINTS {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(program)
                .ok_or(LoadError::MissingProgram(program))?
                .try_into()
                .map_err(|source| LoadError::Attach { program, tracepoint, source })?;
            prog.load().map_err(|source| LoadError::Attach { program, tracepoint, source })?;
            prog.attach(tracepoint).map_err(|source| LoadError::Attach { program, tracepoint, source })?;
        }
        let sessions = ebpf.take_map(maps::SESSIONS).ok_or(LoadError::MissingMap(maps::SESSIONS))?;
        let sessions = SessionMap::new(sessions).map_err(|source| LoadError::Map { name: maps::SESSIONS, source })?;
        let events = ebpf.take_map(maps::EVENTS).ok_or(LoadError::MissingMap(maps::EVENTS))?;
        let events = RingBuf::try_from(events).map_err(|source| LoadError::Map { name: maps::EVENTS, source })?;
        let counters = ebpf.take_map(maps::COUNTERS).ok_or(LoadError::MissingMap(maps::COUNTERS))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|source| LoadError::Map { name: maps::COUNTERS, source })?;
        let decisions = ebpf.take_map(maps::DECISIONS).ok_or(LoadError::MissingMap(maps::DECISIONS))?;
        let decisions =
            RingBuf::try_from(decisions).map_err(|source| LoadError::Map { name: maps::DECISIONS, source })?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap(name));
        let (files, exec, names) = (take(maps::FILE_RULES)?, take(maps::EXEC_RULES)?, take(maps::NAME_RULES)?);
        let net = take(maps::NET_RULES)?;
        let principals = take(maps::PRINCIPALS)?;
        let principal_groups = take(maps::PRINCIPAL_GROUP_SET)?;
        let denied_inodes = take(maps::DENIED_INODES)?;
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
        };
        for (program, attach) in CGROUP_PROGRAMS {
            cgroup_program(&mut ebpf, program, attach)?
                .load()
                .map_err(|source| LoadError::Cgroup { program, attach, source })?;
        }
        let (program, attach) = SOCK_CREATE;
        sock_create_program(&mut ebpf)?.load().map_err(|source| LoadError::Cgroup { program, attach, source })?;
        Ok(Probes { ebpf, sessions, events, decisions, counters, rules })
    }
}
