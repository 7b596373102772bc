//! `agent-monitor daemon`: loads the policy, attaches the programs once for the whole
//! host, adopts agents into sessions (at exec, and those already running), and serves
//! the control socket, until SIGTERM. SIGHUP reloads the policy.
//!
//! Threads: those of the session engine (`engine`: `ingest`, ring buffers -> queue and
//! kill actions, and the engine's own, `state::Daemon`, every piece of state, one event
//! or command at a time), `control` (one per client connection), and the main thread
//! waiting for signals.

pub mod adopt_maps;
pub mod adoption;
pub mod config;
pub mod control;
pub mod engine;
pub mod policies;
pub mod protocol;
pub mod sessions;
pub mod state;
pub mod unix;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use anyhow::Context as _;

use self::{
    config::Config,
    control::{Command, Server},
    engine::Engine,
};
use crate::{
    cgroup::cgroup2_mount,
    enforcement::{LsmChoice, Tier},
    loader::{Probes, attach_network_everywhere},
    metrics::Metrics,
    sink::{self, Sink},
    watchdog::Watchdog,
};

/// `ebpf_log`: the programs' own diagnostics at that level (`--ebpf-log`).
pub fn daemon(config_path: &Path, ebpf_log: Option<log::Level>) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let policy = policies::read_policy(config.policy.as_deref())?;
    control::ensure_free(&config.socket)?;
    let signals = block_signals();
    // Before the programs load: they protect the watchdog's pid like the daemon's.
    let events_file = config.events.file.as_ref().map(|f| f.path.as_path());
    let mut watchdog = Watchdog::spawn(events_file, config.events.stdout)?;
    let mut probes = crate::tracefs::attach_with_tracefs(|| Probes::load(LsmChoice::Auto, ebpf_log))
        .context("loading the eBPF programs")?;
    probes.read_ebpf_log().context("reading the eBPF programs' log (--ebpf-log)")?;
    let own_files = std::env::current_exe()
        .into_iter()
        .chain(config.policy.clone())
        .chain(Some(config_path.to_owned()))
        .chain(config.events.file.as_ref().map(|f| f.path.clone()));
    for path in own_files.filter(|p| p.exists()) {
        probes.protect(&path).with_context(|| format!("protecting {}", path.display()))?;
    }
    if probes.enforcement.self_protection == Tier::Seccomp {
        crate::guard_filter::undumpable();
    }
    if probes.enforcement.network == Tier::Cgroup {
        let root = cgroup2_mount().context("network rules need cgroup v2, and no cgroup2 mount is in /proc/mounts")?;
        let dir = std::fs::File::open(&root).with_context(|| format!("opening {}", root.display()))?;
        attach_network_everywhere(&mut probes.ebpf, &dir).context("attaching the network hooks to the root cgroup")?;
    }
    // Every program is attached now: the watchdog keeps them so while the daemon dies.
    if let Err(error) = watchdog.hold_attachments() {
        log::warn!(
            "the watchdog cannot hold the programs' links ({error}): if the daemon dies, they detach before the sessions are ended"
        );
    }
    let hub = sink::Hub::new(config.events.follower_buffer);
    let sink = build_sink(&config, hub.clone())?;
    let enforcement = probes.enforcement;
    let metrics = Arc::new(Metrics::new());
    let mut engine = Engine::assemble(probes, config.clone(), config_path.to_owned(), sink, Some(metrics), watchdog)?;
    // Before anything is adopted: kill-on-violation acts from the first session on.
    engine.read_kernel();
    if let Err(error) = engine.daemon.install_first(&policy) {
        engine.abandon();
        return Err(error.context("installing the policy"));
    }
    // Frozen sessions first: their processes keep their session (and cgroup) rather
    // than being adopted anew by the scan.
    engine.daemon.restore_frozen();
    engine.daemon.adopt_running();
    let session_map = Arc::new(engine.daemon.members.fds_dup().context("duplicating the session maps' descriptors")?);
    let members = crate::session_map::SessionMap::from_fds(session_map.try_clone()?)
        .context("opening the session map for the control socket")?;

    let listener = match control::bind(&config.socket) {
        Ok(listener) => listener,
        Err(error) => {
            engine.abandon();
            return Err(error);
        }
    };
    let running = engine.spawn()?;
    let commands = running.commands.clone();
    let stop_control = Arc::new(AtomicBool::new(false));
    let server = Server {
        listener,
        path: config.socket.clone(),
        commands: commands.clone(),
        hub,
        run_buffer: config.events.follower_buffer.max(65_536),
        members,
        session_map,
    };
    let control = server.spawn(stop_control.clone());
    release_freed_memory();
    notify(&[sd_notify::NotifyState::Ready]);
    log::info!("agent-monitor daemon ready ({enforcement:?})");

    while wait_signal(&signals) == libc::SIGHUP {
        let mut states = vec![sd_notify::NotifyState::Reloading];
        states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        notify(&states);
        let (reply, answer) = mpsc::channel();
        let request = protocol::Request::Reload;
        if commands.send(Command::Request { request, peer_pid: std::process::id(), reply }).is_ok()
            && let Ok(reply) = answer.recv()
        {
            match reply.error {
                None => log::info!("{}", reply.message.unwrap_or_default()),
                Some(error) => log::error!("reload refused, the previous policy stays in force: {error}"),
            }
        }
        release_freed_memory();
        notify(&[sd_notify::NotifyState::Ready]);
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    let mut daemon = running.stop()?;
    let watchdog = daemon.watchdog.take();
    stop_control.store(true, Ordering::Release);
    let _ = std::os::unix::net::UnixStream::connect(&config.socket);
    let _ = control.join();
    let _ = std::fs::remove_file(&config.socket);
    drop(daemon); // frees every map; the watchdog's copies of the links are the last
    if let Some(watchdog) = watchdog {
        // Detaches every program, all at once (`attachments::close_in_parallel`).
        watchdog.finish();
    }
    crate::cgroup::remove_parent_if_empty();
    Ok(0)
}

fn build_sink(config: &Config, hub: sink::Hub) -> anyhow::Result<Sink> {
    let mut builder = Sink::builder();
    if config.events.stdout {
        builder = builder.stdout();
    }
    if let Some(file) = &config.events.file {
        let rotation = sink::Rotation { max_bytes: file.max_bytes, keep: file.keep };
        builder = builder
            .file(&file.path, Some(rotation))
            .with_context(|| format!("opening the event file {}", file.path.display()))?;
    }
    Ok(builder.hub(hub).redaction(config.redact.clone()).build())
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local; the mask is set before any thread starts.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    loop {
        let mut signal = 0;
        // SAFETY: valid set and out-pointer; the signals are blocked in every thread.
        if unsafe { libc::sigwait(set, &mut signal) } == 0 {
            return signal;
        }
    }
}

/// Gives the C allocator's free pages back to the kernel. Loading parses the kernel's
/// BTF and compiling a policy builds large tables, all freed afterwards; without this
/// the idle daemon kept about 18 MiB of freed heap resident.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tells systemd (`Type=notify`) where the daemon is; nothing outside systemd.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(false, states) {
        log::debug!("sd_notify: {error}");
    }
}
