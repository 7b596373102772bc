//! Socket families other than unix, IPv4, IPv6 and netlink reach around the network
//! rules (a packet socket sends hand-built frames and reads other processes' traffic;
//! vsock reaches the hypervisor host; an unloaded family's module is loaded on demand):
//! refused unless the profile names them (`network.families`). With BPF LSM the socket
//! is refused before it is made; on tier 2 the process is killed at the syscall's entry.

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session_with};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// Unix stream, netlink route and UDP sockets in one probe; then a packet socket
/// (`ETH_P_ALL`), a vsock socket and an `AF_INET` `SOCK_PACKET` socket (which the kernel
/// makes a packet socket), each in a probe of its own (tier 2 kills it).
const ATTEMPTS: &str = r#""$0" try socket 1 1 0 -- socket 16 3 0 -- socket 2 2 0
"$0" try socket 17 3 768
"$0" try socket 40 1 0
"$0" try socket 2 10 768
echo end"#;

fn session(network: &str) -> Session {
    let dir = TempDir::new("families");
    let policy =
        policy_file(&dir, &format!("version: 1\nprofiles:\n  - name: families\n    on_violation: deny\n{network}"));
    run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", ATTEMPTS, PROBE])
}

/// The `process.syscall` events of refused sockets of `family`.
fn refusals<'s>(session: &'s Session, family: &str) -> Vec<&'s Value> {
    session.of_type("process.syscall").into_iter().filter(|e| e["syscall"]["family"] == family).collect()
}

/// `family` was refused `times` times, and said so.
fn assert_refused(session: &Session, family: &str, times: usize) {
    let events = refusals(session, family);
    assert_eq!(events.len(), times, "refusals of {family}: {}", session.dump());
    for event in events {
        assert_eq!(event["syscall"]["name"], "socket", "{event}");
        assert!(event["decision"]["rule"].as_str().unwrap_or_default().contains("network.families"), "{event}");
        let (action, hook) = if session.tiers().network == "lsm" {
            ("deny", "kernel:lsm/socket_create")
        } else {
            ("kill", "kernel:sys_enter")
        };
        assert_eq!(
            (event["decision"]["action"].as_str(), event["decision"]["enforced_by"].as_str()),
            (Some(action), Some(hook)),
            "{event}"
        );
    }
}

#[test]
fn families_a_profile_does_not_name_are_refused() {
    if !privileged() {
        return;
    }
    let session = session("");
    let lines: Vec<&str> = session.stdout.lines().collect();
    assert_eq!(lines[..4], ["socket ok", "socket ok", "socket ok", "done"], "{}", session.dump());
    // AF_PACKET, and AF_INET with SOCK_PACKET.
    assert_refused(&session, "packet", 2);
    assert_refused(&session, "vsock", 1);
    // Refused before the socket (or the family's module) is made, or killed before
    // the call returned: no probe saw a packet or vsock socket.
    let refused = format!("socket errno={}", libc::EPERM);
    let expected: &[&str] =
        if session.tiers().network == "lsm" { &[&refused, "done", &refused, "done", &refused, "done"] } else { &[] };
    assert_eq!(lines[4..lines.len() - 1], *expected, "{}", session.dump());
    assert_eq!(lines.last(), Some(&"end"), "{}", session.dump());
}

#[test]
fn a_family_the_profile_names_is_allowed() {
    if !privileged() {
        return;
    }
    let session = session("    network:\n      families: [packet]\n");
    let lines: Vec<&str> = session.stdout.lines().collect();
    assert_eq!(lines[..6], ["socket ok", "socket ok", "socket ok", "done", "socket ok", "done"], "{}", session.dump());
    assert_refused(&session, "packet", 0);
    assert_refused(&session, "vsock", 1);
}

/// What would reach around the family check on tier 2 is refused in every profile, not
/// only in those with `files:`: io_uring (its socket operation), a process sharing its
/// parent's descriptor table (it would keep a socket the killed creator made).
#[test]
fn ways_around_the_family_check_are_refused_without_file_rules() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("families-doors");
    let policy = policy_file(
        &dir,
        "version: 1\nprofiles:\n  - name: network-only\n    network:\n      connect: [\"127.0.0.1:9\"]\n",
    );
    let script = r#""$0" uring-open /etc/hostname; echo uring=$?; "$0" clone-files; echo clone=$?"#;
    let session = run_session_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", script, PROBE]);
    let refused: Vec<_> =
        session.of_type("process.syscall").into_iter().map(|e| e["syscall"]["name"].clone()).collect();
    if session.tiers().network == "lsm" {
        // The LSM hooks see io_uring's sockets, and refuse a family before any socket exists.
        assert!(session.stdout.contains("uring=0") && session.stdout.contains("clone=0"), "{}", session.dump());
        assert!(refused.is_empty(), "{}", session.dump());
    } else {
        assert!(session.stdout.contains("uring=137") && session.stdout.contains("clone=137"), "{}", session.dump());
        assert_eq!(refused, ["io_uring_setup", "clone(CLONE_FILES)"], "{}", session.dump());
    }
}
