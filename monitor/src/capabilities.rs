//! The capability envelope of a `run` session: what root inside the session can still
//! do, whatever the monitor's hooks see.
//!
//! The launcher drops every capability the profile does not keep from the session's
//! bounding set (and its inheritable and ambient sets) before the agent starts, and
//! sets `no_new_privs`: no program the agent runs, set-uid or with file capabilities,
//! gets a dropped capability back. The default set is the one container runtimes give
//! a container (Docker's `DefaultCapabilities`, moby `oci/caps/defaults.go`), plus
//! `CAP_SYS_PTRACE` where the BPF LSM tier refuses every ptrace-class access to a
//! process outside the session (enforce mode; without
//! it the kernel's capability module would refuse access to processes holding more
//! capabilities before the BPF hook sees it, and the refusal would go unreported). It
//! is enough
//! for package builds, git, language runtimes and servers on unprivileged ports,
//! without `CAP_SYS_ADMIN` (mounts, namespaces, `bpf()`), `CAP_SYS_PTRACE` (other
//! users' and non-dumpable processes), `CAP_SYS_MODULE`, `CAP_SYS_RAWIO`,
//! `CAP_SYS_NICE` (real-time scheduling that could starve the monitor),
//! `CAP_SYS_RESOURCE`, `CAP_DAC_READ_SEARCH` (`open_by_handle_at`), `CAP_NET_ADMIN`,
//! `CAP_BPF` or `CAP_PERFMON`.

/// Capability names by number (include/uapi/linux/capability.h), 0 to 40.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What a container gets by default (moby `oci/caps/defaults.go`).
pub const CONTAINER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The number of `name` (`CAP_SYS_PTRACE`, `cap_sys_ptrace` or `sys_ptrace`).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// A set of capabilities, one bit per number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySet(pub u64);

impl CapabilitySet {
    pub fn container_default() -> CapabilitySet {
        CapabilitySet::of(CONTAINER_DEFAULT.iter().filter_map(|n| number(n)))
    }

    pub fn of(numbers: impl IntoIterator<Item = u32>) -> CapabilitySet {
        CapabilitySet(numbers.into_iter().fold(0, |set, n| set | 1 << n))
    }

    pub fn contains(self, number: u32) -> bool {
        number < 64 && self.0 & (1 << number) != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        NAMES.iter().enumerate().filter(|(i, _)| self.contains(*i as u32)).map(|(_, n)| *n).collect()
    }
}

/// A profile's `envelope:`: changes to the default set, and `no_new_privs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityChoice {
    pub add: CapabilitySet,
    pub drop: CapabilitySet,
    pub no_new_privs: bool,
}

impl Default for CapabilityChoice {
    fn default() -> CapabilityChoice {
        CapabilityChoice { add: CapabilitySet(0), drop: CapabilitySet(0), no_new_privs: true }
    }
}

impl CapabilityChoice {
    /// The envelope for a session where `ptrace_hooked` says whether the BPF LSM tier's
    /// ptrace hook runs (it always refuses access to the monitor and its watchdog), in
    /// `enforce` mode or not (in audit mode it only reports access to other processes:
    /// `CAP_SYS_PTRACE` is then not in the default). Without that hook the session never
    /// gets `CAP_SYS_PTRACE`, whatever the profile adds: with it, it could reopen the
    /// monitor's descriptors (`/proc/PID/fd`) and speak for it to its watchdog, which
    /// only the kernel's ptrace check keeps it from.
    pub fn envelope(&self, ptrace_hooked: bool, enforce: bool) -> CapabilityEnvelope {
        let mut keep = CapabilitySet::container_default().0;
        if ptrace_hooked && enforce {
            keep |= 1 << CAP_SYS_PTRACE;
        }
        keep = keep & !self.drop.0 | self.add.0;
        if !ptrace_hooked {
            keep &= !(1 << CAP_SYS_PTRACE);
        }
        CapabilityEnvelope { keep: CapabilitySet(keep), no_new_privs: self.no_new_privs }
    }
}

const CAP_SYS_PTRACE: u32 = 19;

/// Every capability this table names.
pub const ALL: CapabilitySet = CapabilitySet(u64::MAX >> (64 - NAMES.len()));

/// The envelope, ready for use between fork and exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityEnvelope {
    pub keep: CapabilitySet,
    pub no_new_privs: bool,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl CapabilityEnvelope {
    /// Applies the envelope to the calling process. Async-signal-safe (system calls
    /// only, no allocation): meant for the launcher's child between fork and exec.
    /// Capabilities this kernel does not know (`EINVAL`) are skipped.
    pub fn apply(&self) -> std::io::Result<()> {
        let last_error = || std::io::Error::last_os_error();
        for number in 0..64u32 {
            if self.keep.contains(number) {
                continue;
            }
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, number as libc::c_ulong, 0, 0, 0) } < 0 {
                let error = last_error();
                if error.raw_os_error() != Some(libc::EINVAL) {
                    return Err(error);
                }
            }
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) } < 0 {
            return Err(last_error());
        }
        // Inheritable capabilities would come back at an exec by root: keep only kept ones.
        let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
        let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
        // SAFETY: capget/capset with a v3 header and two data words, as the ABI wants.
        unsafe {
            if libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) < 0 {
                return Err(last_error());
            }
            data[0].inheritable &= self.keep.0 as u32;
            data[1].inheritable &= (self.keep.0 >> 32) as u32;
            if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) < 0 {
                return Err(last_error());
            }
        }
        // SAFETY: prctl with integer arguments.
        if self.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(last_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_kernels_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("cap_sys_ptrace"), Some(19));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
        // libc's constants, where it has them.
        assert_eq!(number("CAP_BPF"), Some(39));
        assert_eq!(number("CAP_PERFMON"), Some(38));
    }

    #[test]
    fn drops_come_first_and_the_ptrace_hook_keeps_ptrace() {
        let choice = |add: &[&str], drop: &[&str]| CapabilityChoice {
            add: CapabilitySet::of(add.iter().map(|n| number(n).unwrap())),
            drop: CapabilitySet::of(drop.iter().map(|n| number(n).unwrap())),
            no_new_privs: true,
        };
        let ptrace = 1 << CAP_SYS_PTRACE;
        let default = CapabilitySet::container_default().0;
        assert_eq!(CapabilityChoice::default().envelope(false, true).keep.0, default);
        assert_eq!(CapabilityChoice::default().envelope(true, true).keep.0, default | ptrace);
        assert_eq!(CapabilityChoice::default().envelope(true, false).keep.0, default, "audit mode");
        assert_eq!(choice(&[], &["CAP_SYS_PTRACE"]).envelope(true, true).keep.0, default, "a drop holds on every tier");
        assert_eq!(choice(&["CAP_SYS_PTRACE"], &[]).envelope(true, false).keep.0, default | ptrace);
        assert_eq!(
            choice(&["CAP_SYS_PTRACE"], &[]).envelope(false, true).keep.0,
            default,
            "never without the ptrace hook"
        );
        let one = CapabilityChoice { drop: ALL, ..choice(&["CAP_CHOWN"], &[]) };
        assert_eq!(one.envelope(true, true).keep.names(), ["CAP_CHOWN"]);
    }

    #[test]
    fn the_default_is_the_container_runtimes() {
        let set = CapabilitySet::container_default();
        assert_eq!(set.names().len(), 14);
        for dropped in
            ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_DAC_READ_SEARCH", "CAP_BPF"]
        {
            assert!(!set.contains(number(dropped).unwrap()), "{dropped}");
        }
        assert!(set.contains(number("CAP_NET_BIND_SERVICE").unwrap()));
    }
}
