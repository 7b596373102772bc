//! Tier-2 enforcement: a session may touch only what its profile allows. A violating
//! open or exec is killed in the kernel before the syscall returns to user space.
//! Every policy here only concerns processes of the test's own sessions.

use std::time::{Duration, Instant};

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
const SECRET: &str = "TOP-SECRET-CONTENT-7f3a";

/// A directory tree with a secret and a public file: `secret/key`, `public/readme`.
fn tree(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.path().join("secret/inner")).unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("secret/key"), SECRET).unwrap();
    std::fs::write(dir.path().join("secret/inner/allowed"), "inner-allowed").unwrap();
    std::fs::write(dir.path().join("public/readme"), "public-content").unwrap();
    dir
}

fn run(policy: &std::path::Path, command: &[&str]) -> Session {
    run_session_with(&["--policy", policy.to_str().unwrap()], command)
}

fn profile(dir: &TempDir, body: &str) -> std::path::PathBuf {
    policy_file(dir, &format!("version: 1\nprofiles:\n  - name: test\n{body}"))
}

/// A tree whose `secret` directory is denied to a profile that may read everything else:
/// (the tree, the policy file, the secret's path).
fn secret_denied(tag: &str) -> (TempDir, std::path::PathBuf, String) {
    let dir = tree(tag);
    let root = dir.path().display().to_string();
    let policy = profile(&dir, &format!("    files:\n      read: [/]\n      deny: [{root}/secret]\n"));
    (dir, policy, format!("{root}/secret/key"))
}

fn exit_signal(session: &Session, pid: u64) -> Option<i64> {
    session
        .of_type("process.exit")
        .into_iter()
        .find(|e| e["process"]["pid"] == pid)
        .and_then(|e| e["exit"]["signal"].as_i64())
}

#[test]
fn reading_a_denied_file_kills_the_agent_before_it_reads_a_byte() {
    if !privileged() {
        return;
    }
    let (dir, policy, secret) = secret_denied("deny-read");
    let root = dir.path().display();
    let session = run(&policy, &[PROBE, "cat", &secret]);
    assert!(!session.stdout.contains(SECRET), "the secret leaked: {}", session.dump());
    assert_eq!(session.exit_code(), 128 + 9, "{}", session.dump());
    let violations = session.violations();
    assert_eq!(violations.len(), 1, "{}", session.dump());
    let v = violations[0];
    assert_eq!(v["type"], "file.open");
    assert_eq!(v["file"]["path"], secret.as_str());
    assert_eq!(v["decision"]["action"], "kill");
    assert_eq!(v["decision"]["rule"], format!("files.deny[0] {root}/secret"));
    assert_eq!(v["decision"]["enforced_by"], "kernel:sys_exit");
    assert_eq!(v["decision"]["profile"], "test");
    assert_eq!(exit_signal(&session, session.root_pid()), Some(9));
}

/// The kill before the open returns holds every time, not only once: violators in a
/// row, each a new process of the same session, and none gets a byte out. (A rare miss
/// would show here long before it shows in the single-violator test.)
#[test]
fn every_one_of_many_violators_in_a_row_is_killed_before_it_reads() {
    if !privileged() {
        return;
    }
    const VIOLATORS: usize = 200;
    let (_dir, policy, secret) = secret_denied("deny-many");
    let script =
        format!("i=0; while [ $i -lt {VIOLATORS} ]; do {PROBE} cat {secret}; echo \"status=$?\"; i=$((i + 1)); done");
    let session = run(&policy, &["sh", "-c", &script]);
    assert!(!session.stdout.contains(SECRET), "the secret leaked: {}", session.dump());
    let killed = session.stdout.lines().filter(|line| *line == "status=137").count();
    assert_eq!(killed, VIOLATORS, "violators not killed by SIGKILL: {}", session.dump());
    assert_eq!(session.exit_code(), 0, "{}", session.dump());
    let violations = session.violations();
    assert_eq!(violations.len(), VIOLATORS, "{}", session.dump());
    assert!(violations.iter().all(|v| v["file"]["path"] == secret.as_str() && v["decision"]["action"] == "kill"));
}

#[test]
fn a_process_whose_threads_end_before_it_stays_in_its_session() {
    if !privileged() {
        return;
    }
    let (_dir, policy, secret) = secret_denied("threads-end");
    // A thread exits, then the main thread; the last thread reads the secret.
    let session = run(&policy, &[PROBE, "leader-exits", &secret]);
    assert!(!session.stdout.contains(SECRET), "the secret leaked: {}", session.dump());
    assert_eq!(session.exit_code(), 128 + 9, "{}", session.dump());
    let violations = session.violations();
    assert_eq!(violations.len(), 1, "{}", session.dump());
    assert_eq!(violations[0]["file"]["path"], secret.as_str());
    assert_eq!(violations[0]["process"]["pid"], session.root_pid());
    assert_ne!(violations[0]["process"]["tid"], session.root_pid());
}

