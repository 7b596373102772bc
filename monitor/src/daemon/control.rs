//! The control socket: root only (mode 0600 and the peer's uid checked), one thread per
//! connection. Requests go to the daemon's thread as [`Command`]s; `events` and the
//! event stream of `start` are served here, from the sink's hub.

use std::{
    io::{BufRead, BufReader, Write},
    os::{
        fd::AsRawFd,
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Sender},
    },
    time::Duration,
};

use anyhow::Context as _;

use super::{
    protocol::{Reply, Request},
    unix,
};
use crate::{
    ingest::Item,
    queue::Waker,
    sink::{Filter, Hub, RecvTimeoutError},
};

/// Sends commands to the daemon's thread. The thread waits on the kernel's events;
/// each command wakes it (`queue::Waker`), so it never polls for commands.
#[derive(Clone)]
pub struct Commands {
    sender: Sender<Command>,
    waker: Waker<Item>,
}

impl Commands {
    pub fn new(sender: Sender<Command>, waker: Waker<Item>) -> Commands {
        Commands { sender, waker }
    }

    /// Err: the daemon's thread is gone.
    pub fn send(&self, command: Command) -> Result<(), mpsc::SendError<Command>> {
        self.sender.send(command)?;
        self.waker.wake();
        Ok(())
    }
}

/// What a connection asks of the daemon's thread.
pub enum Command {
    Request {
        request: Request,
        peer_pid: u32,
        reply: Sender<Reply>,
    },
    /// The `start` connection of `session` went away.
    Detached {
        session: u64,
    },
    /// A `start` client's process `pid` is registered in `session` and runs.
    RunStarted {
        session: u64,
        pid: u32,
        /// The `run` client, which started it.
        parent: u32,
        reply: Sender<Reply>,
    },
    /// The first process of the `start` client's `session` ended with `status`; the
    /// client killed what the session left running then, `killed` (a standalone
    /// `run` does, before telling the engine).
    RunEnded {
        session: u64,
        status: u32,
        killed: Vec<u32>,
        reply: Sender<Reply>,
    },
    /// Release or freeze every session and say so on `sessions_stopped`; the daemon's
    /// thread then handles what ingest still queues, and ends when ingest closes the queue.
    Stop {
        sessions_stopped: Sender<()>,
    },
}

/// Longest request line accepted.
const MAX_REQUEST: usize = 1 << 20;

/// Binds the socket at `path` (its directory made 0700 if missing); a stale socket
/// left by a daemon that died is replaced, a live one is an error. Bound once the
/// daemon is ready: a client that can connect finds the policy in force.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    ensure_free(path)?;
    let _ = std::fs::remove_file(path);
    // Created 0600 from the start: no moment where others could connect.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = listener.with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Fails if a daemon answers at `path` (checked before loading anything).
pub fn ensure_free(path: &Path) -> anyhow::Result<()> {
    if UnixStream::connect(path).is_ok() {
        anyhow::bail!("another agent-monitor daemon is running ({} answers); stop it first", path.display());
    }
    Ok(())
}

pub struct Server {
    pub listener: UnixListener,
    pub path: PathBuf,
    pub commands: Commands,
    pub hub: Hub,
    /// The session map, handed to `run` clients.
    pub session_map: Arc<crate::session_map::SessionMapFds>,
    /// Lines buffered for a `run` client's event stream.
    pub run_buffer: usize,
    /// Membership, to turn session members away.
    pub members: crate::session_map::SessionMap,
}

