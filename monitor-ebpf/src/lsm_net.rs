//! Tier 1 for the network: BPF LSM socket hooks, against the same `NET_RULES` as the
//! cgroup hooks of tier 2. Membership is by process here, not by cgroup, so an agent
//! that moves itself to another cgroup stays held. Active only where the daemon set
//! `lsm_tier::NET`; the cgroup programs are then not attached.

use aya_ebpf::{helpers::bpf_probe_read_kernel_buf, macros::lsm, programs::LsmContext};
use monitor_common::{
    event::{ConnectEvent, NO_FD, SOCKADDR_MAX_BYTES, SyscallEvent, flags, kind, pseudo_syscall},
    maps::{Counter, lsm_tier},
    policy::{NO_RULE, RAW_SOCKET_RULE, SOCKET_FAMILY_RULE, action, net_op, session_flags},
    session::SessionMember,
};

use crate::{
    kernel::{
        config, count, current_tgid, fill_header, lsm_enforces, read, read_ptr, session_of, wakeup_flags, zero_by_words,
    },
    lsm::answer,
    maps::{DECISIONS, EVENTS},
    net::{self, AF_INET, AF_INET6},
    policy::{self, Tier},
};

#[inline(always)]
fn member() -> Option<SessionMember> {
    let member = session_of(current_tgid())?;
    lsm_enforces(lsm_tier::NET).then_some(member)
}

/// `socket_connect(struct socket *sock, struct sockaddr *address, int addrlen)`: the
/// kernel's copy of the address, for connect(2) and io_uring alike.
#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    let Some(member) = member() else {
        return 0;
    };
    judge(&member, ctx.arg(1), ctx.arg::<i32>(2), net_op::CONNECT, kind::NET_CONNECT)
}

/// `socket_bind(struct socket *sock, struct sockaddr *address, int addrlen)`.
#[lsm(hook = "socket_bind")]
pub fn socket_bind(ctx: LsmContext) -> i32 {
    let Some(member) = member() else {
        return 0;
    };
    judge(&member, ctx.arg(1), ctx.arg::<i32>(2), net_op::BIND, kind::NET_BIND)
}

/// `socket_sendmsg(struct socket *sock, struct msghdr *msg, int size)`: a send with a
/// destination (`msg_name`, the kernel's copy). Without one the socket is connected,
/// and its connect was judged.
#[lsm(hook = "socket_sendmsg")]
pub fn socket_sendmsg(ctx: LsmContext) -> i32 {
    let Some(member) = member() else {
        return 0;
    };
    let msg: u64 = ctx.arg(1);
    let Ok(name) = read_ptr(msg, config!(offsets.msghdr_msg_name)) else {
        return 0; // no destination: a connected socket
    };
    judge(&member, name, SOCKADDR_MAX_BYTES as i32, net_op::CONNECT, kind::NET_SEND)
}

const SOCK_DGRAM: i32 = 2;
const SOCK_RAW: i32 = 3;
const IPPROTO_ICMP: i32 = 1;
const IPPROTO_ICMPV6: i32 = 58;

/// `socket_create(int family, int type, int protocol, int kern)`, before the family's
/// module is loaded or the socket made: a family the profile does not name is refused
/// (`net::family_allowed`); raw and ICMP sockets send without connect or a checked
/// sendmsg destination, and are refused where connections are restricted.
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    let Some(member) = member() else {
        return 0;
    };
    let (family, socket_type, protocol, kern) =
        (ctx.arg::<i32>(0), ctx.arg::<i32>(1), ctx.arg::<i32>(2), ctx.arg::<i32>(3));
    if kern != 0 {
        return 0;
    }
    if !net::family_allowed(&member, family as u32) {
        let verdict = policy::enforce(&member, Tier::Lsm);
        report_socket(&member, config!(syscalls.socket), verdict, SOCKET_FAMILY_RULE, family as u32);
        return answer(verdict);
    }
    if member.flags & session_flags::RESTRICTS_CONNECT == 0 {
        return 0;
    }
    let icmp = socket_type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
    if socket_type != SOCK_RAW && !icmp {
        return 0;
    }
    let verdict = policy::enforce(&member, Tier::Lsm);
    report_socket(&member, pseudo_syscall::SOCKET, verdict, RAW_SOCKET_RULE, family as u32);
    answer(verdict)
}

