//! The watchdog: a second, single-threaded process that outlives the monitor, so that a
//! monitor's death fails closed. When the monitor goes without saying goodbye (killed,
//! crashed, OOM-killed), every session it guarded is killed through its cgroup (or
//! frozen, `--on-monitor-death freeze`), and that is reported in the event stream:
//! `session.killed` with `killed_by: monitor-death`, or `session.frozen`.
//!
//! The monitor talks to it over a pipe on the watchdog's stdin (the monitor's end is
//! close-on-exec, so no agent holds it), one JSON [`Message`] per line: `guard` a
//! session, `release` it, `beat` every second from a thread of its own, and `end` when
//! the monitor stops cleanly. End of file without `end` means the monitor is gone,
//! however it went: the kernel closes the pipe whatever ended the process. No line for
//! [`STALL`] means the monitor is stopped or frozen (a signal, a freezer cgroup): the
//! sessions are dealt with the same way, as nothing watches them then either.
//!
//! Enforcement does not lapse in between: once its programs are attached, the monitor
//! names (`hold`) the descriptors that keep them so (BPF links, perf events), and the
//! watchdog copies them out of it (`pidfd_getfd`); the kernel programs stay attached,
//! refusing and killing, until the sessions are killed or frozen. (Not passed over a
//! Unix socket: under emulation, heartbeats through the hooked `socket_sendmsg` while
//! another monitor attached its programs hung guests.)
//!
//! No session member can reach the watchdog: its pid is protected like the monitor's
//! (signals, ptrace, limits and scheduling: the LSM hooks, or the seccomp guard), it
//! leads its own session and process group, ignores the terminal's and systemd's stop
//! signals (it ends when the monitor ends), and the OOM killer spares it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, Write},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::{
    cgroup::SessionCgroup,
    clock::BootClock,
    event::{Decision, Event, Monitor, types},
    event_context::{Context, session_id_text, session_ref},
};

/// What becomes of a session whose monitor died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMonitorDeath {
    /// Every process of the session is killed (`cgroup.kill`).
    Kill,
    /// The session is frozen in place (`cgroup.freeze`), for the operator to inspect,
    /// then thaw or kill.
    Freeze,
}

impl OnMonitorDeath {
    /// The default for a session's mode: an enforced session is killed; an audited one,
    /// whose agent was only to be watched, is frozen rather than ended.
    pub fn default_for(enforce: bool) -> OnMonitorDeath {
        if enforce { OnMonitorDeath::Kill } else { OnMonitorDeath::Freeze }
    }
}

/// One line from the monitor to its watchdog.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Message {
    /// From now on, if the monitor dies, the session's cgroup is killed or frozen.
    Guard { session: String, profile: String, action: OnMonitorDeath, cgroup: PathBuf },
    /// The session ended, or was handed back.
    Release { session: String },
    /// Copy these descriptors of the monitor's, and keep them open until the sessions
    /// are dealt with.
    Hold { descriptors: Vec<i32> },
    /// The monitor still runs.
    Beat,
    /// The monitor stops cleanly.
    End,
}

/// pid of this monitor's watchdog, 0 before one is started: the kernel programs and the
/// seccomp guard protect it like the monitor.
static WATCHDOG_PID: AtomicU32 = AtomicU32::new(0);

pub fn watchdog_pid() -> u32 {
    WATCHDOG_PID.load(Ordering::Acquire)
}

/// Names `pid` this process's watchdog, as starting one does.
#[cfg(test)]
pub(crate) fn set_watchdog_pid(pid: u32) {
    WATCHDOG_PID.store(pid, Ordering::Release);
}

/// How long the watchdog waits for a line before it takes the monitor for stopped.
const STALL: Duration = Duration::from_secs(10);
/// How often the monitor's heartbeat thread writes.
const BEAT: Duration = Duration::from_secs(1);

/// The monitor's side.
pub struct Watchdog {
    child: Child,
    pipe: ChildStdin,
    /// Tells the heartbeat thread that the end is expected.
    finished: Arc<AtomicBool>,
}

