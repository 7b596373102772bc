//! A `run` session's own mount namespace, in which every cgroup filesystem is read-only.
//!
//! A root agent that can write a cgroup file walks out of its session: it moves itself
//! (or the monitor and its watchdog) to another cgroup through `cgroup.procs`, out of
//! the network hooks and the end-of-session kill, or kills the monitor and its watchdog
//! together with `cgroup.kill`, which sends no signal a guard could refuse. The BPF LSM
//! tier refuses such writes; tier 2 could only kill the writer after its write took
//! effect. Here the kernel refuses them before the effect (`EROFS`), on both tiers: the
//! session's first process makes its own mount namespace (a slave of the host's, so that
//! new host mounts still appear in it) and remounts each cgroup mount read-only before
//! its capabilities are cut, after which it holds no `CAP_SYS_ADMIN` to undo that, and
//! the guard refuses `mount` anyway.

use std::{ffi::CString, io};

/// The mount points of the cgroup filesystems (v1 and v2), to be made read-only.
pub struct ReadOnlyCgroups {
    mount_points: Vec<CString>,
}

impl ReadOnlyCgroups {
    /// The cgroup mounts of the monitor's mount namespace, which the session's copies.
    pub fn of_this_system() -> io::Result<ReadOnlyCgroups> {
        let mounts = std::fs::read_to_string("/proc/self/mounts")?;
        Ok(ReadOnlyCgroups { mount_points: cgroup_mount_points(&mounts) })
    }

    /// In the launcher's child, after it joined its cgroup and before its capabilities
    /// are cut. Async-signal-safe: system calls on strings made before the fork.
    pub fn apply(&self) -> io::Result<()> {
        let check = |ret: libc::c_int| if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls on NUL-terminated strings that outlive them.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()))?;
            for point in &self.mount_points {
                // A remount keeps no flag it is not given: the ones the mount has.
                let mut stat: libc::statvfs = std::mem::zeroed();
                check(libc::statvfs(point.as_ptr(), &mut stat))?;
                let kept = [
                    (libc::ST_NOSUID, libc::MS_NOSUID),
                    (libc::ST_NODEV, libc::MS_NODEV),
                    (libc::ST_NOEXEC, libc::MS_NOEXEC),
                    (libc::ST_NOATIME, libc::MS_NOATIME),
                    (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
                    (libc::ST_RELATIME, libc::MS_RELATIME),
                ]
                .iter()
                .filter(|(st, _)| stat.f_flag & st != 0)
                .fold(0, |flags, (_, ms)| flags | ms);
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | kept;
                check(libc::mount(null, point.as_ptr(), null, flags, std::ptr::null()))?;
            }
        }
        Ok(())
    }
}

/// The mount points of `cgroup` and `cgroup2` filesystems in a `/proc/mounts` text
/// (octal escapes, `\040` for a space, undone).
fn cgroup_mount_points(mounts: &str) -> Vec<CString> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            matches!(fstype, "cgroup" | "cgroup2").then(|| CString::new(unescape(target)).ok()).flatten()
        })
        .collect()
}

fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |value, d| value.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cgroup_mount_is_found() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
            tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
            cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n\
            cgroup /my\\040cgroups cgroup rw,pids 0 0\n";
        let points: Vec<_> = cgroup_mount_points(mounts).into_iter().map(|p| p.into_string().unwrap()).collect();
        assert_eq!(points, ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu,cpuacct", "/my cgroups"]);
    }
}
