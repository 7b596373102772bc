use std::{
    fs,
    io::{self, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;
use crate::{
    event::{self, Change, Exec, File, Net, Process, Session},
    sink::testdir::TestDir,
};

pub fn event(event_type: &'static str, session_id: &str) -> Event {
    Event {
        schema_version: event::SCHEMA_VERSION,
        time: "2026-01-01T00:00:00.000000000Z".into(),
        host: "host".into(),
        event_type,
        session: Session {
            id: session_id.into(),
            root_pid: None,
            command: None,
            remaining_pids: None,
            killed_pids: None,
            killed_by: None,
            killed_because_of: None,
            principal: None,
            profile: None,
            mode: None,
            adopted_by: None,
            origin: None,
        },
        process: None,
        file: None,
        change: None,
        tamper: None,
        exec: None,
        net: None,
        exit: None,
        syscall: None,
        decision: None,
        loss: None,
        monitor: None,
        policy: None,
        incomplete: false,
    }
}

pub fn exec_event() -> Event {
    let argv = vec!["tool".to_string(), "--token=hunter2".to_string()];
    let mut e = event(event::types::PROCESS_EXEC, "s1");
    e.process = Some(Process {
        pid: 10,
        tid: 10,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        exe: Some("/home/alice/secret/tool".to_string()).into(),
        argv: argv.clone().into(),
        start_time: "2026-01-01T00:00:00.000000000Z".to_string().into(),
        start_boottime_ns: 1,
        ancestry: vec![1],
    });
    e.exec = Some(Exec {
        path: "/home/alice/secret/tool".into(),
        argv,
        inode: 2,
        device: "8:1".into(),
        argv_truncated: false,
        path_truncated: false,
        mount_unknown: false,
        mapping: None,
    });
    e
}

pub fn file(path: &str) -> File {
    File {
        path: path.into(),
        access: "read",
        created: false,
        truncate: false,
        flags: vec![],
        syscall: "openat",
        fd: Some(3),
        inode: 2,
        device: "8:1".into(),
        path_truncated: false,
        mount_unknown: false,
    }
}

pub fn change(path: &str) -> Change {
    Change {
        path: path.into(),
        operation: "create",
        inode: 0,
        device: "8:1".into(),
        path_truncated: false,
        mount_unknown: false,
    }
}

pub fn unix(path: &str) -> Net {
    Net {
        family: "unix",
        address: path.into(),
        port: None,
        mapped_ipv4: None,
        family_number: None,
        fd: Some(4),
        errno: Some(0),
    }
}

fn file_open(session_id: &str, path: &str) -> Event {
    let mut e = event(event::types::FILE_OPEN, session_id);
    e.file = Some(file(path));
    e
}

/// A `Write` whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line_of(e: &Event) -> String {
    format!("{}\n", serde_json::to_string(e).unwrap())
}

#[test]
fn single_writer_batches_and_counts() {
    let out = Shared::default();
    let mut sink = Sink::new(Box::new(out.clone()));
    sink.write(&exec_event()).unwrap();
    assert_eq!(out.text(), "", "batched until flush");
    sink.flush().unwrap();
    assert_eq!(out.text(), line_of(&exec_event()));
    assert_eq!((sink.written(), sink.lost()), (1, 0));
    assert_eq!(sink.destinations(), [DestinationStats { name: "writer".into(), written: 1, lost: 0 }]);

    let mut broken = Sink::new(Box::new(Broken));
    broken.write(&exec_event()).unwrap();
    broken.write(&exec_event()).unwrap();
    assert!(broken.flush().is_err());
    assert_eq!((broken.written(), broken.lost()), (0, 2));
}

#[test]
fn every_destination_gets_the_same_line_and_a_broken_one_stops_none() {
    let dir = TestDir::new();
    let path = dir.path("events.ndjson");
    let first = Shared::default();
    let hub = Hub::new(100);
    let follower = hub.subscribe(Filter::default());
    let mut sink = Sink::builder()
        .writer("first", Box::new(first.clone()))
        .writer("broken", Box::new(Broken))
        .file(&path, None)
        .unwrap()
        .hub(hub.clone())
        .build();
    let events: Vec<Event> = (0..20).map(|i| file_open("s1", &format!("/tmp/{i}"))).collect();
    for e in &events {
        sink.write(e).unwrap();
    }
    let error = sink.flush().unwrap_err();
    assert!(error.to_string().starts_with("broken: "), "{error}");

    let expected: String = events.iter().map(line_of).collect();
    assert_eq!(first.text(), expected);
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    let followed: String =
        (0..20).map(|_| String::from_utf8(follower.recv_timeout(Duration::ZERO).unwrap().to_vec()).unwrap()).collect();
    assert_eq!(followed, expected);

    let stats = |name: &str, written, lost| DestinationStats { name: name.into(), written, lost };
    assert_eq!(sink.destinations(), [stats("first", 20, 0), stats("broken", 0, 20), stats("file", 20, 0)]);
    assert_eq!((sink.written(), sink.lost()), (0, 20), "lost: some destination failed to take them");
}

#[test]
fn a_stalled_follower_costs_the_file_no_line() {
    let dir = TestDir::new();
    let path = dir.path("events.ndjson");
    let hub = Hub::new(2);
    let stalled = hub.subscribe(Filter::default());
    let rotation = Rotation { max_bytes: 4096, keep: 100 };
    let mut sink = Sink::builder().file(&path, Some(rotation)).unwrap().hub(hub.clone()).build();
    for i in 0..1000 {
        sink.write(&file_open("s1", &format!("/tmp/{i}"))).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!((sink.written(), sink.lost()), (1000, 0));
    assert_eq!((stalled.dropped(), hub.dropped_total()), (998, 998));

    // Every line, whole, in order, across the rotated files (oldest first).
    let mut files: Vec<_> = (1..=100).rev().map(|n| file::numbered(&path, n)).filter(|p| p.exists()).collect();
    assert!(files.len() > 10, "rotated {} times", files.len());
    files.push(path.clone());
    let all: String = files.iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    let expected: String = (0..1000).map(|i| line_of(&file_open("s1", &format!("/tmp/{i}")))).collect();
    assert_eq!(all, expected);
    for p in &files {
        assert!(fs::metadata(p).unwrap().len() <= 4096);
    }
}

#[test]
fn redaction_applies_to_every_destination() {
    let out = Shared::default();
    let hub = Hub::new(10);
    let follower = hub.subscribe(Filter::default());
    let redaction = Redaction { argv: true, path_prefixes: vec!["/home/alice/secret".into()] };
    let mut sink = Sink::builder().writer("out", Box::new(out.clone())).hub(hub).redaction(redaction.clone()).build();
    sink.write(&exec_event()).unwrap();
    sink.flush().unwrap();
    let expected = line_of(&redaction.apply(&exec_event()));
    assert!(!expected.contains("hunter2") && !expected.contains("tool\""), "{expected}");
    assert_eq!(out.text(), expected);
    assert_eq!(follower.recv_timeout(Duration::ZERO).unwrap().to_vec(), expected.into_bytes());
}