impl Watchdog {
    /// Starts the watchdog (this binary, `agent-monitor watchdog`), reporting to the
    /// event file `events` and, with `stdout`, to the monitor's stdout, which it shares.
    pub fn spawn(events: Option<&Path>, stdout: bool) -> anyhow::Result<Watchdog> {
        crate::attachments::raise_descriptor_limit();
        let exe = std::env::current_exe().context("finding the monitor's own binary")?;
        let mut command = Command::new(exe);
        command.arg("watchdog").arg("--monitor-pid").arg(std::process::id().to_string());
        if let Some(events) = events {
            command.arg("--events").arg(events);
        }
        if stdout {
            command.arg("--stdout");
        }
        command.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        // Its own session: no terminal signal, and no signal to the monitor's process
        // group, reaches it.
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
        let mut child = command.spawn().context("starting the watchdog")?;
        let pipe = child.stdin.take().context("the watchdog's pipe")?;
        WATCHDOG_PID.store(child.id(), Ordering::Release);
        let finished = Arc::new(AtomicBool::new(false));
        let mut beats = File::from(pipe.as_fd().try_clone_to_owned().context("the watchdog's pipe")?);
        let done = finished.clone();
        let mut beat = serde_json::to_vec(&Message::Beat).expect("a unit variant");
        beat.push(b'\n');
        std::thread::Builder::new()
            .name("watchdog-beat".into())
            .spawn(move || {
                while !done.load(Ordering::Acquire) {
                    // One write of a few bytes: atomic on a pipe, never mixed with
                    // another thread's line.
                    if let Err(error) = beats.write_all(&beat) {
                        if !done.load(Ordering::Acquire) {
                            log::error!(
                                "the watchdog is gone ({error}): sessions are no longer ended if the monitor dies"
                            );
                        }
                        return;
                    }
                    std::thread::sleep(BEAT);
                }
            })
            .context("starting the heartbeat thread")?;
        Ok(Watchdog { child, pipe, finished })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From now on, if the monitor dies, `cgroup`'s processes are killed or frozen.
    pub fn guard(&mut self, session: u64, profile: &str, action: OnMonitorDeath, cgroup: &Path) -> std::io::Result<()> {
        let session = session_id_text(session);
        self.send(&Message::Guard { session, profile: profile.to_owned(), action, cgroup: cgroup.to_owned() })
    }

    /// The session ended (or was handed back): nothing to do for it any more.
    pub fn release(&mut self, session: u64) {
        if let Err(error) = self.send(&Message::Release { session: session_id_text(session) }) {
            log::warn!("the watchdog is gone ({error}): sessions are no longer ended if the monitor dies");
        }
    }

    /// Names to the watchdog every descriptor that keeps a program of this monitor
    /// attached, once they are all attached, for it to copy: if the monitor dies, its
    /// programs go on enforcing until the watchdog has killed or frozen the sessions.
    pub fn hold_attachments(&mut self) -> std::io::Result<usize> {
        let descriptors = crate::attachments::numbers()?;
        let count = descriptors.len();
        self.send(&Message::Hold { descriptors })?;
        Ok(count)
    }

    /// The monitor stops cleanly: the watchdog ends without touching any session, and
    /// detaches the programs (it closes the last copies of their links) before it
    /// exits. Returns once it has.
    pub fn finish(self) {
        let mut child = self.end();
        let _ = child.wait();
    }

    /// As `finish`, without waiting for the programs to be detached: a standalone `run`
    /// returns as soon as its agent is done while the kernel patches the hooks out
    /// (with the LSM tier, 5 s of every exit on Debian's 6.1 under emulation, the
    /// detaches one after the other whatever the order they are asked in). The session
    /// has ended: the programs still attached meanwhile judge no process.
    pub fn finish_in_background(self) {
        // The child is reaped by whoever inherits it once this process exits.
        drop(self.end());
    }

    fn end(mut self) -> Child {
        self.finished.store(true, Ordering::Release);
        let _ = self.send(&Message::End);
        drop(self.pipe);
        self.child
    }

    fn send(&mut self, message: &Message) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.pipe.write_all(&line)
    }
}

/// A session the watchdog guards.
struct Guarded {
    profile: String,
    action: OnMonitorDeath,
    cgroup: PathBuf,
}

