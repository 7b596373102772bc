//! What userspace knows of each process in a session: its parent, program and
//! arguments, learned from fork, exec and exit events. Processes are identified by
//! (tgid, start time), so a reused pid never inherits a dead process's identity.

use std::collections::HashMap;

use crate::rendered::Rendered;

/// What every event of one program run says of its process: text, and JSON, made once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessImage {
    /// The start time the image was made for.
    pub start_time_ns: u64,
    pub exe: Rendered<Option<String>>,
    pub argv: Rendered<Vec<String>>,
    pub start_time: Rendered<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub tgid: u32,
    /// `CLOCK_BOOTTIME` ns; 0 until the first event of the process tells it.
    pub start_time_ns: u64,
    pub ppid: u32,
    pub session_id: u64,
    /// Program the process runs (inherited from the parent until it execs).
    pub exe: Option<Vec<u8>>,
    pub argv: Vec<Vec<u8>>,
    /// Made at the process's first event after its last exec (see `Pipeline::process`).
    pub image: Option<ProcessImage>,
}

#[derive(Debug, Default)]
pub struct ProcessTree {
    processes: HashMap<u32, ProcessInfo>,
}

impl ProcessTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first process of a session, registered by the launcher before it executes.
    pub fn add_root(&mut self, tgid: u32, ppid: u32, session_id: u64) {
        self.processes.insert(
            tgid,
            ProcessInfo { tgid, start_time_ns: 0, ppid, session_id, exe: None, argv: Vec::new(), image: None },
        );
    }

    /// The process (tgid, start) as known, creating a bare entry for a process seen
    /// for the first time (e.g. one whose fork event was lost).
    pub fn observe(&mut self, tgid: u32, start_time_ns: u64, session_id: u64) -> &mut ProcessInfo {
        let entry = self.processes.entry(tgid).or_insert_with(|| ProcessInfo {
            tgid,
            start_time_ns,
            ppid: 0,
            session_id,
            exe: None,
            argv: Vec::new(),
            image: None,
        });
        if entry.start_time_ns == 0 {
            entry.start_time_ns = start_time_ns;
        } else if start_time_ns != 0 && entry.start_time_ns != start_time_ns {
            // The pid was reused: the old process's exit was missed.
            *entry = ProcessInfo { tgid, start_time_ns, ppid: 0, session_id, exe: None, argv: Vec::new(), image: None };
        }
        entry
    }

    /// `parent` forked `child`: the child starts as a copy of the parent's program.
    pub fn fork(
        &mut self,
        parent_tgid: u32,
        parent_start_ns: u64,
        child_tgid: u32,
        child_start_ns: u64,
        session_id: u64,
    ) {
        let parent = self.observe(parent_tgid, parent_start_ns, session_id);
        let (exe, argv) = (parent.exe.clone(), parent.argv.clone());
        self.processes.insert(
            child_tgid,
            ProcessInfo {
                tgid: child_tgid,
                start_time_ns: child_start_ns,
                ppid: parent_tgid,
                session_id,
                exe,
                argv,
                image: None,
            },
        );
    }

    pub fn exec(&mut self, tgid: u32, start_time_ns: u64, session_id: u64, exe: Vec<u8>, argv: Vec<Vec<u8>>) {
        let process = self.observe(tgid, start_time_ns, session_id);
        process.exe = Some(exe);
        process.argv = argv;
        process.image = None;
    }

    /// The process ended; returns what was known of it.
    pub fn exit(&mut self, tgid: u32, start_time_ns: u64) -> Option<ProcessInfo> {
        match self.processes.get(&tgid) {
            Some(p) if p.start_time_ns == start_time_ns || p.start_time_ns == 0 || start_time_ns == 0 => {
                self.processes.remove(&tgid)
            }
            _ => None,
        }
    }

    pub fn get(&self, tgid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&tgid)
    }

    /// Parent pids from the process's parent up to the first process outside the
    /// known tree (the session's root's parent is the last entry).
    pub fn ancestry(&self, tgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut current = self.processes.get(&tgid).map(|p| p.ppid);
        while let Some(ppid) = current {
            if ppid == 0 || out.contains(&ppid) || out.len() >= 64 {
                break;
            }
            out.push(ppid);
            current = self.processes.get(&ppid).map(|p| p.ppid);
        }
        out
    }

    /// Processes of the session still alive, by pid.
    pub fn members(&self, session_id: u64) -> Vec<u32> {
        let mut pids: Vec<u32> =
            self.processes.values().filter(|p| p.session_id == session_id).map(|p| p.tgid).collect();
        pids.sort_unstable();
        pids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 9;

    #[test]
    fn fork_exec_exit() {
        let mut tree = ProcessTree::new();
        tree.add_root(100, 1, S);
        tree.exec(100, 1_000, S, b"/bin/sh".to_vec(), vec![b"sh".to_vec()]);
        tree.fork(100, 1_000, 101, 2_000, S);
        let child = tree.get(101).unwrap();
        assert_eq!((child.ppid, child.exe.as_deref()), (100, Some(&b"/bin/sh"[..])));
        tree.exec(101, 2_000, S, b"/usr/bin/cat".to_vec(), vec![b"cat".to_vec(), b"x".to_vec()]);
        tree.fork(101, 2_000, 102, 3_000, S);
        assert_eq!(tree.ancestry(102), vec![101, 100, 1]);
        assert_eq!(tree.members(S), vec![100, 101, 102]);
        assert_eq!(tree.exit(101, 2_000).unwrap().exe.as_deref(), Some(&b"/usr/bin/cat"[..]));
        assert_eq!(tree.members(S), vec![100, 102]);
        // The orphan keeps its recorded parent.
        assert_eq!(tree.get(102).unwrap().ppid, 101);
    }

    #[test]
    fn root_learns_its_start_time_from_its_first_event() {
        let mut tree = ProcessTree::new();
        tree.add_root(100, 1, S);
        tree.exec(100, 1_000, S, b"/bin/true".to_vec(), Vec::new());
        assert_eq!(tree.get(100).unwrap().start_time_ns, 1_000);
        assert_eq!(tree.get(100).unwrap().ppid, 1);
    }

    #[test]
    fn pid_reuse_does_not_inherit_identity() {
        let mut tree = ProcessTree::new();
        tree.fork(1, 1, 200, 5_000, S);
        tree.exec(200, 5_000, S, b"/usr/bin/secret-tool".to_vec(), Vec::new());
        // Exit missed; a new process gets pid 200.
        let reused = tree.observe(200, 9_000, S);
        assert_eq!(reused.exe, None);
        assert_eq!(reused.start_time_ns, 9_000);
        // An exit of the old identity does not remove the new one.
        assert!(tree.exit(200, 5_000).is_none());
        assert!(tree.get(200).is_some());
    }

    #[test]
    fn ancestry_stops_on_cycles() {
        let mut tree = ProcessTree::new();
        tree.fork(2, 1, 3, 1, S);
        tree.fork(3, 1, 2, 2, S); // nonsense input: 2 <-> 3
        assert!(tree.ancestry(2).len() <= 2);
    }
}
