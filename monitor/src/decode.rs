//! Ring-buffer bytes -> typed kernel events.
//!
//! Every record is checked before use: long enough for its header, a known kind, a
//! size that matches what the kind allows, lengths inside the record. Fields are read
//! one by one from the bytes (no transmute, no unchecked cast), so no input can make
//! decoding panic or read out of bounds.

use std::net::{Ipv4Addr, Ipv6Addr};

use monitor_common::event::{
    ARGV_MAX_BYTES, AdoptEvent, ConnectEvent, EXEC_PATH_OFFSET, EventHeader, ExitEvent, FILE_CHANGE_PATH_OFFSET,
    FILE_OPEN_PATH_OFFSET, ForkEvent, PATH_BUF_BYTES, SOCKADDR_MAX_BYTES, SyscallEvent, TamperEvent, file_op, kind,
    open_syscall, tamper_op,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need} its kind needs")]
    Short { need: usize, got: usize },
    #[error("record says it has {claimed} bytes but {got} arrived")]
    SizeMismatch { claimed: usize, got: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    #[error("unknown open syscall code {0}")]
    UnknownSyscall(u32),
    #[error("unknown {what} operation {op}")]
    UnknownOperation { what: &'static str, op: u32 },
    #[error("{field} length {len} is larger than the record allows ({max})")]
    BadLength { field: &'static str, len: usize, max: usize },
}

/// A path as the kernel resolved it (the header flags say whether the walk was cut short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPath {
    /// Absolute path bytes (Linux paths need not be UTF-8).
    pub bytes: Vec<u8>,
}

/// A socket address as the caller passed it to `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    Inet {
        addr: Ipv4Addr,
        port: u16,
    },
    Inet6 {
        addr: Ipv6Addr,
        port: u16,
        scope_id: u32,
    },
    Unix {
        path: Vec<u8>,
        abstract_name: bool,
    },
    /// Too short for its family, or a family this version does not interpret.
    Other {
        family: u16,
    },
}

/// What the kernel decided (`monitor_common::policy::action`) and which rule decided
/// (`monitor_common::policy::NO_RULE` for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: u32,
    pub rule_id: u32,
}

impl Verdict {
    pub const ALLOW: Verdict =
        Verdict { action: monitor_common::policy::action::ALLOW, rule_id: monitor_common::policy::NO_RULE };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Fork {
        header: EventHeader,
        child_tgid: u32,
        child_start_time_ns: u64,
    },
    Exec {
        header: EventHeader,
        path: KernelPath,
        argv: Vec<Vec<u8>>,
        ino: u64,
        dev: u32,
        verdict: Verdict,
    },
    Exit {
        header: EventHeader,
        exit_code: u32,
    },
    /// A syscall the profile refuses.
    /// `arg`: what the refusal was about (`socket`: the family), else 0.
    Syscall {
        header: EventHeader,
        nr: u32,
        verdict: Verdict,
        arg: u32,
    },
    FileOpen {
        header: EventHeader,
        syscall: u32,
        open_flags: u32,
        f_mode: u32,
        fd: u32,
        ino: u64,
        dev: u32,
        path: KernelPath,
        verdict: Verdict,
    },
    /// `kind` is `NET_CONNECT`, `NET_SEND` or `NET_BIND`.
    Connect {
        header: EventHeader,
        ret: i32,
        fd: u32,
        addr: SocketAddress,
        verdict: Verdict,
    },
    /// A change to the file tree (`monitor_common::event::file_op`).
    FileChange {
        header: EventHeader,
        op: u32,
        ino: u64,
        dev: u32,
        path: KernelPath,
        verdict: Verdict,
    },
    /// An attempt against the monitor (`monitor_common::event::tamper_op`).
    Tamper {
        header: EventHeader,
        op: u32,
        target_tgid: u32,
        arg: u64,
        verdict: Verdict,
    },
    /// The kernel adopted the process into the new session `header.session_id`
    /// (`monitor_common::adopt`).
    Adopt {
        header: EventHeader,
        selector: u32,
        generation: u32,
        policy_id: u32,
        flags: u32,
    },
}