/// `agent-monitor watchdog`: reads the monitor's lines until the pipe ends; if it ends
/// without `end`, deals with every guarded session.
pub fn watch(monitor_pid: u32, events: Option<PathBuf>, stdout: bool) -> anyhow::Result<i32> {
    // SAFETY: setting dispositions to SIG_IGN has no preconditions.
    unsafe {
        for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    // Spared by the OOM killer, which could otherwise choose it over an agent that made
    // itself unkillable; failing that (not root) it is only as likely a victim as any.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let mut guarded: BTreeMap<String, Guarded> = BTreeMap::new();
    // Kept open until every guarded session is dealt with: the monitor's programs stay
    // attached, and enforcing, while it dies.
    let mut held: Vec<std::os::fd::OwnedFd> = Vec::new();
    let mut stdin = std::io::BufReader::new(std::io::stdin().lock());
    let mut heard = Instant::now();
    let why = loop {
        if stdin.buffer().is_empty() && !readable_within(STALL.saturating_sub(heard.elapsed())) {
            if guarded.is_empty() {
                heard = Instant::now();
                continue;
            }
            break format!(
                "the monitor (pid {monitor_pid}) stopped answering for {} s (stopped, frozen or hung)",
                STALL.as_secs()
            );
        }
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => break format!("the monitor (pid {monitor_pid}) ended without ending the session"),
            Ok(_) => heard = Instant::now(),
        }
        match serde_json::from_str(line.trim_end()) {
            // A clean monitor released every session first (run removes its cgroup, the
            // daemon releases each): a session still guarded is still dealt with, so
            // that a forged `end` buys nothing.
            Ok(Message::End) => break format!("the monitor (pid {monitor_pid}) ended without ending the session"),
            Ok(Message::Beat) => {}
            Ok(Message::Release { session }) => {
                guarded.remove(&session);
            }
            Ok(Message::Guard { session, profile, action, cgroup }) => {
                guarded.insert(session, Guarded { profile, action, cgroup });
            }
            Ok(Message::Hold { descriptors }) => match crate::attachments::copy_from(monitor_pid, &descriptors) {
                Ok(copies) => held.extend(copies),
                Err(error) => log::error!(
                    "watchdog: cannot copy the monitor's program links ({error}): if it dies they detach before the sessions end"
                ),
            },
            // Only the monitor writes here; a line it did not mean is a bug, not a
            // reason to stop guarding.
            Err(error) => log::error!("watchdog: unreadable line from the monitor ({error}): {line:?}"),
        }
    };
    let context = Context::new();
    let ended: Vec<Event> =
        guarded.iter().filter_map(|(id, session)| end_session(&context, monitor_pid, id, session, &why)).collect();
    // Only now may the programs detach: every session is killed or frozen. On a thread
    // of its own: detaching waits for the kernel to patch the hooks out, which must not
    // delay the reports; and a report that blocks (a stopped terminal) must not keep
    // them.
    let detach = std::thread::spawn(move || crate::attachments::close_in_parallel(held));
    for event in &ended {
        report(event, events.as_deref(), stdout);
    }
    // Reported: whoever reads the monitor's output (a pipe, a test) need not wait for
    // the detaching too.
    let_go_of_stdio();
    let _ = detach.join();
    Ok(0)
}

/// Points stdin, stdout and stderr at /dev/null.
fn let_go_of_stdio() {
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else { return };
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which nothing else uses by now.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) };
    }
}

/// Whether stdin has something to read (or has ended) within `timeout`.
fn readable_within(timeout: Duration) -> bool {
    let mut poll = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd, alive across the call.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    // An error (EINTR) counts as readable: the read that follows tells.
    ready != 0
}

/// Kills or freezes one session; the event that says so, unless it had already ended.
fn end_session(context: &Context, monitor_pid: u32, id: &str, session: &Guarded, why: &str) -> Option<Event> {
    let name = session.cgroup.file_name()?.to_string_lossy().into_owned();
    let cgroup = SessionCgroup::open(&name).ok()?.keeping_parent();
    let pids = cgroup.pids();
    let (done, error) = match session.action {
        OnMonitorDeath::Kill => (OnMonitorDeath::Kill, cgroup.kill().err().map(|e| format!("cgroup.kill failed: {e}"))),
        OnMonitorDeath::Freeze => match cgroup.freeze(true) {
            Ok(()) => (OnMonitorDeath::Freeze, None),
            Err(error) => {
                let killed = cgroup.kill().err().map(|e| format!("; cgroup.kill failed too: {e}")).unwrap_or_default();
                (OnMonitorDeath::Kill, Some(format!("freezing failed ({error}), so it was killed{killed}")))
            }
        },
    };
    if done == OnMonitorDeath::Kill {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !cgroup.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = std::fs::remove_dir(cgroup.path());
        crate::cgroup::remove_parent_if_empty();
    }
    let _ = writeln!(
        std::io::stderr(),
        "agent-monitor watchdog: {why}; session {id} {} ({} processes: {pids:?}){}",
        if done == OnMonitorDeath::Kill { "killed" } else { "frozen" },
        pids.len(),
        error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
    );
    Some(death_event(context, Death { monitor_pid, session: id, profile: &session.profile, done, pids, why, error }))
}

/// What the watchdog did to a session, and why.
pub(crate) struct Death<'a> {
    /// The monitor that died (or stopped answering).
    pub monitor_pid: u32,
    pub session: &'a str,
    pub profile: &'a str,
    pub done: OnMonitorDeath,
    pub pids: Vec<u32>,
    pub why: &'a str,
    pub error: Option<String>,
}

