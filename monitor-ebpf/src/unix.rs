//! Unix sockets bound to a name in the file tree are governed as the files they are:
//! connecting or sending to one is a write to its name (the kernel itself asks for
//! write permission on the socket file), judged by the session's file rules and
//! reported as a `FILE_CHANGE` record (`connect`, `send`). A deputy's socket (a
//! container runtime's, the system bus) is then out of reach unless `files.write`
//! names it. Abstract and unnamed sockets have no name to judge.
//!
//! Tier 1: `unix_stream_connect` and `unix_may_send` refuse before the connection or
//! the datagram exists. Tier 2: a successful `connect` is judged at its return (the
//! process is killed before it can use the connection; a datagram sent with an
//! address and no connect is not seen).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use monitor_common::{
    event::file_op,
    maps::{Counter, lsm_tier},
    policy::action,
    session::SessionMember,
};

use crate::{
    file_change::judge_change,
    kernel::{ReadError, config, count, read, read_ptr},
    lsm::{answer, member_for},
    policy::{self, Tier},
};

/// `AF_UNIX`.
const AF_UNIX: u16 = 1;

/// `unix_stream_connect(struct sock *sock, struct sock *other, struct sock *newsk)`:
/// `other` is the listening socket.
#[lsm(hook = "unix_stream_connect")]
pub fn unix_stream_connect(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::FILES) else {
        return 0;
    };
    answer(judge_peer(&member, ctx.arg(1), file_op::CONNECT, Tier::Lsm))
}

/// `unix_may_send(struct socket *sock, struct socket *other)`: a datagram connect, or
/// a send to `other`.
#[lsm(hook = "unix_may_send")]
pub fn unix_may_send(ctx: LsmContext) -> i32 {
    let Some(member) = member_for(lsm_tier::FILES) else {
        return 0;
    };
    match read_ptr(ctx.arg(1), config!(offsets.socket_sk)) {
        Ok(other) => answer(judge_peer(&member, other, file_op::SEND, Tier::Lsm)),
        Err(ReadError) => {
            count(Counter::KernelReadError);
            answer(policy::fail_closed(&member, Tier::Lsm).action)
        }
    }
}

/// Tier 2: the socket `file` (a `struct file *`) was just connected. If it is a unix
/// socket whose peer has a name, that name is judged as a write.
#[inline(always)]
pub fn judge_connected(member: &SessionMember, file: u64) -> Result<(), ReadError> {
    let socket = read_ptr(file, config!(offsets.file_private_data))?;
    let sk = read_ptr(socket, config!(offsets.socket_sk))?;
    if read::<u16>(sk, config!(offsets.sock_family))? != AF_UNIX {
        return Ok(());
    }
    // A connect that did not pair the socket (none does that succeeds) leaves no peer.
    let peer = read::<u64>(sk, config!(offsets.unix_sock_peer))?;
    if peer != 0 {
        judge_peer(member, peer, file_op::CONNECT, Tier::Tracepoint);
    }
    Ok(())
}

/// Judges reaching the unix socket `other` (a `struct sock *`) by the name it is
/// bound to; allows one without a name. A socket that cannot be read fails closed.
#[inline(always)]
fn judge_peer(member: &SessionMember, other: u64, op: u32, tier: Tier) -> u32 {
    // `read`, not `read_ptr`: a null dentry (an abstract or unnamed socket) is an answer.
    match read::<u64>(other, config!(offsets.unix_sock_path) + config!(offsets.path_dentry)) {
        Ok(0) => action::ALLOW,
        Ok(dentry) => judge_change(member, dentry, op, 0, tier),
        Err(ReadError) => {
            count(Counter::KernelReadError);
            policy::fail_closed(member, tier).action
        }
    }
}
