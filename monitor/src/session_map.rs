//! The kernel's session membership, as userspace writes it: the `SESSIONS` map and
//! the `MEMBER_BITS` filter in front of it, whose bit for a tgid is set before its entry.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
};

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError};
use monitor_common::session::SessionMember;

use crate::{member_bits::MemberBits, running_process::RunningProcess};

#[derive(Debug, thiserror::Error)]
pub enum SessionMapError {
    #[error("map SESSIONS: {0}")]
    Sessions(#[from] MapError),
    #[error(
        "setting a bit of MEMBER_BITS through a mapping of it: {0}; the kernel needs mmap-able BPF array maps (Linux >= 5.5)"
    )]
    MemberBits(#[source] io::Error),
    #[error("map MEMBER_BITS is not an array (build mismatch)")]
    MemberBitsType,
    #[error("duplicating the MEMBER_BITS descriptor: {0}")]
    Descriptor(#[source] io::Error),
}

pub struct SessionMap {
    map: HashMap<MapData, u32, SessionMember>,
    bits_fd: OwnedFd,
}

/// What `SessionMap::adopt` does with a process already in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Leave it there (the kernel may have adopted it meanwhile, at an exec).
    Keep,
    /// Move it into this session.
    Replace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    Adopted,
    /// It had begun to exit: no entry was left.
    Gone,
    /// It was in a session already, and `Existing::Keep` left it there.
    AlreadyMember,
}

/// Descriptors of both maps, as the daemon hands them to its threads and its clients.
pub struct SessionMapFds {
    pub sessions: OwnedFd,
    pub member_bits: OwnedFd,
}

impl SessionMapFds {
    pub fn try_clone(&self) -> io::Result<SessionMapFds> {
        Ok(SessionMapFds { sessions: self.sessions.try_clone()?, member_bits: self.member_bits.try_clone()? })
    }
}

/// What a session's first process needs to add itself between fork and exec (see
/// `launcher.rs`). It borrows the `SESSIONS` descriptor it was made from.
#[derive(Clone, Copy)]
pub struct Registrar {
    map_fd: RawFd,
    bits: MemberBits,
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_ANY: u64 = 0;

/// `union bpf_attr` as BPF_MAP_UPDATE_ELEM reads it.
#[repr(C)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl Registrar {
    /// From descriptors received from the daemon, which must outlive the registrar.
    pub fn from_fds(fds: &SessionMapFds) -> Registrar {
        Registrar { map_fd: fds.sessions.as_raw_fd(), bits: MemberBits::new(fds.member_bits.as_fd()) }
    }

    /// Adds `tgid` to the session: its bit, then its entry with one raw `bpf()` call. No
    /// allocation, no lock: safe between fork and exec.
    pub fn register(&self, tgid: u32, member: &SessionMember) -> io::Result<()> {
        self.bits.mark(tgid)?;
        let attr = MapUpdateAttr {
            map_fd: self.map_fd as u32,
            _pad: 0,
            key: &tgid as *const u32 as u64,
            value: member as *const SessionMember as u64,
            flags: BPF_ANY,
        };
        // SAFETY: attr and the key/value it points to live across the call.
        let ret = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr as *const MapUpdateAttr, size_of::<MapUpdateAttr>())
        };
        if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

impl SessionMap {
    /// The loaded `SESSIONS` and `MEMBER_BITS` maps.
    pub fn new(sessions: Map, member_bits: &Map) -> Result<SessionMap, SessionMapError> {
        let Map::Array(bits_data) = member_bits else {
            return Err(SessionMapError::MemberBitsType);
        };
        let bits_fd = bits_data.fd().as_fd().try_clone_to_owned().map_err(SessionMapError::Descriptor)?;
        Ok(SessionMap { map: HashMap::try_from(sessions)?, bits_fd })
    }

    /// The same kernel maps through other descriptors (the daemon's threads).
    pub fn from_fds(fds: SessionMapFds) -> Result<SessionMap, SessionMapError> {
        let map = HashMap::try_from(Map::HashMap(MapData::from_fd(fds.sessions)?))?;
        Ok(SessionMap { map, bits_fd: fds.member_bits })
    }

    /// Second descriptors of both maps (for the daemon's threads and `run` clients).
    pub fn fds_dup(&self) -> io::Result<SessionMapFds> {
        Ok(SessionMapFds {
            sessions: self.map.map().fd().as_fd().try_clone_to_owned()?,
            member_bits: self.bits_fd.try_clone()?,
        })
    }

    /// Registers through this map's own descriptors, which must outlive the registrar.
    pub fn registrar(&self) -> Registrar {
        Registrar { map_fd: self.map.map().fd().as_fd().as_raw_fd(), bits: MemberBits::new(self.bits_fd.as_fd()) }
    }

    pub fn contains(&self, tgid: u32) -> bool {
        self.map.get(&tgid, 0).is_ok()
    }

    pub fn member(&self, tgid: u32) -> Option<SessionMember> {
        self.map.get(&tgid, 0).ok()
    }

    /// Changes `tgid`'s entry if it still has one: a process that exited meanwhile stays
    /// gone (the kernel removed its entry), rather than leaving an entry its tgid's next
    /// owner would inherit. An existing entry's bit is already set.
    pub fn update_existing(&mut self, tgid: u32, member: &SessionMember) -> Result<(), MapError> {
        const BPF_EXIST: u64 = 2;
        self.map.insert(tgid, member, BPF_EXIST)
    }

