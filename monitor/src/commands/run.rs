//! `agent-monitor run -- CMD [ARGS...]`: run one agent as a session, in the foreground,
//! and stream its events. Without a daemon, this process runs the session engine
//! (`daemon::engine`) itself, with this one session and no control socket, and is its
//! `run` client as `run_via_daemon` is the daemon's.

use std::{
    io::Write,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    sync::mpsc,
};

use anyhow::{Context as _, bail};

use super::run_args::{RunArgs, describe, event_sink, exit_code, spawn_agent};
use crate::{
    actions,
    daemon::{
        config::Config,
        control::Command,
        engine::{Engine, Running},
        sessions::ENDING_MAX,
    },
    enforcement::{LsmChoice, Tier},
    event::text,
    event_context::session_id_text,
    launcher,
    loader::{Probes, attach_network},
    policy::{self, Profile},
    principal,
    session_map::{Registrar, SessionMap},
    watchdog::Watchdog,
};

/// The profile to hold the session to, from the file or the built-in policy.
pub fn choose_profile(policy_file: Option<&Path>, profile: Option<&str>) -> anyhow::Result<Profile> {
    let policy = match policy_file {
        None => policy::default_policy(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading the policy {}", path.display()))?;
            policy::parse_policy(&text).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                anyhow::anyhow!("{} has {} error(s):\n{}", path.display(), errors.len(), lines.join("\n"))
            })?
        }
    };
    let names: Vec<&str> = policy.profiles.iter().map(|p| p.name.as_str()).collect();
    let name = match (profile, policy_file) {
        (Some(name), _) => name,
        (None, None) => policy::DEFAULT_PROFILE,
        (None, Some(_)) if names.len() == 1 => names[0],
        (None, Some(path)) => {
            bail!("{} has several profiles ({}): choose one with --profile", path.display(), names.join(", "))
        }
    };
    policy.profile(name).cloned().ok_or_else(|| {
        let place = policy_file.map_or("the built-in policy".to_owned(), |p| p.display().to_string());
        anyhow::anyhow!("no profile {name:?} in {place}; profiles there: {}", names.join(", "))
    })
}

