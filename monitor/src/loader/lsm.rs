//! The LSM tier: attach every hook, prove one runs, choose a tier per resource.

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::Lsm,
};
use monitor_common::maps::Counter;

use crate::{
    enforcement::{Enforcement, Tier},
    verifier::{Verifications, error_chain},
};

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

impl LsmReport {
    pub fn not_used(why: &str) -> LsmReport {
        LsmReport { listed: listed(), active: false, hooks: Vec::new(), unavailable: Some(why.to_owned()) }
    }
}

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
    let seen = || counters.get(&(Counter::LsmSelfTest as u32), 0).map(|values| values.iter().sum::<u64>()).unwrap_or(0);
    let before = seen();
    let _ = std::fs::File::open("/proc/self/stat");
    seen() > before
}
