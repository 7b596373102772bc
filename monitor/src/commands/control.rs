//! The CLI side of the control socket: `status`, `sessions`, `events`, `reload`, and
//! `kill` when a daemon runs.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
};

use anyhow::Context as _;

use crate::daemon::protocol::{Reply, Request, SessionInfo, Status};

/// Connects to the daemon's socket; `None` if no daemon listens there.
pub fn connect(socket: &Path) -> Option<UnixStream> {
    UnixStream::connect(socket).ok()
}

fn connect_or_explain(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).with_context(|| {
        format!("no agent-monitor daemon answers on {} (start it: systemctl start agent-monitor, or agent-monitor daemon; another socket: --socket)", socket.display())
    })
}

pub fn send(stream: &mut UnixStream, request: &Request) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).context("writing to the control socket")
}

pub fn read_reply(reader: &mut impl BufRead) -> anyhow::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        anyhow::bail!("the daemon closed the connection without an answer");
    }
    serde_json::from_str(&line).with_context(|| format!("unexpected answer from the daemon: {line:?}"))
}

/// One request, one reply; an error reply is an error.
pub fn ask(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
    let mut stream = connect_or_explain(socket)?;
    send(&mut stream, request)?;
    let reply = read_reply(&mut BufReader::new(stream))?;
    match reply.error {
        Some(error) if !reply.ok => anyhow::bail!("{error}"),
        _ => Ok(reply),
    }
}

pub fn status(socket: &Path, json: bool) -> anyhow::Result<i32> {
    let status = ask(socket, &Request::Status)?.status.context("the daemon sent no status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status_text(&status));
    }
    Ok(0)
}

fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let uptime = humantime::format_duration(std::time::Duration::from_secs(s.uptime_s));
    out += &format!("agent-monitor {} (pid {}), up {uptime}, kernel {} {}\n", s.version, s.pid, s.kernel, s.arch);
    if let Some(tiers) = s.enforcement.as_object() {
        let tiers: Vec<String> = tiers.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("?"))).collect();
        out += &format!("enforcement: {}\n", tiers.join(", "));
    }
    out += &format!(
        "policy: {} ({} profile(s): {}; {} adopting selector(s))\n",
        s.policy_file.as_deref().unwrap_or("built-in"),
        s.profiles.len(),
        s.profiles.join(", "),
        s.adopting_selectors
    );
    let lost: u64 = s.lost.as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
    out += &format!("sessions: {}; events written: {}, lost: {lost}\n", s.sessions, s.events_written);
    out += &format!(
        "followers: {} (lines they dropped: {}); reloads: {} ({} refused)\n",
        s.followers, s.follower_drops, s.reloads, s.reload_failures
    );
    out
}

pub fn sessions(socket: &Path, json: bool) -> anyhow::Result<i32> {
    let sessions = ask(socket, &Request::Sessions)?.sessions.unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
    } else {
        print!("{}", sessions_table(&sessions));
    }
    Ok(0)
}

fn sessions_table(sessions: &[SessionInfo]) -> String {
    let mut out = format!(
        "{:<16}  {:<16}  {:<7}  {:<7}  {:>7}  {:>5}  {:<20}  {}\n",
        "SESSION", "PROFILE", "MODE", "ORIGIN", "ROOT", "PIDS", "STARTED", "ADOPTED BY"
    );
    for s in sessions {
        let mode = if s.frozen { format!("{} (frozen)", s.mode) } else { s.mode.clone() };
        out += &format!(
            "{:<16}  {:<16}  {:<7}  {:<7}  {:>7}  {:>5}  {:<20}  {}\n",
            s.id,
            s.profile,
            mode,
            s.origin,
            s.root_pid,
            s.pids.len(),
            s.started,
            s.adopted_by.as_deref().unwrap_or("-")
        );
    }
    out
}

/// Copies the event stream to stdout until the daemon stops or stdout closes.
pub fn events(socket: &Path, session: Option<String>, types: Vec<String>) -> anyhow::Result<i32> {
    let mut stream = connect_or_explain(socket)?;
    send(&mut stream, &Request::Events { session, types })?;
    let mut reader = BufReader::new(stream);
    let reply = read_reply(&mut reader)?;
    if let Some(error) = reply.error {
        anyhow::bail!("{error}");
    }
    let stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(0);
        }
        let mut out = stdout.lock();
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            return Ok(0);
        }
    }
}

pub fn reload(socket: &Path) -> anyhow::Result<i32> {
    let reply = ask(socket, &Request::Reload)?;
    println!("{}", reply.message.unwrap_or_default());
    Ok(0)
}

pub fn kill(socket: &Path, session: &str, freeze: bool, thaw: bool) -> anyhow::Result<i32> {
    let reply = ask(socket, &Request::Kill { session: session.to_owned(), freeze, thaw })?;
    println!("{}", reply.message.unwrap_or_default());
    Ok(0)
}