impl Server {
    /// Accepts connections until `stop` is set (the daemon then connects once to wake it).
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let server = Arc::new(self);
                for stream in server.listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let server = server.clone();
                    let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
                        if let Err(error) = server.serve(stream) {
                            log::debug!("control connection: {error:#}");
                        }
                    });
                }
            })
            .expect("spawning the control thread")
    }

    fn serve(&self, stream: UnixStream) -> anyhow::Result<()> {
        let (peer_pid, peer_uid) = unix::peer(&stream)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        // The request is read before any refusal, so that the client reads the answer
        // rather than a broken pipe.
        let Some(request) = read_request(&mut reader, &mut writer)? else { return Ok(()) };
        if peer_uid != 0 {
            return write_line(&mut writer, &Reply::error("the control socket is for root only"));
        }
        // An agent running as root must not stop, reload or leave its own session
        // (or any other) through the daemon.
        if self.members.contains(peer_pid) {
            return write_line(&mut writer, &Reply::error("refused: the caller is in a monitored session"));
        }
        match request {
            Request::Events { session, types } => {
                let filter = Filter { session, types: types.into_iter().collect() };
                let follower = self.hub.subscribe(filter);
                write_line(&mut writer, &Reply::ok())?;
                stream_lines(&follower, &mut writer, None)
            }
            Request::Start { .. } => self.serve_start(request, peer_pid, reader, writer),
            Request::Started { .. } | Request::Ended { .. } => {
                write_line(&mut writer, &Reply::error("started/ended only follow a start request"))
            }
            request => {
                let reply = self.ask(request, peer_pid)?;
                write_line(&mut writer, &reply)
            }
        }
    }

    fn ask(&self, request: Request, peer_pid: u32) -> anyhow::Result<Reply> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::Request { request, peer_pid, reply })
            .map_err(|_| anyhow::anyhow!("daemon stopping"))?;
        answer.recv_timeout(Duration::from_secs(60)).map_err(|_| anyhow::anyhow!("the daemon did not answer"))
    }

    fn serve_start(
        &self,
        request: Request,
        peer_pid: u32,
        mut reader: BufReader<UnixStream>,
        mut writer: UnixStream,
    ) -> anyhow::Result<()> {
        let reply = self.ask(request, peer_pid)?;
        let Some(start) = reply.start.clone().filter(|_| reply.ok) else {
            return write_line(&mut writer, &reply);
        };
        let session = start.session_id;
        // Subscribed before the reply: the client's child cannot act before it.
        let follower = self.hub.subscribe_with_capacity(
            Filter { session: Some(start.session.clone()), types: Default::default() },
            self.run_buffer,
        );
        let mut line = serde_json::to_vec(&reply)?;
        line.push(b'\n');
        unix::send_with_fds(
            &writer,
            &line,
            &[self.session_map.sessions.as_raw_fd(), self.session_map.member_bits.as_raw_fd()],
        )?;
        let commands = self.commands.clone();
        let reader_thread = std::thread::spawn(move || {
            loop {
                match read_request(&mut reader, &mut std::io::sink()) {
                    Ok(Some(request @ (Request::Started { .. } | Request::Ended { .. }))) => {
                        let (reply, answer) = mpsc::channel();
                        let ended = matches!(request, Request::Ended { .. });
                        let command = match request {
                            Request::Started { pid } => Command::RunStarted { session, pid, parent: peer_pid, reply },
                            Request::Ended { status } => {
                                Command::RunEnded { session, status, killed: Vec::new(), reply }
                            }
                            _ => unreachable!("matched above"),
                        };
                        if commands.send(command).is_err() {
                            return;
                        }
                        let _ = answer.recv_timeout(Duration::from_secs(60));
                        if ended {
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        let _ = commands.send(Command::Detached { session });
                        return;
                    }
                }
            }
        });
        let result = stream_lines(&follower, &mut writer, Some(&start.session));
        drop(follower);
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = reader_thread.join();
        result
    }
}

/// Reads one request line; answers a malformed one with an error (and `None`).
fn read_request(reader: &mut BufReader<UnixStream>, writer: &mut dyn Write) -> anyhow::Result<Option<Request>> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *reader, MAX_REQUEST as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    match serde_json::from_slice::<Request>(&line) {
        Ok(request) => Ok(Some(request)),
        Err(error) => {
            write_line(writer, &Reply::error(format!("bad request: {error}")))?;
            Ok(None)
        }
    }
}

/// Writes the follower's lines until the client goes away, or (with `until_end_of`)
/// that session's `session.end` has been written.
fn stream_lines(
    follower: &crate::sink::Follower,
    writer: &mut UnixStream,
    until_end_of: Option<&str>,
) -> anyhow::Result<()> {
    loop {
        match follower.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                writer.write_all(&line)?;
                if until_end_of.is_some() && is_session_end(&line) {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // Find out whether the client is still there.
                let mut probe = [0u8; 1];
                // SAFETY: valid buffer; MSG_PEEK|MSG_DONTWAIT never blocks nor consumes.
                let n = unsafe {
                    libc::recv(writer.as_raw_fd(), probe.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
                };
                if n == 0 && until_end_of.is_none() {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn is_session_end(line: &[u8]) -> bool {
    line.windows(22).any(|w| w == br#""type":"session.end","#)
}

pub fn write_line(writer: &mut dyn Write, reply: &Reply) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    Ok(())
}
