//! Writes a compiled profile into the kernel's rule maps under a policy id.

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, IterableMap as _, LpmTrie, MapData, MapError, lpm_trie::Key};
use monitor_common::policy::{InodeKey, NAME_KEY_BYTES, NameKey, PATH_KEY_BYTES, Principal, RuleValue};

use crate::policy::compile::{Compiled, Entry};

type PathTrie = LpmTrie<MapData, [u8; 8 + PATH_KEY_BYTES], RuleValue>;

pub struct RuleMaps {
    pub files: PathTrie,
    pub exec: PathTrie,
    pub names: HashMap<MapData, NameKey, RuleValue>,
    pub net: LpmTrie<MapData, [u8; 24], RuleValue>,
    pub principals: HashMap<MapData, u32, Principal>,
    pub principal_groups: HashMap<MapData, [u32; 2], u8>,
    pub denied_inodes: HashMap<MapData, InodeKey, RuleValue>,
    pub families: HashMap<MapData, u32, u64>,
}

fn key(policy: u32, entry: &Entry) -> Key<[u8; 8 + PATH_KEY_BYTES]> {
    let mut data = [0u8; 8 + PATH_KEY_BYTES];
    data[..4].copy_from_slice(&policy.to_ne_bytes());
    data[4..8].copy_from_slice(&entry.dev.to_ne_bytes());
    data[8..8 + entry.key.len()].copy_from_slice(&entry.key);
    Key::new(64 + 8 * entry.key.len() as u32, data)
}

impl RuleMaps {
    /// The network rule table through a second descriptor (for `host_refresh`).
    pub fn net_handle(&self) -> Result<LpmTrie<MapData, [u8; 24], RuleValue>, MapError> {
        let fd = self.net.map().fd().as_fd().try_clone_to_owned().map_err(MapError::IoError)?;
        LpmTrie::try_from(aya::maps::Map::LpmTrie(MapData::from_fd(fd)?))
    }

    /// Records the user policy `policy` acts for (before any session refers to it).
    pub fn install_principal(&mut self, policy: u32, principal: &Principal) -> Result<(), MapError> {
        for &gid in &principal.groups[..principal.ngroups as usize] {
            self.principal_groups.insert([policy, gid], 1, 0)?;
        }
        self.principals.insert(policy, principal, 0)
    }

    /// Removes every entry of policy `policy` (once no session refers to it).
    pub fn remove_policy(&mut self, policy: u32) -> Result<(), MapError> {
        let ours = |data: &[u8]| data[..4] == policy.to_ne_bytes();
        let files: Vec<_> = self.files.keys().filter_map(Result::ok).filter(|k| ours(&k.data())).collect();
        for key in files {
            self.files.remove(&key)?;
        }
        let exec: Vec<_> = self.exec.keys().filter_map(Result::ok).filter(|k| ours(&k.data())).collect();
        for key in exec {
            self.exec.remove(&key)?;
        }
        let net: Vec<_> = self.net.keys().filter_map(Result::ok).filter(|k| ours(&k.data())).collect();
        for key in net {
            self.net.remove(&key)?;
        }
        let names: Vec<_> = self.names.keys().filter_map(Result::ok).filter(|k| k.policy == policy).collect();
        for key in names {
            self.names.remove(&key)?;
        }
        let inodes: Vec<_> = self.denied_inodes.keys().filter_map(Result::ok).filter(|k| k.policy == policy).collect();
        for key in inodes {
            self.denied_inodes.remove(&key)?;
        }
        let groups: Vec<_> = self.principal_groups.keys().filter_map(Result::ok).filter(|k| k[0] == policy).collect();
        for key in groups {
            self.principal_groups.remove(&key)?;
        }
        if self.principals.get(&policy, 0).is_ok() {
            self.principals.remove(&policy)?;
        }
        if self.families.get(&policy, 0).is_ok() {
            self.families.remove(&policy)?;
        }
        Ok(())
    }

    /// Installs `compiled` as policy `policy`. Entries are written before any session
    /// refers to the id, so a session never sees a half-written table.
    pub fn install(&mut self, policy: u32, compiled: &Compiled) -> Result<(), MapError> {
        for entry in &compiled.files {
            self.files.insert(&key(policy, entry), entry.value, 0)?;
        }
        for entry in &compiled.exec {
            self.exec.insert(&key(policy, entry), entry.value, 0)?;
        }
        for entry in &compiled.net {
            let mut data = [0u8; 24];
            data[..4].copy_from_slice(&policy.to_ne_bytes());
            data[4..6].copy_from_slice(&entry.op.to_ne_bytes());
            data[6..8].copy_from_slice(&entry.port.to_ne_bytes());
            data[8..].copy_from_slice(&entry.addr);
            self.net.insert(&Key::new(64 + entry.prefix as u32, data), entry.value, 0)?;
        }
        for &(dev, ino, value) in &compiled.denied_inodes {
            self.denied_inodes.insert(InodeKey { policy, dev, ino }, value, 0)?;
        }
        for (name, value) in &compiled.names {
            let mut key = NameKey { policy, name: [0; NAME_KEY_BYTES] };
            key.name[..name.len()].copy_from_slice(name.as_bytes());
            self.names.insert(key, value, 0)?;
        }
        if compiled.families != 0 {
            self.families.insert(policy, compiled.families, 0)?;
        }
        Ok(())
    }
}
