//! Network policy on the session's cgroup: a destination the profile does not allow is
//! refused with EPERM, over IPv4, IPv6, IPv4-mapped IPv6, io_uring, UDP sends and binds.
//! Only loopback addresses and listeners this test creates are used.

use std::net::TcpListener;

use monitor_tests::{Session, TempDir, policy_file, privileged, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
const EPERM: &str = "error=1";

fn run(dir: &TempDir, body: &str, command: &[&str]) -> Session {
    let policy = policy_file(dir, &format!("version: 1\nprofiles:\n  - name: net\n{body}"));
    run_session_with(&["--policy", policy.to_str().unwrap()], command)
}

/// Two listeners: `allowed` is in the profile, `other` is not.
fn listeners(addr: &str) -> (TcpListener, u16, TcpListener, u16) {
    let allowed = TcpListener::bind(addr).unwrap();
    let other = TcpListener::bind(addr).unwrap();
    let (a, o) = (allowed.local_addr().unwrap().port(), other.local_addr().unwrap().port());
    (allowed, a, other, o)
}

fn connect_events(session: &Session) -> Vec<&serde_json::Value> {
    session.of_type("net.connect")
}

#[test]
fn an_unlisted_loopback_port_is_refused_and_a_listed_one_works_over_ipv4() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net4");
    let (_a, allowed, _o, other) = listeners("127.0.0.1:0");
    let session = run(
        &dir,
        // deny: this test is about the refusal (kill after it is tested below).
        &format!("    on_violation: deny\n    network:\n      connect: [\"127.0.0.1:{allowed}\"]\n"),
        &["sh", "-c", &format!("{PROBE} connect 127.0.0.1:{allowed}; {PROBE} connect 127.0.0.1:{other}")],
    );
    assert_eq!(session.stdout, format!("connected\n{EPERM}\n"), "{}", session.dump());
    let events = connect_events(&session);
    assert_eq!(events.len(), 2, "{}", session.dump());
    assert_eq!(events[0]["decision"]["action"], "allow");
    assert_eq!(events[0]["decision"]["rule"], format!("network.connect[0] 127.0.0.1:{allowed}"));
    assert_eq!(events[1]["decision"]["action"], "deny");
    assert_eq!(events[1]["decision"]["enforced_by"], session.net_hook("connect", "socket_connect").as_str());
    assert_eq!(events[1]["decision"]["rule"], "no entry covers this address");
    assert_eq!(events[1]["net"]["errno"], 1);
}

#[test]
fn ipv6_and_ipv4_mapped_destinations_are_held_to_the_same_rules() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net6");
    let (_a6, allowed6, _o6, other6) = listeners("[::1]:0");
    let (_a4, allowed4, _o4, other4) = listeners("[::]:0"); // dual-stack: takes mapped v4
    let session = run(
        &dir,
        &format!(
            "    on_violation: deny\n    network:\n      connect: [\"[::1]:{allowed6}\", \"127.0.0.1:{allowed4}\"]\n"
        ),
        &[
            "sh",
            "-c",
            &format!(
                "{PROBE} connect [::1]:{allowed6}; {PROBE} connect [::1]:{other6}; \
                 {PROBE} connect [::ffff:127.0.0.1]:{allowed4}; {PROBE} connect [::ffff:127.0.0.1]:{other4}"
            ),
        ],
    );
    assert_eq!(session.stdout, format!("connected\n{EPERM}\nconnected\n{EPERM}\n"), "{}", session.dump());
    let events = connect_events(&session);
    assert_eq!(events[3]["net"]["mapped_ipv4"], "127.0.0.1");
    assert_eq!(events[3]["decision"]["action"], "deny");
    assert_eq!(events[2]["decision"]["rule"], format!("network.connect[1] 127.0.0.1:{allowed4}"));
}

#[test]
fn io_uring_cannot_bypass_the_network_policy() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-uring");
    let (_a, allowed, _o, other) = listeners("127.0.0.1:0");
    let session = run(
        &dir,
        // Without BPF LSM io_uring is refused unless allowed (its sockets would bypass
        // the family check); allowed, its connects still meet the cgroup hooks.
        &format!(
            "    on_violation: deny\n    allow_io_uring: true\n    network:\n      connect: [\"127.0.0.1:{allowed}\"]\n"
        ),
        &["sh", "-c", &format!("{PROBE} uring-connect 127.0.0.1:{allowed}; {PROBE} uring-connect 127.0.0.1:{other}")],
    );
    assert_eq!(session.stdout, format!("connected\n{EPERM}\n"), "{}", session.dump());
    // No connect syscall was made: the refusal is reported by the cgroup hook itself.
    let refused = session.violations();
    assert_eq!(refused.len(), 1, "{}", session.dump());
    assert_eq!(refused[0]["type"], "net.connect");
    assert_eq!(refused[0]["net"]["port"], other);
    assert!(refused[0]["net"].get("fd").is_none());
}

