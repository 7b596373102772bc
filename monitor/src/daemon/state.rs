//! The daemon's one thread of state: it owns the kernel maps, the policy, the sessions
//! and the pipeline, and handles kernel events and control commands in turn, so no
//! state is shared behind locks (only the kill table the ingest thread reads).

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use aya::Ebpf;
use monitor_common::{policy::session_flags, session::SessionMember};

use super::{
    adopt_maps::AdoptMaps,
    adoption::{self, Tables},
    config::{Config, OnStop},
    control::Command,
    policies::{self, PolicySet, install_profile},
    protocol::{Reply, Request, SessionInfo, StartReply, Status},
    sessions::{self, Origin, Phase, Session, Starting},
};
use crate::{
    actions::{self, KillInfo, KillTable},
    cgroup::{SessionCgroup, cgroup2_mount},
    clock::BootClock,
    decode::KernelEvent,
    enforcement::{Enforcement, Tier},
    event::{Event, Monitor, NO_SESSION, PolicyState, PrincipalRef, monitor_info, text, types},
    event_context::{Context, session_id_text, session_ref},
    host_refresh::{FollowedHosts, HostFollower},
    ingest::Item,
    loader::SyscallLinks,
    loss::{LossCounters, LossReport},
    mounts::MountTable,
    pipeline::{Pipeline, PolicyView},
    policy::{self, Mode, Policy, host::resolve_host},
    principal,
    rule_maps::RuleMaps,
    running_process::RunningProcess,
    session::{self, Closing, Opening},
    session_map::{Adoption, Existing, SessionMap},
    watchdog::{OnMonitorDeath, Watchdog},
};

/// Rules of a replaced policy stay this long after a reload, for kernel programs and
/// adoptions that raced with it.
const OLD_POLICY_GRACE: Duration = Duration::from_secs(2);
/// How often the thread reports new losses, ends sessions whose last exit record was
/// lost, and retires old policies (`Daemon::tick`).
const TICK: Duration = Duration::from_secs(1);

/// Events of a `run` session held back until its client reports the process started.
const HELD_MAX: usize = 10_000;

/// What the daemon holds of the kernel side.
pub struct KernelParts {
    pub ebpf: Ebpf,
    /// Tier 2's syscall hooks, attached while this is held.
    pub syscall_links: SyscallLinks,
    pub enforcement: Enforcement,
    pub rules: RuleMaps,
    pub members: SessionMap,
    pub adopt: AdoptMaps,
    pub loss: LossCounters,
}

pub struct Daemon {
    pub config: Config,
    pub config_path: PathBuf,
    pub ebpf: Ebpf,
    #[allow(dead_code, reason = "held for its drop, which detaches tier 2's syscall hooks")]
    syscall_links: SyscallLinks,
    pub enforcement: Enforcement,
    pub rules: RuleMaps,
    pub members: SessionMap,
    pub adopt: AdoptMaps,
    pub pipeline: Pipeline,
    pub kill_table: KillTable,
    pub policies: PolicySet,
    /// Adoption tables by generation (the kernel names the generation it used).
    pub generations: [Option<Tables>; 2],
    pub next_policy_id: u32,
    pub sessions: BTreeMap<u64, Session>,
    /// Policy ids to remove once their time comes.
    pub retiring: Vec<(Instant, Vec<u32>)>,
    pub started: Instant,
    pub reloads: u64,
    pub reload_failures: u64,
    /// What was lost, and what of it `monitor.loss` reported.
    loss: LossReport,
    /// Sessions without a process at the last tick.
    empty_last_tick: Vec<u64>,
    /// Sessions released or frozen by a stop (`on_stop`), and those frozen.
    stopped: std::collections::HashSet<u64>,
    frozen_at_stop: Vec<u64>,
    /// Ends or freezes the sessions if the daemon dies (`None` in tests).
    pub watchdog: Option<Watchdog>,
    /// A standalone `run`: the event stream is its one session's, so there is no
    /// `monitor.start`/`monitor.stop`, and `session.end` counts the stream's events.
    pub standalone: bool,
    /// Told of every session that ended, with what it left running.
    pub ended: Option<mpsc::Sender<Ended>>,
    /// A standalone `run`'s: told when every process of its session was read gone (the
    /// session then ends at the stop).
    pub settled: Option<mpsc::Sender<u64>>,
    /// Follows the host names in the installed policies' network rules (started with
    /// the first of them).
    hosts: Option<HostFollower>,
}

/// A session that ended: its id and the processes killed because they outlived it.
#[derive(Debug)]
pub struct Ended {
    pub session: u64,
    pub remaining_pids: Vec<u32>,
}

impl Daemon {
    pub fn new(
        config: Config,
        config_path: PathBuf,
        kernel: KernelParts,
        pipeline: Pipeline,
        kill_table: KillTable,
    ) -> Daemon {
        let KernelParts { ebpf, syscall_links, enforcement, rules, members, adopt, loss } = kernel;
        Daemon {
            config,
            config_path,
            ebpf,
            syscall_links,
            enforcement,
            rules,
            members,
            adopt,
            pipeline,
            kill_table,
            policies: PolicySet::empty(),
            generations: [None, None],
            next_policy_id: 1,
            sessions: BTreeMap::new(),
            retiring: Vec::new(),
            started: Instant::now(),
            reloads: 0,
            reload_failures: 0,
            loss: LossReport::new(loss, None),
            stopped: Default::default(),
            frozen_at_stop: Vec::new(),
            empty_last_tick: Vec::new(),
            watchdog: None,
            standalone: false,
            ended: None,
            settled: None,
            hosts: None,
        }
    }

    /// Installs the first policy (before anything is adopted).
    pub fn install_first(&mut self, policy: &Policy) -> anyhow::Result<()> {
        let mut set = PolicySet::install(policy, &mut self.rules, &mut self.next_policy_id, self.enforcement.files)?;
        for note in &set.notes {
            log::warn!("{note}");
        }
        self.adopt.install(&set.adoption)?;
        self.generations[self.adopt.generation() as usize] = Some(set.adoption.clone());
        self.follow_hosts(std::mem::take(&mut set.hosts));
        self.policies = set;
        let event = self.monitor_event(types::MONITOR_START, None, None);
        self.pipeline.write(&event);
        Ok(())
    }

    fn monitor_event(&self, event_type: &'static str, error: Option<String>, updated: Option<u32>) -> Event {
        let policy = PolicyState {
            file: self.config.policy.as_ref().map(|p| p.display().to_string()),
            accepted: error.is_none(),
            profiles: self.policies.profiles.iter().map(|p| p.profile.name.clone()).collect(),
            error,
            sessions_updated: updated,
        };
        monitor_event(&self.pipeline.context, event_type, self.enforcement, policy)
    }

