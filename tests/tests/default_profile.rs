//! The built-in profile against what an agent reaches for: credentials where real tools
//! keep them, other processes' memory and environment, raw devices; and what it must
//! leave alone: a process's own /proc entries.

use std::os::unix::fs::MetadataExt;

use monitor_tests::{TempDir, privileged, run_session};

/// A marker no test prints except by reading a planted file.
const SECRET: &str = "planted-secret-7f3a";

#[test]
fn credentials_where_tools_keep_them_are_out_of_reach_wherever_they_are() {
    if !privileged() {
        return;
    }
    // Names the profile denies anywhere (`**/NAME`): histories, credential files,
    // private keys, browser and cloud token stores. Planted in a fresh directory, as
    // if in some user's home.
    let names = [
        ".bash_history",
        ".zsh_history",
        ".python_history",
        ".psql_history",
        ".netrc",
        ".git-credentials",
        ".pypirc",
        ".pgpass",
        ".vault-token",
        "credentials.tfrc.json",
        "id_ed25519",
        "id_rsa",
        "key4.db",
        "logins.json",
        "Login Data",
        "msal_token_cache.json",
        "application_default_credentials.json",
    ];
    let dir = TempDir::new("planted");
    let mut script = String::new();
    for name in names {
        let path = dir.path().join(name);
        std::fs::write(&path, SECRET).unwrap();
        script += &format!("cat '{}'; echo \"rc=$?\"\n", path.display());
    }
    let session = run_session(&["sh", "-c", &script]);
    assert!(!session.stdout.contains(SECRET), "a planted secret was read:\n{}", session.dump());
    assert_eq!(session.stdout.matches("rc=137").count(), names.len(), "{}", session.dump());
    let violations = session.violations();
    for name in names {
        let rule = format!("**/{name}");
        assert!(
            violations.iter().any(|v| v["decision"]["rule"].as_str().is_some_and(|r| r.ends_with(&rule))),
            "no violation by {rule}:\n{}",
            session.dump()
        );
    }
}

#[test]
fn a_process_may_use_its_own_proc_entries() {
    if !privileged() {
        return;
    }
    // What `dig` and thread pools do (name a thread), and what runtimes read.
    let session = run_session(&[
        "sh",
        "-c",
        "echo agent > /proc/self/comm && echo worker > /proc/thread-self/comm && cat /proc/self/environ /proc/self/status >/dev/null && echo ok",
    ]);
    assert!(session.stdout.contains("ok"), "{}", session.dump());
    assert!(session.violations().is_empty(), "{}", session.dump());
}

