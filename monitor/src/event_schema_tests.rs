//! Pins the NDJSON event format to docs/event.schema.json: every event type, built
//! through the code that builds it in production, must validate; malformed events
//! must not; and the example lines in docs/EVENTS.md must validate too.

use std::{collections::BTreeSet, os::unix::fs::MetadataExt};

use monitor_common::event::{EventHeader, flags, kind, open_syscall};
use serde_json::{Value, json};

use crate::{
    clock::BootClock,
    decode::{KernelEvent, SocketAddress, Verdict, fs_path},
    event::{Event, Loss, Monitor, types},
    pipeline::{Context, Pipeline, exit_status, session_ref},
    process_tree::ProcessTree,
    sink::Sink,
};

const SCHEMA: &str = include_str!("../../docs/event.schema.json");
const EVENTS_MD: &str = include_str!("../../docs/EVENTS.md");

const SESSION: u64 = 0x00c0_ffee_1234_abcd;
const ROOT: u32 = 4100;
const CHILD: u32 = 4101;
const MONITOR_PID: u32 = 4099;

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("docs/event.schema.json is not JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("docs/event.schema.json does not compile")
}

/// Panics with every validation error if `event` does not validate.
fn assert_valid(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator.iter_errors(event).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "event does not validate:\n{event:#}\n{}", errors.join("\n"));
}

fn to_json(event: &Event) -> Value {
    // Through the same serializer the sink uses, then back: what a consumer reads.
    let line = serde_json::to_string(event).unwrap();
    assert!(!line.contains('\n'), "an event must fit on one line: {line}");
    serde_json::from_str(&line).unwrap()
}

/// Kernel dev_t (major << 20 | minor) of the filesystem holding `path`.
fn kernel_dev(path: &str) -> u32 {
    let dev = std::fs::metadata(path).unwrap().dev();
    (libc::major(dev) << 20) | libc::minor(dev)
}

/// A device no filesystem is mounted from.
const UNMOUNTED_DEV: u32 = (4000 << 20) | 77;

fn header(event_kind: u16, tgid: u32, tid: u32, start_time_ns: u64, event_flags: u16) -> EventHeader {
    EventHeader {
        kind: event_kind,
        flags: event_flags,
        size: 0,
        time_ns: BootClock::now_boot_ns(),
        session_id: SESSION,
        tgid,
        tid,
        uid: 1000,
        gid: 1000,
        start_time_ns,
    }
}

fn pipeline() -> Pipeline {
    let mut tree = ProcessTree::new();
    tree.add_root(ROOT, MONITOR_PID, SESSION);
    Pipeline::new(Context::new(), tree, Sink::new(Box::new(std::io::sink())))
}

fn monitor_info(events: Option<u64>) -> Monitor {
    Monitor {
        version: env!("CARGO_PKG_VERSION"),
        pid: MONITOR_PID,
        kernel: "6.1.0-test".into(),
        arch: std::env::consts::ARCH,
        events,
        latency: None,
    }
}

