//! `exec:` covers how code really runs: the dynamic loader runs whatever program it is
//! given, by mapping it, with no exec of that program. It may be executed directly only
//! where an exec entry names it, not under an entry for its directory. With BPF LSM an
//! executable mapping of a file (`dlopen`, `LD_PRELOAD`, the loader mapping a program)
//! is judged against `exec:` too, the system's library directories aside.

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// The host's loader, as programs name it (`PT_INTERP`).
fn loader() -> &'static str {
    if cfg!(target_arch = "x86_64") { "/lib64/ld-linux-x86-64.so.2" } else { "/lib/ld-linux-aarch64.so.1" }
}

fn refused_execs(session: &Session) -> Vec<&serde_json::Value> {
    session.of_type("process.exec").into_iter().filter(|e| e["decision"]["action"] != "allow").collect()
}

#[test]
fn the_loader_runs_no_program_that_exec_does_not_allow() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("loader");
    let program = dir.path().join("true-copy");
    std::fs::copy("/usr/bin/true", &program).unwrap();
    let program = program.to_str().unwrap();
    let exec = "/usr, /bin, /lib, /lib64";
    let run = |exec: &str| {
        let policy = policy_file(
            &dir,
            &format!("version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    exec: [{exec}]\n"),
        );
        let script = format!("{program}; echo direct=$?; {} {program}; echo loader=$?", loader());
        run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script])
    };
    // The program itself is outside exec:, and so it stays through the loader.
    let session = run(exec);
    let lsm = session.tiers().exec == "lsm";
    // Refused at exec (the shell reports 126), or killed before the program runs.
    let refused = if lsm { 126 } else { 137 };
    assert!(session.stdout.contains(&format!("direct={refused}")), "{}", session.dump());
    assert!(session.stdout.contains(&format!("loader={refused}")), "{}", session.dump());
    let refusals = refused_execs(&session);
    assert!(
        refusals.iter().any(|e| e["decision"]["rule"].as_str().is_some_and(|r| r.starts_with("the dynamic loader"))),
        "{}",
        session.dump()
    );
    // An entry naming the loader (by its real path, as entries are matched) lets it run;
    // what it is given then runs on tier 2. With BPF LSM the loader cannot map a
    // program outside exec: either.
    let real = std::fs::canonicalize(loader()).unwrap();
    let session = run(&format!("{exec}, {}", real.display()));
    if lsm {
        assert!(!session.stdout.contains("loader=0"), "{}", session.dump());
        assert!(
            refused_execs(&session).iter().any(|e| e["exec"]["mapping"] == "mmap" && e["exec"]["path"] == program),
            "{}",
            session.dump()
        );
    } else {
        assert!(session.stdout.contains("loader=0"), "{}", session.dump());
    }
}

/// A file outside `exec:` is not mapped executable (BPF LSM: `mmap_file`,
/// `file_mprotect`), whether the agent maps it itself or has the loader preload it; the
/// programs under exec entries and the system's libraries map as ever. Tier 2 does not
/// see mappings (docs/POLICY.md).
#[test]
fn a_file_outside_exec_is_not_mapped_executable() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("mapping");
    let library = dir.path().join("library.so");
    std::fs::copy("/usr/bin/true", &library).unwrap();
    let library = library.to_str().unwrap();
    let probe_dir = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
    let policy = policy_file(
        &dir,
        &format!("version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    exec: [/usr, /bin, {probe_dir}]\n"),
    );
    let script = format!(
        r#""$0" try map-exec {library} -- mprotect-exec {library} -- map-exec /usr/bin/true; LD_PRELOAD={library} /usr/bin/true; echo preload=$?"#
    );
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script, PROBE]);
    let lines: Vec<&str> = session.stdout.lines().collect();
    // A preload the loader cannot map is skipped with a warning: the program runs.
    assert!(lines.contains(&"preload=0"), "{}", session.dump());
    let mappings: Vec<_> = refused_execs(&session).into_iter().filter(|e| e["exec"]["path"] == library).collect();
    if session.tiers().exec == "lsm" {
        let eperm = format!("errno={}", libc::EPERM);
        assert_eq!(
            lines[..4],
            [format!("map-exec {eperm}"), format!("mprotect-exec {eperm}"), "map-exec ok".into(), "done".into()],
            "{}",
            session.dump()
        );
        let hooks: Vec<_> =
            mappings.iter().map(|e| (e["exec"]["mapping"].as_str(), e["decision"]["enforced_by"].as_str())).collect();
        assert_eq!(
            hooks,
            [
                (Some("mmap"), Some("kernel:lsm/mmap_file")),
                (Some("mprotect"), Some("kernel:lsm/file_mprotect")),
                (Some("mmap"), Some("kernel:lsm/mmap_file"))
            ],
            "{}",
            session.dump()
        );
        assert!(mappings.iter().all(|e| e["decision"]["action"] == "deny"), "{}", session.dump());
    } else {
        assert_eq!(lines[..4], ["map-exec ok", "mprotect-exec ok", "map-exec ok", "done"], "{}", session.dump());
        assert!(mappings.is_empty(), "{}", session.dump());
    }
}

/// Where any program may run (the built-in profile's `exec: [/]`), so may the loader:
/// `ldd` runs it directly.
#[test]
fn where_any_program_may_run_so_may_the_loader() {
    if !privileged() {
        return;
    }
    let session = run_session(&[loader(), "--list", "/usr/bin/true"]);
    assert_eq!(session.exit_code(), 0, "{}", session.dump());
    assert!(refused_execs(&session).is_empty(), "{}", session.dump());
}
