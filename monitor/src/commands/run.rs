//! `agent-monitor run -- CMD [ARGS...]`: run one agent as a session, in the foreground,
//! and stream its events.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::Path,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use monitor_common::{policy::session_flags, session::SessionMember};

use super::run_args::{RunArgs, describe, event_sink, exit_code};
use crate::{
    actions::{self, KillInfo, KillTable},
    cgroup::SessionCgroup,
    cgroup_fence::ReadOnlyCgroups,
    clock::BootClock,
    enforcement::{LsmChoice, Tier},
    event::{Loss, PrincipalRef, monitor_info, text},
    event_context::{Context, session_ref},
    guard_filter::GuardFilter,
    host_refresh,
    ingest::{Ingest, Item, Settle, UserspaceLoss},
    launcher::{self, spawn_in_session},
    loader::{Probes, attach_network},
    loss::{LossCounters, LossReport},
    mounts::MountTable,
    pipeline::{Pipeline, PolicyView},
    policy::{
        self, Mode, OnViolation, Profile,
        compile::compile,
        host::{self, resolve_host},
    },
    principal,
    process_tree::ProcessTree,
    seccomp::ForeignAbiFilter,
    session::{self, Closing, Opening, new_session_id, session_flags_for},
    session_map::SessionMap,
    watchdog::{OnMonitorDeath, Watchdog},
};

