//! `agent-monitor policy check|default|explain` and `run`'s profile selection, on real
//! files. (No eBPF: these need no root.)

use std::process::{Command, Output};

use monitor_tests::{TempDir, monitor_bin};

fn agent_monitor(args: &[&str]) -> Output {
    Command::new(monitor_bin()).args(args).output().expect("running agent-monitor")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn check(dir: &TempDir, name: &str, yaml: &str) -> (i32, String) {
    let path = dir.path().join(name);
    std::fs::write(&path, yaml).unwrap();
    let output = agent_monitor(&["policy", "check", path.to_str().unwrap()]);
    (output.status.code().unwrap(), stdout(&output))
}

#[test]
fn check_names_every_error_of_each_broken_file() {
    let dir = TempDir::new("policy-check");
    // (file, content, what must be named in the report)
    let broken: &[(&str, &str, &[&str])] = &[
        ("syntax.yaml", "version: 1\nprofiles: [\n", &["file", "YAML"]),
        ("no-version.yaml", "profiles:\n  - name: a\n", &["version: missing version", "add version: 1"]),
        (
            "unknown-fields.yaml",
            "version: 1\ncolour: red\nprofiles:\n  - name: a\n    mdoe: audit\n    files: {reed: [/x]}\n",
            &["colour: unknown field", "profile a: mdoe: unknown field", "profile a: files.reed: unknown field"],
        ),
        (
            "bad-values.yaml",
            "version: 1\nprofiles:\n  - name: agent\n    mode: strict\n    on_violation: nuke\n",
            &[
                "profile agent: mode",
                "use mode: audit or mode: enforce",
                "profile agent: on_violation",
                "use deny, kill or kill-session",
            ],
        ),
        (
            "bad-paths.yaml",
            "version: 1\nprofiles:\n  - name: p\n    files:\n      read: [etc, \"/a/../b\", \"/x/y**\", ~]\n      deny: [\"**/\"]\n",
            &[
                "profile p: files.read[0]: \"etc\" is not an absolute path",
                "write it from the root, e.g. /etc",
                "files.read[1]",
                "files.read[2]",
                "files.read[3]: empty entry (a bare ~ is YAML for nothing)",
                "files.deny[0]",
            ],
        ),
        (
            "bad-network.yaml",
            "version: 1\nprofiles:\n  - name: n\n    network:\n      connect: [\"10.0.0.0/33:443\", \"1.2.3.4:70000\", \"[::1:80\", \"bad_host:1\"]\n",
            &["network.connect[0]", "network.connect[1]", "network.connect[2]", "network.connect[3]"],
        ),
        (
            "conflicts.yaml",
            "version: 1\nprofiles:\n  - name: c\n    files: {read: [/srv], deny: [/srv]}\n  - name: c\n",
            &["profile c: files.deny[0]", "keep the path in one list only", "profile name \"c\" is used twice"],
        ),
    ];
    for (name, yaml, expected) in broken {
        let (code, report) = check(&dir, name, yaml);
        assert_eq!(code, 1, "{name} was accepted:\n{report}");
        for needle in *expected {
            assert!(report.contains(needle), "{name}: report lacks {needle:?}:\n{report}");
        }
    }
}

#[test]
fn check_accepts_the_documented_example_and_the_default_policy() {
    let dir = TempDir::new("policy-ok");
    let (code, report) = check(
        &dir,
        "example.yaml",
        "version: 1\nprofiles:\n  - name: coding-agent\n    mode: enforce\n    on_violation: kill\n    files:\n      read:  [/usr, /lib, /etc/ssl, /workspace]\n      write: [/workspace, /tmp]\n      deny:  [/etc/shadow, /root, \"/home/*/.ssh\"]\n    network:\n      connect: [\"127.0.0.1:8080\", \"10.0.0.0/8:443\", \"[::1]:9000\", \"api.example.com:443\"]\n    exec: [/usr/bin, /bin]\n",
    );
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("ok (1 profile(s): coding-agent)"), "{report}");

    let default = agent_monitor(&["policy", "default"]);
    assert!(default.status.success());
    let (code, report) = check(&dir, "default.yaml", &stdout(&default));
    assert_eq!(code, 0, "the built-in policy does not pass its own check:\n{report}");
}

#[test]
fn explain_says_how_each_rule_is_enforced() {
    let output = agent_monitor(&["policy", "explain"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    assert!(text.contains("profile default"), "{text}");
    assert!(text.contains("files.deny[0] /etc/shadow") && text.contains("kernel: path table"), "{text}");
    assert!(text.contains("**/.env") && text.contains("kernel: file-name table"), "{text}");
    assert!(text.contains("network.connect[0]") && text.contains("kernel: cgroup socket hooks"), "{text}");
    assert!(text.contains("io_uring: refused"), "{text}");
}

#[test]
fn run_rejects_an_unknown_profile_or_a_broken_policy_before_starting_anything() {
    let dir = TempDir::new("policy-run");
    let path = dir.path().join("two.yaml");
    std::fs::write(&path, "version: 1\nprofiles:\n  - name: a\n  - name: b\n").unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let policy = path.to_str().unwrap();

    let unknown = agent_monitor(&["run", "--policy", policy, "--profile", "zzz", "--", "sh", "-c", &touch]);
    assert_eq!(unknown.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no profile \"zzz\"") && stderr.contains("a, b"), "{stderr}");

    let ambiguous = agent_monitor(&["run", "--policy", policy, "--", "sh", "-c", &touch]);
    assert_eq!(ambiguous.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&ambiguous.stderr).contains("choose one with --profile"));

    std::fs::write(&path, "version: 1\nprofiles:\n  - name: a\n    mode: loud\n").unwrap();
    let broken = agent_monitor(&["run", "--policy", policy, "--", "sh", "-c", &touch]);
    assert_eq!(broken.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("profile a: mode"));

    assert!(!marker.exists(), "the agent ran although its policy was rejected");
}

#[test]
fn check_lists_what_the_daemon_would_adopt() {
    let dir = TempDir::new("policy-match");
    let (code, out) = check(
        &dir,
        "p.yaml",
        "version: 1\nprofiles:\n  - name: agent\n    match:\n      - {exe: /bin/sh}\n      - {exe: /opt/none/claude, uid: 1000}\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"daemon adopts into agent: match[0] {"exe":"/bin/sh"}"#), "{out}");
    assert!(out.contains("not on this host: /opt/none/claude"), "{out}");
}
