//! Socket families other than unix, IPv4, IPv6 and netlink reach around the network
//! rules (a packet socket sends hand-built frames and reads other processes' traffic;
//! vsock reaches the hypervisor host; an unloaded family's module is loaded on demand):
//! refused unless the profile names them (`network.families`). With BPF LSM the socket
//! is refused before it is made; on tier 2 the process is killed at the syscall's entry.

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session_with};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// Unix stream, netlink route and UDP sockets in one probe; then a packet socket
/// (`ETH_P_ALL`) and a vsock socket, each in a probe of its own (tier 2 kills it).
const ATTEMPTS: &str = r#""$0" try socket 1 1 0 -- socket 16 3 0 -- socket 2 2 0
"$0" try socket 17 3 768
"$0" try socket 40 1 0
echo end"#;

fn session(network: &str) -> Session {
    let dir = TempDir::new("families");
    let policy = policy_file(
        &dir,
        &format!("version: 1\nprofiles:\n  - name: families\n    on_violation: deny\n{network}"),
    );
    run_session_with(
        &["--policy", policy.to_str().unwrap()],
        &["sh", "-c", ATTEMPTS, PROBE],
    )
}

/// The `process.syscall` event of a refused socket of `family`, if any.
fn refusal<'s>(session: &'s Session, family: &str) -> Option<&'s Value> {
    session
        .of_type("process.syscall")
        .into_iter()
        .find(|e| e["syscall"]["family"] == family)
}

/// `family` was refused, and said so.
fn assert_refused(session: &Session, family: &str) {
    let event = refusal(session, family)
        .unwrap_or_else(|| panic!("no refusal of {family}: {}", session.dump()));
    assert_eq!(event["syscall"]["name"], "socket", "{event}");
    assert!(
        event["decision"]["rule"]
            .as_str()
            .unwrap_or_default()
            .contains("network.families"),
        "{event}"
    );
    if session.tiers().network == "lsm" {
        assert_eq!(event["decision"]["action"], "deny", "{event}");
        assert_eq!(
            event["decision"]["enforced_by"], "kernel:lsm/socket_create",
            "{event}"
        );
    } else {
        assert_eq!(event["decision"]["action"], "kill", "{event}");
        assert_eq!(
            event["decision"]["enforced_by"], "kernel:sys_enter",
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
    assert_eq!(
        lines[..4],
        ["socket ok", "socket ok", "socket ok", "done"],
        "{}",
        session.dump()
    );
    assert_refused(&session, "packet");
    assert_refused(&session, "vsock");
    // Refused before the socket (or the family's module) is made, or killed before
    // the call returned: no probe saw a packet or vsock socket.
    let refused = format!("socket errno={}", libc::EPERM);
    let expected: &[&str] = if session.tiers().network == "lsm" {
        &[&refused, "done", &refused, "done"]
    } else {
        &[]
    };
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
    assert_eq!(
        lines[..6],
        [
            "socket ok",
            "socket ok",
            "socket ok",
            "done",
            "socket ok",
            "done"
        ],
        "{}",
        session.dump()
    );
    assert!(refusal(&session, "packet").is_none(), "{}", session.dump());
    assert_refused(&session, "vsock");
}
