//! The kernel-enforced envelope of `run` sessions (seccomp, on both tiers): no child born
//! into another cgroup than the session's, no kernel module loaded, no kexec or reboot.

use monitor_tests::{TempDir, policy_file, privileged, run_session, run_session_with};

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
    let threads =
        run_session(&["sh", "-c", &format!("{} threads /etc/hostname && echo forked", env!("CARGO_BIN_EXE_probe"))]);
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

/// The session's capability bounding set (`CapBnd` of /proc/self/status, hex).
fn bounding_set(status: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap_or_else(|| panic!("no CapBnd: {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// The capabilities container runtimes give (Docker's default), by number: CHOWN,
/// DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
/// NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const CONTAINER_DEFAULT: u64 = 1 << 0
    | 1 << 1
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 7
    | 1 << 8
    | 1 << 10
    | 1 << 13
    | 1 << 18
    | 1 << 27
    | 1 << 29
    | 1 << 31;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_NICE: u64 = 1 << 23;

#[test]
fn a_root_agent_keeps_only_the_container_capabilities_and_gains_none() {
    if !privileged() {
        return;
    }
    let session = run_session(&["cat", "/proc/self/status"]);
    // Where the LSM tier judges ptrace, the session keeps CAP_SYS_PTRACE, so that the
    // capability module does not refuse access before that hook sees (and reports) it.
    let ptrace = if session.tiers().self_protection == "lsm" { CAP_SYS_PTRACE } else { 0 };
    assert_eq!(bounding_set(&session.stdout), CONTAINER_DEFAULT | ptrace, "{}", session.stdout);
    assert!(session.stdout.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{}", session.stdout);
    // A profile chooses otherwise.
    let dir = TempDir::new("envelope-caps");
    let policy = policy_file(
        &dir,
        "version: 1\nprofiles:\n  - name: t\n    envelope:\n      capabilities: {add: [CAP_SYS_NICE, CAP_SYS_PTRACE], drop: [net_raw]}\n      no_new_privs: false\n",
    );
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["cat", "/proc/self/status"]);
    // CAP_SYS_PTRACE never without the LSM tier's ptrace hook: with it the session could
    // reopen the monitor's descriptors.
    assert_eq!(
        bounding_set(&session.stdout),
        CONTAINER_DEFAULT & !CAP_NET_RAW | CAP_SYS_NICE | ptrace,
        "{}",
        session.stdout
    );
    assert!(session.stdout.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "0"])), "{}", session.stdout);
}

/// Every thread of the monitor, by its own id: ptrace and process_vm_readv are refused
/// (LSM: the ptrace hook; tier 2: the kernel, as the monitor is non-dumpable and the
/// session has no CAP_SYS_PTRACE). Another process's limits cannot be changed.
#[test]
fn no_monitor_thread_can_be_traced_and_no_other_process_limited() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("envelope-threads");
    // Refused attempts go on to the next one (on the LSM tier `kill` would end the first).
    let policy = policy_file(&dir, "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n");
    let script = r#"sleep 1
for t in /proc/$PPID/task/*; do t=${t##*/}; "$0" try ptrace-seize $t -- vm-read $t 1000; done
sleep 5 & "$0" try prlimit $!; kill $!"#;
    let session =
        run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", script, env!("CARGO_BIN_EXE_probe")]);
    let lines: Vec<&str> = session.stdout.lines().filter(|l| *l != "done").collect();
    let threads = lines.iter().filter(|l| l.starts_with("ptrace-seize")).count();
    assert!(threads >= 2, "the monitor has several threads: {}", session.dump());
    for line in &lines {
        assert!(line.ends_with(&format!(" errno={}", libc::EPERM)), "{line}: {}", session.dump());
    }
    assert_eq!(lines.len(), 2 * threads + 1, "{}", session.dump());
}

/// Nothing typed into the terminal the agent was started from (TIOCSTI would run it in
/// the user's shell once the session ends): refused, whatever stdin is.
#[test]
fn no_input_is_typed_into_the_terminal() {
    if !privileged() {
        return;
    }
    let session = run_session(&[env!("CARGO_BIN_EXE_probe"), "try", "tiocsti"]);
    assert!(session.stdout.contains(&format!("tiocsti errno={}", libc::EPERM)), "{}", session.dump());
}
