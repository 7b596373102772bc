//! Pins the NDJSON event format to docs/event.schema.json: every event type, built
//! through the code that builds it in production, must validate; malformed events
//! must not; and the example lines in docs/EVENTS.md must validate too.

use std::{collections::BTreeSet, os::unix::fs::MetadataExt, sync::Arc};

use monitor_common::{
    event::{EventHeader, file_op, flags, kind, open_syscall, tamper_op},
    policy::{IO_URING_RULE, NO_RULE, PRINCIPAL_RULE, SELF_PROTECTION_RULE, SOCKET_FAMILY_RULE, action},
};
use serde_json::{Value, json};

use crate::{
    clock::BootClock,
    decode::{KernelEvent, SocketAddress, Verdict, fs_path},
    enforcement::{Enforcement, Tier},
    event::{Event, Loss, Monitor, PrincipalRef, types},
    event_context::{Context, session_ref},
    mounts::MountTable,
    pipeline::{Pipeline, PolicyView, exit_status},
    policy::{
        compile::{Environment, compile},
        parse_policy,
    },
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

/// The profile the test sessions are held to, as `run` sees it: parsed and compiled by
/// the production code, so rule ids and rule texts are the real ones.
/// Rule ids: 0 files.read[0] /, 1 files.write[0] /dev/null, 2 files.write[1] /tmp,
/// 3 files.deny[0] /etc/shadow, 4 exec (no section: not restricted),
/// 5 network.connect[0] 127.0.0.1:8080 (`network.bind` is empty: no bind is allowed).
fn policy_view(mode: &str, on_violation: &str) -> PolicyView {
    let yaml = format!(
        "version: 1\nprofiles:\n  - name: demo\n    mode: {mode}\n    on_violation: {on_violation}\n    files:\n      read: [/]\n      write: [/dev/null, /tmp]\n      deny: [/etc/shadow]\n    network:\n      connect: [\"127.0.0.1:8080\"]\n      bind: []\n"
    );
    let policy = parse_policy(&yaml).unwrap();
    let profile = &policy.profiles[0];
    let mounts = MountTable::parse(b"22 1 254:0 / / rw - ext4 /dev/vda rw\n");
    let environment = Environment {
        home: Some("/home/alice".into()),
        mounts: &mounts,
        list_dir: &|_| Vec::new(),
        resolve_host: &|_| Vec::new(),
        files_under: &|_| Vec::new(),
        is_raw_device: &|_| false,
        is_loader: &|_| false,
        canonical: &|_| None,
    };
    let compiled = compile(profile, &environment);
    PolicyView {
        profile: profile.name.clone(),
        mode: profile.mode,
        on_violation: profile.on_violation,
        rules: compiled.rules,
        principal: "alice (uid 1000)".into(),
    }
}

const RULE_READ_ROOT: u32 = 0;
const RULE_WRITE_TMP: u32 = 2;
const RULE_DENY_SHADOW: u32 = 3;
const RULE_EXEC_UNRESTRICTED: u32 = 4;
const RULE_CONNECT_8080: u32 = 5;

fn monitor_info(events: Option<u64>) -> Monitor {
    Monitor {
        version: env!("CARGO_PKG_VERSION"),
        pid: MONITOR_PID,
        kernel: "6.1.0-test".into(),
        arch: std::env::consts::ARCH,
        events,
        latency: None,
        enforcement: None,
    }
}

/// One session's worth of events, built the way `run` and `Pipeline::translate` build
/// them: every event type, several variants of the optional parts.
/// The session is held to `policy_view("enforce", "kill-session")`.
fn session_events() -> Vec<Value> {
    let mut pipeline = pipeline();
    pipeline.session_policies.insert(SESSION, Arc::new(policy_view("enforce", "kill-session")));
    let root_start = BootClock::now_boot_ns();
    let child_start = root_start + 1_000;
    let root_fs = kernel_dev("/");
    let mut out = Vec::new();

    let mut start = pipeline.context.event(types::SESSION_START, BootClock::now_boot_ns(), session_ref(SESSION));
    start.session.root_pid = Some(ROOT);
    start.session.command = Some(vec!["sh".into(), "-c".into(), "cat /etc/hostname".into()]);
    start.session.profile = Some("demo".into());
    start.session.principal = Some(PrincipalRef { name: "alice".into(), uid: 1000 });
    start.session.mode = Some("enforce");
    start.monitor = Some(Monitor {
        enforcement: Some(Enforcement {
            files: Tier::Lsm,
            exec: Tier::Lsm,
            network: Tier::Lsm,
            self_protection: Tier::Lsm,
        }),
        ..monitor_info(None)
    });
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
    // Policy decisions: a write allowed by an entry, then a violation of a deny entry
    // (kill-session: the violator is killed by the kernel, the session by userspace).
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32,
        f_mode: 0x2 | 0x10_0000,
        fd: 6,
        ino: 12,
        dev: root_fs,
        path: fs_path(b"/tmp/out/"),
        verdict: Verdict { action: action::ALLOW, rule_id: RULE_WRITE_TMP },
    }));
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: libc::O_RDONLY as u32,
        f_mode: 0x1,
        fd: 7,
        ino: 817,
        dev: root_fs,
        path: fs_path(b"/etc/shadow/"),
        verdict: Verdict { action: action::KILL, rule_id: RULE_DENY_SHADOW },
    }));
    // An exec no entry covers (fail closed).
    out.push(translate(KernelEvent::Exec {
        header: header(kind::PROCESS_EXEC, ROOT, ROOT, root_start, 0),
        path: fs_path(b"/usr/bin/dash/"),
        verdict: Verdict { action: action::KILL, rule_id: NO_RULE },
        argv: vec![b"sh".to_vec()],
        ino: 7,
        dev: UNMOUNTED_DEV,
    }));
    // A library the agent wrote, made executable with mprotect (BPF LSM).
    out.push(translate(KernelEvent::Exec {
        header: header(kind::PROCESS_EXEC, ROOT, ROOT, root_start, flags::LSM | flags::MAPPED | flags::MPROTECT),
        path: fs_path(b"/tmp/evil.so/"),
        verdict: Verdict { action: action::DENY, rule_id: NO_RULE },
        argv: Vec::new(),
        ino: 9,
        dev: root_fs,
    }));
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
            verdict: Verdict::ALLOW,
        }));
    }
    // Network decisions (cgroup socket hooks): a connect an entry allows, one refused
    // with EPERM, and a refused UDP send and bind, which the kernel reports without the
    // descriptor (fd u32::MAX) or the process's start time (0).
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_CONNECT, ROOT, ROOT, root_start, 0),
        ret: 0,
        fd: 4,
        addr: SocketAddress::Inet { addr: [127, 0, 0, 1].into(), port: 8080 },
        verdict: Verdict { action: action::ALLOW, rule_id: RULE_CONNECT_8080 },
    }));
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_CONNECT, ROOT, ROOT, root_start, 0),
        ret: -libc::EPERM,
        fd: 5,
        addr: SocketAddress::Inet { addr: [10, 0, 0, 1].into(), port: 443 },
        verdict: Verdict { action: action::DENY, rule_id: NO_RULE },
    }));
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_SEND, ROOT, ROOT, 0, 0),
        ret: -1,
        fd: u32::MAX,
        addr: SocketAddress::Inet { addr: [192, 0, 2, 1].into(), port: 53 },
        verdict: Verdict { action: action::DENY, rule_id: NO_RULE },
    }));
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_BIND, ROOT, ROOT, 0, 0),
        ret: -1,
        fd: u32::MAX,
        addr: SocketAddress::Inet6 { addr: "::".parse().unwrap(), port: 8080, scope_id: 0 },
        verdict: Verdict { action: action::DENY, rule_id: NO_RULE },
    }));
    // The BPF LSM tier: an open refused before any descriptor exists, a received
    // descriptor, changes to the file tree, a connect allowed before it completes, a
    // refused bind, and attempts against the monitor itself.
    let lsm = flags::LSM;
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, lsm),
        syscall: open_syscall::LSM_OPEN,
        open_flags: libc::O_RDONLY as u32,
        f_mode: 0x1,
        fd: u32::MAX,
        ino: 99,
        dev: root_fs,
        path: fs_path(b"/etc/shadow/"),
        verdict: Verdict { action: action::KILL, rule_id: RULE_DENY_SHADOW },
    }));
    out.push(translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, child_start, lsm),
        syscall: open_syscall::RECEIVE,
        open_flags: libc::O_RDWR as u32,
        f_mode: 0x3,
        fd: u32::MAX,
        ino: 100,
        dev: root_fs,
        path: fs_path(b"/tmp/passed/"),
        verdict: Verdict { action: action::ALLOW, rule_id: RULE_WRITE_TMP },
    }));
    for (op, verdict) in [
        (file_op::UNLINK, Verdict { action: action::ALLOW, rule_id: RULE_WRITE_TMP }),
        (file_op::RENAME_FROM, Verdict { action: action::DENY, rule_id: RULE_READ_ROOT }),
        (file_op::TRUNCATE, Verdict { action: action::KILL, rule_id: SELF_PROTECTION_RULE }),
        (file_op::CREATE, Verdict { action: action::AUDIT, rule_id: NO_RULE }),
    ] {
        out.push(translate(KernelEvent::FileChange {
            header: header(kind::FILE_CHANGE, CHILD, CHILD, child_start, lsm),
            op,
            ino: if op == file_op::CREATE { 0 } else { 77 },
            dev: root_fs,
            path: fs_path(b"/tmp/x/"),
            verdict,
        }));
    }
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_CONNECT, ROOT, ROOT, root_start, lsm),
        ret: 0,
        fd: u32::MAX,
        addr: SocketAddress::Inet { addr: [127, 0, 0, 1].into(), port: 8080 },
        verdict: Verdict { action: action::ALLOW, rule_id: RULE_CONNECT_8080 },
    }));
    out.push(translate(KernelEvent::Connect {
        header: header(kind::NET_BIND, ROOT, ROOT, root_start, lsm),
        ret: -1,
        fd: u32::MAX,
        addr: SocketAddress::Inet { addr: [0, 0, 0, 0].into(), port: 22 },
        verdict: Verdict { action: action::KILL, rule_id: NO_RULE },
    }));
    for (op, target_tgid, arg) in
        [(tamper_op::SIGNAL, MONITOR_PID, 9), (tamper_op::BPF, 0, 5), (tamper_op::UMOUNT, 0, 0)]
    {
        out.push(translate(KernelEvent::Tamper {
            header: header(kind::PROCESS_TAMPER, CHILD, CHILD, child_start, lsm),
            op,
            target_tgid,
            arg,
            verdict: Verdict { action: action::DENY, rule_id: SELF_PROTECTION_RULE },
        }));
    }
    // io_uring_setup in a session whose profile restricts files.
    out.push(translate(KernelEvent::Syscall {
        header: header(kind::PROCESS_SYSCALL, CHILD, CHILD, child_start, 0),
        nr: libc::SYS_io_uring_setup as u32,
        verdict: Verdict { action: action::KILL, rule_id: IO_URING_RULE },
        arg: 0,
    }));
    // A packet socket in a profile that does not name the family.
    out.push(translate(KernelEvent::Syscall {
        header: header(kind::PROCESS_SYSCALL, CHILD, CHILD, child_start, 0),
        nr: libc::SYS_socket as u32,
        verdict: Verdict { action: action::DENY, rule_id: SOCKET_FAMILY_RULE },
        arg: libc::AF_PACKET as u32,
    }));
    // Exit normally with code 3, and by SIGSEGV with a core dump.
    out.push(translate(KernelEvent::Exit {
        header: header(kind::PROCESS_EXIT, CHILD, CHILD, child_start, 0),
        exit_code: 3 << 8,
    }));
    out.push(translate(KernelEvent::Exit {
        header: header(kind::PROCESS_EXIT, ROOT, ROOT, root_start, 0),
        exit_code: 11 | 0x80,
    }));

    // What `run` writes after a violation in a kill-session profile: once with
    // cgroup.kill done, once as if it had failed. (Not through the sink, so that the
    // session.end count below stays that of the events written here.)
    for error in [None, Some("cgroup.kill failed: Permission denied (os error 13)".to_owned())] {
        let killed = pipeline.session_killed(SESSION, BootClock::now_boot_ns(), vec![ROOT, CHILD + 1], CHILD, error);
        out.push(to_json(&killed));
    }

    // One event through `handle`, as `run` feeds them, so that session.end reports latency.
    pipeline.handle(KernelEvent::Exit {
        header: header(kind::PROCESS_EXIT, CHILD + 1, CHILD + 1, child_start + 1, 0),
        exit_code: 0,
    });

    let loss = Loss {
        ringbuf_full: 1,
        session_map_full: 2,
        kernel_read_error: 3,
        pending_map_full: 4,
        decision_ringbuf_full: 7,
        decode_error: 5,
        queue_full: 6,
        sink_error: 8,
        programs_skipped: 9,
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
    pipeline.flush(); // as run does before counting
    let mut info = monitor_info(Some(pipeline.sink.written() + 1));
    info.latency = pipeline.latency();
    end.monitor = Some(info);
    out.push(to_json(&end));
    out
}

