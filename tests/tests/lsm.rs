//! Enforcement before the operation (BPF LSM tier) and its tier-2 counterpart.
//!
//! Every test here runs under whatever tier the kernel gives each resource (files,
//! exec, network, self-protection are chosen separately: a kernel may refuse the LSM
//! programs of one and not another): with BPF LSM (the VM runner's `lsm` kernel) a
//! forbidden operation returns EPERM and the agent carries on; without it (this host,
//! the `nolsm` kernel) the same attempts meet tier-2 semantics: opens and execs kill
//! the violator, network operations are refused, and what tier 2 does not govern
//! (changes to the file tree, self-protection) is checked to be reported as such.
//! `Session::tiers` fails a test whose tier is not the one the runner expects.

use std::process::Command;

use monitor_tests::{Session, TempDir, monitor_bin, policy_file, privileged, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
const EPERM: &str = "errno=1";

/// A directory laid out for the policy of [`policy`]: `secret` (denied), `ro/file`
/// (readable only), `rw/` (writable), `forbidden` (a program outside `exec:`).
struct Layout {
    dir: TempDir,
}

impl Layout {
    fn new(tag: &str) -> Layout {
        let dir = TempDir::new(tag);
        let p = dir.path();
        std::fs::write(p.join("secret"), "top secret\n").unwrap();
        std::fs::create_dir(p.join("ro")).unwrap();
        std::fs::write(p.join("ro/file"), "keep me\n").unwrap();
        std::fs::create_dir(p.join("rw")).unwrap();
        std::fs::copy(PROBE, p.join("forbidden")).unwrap();
        Layout { dir }
    }
    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_string_lossy().into_owned()
    }
    /// on_violation deny: with BPF LSM the agent is refused and goes on.
    fn policy(&self, extra: &str) -> std::path::PathBuf {
        let probe_dir = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
        let yaml = format!(
            "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n{extra}    files:\n      read: [/]\n      write: [{rw}, /dev/null]\n      deny: [{secret}]\n    exec: [/usr, /bin, /lib, /lib64, {probe_dir}]\n    network:\n      connect: [\"127.0.0.1:*\"]\n      bind: []\n",
            rw = self.path("rw"),
            secret = self.path("secret"),
        );
        policy_file(&self.dir, &yaml)
    }
}

/// Runs `probe try` with the given attempts; returns the session and the probe's
/// per-attempt outcome lines.
fn attempt(policy: &std::path::Path, attempts: &[&[&str]]) -> (Session, Vec<String>) {
    let mut command = vec![PROBE, "try"];
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            command.push("--");
        }
        command.extend_from_slice(a);
    }
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &command);
    let lines = session.stdout.lines().map(str::to_owned).collect();
    (session, lines)
}

fn outcome<'a>(lines: &'a [String], op: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(op).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no outcome for {op} in {lines:?}"))
}

/// Events of `event_type` refused by `hook` (`kernel:lsm/...`).
fn refused_by<'a>(session: &'a Session, event_type: &str, hook: &str) -> Vec<&'a serde_json::Value> {
    session
        .of_type(event_type)
        .into_iter()
        .filter(|e| e["decision"]["action"] == "deny" && e["decision"]["enforced_by"] == hook)
        .collect()
}