    /// Runs until a `Stop` command; returns after the sessions were released or frozen
    /// and everything ingest read until then was written, `monitor.stop` last.
    pub fn run(mut self, items: crate::queue::Receiver<Item>, commands: mpsc::Receiver<Command>) -> Daemon {
        let mut last_tick = Instant::now();
        loop {
            // Commands wake the wait (`control::Commands`); nothing is polled.
            let until_tick = TICK.saturating_sub(last_tick.elapsed());
            match items.recv_timeout(until_tick) {
                Ok(item) => {
                    self.handle_item(item);
                    let mut handled = 0;
                    while handled < 4096
                        && let Ok(item) = items.try_recv()
                    {
                        self.handle_item(item);
                        handled += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    log::error!("the ingest thread ended; stopping");
                    self.stop_sessions();
                    self.write_stop();
                    self.ended = None;
                    self.settled = None;
                    return self;
                }
            }
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Request { request, peer_pid, reply } => {
                        let answer = self.request(request, peer_pid);
                        let _ = reply.send(answer);
                    }
                    Command::RunStarted { session, pid, parent, reply } => {
                        let _ = reply.send(self.started_run(session, pid, parent));
                    }
                    Command::RunEnded { session, status, killed, reply } => {
                        self.run_ended(session, status, killed);
                        let _ = reply.send(Reply::ok());
                    }
                    Command::Detached { session } => {
                        if let Some(record) = self.sessions.get_mut(&session) {
                            record.client = false;
                        }
                        log::info!("the client of session {} went away; the session goes on", session_id_text(session));
                    }
                    Command::Stop { sessions_stopped } => {
                        self.stop_sessions();
                        let _ = sessions_stopped.send(());
                        self.handle_until_ingest_ends(&items);
                        // Adoptions the kernel made before adoption was turned off.
                        self.stop_sessions();
                        self.write_stop();
                        self.ended = None;
                        self.settled = None;
                        return self;
                    }
                }
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
            self.pipeline.flush();
        }
    }

    fn handle_item(&mut self, item: Item) {
        match item {
            Item::Kernel(KernelEvent::Adopt { header, selector, generation, policy_id, flags }) => {
                self.adopted(
                    header.session_id,
                    header.tgid,
                    header.uid,
                    selector,
                    generation,
                    SessionMember { session_id: header.session_id, policy_id, flags },
                );
            }
            item => {
                let session = match &item {
                    Item::Kernel(event) => event.header().session_id,
                    Item::SessionKilled { session, .. } => *session,
                };
                match self.sessions.get_mut(&session).map(|record| &mut record.phase) {
                    // An adopted session starts with the exec that adopted it: reported
                    // with the command line that exec set.
                    Some(Phase::Starting(Starting::Exec)) => {
                        if let Item::Kernel(KernelEvent::Exec { argv, .. }) = &item {
                            let command = argv.iter().map(|a| text(a)).collect();
                            self.announce(session, Some(command));
                        }
                    }
                    Some(Phase::Starting(Starting::Run { held, .. })) => {
                        if held.len() < HELD_MAX {
                            held.push(item);
                            return;
                        }
                        // Never held for ever: the session starts without its root pid.
                        self.announce(session, None);
                    }
                    _ => {}
                }
                self.write_item(item);
            }
        }
    }

    fn write_item(&mut self, item: Item) {
        match item {
            Item::Kernel(event) => self.process(event),
            Item::SessionKilled { session, time_ns, pids, trigger_pid, error } => {
                let event = self.pipeline.session_killed(session, time_ns, pids, trigger_pid, error);
                self.pipeline.write(&event);
            }
        }
    }

    /// Writes a kernel event, keeping each session's live processes; a session whose
    /// last process's exit record this was ends.
    fn process(&mut self, event: KernelEvent) {
        let mut exited = None;
        if let Some(record) = self.sessions.get_mut(&event.header().session_id) {
            match &event {
                KernelEvent::Fork { child_tgid, .. } => {
                    record.alive.insert(*child_tgid);
                }
                KernelEvent::Exec { header, .. } => {
                    record.alive.insert(header.tgid);
                }
                KernelEvent::Exit { header, exit_code } => {
                    record.alive.remove(&header.tgid);
                    if record.root_pid == header.tgid {
                        record.root_exit = Some(*exit_code);
                    }
                    exited = Some(header.session_id);
                }
                _ => {}
            }
        }
        self.pipeline.handle(event);
        if let Some(session) = exited {
            self.end_if_done(session);
        }
    }

    /// The kernel adopted `pid` into the new session `session`.
    fn adopted(&mut self, session: u64, pid: u32, uid: u32, selector: u32, generation: u32, mut member: SessionMember) {
        let info =
            self.generations[(generation & 1) as usize].as_ref().and_then(|t| t.info.get(selector as usize)).cloned();
        // Tables replaced since the kernel read them: the policy id still names the
        // profile (its rules are kept a while after a reload).
        let info = info.or_else(|| {
            let profile = self.policies.profile_of_policy(member.policy_id)?;
            Some(adoption::SelectorInfo {
                profile: profile.profile.name.clone(),
                text: format!("match[{selector}] (of a policy since replaced)"),
                own_cgroup: false,
            })
        });
        let Some(info) = info else {
            log::warn!(
                "adoption by unknown selector {selector} (generation {generation}); the session is held to its policy id {}",
                member.policy_id
            );
            return;
        };
        // A reload may have replaced the policy the kernel chose: move to the current one.
        if !self.policies.ids.contains(&member.policy_id)
            && let Some(current) = self.policies.policy_for(&info.profile, Some(uid))
        {
            member.policy_id = current;
            self.retarget(session, member);
        }
        let Some(profile) = self.policies.profile(&info.profile) else { return };
        let mut record = Session::new(session, &info.profile, profile.view.clone(), member, uid, pid, Origin::Exec);
        record.adopted_by = Some(info.text.clone());
        record.phase = Phase::Starting(Starting::Exec);
        self.begin(record, info.own_cgroup);
    }