#[test]
fn udp_sends_and_binds_are_held_to_the_profile() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-udp");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let allowed = udp.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let session = run(
        &dir,
        &format!(
            "    on_violation: deny\n    network:\n      connect: [\"127.0.0.1:{allowed}\"]\n      bind: [\"127.0.0.1:9\"]\n"
        ),
        &[
            "sh",
            "-c",
            &format!(
                "{PROBE} udp-send 127.0.0.1:{allowed}; {PROBE} udp-send 127.0.0.1:{free}; {PROBE} bind 127.0.0.1:{free}"
            ),
        ],
    );
    // The probe binds its UDP socket to port 0 (kernel-chosen): not restricted.
    assert_eq!(session.stdout, format!("sent\n{EPERM}\n{EPERM}\n"), "{}", session.dump());
    let sends = session.of_type("net.send");
    assert_eq!(sends.len(), 1, "{}", session.dump());
    assert_eq!(sends[0]["net"]["port"], free);
    assert_eq!(sends[0]["decision"]["enforced_by"], session.net_hook("sendmsg", "socket_sendmsg").as_str());
    let binds = session.of_type("net.bind");
    assert_eq!(binds.len(), 1, "{}", session.dump());
    assert_eq!(binds[0]["decision"]["enforced_by"], session.net_hook("bind", "socket_bind").as_str());
}

#[test]
fn audit_mode_lets_the_connection_through_and_reports_it() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-audit");
    let (_a, allowed, _o, other) = listeners("127.0.0.1:0");
    let session = run(
        &dir,
        &format!("    mode: audit\n    network:\n      connect: [\"127.0.0.1:{allowed}\"]\n"),
        &[PROBE, "connect", &format!("127.0.0.1:{other}")],
    );
    assert_eq!(session.stdout.trim(), "connected");
    let events = connect_events(&session);
    assert_eq!(events[0]["decision"]["action"], "audit");
    // on_violation kill (the default): the LSM tier would refuse and kill in the kernel;
    // the cgroup tier refuses, and userspace kills.
    let would = if session.tiers().network == "lsm" { "kill" } else { "deny" };
    assert_eq!(events[0]["decision"]["would"], would);
}

#[test]
fn on_violation_kill_refuses_and_then_kills_the_process() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-kill");
    let (_a, allowed, _o, other) = listeners("127.0.0.1:0");
    let session = run(
        &dir,
        &format!("    on_violation: kill\n    network:\n      connect: [\"127.0.0.1:{allowed}\"]\n"),
        &[PROBE, "connect-then-live", &format!("127.0.0.1:{other}")],
    );
    // The refusal comes first (the kernel); the kill follows, from the kernel (LSM tier)
    // or from userspace (cgroup tier), possibly before the probe got to print the error.
    assert!(!session.stdout.contains("connected"), "{}", session.dump());
    assert!(!session.stdout.contains("still alive"), "{}", session.dump());
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    let refused = session.violations();
    let action = if session.tiers().network == "lsm" { "kill" } else { "deny" };
    assert_eq!(refused[0]["decision"]["action"], action, "{}", session.dump());
    assert_eq!(refused[0]["net"]["errno"], 1);
}

#[test]
fn what_the_session_leaves_running_is_killed_when_it_ends() {
    if !privileged() {
        return;
    }
    let session = monitor_tests::run_session(&["sh", "-c", "sleep 30 & echo bg=$!"]);
    let bg: u32 = session.stdout.trim().strip_prefix("bg=").unwrap().parse().unwrap();
    let end = &session.of_type("session.end")[0];
    assert_eq!(end["session"]["remaining_pids"], serde_json::json!([bg]), "{}", session.dump());
    // Its exit was seen: it died with the session.
    let exit = session.of_type("process.exit").into_iter().find(|e| e["process"]["pid"] == bg);
    assert_eq!(exit.expect("exit of the left-behind process")["exit"]["signal"], 9);
    assert!(
        !std::path::Path::new(&format!("/proc/{bg}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
}

#[test]
fn a_host_name_rule_allows_the_addresses_it_resolves_to() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-host");
    let (_a, allowed, _o, other) = listeners("127.0.0.1:0");
    let session = run(
        &dir,
        &format!("    on_violation: deny\n    network:\n      connect: [\"localhost:{allowed}\"]\n"),
        &["sh", "-c", &format!("{PROBE} connect 127.0.0.1:{allowed}; {PROBE} connect 127.0.0.1:{other}")],
    );
    assert_eq!(session.stdout, format!("connected\n{EPERM}\n"), "{}", session.dump());
    let events = connect_events(&session);
    assert_eq!(events[0]["decision"]["rule"], format!("network.connect[0] localhost:{allowed}"));
}

#[test]
fn raw_and_icmp_sockets_are_refused_where_connections_are_restricted() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("net-raw");
    let session =
        run(&dir, "    on_violation: deny\n    network:\n      connect: [\"127.0.0.1:9\"]\n", &[PROBE, "raw-socket"]);
    assert_eq!(session.stdout.trim(), EPERM, "{}", session.dump());
    assert_eq!(session.violations()[0]["syscall"]["name"], "socket(raw or ICMP)");
    // Where connections are not restricted, a root agent may open one.
    let open = run(&dir, "    exec: [/]\n", &[PROBE, "raw-socket"]);
    assert!(open.stdout.starts_with("fd="), "{}", open.dump());
}
