//! `agent-monitor run` when a daemon is running: the daemon holds the session (one copy
//! of the programs for the host); this process starts the agent as its child, so the
//! agent keeps the caller's terminal, environment and working directory.
//!
//! The daemon hands over its session map's descriptor; the child registers itself
//! between fork and exec exactly as in a standalone run, so the agent's first
//! instruction is already inside the session.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::{ffi::OsStrExt, net::UnixStream, process::ExitStatusExt as _},
};

use anyhow::Context as _;

use super::{
    control::{read_reply, send},
    run_args::{RunArgs, describe, event_sink, exit_code, spawn_agent},
};
use crate::{
    daemon::{protocol::Request, unix::recv_with_fds},
    launcher, principal,
    session_map::{Registrar, SessionMapFds},
};

pub fn run(args: &RunArgs, mut stream: UnixStream) -> anyhow::Result<i32> {
    let mut sink = event_sink(args.events.as_deref())?;
    let policy_text = match &args.policy {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading the policy {}", path.display()))?)
        }
        None => None,
    };
    let user = match &args.on_behalf_of {
        Some(spec) => principal::lookup(spec).context("--on-behalf-of")?,
        None => principal::invoking_user(),
    };
    let command: Vec<String> =
        args.command.iter().map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()).collect();
    send(&mut stream, &Request::Start { profile: args.profile.clone(), policy_text, uid: user.uid, command })?;
    // The reply line carries the session maps' descriptors.
    let mut first = vec![0u8; 64 * 1024];
    let (n, fds) = recv_with_fds(&stream, &mut first).context("reading the daemon's answer")?;
    first.truncate(n);
    let mut reader = BufReader::new(Prefixed { prefix: first, at: 0, inner: stream.try_clone()? });
    let reply = read_reply(&mut reader)?;
    if !reply.ok {
        anyhow::bail!("the daemon refused the session: {}", reply.error.unwrap_or_default());
    }
    let start = reply.start.context("the daemon's answer has no session")?;
    let fds = match <[std::os::fd::OwnedFd; 2]>::try_from(fds) {
        Ok([sessions, member_bits]) => SessionMapFds { sessions, member_bits },
        Err(fds) => anyhow::bail!(
            "the daemon sent {} descriptors, not the 2 session maps (a daemon of another version?)",
            fds.len()
        ),
    };
    let registrar = Registrar::from_fds(&fds);

    launcher::block_forwarded_signals();
    let mut child = match spawn_agent(&args.command, &start, registrar) {
        Ok(child) => child,
        Err(error) => {
            let _ = send(&mut stream, &Request::Ended { status: 127 << 8 });
            return Err(error);
        }
    };
    drop(fds);
    // SAFETY: setting a disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    launcher::forward_signals_to(child.id());
    send(&mut stream, &Request::Started { pid: child.id() })?;

    // The session's events, until its session.end.
    let copier = std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut lines = 0u64;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return (sink, lines),
                Ok(_) => {}
            }
            if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) {
                let _ = sink.write_raw(&line);
                lines += 1;
                if event["type"] == "session.end" {
                    let _ = sink.flush();
                    return (sink, lines);
                }
            }
            let _ = sink.flush();
        }
    });
    let status = child.wait().context("waiting for the agent")?;
    send(&mut stream, &Request::Ended { status: status.into_raw() as u32 })?;
    let (_sink, lines) = copier.join().map_err(|_| anyhow::anyhow!("the event thread panicked"))?;
    let _ = writeln!(
        std::io::stderr(),
        "agent-monitor: session {} ended ({}), {lines} events (held by the daemon, pid {})",
        start.session,
        describe(status),
        start.daemon_pid
    );
    Ok(exit_code(status))
}

/// Bytes already received, then the rest of the stream.
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: UnixStream,
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.at);
            buf[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}