/// A `process.syscall` record of a socket refused (or audited) by `socket_create`.
#[inline(always)]
fn report_socket(member: &SessionMember, nr: u32, verdict: u32, rule_id: u32, family: u32) {
    let Some(mut entry) = DECISIONS.reserve::<SyscallEvent>(0) else {
        count(Counter::DecisionRingbufFull);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let complete =
        fill_header(&mut event.header, kind::PROCESS_SYSCALL, size_of::<SyscallEvent>() as u32, member.session_id);
    event.header.flags = flags::LSM | if complete { 0 } else { flags::READ_ERROR };
    event.nr = nr;
    event.action = verdict;
    event.rule_id = rule_id;
    event.arg = family;
    entry.submit(2 /* BPF_RB_FORCE_WAKEUP */);
}

/// Judges an IPv4/IPv6 destination against the session's rules and reports it:
/// every connect, and refused sends and binds. Other families are not governed by
/// network rules (unix sockets are files); their connects are reported.
#[inline(always)]
fn judge(member: &SessionMember, sockaddr: u64, addr_len: i32, op: u16, record_kind: u16) -> i32 {
    let family = read::<u16>(sockaddr, 0).unwrap_or(0);
    let mut verdict = action::ALLOW;
    let mut rule_id = NO_RULE;
    let inet = family == AF_INET || family == AF_INET6;
    if inet && member.flags & session_flags::HAS_POLICY != 0 {
        let port = u16::from_be(read::<u16>(sockaddr, 2).unwrap_or(0));
        // As words, IPv4 mapped (see `net::lookup`).
        let mut addr = [0u32; 4];
        let read_ok = if family == AF_INET6 {
            read::<[u32; 4]>(sockaddr, 8).map(|a| addr = a).is_ok()
        } else {
            addr[2] = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
            read::<u32>(sockaddr, 4).map(|a| addr[3] = a).is_ok()
        };
        // An ephemeral port the kernel picks claims no service port.
        if !(op == net_op::BIND && port == 0) {
            let rule = if read_ok {
                net::lookup(member.policy_id, op, port, &addr).or_else(|| net::lookup(member.policy_id, op, 0, &addr))
            } else {
                None // fail closed: an address that cannot be read is not allowed
            };
            match rule {
                Some(value) if value.allow != 0 => rule_id = value.rule_id,
                Some(value) => {
                    rule_id = value.rule_id;
                    verdict = policy::enforce(member, Tier::Lsm);
                }
                None => verdict = policy::enforce(member, Tier::Lsm),
            }
        }
    }
    if verdict != action::ALLOW || record_kind == kind::NET_CONNECT {
        report(member, sockaddr, addr_len, record_kind, verdict, rule_id);
    }
    answer(verdict)
}

#[inline(always)]
fn report(member: &SessionMember, sockaddr: u64, addr_len: i32, record_kind: u16, verdict: u32, rule_id: u32) {
    let ring = if verdict == action::ALLOW { &EVENTS } else { &DECISIONS };
    let Some(mut entry) = ring.reserve::<ConnectEvent>(0) else {
        count(if verdict == action::ALLOW { Counter::RingbufFull } else { Counter::DecisionRingbufFull });
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let complete = fill_header(&mut event.header, record_kind, size_of::<ConnectEvent>() as u32, member.session_id);
    event.header.flags = flags::LSM | if complete { 0 } else { flags::READ_ERROR };
    event.ret = answer(verdict);
    event.fd = NO_FD;
    event.action = verdict;
    event.rule_id = rule_id;
    event._pad = 0;
    zero_by_words(&mut event.addr);
    let mut n = if addr_len < 0 { 0 } else { addr_len as u32 };
    if n > SOCKADDR_MAX_BYTES as u32 {
        n = SOCKADDR_MAX_BYTES as u32;
    }
    // A sendmsg destination's true length is not at hand: what follows the address in
    // the kernel's sockaddr_storage is copied too, harmlessly.
    // One bound on the register passed as the size: LLVM turns `0 < n <= max` into a
    // range check of `n - 1`, a copy whose bound older verifiers do not carry back to
    // `n` (Linux 6.1). Copying 0 bytes is allowed.
    let n = crate::kernel::opaque(n) & (SOCKADDR_MAX_BYTES as u32 * 2 - 1);
    if n as usize <= SOCKADDR_MAX_BYTES {
        // SAFETY: n <= addr.len(); the helper checks the kernel address.
        let copied = unsafe {
            bpf_probe_read_kernel_buf(
                sockaddr as *const u8,
                core::slice::from_raw_parts_mut(event.addr.as_mut_ptr(), n as usize),
            )
        };
        event.addr_len = if copied.is_ok() { n } else { 0 };
    } else {
        event.addr_len = 0;
    }
    entry.submit(if verdict == action::ALLOW {
        wakeup_flags()
    } else {
        2 /* BPF_RB_FORCE_WAKEUP */
    });
}