    /// Registers a new session: its cgroup, its kill entry, its policy in the pipeline,
    /// and the `session.start` event.
    /// Returns false if the watchdog could not be told to guard it.
    fn begin(&mut self, mut record: Session, own_cgroup: bool) -> bool {
        if own_cgroup {
            match SessionCgroup::create(&session_id_text(record.id)).map(SessionCgroup::keeping_parent) {
                Ok(cgroup) => {
                    if record.root_pid != 0
                        && let Err(error) = sessions::gather(&self.members, record.id, &cgroup)
                    {
                        log::warn!("moving session {} into its cgroup: {error}", session_id_text(record.id));
                    }
                    record.cgroup = Some(Arc::new(cgroup));
                }
                Err(error) => {
                    log::warn!("no cgroup for session {} ({error}); it is killed by pid", session_id_text(record.id))
                }
            }
        }
        let mut guarded = true;
        if let (Some(watchdog), Some(cgroup)) = (&mut self.watchdog, &record.cgroup) {
            let enforce = record.view.mode == Mode::Enforce;
            let action = self.config.on_monitor_death.unwrap_or(OnMonitorDeath::default_for(enforce));
            if let Err(error) = watchdog.guard(record.id, &record.profile, action, cgroup.path()) {
                guarded = false;
                log::error!(
                    "the watchdog is gone ({error}): session {} is not ended if the monitor dies",
                    session_id_text(record.id)
                );
            }
        }
        self.kill_table.lock().expect("kill table").insert(
            record.id,
            KillInfo {
                on_violation: record.view.on_violation,
                enforce: record.view.mode == Mode::Enforce,
                cgroup: record.cgroup.clone(),
                killed: false,
            },
        );
        self.pipeline.session_policies.insert(record.id, record.view.clone());
        if !record.phase.is_starting() {
            let event = self.start_event(&record, None);
            self.pipeline.write(&event);
        }
        self.sessions.insert(record.id, record);
        guarded
    }

    fn start_event(&self, record: &Session, command: Option<Vec<String>>) -> Event {
        let name =
            principal::lookup(&record.uid.to_string()).map(|u| u.name).unwrap_or_else(|_| record.uid.to_string());
        session::start_event(
            &self.pipeline.context,
            Opening {
                id: record.id,
                root_pid: record.root_pid,
                command: command.unwrap_or_else(|| cmdline(record.root_pid)),
                profile: record.profile.clone(),
                principal: PrincipalRef { name, uid: record.uid },
                mode: record.view.mode,
                origin: Some(record.origin.as_str()),
                adopted_by: record.adopted_by.clone(),
                enforcement: self.enforcement,
            },
        )
    }

    /// Points every member of `session` at `member`'s policy and flags.
    fn retarget(&mut self, session: u64, member: SessionMember) -> u32 {
        let mut updated = 0;
        // Members forked while this runs copy either entry; repeat until all agree.
        for _ in 0..10 {
            let stale: Vec<u32> =
                self.members.entries(session).into_iter().filter(|(_, m)| *m != member).map(|(pid, _)| pid).collect();
            if stale.is_empty() {
                break;
            }
            for pid in stale {
                // Only a present entry is changed: a process that exited stays gone.
                if self.members.member(pid).is_some_and(|m| m.session_id == session)
                    && self.members.update_existing(pid, &member).is_ok()
                {
                    updated += 1;
                }
            }
        }
        updated
    }

    /// Ends `session` once every process it had has been reported gone: an adopted
    /// session when its last process exits, a `run` session once its client also said
    /// its first process ended.
    fn end_if_done(&mut self, session: u64) {
        let Some(record) = self.sessions.get(&session) else { return };
        if record.root_pid == 0 || !record.alive.is_empty() {
            return;
        }
        match (record.client, record.phase.ending_status()) {
            // A standalone `run`'s session ends at the stop, once ingest read the last of
            // the ring buffers: a record read after this one (a violation read on a
            // later pass) still comes before its end.
            (true, Some(_)) if self.standalone => {
                if let Some(settled) = &self.settled {
                    let _ = settled.send(session);
                }
            }
            (false, status) => self.end(session, status),
            (true, Some(status)) => self.end(session, Some(status)),
            (true, None) => {}
        }
    }

    /// A `run` client's first process ended: what it left running is killed, and the
    /// session ends once the exit records of all its processes have been read.
    pub fn run_ended(&mut self, session: u64, status: u32, mut killed: Vec<u32>) {
        let Some(record) = self.sessions.get_mut(&session) else { return };
        if record.root_pid == 0 {
            // Its process never started (the client could not spawn it): nothing of it
            // is left to wait for.
            self.end(session, Some(status));
            return;
        }
        let cgroup = record.cgroup.clone();
        if self.runs_on(session, cgroup.as_deref()) {
            killed.extend(actions::kill_session(&self.members, session, cgroup.as_deref()).0);
            killed.sort_unstable();
            killed.dedup();
        }
        let record = self.sessions.get_mut(&session).expect("present");
        record.phase = Phase::Ending { status, since: Instant::now(), left: killed };
        self.end_if_done(session);
    }

