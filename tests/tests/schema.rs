//! Real output of `agent-monitor run`, every line, validated against the published
//! JSON Schema (docs/event.schema.json).

use std::net::TcpListener;

use monitor_tests::{privileged, run_session};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
const SCHEMA: &str = include_str!("../../docs/event.schema.json");

#[test]
fn every_event_of_a_real_session_matches_the_schema() {
    if !privileged() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "cd /etc && cat hostname >/dev/null; {PROBE} connect 127.0.0.1:{port}; {PROBE} threads /etc/hostname; \
         {PROBE} openat /etc hostname; sh -c 'exit 3'; {PROBE} kill-self 15; true"
    );
    let session = run_session(&["sh", "-c", &script]);
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("schema compiles");
    let mut seen = std::collections::BTreeSet::new();
    for event in &session.events {
        let errors: Vec<String> = validator.iter_errors(event).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{event}\n{errors:#?}");
        seen.insert(event["type"].as_str().unwrap().to_owned());
    }
    for required in
        ["session.start", "session.end", "process.start", "process.exec", "process.exit", "file.open", "net.connect"]
    {
        assert!(seen.contains(required), "no {required} event in\n{}", session.dump());
    }
    // Exactly one session.start and session.end, first and last.
    assert_eq!(session.events.first().unwrap()["type"], "session.start");
    assert_eq!(session.events.last().unwrap()["type"], "session.end");
    let end = session.events.last().unwrap();
    assert_eq!(end["loss"]["ringbuf_full"], 0);
    // Read from the programs' fdinfo: present, and nothing skipped in a quiet session.
    assert_eq!(end["loss"]["programs_skipped"], 0, "{}", session.dump());
    assert_eq!(end["monitor"]["events"], session.events.len());
}