/// Runs the session in this process (no daemon asked); returns the exit code
/// agent-monitor should exit with.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let sink = event_sink(args.events.as_deref())?;
    let profile = choose_profile(args.policy.as_deref(), args.profile.as_deref())?;
    let user = match &args.on_behalf_of {
        Some(spec) => principal::lookup(spec).context("--on-behalf-of")?,
        None => principal::invoking_user(),
    };
    launcher::block_forwarded_signals();
    // Before the programs load: they protect the watchdog's pid like the monitor's.
    let events_file = args.events.as_deref().filter(|p| p.as_os_str() != "-");
    let watchdog = Watchdog::spawn(events_file, events_file.is_none())?;
    let choice = if args.no_lsm { LsmChoice::Off } else { LsmChoice::Auto };
    let mut probes = crate::tracefs::attach_with_tracefs(|| Probes::load(choice, args.ebpf_log))
        .context("loading the eBPF programs")?;
    probes.read_ebpf_log().context("reading the eBPF programs' log (--ebpf-log)")?;
    // No session member may change the monitor's own files.
    let own_files =
        std::env::current_exe().into_iter().chain(args.policy.clone()).chain(events_file.map(Path::to_path_buf));
    for path in own_files {
        probes.protect(&path).with_context(|| format!("protecting {}", path.display()))?;
    }
    if probes.enforcement.self_protection == Tier::Seccomp {
        crate::guard_filter::undumpable();
    }
    let network_tier = probes.enforcement.network;
    let config = Config { on_monitor_death: args.on_monitor_death, ..Config::default() };
    let mut engine = Engine::assemble(probes, config, PathBuf::new(), sink, None, watchdog)?;
    engine.daemon.standalone = true;
    let (ended_sender, ended) = mpsc::channel();
    engine.daemon.ended = Some(ended_sender);
    let (settled_sender, settled) = mpsc::channel();
    engine.daemon.settled = Some(settled_sender);
    let command = args.command.iter().map(|a| text(a.as_bytes())).collect();
    let start = match engine.daemon.start_run(&profile, &user, command) {
        Ok(start) => start,
        Err(error) => {
            finish(engine.abandon());
            return Err(error);
        }
    };
    let session = start.session_id;
    // The network hooks watch the session's cgroup (and what it creates below it).
    if network_tier == Tier::Cgroup
        && let Some(procs) = &start.cgroup_procs
    {
        let dir = Path::new(procs).parent().expect("a cgroup.procs file is in its cgroup");
        let attached = std::fs::File::open(dir)
            .map_err(anyhow::Error::from)
            .and_then(|dir| attach_network(&mut engine.daemon.ebpf, &dir).map_err(anyhow::Error::from));
        if let Err(error) = attached {
            engine.daemon.run_ended(session, 127 << 8, Vec::new());
            finish(engine.abandon());
            return Err(error.context("attaching the network hooks to the session's cgroup"));
        }
    }
    // Every program is attached now: the watchdog keeps them so while the monitor dies.
    if let Some(Err(error)) = engine.daemon.watchdog.as_mut().map(Watchdog::hold_attachments) {
        log::warn!(
            "the watchdog cannot hold the programs' links ({error}): if the monitor dies, they detach before the session is ended"
        );
    }
    let fds = match engine.daemon.members.fds_dup() {
        Ok(fds) => fds,
        Err(error) => {
            engine.daemon.run_ended(session, 127 << 8, Vec::new());
            finish(engine.abandon());
            return Err(anyhow::Error::from(error).context("duplicating the session maps' descriptors"));
        }
    };
    let cgroup = engine.daemon.sessions.get(&session).and_then(|record| record.cgroup.clone());
    let child = spawn_agent(&args.command, &start, Registrar::from_fds(&fds));
    let members = SessionMap::from_fds(fds);
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            engine.daemon.run_ended(session, 127 << 8, Vec::new());
            finish(engine.abandon());
            return Err(error);
        }
    };
    // The agent runs (`spawn` returns once it executed): its records are read, and its
    // violations acted on, from now, before anything is written to a sink that could
    // block.
    engine.read_kernel();
    // Terminal signals reach the agent directly (same process group); the monitor
    // outlives them to report how the session ended.
    // SAFETY: setting a disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        // An agent that made itself the terminal's foreground group would stop the
        // monitor at its next write to the terminal (or read), with no signal sent.
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    launcher::forward_signals_to(child.id());
    engine.daemon.started_run(session, child.id(), std::process::id());
    let running = match engine.spawn() {
        Ok(running) => running,
        Err(error) => {
            // Unmonitored from here: it does not go on.
            if let Ok(members) = &members {
                actions::kill_session(members, session, cgroup.as_deref());
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };

    let status = child.wait();
    // The session ends with its first process: what it left behind would otherwise run
    // on unobserved. It is killed here, at once (whatever the engine's thread is doing),
    // reported in session.end, and the cgroup removed.
    let killed = match &members {
        Ok(members) if cgroup.as_ref().map_or(!members.members(session).is_empty(), |c| !c.pids().is_empty()) => {
            actions::kill_session(members, session, cgroup.as_deref()).0
        }
        _ => Vec::new(),
    };
    let wait_status = status.as_ref().map_or(0, |status| status.into_raw() as u32);
    let killed_here = killed.clone();
    tell(&running, |reply| Command::RunEnded { session, status: wait_status, killed, reply });
    // Once the exit records of all its processes are read (or after `ENDING_MAX`), the
    // stop drains the ring buffers a last time, and the session ends after that.
    let _ = settled.recv_timeout(ENDING_MAX);
    let daemon = running.stop()?;
    // (What it killed, also if the engine's thread had ended before it was told.)
    let mut remaining = ended.try_recv().map_or_else(|_| Vec::new(), |e| e.remaining_pids);
    remaining.extend(killed_here);
    remaining.sort_unstable();
    remaining.dedup();
    let status = status.context("waiting for the agent")?;
    let (written, lost) = (daemon.pipeline.sink.written(), daemon.lost().total());
    finish(daemon);

    let mut summary = format!(
        "agent-monitor: session {} ended ({}), {written} events, {lost} lost",
        session_id_text(session),
        describe(status),
    );
    if !remaining.is_empty() {
        summary.push_str(&format!(", killed what it left running: {remaining:?}"));
    }
    let _ = writeln!(std::io::stderr(), "{summary}");
    Ok(exit_code(status))
}

/// Sends the engine a command and waits for its answer.
fn tell(running: &Running, command: impl FnOnce(mpsc::Sender<crate::daemon::protocol::Reply>) -> Command) {
    let (reply, answer) = mpsc::channel();
    if running.commands.send(command(reply)).is_ok() {
        let _ = answer.recv();
    }
}

/// Closes the programs, then lets the watchdog detach its copies of their links while
/// `run` returns.
fn finish(mut daemon: crate::daemon::state::Daemon) {
    let watchdog = daemon.watchdog.take();
    drop(daemon);
    if let Some(watchdog) = watchdog {
        watchdog.finish_in_background();
    }
    crate::cgroup::remove_parent_if_empty();
}