#[test]
fn forbidden_file_operations_are_refused() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-files");
    let policy = l.policy("");
    let (secret, ro, rw) = (l.path("secret"), l.path("ro/file"), l.path("rw"));
    let moved = l.path("ro/moved");
    let created = l.path("ro/new");
    let alias = format!("{rw}/alias");
    let ro_alias = format!("{rw}/ro-alias");
    let changes: [&[&str]; 8] = [
        &["write", &ro],
        &["create", &created],
        &["unlink", &ro],
        &["rename", &ro, &moved],
        &["truncate", &ro],
        &["chmod", &ro],
        &["link", &secret, &alias],
        // A new name for a file outside files.write, where it could be written.
        &["link", &ro, &ro_alias],
    ];
    let open_secret = ["open", secret.as_str()];
    let mut attempts: Vec<&[&str]> = vec![&open_secret];
    attempts.extend_from_slice(&changes);
    let (session, lines) = attempt(&policy, &attempts);
    if session.tiers().files == "lsm" {
        for a in &attempts {
            assert_eq!(outcome(&lines, a[0]), EPERM, "{a:?}\n{}", session.dump());
        }
        assert!(lines.iter().any(|l| l == "done"), "the agent carried on: {lines:?}");
        assert_eq!(session.exit_code(), 0, "{}", session.dump());
        assert_eq!(std::fs::read_to_string(&ro).unwrap(), "keep me\n", "nothing changed the read-only file");
        assert!(!std::path::Path::new(&created).exists() && !std::path::Path::new(&alias).exists());
        assert!(!std::path::Path::new(&ro_alias).exists());
        let links = refused_by(&session, "file.change", "kernel:lsm/path_link");
        assert!(
            links.iter().any(|e| e["change"]["path"] == ro.as_str()),
            "the linked file is judged: {}",
            session.dump()
        );
        let opens = refused_by(&session, "file.open", "kernel:lsm/file_open");
        assert!(opens.iter().any(|e| e["file"]["path"] == secret.as_str()), "{}", session.dump());
        for (operation, hook) in [
            ("unlink", "kernel:lsm/path_unlink"),
            ("rename_from", "kernel:lsm/path_rename"),
            ("truncate", "kernel:lsm/path_truncate"),
            ("create", "kernel:lsm/path_mknod"),
            ("chmod", "kernel:lsm/path_chmod"),
            ("link", "kernel:lsm/path_link"),
        ] {
            let found = refused_by(&session, "file.change", hook);
            assert!(found.iter().any(|e| e["change"]["operation"] == operation), "{operation}: {}", session.dump());
        }
    } else {
        // Tier 2: the open of a denied file kills the agent before it returns...
        assert_eq!(session.exit_code(), 128 + 9, "{}", session.dump());
        assert!(!lines.iter().any(|l| l == "done"));
        // ...and changes to the file tree (other than by open) are not governed
        // (documented in POLICY.md).
        let (session, lines) = attempt(&policy, &changes[2..]); // not write or create: those are opens
        assert_eq!(session.tiers().files, "tracepoint");
        assert!(lines.iter().any(|l| l == "done"), "{lines:?}");
        assert_eq!(outcome(&lines, "unlink"), "ok", "tier 2 does not refuse unlink");
    }
}

#[test]
fn forbidden_exec_is_refused() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-exec");
    let forbidden = l.path("forbidden");
    let (session, lines) = attempt(&l.policy(""), &[&["exec", &forbidden]]);
    assert!(lines.iter().any(|l| l == "done"), "{lines:?}");
    if session.tiers().exec == "lsm" {
        assert_eq!(outcome(&lines, "exec"), EPERM, "{}", session.dump());
        let refused = refused_by(&session, "process.exec", "kernel:lsm/bprm_check_security");
        assert_eq!(refused.len(), 1, "{}", session.dump());
        assert_eq!(refused[0]["exec"]["path"], forbidden.as_str());
    } else {
        // Tier 2 kills the process that exec'd, before the program runs.
        assert_eq!(outcome(&lines, "exec"), "errno=-9", "{}", session.dump());
    }
}

#[test]
fn forbidden_network_operations_are_refused() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-net");
    let (session, lines) = attempt(&l.policy(""), &[&["connect", "127.0.0.2:9"], &["bind", "127.0.0.1:47391"]]);
    assert_eq!(outcome(&lines, "connect"), EPERM, "{}", session.dump());
    assert_eq!(outcome(&lines, "bind"), EPERM, "{}", session.dump());
    let (connect_hook, bind_hook) =
        (session.net_hook("connect", "socket_connect"), session.net_hook("bind", "socket_bind"));
    assert_eq!(refused_by(&session, "net.connect", &connect_hook).len(), 1, "{}", session.dump());
    assert_eq!(refused_by(&session, "net.bind", &bind_hook).len(), 1, "{}", session.dump());
}

