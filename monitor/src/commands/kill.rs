//! `agent-monitor kill SESSION [--freeze | --thaw]`: the kill-switch, by hand.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cgroup::SessionCgroup;

pub fn kill(session: &str, freeze: bool, thaw: bool) -> anyhow::Result<i32> {
    let cgroup = SessionCgroup::open(session).with_context(|| format!("session {session}"))?;
    let pids = cgroup.pids();
    if freeze || thaw {
        cgroup
            .freeze(freeze)
            .with_context(|| format!("{} session {session}", if freeze { "freezing" } else { "thawing" }))?;
        println!("session {session} {}: {pids:?}", if freeze { "frozen in place" } else { "running again" });
        return Ok(0);
    }
    let started = Instant::now();
    cgroup.kill().with_context(|| format!("killing session {session} (cgroup.kill needs Linux >= 5.14)"))?;
    while !cgroup.pids().is_empty() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let left = cgroup.pids();
    if !left.is_empty() {
        anyhow::bail!("session {session}: still running after 5 s: {left:?}");
    }
    println!("session {session} killed in {:.1?}: {pids:?}", started.elapsed());
    Ok(0)
}