/// One session's worth of events, built the way `run` and `Pipeline::translate` build
/// them: every event type, several variants of the optional parts.
fn session_events() -> Vec<Value> {
    let mut pipeline = pipeline();
    let root_start = BootClock::now_boot_ns();
    let child_start = root_start + 1_000;
    let root_fs = kernel_dev("/");
    let mut out = Vec::new();

    let mut start = pipeline.context.event(types::SESSION_START, BootClock::now_boot_ns(), session_ref(SESSION));
    start.session.root_pid = Some(ROOT);
    start.session.command = Some(vec!["sh".into(), "-c".into(), "cat /etc/hostname".into()]);
    start.monitor = Some(monitor_info(None));
    pipeline.sink.write(&start).unwrap();
    out.push(to_json(&start));

    let mut translate = |event: KernelEvent| to_json(&pipeline.translate(event));

    // Before its first exec the root's program is unknown: exe is null.
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, ROOT, ROOT, root_start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: libc::O_RDONLY as u32 | libc::O_CLOEXEC as u32,
        f_mode: 0x1,
        fd: 3,
        ino: 42,
        dev: root_fs,
        path: fs_path(b"/etc/ld.so.cache/"),
        verdict: Verdict::ALLOW,
    }));
    out.push(translate(KernelEvent::Exec {
        header: header(kind::PROCESS_EXEC, ROOT, ROOT, root_start, 0),
        path: fs_path(b"/usr/bin/dash/"),
        verdict: Verdict::ALLOW,
        argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"cat /etc/hostname".to_vec()],
        ino: 7,
        dev: root_fs,
    }));
    out.push(translate(KernelEvent::Fork {
        header: header(kind::PROCESS_FORK, ROOT, ROOT + 5, root_start, 0),
        child_tgid: CHILD,
        child_start_time_ns: child_start,
    }));
    // Truncated argv and path; a non-UTF-8 argument.
    out.push(translate(KernelEvent::Exec {
        header: header(kind::PROCESS_EXEC, CHILD, CHILD, child_start, flags::ARGV_TRUNCATED | flags::PATH_TRUNCATED),
        path: fs_path(b"/bin/cat/"),
        verdict: Verdict::ALLOW,
        argv: vec![b"cat".to_vec(), b"/etc/hostname".to_vec(), b"\xff\xfe".to_vec()],
        ino: 8,
        dev: root_fs,
    }));
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, 0),
        syscall: open_syscall::OPEN,
        open_flags: libc::O_RDONLY as u32,
        f_mode: 0x1,
        fd: 3,
        ino: 611,
        dev: root_fs,
        path: fs_path(b"/etc/hostname/"),
        verdict: Verdict::ALLOW,
    }));
    // Created, truncated, read-write; a name that is not UTF-8; a filesystem with no
    // visible mount; a path cut short.
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, flags::PATH_TRUNCATED),
        syscall: open_syscall::OPENAT2,
        open_flags: (libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u32,
        f_mode: 0x1 | 0x2 | 0x10_0000,
        fd: 4,
        ino: 9,
        dev: UNMOUNTED_DEV,
        path: fs_path(b"/tmp/bad\xffname/"),
        verdict: Verdict::ALLOW,
    }));
    // An O_PATH descriptor (access none), a write-only creat, open_by_handle_at.
    for (syscall, open_flags, f_mode) in [
        (open_syscall::OPENAT, libc::O_PATH as u32 | libc::O_DIRECTORY as u32, 0x4000),
        (open_syscall::CREAT, (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32, 0x2 | 0x10_0000),
        (open_syscall::OPEN_BY_HANDLE_AT, libc::O_RDONLY as u32, 0),
    ] {
        out.push(translate(KernelEvent::FileOpen {
            header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, 0),
            syscall,
            open_flags,
            f_mode,
            fd: 5,
            ino: 10,
            dev: root_fs,
            path: fs_path(b"/"),
            verdict: Verdict::ALLOW,
        }));
    }
    for (ret, addr) in [
        (-111, SocketAddress::Inet { addr: [127, 0, 0, 1].into(), port: 1 }),
        (-115, SocketAddress::Inet6 { addr: "::ffff:10.0.0.1".parse().unwrap(), port: 443, scope_id: 0 }),
        (0, SocketAddress::Inet6 { addr: "2001:db8::1".parse().unwrap(), port: 80, scope_id: 0 }),
        (0, SocketAddress::Unix { path: b"/run/x.sock".to_vec(), abstract_name: false }),
        (-111, SocketAddress::Unix { path: b"name".to_vec(), abstract_name: true }),
        (-97, SocketAddress::Other { family: 16 }),
    ] {
        out.push(translate(KernelEvent::Connect {
            header: header(kind::NET_CONNECT, ROOT, ROOT, root_start, 0),
            ret,
            fd: 3,
            addr,
        }));
    }
    // Exit normally with code 3, and by SIGSEGV with a core dump.
    out.push(translate(KernelEvent::Exit {
        header: header(kind::PROCESS_EXIT, CHILD, CHILD, child_start, 0),
        exit_code: 3 << 8,
    }));
    out.push(translate(KernelEvent::Exit {
        header: header(kind::PROCESS_EXIT, ROOT, ROOT, root_start, 0),
        exit_code: 11 | 0x80,
    }));

    // One event through `handle`, as `run` feeds them, so that session.end reports latency.
    pipeline
        .handle(KernelEvent::Exit {
            header: header(kind::PROCESS_EXIT, CHILD + 1, CHILD + 1, child_start + 1, 0),
            exit_code: 0,
        })
        .unwrap();

    let loss = Loss {
        ringbuf_full: 1,
        session_map_full: 2,
        kernel_read_error: 3,
        pending_map_full: 4,
        decision_ringbuf_full: 7,
        decode_error: 5,
        queue_full: 6,
    };
    let mut loss_event = pipeline.context.event(types::MONITOR_LOSS, BootClock::now_boot_ns(), session_ref(SESSION));
    loss_event.loss = Some(loss);
    pipeline.sink.write(&loss_event).unwrap();
    out.push(to_json(&loss_event));

    let mut end = pipeline.context.event(types::SESSION_END, BootClock::now_boot_ns(), session_ref(SESSION));
    end.session.root_pid = Some(ROOT);
    end.session.remaining_pids = Some(vec![CHILD + 1]);
    end.exit = Some(exit_status(11 | 0x80));
    end.loss = Some(loss);
    let mut info = monitor_info(Some(pipeline.sink.written() + 1));
    info.latency = pipeline.latency();
    end.monitor = Some(info);
    out.push(to_json(&end));
    out
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