#[test]
fn another_processs_memory_and_environment_are_out_of_reach() {
    if !privileged() {
        return;
    }
    let script = |outside: u32| {
        format!(
            "cat /proc/{outside}/environ >/dev/null; echo \"environ rc=$?\"; \
             cat /proc/{outside}/task/{outside}/environ >/dev/null; echo \"task environ rc=$?\"; \
             cat /proc/{outside}/mem >/dev/null; echo \"mem rc=$?\"; \
             cat /proc/{outside}/status >/dev/null; echo \"status rc=$?\""
        )
    };
    // This test's own process is outside every session.
    let mut outside = std::process::id();
    let session = run_session(&["sh", "-c", &script(outside)]);
    // With BPF LSM: killed, the path judged when the file is opened (before the kernel's
    // own ptrace check of /proc/PID/environ and mem). On tier 2 the envelope's kernel
    // refuses first (EACCES: this test's process holds capabilities the session has not,
    // and the session has no CAP_SYS_PTRACE); the monitor's own check stands behind it,
    // as a session with every other capability shows against a process with none.
    let mut capless = None;
    let session = if session.tiers().files == "lsm" {
        session
    } else {
        for what in ["environ rc=1", "task environ rc=1", "mem rc=1", "status rc=0"] {
            assert!(session.stdout.contains(what), "expected {what:?}:\n{}", session.dump());
        }
        let mut sleeper = std::process::Command::new(env!("CARGO_BIN_EXE_probe"))
            .args(["capless-sleep", "30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("probe");
        let mut ready = [0u8; 8];
        std::io::Read::read_exact(sleeper.stdout.as_mut().unwrap(), &mut ready).expect("capless");
        outside = sleeper.id();
        capless = Some(sleeper);
        let dir = monitor_tests::TempDir::new("other-process");
        let policy = monitor_tests::policy_file(
            &dir,
            "version: 1\nprofiles:\n  - name: t\n    files: {read: [/], write: [/dev/null]}\n    envelope: {capabilities: {add: [ALL]}}\n",
        );
        monitor_tests::run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script(outside)])
    };
    if let Some(mut sleeper) = capless {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    for what in ["environ rc=137", "task environ rc=137", "mem rc=137", "status rc=0"] {
        assert!(session.stdout.contains(what), "expected {what:?}:\n{}", session.dump());
    }
    let refused: Vec<_> = session
        .violations()
        .iter()
        .filter(|v| v["decision"]["rule"].as_str().is_some_and(|r| r.starts_with("another process is out of reach")))
        .map(|v| v["file"]["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        refused,
        [
            format!("/proc/{outside}/environ"),
            format!("/proc/{outside}/task/{outside}/environ"),
            format!("/proc/{outside}/mem")
        ],
        "{}",
        session.dump()
    );
}

#[test]
fn a_process_in_the_same_session_may_be_inspected() {
    if !privileged() {
        return;
    }
    let session = run_session(&["sh", "-c", "sleep 5 & cat /proc/$!/environ >/dev/null && echo ok; kill $!"]);
    assert!(session.stdout.contains("ok"), "{}", session.dump());
    assert!(session.violations().is_empty(), "{}", session.dump());
}

#[test]
fn raw_devices_are_refused_wherever_their_node_is() {
    if !privileged() {
        return;
    }
    // Device nodes made where the profile lets the agent write: the path is allowed,
    // the device is not. /dev/mem, /dev/port, device-mapper control, the hibernation
    // snapshot and SCSI generic where the kernel has them, and the block device of the
    // root filesystem where there is one.
    let dir = TempDir::new("devices");
    let root_dev = std::fs::metadata("/").unwrap().dev();
    let mut nodes = vec![
        ("mem", libc::S_IFCHR, libc::makedev(1, 1)),
        ("port", libc::S_IFCHR, libc::makedev(1, 4)),
        ("mapper-control", libc::S_IFCHR, libc::makedev(10, 236)),
        ("snapshot", libc::S_IFCHR, libc::makedev(10, 231)),
        ("sg", libc::S_IFCHR, libc::makedev(21, 0)),
    ];
    if libc::major(root_dev) != 0 {
        nodes.push(("disk", libc::S_IFBLK, root_dev));
    }
    let mut script = String::new();
    for (name, kind, dev) in &nodes {
        let path = dir.path().join(name);
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mknod creates a node in our own directory.
        let made = unsafe { libc::mknod(c_path.as_ptr(), kind | 0o600, *dev) };
        assert_eq!(made, 0, "mknod {}: {}", path.display(), std::io::Error::last_os_error());
        script += &format!("head -c 16 '{}' | od -An -tx1; echo \"{name} rc=$?\"\n", path.display());
    }
    let session = run_session(&["sh", "-c", &script]);
    // Whatever the kernel allows, no byte of a device comes out (od prints nothing).
    assert!(session.stdout.lines().all(|l| l.contains(" rc=")), "a device was read:\n{}", session.dump());
    // A device this kernel has is opened, and then refused by type.
    let refused: Vec<&str> = session
        .violations()
        .iter()
        .filter(|v| v["decision"]["rule"].as_str().is_some_and(|r| r.starts_with("a raw device")))
        .filter_map(|v| v["file"]["path"].as_str())
        .collect();
    for (name, _, _) in &nodes {
        let path = dir.path().join(name);
        let was_refused = refused.iter().any(|p| *p == path.to_str().unwrap());
        let open_failed = session.stderr.contains(&format!("cannot open '{}'", path.display()));
        assert!(was_refused || open_failed, "{name}: neither refused nor unopenable:\n{}", session.dump());
    }
    // On the kernels the VMs boot (Debian's, with /dev/mem), the check itself must run.
    if monitor_tests::expect_lsm().is_some() {
        assert!(!refused.is_empty(), "no raw device was opened, so the check was never exercised:\n{}", session.dump());
    }
}

#[test]
fn processes_outside_the_session_cannot_be_traced_or_read() {
    if !privileged() {
        return;
    }
    // A process outside every session, this test's own child: a readable address in it
    // is the start of its first mapping.
    // (Long enough for a session to start under emulation, on a loaded host; killed below.)
    let mut outside = std::process::Command::new("sleep").arg("600").spawn().expect("sleep");
    let pid = outside.id();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let address = maps.split('-').next().unwrap().to_owned();
    let session = monitor_tests::run_session(&[
        env!("CARGO_BIN_EXE_probe"),
        "try",
        "ptrace-seize",
        &pid.to_string(),
        "--",
        "vm-read",
        &pid.to_string(),
        &address,
        "--",
        "open",
        &format!("/proc/{pid}/fd/0"),
    ]);
    outside.kill().unwrap();
    outside.wait().unwrap();
    assert!(session.stdout.contains("done"), "the probe did not survive its attempts:\n{}", session.dump());
    if session.tiers().self_protection == "lsm" {
        // EPERM for each, refused (not killed), and reported.
        for op in ["ptrace-seize errno=1", "vm-read errno=1", "open errno=13"] {
            assert!(session.stdout.contains(op), "expected {op:?}:\n{}", session.dump());
        }
        let refused = session
            .of_type("process.tamper")
            .iter()
            .filter(|e| e["tamper"]["target_pid"] == pid && e["decision"]["action"] == "deny")
            .count();
        assert!(refused >= 3, "{refused} refusals reported:\n{}", session.dump());
    } else {
        // Tier 2: the kernel refuses, unreported: the session has no CAP_SYS_PTRACE,
        // and the process (root's, with every capability) holds more than it.
        for op in ["ptrace-seize errno=1", "vm-read errno=1", "open errno=13"] {
            assert!(session.stdout.contains(op), "expected {op:?}:\n{}", session.dump());
        }
    }
}

/// A pseudo-terminal (what agent frameworks run commands in) can be opened.
#[test]
fn a_pseudo_terminal_can_be_opened() {
    if !privileged() {
        return;
    }
    let session = run_session(&[env!("CARGO_BIN_EXE_probe"), "try", "write", "/dev/ptmx"]);
    assert!(session.stdout.contains("write ok"), "{}", session.dump());
    assert!(session.violations().is_empty(), "{}", session.dump());
}
