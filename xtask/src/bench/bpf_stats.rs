//! Run time per eBPF program: `kernel.bpf_stats_enabled` on for the measurement (the
//! previous value is restored on drop), and `run_time_ns` / `run_cnt` from the fdinfo
//! of the programs a process holds. Names come from `bpftool` when it is installed.

use std::{collections::BTreeMap, process::Command};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

pub struct StatsEnabled {
    old: String,
}

impl StatsEnabled {
    pub fn on() -> anyhow::Result<StatsEnabled> {
        let old = std::fs::read_to_string(SYSCTL)?.trim().to_owned();
        std::fs::write(SYSCTL, "1")?;
        Ok(StatsEnabled { old })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.old);
    }
}

#[derive(Clone, Copy, Default)]
pub struct Run {
    pub ns: u64,
    pub count: u64,
}

/// Program id -> cumulative run time and count, for every program `pid` holds.
pub fn snapshot(pid: u32) -> anyhow::Result<BTreeMap<u32, Run>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let is_prog = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))
        else {
            continue;
        };
        let field =
            |key: &str| info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(id) = field("prog_id:") {
            out.insert(
                id as u32,
                Run { ns: field("run_time_ns:").unwrap_or(0), count: field("run_cnt:").unwrap_or(0) },
            );
        }
    }
    Ok(out)
}

/// Per program, what ran between two snapshots (programs that did not run are left out).
pub fn delta(before: &BTreeMap<u32, Run>, after: &BTreeMap<u32, Run>) -> BTreeMap<u32, Run> {
    after
        .iter()
        .filter_map(|(id, a)| {
            let b = before.get(id).copied().unwrap_or_default();
            let run = Run { ns: a.ns.saturating_sub(b.ns), count: a.count.saturating_sub(b.count) };
            (run.count > 0).then_some((*id, run))
        })
        .collect()
}

/// Program id -> "type name", from `bpftool -j prog show` (empty without bpftool).
pub fn names() -> BTreeMap<u32, String> {
    let Ok(out) = Command::new("bpftool").args(["-j", "prog", "show"]).output() else { return BTreeMap::new() };
    let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) else { return BTreeMap::new() };
    list.iter()
        .filter_map(|p| {
            let id = p["id"].as_u64()? as u32;
            Some((id, format!("{} {}", p["type"].as_str().unwrap_or("?"), p["name"].as_str().unwrap_or("?"))))
        })
        .collect()
}
