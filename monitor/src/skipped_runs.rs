//! How often the kernel skipped one of the monitor's programs.
//!
//! The kernel does not run a BPF program where it would nest inside another on the same
//! CPU (syscall tracepoint programs share one guard per CPU with every kprobe and
//! tracepoint program; other kinds guard against themselves): the hook is passed over,
//! and only counted, per program, as `recursion_misses` (Linux >= 5.12, in the
//! program's fdinfo). A skipped run saw nothing, reported nothing and enforced nothing,
//! so each one is reported as loss (`loss.programs_skipped`). The count covers every
//! process the hook fired for, sessions or not: it says that something may have been
//! missed, not what.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::Ebpf;

/// Second descriptors of every loaded program, read when loss is reported.
pub struct SkippedRuns {
    programs: Vec<OwnedFd>,
}

impl SkippedRuns {
    pub fn of(ebpf: &Ebpf) -> SkippedRuns {
        let programs =
            ebpf.programs().filter_map(|(_, program)| program.fd().ok()?.as_fd().try_clone_to_owned().ok()).collect();
        SkippedRuns { programs }
    }

    /// Runs skipped so far, summed over the programs (0 where the kernel does not count).
    pub fn total(&self) -> u64 {
        self.programs
            .iter()
            .filter_map(|fd| std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok())
            .map(|fdinfo| recursion_misses(&fdinfo))
            .sum()
    }
}

/// The `recursion_misses:` line of a program's fdinfo (absent before Linux 5.12: 0).
fn recursion_misses(fdinfo: &str) -> u64 {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("recursion_misses:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_count_from_a_programs_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2081\nprog_type:\t5\nprog_jited:\t1\n\
                      prog_tag:\t4cbd3d1c4f5e9b2a\nmemlock:\t4096\nprog_id:\t77\nrun_time_ns:\t0\nrun_cnt:\t0\n\
                      recursion_misses:\t12\nverified_insns:\t301\n";
        assert_eq!(recursion_misses(fdinfo), 12);
    }

    #[test]
    fn an_older_kernel_without_the_count_reports_none() {
        assert_eq!(recursion_misses("prog_type:\t5\nrun_cnt:\t0\n"), 0);
        assert_eq!(recursion_misses("recursion_misses:\tgarbage\n"), 0);
    }
}
