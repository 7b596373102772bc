//! When a guest has hung for good: a sign read off its console, so that a hung guest is
//! stopped in minutes instead of at the VM's deadline (30 minutes), and booted again once.
//!
//! Under qemu's software emulation both vCPUs of a guest have stayed stuck in the kernel
//! for good while monitors attached or detached their programs (docs/LIMITS.md: "Under
//! qemu's software emulation"): the kernel's soft-lockup detector then reports each CPU
//! every 20-30 s, with a growing "stuck for Ns". A CPU that has not scheduled for a
//! minute is not coming back in these tests (their longest program load takes seconds).

use std::time::Duration;

/// A CPU stuck this long in the kernel means the guest has hung.
pub const STUCK: Duration = Duration::from_secs(60);

/// A console silent this long means the guest has hung: libtest reports a test running
/// over 60 s, and the guest's own watchdog (watchdog.sh) kills a test binary long before.
pub const SILENT: Duration = Duration::from_secs(600);

/// How long a hung guest is left running after the sign, for the kernel to print the
/// stacks of the stuck CPUs into the log.
pub const GRACE: Duration = Duration::from_secs(15);

/// The sign of a hung guest in one console line, if it is one: the kernel's
/// `watchdog: BUG: soft lockup - CPU#1 stuck for 67s! [agent-monitor:412]` with a time
/// of at least [`STUCK`].
pub fn stuck_cpu(line: &str) -> Option<String> {
    let at = line.find("soft lockup - CPU#")?;
    let seconds: u64 = line[at..].split("stuck for ").nth(1)?.split('s').next()?.parse().ok()?;
    (Duration::from_secs(seconds) >= STUCK).then(|| line[at..].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::stuck_cpu;

    #[test]
    fn a_cpu_stuck_for_a_minute_is_a_hang() {
        let line = "[  412.381202] watchdog: BUG: soft lockup - CPU#1 stuck for 67s! [agent-monitor:412]";
        assert_eq!(stuck_cpu(line).as_deref(), Some("soft lockup - CPU#1 stuck for 67s! [agent-monitor:412]"));
    }

    #[test]
    fn a_short_lockup_and_other_lines_are_not() {
        assert_eq!(stuck_cpu("[ 30.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1:12]"), None);
        assert_eq!(stuck_cpu("test soft lockup ... ok"), None);
        assert_eq!(stuck_cpu("watchdog: BUG: soft lockup - CPU#0 stuck for many"), None);
    }
}