    /// Ends `session`: whatever of it still runs is killed (a `run` session ends with
    /// its first process), its cgroup removed, `session.end` written (so a reader of it
    /// finds the session cleaned up), its own policy retired.
    fn end(&mut self, session: u64, status: Option<u32>) {
        self.announce(session, None);
        let Some(record) = self.sessions.remove(&session) else { return };
        // What it left running when its first process ended, and what still runs.
        let mut remaining = match &record.phase {
            Phase::Ending { left, .. } => left.clone(),
            _ => Vec::new(),
        };
        if self.runs_on(session, record.cgroup.as_deref()) {
            let killed = actions::kill_session(&self.members, session, record.cgroup.as_deref()).0;
            remaining.extend(killed);
            remaining.sort_unstable();
            remaining.dedup();
        }
        if let Some(cgroup) = &record.cgroup {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !cgroup.pids().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Err(error) = cgroup.remove() {
                log::warn!("removing {}: {error}", cgroup.path().display());
            }
        }
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.release(session);
        }
        // What was lost comes before the end, which counts it too.
        self.loss.report(&mut self.pipeline);
        let mut monitor = monitor_info(None);
        if self.standalone {
            // Counted once what is batched is written.
            self.pipeline.flush();
            monitor.events = Some(self.pipeline.sink.written() + 1);
            monitor.latency = self.pipeline.latency();
        }
        // The first process's end: as its `run` client saw it, else as the kernel
        // reported it (absent only if that record was lost).
        let end = session::end_event(
            &self.pipeline.context,
            Closing {
                id: session,
                root_pid: record.root_pid,
                remaining_pids: remaining.clone(),
                wait_status: status.or(record.root_exit),
                loss: self.loss.current(&self.pipeline),
                monitor,
            },
        );
        self.pipeline.write(&end);
        self.pipeline.flush();
        self.kill_table.lock().expect("kill table").remove(&session);
        self.pipeline.session_policies.remove(&session);
        if let Some(id) = record.owned_policy {
            self.retire(vec![id]);
        }
        if let Some(ended) = &self.ended {
            let _ = ended.send(Ended { session, remaining_pids: remaining });
        }
    }

    /// Removes the rules of `ids` once the grace time has passed; their host names
    /// are no longer followed from now.
    fn retire(&mut self, ids: Vec<u32>) {
        if let Some(hosts) = &self.hosts {
            for &id in &ids {
                hosts.forget(id);
            }
        }
        self.retiring.push((Instant::now(), ids));
    }

    /// Something of `session` still runs: a member the kernel knows, or a process in
    /// its cgroup (a child whose fork the kernel could not record is only there).
    fn runs_on(&self, session: u64, cgroup: Option<&SessionCgroup>) -> bool {
        !self.members.members(session).is_empty() || cgroup.is_some_and(|c| !c.pids().is_empty())
    }

    /// Ends the `Starting` phase of `session`, if it is in it: writes its `session.start`
    /// (with `command`, else the one a `run` client gave, else the first process's
    /// command line) and then the events held for it.
    fn announce(&mut self, session: u64, command: Option<Vec<String>>) {
        let Some(record) = self.sessions.get_mut(&session) else { return };
        if !record.phase.is_starting() {
            return;
        }
        let Phase::Starting(starting) = std::mem::replace(&mut record.phase, Phase::Running) else { unreachable!() };
        let (given, held) = match starting {
            Starting::Run { command, held } => (Some(command), held),
            Starting::Exec | Starting::Scan => (None, Vec::new()),
        };
        let start = self.start_event(&self.sessions[&session], command.or(given));
        self.pipeline.write(&start);
        for item in held {
            self.write_item(item);
        }
    }

    /// Handles what ingest still queues while stopping; returns once it closed the queue.
    fn handle_until_ingest_ends(&mut self, items: &crate::queue::Receiver<Item>) {
        loop {
            match items.recv_timeout(TICK) {
                Ok(item) => self.handle_item(item),
                Err(mpsc::RecvTimeoutError::Timeout) => self.pipeline.flush(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Once a second: loss, sessions whose last exit was missed, retired policies.
    fn tick(&mut self) {
        self.loss.report(&mut self.pipeline);
        // A session empty at two ticks in a row lost its last exit record (the exit
        // path ends sessions as their records come in).
        // (Not a standalone `run`'s: it ends after the last drain, its events all
        // written before its end.)
        let populated = self.members.populated();
        let empty: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| {
                !self.standalone
                    && s.root_pid != 0
                    && (!s.client || s.phase.ending_status().is_some())
                    && !populated.contains(&s.id)
            })
            .map(|s| s.id)
            .collect();
        let mut ended: Vec<u64> = empty.iter().copied().filter(|id| self.empty_last_tick.contains(id)).collect();
        self.empty_last_tick = empty;
        let overdue: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| !self.standalone && s.phase.overdue() && !ended.contains(&s.id))
            .map(|s| s.id)
            .collect();
        ended.extend(overdue);
        for session in ended {
            let status = self.sessions.get(&session).and_then(|s| s.phase.ending_status());
            self.end(session, status);
        }
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) =
            self.retiring.drain(..).partition(|(at, _)| now.duration_since(*at) >= OLD_POLICY_GRACE);
        self.retiring = keep;
        for id in due.into_iter().flat_map(|(_, ids)| ids) {
            if let Err(error) = self.rules.remove_policy(id) {
                log::warn!("removing policy {id}: {error}");
            }
        }
        if let Some(path) = self.config.metrics.file.clone() {
            self.write_metrics(&path);
        }
    }

    fn request(&mut self, request: Request, peer_pid: u32) -> Reply {
        match request {
            Request::Status => Reply { status: Some(self.status()), ..Reply::ok() },
            Request::Sessions => Reply { sessions: Some(self.session_infos()), ..Reply::ok() },
            Request::Kill { session, freeze, thaw } => self.kill(&session, freeze, thaw, peer_pid),
            Request::Reload => match self.reload() {
                Ok(message) => Reply::message(message),
                Err(error) => Reply::error(format!("{error:#}")),
            },
            Request::Start { profile, policy_text, uid, command } => {
                match self.start(profile.as_deref(), policy_text.as_deref(), uid, command) {
                    Ok(start) => Reply { start: Some(start), ..Reply::ok() },
                    Err(error) => Reply::error(format!("{error:#}")),
                }
            }
            Request::Started { .. } | Request::Ended { .. } => {
                Reply::error("started/ended only follow a start request")
            }
            Request::Events { .. } => Reply::error("events are served by the control thread"),
        }
    }

    fn find(&self, text: &str) -> Option<u64> {
        let id = u64::from_str_radix(text, 16).ok().filter(|_| text.len() == 16)?;
        self.sessions.contains_key(&id).then_some(id)
    }

    fn kill(&mut self, text: &str, freeze: bool, thaw: bool, peer_pid: u32) -> Reply {
        let Some(session) = self.find(text) else {
            return Reply::error(format!("no session {text} (agent-monitor sessions lists them)"));
        };
        if freeze || thaw {
            return match self.set_frozen(session, freeze) {
                Ok(pids) => Reply::message(format!(
                    "session {text} {}: {pids:?}",
                    if freeze { "frozen in place" } else { "running again" }
                )),
                Err(error) => Reply::error(format!("session {text}: {error}")),
            };
        }
        let started = Instant::now();
        let cgroup = self.sessions[&session].cgroup.clone();
        if let Some(entry) = self.kill_table.lock().expect("kill table").get_mut(&session) {
            entry.killed = true;
        }
        let (pids, error) = actions::kill_session(&self.members, session, cgroup.as_deref());
        if let Some(cgroup) = &cgroup {
            while !cgroup.pids().is_empty() && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut event = self.pipeline.session_killed(session, BootClock::now_boot_ns(), pids.clone(), 0, error.clone());
        event.session.killed_because_of = None;
        event.session.killed_by = Some("kill-switch");
        if let Some(decision) = &mut event.decision {
            decision.enforced_by = Some(if cgroup.is_some() { "userspace:cgroup.kill" } else { "userspace:pidfd" });
            decision.note = Some(format!(
                "kill-switch: agent-monitor kill (by pid {peer_pid}){}",
                error.as_ref().map(|e| format!("; {e}")).unwrap_or_default()
            ));
        }
        self.pipeline.write(&event);
        // The session ends when its processes' exit records have come in.
        match error {
            None => Reply::message(format!("session {text} killed in {:.1?}: {pids:?}", started.elapsed())),
            Some(error) => Reply::error(format!("session {text}: {error}")),
        }
    }

    fn set_frozen(&mut self, session: u64, frozen: bool) -> std::io::Result<Vec<u32>> {
        let record = self.sessions.get_mut(&session).expect("found");
        let pids = match &record.cgroup {
            Some(cgroup) => {
                cgroup.freeze(frozen)?;
                cgroup.pids()
            }
            None => actions::signal_members(
                &self.members,
                session,
                if frozen { libc::SIGSTOP } else { libc::SIGCONT },
                Duration::from_millis(50),
            ),
        };
        record.frozen = frozen;
        Ok(pids)
    }

    /// Reads the policy again and swaps it in: the new rules are written under new ids,
    /// every session moved onto them, adoption switched, and only then the old rules
    /// removed. Any error leaves the old policy in force, and says so in an event.
    pub fn reload(&mut self) -> anyhow::Result<String> {
        self.reloads += 1;
        let result = self.try_reload();
        let event = match &result {
            Ok((_, updated)) => self.monitor_event(types::MONITOR_RELOAD, None, Some(*updated)),
            Err(error) => {
                self.reload_failures += 1;
                self.monitor_event(types::MONITOR_RELOAD, Some(format!("{error:#}")), None)
            }
        };
        self.pipeline.write(&event);
        self.pipeline.flush();
        result.map(|(message, _)| message)
    }

    fn try_reload(&mut self) -> anyhow::Result<(String, u32)> {
        let config = Config::load(&self.config_path)?;
        let policy = policies::read_policy(config.policy.as_deref())?;
        let running: Vec<&str> =
            self.sessions.values().filter(|s| s.owned_policy.is_none()).map(|s| s.profile.as_str()).collect();
        for name in &running {
            if policy.profile(name).is_none() {
                anyhow::bail!(
                    "profile {name} has running sessions but is not in the new policy; keep it, or kill those sessions first"
                );
            }
        }
        let mut set = PolicySet::install(&policy, &mut self.rules, &mut self.next_policy_id, self.enforcement.files)?;
        for note in &set.notes {
            log::warn!("{note}");
        }
        self.follow_hosts(std::mem::take(&mut set.hosts));
        let mut updated = 0;
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            let record = &self.sessions[&id];
            if record.owned_policy.is_some() {
                continue;
            }
            let compiled = set.profile(&record.profile).expect("checked above");
            let policy_id = set.policy_for(&record.profile, Some(record.uid)).expect("checked above");
            let member = SessionMember {
                session_id: id,
                policy_id,
                flags: compiled.flags | (record.member.flags & session_flags::HAS_PRINCIPAL),
            };
            let view = compiled.view.clone();
            updated += self.retarget(id, member);
            let record = self.sessions.get_mut(&id).expect("present");
            record.member = member;
            record.view = view.clone();
            self.pipeline.session_policies.insert(id, view.clone());
            if let Some(entry) = self.kill_table.lock().expect("kill table").get_mut(&id) {
                entry.on_violation = view.on_violation;
                entry.enforce = view.mode == Mode::Enforce;
            }
        }
        // What a reload takes from the config besides the policy.
        self.config.policy = config.policy;
        self.config.on_stop = config.on_stop;
        self.config.metrics = config.metrics;
        if let Err(error) = self.adopt.install(&set.adoption) {
            // The sessions already run on the new rules; adoption stays on the old
            // tables, whose policy ids are kept for it.
            log::error!("switching adoption to the new policy failed: {error}; it keeps the previous selectors");
        } else {
            self.generations[self.adopt.generation() as usize] = Some(set.adoption.clone());
            let old = std::mem::replace(&mut self.policies, set);
            self.retire(old.ids);
            return Ok((
                format!(
                    "policy reloaded: {} profile(s), {updated} process(es) moved onto it",
                    self.policies.profiles.len()
                ),
                updated,
            ));
        }
        self.policies = set;
        Ok((format!("policy reloaded without adoption changes ({updated} process(es) moved)"), updated))
    }

    /// A `run` client asks for a session for the process it is about to start.
    fn start(
        &mut self,
        profile: Option<&str>,
        policy_text: Option<&str>,
        uid: u32,
        command: Vec<String>,
    ) -> anyhow::Result<StartReply> {
        let user = principal::lookup(&uid.to_string())?;
        let acts_for_user = uid != 0;
        let from_text = match policy_text {
            Some(text) => Some(policy::parse_policy(text).map_err(|errors| {
                let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!("the policy has {} error(s): {}", errors.len(), all.join("; "))
            })?),
            None => None,
        };
        let name = match (&from_text, profile) {
            (_, Some(name)) => name.to_owned(),
            (Some(policy), None) if policy.profiles.len() == 1 => policy.profiles[0].name.clone(),
            (Some(_), None) => anyhow::bail!("the policy has several profiles: choose one with --profile"),
            (None, None) => policy::DEFAULT_PROFILE.to_owned(),
        };
        // A shared policy id of the daemon's policy where it fits the user, else the
        // profile compiled for this session alone.
        let shared = match &from_text {
            None => self.policies.profile(&name).and_then(|compiled| {
                let fits = !acts_for_user || compiled.users.iter().any(|&(u, _)| u == uid);
                let id = self.policies.policy_for(&name, Some(uid))?;
                fits.then(|| (compiled.profile.clone(), id, compiled.view.clone()))
            }),
            Some(_) => None,
        };
        if let Some((profile, id, view)) = shared {
            return self.open_run(&profile, &user, command, id, None, view);
        }
        let profile = match &from_text {
            Some(policy) => policy.profile(&name).cloned(),
            None => self
                .policies
                .profile(&name)
                .map(|p| p.profile.clone())
                .or_else(|| (name == policy::DEFAULT_PROFILE).then(|| policy::default_policy().profiles.remove(0))),
        };
        let profile = profile.ok_or_else(|| {
            let place = if from_text.is_some() { "the policy given" } else { "the daemon's policy" };
            anyhow::anyhow!("no profile {name:?} in {place}")
        })?;
        self.start_run(&profile, &user, command)
    }

    /// A session for a `run` of `command` under `profile`, compiled for it alone, acting
    /// for `user`; it starts once `started_run` names its first process.
    pub fn start_run(
        &mut self,
        profile: &policy::Profile,
        user: &principal::User,
        command: Vec<String>,
    ) -> anyhow::Result<StartReply> {
        let (id, view) = self.install_owned(profile, user)?;
        self.open_run(profile, user, command, id, Some(id), Arc::new(view))
    }

    fn open_run(
        &mut self,
        profile: &policy::Profile,
        user: &principal::User,
        command: Vec<String>,
        policy_id: u32,
        owned: Option<u32>,
        view: Arc<PolicyView>,
    ) -> anyhow::Result<StartReply> {
        let view = Arc::new(PolicyView { principal: user.to_string(), ..(*view).clone() });
        let session = crate::session::new_session_id();
        let needs_cgroup = profile.connect.is_some()
            || profile.bind.is_some()
            || profile.on_violation == policy::OnViolation::KillSession;
        let cgroup = match SessionCgroup::create(&session_id_text(session)).map(SessionCgroup::keeping_parent) {
            Ok(cgroup) => Some(Arc::new(cgroup)),
            Err(error) if needs_cgroup => {
                if let Some(id) = owned {
                    self.retire(vec![id]);
                }
                anyhow::bail!(
                    "profile {} needs a cgroup v2 for the session (network rules, kill-session): {error}",
                    profile.name
                )
            }
            Err(error) => {
                log::warn!("no cgroup for session {} ({error}); it is killed by pid", session_id_text(session));
                None
            }
        };
        // A root principal can open anything: only other users narrow the scope.
        let acts_for_user = user.uid != 0;
        let flags = crate::session::session_flags_for(profile, acts_for_user, self.enforcement.files);
        let member = SessionMember { session_id: session, policy_id, flags };
        let mut record = Session::new(session, &profile.name, view, member, user.uid, 0, Origin::Run);
        record.owned_policy = owned;
        record.client = true;
        record.cgroup = cgroup;
        record.phase = Phase::Starting(Starting::Run { command, held: Vec::new() });
        // A standalone `run` does not start an agent the watchdog would not end.
        if !self.begin(record, false) && self.standalone {
            self.end(session, Some(127 << 8));
            anyhow::bail!("the watchdog could not be told of the session");
        }
        if self.standalone {
            self.loss.about(session);
        }
        let record = &self.sessions[&session];
        let enforces_files = flags & session_flags::ENFORCE != 0
            && flags & (session_flags::RESTRICTS_FILES | session_flags::HAS_PRINCIPAL) != 0;
        // SAFETY: getpgrp has no preconditions.
        let pgid = unsafe { libc::getpgrp() } as u32;
        let envelope = profile
            .envelope
            .envelope(self.enforcement.self_protection == Tier::Lsm, profile.mode == policy::Mode::Enforce);
        Ok(StartReply {
            session: session_id_text(session),
            session_id: session,
            policy_id,
            flags,
            cgroup_procs: record.cgroup.as_ref().map(|c| c.path().join("cgroup.procs").display().to_string()),
            daemon_pid: std::process::id(),
            daemon_pgid: pgid,
            watchdog_pid: self.watchdog.as_ref().map_or(0, Watchdog::pid),
            guard: self.enforcement.self_protection == Tier::Seccomp,
            foreign_abi: enforces_files,
            keep_capabilities: envelope.keep.0,
            no_new_privs: envelope.no_new_privs,
        })
    }

    fn install_owned(
        &mut self,
        profile: &policy::Profile,
        user: &principal::User,
    ) -> anyhow::Result<(u32, PolicyView)> {
        let id = self.next_policy_id;
        self.next_policy_id += 1;
        let mounts = MountTable::load()?;
        let (view, notes, hosts) = install_profile(&mut self.rules, profile, user.home.clone(), id, &mounts)?;
        for note in notes {
            log::warn!("profile {}: {note}", profile.name);
        }
        if user.uid != 0 {
            self.rules.install_principal(id, &user.principal())?;
        }
        self.follow_hosts(vec![(id, hosts)]);
        Ok((id, view))
    }

    /// Keeps the addresses of the host names in these policies' network rules current.
    fn follow_hosts(&mut self, hosts: Vec<(u32, FollowedHosts)>) {
        for (id, hosts_of_policy) in hosts.into_iter().filter(|(_, hosts)| !hosts.entries.is_empty()) {
            if self.hosts.is_none() {
                let follower = self
                    .rules
                    .net_handle()
                    .map_err(std::io::Error::other)
                    .and_then(|trie| HostFollower::spawn(trie, resolve_host));
                match follower {
                    Ok(follower) => self.hosts = Some(follower),
                    Err(error) => {
                        log::warn!("host names in network rules will not be refreshed: {error}");
                        return;
                    }
                }
            }
            if let Some(hosts) = &self.hosts {
                hosts.follow(id, hosts_of_policy);
            }
        }
    }

    /// The `run` client's process `pid` (its child, `parent` is the client) runs: the
    /// session starts (its events held back until now follow its `session.start`).
    pub fn started_run(&mut self, session: u64, pid: u32, parent: u32) -> Reply {
        let Some(record) = self.sessions.get(&session) else { return Reply::error("no such session") };
        // The process is a member, or already gone (a short command).
        let member = self.members.member(pid).map(|m| m.session_id);
        if record.root_pid != 0 || (member.is_some() && member != Some(session)) {
            return Reply::error(format!("pid {pid} is not the first process of session {}", session_id_text(session)));
        }
        let record = self.sessions.get_mut(&session).expect("present");
        record.root_pid = pid;
        record.alive.insert(pid);
        if self.pipeline.tree.get(pid).is_none() {
            self.pipeline.tree.add_root(pid, parent, session);
        }
        // (Unless its held events overflowed: then the start was written already, without
        // the pid.)
        self.announce(session, None);
        self.pipeline.flush();
        Reply::ok()
    }

    /// Everything lost so far.
    pub fn lost(&self) -> crate::event::Loss {
        self.loss.current(&self.pipeline)
    }

    fn status(&self) -> Status {
        let loss = self.loss.current(&self.pipeline);
        let hub = self.pipeline.sink.hub();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            kernel: monitor_info(None).kernel,
            arch: std::env::consts::ARCH.to_owned(),
            enforcement: serde_json::to_value(self.enforcement).unwrap_or_default(),
            policy_file: self.config.policy.as_ref().map(|p| p.display().to_string()),
            profiles: self.policies.profiles.iter().map(|p| p.profile.name.clone()).collect(),
            adopting_selectors: self.policies.adoption.info.len() as u32,
            sessions: self.sessions.len() as u32,
            events_written: self.pipeline.sink.written(),
            lost: serde_json::to_value(loss).unwrap_or_default(),
            followers: hub.map_or(0, |h| h.followers() as u32),
            follower_drops: hub.map_or(0, |h| h.dropped_total()),
            reloads: self.reloads,
            reload_failures: self.reload_failures,
        }
    }

    fn session_infos(&self) -> Vec<SessionInfo> {
        self.sessions
            .values()
            .map(|s| SessionInfo {
                id: session_id_text(s.id),
                profile: s.profile.clone(),
                mode: match s.view.mode {
                    Mode::Audit => "audit".into(),
                    Mode::Enforce => "enforce".into(),
                },
                origin: s.origin.as_str().to_owned(),
                root_pid: s.root_pid,
                pids: self.members.members(s.id),
                uid: s.uid,
                started: humantime::format_rfc3339_seconds(s.started).to_string(),
                adopted_by: s.adopted_by.clone(),
                frozen: s.frozen,
            })
            .collect()
    }

    /// Adopts processes that were running before the daemon started and match a
    /// selector, with their descendants.
    pub fn adopt_running(&mut self) {
        let tables = self.policies.adoption.clone();
        if tables.info.is_empty() {
            return;
        }
        let root = cgroup2_mount();
        let mut joined: HashMap<u32, u64> = HashMap::new();
        let mut starts = Vec::new();
        for (pid, ppid, start) in adoption::processes() {
            if pid == std::process::id()
                || pid == crate::watchdog::watchdog_pid()
                || pid <= 1
                || self.members.member(pid).is_some()
            {
                continue;
            }
            if let Some(&session) = joined.get(&ppid) {
                // The process the scan saw, alive: a pid is trusted only while it names it.
                let Some(process) = RunningProcess::hold(pid, Some(start)) else { continue };
                let member = self.sessions[&session].member;
                if let Ok(Adoption::Adopted) = self.members.adopt(&process, &member, Existing::Keep) {
                    joined.insert(pid, session);
                    self.sessions.get_mut(&session).expect("begun").alive.insert(pid);
                }
                continue;
            }
            let Some(facts) = adoption::proc_facts(pid, root.as_deref()) else { continue };
            let Some(selector) = tables.matching(&facts) else { continue };
            let chosen = tables.session_for(selector, facts.uid);
            let info = tables.info[selector as usize].clone();
            let Some(profile) = self.policies.profile(&info.profile) else { continue };
            // Held only once it matched (not every process on the host). Had its pid gone
            // to another process since the scan, the start time would differ.
            let Some(process) = RunningProcess::hold(pid, Some(start)) else { continue };
            let session = crate::session::new_session_id();
            let member = SessionMember { session_id: session, policy_id: chosen.policy_id, flags: chosen.flags };
            match self.members.adopt(&process, &member, Existing::Keep) {
                Ok(Adoption::Adopted) => {}
                Ok(Adoption::Gone | Adoption::AlreadyMember) => continue,
                Err(error) => {
                    log::warn!("adopting running process {pid}: {error}");
                    continue;
                }
            }
            joined.insert(pid, session);
            // Its `session.start` is written below, once its descendants have joined and
            // it has its cgroup.
            let mut record =
                Session::new(session, &info.profile, profile.view.clone(), member, facts.uid, 0, Origin::Running);
            record.adopted_by = Some(info.text.clone());
            record.phase = Phase::Starting(Starting::Scan);
            self.begin(record, false);
            let record = self.sessions.get_mut(&session).expect("begun");
            record.root_pid = pid;
            record.alive.insert(pid);
            starts.push((session, info.own_cgroup));
        }
        // Descendants joined above; now each session gets its cgroup and its start.
        for (session, own_cgroup) in starts {
            if own_cgroup
                && let Ok(cgroup) = SessionCgroup::create(&session_id_text(session)).map(SessionCgroup::keeping_parent)
            {
                if let Err(error) = sessions::gather(&self.members, session, &cgroup) {
                    log::warn!("moving session {} into its cgroup: {error}", session_id_text(session));
                }
                let cgroup = Arc::new(cgroup);
                if let Some(entry) = self.kill_table.lock().expect("kill table").get_mut(&session) {
                    entry.cgroup = Some(cgroup.clone());
                }
                self.sessions.get_mut(&session).expect("begun").cgroup = Some(cgroup);
            }
            self.announce(session, None);
        }
    }

    /// SIGTERM: no new adoptions; sessions released (moved back where they came from,
    /// running unmonitored) or frozen (`on_stop: freeze`). Called again after the last
    /// drain, for the sessions its adoptions began.
    fn stop_sessions(&mut self) {
        if let Err(error) = self.adopt.disable() {
            log::warn!("turning adoption off: {error}");
        }
        // A standalone `run`'s session is never released: `write_stop` ends it.
        if self.standalone {
            return;
        }
        let ids: Vec<u64> = self.sessions.keys().copied().filter(|id| !self.stopped.contains(id)).collect();
        let mut frozen = Vec::new();
        for id in ids {
            self.stopped.insert(id);
            if let Some(watchdog) = &mut self.watchdog {
                watchdog.release(id);
            }
            match self.config.on_stop {
                OnStop::Freeze => match self.set_frozen(id, true) {
                    Ok(_) => frozen.push(id),
                    Err(error) => log::error!("freezing session {}: {error}", session_id_text(id)),
                },
                OnStop::Release => {
                    if let Some(cgroup) = self.sessions[&id].cgroup.clone() {
                        release(&cgroup);
                    }
                }
            }
        }
        if !frozen.is_empty() {
            self.frozen_at_stop.extend(frozen);
            self.save_frozen(&self.frozen_at_stop);
        }
    }

    /// The last events: what was held for `run` sessions, what was lost since the
    /// last report, then `monitor.stop`.
    fn write_stop(&mut self) {
        if self.standalone {
            // Its session still running here had its end cut short (its `run` client
            // went, or ingest): it ends now, after everything read, whatever of it runs
            // killed. What is lost after its end is in `run`'s summary.
            let left: Vec<(u64, Option<u32>)> =
                self.sessions.values().map(|s| (s.id, s.phase.ending_status())).collect();
            for (session, status) in left {
                self.end(session, status);
            }
            self.pipeline.flush();
            return;
        }
        let starting: Vec<u64> = self.sessions.values().filter(|s| s.phase.is_starting()).map(|s| s.id).collect();
        for session in starting {
            self.announce(session, None);
        }
        self.loss.report(&mut self.pipeline);
        let mut event = self.monitor_event(types::MONITOR_STOP, None, None);
        event.session.remaining_pids = Some(self.sessions.keys().flat_map(|id| self.members.members(*id)).collect());
        self.pipeline.write(&event);
        self.pipeline.flush();
    }
}