#[test]
fn an_allowed_read_succeeds() {
    if !privileged() {
        return;
    }
    let dir = tree("allow-read");
    let root = dir.path().display();
    let policy = profile(&dir, &format!("    files:\n      read: [/]\n      deny: [{root}/secret]\n"));
    let session = run(&policy, &[PROBE, "cat", &format!("{root}/public/readme")]);
    assert_eq!(session.stdout, "public-content");
    assert_eq!(session.exit_code(), 0, "{}", session.dump());
    assert!(session.violations().is_empty(), "{}", session.dump());
}

#[test]
fn the_longest_matching_entry_decides() {
    if !privileged() {
        return;
    }
    let dir = tree("longest");
    let root = dir.path().display();
    // deny inside an allowed tree, and allow inside a denied tree.
    let policy =
        profile(&dir, &format!("    files:\n      read: [/, {root}/secret/inner]\n      deny: [{root}/secret]\n"));
    let inner = run(&policy, &[PROBE, "cat", &format!("{root}/secret/inner/allowed")]);
    assert_eq!(inner.stdout, "inner-allowed", "{}", inner.dump());
    let outer = run(&policy, &[PROBE, "cat", &format!("{root}/secret/key")]);
    assert_eq!(outer.exit_code(), 137, "{}", outer.dump());
    assert!(!outer.stdout.contains(SECRET));
    // Whole components only: a sibling whose name extends the denied one is not denied.
    std::fs::write(dir.path().join("secretary"), "not-secret").unwrap();
    let sibling = run(&policy, &[PROBE, "cat", &format!("{root}/secretary")]);
    assert_eq!(sibling.stdout, "not-secret", "{}", sibling.dump());
}

#[test]
fn writing_where_only_reading_is_allowed_is_stopped_before_the_write() {
    if !privileged() {
        return;
    }
    let dir = tree("readonly");
    let root = dir.path().display();
    let target = format!("{root}/public/readme");
    let policy = profile(&dir, &format!("    files:\n      read: [/]\n      write: [{root}/secret]\n"));
    let session = run(&policy, &[PROBE, "overwrite", &target, "CLOBBERED"]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains("wrote"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "public-content", "the file was modified");
    let v = &session.violations()[0];
    assert_eq!(v["file"]["access"], "read_write");
    assert_eq!(v["decision"]["rule"], "files.read[0] /");
    // Where writing is allowed, it works.
    let writable = format!("{root}/secret/key");
    let ok = run(&policy, &[PROBE, "overwrite", &writable, "NEW"]);
    assert_eq!(ok.stdout.trim(), "wrote", "{}", ok.dump());
}

#[test]
fn what_no_entry_covers_is_a_violation() {
    if !privileged() {
        return;
    }
    let dir = tree("uncovered");
    let root = dir.path().display();
    // Everything the probe needs to start, and nothing else.
    let policy = profile(
        &dir,
        &format!("    files:\n      read: [/usr, /lib, /lib64, /etc, /proc, /sys, /dev, {root}/public]\n"),
    );
    let session = run(&policy, &[PROBE, "cat", &format!("{root}/secret/key")]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert_eq!(session.violations()[0]["decision"]["rule"], "no entry covers this path");
}

#[test]
fn exec_outside_the_exec_list_is_killed() {
    if !privileged() {
        return;
    }
    let dir = tree("exec");
    let root = dir.path().display();
    let copy = format!("{root}/public/mytrue");
    std::fs::copy("/usr/bin/true", &copy).unwrap();
    let policy = profile(&dir, "    files:\n      read: [/]\n      write: [/tmp, /dev/null]\n    exec: [/usr/bin]\n");
    let session = run(&policy, &["sh", "-c", &format!("/usr/bin/true && echo system-ok; {copy}; echo rc=$?")]);
    assert!(session.stdout.contains("system-ok"), "{}", session.dump());
    assert!(session.stdout.contains("rc=137"), "{}", session.dump());
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["type"], "process.exec");
    assert_eq!(v[0]["exec"]["path"], copy.as_str());
    assert_eq!(v[0]["decision"]["enforced_by"], "kernel:sched_process_exec");
}

#[test]
fn audit_mode_changes_nothing_but_reports_what_enforce_would_do() {
    if !privileged() {
        return;
    }
    let dir = tree("audit");
    let root = dir.path().display();
    let policy = profile(&dir, &format!("    mode: audit\n    files:\n      read: [/]\n      deny: [{root}/secret]\n"));
    let session = run(&policy, &[PROBE, "cat", &format!("{root}/secret/key")]);
    assert_eq!(session.stdout, SECRET);
    assert_eq!(session.exit_code(), 0);
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["decision"]["action"], "audit");
    assert_eq!(v[0]["decision"]["would"], "kill");
    assert_eq!(session.of_type("session.start")[0]["session"]["mode"], "audit");
}