/// A file the agent may not read is reachable by no other name or route.
#[test]
fn a_denied_file_is_reachable_by_no_other_route() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-routes");
    let secret = l.path("secret");
    let hard = l.path("rw/hard");
    let soft = l.path("rw/soft");
    std::fs::hard_link(&secret, &hard).unwrap();
    std::os::unix::fs::symlink(&secret, &soft).unwrap();
    let mount_point = l.path("rw/bind");
    std::fs::create_dir(&mount_point).unwrap();
    let bound = BindMount::new(l.dir.path().to_str().unwrap(), &mount_point);
    let via_bind = format!("{}/secret", bound.target);
    let dir = l.dir.path().to_string_lossy().into_owned();
    let routes: [&[&str]; 6] = [
        &["open", &hard],
        &["open", &soft],
        &["open", &via_bind],
        &["proc-fd", &secret],
        &["openat", &dir, "secret"],
        &["uring-open", &secret],
    ];
    let policy = l.policy("");
    let (session, lines) = attempt(&policy, &routes);
    if session.tiers().files == "lsm" {
        for route in routes {
            assert_eq!(outcome(&lines, route[0]), EPERM, "{route:?}: {}", session.dump());
        }
        assert!(lines.iter().any(|l| l == "done"));
        let opens = refused_by(&session, "file.open", "kernel:lsm/file_open");
        assert!(opens.len() >= 5, "{}", session.dump());
    } else {
        // Tier 2: each route kills the agent (io_uring is refused at io_uring_setup).
        for route in routes {
            let (session, lines) = attempt(&policy, &[route]);
            assert_eq!(session.exit_code(), 128 + 9, "{route:?}: {lines:?} {}", session.dump());
            assert!(!session.violations().is_empty(), "{route:?}");
        }
    }
}

/// An agent running as root cannot turn on the monitor.
#[test]
fn the_monitor_protects_itself() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-self");
    // The hooks are what this test proves: the session keeps every capability, so that
    // no check of the kernel's own (which the envelope's bounding set fails first,
    // unreported: bpf() without CAP_BPF) stops an attempt before it reaches them.
    let all_capabilities = "    envelope: {capabilities: {add: [ALL]}}\n";
    let policy = l.policy(all_capabilities);
    let policy_path = policy.to_string_lossy().into_owned();
    let mount_point = l.path("rw/m");
    std::fs::create_dir(&mount_point).unwrap();
    // Moving a process between cgroups (out of the session's, or the monitor into a
    // frozen one) is a write to a cgroup file: every cgroup filesystem is read-only in
    // the session's mount namespace, so the kernel refuses it first (EROFS, before any
    // hook), on both tiers, even with every capability (remounting is refused).
    let cgroup_procs = format!("{}/cgroup.procs", monitor_tests::cgroup2_mount());
    let (session, lines) = attempt(&policy, &[&["write", &cgroup_procs]]);
    assert_eq!(lines[0], format!("write errno={}", libc::EROFS), "{}", session.dump());
    let attempts: [&[&str]; 5] =
        [&["kill-parent"], &["ptrace-parent"], &["bpf-map"], &["mount-tmpfs", &mount_point], &["write", &policy_path]];
    // Signals, ptrace, bpf() and mount changes are the self-protection tier's: the LSM
    // hooks refuse and report them in every session, audit mode included; tier 2's
    // seccomp filter refuses them without a report. Writing the policy is an open,
    // judged by the files tier under the self-protection rule.
    let (reach, writes) = attempts.split_at(4);
    let (session, lines) = attempt(&policy, reach);
    let tiers = session.tiers();
    let check = |mode: &str, tried: &[&[&str]], session: &Session, lines: &[String]| {
        for (a, line) in tried.iter().zip(lines) {
            assert_eq!(line, &format!("{} {EPERM}", a[0]), "{mode}{a:?}: {}", session.dump());
        }
        assert!(lines.iter().any(|l| l == "done"), "{mode}{lines:?}");
        assert_eq!(session.of_type("session.end").len(), 1, "the monitor lived to end the session");
        let tampers = session.of_type("process.tamper");
        if tried.iter().any(|a| a[0] != "write") {
            if tiers.self_protection == "lsm" {
                for operation in ["signal", "ptrace", "bpf", "mount"] {
                    assert!(
                        tampers
                            .iter()
                            .any(|e| e["tamper"]["operation"] == operation && e["decision"]["action"] == "deny"),
                        "{mode}{operation}: {}",
                        session.dump()
                    );
                }
            } else {
                assert_eq!(tiers.self_protection, "seccomp");
                assert!(tampers.is_empty(), "seccomp does not report: {}", session.dump());
            }
        }
        if tried.iter().any(|a| a[0] == "write") {
            let rewrites = refused_by(session, "file.open", "kernel:lsm/file_open");
            assert!(
                rewrites.iter().any(|e| e["file"]["path"] == policy_path.as_str()
                    && e["decision"]["rule"].as_str().unwrap().starts_with("self-protection")),
                "{mode}{policy_path}: {}",
                session.dump()
            );
        }
    };
    check("", reach, &session, &lines);
    // Within the default envelope each is refused as well.
    let (enveloped, enveloped_lines) = attempt(&l.policy(""), reach);
    for (a, line) in reach.iter().zip(&enveloped_lines) {
        assert_eq!(line, &format!("{} {EPERM}", a[0]), "{a:?}: {}", enveloped.dump());
    }
    if tiers.files == "lsm" {
        let (session, lines) = attempt(&policy, writes);
        check("", writes, &session, &lines);
    } else {
        // Tier 2 kills after the open (so O_TRUNC has emptied the policy file: it goes
        // last, and is not checked to be intact).
        for a in writes.iter().rev() {
            let (session, lines) = attempt(&policy, &[a]);
            assert_eq!(session.exit_code(), 128 + 9, "{a:?}: {lines:?} {}", session.dump());
        }
        return;
    }
    // Audit mode: what the LSM hooks refuse for self-protection stays refused.
    let audited: Vec<&[&str]> = if tiers.self_protection == "lsm" { attempts.to_vec() } else { writes.to_vec() };
    let mode = "    mode: audit\n";
    let (session, lines) = attempt(&l.policy(&format!("{mode}{all_capabilities}")), &audited);
    check(mode, &audited, &session, &lines);
    assert!(std::fs::read_to_string(&policy).unwrap().contains("name: t"), "the policy file is intact");
}