/// A `monitor.start`, `monitor.reload` or `monitor.stop` event: the daemon's own, in
/// no session.
pub fn monitor_event(
    context: &Context,
    event_type: &'static str,
    enforcement: Enforcement,
    policy: PolicyState,
) -> Event {
    let mut event = context.event(event_type, BootClock::now_boot_ns(), session_ref(0));
    event.session.id = NO_SESSION.to_owned();
    event.monitor = Some(Monitor { enforcement: Some(enforcement), ..monitor_info(None) });
    event.policy = Some(policy);
    event
}

/// The command line of a running process (`[]` once it is gone).
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| bytes.split(|b| *b == 0).filter(|a| !a.is_empty()).map(text).collect())
        .unwrap_or_default()
}

/// Moves a session's processes to the cgroup root and removes its cgroup.
fn release(cgroup: &SessionCgroup) {
    if let Some(root) = cgroup2_mount() {
        for pid in cgroup.pids() {
            let _ = std::fs::write(root.join("cgroup.procs"), pid.to_string());
        }
    }
    if let Err(error) = cgroup.remove() {
        log::warn!("removing {}: {error}", cgroup.path().display());
    }
}

/// pid -> start time, as `save_frozen` wrote them; None from a daemon that saved none.
fn saved_processes(entry: &serde_json::Value) -> Option<BTreeMap<u32, u64>> {
    let processes = entry["processes"].as_array()?;
    Some(
        processes
            .iter()
            .filter_map(|p| Some((u32::try_from(p["pid"].as_u64()?).ok()?, p["start"].as_u64()?)))
            .collect(),
    )
}

