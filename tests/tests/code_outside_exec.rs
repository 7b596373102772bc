//! `exec:` covers how code really runs: the dynamic loader runs whatever program it is
//! given, by mapping it, with no exec of that program. It may be executed directly only
//! where an exec entry names it, not under an entry for its directory.

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session, run_session_with};

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
        let policy = policy_file(&dir, &format!("version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    exec: [{exec}]\n"));
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
    // An entry naming the loader (by its real path, as entries are matched) lets it run,
    // and so what it is given.
    let real = std::fs::canonicalize(loader()).unwrap();
    let session = run(&format!("{exec}, {}", real.display()));
    assert!(session.stdout.contains("loader=0"), "{}", session.dump());
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
