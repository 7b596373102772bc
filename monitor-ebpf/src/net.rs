//! Network policy: cgroup socket-address hooks on each session's own cgroup (tier 2).
//! They see the kernel's copy of the address, run for io_uring too, and refuse a
//! destination the profile does not allow with EPERM before anything is sent.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid, generated::bpf_ktime_get_boot_ns},
    macros::{cgroup_sock, cgroup_sock_addr, map},
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::{SockAddrContext, SockContext},
};
use monitor_common::{
    event::{ConnectEvent, NO_FD, SyscallEvent, kind, pseudo_syscall},
    maps::{Counter, RULES_MAX},
    policy::{NO_RULE, RAW_SOCKET_RULE, RuleValue, action, net_op, session_flags, socket_family},
    session::SessionMember,
};

use crate::{
    kernel::{count, session_of, zero_by_words},
    maps::{DECISIONS, PENDING_CONNECTS},
};

#[map]
pub static NET_RULES: LpmTrie<[u8; 24], RuleValue> = LpmTrie::with_max_entries(RULES_MAX, 0);
/// Policy id -> the socket families it names beyond `socket_family::always_allowed`
/// (a bit per family); no entry: none.
#[map]
pub static POLICY_FAMILIES: HashMap<u32, u64> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// Whether `member` may create a socket of `family`: the families every session may
/// use, and those its profile names.
#[inline(always)]
pub fn family_allowed(member: &SessionMember, family: u32) -> bool {
    if socket_family::always_allowed(family) || member.flags & session_flags::HAS_POLICY == 0 {
        return true;
    }
    // SAFETY: a copy of the value is taken at once.
    let named = unsafe { POLICY_FAMILIES.get(&member.policy_id) }.copied().unwrap_or(0);
    named & socket_family::bit(family) != 0
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

/// `cgroup/connect4`: `connect()` on an IPv4 socket; Linux >= 4.17.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    check::<false>(&ctx, net_op::CONNECT, kind::NET_CONNECT)
}

/// `cgroup/connect6`: `connect()` on an IPv6 socket (IPv4-mapped included); Linux >= 4.17.
#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    check::<true>(&ctx, net_op::CONNECT, kind::NET_CONNECT)
}

/// `cgroup/sendmsg4`: `sendmsg()`/`sendto()` with an address on an IPv4 UDP socket; Linux >= 4.18.
#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    check::<false>(&ctx, net_op::CONNECT, kind::NET_SEND)
}

/// `cgroup/sendmsg6`; Linux >= 4.18.
#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    check::<true>(&ctx, net_op::CONNECT, kind::NET_SEND)
}

/// `cgroup/bind4`: `bind()` on an IPv4 socket; Linux >= 4.17.
#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    check::<false>(&ctx, net_op::BIND, kind::NET_BIND)
}

/// `cgroup/bind6`; Linux >= 4.17.
#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    check::<true>(&ctx, net_op::BIND, kind::NET_BIND)
}

/// Reads a context field. The verifier accepts context loads only at a constant
/// offset; a volatile read per field keeps LLVM from merging loads into `ctx + reg`.
macro_rules! ctx_field {
    ($sa:expr, $($field:tt)+) => {
        // SAFETY: the kernel passes a valid bpf_sock_addr; the field is 4 bytes.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$sa).$($field)+)) }
    };
}

const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_ICMPV6: u32 = 58;

/// `cgroup/sock_create`: an IPv4/IPv6 socket is created; Linux >= 4.10. Raw and ICMP
/// datagram sockets send without the connect/sendmsg hooks, so where connections are
/// restricted they are refused (EPERM).
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return ALLOW;
    };
    if member.flags & session_flags::RESTRICTS_CONNECT == 0 {
        return ALLOW;
    }
    let sock = ctx.sock;
    let socket_type = ctx_field!(sock, type_);
    let protocol = ctx_field!(sock, protocol);
    let icmp = socket_type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
    if socket_type != SOCK_RAW && !icmp {
        return ALLOW;
    }
    let verdict = refusal(&member);
    if let Some(mut entry) = DECISIONS.reserve::<SyscallEvent>(0) {
        // SAFETY: the entry is ours until submitted; every field is written below.
        let event = unsafe { &mut *entry.as_mut_ptr() };
        fill_header_here(&mut event.header, kind::PROCESS_SYSCALL, size_of::<SyscallEvent>() as u32, &member, pid_tgid);
        event.nr = pseudo_syscall::SOCKET;
        event.action = verdict;
        event.rule_id = RAW_SOCKET_RULE;
        event.arg = 0;
        entry.submit(0);
    } else {
        count(Counter::DecisionRingbufFull);
    }
    if verdict == action::DENY { REFUSE } else { ALLOW }
}

/// The header, from what a cgroup program may read (no task struct: the start time
/// is left 0 for userspace to fill in).
#[inline(always)]
fn fill_header_here(
    header: &mut monitor_common::event::EventHeader,
    record_kind: u16,
    size: u32,
    member: &monitor_common::session::SessionMember,
    pid_tgid: u64,
) {
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = record_kind;
    header.flags = 0;
    header.size = size;
    // SAFETY: helper without preconditions.
    header.time_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.session_id = member.session_id;
    header.tgid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.start_time_ns = 0;
}