/// The `type` enum of the schema.
fn schema_types() -> BTreeSet<String> {
    schema()["properties"]["type"]["enum"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("docs/event.schema.json is not a valid 2020-12 schema: {error}");
    }
    validator();
    let expected: BTreeSet<String> = [
        types::SESSION_START,
        types::SESSION_END,
        types::PROCESS_START,
        types::PROCESS_EXEC,
        types::PROCESS_EXIT,
        types::FILE_OPEN,
        types::NET_CONNECT,
        types::MONITOR_LOSS,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(schema_types(), expected);
    // The schema promises additive changes: nothing may forbid unknown fields.
    assert!(!SCHEMA.contains("additionalProperties") && !SCHEMA.contains("unevaluatedProperties"));
}

#[test]
fn every_event_type_validates() {
    let validator = validator();
    let events = session_events();
    for event in &events {
        assert_valid(&validator, event);
    }
    let seen: BTreeSet<String> = events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, schema_types(), "some event type was not exercised");
}

#[test]
fn generated_events_have_the_documented_content() {
    let events = session_events();
    let opens = of_type(&events, types::FILE_OPEN);
    // The root's open before its exec: exe is null, argv empty.
    assert_eq!(opens[0]["process"]["exe"], Value::Null);
    assert_eq!(opens[0]["process"]["argv"], json!([]));
    assert_eq!(opens[0]["process"]["ancestry"], json!([MONITOR_PID]));
    let hostname = &opens[1]["file"];
    assert!(hostname["path"].as_str().unwrap().ends_with("/etc/hostname"), "{hostname}");
    assert_eq!(
        (&hostname["access"], &hostname["syscall"], &hostname["created"]),
        (&json!("read"), &json!("open"), &json!(false))
    );
    assert!(hostname.get("mount_unknown").is_none() && hostname.get("path_truncated").is_none());
    // Paths on the root filesystem are placed under its mount point ("/" on most hosts).
    let exe = opens[1]["process"]["exe"].as_str().unwrap();
    assert!(exe.starts_with('/') && exe.ends_with("/bin/cat"), "{exe}");
    assert_eq!(opens[1]["process"]["ancestry"], json!([ROOT, MONITOR_PID]));
    let created = &opens[2]["file"];
    assert_eq!(created["path"], json!("/tmp/bad\\xffname"));
    assert_eq!(
        (&created["access"], &created["created"], &created["truncate"]),
        (&json!("read_write"), &json!(true), &json!(true))
    );
    assert_eq!((&created["mount_unknown"], &created["path_truncated"]), (&json!(true), &json!(true)));
    assert_eq!(created["flags"], json!(["O_CREAT", "O_TRUNC", "O_APPEND"]));
    assert_eq!(created["device"], json!("4000:77"));
    assert_eq!(opens[3]["file"]["access"], json!("none"));
    assert_eq!(opens[3]["file"]["flags"], json!(["O_PATH", "O_DIRECTORY"]));
    assert_eq!((&opens[4]["file"]["access"], &opens[4]["file"]["syscall"]), (&json!("write"), &json!("creat")));
    assert_eq!(opens[5]["file"]["syscall"], json!("open_by_handle_at"));

    let start = of_type(&events, types::PROCESS_START);
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["process"]["pid"], json!(CHILD));
    assert_eq!(start[0]["process"]["ppid"], json!(ROOT));
    let exe = start[0]["process"]["exe"].as_str().unwrap();
    assert!(exe.ends_with("/usr/bin/dash"), "a child starts as its parent's program, not {exe}");

    let execs = of_type(&events, types::PROCESS_EXEC);
    assert_eq!(execs[1]["exec"]["argv"], json!(["cat", "/etc/hostname", "\\xff\\xfe"]));
    assert_eq!(
        (&execs[1]["exec"]["argv_truncated"], &execs[1]["exec"]["path_truncated"]),
        (&json!(true), &json!(true))
    );

    let nets: Vec<&Value> = of_type(&events, types::NET_CONNECT).into_iter().map(|e| &e["net"]).collect();
    assert_eq!(*nets[0], json!({"family": "inet", "address": "127.0.0.1", "port": 1, "fd": 3, "errno": 111}));
    assert_eq!((&nets[1]["mapped_ipv4"], &nets[1]["errno"]), (&json!("10.0.0.1"), &json!(115)));
    assert!(nets[2].get("mapped_ipv4").is_none());
    assert_eq!(nets[3]["address"], json!("/run/x.sock"));
    assert_eq!(nets[4]["address"], json!("@name"));
    assert_eq!(
        (&nets[5]["family"], &nets[5]["family_number"], &nets[5]["address"]),
        (&json!("other"), &json!(16), &json!(""))
    );

    let exits = of_type(&events, types::PROCESS_EXIT);
    assert_eq!(exits[0]["exit"], json!({"code": 3, "signal": null}));
    assert_eq!(exits[1]["exit"], json!({"code": null, "signal": 11, "core_dumped": true}));

    let end = of_type(&events, types::SESSION_END)[0];
    // session.start, the handled exit, monitor.loss and session.end itself.
    assert_eq!(end["monitor"]["events"], json!(4));
    assert_eq!(end["monitor"]["latency"]["samples"], json!(1));
    assert!(of_type(&events, types::SESSION_START)[0]["monitor"].get("latency").is_none());
    assert_eq!(end["loss"]["queue_full"], json!(6));
}