    /// Adds a process that was already running, its bit first. Its entry is keyed by
    /// pid, so it is kept only if the process had not begun to exit once it was written
    /// (its exit then removes it, in the kernel). Otherwise the entry is taken back,
    /// unless it is no longer the one written.
    pub fn adopt(
        &mut self,
        process: &RunningProcess,
        member: &SessionMember,
        existing: Existing,
    ) -> Result<Adoption, SessionMapError> {
        const BPF_ANY: u64 = 0;
        const BPF_NOEXIST: u64 = 1;
        let pid = process.pid();
        MemberBits::new(self.bits_fd.as_fd()).mark(pid).map_err(SessionMapError::MemberBits)?;
        let flags = match existing {
            Existing::Keep => BPF_NOEXIST,
            Existing::Replace => BPF_ANY,
        };
        match self.map.insert(pid, member, flags) {
            Ok(()) => {}
            Err(MapError::SyscallError(error)) if error.io_error.raw_os_error() == Some(libc::EEXIST) => {
                return Ok(Adoption::AlreadyMember);
            }
            Err(error) => return Err(error.into()),
        }
        if process.alive() {
            return Ok(Adoption::Adopted);
        }
        self.remove_entry(pid, member);
        Ok(Adoption::Gone)
    }

    /// Removes `tgid`'s entry if it is still `member`. (Its bit stays: a stale bit costs
    /// a lookup, never a verdict.)
    pub fn remove_entry(&mut self, tgid: u32, member: &SessionMember) {
        if self.member(tgid) == Some(*member) {
            let _ = self.map.remove(&tgid);
        }
    }

    /// Every (tgid, entry) of `session_id`.
    pub fn entries(&self, session_id: u64) -> Vec<(u32, SessionMember)> {
        self.map.iter().filter_map(Result::ok).filter(|(_, m)| m.session_id == session_id).collect()
    }

    /// Sessions with at least one process, in one walk of the map.
    pub fn populated(&self) -> std::collections::HashSet<u64> {
        self.map.iter().filter_map(Result::ok).map(|(_, m)| m.session_id).collect()
    }

    /// Every tgid currently in `session_id`.
    pub fn members(&self, session_id: u64) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .map
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, m)| m.session_id == session_id)
            .map(|(k, _)| k)
            .collect();
        pids.sort_unstable();
        pids
    }
}

#[cfg(test)]
mod tests {
    use std::{
        process::Command,
        time::{Duration, Instant},
    };

    use monitor_common::maps::{BPF_F_MMAPABLE, MEMBER_BITS_WORDS};

    use super::*;
    use crate::{
        running_process,
        test_maps::{self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH},
    };

    fn session_map() -> Option<(SessionMap, OwnedFd)> {
        let sessions = test_maps::create(BPF_MAP_TYPE_HASH, 4, size_of::<SessionMember>() as u32, 64, 0)?;
        let member_bits = test_maps::create(BPF_MAP_TYPE_ARRAY, 4, 8, MEMBER_BITS_WORDS, BPF_F_MMAPABLE)?;
        let kernel_view = sessions.try_clone().unwrap();
        Some((SessionMap::from_fds(SessionMapFds { sessions, member_bits }).unwrap(), kernel_view))
    }

    fn kernel_entry(map: &OwnedFd, tgid: u32) -> Option<SessionMember> {
        let raw: Option<[u64; 2]> = test_maps::lookup(map, &tgid);
        // SAFETY: SessionMember is 16 bytes of integers, without padding.
        raw.map(|raw| unsafe { std::mem::transmute::<[u64; 2], SessionMember>(raw) })
    }

    #[test]
    fn a_running_process_keeps_its_entry_and_one_that_exited_leaves_none() {
        let Some((mut map, kernel_view)) = session_map() else { return };
        let member = SessionMember { session_id: 0x5e55, policy_id: 3, flags: 1 };
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let process = RunningProcess::hold(pid, Some(running_process::process_stat(pid).unwrap().start)).unwrap();
        assert_eq!(map.adopt(&process, &member, Existing::Keep).unwrap(), Adoption::Adopted);
        assert_eq!(kernel_entry(&kernel_view, pid), Some(member));
        let other = SessionMember { session_id: 0x07e5, ..member };
        assert_eq!(map.adopt(&process, &other, Existing::Keep).unwrap(), Adoption::AlreadyMember);
        assert_eq!(kernel_entry(&kernel_view, pid), Some(member), "kept");
        assert_eq!(map.adopt(&process, &other, Existing::Replace).unwrap(), Adoption::Adopted);
        assert_eq!(kernel_entry(&kernel_view, pid), Some(other), "replaced");

        // It exits (no kernel program here removes the entry); written again, the
        // entry is taken back.
        map.map.remove(&pid).unwrap();
        child.kill().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while process.alive() {
            assert!(Instant::now() < deadline, "alive after SIGKILL");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(map.adopt(&process, &member, Existing::Keep).unwrap(), Adoption::Gone);
        assert_eq!(kernel_entry(&kernel_view, pid), None);
        child.wait().unwrap();
    }
}
