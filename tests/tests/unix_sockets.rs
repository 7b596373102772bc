//! A unix socket bound to a name is governed as the file it is: connecting or sending
//! to it is a write to its name. A deputy's socket outside `files.write` (a container
//! runtime's, the system bus) is out of reach; one the profile lets the agent write is
//! not.

use std::os::unix::net::{UnixDatagram, UnixListener};

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

fn connects_to<'a>(session: &'a Session, path: &str) -> Vec<&'a serde_json::Value> {
    session.of_type("file.change").into_iter().filter(|e| e["change"]["path"] == path).collect()
}

/// A socket in a directory the profile only reads: refused (tier 1: EPERM before the
/// connection exists; tier 2: killed when connect returns, before the agent can use
/// it); in a directory it may write: allowed, and reported.
#[test]
fn a_socket_is_reached_only_where_the_profile_lets_the_agent_write() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("unix-rules");
    let closed = dir.path().join("closed");
    let open = dir.path().join("open");
    std::fs::create_dir(&closed).unwrap();
    std::fs::create_dir(&open).unwrap();
    let (denied, allowed) = (closed.join("deputy.sock"), open.join("agent.sock"));
    let _deputy = UnixListener::bind(&denied).unwrap();
    let _own = UnixListener::bind(&allowed).unwrap();
    let policy = policy_file(
        &dir,
        &format!(
            "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    files:\n      read: [/]\n      write: [{}]\n",
            open.display()
        ),
    );
    let options = ["--policy", policy.to_str().unwrap()];
    let session = run_session_with(&options, &[PROBE, "connect-unix", allowed.to_str().unwrap()]);
    assert_eq!(session.stdout.trim(), "connected", "{}", session.dump());
    let allowed_events = connects_to(&session, allowed.to_str().unwrap());
    assert_eq!(allowed_events.len(), 1, "{}", session.dump());
    assert_eq!(allowed_events[0]["change"]["operation"], "connect");
    assert_eq!(allowed_events[0]["decision"]["action"], "allow");

    let session = run_session_with(&options, &[PROBE, "connect-unix", denied.to_str().unwrap()]);
    let refused = connects_to(&session, denied.to_str().unwrap());
    assert_eq!(refused.len(), 1, "{}", session.dump());
    assert_eq!(refused[0]["change"]["operation"], "connect");
    if session.tiers().files == "lsm" {
        assert_eq!(session.stdout.trim(), format!("error={}", libc::EPERM), "{}", session.dump());
        assert_eq!(refused[0]["decision"]["action"], "deny");
        assert_eq!(refused[0]["decision"]["enforced_by"], "kernel:lsm/unix_stream_connect");
    } else {
        assert_eq!(session.exit_code(), 128 + libc::SIGKILL, "{}", session.dump());
        assert_eq!(session.stdout.trim(), "", "killed before connect returned: {}", session.dump());
        assert_eq!(refused[0]["decision"]["action"], "kill");
        assert_eq!(refused[0]["decision"]["enforced_by"], "kernel:sys_exit");
    }
}

/// A datagram to a socket the profile does not let the agent write (BPF LSM tier; tier
/// 2 sees only `connect`).
#[test]
fn a_datagram_to_a_closed_socket_is_refused_with_bpf_lsm() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("unix-dgram");
    let path = dir.path().join("log.sock");
    let _receiver = UnixDatagram::bind(&path).unwrap();
    let policy =
        policy_file(&dir, "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    files:\n      read: [/]\n");
    let session =
        run_session_with(&["--policy", policy.to_str().unwrap()], &[PROBE, "unix-send", path.to_str().unwrap()]);
    if session.tiers().files != "lsm" {
        return;
    }
    assert_eq!(session.stdout.trim(), format!("error={}", libc::EPERM), "{}", session.dump());
    let refused = connects_to(&session, path.to_str().unwrap());
    assert_eq!(refused[0]["change"]["operation"], "send", "{}", session.dump());
    assert_eq!(refused[0]["decision"]["enforced_by"], "kernel:lsm/unix_may_send");
}

/// The built-in profile: a socket outside what it lets the agent write (here one under
/// /run, like a container runtime's) is out of reach.
#[test]
fn the_default_profile_keeps_deputies_out_of_reach() {
    if !privileged() {
        return;
    }
    let path = std::path::PathBuf::from(format!("/run/agent-monitor-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let session = run_session(&[PROBE, "connect-unix", path.to_str().unwrap()]);
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let refused = connects_to(&session, path.to_str().unwrap());
    assert_eq!(refused.len(), 1, "{}", session.dump());
    assert_eq!(refused[0]["decision"]["action"], "kill", "{}", session.dump());
    assert_ne!(session.stdout.trim(), "connected", "{}", session.dump());
}

/// An abstract socket (no name in the file tree) and an unnamed pair are not governed:
/// no rule can name them, and no refusal (nor kill) comes of reaching them.
#[test]
fn abstract_sockets_are_not_governed() {
    if !privileged() {
        return;
    }
    use std::os::linux::net::SocketAddrExt;
    let name = format!("agent-monitor-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = UnixListener::bind_addr(&address).unwrap();
    let session = run_session(&[PROBE, "connect-unix", &format!("@{name}")]);
    assert_eq!(session.stdout.trim(), "connected", "{}", session.dump());
    assert!(session.violations().is_empty(), "{}", session.dump());
    assert_eq!(session.exit_code(), 0, "{}", session.dump());
}