/// Example lines (`{"schema_version":...}`) in docs/EVENTS.md.
fn documented_examples() -> Vec<Value> {
    EVENTS_MD
        .lines()
        .filter(|line| line.starts_with("{\"schema_version\""))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad example in docs/EVENTS.md: {e}\n{line}")))
        .collect()
}

#[test]
fn documented_examples_validate() {
    let validator = validator();
    let examples = documented_examples();
    for example in &examples {
        assert_valid(&validator, example);
    }
    let seen: BTreeSet<String> = examples.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, schema_types(), "docs/EVENTS.md needs one example per event type");
}

/// A valid event of `event_type` from `session_events`.
fn valid(event_type: &str) -> Value {
    session_events().into_iter().find(|e| e["type"] == event_type).unwrap()
}

/// Applies `change` to a copy of `event`, which must be valid before the change and
/// invalid after it.
fn assert_rejected(validator: &jsonschema::Validator, event: &Value, what: &str, change: impl FnOnce(&mut Value)) {
    assert!(validator.is_valid(event), "{what}: the starting event is not valid");
    let mut changed = event.clone();
    change(&mut changed);
    assert_ne!(&changed, event, "{what}: the change did nothing");
    assert!(!validator.is_valid(&changed), "{what}: accepted\n{changed:#}");
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().unwrap().remove(key).unwrap_or_else(|| panic!("no {key} to remove"));
}

