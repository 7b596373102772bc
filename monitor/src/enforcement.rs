//! Which tier enforces each resource on this kernel, as chosen at load time and
//! reported by `agent-monitor doctor` and in every `session.start`.

use serde::Serialize;

/// How one resource is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// BPF LSM hooks refuse the operation before it happens (tier 1).
    Lsm,
    /// Syscall and scheduler tracepoints kill the violator before it returns to user
    /// space (tier 2, files and exec).
    Tracepoint,
    /// cgroup socket hooks on the session's cgroup refuse it (tier 2, network).
    Cgroup,
    /// A seccomp filter on the session refuses it, without reporting it (tier 2,
    /// self-protection).
    Seccomp,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Lsm => "lsm",
            Tier::Tracepoint => "tracepoint",
            Tier::Cgroup => "cgroup",
            Tier::Seccomp => "seccomp",
        }
    }
}

/// The tier of each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    /// Opens (and, with BPF LSM, unlink, rename, truncate, create, link, chmod, chown).
    pub files: Tier,
    pub exec: Tier,
    /// connect, UDP send and bind.
    pub network: Tier,
    /// Signals, ptrace, `bpf()` and mounts aimed at the monitor; its own files.
    pub self_protection: Tier,
}

impl Enforcement {
    /// Tier 2 everywhere.
    pub const FALLBACK: Enforcement = Enforcement {
        files: Tier::Tracepoint,
        exec: Tier::Tracepoint,
        network: Tier::Cgroup,
        self_protection: Tier::Seccomp,
    };

    /// Bits of `monitor_common::maps::lsm_tier` for the resources the LSM enforces.
    pub fn lsm_bits(&self) -> u32 {
        use monitor_common::maps::lsm_tier;
        let mut bits = 0;
        if self.files == Tier::Lsm {
            bits |= lsm_tier::FILES;
        }
        if self.exec == Tier::Lsm {
            bits |= lsm_tier::EXEC;
        }
        if self.network == Tier::Lsm {
            bits |= lsm_tier::NET;
        }
        bits
    }

    /// Whether a syscall tracepoint is needed: opens or connects judged by tier 2.
    pub fn needs_syscall_tracepoints(&self) -> bool {
        self.files != Tier::Lsm || self.network != Tier::Lsm
    }
}

/// Whether BPF LSM is to be used where the kernel allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LsmChoice {
    /// Use it where it works (the default). Where securityfs shows that `bpf` is not an
    /// active LSM, no LSM program is loaded: they would attach and never run.
    #[default]
    Auto,
    /// As `Auto`, but every hook is loaded and attached even where `bpf` is not listed,
    /// to report each one (`doctor`).
    Probe,
    /// Do not use it: tier 2 everywhere (`--no-lsm`, to compare the tiers).
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::maps::lsm_tier;

    #[test]
    fn fallback_needs_tracepoints_and_sets_no_lsm_bit() {
        assert_eq!(Enforcement::FALLBACK.lsm_bits(), 0);
        assert!(Enforcement::FALLBACK.needs_syscall_tracepoints());
    }

    #[test]
    fn full_lsm_drops_the_syscall_tracepoints() {
        let all = Enforcement { files: Tier::Lsm, exec: Tier::Lsm, network: Tier::Lsm, self_protection: Tier::Lsm };
        assert_eq!(all.lsm_bits(), lsm_tier::FILES | lsm_tier::EXEC | lsm_tier::NET);
        assert!(!all.needs_syscall_tracepoints());
        let files_only = Enforcement { files: Tier::Lsm, ..Enforcement::FALLBACK };
        assert_eq!(files_only.lsm_bits(), lsm_tier::FILES);
        assert!(files_only.needs_syscall_tracepoints(), "connects still need sys_enter/sys_exit");
    }
}