/// `session.killed` (by `monitor-death`) or `session.frozen`, on behalf of the monitor
/// that died.
pub(crate) fn death_event(context: &Context, death: Death) -> Event {
    let Death { monitor_pid, session, profile, done, pids, why, error } = death;
    let session = crate::event::Session { id: session.to_owned(), ..session_ref(0) };
    let time_ns = BootClock::now_boot_ns();
    let mut event = match done {
        OnMonitorDeath::Kill => {
            let mut event = context.event(types::SESSION_KILLED, time_ns, session);
            event.session.killed_pids = Some(pids);
            event.session.killed_by = Some("monitor-death");
            event.decision = Some(Decision {
                action: "kill",
                profile: Some(profile.to_owned()),
                enforced_by: Some("watchdog:cgroup.kill"),
                note: Some(match error {
                    Some(error) => format!("{why}; {error}"),
                    None => why.to_owned(),
                }),
                ..Decision::ALLOW
            });
            event
        }
        OnMonitorDeath::Freeze => {
            let mut event = context.event(types::SESSION_FROZEN, time_ns, session);
            event.session.remaining_pids = Some(pids);
            event
        }
    };
    event.monitor = Some(Monitor { pid: monitor_pid, ..crate::event::monitor_info(None) });
    event
}

/// Appends `event` to the event file (after a newline if the monitor died mid-line),
/// and writes it to stdout.
fn report(event: &Event, events: Option<&Path>, stdout: bool) {
    let Ok(mut line) = serde_json::to_string(event) else { return };
    line.push('\n');
    if stdout && let Err(error) = std::io::stdout().lock().write_all(line.as_bytes()) {
        let _ = writeln!(std::io::stderr(), "agent-monitor watchdog: writing the event to stdout failed: {error}");
    }
    let written = match events {
        Some(path) => open_report_file(path).and_then(|mut file| {
            use std::os::unix::fs::FileExt;
            let len = file.metadata()?.len();
            let mut last = [b'\n'];
            if len > 0 {
                file.read_exact_at(&mut last, len - 1)?;
            }
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
            file.write_all(line.as_bytes())
        }),
        None => Ok(()),
    };
    if let Err(error) = written {
        let _ = writeln!(std::io::stderr(), "agent-monitor watchdog: writing the event failed: {error}: {line}");
    }
}

/// The event file at `path`, for appending, if it is a regular file; whatever else took
/// the name (a symlink, a FIFO, a device: the report must neither go elsewhere nor
/// block) is moved aside (`path.replaced-N`) and a new file made. Symlinks are not
/// followed, and the file is opened without blocking.
fn open_report_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let existing = std::fs::symlink_metadata(path);
    if existing.as_ref().is_ok_and(|meta| meta.is_file()) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        if let Ok(file) = file
            && file.metadata()?.is_file()
        {
            return Ok(file);
        }
    }
    if existing.is_ok() {
        std::fs::rename(path, crate::sink::free_name(path)?)?;
    }
    std::fs::OpenOptions::new().read(true).append(true).create_new(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_pipe() {
        for message in [
            Message::Guard {
                session: "00000000000000ab".into(),
                profile: "a profile with spaces".into(),
                action: OnMonitorDeath::Freeze,
                cgroup: PathBuf::from("/sys/fs/cgroup/agent-monitor/00000000000000ab"),
            },
            Message::Release { session: "00000000000000ab".into() },
            Message::Hold { descriptors: vec![7, 12] },
            Message::Beat,
            Message::End,
        ] {
            let line = serde_json::to_string(&message).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), message);
        }
    }

    #[test]
    fn the_report_goes_to_a_regular_file_of_its_own() {
        let dir = crate::sink::testdir::TestDir::new();
        let path = dir.path("events");
        std::fs::write(&path, "a line\n").unwrap();
        open_report_file(&path).unwrap().write_all(b"report\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a line\nreport\n");
        // A symlink in its place (to where the report would be lost) is moved aside.
        let elsewhere = dir.path("elsewhere");
        std::fs::write(&elsewhere, "").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        open_report_file(&path).unwrap().write_all(b"report\n").unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "report\n");
        assert!(std::fs::symlink_metadata(dir.path("events.replaced-1")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn enforced_sessions_are_killed_and_audited_ones_frozen_by_default() {
        assert_eq!(OnMonitorDeath::default_for(true), OnMonitorDeath::Kill);
        assert_eq!(OnMonitorDeath::default_for(false), OnMonitorDeath::Freeze);
    }
}
