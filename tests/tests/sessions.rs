//! Session membership: who is in a session, who is not, and how the session ends.

use monitor_tests::{privileged, run_session};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

#[test]
fn exit_status_passes_through() {
    if !privileged() {
        return;
    }
    assert_eq!(run_session(&[PROBE, "exit", "7"]).exit_code(), 7);
    assert_eq!(run_session(&["true"]).exit_code(), 0);
    let killed = run_session(&[PROBE, "kill-self", "9"]);
    assert_eq!(killed.exit_code(), 128 + 9, "{}", killed.dump());
    let exits = killed.of_type("process.exit");
    assert_eq!(exits.len(), 1, "{}", killed.dump());
    assert_eq!(exits[0]["exit"]["signal"], 9);
    let end = &killed.of_type("session.end")[0];
    assert_eq!(end["exit"]["signal"], 9);
}

#[test]
fn a_command_that_cannot_start_is_reported() {
    if !privileged() {
        return;
    }
    let output = std::process::Command::new(monitor_tests::monitor_bin())
        .args(["run", "--events", "/dev/null", "--", "/nonexistent/agent"])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot start /nonexistent/agent"), "{stderr}");
}

#[test]
fn grandchildren_are_in_the_session() {
    if !privileged() {
        return;
    }
    let session = run_session(&["sh", "-c", "sh -c 'cat /etc/hostname; true'; true"]);
    let root = session.root_pid();
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 1, "{}", session.dump());
    let open = opens[0];
    let ancestry: Vec<u64> =
        open["process"]["ancestry"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    // cat <- inner sh <- root sh <- agent-monitor
    assert!(ancestry.len() >= 3 && ancestry.contains(&root), "ancestry {ancestry:?}\n{}", session.dump());
    assert_eq!(open["process"]["exe"], "/usr/bin/cat");
    assert_eq!(open["session"]["id"], session.session_id());
    // Every process of the tree started and exited inside the session.
    assert!(session.of_type("process.start").len() >= 2, "{}", session.dump());
    assert_eq!(session.of_type("process.start").len(), session.of_type("process.exit").len() - 1, "{}", session.dump());
}

#[test]
fn threads_are_in_the_session() {
    if !privileged() {
        return;
    }
    let session = run_session(&[PROBE, "threads", "/etc/hostname"]);
    let tid: u64 = session.stdout.trim().strip_prefix("tid=").expect("probe output").parse().unwrap();
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 1, "{}", session.dump());
    assert_eq!(opens[0]["process"]["tid"], tid);
    assert_eq!(opens[0]["process"]["pid"], session.root_pid());
    assert_ne!(tid, session.root_pid());
    // A thread is not a process: no process.start for it.
    assert!(session.of_type("process.start").is_empty(), "{}", session.dump());
}

#[test]
fn double_fork_setsid_and_reparenting_do_not_leave_the_session() {
    if !privileged() {
        return;
    }
    let session = run_session(&[PROBE, "daemonize", "/etc/hostname"]);
    let grandchild: u64 = session.stdout.trim().strip_prefix("grandchild=").expect("probe output").parse().unwrap();
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 1, "{}", session.dump());
    assert_eq!(opens[0]["process"]["pid"], grandchild);
    assert_eq!(opens[0]["session"]["id"], session.session_id());
}

#[test]
fn a_process_outside_the_session_produces_no_events() {
    if !privileged() {
        return;
    }
    let dir = monitor_tests::TempDir::new("outsider");
    let marker = dir.path().join("outsider-marker");
    std::fs::write(&marker, "x").unwrap();
    let marker_text = marker.to_str().unwrap().to_owned();
    // The outsider opens the marker every 10 ms while the session lives.
    let mut outsider = std::process::Command::new(PROBE).args(["open-repeat", &marker_text, "1500"]).spawn().unwrap();
    let session = run_session(&["sh", "-c", "sleep 1; cat /etc/hostname"]);
    let outsider_pid = outsider.id() as u64;
    assert!(outsider.wait().unwrap().success());
    assert_eq!(session.opens_of("/etc/hostname").len(), 1, "{}", session.dump());
    for event in &session.events {
        assert_ne!(event["process"]["pid"], outsider_pid, "outsider in the stream: {event}");
        assert!(!event.to_string().contains("outsider-marker"), "outsider's file in the stream: {event}");
    }
}

