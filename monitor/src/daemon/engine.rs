//! The session engine wired to the kernel: the loaded programs' ring buffers feed the
//! `ingest` thread, which acts on violations at once (`actions`) and queues every
//! record for the engine's own thread (`state::Daemon`), which owns the sessions, the
//! policy and the pipeline to the sinks. The daemon and a standalone `run` (the engine
//! with one session and no control socket) both run it.

use std::{
    path::PathBuf,
    sync::{Arc, mpsc},
    thread::JoinHandle,
};

use anyhow::Context as _;

use super::{
    adopt_maps::AdoptMaps,
    config::Config,
    control::{Command, Commands},
    state::{Daemon, KernelParts},
};
use crate::{
    actions::{self, KillTable},
    event_context::Context,
    ingest::{Ingest, Item, UserspaceLoss},
    loader::Probes,
    loss::LossCounters,
    metrics::Metrics,
    pipeline::Pipeline,
    process_tree::ProcessTree,
    session_map::SessionMap,
    sink::Sink,
    watchdog::Watchdog,
};

/// The engine before its thread starts: `daemon` may still be set up directly.
pub struct Engine {
    pub daemon: Daemon,
    /// Starts the ring buffers' reader (taken when it starts).
    start_ingest: Option<Box<dyn FnOnce() -> Ingest + Send>>,
    ingest: Option<Ingest>,
    items: crate::queue::Receiver<Item>,
    requests: mpsc::Receiver<Command>,
    commands: Commands,
}

/// The engine on its thread, taking commands.
pub struct Running {
    pub commands: Commands,
    ingest: Ingest,
    worker: JoinHandle<Daemon>,
}

impl Engine {
    /// Takes the loaded and attached programs. Their records wait in the ring buffers
    /// until `read_kernel` (or `spawn`) starts the ingest thread, and then in its queue
    /// until the engine's thread runs.
    pub fn assemble(
        mut probes: Probes,
        config: Config,
        config_path: PathBuf,
        sink: Sink,
        metrics: Option<Arc<Metrics>>,
        watchdog: Watchdog,
    ) -> anyhow::Result<Engine> {
        let adopt = AdoptMaps::take(&mut probes.ebpf)?;
        let Probes {
            ebpf,
            enforcement,
            sessions,
            events,
            decisions,
            reader_state,
            counters,
            skipped_runs,
            rules,
            syscall_links,
            ..
        } = probes;
        let kill_table: KillTable = Default::default();
        let (queue, items) = crate::queue::bounded::<Item>();
        let user_loss = Arc::new(UserspaceLoss::default());
        let hook_members =
            SessionMap::from_fds(sessions.fds_dup().context("duplicating the session maps' descriptors")?)
                .context("opening the session map for the kill hook")?;
        let kill_metrics = metrics.clone();
        let hook = actions::violation_hook(
            kill_table.clone(),
            hook_members,
            Box::new(move |latency| {
                if let Some(metrics) = &kill_metrics {
                    metrics.observe_kill_latency(latency);
                }
            }),
        );
        let waker = queue.waker();
        let loss = user_loss.clone();
        let start_ingest: Box<dyn FnOnce() -> Ingest + Send> =
            Box::new(move || Ingest::spawn(events, decisions, reader_state, queue, loss, hook));
        let mut pipeline = Pipeline::new(Context::new(), ProcessTree::new(), sink);
        pipeline.metrics = metrics;
        let loss = LossCounters { kernel: counters, skipped_runs, user: user_loss };
        let kernel = KernelParts { ebpf, syscall_links, enforcement, rules, members: sessions, adopt, loss };
        let mut daemon = Daemon::new(config, config_path, kernel, pipeline, kill_table);
        daemon.watchdog = Some(watchdog);
        let (sender, requests) = mpsc::channel::<Command>();
        Ok(Engine {
            daemon,
            start_ingest: Some(start_ingest),
            ingest: None,
            items,
            requests,
            commands: Commands::new(sender, waker),
        })
    }

    /// Starts reading the ring buffers (and acting on violations) now.
    pub fn read_kernel(&mut self) {
        if let Some(start) = self.start_ingest.take() {
            self.ingest = Some(start());
        }
    }

    /// Starts the engine's thread (and the ingest thread, if not yet).
    pub fn spawn(mut self) -> anyhow::Result<Running> {
        self.read_kernel();
        let Engine { daemon, ingest, items, requests, commands, .. } = self;
        let ingest = ingest.expect("started above");
        let worker = match std::thread::Builder::new().name("daemon".into()).spawn(move || daemon.run(items, requests))
        {
            Ok(worker) => worker,
            Err(error) => {
                ingest.stop();
                return Err(anyhow::Error::from(error).context("starting the engine's thread"));
            }
        };
        Ok(Running { commands, ingest, worker })
    }

    /// Gives up before the thread started: what ingest read is dropped with the engine.
    pub fn abandon(self) -> Daemon {
        // Dropped first: ingest's last round must not wait for room in a full queue.
        drop(self.items);
        if let Some(ingest) = self.ingest {
            ingest.stop();
        }
        self.daemon
    }
}

impl Running {
    /// Sessions are released or frozen first (`on_stop`); then ingest drains what the
    /// kernel submitted until then, and the engine's thread writes all of it before
    /// `monitor.stop`. Returns the engine's state, its maps still open.
    pub fn stop(self) -> anyhow::Result<Daemon> {
        let (sessions_stopped, stopped) = mpsc::channel();
        let _ = self.commands.send(Command::Stop { sessions_stopped });
        let _ = stopped.recv();
        self.ingest.stop();
        self.worker.join().map_err(|_| anyhow::anyhow!("the engine's thread panicked"))
    }
}
