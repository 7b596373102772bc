//! The event file is the monitor's: a session can neither make events disappear with it
//! nor pass off a forged one. With BPF LSM, moving or writing it is refused and
//! reported; without, the file sink sees that its name was taken, moves the impostor
//! aside, makes a new file and says so (`monitor.tamper`) in both files.

use std::process::Command;

use monitor_tests::{TempDir, policy_file, privileged};
use serde_json::Value;

fn events(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn the_event_file_survives_being_moved_and_replaced() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("audit-trail");
    let file = dir.path().join("events.ndjson");
    let moved = dir.path().join("events.ndjson.moved");
    let forged = dir.path().join("forged");
    // The session may write the directory (so only the monitor's own rules stand in
    // the way); refused attempts let it go on.
    let policy = policy_file(
        &dir,
        &format!(
            "version: 1\nprofiles:\n  - name: t\n    on_violation: deny\n    files:\n      read: [/]\n      write: [{}, /dev/null]\n",
            dir.path().display()
        ),
    );
    // The forged file takes the name by a rename, at once: the sink may notice the
    // first rename before it or not, but never writes into the forgery.
    let script = format!(
        "echo forged > {g}; {probe} try rename {f} {m} -- rename {g} {f}; cat /etc/hostname > /dev/null; echo finished",
        probe = env!("CARGO_BIN_EXE_probe"),
        f = file.display(),
        m = moved.display(),
        g = forged.display(),
    );
    let output = Command::new(monitor_tests::monitor_bin())
        .arg("run")
        .arg("--events")
        .arg(&file)
        .arg("--policy")
        .arg(&policy)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("finished"), "{output:?}");
    let now = events(&file);
    let before = events(&moved);
    let all: Vec<&Value> = before.iter().chain(&now).collect();
    let start = all.iter().find(|e| e["type"] == "session.start").expect("session.start");
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.ndjson.replaced-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    if start["monitor"]["enforcement"]["files"] == "lsm" {
        // Both renames refused (the event file is the monitor's), reported with the
        // self-protection rule; the file left alone, the forgery where it was.
        assert!(!moved.exists() && kept.is_empty() && forged.exists(), "{:?}", types(&now));
        let self_protection =
            |e: &&Value| e["decision"]["rule"].as_str().is_some_and(|r| r.starts_with("self-protection"));
        assert!(now.iter().filter(self_protection).filter(|e| e["type"] == "file.change").count() >= 2, "{now:#?}");
        assert_eq!(types(&now).last(), Some(&"session.end"));
        return;
    }
    // Tier 2: renames are not refused; the sink takes its name back, keeps the forgery
    // aside as it was, and says so at the end of the old file and the start of the new.
    assert!(kept.iter().any(|k| k == "forged\n"), "the impostor is kept aside as it was: {kept:?}");
    // (Events are written in batches: the moved file may have none yet, only the notice.)
    let notice = before.last().expect("the moved file ends with a notice");
    assert_eq!(notice["type"], "monitor.tamper", "{before:#?}");
    assert_eq!(notice["tamper"]["path"], file.to_str().unwrap());
    assert_eq!(now[0]["type"], "monitor.tamper", "the new file starts with a notice: {now:#?}");
    assert!(
        all.iter().any(|e| e["tamper"]["operation"] == "event-file-replaced" && e["tamper"]["kept_as"].is_string()),
        "{all:#?}"
    );
    assert_eq!(types(&now).last(), Some(&"session.end"));
    assert!(now.iter().any(|e| e["type"] == "file.open" && e["file"]["path"] == "/etc/hostname"), "{now:#?}");
}