#[test]
fn exec_reports_the_resolved_program_and_its_arguments() {
    if !privileged() {
        return;
    }
    // /bin is a symlink to /usr/bin on Debian 12: the event names the file executed.
    let session = run_session(&["sh", "-c", "exec /bin/echo hello 'two words'"]);
    let execs = session.of_type("process.exec");
    let echo =
        execs.iter().find(|e| e["exec"]["argv"][0] == "/bin/echo").unwrap_or_else(|| panic!("{}", session.dump()));
    let real = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(echo["exec"]["path"], real.to_str().unwrap());
    assert_eq!(echo["exec"]["argv"], serde_json::json!(["/bin/echo", "hello", "two words"]));
    assert_eq!(echo["process"]["exe"], real.to_str().unwrap());
    assert_eq!(echo["decision"]["action"], "allow");
    assert_eq!(session.stdout.trim(), "hello two words");
}

#[test]
fn sigterm_to_the_monitor_reaches_the_agent() {
    if !privileged() {
        return;
    }
    let dir = monitor_tests::TempDir::new("sigterm");
    let events = dir.path().join("events.ndjson");
    let mut monitor = std::process::Command::new(monitor_tests::monitor_bin())
        .arg("run")
        .arg("--events")
        .arg(&events)
        .args(["--", "sleep", "300"])
        .spawn()
        .unwrap();
    // Wait until the session runs (generous: loading the programs takes seconds in an
    // emulated VM, see cargo xtask vm).
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&events).unwrap_or_default().contains("process.exec") {
        assert!(started.elapsed() < monitor_tests::START_TIMEOUT, "session did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling the monitor we started.
    unsafe { libc::kill(monitor.id() as i32, libc::SIGTERM) };
    let status = monitor.wait().unwrap();
    // The agent died of the forwarded SIGTERM; the monitor reported it and exited 128+15.
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let text = std::fs::read_to_string(&events).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "session.end");
    assert_eq!(last["exit"]["signal"], libc::SIGTERM);
}