impl KernelEvent {
    /// What the policy decided, for the events that carry a decision.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            KernelEvent::FileOpen { verdict, .. }
            | KernelEvent::Exec { verdict, .. }
            | KernelEvent::Connect { verdict, .. }
            | KernelEvent::Syscall { verdict, .. }
            | KernelEvent::FileChange { verdict, .. }
            | KernelEvent::Tamper { verdict, .. } => Some(*verdict),
            KernelEvent::Fork { .. } | KernelEvent::Exit { .. } | KernelEvent::Adopt { .. } => None,
        }
    }

    pub fn header(&self) -> &EventHeader {
        match self {
            KernelEvent::Fork { header, .. }
            | KernelEvent::Exec { header, .. }
            | KernelEvent::Exit { header, .. }
            | KernelEvent::Syscall { header, .. }
            | KernelEvent::FileOpen { header, .. }
            | KernelEvent::Connect { header, .. }
            | KernelEvent::FileChange { header, .. }
            | KernelEvent::Tamper { header, .. }
            | KernelEvent::Adopt { header, .. } => header,
        }
    }
}

/// Reads native-endian integers at fixed offsets of a record already checked to be
/// long enough; out-of-range reads return zero rather than panic.
struct Record<'a>(&'a [u8]);

impl Record<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        if let Some(src) = self.0.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(at))
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(at))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(at))
    }
    fn slice(&self, at: usize, len: usize) -> &[u8] {
        self.0.get(at..at.saturating_add(len)).unwrap_or_default()
    }
}

const HEADER_LEN: usize = size_of::<EventHeader>();

fn header(record: &Record) -> EventHeader {
    EventHeader {
        kind: record.u16(0),
        flags: record.u16(2),
        size: record.u32(4),
        time_ns: record.u64(8),
        session_id: record.u64(16),
        tgid: record.u32(24),
        tid: record.u32(28),
        uid: record.u32(32),
        gid: record.u32(36),
        start_time_ns: record.u64(40),
    }
}

