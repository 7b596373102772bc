//! The kernel's session membership map, as userspace writes it.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError};
use monitor_common::session::SessionMember;

pub struct SessionMap {
    map: HashMap<MapData, u32, SessionMember>,
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

/// Adds `tgid` to the session with one raw `bpf()` call: no allocation, no lock, so it
/// is safe between fork and exec (see `launcher.rs`).
pub fn register_raw(map_fd: RawFd, tgid: u32, member: &SessionMember) -> std::io::Result<()> {
    let attr = MapUpdateAttr {
        map_fd: map_fd as u32,
        _pad: 0,
        key: &tgid as *const u32 as u64,
        value: member as *const SessionMember as u64,
        flags: BPF_ANY,
    };
    // SAFETY: attr and the key/value it points to live across the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr as *const MapUpdateAttr, size_of::<MapUpdateAttr>())
    };
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

impl SessionMap {
    pub fn new(map: Map) -> Result<SessionMap, MapError> {
        Ok(SessionMap { map: HashMap::try_from(map)? })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.map.map().fd().as_fd().as_raw_fd()
    }

    /// The same kernel map through another descriptor (the daemon's control thread).
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<SessionMap, MapError> {
        SessionMap::new(Map::HashMap(aya::maps::MapData::from_fd(fd)?))
    }

    /// A second descriptor of the map (handed to `run` clients of the daemon).
    pub fn map_fd_dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.map.map().fd().as_fd().try_clone_to_owned()
    }

    pub fn contains(&self, tgid: u32) -> bool {
        self.map.get(&tgid, 0).is_ok()
    }

    pub fn member(&self, tgid: u32) -> Option<SessionMember> {
        self.map.get(&tgid, 0).ok()
    }

    /// Adds or changes `tgid`'s entry.
    pub fn set(&mut self, tgid: u32, member: &SessionMember) -> Result<(), MapError> {
        self.map.insert(tgid, member, 0)
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
            .iter().filter_map(Result::ok).filter(|(_, m)| m.session_id == session_id).map(|(k, _)| k).collect();
        pids.sort_unstable();
        pids
    }
}
