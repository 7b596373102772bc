//! The kernel-enforced envelope of `run` sessions (seccomp, on both tiers): no child born
//! into another cgroup than the session's, no kernel module loaded, no kexec or reboot.

use monitor_tests::{privileged, run_session};

#[test]
fn a_child_cannot_be_born_outside_the_sessions_cgroup() {
    if !privileged() {
        return;
    }
    // clone3(CLONE_INTO_CGROUP) with the cgroup root: ENOSYS, so that C libraries use
    // clone, which cannot choose a cgroup. Threads and processes still start.
    let session = run_session(&[env!("CARGO_BIN_EXE_probe"), "try", "clone3-into", &monitor_tests::cgroup2_mount()]);
    assert!(session.stdout.contains("clone3-into errno=38"), "{}", session.dump());
    assert_eq!(session.of_type("process.start").len(), 0, "no child was born:\n{}", session.dump());
    // glibc's pthread_create tries clone3 first, then clone.
    let threads = run_session(&["sh", "-c", &format!("{} threads /etc/hostname && echo forked", env!("CARGO_BIN_EXE_probe"))]);
    assert!(threads.stdout.contains("tid=") && threads.stdout.contains("forked"), "{}", threads.dump());
}

#[test]
fn kernel_modules_cannot_be_loaded() {
    if !privileged() {
        return;
    }
    let session = run_session(&[env!("CARGO_BIN_EXE_probe"), "try", "finit-module"]);
    assert!(session.stdout.contains("finit-module errno=1"), "{}", session.dump());
}