fn need(bytes: &[u8], n: usize) -> Result<(), DecodeError> {
    if bytes.len() < n { Err(DecodeError::Short { need: n, got: bytes.len() }) } else { Ok(()) }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    need(bytes, HEADER_LEN)?;
    let record = Record(bytes);
    let header = header(&record);
    // The ring buffer pads records to 8 bytes: the record may be longer than `size`,
    // never shorter.
    let size = header.size as usize;
    if size < HEADER_LEN || size > bytes.len() {
        return Err(DecodeError::SizeMismatch { claimed: size, got: bytes.len() });
    }
    let record = Record(&bytes[..size]);
    match header.kind {
        kind::PROCESS_FORK => {
            need(record.0, size_of::<ForkEvent>())?;
            Ok(KernelEvent::Fork {
                header,
                child_tgid: record.u32(HEADER_LEN),
                child_start_time_ns: record.u64(HEADER_LEN + 8),
            })
        }
        kind::SESSION_ADOPT => {
            need(record.0, size_of::<AdoptEvent>())?;
            Ok(KernelEvent::Adopt {
                header,
                selector: record.u32(HEADER_LEN),
                generation: record.u32(HEADER_LEN + 4),
                policy_id: record.u32(HEADER_LEN + 8),
                flags: record.u32(HEADER_LEN + 12),
            })
        }
        kind::PROCESS_EXIT => {
            need(record.0, size_of::<ExitEvent>())?;
            Ok(KernelEvent::Exit { header, exit_code: record.u32(HEADER_LEN) })
        }
        kind::PROCESS_SYSCALL => {
            need(record.0, size_of::<SyscallEvent>())?;
            Ok(KernelEvent::Syscall {
                header,
                nr: record.u32(HEADER_LEN),
                verdict: Verdict { action: record.u32(HEADER_LEN + 4), rule_id: record.u32(HEADER_LEN + 8) },
                arg: record.u32(HEADER_LEN + 12),
            })
        }
        kind::PROCESS_EXEC => {
            need(record.0, EXEC_PATH_OFFSET)?;
            let path_len = record.u32(HEADER_LEN) as usize;
            let argv_len = record.u32(HEADER_LEN + 4) as usize;
            check_len("exec path", path_len, PATH_BUF_BYTES.min(size - EXEC_PATH_OFFSET))?;
            check_len("exec argv", argv_len, ARGV_MAX_BYTES)?;
            let argv_at = HEADER_LEN + 32;
            Ok(KernelEvent::Exec {
                header,
                ino: record.u64(HEADER_LEN + 8),
                dev: record.u32(HEADER_LEN + 16),
                verdict: Verdict { action: record.u32(HEADER_LEN + 20), rule_id: record.u32(HEADER_LEN + 24) },
                argv: split_argv(record.slice(argv_at, argv_len)),
                path: fs_path(record.slice(EXEC_PATH_OFFSET, path_len)),
            })
        }
        kind::FILE_OPEN => {
            need(record.0, FILE_OPEN_PATH_OFFSET)?;
            let path_len = record.u32(HEADER_LEN + 28) as usize;
            check_len("file path", path_len, PATH_BUF_BYTES.min(size - FILE_OPEN_PATH_OFFSET))?;
            let syscall = record.u32(HEADER_LEN);
            if !(open_syscall::OPEN..=open_syscall::RECEIVE).contains(&syscall) {
                return Err(DecodeError::UnknownSyscall(syscall));
            }
            Ok(KernelEvent::FileOpen {
                header,
                syscall,
                open_flags: record.u32(HEADER_LEN + 4),
                f_mode: record.u32(HEADER_LEN + 8),
                fd: record.u32(HEADER_LEN + 12),
                ino: record.u64(HEADER_LEN + 16),
                dev: record.u32(HEADER_LEN + 24),
                verdict: Verdict { action: record.u32(HEADER_LEN + 32), rule_id: record.u32(HEADER_LEN + 36) },
                path: fs_path(record.slice(FILE_OPEN_PATH_OFFSET, path_len)),
            })
        }
        kind::NET_CONNECT | kind::NET_SEND | kind::NET_BIND => {
            need(record.0, size_of::<ConnectEvent>())?;
            let addr_len = (record.u32(HEADER_LEN + 8) as usize).min(SOCKADDR_MAX_BYTES);
            Ok(KernelEvent::Connect {
                header,
                ret: record.u32(HEADER_LEN) as i32,
                fd: record.u32(HEADER_LEN + 4),
                verdict: Verdict { action: record.u32(HEADER_LEN + 12), rule_id: record.u32(HEADER_LEN + 16) },
                addr: socket_address(record.slice(HEADER_LEN + 24, addr_len)),
            })
        }
        kind::FILE_CHANGE => {
            need(record.0, FILE_CHANGE_PATH_OFFSET)?;
            let op = record.u32(HEADER_LEN);
            if !(file_op::UNLINK..=file_op::SEND).contains(&op) {
                return Err(DecodeError::UnknownOperation { what: "file", op });
            }
            let path_len = record.u32(HEADER_LEN + 24) as usize;
            check_len("file path", path_len, PATH_BUF_BYTES.min(size - FILE_CHANGE_PATH_OFFSET))?;
            Ok(KernelEvent::FileChange {
                header,
                op,
                verdict: Verdict { action: record.u32(HEADER_LEN + 4), rule_id: record.u32(HEADER_LEN + 8) },
                dev: record.u32(HEADER_LEN + 12),
                ino: record.u64(HEADER_LEN + 16),
                path: fs_path(record.slice(FILE_CHANGE_PATH_OFFSET, path_len)),
            })
        }
        kind::PROCESS_TAMPER => {
            need(record.0, size_of::<TamperEvent>())?;
            let op = record.u32(HEADER_LEN);
            if !(tamper_op::SIGNAL..=tamper_op::LAST).contains(&op) {
                return Err(DecodeError::UnknownOperation { what: "tamper", op });
            }
            Ok(KernelEvent::Tamper {
                header,
                op,
                target_tgid: record.u32(HEADER_LEN + 4),
                arg: record.u64(HEADER_LEN + 8),
                verdict: Verdict { action: record.u32(HEADER_LEN + 16), rule_id: record.u32(HEADER_LEN + 20) },
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max { Err(DecodeError::BadLength { field, len, max }) } else { Ok(()) }
}

/// Paths arrive root first with every component followed by `/`
/// (see `monitor_common::event`): `/etc/hostname/` is `/etc/hostname`.
pub fn fs_path(raw: &[u8]) -> KernelPath {
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    let bytes = if trimmed.is_empty() { b"/".to_vec() } else { trimmed.to_vec() };
    KernelPath { bytes }
}

fn split_argv(raw: &[u8]) -> Vec<Vec<u8>> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

const AF_UNIX: u16 = libc::AF_UNIX as u16;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Interprets a `struct sockaddr_*` (family in native order, port in network order).
pub fn socket_address(raw: &[u8]) -> SocketAddress {
    let record = Record(raw);
    let family = if raw.len() >= 2 { record.u16(0) } else { 0 };
    let port = u16::from_be_bytes(record.bytes(2));
    match family {
        AF_INET if raw.len() >= 8 => SocketAddress::Inet { addr: Ipv4Addr::from(record.bytes::<4>(4)), port },
        AF_INET6 if raw.len() >= 24 => SocketAddress::Inet6 {
            addr: Ipv6Addr::from(record.bytes::<16>(8)),
            port,
            scope_id: if raw.len() >= 28 { record.u32(24) } else { 0 },
        },
        AF_UNIX => {
            let path = raw.get(2..).unwrap_or_default();
            let abstract_name = path.first() == Some(&0) && path.len() > 1;
            let path = if abstract_name {
                path[1..].to_vec()
            } else {
                path.split(|&b| b == 0).next().unwrap_or_default().to_vec()
            };
            SocketAddress::Unix { path, abstract_name }
        }
        family => SocketAddress::Other { family },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(kind: u16, size: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&size.to_ne_bytes());
        out.extend_from_slice(&123u64.to_ne_bytes()); // time
        out.extend_from_slice(&7u64.to_ne_bytes()); // session
        out.extend_from_slice(&100u32.to_ne_bytes()); // tgid
        out.extend_from_slice(&101u32.to_ne_bytes()); // tid
        out.extend_from_slice(&1000u32.to_ne_bytes()); // uid
        out.extend_from_slice(&1001u32.to_ne_bytes()); // gid
        out.extend_from_slice(&55u64.to_ne_bytes()); // start
        out
    }

    fn file_open(path: &[u8]) -> Vec<u8> {
        let mut out = header_bytes(kind::FILE_OPEN, (FILE_OPEN_PATH_OFFSET + path.len()) as u32);
        for v in [2u32, 0o2, 0x1f, 3] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&42u64.to_ne_bytes());
        out.extend_from_slice(&8u32.to_ne_bytes());
        out.extend_from_slice(&(path.len() as u32).to_ne_bytes());
        out.extend_from_slice(&2u32.to_ne_bytes()); // action: kill
        out.extend_from_slice(&5u32.to_ne_bytes()); // rule id
        out.extend_from_slice(path);
        out
    }

    #[test]
    fn decodes_a_file_open() {
        let event = decode(&file_open(b"/etc/hostname/")).unwrap();
        let KernelEvent::FileOpen { header, syscall, open_flags, fd, ino, dev, path, verdict, .. } = event else {
            panic!("wrong kind");
        };
        assert_eq!(verdict, Verdict { action: 2, rule_id: 5 });
        assert_eq!((header.tgid, header.tid, header.uid, header.session_id), (100, 101, 1000, 7));
        assert_eq!((syscall, open_flags, fd, ino, dev), (2, 0o2, 3, 42, 8));
        assert_eq!(path.bytes, b"/etc/hostname");
    }

    fn file_change(op: u32, path: &[u8]) -> Vec<u8> {
        let mut out = header_bytes(kind::FILE_CHANGE, (FILE_CHANGE_PATH_OFFSET + path.len()) as u32);
        for v in [op, 3 /* deny */, 9 /* rule */, 8 /* dev */] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&77u64.to_ne_bytes());
        out.extend_from_slice(&(path.len() as u32).to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(path);
        out
    }

    #[test]
    fn decodes_a_file_change_and_rejects_unknown_operations() {
        let event = decode(&file_change(file_op::UNLINK, b"/etc/passwd/")).unwrap();
        let KernelEvent::FileChange { op, ino, dev, path, verdict, .. } = event else { panic!("wrong kind") };
        assert_eq!((op, ino, dev), (file_op::UNLINK, 77, 8));
        assert_eq!(verdict, Verdict { action: 3, rule_id: 9 });
        assert_eq!(path.bytes, b"/etc/passwd");
        assert!(matches!(decode(&file_change(0, b"/x/")), Err(DecodeError::UnknownOperation { .. })));
        assert!(matches!(decode(&file_change(99, b"/x/")), Err(DecodeError::UnknownOperation { .. })));
        let good = file_change(file_op::RENAME_TO, b"/a/b/");
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "{len} bytes decoded");
        }
    }

    #[test]
    fn decodes_a_tamper_attempt() {
        let mut bytes = header_bytes(kind::PROCESS_TAMPER, size_of::<TamperEvent>() as u32);
        for v in [tamper_op::SIGNAL, 4242] {
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        bytes.extend_from_slice(&9u64.to_ne_bytes());
        for v in [3u32, u32::MAX - 7] {
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        let KernelEvent::Tamper { op, target_tgid, arg, verdict, .. } = decode(&bytes).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!((op, target_tgid, arg), (tamper_op::SIGNAL, 4242, 9));
        assert_eq!(verdict, Verdict { action: 3, rule_id: u32::MAX - 7 });
    }

    #[test]
    fn paths_lose_their_final_slash() {
        assert_eq!(fs_path(b"/").bytes, b"/");
        assert_eq!(fs_path(b"").bytes, b"/");
        assert_eq!(fs_path(b"/etc/").bytes, b"/etc");
        assert_eq!(fs_path(b"/a/b/c/").bytes, b"/a/b/c");
    }

    #[test]
    fn ring_buffer_padding_is_accepted() {
        let mut bytes = file_open(b"/x/");
        bytes.extend_from_slice(&[0; 6]);
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn rejects_truncated_records_at_every_length() {
        let good = file_open(b"/etc/hostname/");
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "{len} bytes decoded");
        }
    }

    #[test]
    fn rejects_unknown_kinds_and_bad_sizes() {
        assert_eq!(decode(&header_bytes(999, 48)), Err(DecodeError::UnknownKind(999)));
        assert!(matches!(decode(&header_bytes(kind::PROCESS_FORK, 48)), Err(DecodeError::Short { .. })));
        assert!(matches!(decode(&header_bytes(kind::PROCESS_EXIT, 4)), Err(DecodeError::SizeMismatch { .. })));
        assert!(matches!(decode(&header_bytes(kind::PROCESS_EXIT, 4096)), Err(DecodeError::SizeMismatch { .. })));
        let mut bad_len = file_open(b"/x/");
        let at = HEADER_LEN + 28;
        bad_len[at..at + 4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(matches!(decode(&bad_len), Err(DecodeError::BadLength { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic pseudo-random sweep over kinds, sizes and contents.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let kinds = [0u16, 1, 2, 3, 4, 5, 100, 101, 200, 201, 202, 65535];
        for _ in 0..20_000 {
            let len = (next() % 9000) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 8 {
                let k = kinds[(next() % kinds.len() as u64) as usize];
                bytes[0..2].copy_from_slice(&k.to_ne_bytes());
                let size = (next() % (len as u64 + 1)) as u32;
                bytes[4..8].copy_from_slice(&size.to_ne_bytes());
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn decodes_socket_addresses() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(socket_address(&v4), SocketAddress::Inet { addr: Ipv4Addr::LOCALHOST, port: 8080 });

        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"::ffff:10.1.2.3".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            socket_address(&v6),
            SocketAddress::Inet6 { addr: "::ffff:10.1.2.3".parse().unwrap(), port: 443, scope_id: 0 }
        );

        let mut unix = AF_UNIX.to_ne_bytes().to_vec();
        unix.extend_from_slice(b"/run/x.sock\0junk");
        assert_eq!(socket_address(&unix), SocketAddress::Unix { path: b"/run/x.sock".to_vec(), abstract_name: false });
        let mut abs = AF_UNIX.to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(socket_address(&abs), SocketAddress::Unix { path: b"name".to_vec(), abstract_name: true });

        assert_eq!(socket_address(&v4[..5]), SocketAddress::Other { family: AF_INET });
        assert_eq!(socket_address(&[]), SocketAddress::Other { family: 0 });
    }

    #[test]
    fn splits_argv() {
        assert_eq!(split_argv(b"cat\0/etc/hostname\0"), vec![b"cat".to_vec(), b"/etc/hostname".to_vec()]);
        assert_eq!(split_argv(b""), Vec::<Vec<u8>>::new());
        assert_eq!(split_argv(b"a\0\0b\0"), vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]);
    }
}