pub fn frozen_state_file(config: &Config) -> PathBuf {
    config.socket.with_file_name("frozen-sessions.json")
}

impl Daemon {
    fn save_frozen(&self, ids: &[u64]) {
        let entries: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| {
                let s = &self.sessions[id];
                serde_json::json!({
                    "session": session_id_text(*id),
                    "profile": s.profile,
                    "uid": s.uid,
                    "cgroup": s.cgroup.as_ref().map(|c| c.path().display().to_string()),
                    "processes": self.members.members(*id).into_iter().filter_map(|pid| {
                        // Still a member once held: the start time is this member's.
                        let process = RunningProcess::hold(pid, None)?;
                        let member = self.members.member(pid).is_some_and(|m| m.session_id == *id);
                        member.then(|| serde_json::json!({ "pid": pid, "start": process.start() }))
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let path = frozen_state_file(&self.config);
        if let Err(error) = std::fs::write(&path, serde_json::to_vec_pretty(&entries).unwrap_or_default()) {
            log::error!("writing {}: {error}; the frozen sessions must be thawed by hand", path.display());
        }
    }

    /// Sessions a previous daemon froze when it stopped (`on_stop: freeze`): taken back
    /// into sessions of the same profile, then thawed. Those whose profile is gone stay
    /// frozen, and the log says so.
    pub fn restore_frozen(&mut self) {
        let path = frozen_state_file(&self.config);
        let Ok(text) = std::fs::read_to_string(&path) else { return };
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        let mut kept = Vec::new();
        for entry in entries {
            let profile = entry["profile"].as_str().unwrap_or_default().to_owned();
            let uid = entry["uid"].as_u64().unwrap_or(0) as u32;
            let id = entry["session"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or_else(crate::session::new_session_id);
            let cgroup = entry["cgroup"]
                .as_str()
                .and_then(|p| p.rsplit('/').next())
                .and_then(|name| SessionCgroup::open(name).ok())
                .map(SessionCgroup::keeping_parent);
            let (Some(compiled), Some(policy_id)) =
                (self.policies.profile(&profile), self.policies.policy_for(&profile, Some(uid)))
            else {
                log::error!(
                    "frozen session {}: profile {profile:?} is not in the policy; left frozen",
                    session_id_text(id)
                );
                kept.push(entry);
                continue;
            };
            let Some(saved) = saved_processes(&entry) else {
                log::error!(
                    "frozen session {}: saved without start times (by an older daemon); left frozen, to thaw by hand",
                    session_id_text(id)
                );
                kept.push(entry);
                continue;
            };
            let candidates: Vec<(u32, Option<u64>)> = match &cgroup {
                // The cgroup lists who is in it now; each must be a process saved.
                Some(cgroup) => cgroup.pids().into_iter().map(|pid| (pid, saved.get(&pid).copied())).collect(),
                // Only the saved list says who was stopped.
                None => saved.iter().map(|(&pid, &start)| (pid, Some(start))).collect(),
            };
            let member = SessionMember { session_id: id, policy_id, flags: compiled.flags };
            let view = compiled.view.clone();
            let mut held = Vec::new();
            // In the cgroup but not taken back: thawing would let them run unmonitored.
            let mut refused = Vec::new();
            for (pid, start) in candidates {
                // A pid is taken back only if it still names the process saved, by its
                // start time; another process with the pid is left alone.
                let Some(process) = start.and_then(|start| RunningProcess::hold(pid, Some(start))) else {
                    if cgroup.is_some() && RunningProcess::hold(pid, None).is_some() {
                        refused.push(pid);
                    }
                    continue;
                };
                match self.members.adopt(&process, &member, Existing::Replace) {
                    Ok(Adoption::Adopted) => held.push(process),
                    Ok(Adoption::Gone | Adoption::AlreadyMember) => {}
                    Err(error) => {
                        log::error!("re-adopting frozen pid {pid}: {error}; left stopped");
                        refused.push(pid);
                    }
                }
            }
            if cgroup.is_some() && !refused.is_empty() {
                log::error!(
                    "frozen session {}: {refused:?} in its cgroup could not be taken back; left frozen",
                    session_id_text(id)
                );
                for process in &held {
                    self.members.remove_entry(process.pid(), &member);
                }
                kept.push(entry);
                continue;
            }
            if held.is_empty() {
                // (An empty session cgroup goes when dropped.)
                log::warn!("frozen session {}: none of its processes is left", session_id_text(id));
                continue;
            }
            let pids: Vec<u32> = held.iter().map(RunningProcess::pid).collect();
            let root = pids.first().copied().unwrap_or(0);
            let mut record = Session::new(id, &profile, view, member, uid, root, Origin::Running);
            record.adopted_by = Some("frozen when the previous daemon stopped".into());
            record.frozen = true;
            record.alive.extend(pids.iter().copied());
            let has_cgroup = cgroup.is_some();
            self.begin(record, false);
            if let Some(cgroup) = cgroup {
                let cgroup = Arc::new(cgroup);
                if let Some(entry) = self.kill_table.lock().expect("kill table").get_mut(&id) {
                    entry.cgroup = Some(cgroup.clone());
                }
                self.sessions.get_mut(&id).expect("begun").cgroup = Some(cgroup);
            }
            let thawed = if has_cgroup {
                self.set_frozen(id, false).map(|_| ())
            } else {
                for process in &held {
                    process.signal(libc::SIGCONT);
                }
                Ok(())
            };
            if let Err(error) = thawed {
                log::error!("thawing session {}: {error}", session_id_text(id));
            }
        }
        let result = if kept.is_empty() {
            std::fs::remove_file(&path)
        } else {
            std::fs::write(&path, serde_json::to_vec_pretty(&kept).unwrap_or_default())
        };
        if let Err(error) = result {
            log::warn!("updating {}: {error}", path.display());
        }
    }

    fn write_metrics(&self, path: &std::path::Path) {
        let Some(metrics) = &self.pipeline.metrics else { return };
        metrics.set_loss(&self.loss.current(&self.pipeline));
        metrics.set_sink(&self.pipeline.sink);
        metrics.set_sessions_active(self.sessions.len() as u64);
        if let Err(error) = crate::metrics::write_atomic(path, &metrics.render()) {
            log::warn!("writing the metrics to {}: {error}", path.display());
        }
    }
}
