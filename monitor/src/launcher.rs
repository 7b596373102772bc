//! Starts a command as the first process of a new session.
//!
//! The child adds itself to the kernel's session map between fork and exec, so the
//! exec and every instruction after it are inside the session; its children inherit
//! membership in the kernel at fork. If registration fails, the command never runs.

use std::{
    ffi::OsString,
    io,
    os::unix::process::CommandExt,
    process::{Child, Command},
};

use monitor_common::session::SessionMember;

use crate::session_map::{SessionMap, register_raw};

pub fn spawn_in_session(command: &[OsString], sessions: &SessionMap, member: SessionMember) -> io::Result<Child> {
    let (program, args) = command.split_first().ok_or_else(|| io::Error::other("no command given"))?;
    let map_fd = sessions.raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (getpid, bpf) with no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let tgid = libc::getpid() as u32;
            register_raw(map_fd, tgid, &member)
        });
    }
    cmd.spawn()
}