#[test]
fn named_files_are_denied_anywhere() {
    if !privileged() {
        return;
    }
    let dir = tree("named");
    let root = dir.path().display();
    std::fs::write(dir.path().join("public/.env"), "API_KEY=secret").unwrap();
    let policy = profile(&dir, "    files:\n      read: [/]\n      deny: [\"**/.env\"]\n");
    let session = run(&policy, &[PROBE, "cat", &format!("{root}/public/.env")]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains("API_KEY"));
    assert_eq!(session.violations()[0]["decision"]["rule"], "files.deny[0] **/.env");
}

#[test]
fn the_default_profile_keeps_agents_out_of_secrets() {
    if !privileged() {
        return;
    }
    let session = monitor_tests::run_session(&[
        "sh",
        "-c",
        "cat /etc/hostname >/dev/null && echo ok; cat /etc/shadow; echo rc=$?",
    ]);
    assert!(session.stdout.contains("ok"), "{}", session.dump());
    assert!(session.stdout.contains("rc=137"), "{}", session.dump());
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["decision"]["rule"], "files.deny[0] /etc/shadow");
    assert_eq!(v[0]["decision"]["profile"], "default");
}

fn alive(pid: u32) -> bool {
    // A killed process may linger as a zombie until reaped; that is dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn kill_session_takes_grandchildren_and_a_detached_daemon_with_it() {
    if !privileged() {
        return;
    }
    let dir = tree("kill-session");
    let root = dir.path().display();
    let policy = profile(
        &dir,
        &format!(
            "    on_violation: kill-session\n    files:\n      read: [/]\n      write: [/dev/null]\n      deny: [{root}/secret]\n"
        ),
    );
    let script = format!(
        "sleep 300 & echo bg=$!; sh -c 'sleep 300 & echo grandchild=$!; wait' & {PROBE} spawn-daemon; sleep 0.3; {PROBE} cat {root}/secret/key; wait"
    );
    let session = run(&policy, &["sh", "-c", &script]);
    // Killed, the session ends long before its `sleep 30`s would. Timed by the events, not
    // around `run`: loading the programs takes seconds in an emulated VM (cargo xtask vm).
    assert!(session.duration_secs() < 20.0, "the session was not killed: it ran {:.1}s", session.duration_secs());
    assert!(!session.stdout.contains(SECRET));
    let pid_of = |label: &str| -> u32 {
        session
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {}", session.stdout))
            .trim()
            .parse()
            .unwrap()
    };
    let (bg, grandchild, daemon) = (pid_of("bg="), pid_of("grandchild="), pid_of("daemon="));
    let killed = session.of_type("session.killed");
    assert_eq!(killed.len(), 1, "{}", session.dump());
    let pids: Vec<u32> =
        killed[0]["session"]["killed_pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32).collect();
    for pid in [bg, grandchild, daemon, session.root_pid() as u32] {
        assert!(pids.contains(&pid), "{pid} not in killed_pids {pids:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while [bg, grandchild, daemon].iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in [bg, grandchild, daemon] {
        assert!(!alive(pid), "session process {pid} survived kill-session");
    }
    assert_eq!(killed[0]["decision"]["enforced_by"], "userspace:cgroup.kill");
}

#[test]
fn io_uring_cannot_open_what_the_profile_denies() {
    if !privileged() {
        return;
    }
    let dir = tree("uring");
    let root = dir.path().display();
    let secret = format!("{root}/secret/key");
    let policy = profile(&dir, &format!("    files:\n      read: [/]\n      deny: [{root}/secret]\n"));
    // IORING_OP_OPENAT makes no open syscall: io_uring itself is refused where files
    // are restricted.
    let session = run(&policy, &[PROBE, "uring-open", &secret]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains(SECRET));
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["type"], "process.syscall");
    assert_eq!(v[0]["syscall"]["name"], "io_uring_setup");
    assert_eq!(v[0]["decision"]["enforced_by"], "kernel:sys_enter");

    // A profile may opt in, knowingly: then io_uring works (and its opens go unchecked).
    let open =
        profile(&dir, &format!("    allow_io_uring: true\n    files:\n      read: [/]\n      deny: [{root}/secret]\n"));
    let allowed = run(&open, &[PROBE, "uring-open", &format!("{root}/public/readme")]);
    assert_eq!(allowed.stdout, "public-content", "{}", allowed.dump());
}

#[test]
fn a_hard_link_to_a_denied_file_is_the_same_denied_file() {
    if !privileged() {
        return;
    }
    let dir = tree("hardlink");
    let root = dir.path().display();
    let policy = profile(
        &dir,
        &format!("    files:\n      read: [/]\n      write: [{root}/public]\n      deny: [{root}/secret]\n"),
    );
    // The agent (root) makes another name for the secret where it may read and write.
    let alias = format!("{root}/public/innocent");
    let session = run(&policy, &["sh", "-c", &format!("ln {root}/secret/key {alias} && {PROBE} cat {alias}")]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains(SECRET), "the secret leaked through a hard link");
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["file"]["path"], alias.as_str());
    assert_eq!(v[0]["decision"]["rule"], format!("files.deny[0] {root}/secret"));
}