/// The address in the trie's form, as words: IPv6, IPv4 mapped (`::ffff:a.b.c.d`).
/// `V6` is a constant per program: a runtime branch would let LLVM merge the two
/// families' context loads into one load at a computed offset, which the verifier
/// refuses.
#[inline(always)]
fn address<const V6: bool>(ctx: &SockAddrContext) -> [u32; 4] {
    let sa = ctx.sock_addr;
    // The words hold the address bytes in network order: their memory bytes are the
    // address. Built as words: byte arrays filled piecewise compile to memset calls.
    if V6 {
        [
            ctx_field!(sa, user_ip6[0]),
            ctx_field!(sa, user_ip6[1]),
            ctx_field!(sa, user_ip6[2]),
            ctx_field!(sa, user_ip6[3]),
        ]
    } else {
        [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), ctx_field!(sa, user_ip4)]
    }
}

/// The address's bytes.
#[inline(always)]
fn address_bytes(words: &[u32; 4]) -> [u8; 16] {
    // SAFETY: [u32; 4] and [u8; 16] have the same size, and every byte pattern is a u8.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(*words) }
}

#[inline(always)]
pub fn lookup(policy: u32, op: u16, port: u16, addr: &[u32; 4]) -> Option<RuleValue> {
    let ([o0, o1], [p0, p1]) = (op.to_ne_bytes(), port.to_ne_bytes());
    let words: [u32; 6] = [policy, u32::from_ne_bytes([o0, o1, p0, p1]), addr[0], addr[1], addr[2], addr[3]];
    // SAFETY: same size; the trie key's bytes are (policy, op, port, address).
    let data = unsafe { core::mem::transmute::<[u32; 6], [u8; 24]>(words) };
    let key = Key::new(64 + 128, data);
    NET_RULES.get(&key).copied()
}

#[inline(always)]
fn check<const V6: bool>(ctx: &SockAddrContext, op: u16, record_kind: u16) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(member) = session_of((pid_tgid >> 32) as u32) else {
        return ALLOW; // not a session member: never refused
    };
    if member.flags & session_flags::HAS_POLICY == 0 {
        return ALLOW;
    }
    let port = u16::from_be(ctx_field!(ctx.sock_addr, user_port) as u16);
    if op == net_op::BIND && port == 0 {
        return ALLOW; // an ephemeral port the kernel picks: no service port is claimed
    }
    let addr = address::<V6>(ctx);
    let rule = lookup(member.policy_id, op, port, &addr).or_else(|| lookup(member.policy_id, op, 0, &addr));
    let (verdict, rule_id) = match rule {
        Some(value) if value.allow != 0 => (action::ALLOW, value.rule_id),
        Some(value) => (refusal(&member), value.rule_id),
        None => (refusal(&member), NO_RULE),
    };
    // A connect() seen at syscall entry reports one event at exit, with this verdict.
    let pending = if record_kind == kind::NET_CONNECT { PENDING_CONNECTS.get_ptr_mut(&pid_tgid) } else { None };
    match pending {
        Some(pending) => {
            // SAFETY: map value of this thread's connect in flight.
            unsafe {
                (*pending).action = verdict;
                (*pending).rule_id = rule_id;
            }
        }
        None if verdict != action::ALLOW => {
            report(record_kind, &member, pid_tgid, V6, port, &address_bytes(&addr), verdict, rule_id)
        }
        None => {}
    }
    if verdict == action::DENY { REFUSE } else { ALLOW }
}

#[inline(always)]
fn refusal(member: &monitor_common::session::SessionMember) -> u32 {
    if member.flags & session_flags::ENFORCE != 0 { action::DENY } else { action::AUDIT }
}

/// A refused (or audited) operation no syscall exit reports: io_uring connects,
/// sends and binds.
#[allow(clippy::too_many_arguments, reason = "one call site; a struct would only rename the fields")]
#[inline(always)]
fn report(
    record_kind: u16,
    member: &monitor_common::session::SessionMember,
    pid_tgid: u64,
    v6: bool,
    port: u16,
    addr: &[u8; 16],
    verdict: u32,
    rule_id: u32,
) {
    let Some(mut entry) = DECISIONS.reserve::<ConnectEvent>(0) else {
        count(Counter::DecisionRingbufFull);
        return;
    };
    // SAFETY: the entry is ours until submitted; every field is written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header_here(&mut event.header, record_kind, size_of::<ConnectEvent>() as u32, member, pid_tgid);
    event.ret = if verdict == action::DENY { -1 } else { 0 };
    event.fd = NO_FD;
    event.action = verdict;
    event.rule_id = rule_id;
    event._pad = 0;
    zero_by_words(&mut event.addr);
    // struct sockaddr_in / sockaddr_in6
    let family = if v6 { AF_INET6 } else { AF_INET };
    event.addr[0..2].copy_from_slice(&family.to_ne_bytes());
    event.addr[2..4].copy_from_slice(&port.to_be_bytes());
    if v6 {
        event.addr[8..24].copy_from_slice(addr);
        event.addr_len = 28;
    } else {
        event.addr[4..8].copy_from_slice(&addr[12..16]);
        event.addr_len = 16;
    }
    entry.submit(0);
}