#[test]
fn malformed_events_are_rejected() {
    let v = validator();
    let open = valid(types::FILE_OPEN);
    assert_rejected(&v, &open, "file.open without file.path", |e| remove(&mut e["file"], "path"));
    assert_rejected(&v, &open, "relative file.path", |e| e["file"]["path"] = json!("etc/hostname"));
    assert_rejected(&v, &open, "unknown access", |e| e["file"]["access"] = json!("rw"));
    assert_rejected(&v, &open, "unknown syscall", |e| e["file"]["syscall"] = json!("open_tree"));
    assert_rejected(&v, &open, "device not major:minor", |e| e["file"]["device"] = json!("2049"));
    assert_rejected(&v, &open, "negative fd", |e| e["file"]["fd"] = json!(-1));
    assert_rejected(&v, &open, "flag not a name", |e| e["file"]["flags"] = json!([64]));
    assert_rejected(&v, &open, "file.open without file", |e| remove(e, "file"));
    assert_rejected(&v, &open, "file.open without decision", |e| remove(e, "decision"));
    assert_rejected(&v, &open, "unknown decision", |e| e["decision"]["action"] = json!("block"));
    assert_rejected(&v, &open, "short session id", |e| e["session"]["id"] = json!("c0ffee1234abcd"));
    assert_rejected(&v, &open, "uppercase session id", |e| e["session"]["id"] = json!("00C0FFEE1234ABCD"));
    assert_rejected(&v, &open, "session id not hex", |e| e["session"]["id"] = json!("00c0ffee1234abcg"));
    assert_rejected(&v, &open, "numeric session id", |e| e["session"]["id"] = json!(SESSION));
    assert_rejected(&v, &open, "no schema_version", |e| remove(e, "schema_version"));
    assert_rejected(&v, &open, "schema_version 2", |e| e["schema_version"] = json!(2));
    assert_rejected(&v, &open, "no host", |e| remove(e, "host"));
    assert_rejected(&v, &open, "unknown type", |e| e["type"] = json!("file.close"));
    assert_rejected(&v, &open, "time without nanoseconds", |e| e["time"] = json!("2026-11-24T03:04:05Z"));
    assert_rejected(&v, &open, "time not in UTC", |e| e["time"] = json!("2026-11-24T03:04:05.123456789+01:00"));
    assert_rejected(&v, &open, "process without exe", |e| remove(&mut e["process"], "exe"));
    assert_rejected(&v, &open, "relative exe", |e| e["process"]["exe"] = json!("cat"));
    assert_rejected(&v, &open, "argv not strings", |e| e["process"]["argv"] = json!([1]));
    assert_rejected(&v, &open, "ancestry not pids", |e| e["process"]["ancestry"] = json!(["1"]));
    assert_rejected(&v, &open, "pid out of range", |e| e["process"]["pid"] = json!(1u64 << 32));

    let exec = valid(types::PROCESS_EXEC);
    assert_rejected(&v, &exec, "process.exec without exec", |e| remove(e, "exec"));
    assert_rejected(&v, &exec, "relative exec.path", |e| e["exec"]["path"] = json!("usr/bin/dash"));
    assert_rejected(&v, &exec, "exec without argv", |e| remove(&mut e["exec"], "argv"));

    let start = valid(types::PROCESS_START);
    assert_rejected(&v, &start, "process.start without process", |e| remove(e, "process"));
    assert_rejected(&v, &start, "process.start without decision", |e| remove(e, "decision"));

    let exit = valid(types::PROCESS_EXIT);
    assert_rejected(&v, &exit, "process.exit without exit", |e| remove(e, "exit"));
    assert_rejected(&v, &exit, "exit with code and signal", |e| e["exit"]["signal"] = json!(9));
    assert_rejected(&v, &exit, "exit with neither", |e| e["exit"]["code"] = Value::Null);
    assert_rejected(&v, &exit, "exit code omitted", |e| remove(&mut e["exit"], "code"));

    let connect = valid(types::NET_CONNECT);
    assert_rejected(&v, &connect, "net.connect without net", |e| remove(e, "net"));
    assert_rejected(&v, &connect, "unknown family", |e| e["net"]["family"] = json!("ipx"));
    assert_rejected(&v, &connect, "inet without port", |e| remove(&mut e["net"], "port"));
    assert_rejected(&v, &connect, "port out of range", |e| e["net"]["port"] = json!(65536));
    assert_rejected(&v, &connect, "negative errno", |e| e["net"]["errno"] = json!(-111));

    let session_start = valid(types::SESSION_START);
    assert_rejected(&v, &session_start, "session.start without command", |e| remove(&mut e["session"], "command"));
    assert_rejected(&v, &session_start, "session.start without root_pid", |e| remove(&mut e["session"], "root_pid"));
    assert_rejected(&v, &session_start, "session.start without monitor", |e| remove(e, "monitor"));

    let session_end = valid(types::SESSION_END);
    assert_rejected(&v, &session_end, "session.end without remaining_pids", |e| {
        remove(&mut e["session"], "remaining_pids")
    });
    assert_rejected(&v, &session_end, "session.end without exit", |e| remove(e, "exit"));
    assert_rejected(&v, &session_end, "session.end without loss", |e| remove(e, "loss"));
    assert_rejected(&v, &session_end, "session.end without monitor", |e| remove(e, "monitor"));
    assert_rejected(&v, &session_end, "latency without p99", |e| remove(&mut e["monitor"]["latency"], "p99_us"));
    assert_rejected(&v, &session_end, "fractional latency", |e| e["monitor"]["latency"]["p50_us"] = json!(2.5));

    let loss = valid(types::MONITOR_LOSS);
    assert_rejected(&v, &loss, "monitor.loss without loss", |e| remove(e, "loss"));
    assert_rejected(&v, &loss, "loss counter missing", |e| remove(&mut e["loss"], "queue_full"));
    assert_rejected(&v, &loss, "negative loss counter", |e| e["loss"]["ringbuf_full"] = json!(-1));
    assert_rejected(&v, &loss, "fractional loss counter", |e| e["loss"]["decode_error"] = json!(1.5));
}

#[test]
fn unknown_fields_are_accepted() {
    // The compatibility promise: consumers validating with this schema keep working
    // when later versions add fields.
    let v = validator();
    for event_type in [types::FILE_OPEN, types::SESSION_END] {
        let mut event = valid(event_type);
        event["added_later"] = json!({"anything": [1, "two"]});
        event["session"]["added_later"] = json!(true);
        if let Some(file) = event.get_mut("file") {
            file["added_later"] = json!("x");
            event["process"]["added_later"] = json!(0);
            event["decision"]["added_later"] = json!(null);
        } else {
            event["loss"]["added_later"] = json!(7);
            event["monitor"]["added_later"] = json!(7);
            event["exit"]["added_later"] = json!(7);
        }
        assert_valid(&v, &event);
    }
}