#[test]
fn code_from_an_anonymous_memory_file_is_not_on_the_exec_list() {
    if !privileged() {
        return;
    }
    let dir = tree("memfd");
    let policy = profile(
        &dir,
        &format!(
            "    files:\n      read: [/]\n      write: [/dev/null]\n    exec: [/usr/bin, {}]\n",
            std::path::Path::new(PROBE).parent().unwrap().display()
        ),
    );
    let session = run(&policy, &[PROBE, "memfd-exec", "/usr/bin/true"]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    let v = session.violations();
    assert_eq!(v.len(), 1, "{}", session.dump());
    assert_eq!(v[0]["type"], "process.exec");
    assert_eq!(v[0]["decision"]["rule"], "no entry covers this path");
}

#[test]
fn a_process_sharing_its_parents_descriptor_table_is_a_violation() {
    if !privileged() {
        return;
    }
    let dir = tree("clone-files");
    let policy = profile(&dir, "    files:\n      read: [/]\n      write: [/dev/null]\n");
    let session = run(&policy, &[PROBE, "clone-files"]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains("cloned"));
    let v = session.violations();
    assert_eq!(v[0]["syscall"]["name"], "clone(CLONE_FILES)", "{}", session.dump());
    // Threads share the table too, and are fine.
    let threads = run(&policy, &[PROBE, "threads", "/etc/hostname"]);
    assert_eq!(threads.exit_code(), 0, "{}", threads.dump());
}

#[test]
fn taking_another_processs_descriptor_is_refused_where_files_are_restricted() {
    if !privileged() {
        return;
    }
    let dir = tree("getfd");
    let policy = profile(&dir, "    files:\n      read: [/]\n      write: [/dev/null]\n");
    let session = run(&policy, &["sh", "-c", &format!("{PROBE} pidfd-getfd; echo rc=$?")]);
    assert!(session.stdout.contains("rc=137"), "{}", session.dump());
    assert!(!session.stdout.contains("pidfd_getfd="), "{}", session.dump());
    assert_eq!(session.violations()[0]["syscall"]["name"], "pidfd_getfd");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn syscalls_through_the_32_bit_abi_are_closed_off_where_files_are_enforced() {
    if !privileged() {
        return;
    }
    let dir = tree("int80");
    let policy = profile(&dir, "    files:\n      read: [/]\n      write: [/dev/null]\n");
    // int 0x80 reaches the ia32 syscall table, whose numbers the kernel hooks do not
    // watch: the session's seccomp filter kills the process (SIGSYS).
    let session = run(&policy, &[PROBE, "int80"]);
    assert_eq!(session.exit_code(), 128 + libc::SIGSYS, "{}", session.dump());
    assert!(!session.stdout.contains("int80="));
    // Without file rules nothing is enforced on files, and int 0x80 works.
    let open = profile(&dir, "    exec: [/]\n");
    let allowed = run(&open, &[PROBE, "int80"]);
    assert!(allowed.stdout.starts_with("int80="), "{}", allowed.dump());
}

/// A minimal static AArch32 (ARM EABI5) program: getpid, then exit(42), by `svc 0`;
/// should exit fail, an undefined instruction (SIGILL).
/// arm64 runs it as a compat task (where the CPU has AArch32 at EL0 and the kernel
/// CONFIG_COMPAT), whose syscalls use the arm table: another ABI.
#[cfg(target_arch = "aarch64")]
fn aarch32_program() -> Vec<u8> {
    const BASE: u32 = 0x1_0000;
    let code: [u32; 6] = [
        0xe3a0_7014, // mov r7, #20   (getpid)
        0xef00_0000, // svc #0
        0xe3a0_002a, // mov r0, #42
        0xe3a0_7001, // mov r7, #1    (exit)
        0xef00_0000, // svc #0
        0xe7f0_00f0, // udf #0
    ];
    let size = 52 + 32 + 4 * code.len() as u32;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0"); // ELF32, LSB, v1
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&40u16.to_le_bytes()); // EM_ARM
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + 52 + 32).to_le_bytes()); // entry: the code
    elf.extend_from_slice(&52u32.to_le_bytes()); // program headers right after
    elf.extend_from_slice(&0u32.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0x0500_0000u32.to_le_bytes()); // EF_ARM_EABI_VER5
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // PT_LOAD of the whole file at BASE, read + execute.
    for word in [1u32, 0, BASE, BASE, size, size, 5, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    for insn in code {
        elf.extend_from_slice(&insn.to_le_bytes());
    }
    elf
}

