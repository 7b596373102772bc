//! `agent-monitor run -- CMD [ARGS...]`: run one agent as a session, in the foreground,
//! and stream its events.

use std::{
    ffi::OsString,
    io::Write,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::ExitStatus,
    sync::{Arc, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray};
use monitor_common::{maps::Counter, session::SessionMember};

use crate::{
    clock::BootClock,
    decode::KernelEvent,
    event::{Loss, Monitor, types},
    ingest::{Ingest, QUEUE_CAPACITY, UserspaceLoss},
    launcher::{self, spawn_in_session},
    loader::Probes,
    pipeline::{Context, Pipeline, exit_status, session_ref},
    process_tree::ProcessTree,
    sink::Sink,
};

pub struct RunArgs {
    /// `None` or `-`: stdout.
    pub events: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// Runs the session; returns the exit code agent-monitor should exit with.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut sink = match args.events.as_deref() {
        None => Sink::stdout(),
        Some(p) if p.as_os_str() == "-" => Sink::stdout(),
        Some(path) => Sink::file(path).with_context(|| format!("opening the event file {}", path.display()))?,
    };
    launcher::block_forwarded_signals();
    let probes = Probes::load().context("loading the eBPF programs")?;
    let Probes { ebpf, sessions, events, counters } = probes;

    let session_id = new_session_id();
    let member = SessionMember { session_id };
    let context = Context::new();
    let started_ns = BootClock::now_boot_ns();
    let child = spawn_in_session(&args.command, &sessions, member).map_err(|e| {
        anyhow::anyhow!("cannot start {}: {e}", args.command[0].to_string_lossy())
    });
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
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
    }
    let root_pid = child.id();
    launcher::forward_signals_to(root_pid);

    let mut start = context.event(types::SESSION_START, started_ns, session_ref(session_id));
    start.session.root_pid = Some(root_pid);
    start.session.command = Some(args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect());
    start.monitor = Some(monitor_info(None));
    sink.write(&start).context("writing events")?;

    let mut tree = ProcessTree::new();
    tree.add_root(root_pid, std::process::id(), session_id);
    let (queue, received) = mpsc::sync_channel::<KernelEvent>(QUEUE_CAPACITY);
    let user_loss = Arc::new(UserspaceLoss::default());
    let ingest = Ingest::spawn(events, queue, user_loss.clone());
    let pipeline = Pipeline::new(context, tree, sink);
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || process_events(pipeline, received, counters, user_loss, session_id))
        .context("starting the pipeline thread")?;

    let status = child.wait().context("waiting for the agent")?;
    ingest.stop();
    let (mut pipeline, loss) = worker.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;

    let remaining = sessions.members(session_id);
    let mut end = pipeline.context.event(types::SESSION_END, BootClock::now_boot_ns(), session_ref(session_id));
    end.session.root_pid = Some(root_pid);
    end.session.remaining_pids = Some(remaining.clone());
    end.exit = Some(exit_status(status.into_raw() as u32));
    end.loss = Some(loss);
    let mut info = monitor_info(Some(pipeline.sink.written() + 1));
    info.latency = pipeline.latency();
    end.monitor = Some(info);
    pipeline.sink.write(&end)?;
    pipeline.sink.flush()?;
    drop(ebpf);

    let code = exit_code(status);
    let mut summary = format!(
        "agent-monitor: session {} ended ({}), {} events, {} lost",
        session_ref(session_id).id,
        describe(status),
        pipeline.sink.written(),
        loss.total()
    );
    if !remaining.is_empty() {
        summary.push_str(&format!(", still running and no longer monitored: {remaining:?}"));
    }
    let _ = writeln!(std::io::stderr(), "{summary}");
    Ok(code)
}

/// Pipeline thread: handles events until the queue closes, reporting loss as it grows.
fn process_events(
    mut pipeline: Pipeline,
    received: mpsc::Receiver<KernelEvent>,
    counters: PerCpuArray<MapData, u64>,
    user_loss: Arc<UserspaceLoss>,
    session_id: u64,
) -> anyhow::Result<(Pipeline, Loss)> {
    let mut reported = Loss::default();
    let mut last_check = Instant::now();
    loop {
        let first = received.recv_timeout(Duration::from_millis(100));
        let closed = matches!(first, Err(mpsc::RecvTimeoutError::Disconnected));
        if let Ok(event) = first {
            pipeline.handle(event)?;
            // Under sustained load the queue never drains: check loss along the way.
            let mut handled = 1u32;
            while let Ok(event) = received.try_recv() {
                pipeline.handle(event)?;
                handled += 1;
                if handled % 4096 == 0 && last_check.elapsed() >= LOSS_CHECK_INTERVAL {
                    last_check = Instant::now();
                    report_loss(&mut pipeline, &mut reported, current_loss(&counters, &user_loss), session_id)?;
                }
            }
        }
        if closed || last_check.elapsed() >= LOSS_CHECK_INTERVAL {
            last_check = Instant::now();
            report_loss(&mut pipeline, &mut reported, current_loss(&counters, &user_loss), session_id)?;
        }
        pipeline.sink.flush()?;
        if closed {
            return Ok((pipeline, reported));
        }
    }
}

const LOSS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Writes a `monitor.loss` event if anything more was lost since the last one.
fn report_loss(pipeline: &mut Pipeline, reported: &mut Loss, loss: Loss, session_id: u64) -> std::io::Result<()> {
    if loss.total() > reported.total() {
        let mut event = pipeline.context.event(types::MONITOR_LOSS, BootClock::now_boot_ns(), session_ref(session_id));
        event.loss = Some(loss);
        pipeline.sink.write(&event)?;
        *reported = loss;
    }
    Ok(())
}

fn current_loss(counters: &PerCpuArray<MapData, u64>, user: &UserspaceLoss) -> Loss {
    let kernel = |c: Counter| counters.get(&(c as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
    Loss {
        ringbuf_full: kernel(Counter::RingbufFull),
        session_map_full: kernel(Counter::SessionMapFull),
        kernel_read_error: kernel(Counter::KernelReadError),
        pending_map_full: kernel(Counter::PendingMapFull),
        decode_error: user.decode_error.load(Ordering::Relaxed),
        queue_full: user.queue_full.load(Ordering::Relaxed),
    }
}

fn monitor_info(events: Option<u64>) -> Monitor {
    Monitor {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH,
        events,
        latency: None,
    }
}

/// A random, non-zero session id.
fn new_session_id() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        // SAFETY: valid buffer of the given length.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        let id = u64::from_ne_bytes(bytes);
        if n == 8 && id != 0 {
            return id;
        }
    }
}

/// The shell convention: the exit code, or 128 + the signal that ended the process.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown status".into(),
    }
}