/// Policy id of the session's compiled tables (one session per `run`).
const POLICY_ID: u32 = 1;

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
    let mut sink = event_sink(args.events.as_deref())?;
    let profile = choose_profile(args.policy.as_deref(), args.profile.as_deref())?;
    let user = match &args.on_behalf_of {
        Some(spec) => principal::lookup(spec).context("--on-behalf-of")?,
        None => principal::invoking_user(),
    };
    launcher::block_forwarded_signals();
    // Before the programs load: they protect the watchdog's pid like the monitor's.
    let events_file = args.events.as_deref().filter(|p| p.as_os_str() != "-");
    let mut watchdog = Watchdog::spawn(events_file, events_file.is_none())?;
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
    let Probes {
        mut ebpf,
        enforcement,
        sessions,
        events,
        decisions,
        reader_state,
        counters,
        skipped_runs,
        mut rules,
        ..
    } = probes;

    let mounts = MountTable::load().context("reading the mount table")?;
    let environment = host::environment(user.home.clone(), &mounts);
    let compiled = compile(&profile, &environment);
    for note in &compiled.notes {
        log::warn!("profile {}: {note}", profile.name);
    }
    rules.install(POLICY_ID, &compiled).context("writing the policy into the kernel")?;
    let hosts = host_refresh::host_entries(compiled.rules_of_network(&profile), &|host: &str| resolve_host(host));
    // A root principal can open anything: only other users narrow the scope.
    let acts_for_user = user.uid != 0;
    if acts_for_user {
        rules.install_principal(POLICY_ID, &user.principal()).context("writing the principal into the kernel")?;
    }

    let session_id = new_session_id();
    let flags = session_flags_for(&profile, acts_for_user, enforcement.files);
    let member = SessionMember { session_id, policy_id: POLICY_ID, flags };
    let restricts_network = profile.connect.is_some() || profile.bind.is_some();
    let cgroup = match SessionCgroup::create(&session_ref(session_id).id) {
        Ok(cgroup) => Some(Arc::new(cgroup)),
        Err(error) if profile.on_violation == OnViolation::KillSession || restricts_network => {
            bail!("profile {} needs a cgroup v2 for the session (network rules, kill-session): {error}", profile.name)
        }
        Err(error) => {
            log::warn!("no cgroup for the session ({error}); kill-session is unavailable");
            None
        }
    };
    let on_monitor_death = args.on_monitor_death.unwrap_or(OnMonitorDeath::default_for(profile.mode == Mode::Enforce));
    match &cgroup {
        Some(cgroup) => watchdog
            .guard(session_id, &profile.name, on_monitor_death, cgroup.path())
            .context("telling the watchdog")?,
        None => log::warn!("without a session cgroup, the session cannot be ended if the monitor dies"),
    }
    if let Some(cgroup) = &cgroup
        && enforcement.network == Tier::Cgroup
    {
        let attached = std::fs::File::open(cgroup.path())
            .map_err(anyhow::Error::from)
            .and_then(|dir| attach_network(&mut ebpf, &dir).map_err(anyhow::Error::from));
        if let Err(error) = attached {
            let _ = cgroup.remove();
            return Err(error.context("attaching the network hooks to the session's cgroup"));
        }
    }
    // Every program is attached now: the watchdog keeps them so while the monitor dies.
    if let Err(error) = watchdog.hold_attachments() {
        log::warn!(
            "the watchdog cannot hold the programs' links ({error}): if the monitor dies, they detach before the session is ended"
        );
    }
    let context = Context::new();
    let started_ns = BootClock::now_boot_ns();
    // The kernel hooks watch native syscall numbers: where they enforce file rules,
    // foreign syscall ABIs are closed off.
    let enforces_files = flags & session_flags::ENFORCE != 0
        && flags & (session_flags::RESTRICTS_FILES | session_flags::HAS_PRINCIPAL) != 0;
    let foreign_abi = enforces_files.then(ForeignAbiFilter::new);
    // The envelope in every session; without the LSM tier's self-protection hooks, the
    // seccomp filter also keeps the session's hands off the monitor (refused, not
    // reported).
    // SAFETY: getpgrp has no preconditions.
    let monitor_pgid = unsafe { libc::getpgrp() } as u32;
    if enforcement.self_protection == Tier::Seccomp {
        crate::guard_filter::undumpable();
    }
    let guard = Some(if enforcement.self_protection == Tier::Seccomp {
        GuardFilter::new(&[std::process::id(), watchdog.pid()], monitor_pgid)
    } else {
        GuardFilter::envelope()
    });
    let ptrace_hooked = enforcement.self_protection == Tier::Lsm;
    let envelope = Some(profile.envelope.envelope(ptrace_hooked, profile.mode == Mode::Enforce));
    let fence = Some(ReadOnlyCgroups::of_this_system().context("reading the mount table")?);
    let procs = cgroup.as_ref().map(|c| c.procs_cstring());
    let child =
        spawn_in_session(&args.command, sessions.registrar(), member, procs, foreign_abi, guard, envelope, fence)
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", args.command[0].to_string_lossy()));
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.remove();
            }
            drop(ebpf);
            return Err(e);
        }
    };
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
    let root_pid = child.id();
    launcher::forward_signals_to(root_pid);

    let start = session::start_event_at(
        &context,
        started_ns,
        Opening {
            id: session_id,
            root_pid,
            command: args.command.iter().map(|a| text(a.as_bytes())).collect(),
            profile: profile.name.clone(),
            principal: PrincipalRef { name: user.name.clone(), uid: user.uid },
            mode: profile.mode,
            origin: None,
            adopted_by: None,
            enforcement,
        },
    );
    // The agent runs already: a failing sink is counted from here on, never fatal.
    let _ = sink.write(&start);

    let mut tree = ProcessTree::new();
    tree.add_root(root_pid, std::process::id(), session_id);
    let (queue, received) = crate::queue::bounded::<Item>();
    let user_loss = Arc::new(UserspaceLoss::default());
    let kill_table: KillTable = Arc::new(Mutex::new(BTreeMap::from([(
        session_id,
        KillInfo {
            on_violation: profile.on_violation,
            enforce: profile.mode == Mode::Enforce,
            cgroup: cgroup.clone(),
            killed: false,
        },
    )])));
    let hook_members = SessionMap::from_fds(sessions.fds_dup().context("duplicating the session maps' descriptors")?)
        .context("opening the session map for the kill hook")?;
    let hook = actions::violation_hook(kill_table.clone(), hook_members, Box::new(|_| {}));
    let settle_cgroup = cgroup.clone();
    let settle_table = kill_table.clone();
    let settle: Settle = Box::new(move || {
        // After a kill-session, report the end only once all of the session is gone,
        // so that every process's exit is in the stream.
        if let Some(cgroup) = settle_cgroup
            && settle_table.lock().expect("kill table").get(&session_id).is_some_and(|info| info.killed)
        {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !cgroup.pids().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let ingest = Ingest::spawn(events, decisions, reader_state, queue, user_loss.clone(), hook, settle);
    host_refresh::spawn(POLICY_ID, hosts, rules.net, resolve_host);
    let mut pipeline = Pipeline::new(context, tree, sink);
    pipeline.policy = Some(PolicyView {
        profile: profile.name.clone(),
        mode: profile.mode,
        on_violation: profile.on_violation,
        rules: compiled.rules.clone(),
        principal: user.to_string(),
    });
    // From here on the agent runs: a failure must not leave it running unmonitored.
    let fail = |child: &mut std::process::Child, error: anyhow::Error| -> anyhow::Error {
        match &cgroup {
            Some(cgroup) => {
                let _ = cgroup.kill();
            }
            None => {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        error
    };
    let worker = match std::thread::Builder::new().name("pipeline".into()).spawn(move || {
        let counters = LossCounters { kernel: counters, skipped_runs, user: user_loss };
        process_events(pipeline, received, LossReport::new(counters, Some(session_id)), session_id)
    }) {
        Ok(worker) => worker,
        Err(error) => return Err(fail(&mut child, anyhow::Error::from(error).context("starting the pipeline thread"))),
    };

    let status = match child.wait() {
        Ok(status) => status,
        Err(error) => return Err(fail(&mut child, anyhow::Error::from(error).context("waiting for the agent"))),
    };
    // The session ends with its first process: what it left behind would otherwise run
    // on unobserved. It is killed, reported in session.end, and the cgroup removed.
    let left_behind = cgroup.as_ref().map(|c| c.pids()).unwrap_or_default();
    if cgroup.is_some() && !left_behind.is_empty() {
        if let (_, Some(error)) = actions::kill_session(&sessions, session_id, cgroup.as_deref()) {
            log::warn!("killing what the session left behind: {error}");
        }
        if let Some(info) = kill_table.lock().expect("kill table").get_mut(&session_id) {
            info.killed = true;
        }
    }
    ingest.stop();
    let (mut pipeline, loss) = worker.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;

    // Without a cgroup, leftovers cannot be killed as a whole: they are only reported.
    let remaining = if cgroup.is_some() { left_behind } else { sessions.members(session_id) };
    let mut info = monitor_info(Some(pipeline.sink.written() + 1));
    info.latency = pipeline.latency();
    let end = session::end_event(
        &pipeline.context,
        Closing {
            id: session_id,
            root_pid,
            remaining_pids: remaining.clone(),
            wait_status: Some(status.into_raw() as u32),
            loss,
            monitor: info,
        },
    );
    let loss = Loss { sink_error: pipeline.sink.lost(), ..loss };
    pipeline.write(&end);
    pipeline.flush();
    if let Some(cgroup) = &cgroup
        && let Err(error) = cgroup.remove()
    {
        log::warn!("removing {}: {error}", cgroup.path().display());
    }
    watchdog.release(session_id);
    // The programs first: the watchdog's copies of their links are then the last, and
    // it detaches them while `run` returns.
    drop(ebpf);
    watchdog.finish_in_background();

    let code = exit_code(status);
    let mut summary = format!(
        "agent-monitor: session {} ended ({}), {} events, {} lost",
        session_ref(session_id).id,
        describe(status),
        pipeline.sink.written(),
        loss.total()
    );
    if !remaining.is_empty() && cgroup.is_some() {
        summary.push_str(&format!(", killed what it left running: {remaining:?}"));
    } else if !remaining.is_empty() {
        summary.push_str(&format!(", still running and no longer monitored: {remaining:?}"));
    }
    let _ = writeln!(std::io::stderr(), "{summary}");
    Ok(code)
}

/// Pipeline thread: handles events until the queue closes, reporting loss as it grows;
/// returns the pipeline and all that was lost.
fn process_events(
    mut pipeline: Pipeline,
    received: crate::queue::Receiver<Item>,
    mut loss: LossReport,
    session_id: u64,
) -> (Pipeline, Loss) {
    loop {
        let first = received.recv_timeout(Duration::from_millis(100));
        let closed = matches!(first, Err(mpsc::RecvTimeoutError::Disconnected));
        if let Ok(item) = first {
            handle(&mut pipeline, item, session_id);
            // Under sustained load the queue never drains: check loss along the way.
            let mut handled = 1u32;
            while let Ok(item) = received.try_recv() {
                handle(&mut pipeline, item, session_id);
                handled += 1;
                if handled.is_multiple_of(4096) {
                    loss.report_if_due(&mut pipeline);
                }
            }
        }
        if closed {
            loss.report(&mut pipeline);
        } else {
            loss.report_if_due(&mut pipeline);
        }
        pipeline.flush();
        if closed {
            let all = loss.current(&pipeline);
            return (pipeline, all);
        }
    }
}

fn handle(pipeline: &mut Pipeline, item: Item, session_id: u64) {
    match item {
        Item::Kernel(event) => pipeline.handle(event),
        Item::SessionKilled { session: _, time_ns, pids, trigger_pid, error } => {
            let event = pipeline.session_killed(session_id, time_ns, pids, trigger_pid, error);
            pipeline.write(&event);
        }
    }
}