/// arm64's foreign ABI is AArch32: a 32-bit program's syscalls take the compat table,
/// whose numbers the kernel hooks do not watch, so the session's seccomp filter kills
/// it at its first syscall (SIGSYS). arm64 cannot issue an AArch32 syscall from 64-bit
/// code (no `int 0x80` equivalent): the test executes a 32-bit program instead.
#[cfg(target_arch = "aarch64")]
#[test]
fn aarch32_programs_are_closed_off_where_files_are_enforced() {
    use std::os::unix::fs::PermissionsExt;
    if !privileged() {
        return;
    }
    let dir = tree("aarch32");
    let program = dir.path().join("public/aarch32-getpid");
    std::fs::write(&program, aarch32_program()).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = program.to_str().unwrap();
    // Outside any session first: does this machine run AArch32 code at all?
    match std::process::Command::new(program).status() {
        Ok(status) => assert_eq!(status.code(), Some(42), "the AArch32 program misbehaves outside a session: {status}"),
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            let why = "this CPU or kernel does not run AArch32 programs (ENOEXEC)";
            assert!(std::env::var_os("CI").is_none(), "{why}: CI requires every privileged test to run");
            eprintln!("skipping: {why}");
            return;
        }
        Err(e) => panic!("running the AArch32 program: {e}"),
    }
    let policy = profile(&dir, "    files:\n      read: [/]\n      write: [/dev/null]\n");
    let session = run(&policy, &[program]);
    assert_eq!(session.exit_code(), 128 + libc::SIGSYS, "{}", session.dump());
    // Without file rules nothing is enforced on files and that filter is not installed.
    // The program runs where the LSM tier protects the monitor; under tier 2's
    // self-protection filter every syscall of a foreign ABI is refused (EPERM), exit
    // included, so the program runs on into its trap.
    let open = profile(&dir, "    exec: [/]\n");
    let allowed = run(&open, &[program]);
    let expected = if allowed.tiers().self_protection == "lsm" { 42 } else { 128 + libc::SIGILL };
    assert_eq!(allowed.exit_code(), expected, "{}", allowed.dump());
}

#[test]
fn opens_are_judged_by_what_the_kernel_opened_not_by_user_memory() {
    if !privileged() {
        return;
    }
    let dir = tree("flags");
    let root = dir.path().display();
    let policy =
        profile(&dir, &format!("    files:\n      read: [/]\n      write: [/dev/null]\n      deny: [{root}/secret]\n"));
    // Access mode 3 opens for ioctls with neither mode bit: still a read and a write.
    let mode3 = run(&policy, &[PROBE, "open-mode3", &format!("{root}/secret/key")]);
    assert_eq!(mode3.exit_code(), 137, "{}", mode3.dump());
    let mode3_readonly = run(&policy, &[PROBE, "open-mode3", &format!("{root}/public/readme")]);
    assert_eq!(mode3_readonly.exit_code(), 137, "a write where only reading is allowed: {}", mode3_readonly.dump());
    // openat2's flags live in user memory another thread could change under us: its
    // opens are judged as if they could truncate (a write).
    let openat2 = run(&policy, &[PROBE, "openat2-read", &format!("{root}/public/readme")]);
    assert_eq!(openat2.exit_code(), 137, "{}", openat2.dump());
    // open_by_handle_at may open a file with no nameable path: refused.
    let by_handle = run(&policy, &[PROBE, "handle-open", &format!("{root}/public/readme")]);
    assert_eq!(by_handle.exit_code(), 137, "{}", by_handle.dump());
    assert_eq!(by_handle.violations()[0]["syscall"]["name"], "open_by_handle_at");
}