#[test]
fn a_failing_event_sink_neither_stops_enforcement_nor_leaks_the_session() {
    if !privileged() {
        return;
    }
    let dir = monitor_tests::TempDir::new("full-sink");
    let marker = dir.path().join("rc");
    // /dev/full: every write of an event fails with ENOSPC.
    let output = std::process::Command::new(monitor_tests::monitor_bin())
        .args(["run", "--events", "/dev/full", "--", "sh", "-c"])
        .arg(format!("cat /etc/shadow >/dev/null; echo rc=$? > {}", marker.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "rc=137", "the violation was not stopped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writing events failed"), "{stderr}");
    let summary =
        stderr.lines().find(|l| l.starts_with("agent-monitor: session ")).unwrap_or_else(|| panic!("{stderr}"));
    let session = summary.split_whitespace().nth(2).unwrap();
    let lost: u64 = summary.split(" lost").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(lost > 0, "the lost events were not counted: {stderr}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let cgroup2 = mounts.lines().find(|l| l.split(' ').nth(2) == Some("cgroup2")).unwrap().split(' ').nth(1).unwrap();
    assert!(!std::path::Path::new(cgroup2).join("agent-monitor").join(session).exists(), "session cgroup left behind");
}

/// Where no tracefs is mounted (here: hidden under an empty tmpfs, in a mount namespace
/// of the test's own), the monitor mounts one for itself while it attaches: the
/// tracepoints attach, the mount never shows in the namespace it was started in, and
/// the agent runs in a copy of that namespace (its own), in the directory it was started
/// from.
#[test]
fn without_tracefs_the_monitor_mounts_its_own_and_the_agent_runs_in_a_copy_of_the_callers_namespace() {
    if !privileged() {
        return;
    }
    let dir = monitor_tests::TempDir::new("tracefs");
    let events = dir.path().join("events.ndjson");
    let script = format!(
        "set -e
        mount -t tmpfs hidden /sys/kernel/tracing
        if [ -d /sys/kernel/debug/tracing ]; then mount -t tmpfs hidden /sys/kernel/debug; fi
        echo ns=$(readlink /proc/self/ns/mnt)
        cd {dir}
        before=$(grep -c ' - tracefs ' /proc/self/mountinfo || true)
        {monitor} run --standalone --events {events} -- {PROBE} whereami /etc/hostname
        echo tracefs_mounts_added=$(( $(grep -c ' - tracefs ' /proc/self/mountinfo || true) - before ))",
        dir = dir.path().display(),
        monitor = monitor_tests::monitor_bin().display(),
        events = events.display(),
    );
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let callers = lines[0].strip_prefix("ns=").expect("the caller's namespace");
    // The agent runs in a mount namespace of its own, a copy of the caller's (in which
    // the cgroup filesystems are read-only), not in the monitor's with its tracefs.
    let (agents, cwd) = lines[1].split_once(' ').unwrap();
    assert_eq!(cwd, format!("cwd={}", dir.path().display()), "{stdout}\n{stderr}");
    assert_ne!(agents, format!("ns={callers}"), "{stdout}\n{stderr}");
    assert_eq!(lines[2], "tracefs_mounts_added=0", "the monitor's tracefs shows in the caller's namespace");
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"file.open\"") && l.contains("\"/etc/hostname\"")),
        "no file.open of /etc/hostname:\n{text}\n{stderr}"
    );
}

/// With `--ebpf-log`, the monitor reads its programs' log from a thread of its own,
/// started once the programs are loaded: where tracefs has to be mounted privately for
/// loading (`tracefs::with_tracefs`), a thread started earlier would keep the monitor,
/// and the agents it starts, in that mount namespace. Here tracefs is unmounted in a
/// mount namespace of the test's own, which the monitor must come back to.
#[test]
fn with_ebpf_log_the_monitor_leaves_its_private_tracefs_namespace() {
    use std::io::BufRead;
    if !privileged() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let script = format!(
        "readlink /proc/self/ns/mnt; exec {} --ebpf-log info run --standalone --events /dev/null -- sleep 3",
        monitor_tests::monitor_bin().display()
    );
    let mut command = std::process::Command::new("sh");
    command.args(["-c", &script]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // A mount namespace of the child's own, whose changes reach no other.
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Without tracefs where the monitor looks (either may be absent).
            libc::umount2(c"/sys/kernel/debug".as_ptr(), libc::MNT_DETACH);
            libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH);
            Ok(())
        });
    }
    let mut monitor = command.spawn().expect("starting agent-monitor in a mount namespace of its own");
    let mut stdout = std::io::BufReader::new(monitor.stdout.take().expect("stdout"));
    let mut expected = String::new();
    stdout.read_line(&mut expected).expect("the namespace the monitor starts in");
    // Once its programs are loaded it has a thread named ebpf-log.
    let deadline = std::time::Instant::now() + monitor_tests::START_TIMEOUT;
    let reading = || {
        std::fs::read_dir(format!("/proc/{}/task", monitor.id())).is_ok_and(|tasks| {
            tasks
                .flatten()
                .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "ebpf-log"))
        })
    };
    while !reading() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reading(), "no ebpf-log thread in the monitor");
    let now = std::fs::read_link(format!("/proc/{}/ns/mnt", monitor.id())).expect("its mount namespace");
    assert_eq!(now.display().to_string(), expected.trim(), "the monitor stayed in its private mount namespace");
    assert!(monitor.wait().expect("agent-monitor").success());
}
