//! Ordinary tools run under the built-in profile without a violation: what an agent does
//! all day must not be mistaken for reaching for secrets. Host only (the VMs carry
//! none of these tools); `scripts/setup.sh` installs what a fresh machine lacks.

use monitor_tests::{TempDir, privileged, run_session};

/// Runs `script` as a session under the built-in profile; fails on any violation or if
/// the script did not finish (it prints `done`).
fn runs_clean(script: &str) {
    let session = run_session(&["sh", "-c", &format!("set -e\n{script}\necho done")]);
    assert!(session.violations().is_empty(), "violations:\n{}", session.dump());
    assert!(session.stdout.contains("done"), "did not finish:\n{}", session.dump());
}

#[test]
fn git_init_add_commit_and_log() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("git");
    runs_clean(&format!(
        "cd '{}'; git init -q repo; cd repo; git config user.email a@example.com; git config user.name agent; \
         echo hello > README; git add README; git commit -qm first; git log --oneline | grep -q first",
        dir.path().display()
    ));
}

#[test]
fn python_with_its_standard_library() {
    if !privileged() {
        return;
    }
    runs_clean("python3 -c 'import json, sqlite3, ssl, subprocess, threading; threading.Thread(target=print).start()'");
}

#[test]
fn ssh_keygen_makes_and_lists_a_key() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("ssh");
    let key = dir.path().join("agent_key");
    runs_clean(&format!("ssh-keygen -q -t ed25519 -N '' -f '{0}'; ssh-keygen -l -f '{0}.pub'", key.display()));
}

#[test]
fn dig_and_curl_against_loopback() {
    if !privileged() {
        return;
    }
    // Nothing listens on these ports: the tools fail to connect and say so; neither
    // may be killed (dig names its threads through /proc/self/task/N/comm).
    runs_clean(
        "dig @127.0.0.1 -p 9 example.invalid +time=1 +tries=1 >/dev/null || test $? -eq 9; \
         curl -s --max-time 2 http://127.0.0.1:9/ || test $? -eq 7; curl --version >/dev/null",
    );
}