/// Decisions in sessions held to other modes and actions, each from its own pipeline:
/// audit (file.open twice, process.exec, net.connect), and `on_violation: deny`
/// (file.open, which this build escalates to kill; net.connect, refused), and `kill`
/// (file.open the profile allows but the user the session acts for may not make).
fn policy_events() -> Vec<Value> {
    let start = BootClock::now_boot_ns();
    let mut out = Vec::new();
    let shadow = |verdict: Verdict| KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: libc::O_RDONLY as u32,
        f_mode: 0x1,
        fd: 3,
        ino: 817,
        dev: kernel_dev("/"),
        path: fs_path(b"/etc/shadow/"),
        verdict,
    };
    let mut audit = pipeline();
    audit.session_policies.insert(SESSION, Arc::new(policy_view("audit", "kill")));
    out.push(to_json(&audit.translate(shadow(Verdict { action: action::AUDIT, rule_id: RULE_DENY_SHADOW }))));
    out.push(to_json(&audit.translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32,
        f_mode: 0x2 | 0x10_0000,
        fd: 4,
        ino: 13,
        dev: kernel_dev("/"),
        path: fs_path(b"/etc/new/"),
        verdict: Verdict { action: action::AUDIT, rule_id: RULE_READ_ROOT },
    })));
    out.push(to_json(&audit.translate(KernelEvent::Exec {
        header: header(kind::PROCESS_EXEC, CHILD, CHILD, start, 0),
        path: fs_path(b"/usr/bin/cat/"),
        verdict: Verdict { action: action::ALLOW, rule_id: RULE_EXEC_UNRESTRICTED },
        argv: vec![b"cat".to_vec()],
        ino: 8,
        dev: kernel_dev("/"),
    })));
    let refused_connect = |verdict: Verdict| KernelEvent::Connect {
        header: header(kind::NET_CONNECT, CHILD, CHILD, start, 0),
        ret: if verdict.action == action::DENY { -libc::EPERM } else { -libc::ECONNREFUSED },
        fd: 3,
        addr: SocketAddress::Inet { addr: [127, 0, 0, 1].into(), port: 9 },
        verdict,
    };
    out.push(to_json(&audit.translate(refused_connect(Verdict { action: action::AUDIT, rule_id: NO_RULE }))));
    let mut deny = pipeline();
    deny.session_policies.insert(SESSION, Arc::new(policy_view("enforce", "deny")));
    out.push(to_json(&deny.translate(shadow(Verdict { action: action::KILL, rule_id: RULE_DENY_SHADOW }))));
    out.push(to_json(&deny.translate(refused_connect(Verdict { action: action::DENY, rule_id: NO_RULE }))));
    let mut kill = pipeline();
    kill.session_policies.insert(SESSION, Arc::new(policy_view("enforce", "kill")));
    out.push(to_json(&kill.translate(KernelEvent::FileOpen {
        header: header(kind::FILE_OPEN, CHILD, CHILD, start, 0),
        syscall: open_syscall::OPENAT,
        open_flags: libc::O_RDONLY as u32,
        f_mode: 0x1,
        fd: 3,
        ino: 14,
        dev: kernel_dev("/"),
        path: fs_path(b"/home/bob/notes/"),
        verdict: Verdict { action: action::KILL, rule_id: PRINCIPAL_RULE },
    })));
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
        types::PROCESS_SYSCALL,
        types::PROCESS_TAMPER,
        types::FILE_OPEN,
        types::FILE_CHANGE,
        types::NET_CONNECT,
        types::NET_SEND,
        types::NET_BIND,
        types::MONITOR_LOSS,
        types::SESSION_KILLED,
        types::SESSION_FROZEN,
        types::MONITOR_TAMPER,
        types::MONITOR_START,
        types::MONITOR_RELOAD,
        types::MONITOR_STOP,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(schema_types(), expected);
    // The schema promises additive changes: nothing may forbid unknown fields.
    assert!(!SCHEMA.contains("additionalProperties") && !SCHEMA.contains("unevaluatedProperties"));
}