/// `--no-lsm` holds a session to tier 2 even where BPF LSM works.
#[test]
fn no_lsm_falls_back_to_tier_2() {
    if !privileged() {
        return;
    }
    let l = Layout::new("lsm-off");
    let secret = l.path("secret");
    let policy = l.policy("");
    let session =
        run_session_with(&["--no-lsm", "--policy", policy.to_str().unwrap()], &[PROBE, "try", "open", &secret]);
    let e = &session.of_type("session.start")[0]["monitor"]["enforcement"];
    assert_eq!(e["files"], "tracepoint", "{e}");
    assert_eq!(session.exit_code(), 128 + 9, "tier 2 kills at the open: {}", session.dump());
}

/// `agent-monitor doctor --json` reports the same tiers a session gets.
#[test]
fn doctor_reports_the_tiers() {
    if !privileged() {
        return;
    }
    let output = Command::new(monitor_bin()).args(["doctor", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["arch"], std::env::consts::ARCH);
    assert_eq!(report["btf"], true);
    let hooks = report["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 34, "one per entry of loader::LSM_PROGRAMS: {report}");
    // Each resource has the LSM tier exactly where BPF LSM programs run and every hook
    // of that resource attached; the others keep tier 2.
    for (resource, tier_2) in
        [("files", "tracepoint"), ("exec", "tracepoint"), ("network", "cgroup"), ("self_protection", "seccomp")]
    {
        let attached = hooks.iter().filter(|h| h["resource"] == resource).all(|h| h["attached"] == true);
        let expected = if report["bpf_lsm_active"] == true && attached { "lsm" } else { tier_2 };
        assert_eq!(report["enforcement"][resource], expected, "{resource}: {report}");
    }
    // Tier 2 watches opens and connects on the syscall functions where the kernel runs
    // tracing programs, else on the syscall tracepoints; not at all where the LSM tier
    // has both files and network.
    let lsm_has_both = report["enforcement"]["files"] == "lsm" && report["enforcement"]["network"] == "lsm";
    let hooks_name = report["syscall_hooks"].as_str().unwrap_or_default();
    if lsm_has_both {
        assert_eq!(hooks_name, "none", "{report}");
    } else {
        assert!(hooks_name == "functions" || hooks_name == "tracepoints", "{report}");
    }
    if let Ok(expected) = std::env::var("AGENT_MONITOR_EXPECT_SYSCALL_HOOKS") {
        assert_eq!(hooks_name, expected, "{report}");
    }
    match monitor_tests::expect_lsm() {
        Some(true) => {
            assert_eq!(report["bpf_lsm_active"], true, "{report}");
            assert!(hooks.iter().all(|h| h["attached"] == true), "{report}");
        }
        Some(false) => {
            assert_eq!(report["bpf_lsm_active"], false, "{report}");
            assert_eq!(report["enforcement"]["files"], "tracepoint");
            assert!(report["lsm_unavailable"].is_string());
        }
        None => {}
    }
}

/// `mount --bind SOURCE TARGET`, undone on drop.
struct BindMount {
    target: String,
}

impl BindMount {
    fn new(source: &str, target: &str) -> BindMount {
        let status = Command::new("mount").args(["--bind", source, target]).status().expect("mount");
        assert!(status.success(), "mount --bind {source} {target}");
        BindMount { target: target.to_owned() }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}