/// The daemon's own events and what its sessions add: `monitor.start`, a refused and
/// an accepted `monitor.reload`, `monitor.stop`; an adopted session's start, an end
/// whose first process's exit was not seen, a kill-switch `session.killed`.
fn daemon_events() -> Vec<Value> {
    use crate::{daemon::state::monitor_event, event::PolicyState};
    let context = Context::new();
    let enforcement = Enforcement::FALLBACK;
    let policy = |accepted: bool, error: Option<&str>| PolicyState {
        file: Some("/etc/agent-monitor/policy.yaml".into()),
        accepted,
        profiles: vec!["claude".into()],
        error: error.map(str::to_owned),
        sessions_updated: accepted.then_some(3),
    };
    let mut out = vec![
        monitor_event(&context, types::MONITOR_START, enforcement, policy(true, None)),
        monitor_event(
            &context,
            types::MONITOR_RELOAD,
            enforcement,
            policy(false, Some("profile claude: mode: sometimes is not a mode; fix: use mode: audit or mode: enforce")),
        ),
        monitor_event(&context, types::MONITOR_RELOAD, enforcement, policy(true, None)),
        monitor_event(&context, types::MONITOR_STOP, enforcement, policy(true, None)),
    ];
    let mut start = context.event(types::SESSION_START, BootClock::now_boot_ns(), session_ref(SESSION));
    start.session.root_pid = Some(ROOT);
    start.session.command = Some(vec!["/usr/bin/claude".into()]);
    start.session.profile = Some("claude".into());
    start.session.principal = Some(PrincipalRef { name: "alice".into(), uid: 1000 });
    start.session.mode = Some("enforce");
    start.session.adopted_by = Some(r#"match[0] {"exe":"/usr/bin/claude"}"#.into());
    start.session.origin = Some("exec");
    start.monitor = Some(Monitor { enforcement: Some(enforcement), ..monitor_info(None) });
    out.push(start);
    let mut end = context.event(types::SESSION_END, BootClock::now_boot_ns(), session_ref(SESSION));
    end.session.root_pid = Some(ROOT);
    end.session.remaining_pids = Some(Vec::new());
    end.loss = Some(Loss::default());
    end.monitor = Some(monitor_info(None));
    end.incomplete = true; // the first process's exit record was lost
    out.push(end);
    let mut pipeline = pipeline();
    pipeline.session_policies.insert(SESSION, Arc::new(policy_view("enforce", "kill")));
    let mut killed = pipeline.session_killed(SESSION, BootClock::now_boot_ns(), vec![ROOT, CHILD], 0, None);
    killed.session.killed_because_of = None;
    killed.session.killed_by = Some("kill-switch");
    if let Some(decision) = &mut killed.decision {
        decision.enforced_by = Some("userspace:pidfd");
    }
    out.push(killed);
    // What a watchdog writes when its monitor died.
    use crate::{
        sink::Displacement,
        watchdog::{Death, OnMonitorDeath, death_event},
    };
    let id = session_ref(SESSION).id;
    out.push(death_event(
        &context,
        Death {
            monitor_pid: 4242,
            session: &id,
            profile: "claude",
            done: OnMonitorDeath::Kill,
            pids: vec![ROOT, CHILD],
            why: "the monitor (pid 4242) ended without ending the session",
            error: None,
        },
    ));
    out.push(death_event(
        &context,
        Death {
            monitor_pid: 4242,
            session: &id,
            profile: "claude",
            done: OnMonitorDeath::Freeze,
            pids: vec![ROOT, CHILD],
            why: "the monitor (pid 4242) ended without ending the session",
            error: None,
        },
    ));
    let mut out: Vec<Value> = out.iter().map(to_json).collect();
    // What the file sink writes when its file lost its name.
    let events = std::path::Path::new("/var/log/agent-monitor/events.ndjson");
    let kept_as = events.with_file_name("events.ndjson.replaced-1");
    for displacement in [Displacement::Removed, Displacement::Moved, Displacement::Replaced { kept_as }] {
        let line = crate::sink::displacement_notice(events, &displacement);
        out.push(serde_json::from_slice(&line).expect("a JSON line"));
    }
    out
}

#[test]
fn every_event_type_validates() {
    let validator = validator();
    let mut events = session_events();
    events.extend(daemon_events());
    for event in events.iter().chain(&policy_events()) {
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
    assert_eq!(end["loss"]["programs_skipped"], json!(9));
    assert_eq!(end["loss"]["decision_ringbuf_full"], json!(7));

    let session_start = of_type(&events, types::SESSION_START)[0];
    assert_eq!(
        (&session_start["session"]["profile"], &session_start["session"]["mode"]),
        (&json!("demo"), &json!("enforce"))
    );
    assert_eq!(session_start["session"]["principal"], json!({"name": "alice", "uid": 1000}));
}

#[test]
fn policy_decisions_have_the_documented_content() {
    let events = session_events();
    let opens = of_type(&events, types::FILE_OPEN);
    // Allowed without a rule id (e.g. O_PATH, not checked): only the profile is named.
    assert_eq!(opens[0]["decision"], json!({"action": "allow", "profile": "demo"}));
    let written = opens.iter().find(|e| e["file"]["path"] == "/tmp/out").unwrap();
    assert_eq!(written["decision"], json!({"action": "allow", "rule": "files.write[1] /tmp", "profile": "demo"}));
    let shadow = opens.iter().find(|e| e["file"]["path"] == "/etc/shadow").unwrap();
    assert_eq!(
        shadow["decision"],
        json!({
            "action": "kill",
            "rule": "files.deny[0] /etc/shadow",
            "profile": "demo",
            "enforced_by": "kernel:sys_exit",
            "note": "kill-session: every process of the session is killed",
        })
    );
    let execs = of_type(&events, types::PROCESS_EXEC);
    assert_eq!(execs[0]["decision"], json!({"action": "allow", "profile": "demo"}));
    let mapped = execs.last().unwrap();
    assert_eq!(mapped["exec"]["mapping"], "mprotect", "{mapped}");
    assert_eq!(
        (&mapped["decision"]["action"], &mapped["decision"]["enforced_by"]),
        (&json!("deny"), &json!("kernel:lsm/file_mprotect"))
    );
    let killed_exec = execs[execs.len() - 2];
    assert_eq!(
        (&killed_exec["decision"]["action"], &killed_exec["decision"]["rule"], &killed_exec["decision"]["enforced_by"]),
        (&json!("kill"), &json!("no entry covers this path"), &json!("kernel:sched_process_exec"))
    );
    assert_eq!(killed_exec["exec"]["mount_unknown"], json!(true));
    let syscall = of_type(&events, types::PROCESS_SYSCALL);
    assert_eq!(syscall.len(), 2);
    assert_eq!(syscall[0]["syscall"], json!({"name": "io_uring_setup", "nr": libc::SYS_io_uring_setup}));
    assert_eq!(syscall[1]["syscall"], json!({"name": "socket", "nr": libc::SYS_socket, "family": "packet"}));
    assert!(syscall[1]["decision"]["rule"].as_str().unwrap().contains("network.families"), "{}", syscall[1]);
    assert_eq!(
        (&syscall[0]["decision"]["action"], &syscall[0]["decision"]["enforced_by"]),
        (&json!("kill"), &json!("kernel:sys_enter"))
    );
    assert!(syscall[0]["decision"]["rule"].as_str().unwrap().contains("allow_io_uring: true"), "{}", syscall[0]);
    // A fork is not a policy decision.
    assert_eq!(of_type(&events, types::PROCESS_START)[0]["decision"], json!({"action": "allow"}));

    let connects = of_type(&events, types::NET_CONNECT);
    let allowed = connects.iter().find(|e| e["net"]["port"] == 8080).unwrap();
    assert_eq!(
        allowed["decision"],
        json!({"action": "allow", "rule": "network.connect[0] 127.0.0.1:8080", "profile": "demo"})
    );
    let refused = connects.iter().find(|e| e["decision"]["action"] == "deny").unwrap();
    assert_eq!(
        (&refused["net"]["address"], &refused["net"]["errno"], &refused["net"]["fd"]),
        (&json!("10.0.0.1"), &json!(libc::EPERM), &json!(5))
    );
    assert_eq!(
        refused["decision"],
        json!({
            "action": "deny",
            "rule": "no entry covers this address",
            "profile": "demo",
            "enforced_by": "kernel:cgroup/connect",
            "note": "refused; kill-session: every process of the session is killed",
        })
    );
    let send = of_type(&events, types::NET_SEND);
    assert_eq!(send.len(), 1);
    assert_eq!(send[0]["net"], json!({"family": "inet", "address": "192.0.2.1", "port": 53, "errno": 1}));
    assert_eq!(
        (&send[0]["decision"]["action"], &send[0]["decision"]["enforced_by"]),
        (&json!("deny"), &json!("kernel:cgroup/sendmsg"))
    );
    let bind: Vec<_> = of_type(&events, types::NET_BIND)
        .into_iter()
        .filter(|e| e["decision"]["enforced_by"] == "kernel:cgroup/bind")
        .collect();
    assert_eq!(bind.len(), 1);
    assert_eq!((&bind[0]["net"]["family"], &bind[0]["net"]["address"]), (&json!("inet6"), &json!("::")));
    assert!(bind[0]["net"].get("fd").is_none());
    assert_eq!(bind[0]["decision"]["enforced_by"], json!("kernel:cgroup/bind"));

    let killed = of_type(&events, types::SESSION_KILLED);
    assert_eq!(killed.len(), 2);
    assert_eq!(
        killed[0]["session"],
        json!({"id": "00c0ffee1234abcd", "killed_pids": [ROOT, CHILD + 1], "killed_by": "violation", "killed_because_of": CHILD})
    );
    assert_eq!(
        killed[0]["decision"],
        json!({"action": "kill", "profile": "demo", "enforced_by": "userspace:cgroup.kill"})
    );
    assert!(killed[0].get("process").is_none());
    assert_eq!(killed[1]["decision"]["note"], json!("cgroup.kill failed: Permission denied (os error 13)"));

    let policy = policy_events();
    assert_eq!(
        policy[0]["decision"],
        json!({"action": "audit", "rule": "files.deny[0] /etc/shadow", "profile": "demo", "would": "kill"})
    );
    // A write under an entry that only allows reading: the entry that decided is named.
    assert_eq!(policy[1]["decision"]["rule"], json!("files.read[0] /"));
    assert_eq!((&policy[1]["file"]["created"], &policy[1]["decision"]["action"]), (&json!(true), &json!("audit")));
    assert_eq!(policy[2]["decision"]["rule"], json!("exec[0] / (section not in the profile: not restricted)"));
    assert!(policy[2]["decision"].get("would").is_none());
    // Network violations in audit mode: would be refused, not killed.
    assert_eq!(
        policy[3]["decision"],
        json!({"action": "audit", "rule": "no entry covers this address", "profile": "demo", "would": "deny"})
    );
    assert_eq!(policy[3]["net"]["errno"], json!(libc::ECONNREFUSED));
    assert_eq!(
        (&policy[4]["decision"]["action"], &policy[4]["decision"]["enforced_by"]),
        (&json!("kill"), &json!("kernel:sys_exit"))
    );
    let note = policy[4]["decision"]["note"].as_str().unwrap();
    assert!(note.starts_with("deny escalated to kill"), "{note}");
    // Allowed by the profile, beyond the permissions of the user the session acts for.
    assert_eq!(
        policy[6]["decision"],
        json!({
            "action": "kill",
            "rule": "on behalf of alice (uid 1000): that user's permissions do not allow this access",
            "profile": "demo",
            "enforced_by": "kernel:sys_exit",
        })
    );
    // on_violation: deny is what the network hooks do: no note.
    assert_eq!(
        policy[5]["decision"],
        json!({
            "action": "deny",
            "rule": "no entry covers this address",
            "profile": "demo",
            "enforced_by": "kernel:cgroup/connect",
        })
    );
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
fn daemon_events_keep_their_promises() {
    let validator = validator();
    let events = daemon_events();
    assert_eq!(events[0]["session"]["id"], "0000000000000000");
    assert_eq!(events[1]["policy"]["accepted"], false);
    assert!(events[1]["policy"]["error"].as_str().unwrap().contains("sometimes"));
    assert_eq!(events[2]["policy"]["sessions_updated"], 3);
    // A violation's session.killed still names its violator; the kill-switch's may not.
    let mut no_violator = events[6].clone();
    no_violator["session"]["killed_by"] = json!("violation");
    assert!(!validator.is_valid(&no_violator), "a violation's kill without killed_because_of validated");
    let mut no_policy = events[0].clone();
    no_policy.as_object_mut().unwrap().remove("policy");
    assert!(!validator.is_valid(&no_policy), "monitor.start without its policy validated");
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
    assert_rejected(&v, &loss, "no decision_ringbuf_full", |e| remove(&mut e["loss"], "decision_ringbuf_full"));

    assert_rejected(&v, &session_start, "session.start without profile", |e| remove(&mut e["session"], "profile"));
    assert_rejected(&v, &session_start, "unknown mode", |e| e["session"]["mode"] = json!("observe"));
    assert_rejected(&v, &session_start, "session.start without principal", |e| remove(&mut e["session"], "principal"));
    assert_rejected(&v, &session_start, "principal without uid", |e| remove(&mut e["session"]["principal"], "uid"));
}

#[test]
fn malformed_policy_events_are_rejected() {
    let v = validator();
    let events = session_events();
    let kill =
        of_type(&events, types::FILE_OPEN).into_iter().find(|e| e["decision"]["action"] == "kill").unwrap().clone();
    assert_rejected(&v, &kill, "unknown enforced_by", |e| e["decision"]["enforced_by"] = json!("kernel:lsm"));
    assert_rejected(&v, &kill, "kill without enforced_by", |e| remove(&mut e["decision"], "enforced_by"));
    assert_rejected(&v, &kill, "rule not a string", |e| e["decision"]["rule"] = json!(3));
    let audit = policy_events().remove(0);
    assert_rejected(&v, &audit, "audit without would", |e| remove(&mut e["decision"], "would"));
    assert_rejected(&v, &audit, "unknown would", |e| e["decision"]["would"] = json!("kill-session"));

    let refused =
        of_type(&events, types::NET_CONNECT).into_iter().find(|e| e["decision"]["action"] == "deny").unwrap().clone();
    assert_rejected(&v, &refused, "deny without enforced_by", |e| remove(&mut e["decision"], "enforced_by"));
    assert_rejected(&v, &refused, "net.connect without net", |e| remove(e, "net"));
    let send = valid(types::NET_SEND);
    assert_rejected(&v, &send, "net.send without net", |e| remove(e, "net"));
    assert_rejected(&v, &send, "net.send without decision", |e| remove(e, "decision"));
    assert_rejected(&v, &send, "net.send reported as allowed", |e| {
        e["decision"] = json!({"action": "allow", "profile": "demo"})
    });
    let syscall = valid(types::PROCESS_SYSCALL);
    assert_rejected(&v, &syscall, "process.syscall without syscall", |e| remove(e, "syscall"));
    assert_rejected(&v, &syscall, "syscall without nr", |e| remove(&mut e["syscall"], "nr"));
    assert_rejected(&v, &syscall, "process.syscall allowed", |e| e["decision"] = json!({"action": "allow"}));
    let bind = valid(types::NET_BIND);
    assert_rejected(&v, &bind, "net.bind without process", |e| remove(e, "process"));
    assert_rejected(&v, &bind, "unknown hook", |e| e["decision"]["enforced_by"] = json!("kernel:cgroup/listen"));

    let killed = valid(types::SESSION_KILLED);
    assert_rejected(&v, &killed, "session.killed without killed_pids", |e| remove(&mut e["session"], "killed_pids"));
    assert_rejected(&v, &killed, "session.killed without killed_because_of", |e| {
        remove(&mut e["session"], "killed_because_of")
    });
    assert_rejected(&v, &killed, "killed_pids not pids", |e| e["session"]["killed_pids"] = json!([-1]));
    assert_rejected(&v, &killed, "session.killed without decision", |e| remove(e, "decision"));
    assert_rejected(&v, &killed, "session.killed not a kill", |e| e["decision"]["action"] = json!("audit"));
    assert_rejected(&v, &killed, "session.killed enforced by the kernel", |e| {
        e["decision"]["enforced_by"] = json!("kernel:sys_exit")
    });
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

#[test]
fn lsm_events_have_the_documented_content() {
    let events = session_events();
    let lsm_open = of_type(&events, types::FILE_OPEN)
        .into_iter()
        .find(|e| e["file"]["path"] == "/etc/shadow" && e["file"]["syscall"] == "unknown")
        .unwrap();
    assert!(lsm_open["file"].get("fd").is_none(), "no descriptor exists when the LSM hook judges: {lsm_open}");
    assert_eq!(lsm_open["file"]["syscall"], json!("unknown"));
    assert_eq!(
        (&lsm_open["decision"]["action"], &lsm_open["decision"]["enforced_by"]),
        (&json!("kill"), &json!("kernel:lsm/file_open"))
    );
    let received = of_type(&events, types::FILE_OPEN).into_iter().find(|e| e["file"]["syscall"] == "receive").unwrap();
    assert_eq!(received["file"]["access"], json!("read_write"));

    let changes = of_type(&events, types::FILE_CHANGE);
    let operations: Vec<&Value> = changes.iter().map(|e| &e["change"]["operation"]).collect();
    assert_eq!(operations, [&json!("unlink"), &json!("rename_from"), &json!("truncate"), &json!("create")]);
    assert_eq!(changes[0]["decision"], json!({"action": "allow", "rule": "files.write[1] /tmp", "profile": "demo"}));
    assert_eq!(
        (&changes[1]["decision"]["action"], &changes[1]["decision"]["enforced_by"]),
        (&json!("deny"), &json!("kernel:lsm/path_rename"))
    );
    assert!(changes[2]["decision"]["rule"].as_str().unwrap().starts_with("self-protection:"));
    assert_eq!(changes[3]["decision"]["would"], json!("kill"));
    assert_eq!(changes[3]["change"]["inode"], json!(0));

    let connect = of_type(&events, types::NET_CONNECT)
        .into_iter()
        .find(|e| e["decision"]["rule"].is_string() && e["net"].get("fd").is_none())
        .unwrap();
    assert!(connect["net"].get("errno").is_none(), "an LSM-allowed connect has no result yet: {connect}");

    let tampers = of_type(&events, types::PROCESS_TAMPER);
    assert_eq!(tampers.len(), 3);
    assert_eq!(tampers[0]["tamper"], json!({"operation": "signal", "target_pid": MONITOR_PID, "signal": 9}));
    assert_eq!(tampers[1]["tamper"], json!({"operation": "bpf", "bpf_command": 5}));
    assert_eq!(tampers[2]["tamper"], json!({"operation": "umount"}));
    assert_eq!(
        (&tampers[0]["decision"]["action"], &tampers[0]["decision"]["enforced_by"]),
        (&json!("deny"), &json!("kernel:lsm/task_kill"))
    );

    let start = &of_type(&events, types::SESSION_START)[0];
    assert_eq!(
        start["monitor"]["enforcement"],
        json!({"files": "lsm", "exec": "lsm", "network": "lsm", "self_protection": "lsm"})
    );
}
