//! Writes adoption tables into the kernel: the inactive generation is cleared and
//! filled, then `ADOPT_ACTIVE` switches to it in one write.

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use monitor_common::adopt::{
    ADOPT_ACTIVE, ADOPT_CGROUP_NAMES, ADOPT_CONFIG, ADOPT_FILES, ADOPT_IDS, ADOPT_SELECTORS, ADOPT_USERS, AdoptConfig,
    AdoptSelector, CGROUP_NAME_BYTES, FileKey, IdKey, MAX_SELECTORS, NameKey,
};

use super::adoption::Tables;
use crate::loader::LoadError;

pub struct AdoptMaps {
    active: Array<MapData, u32>,
    config: Array<MapData, AdoptConfig>,
    selectors: Array<MapData, AdoptSelector>,
    files: HashMap<MapData, FileKey, u64>,
    ids: HashMap<MapData, IdKey, u64>,
    users: HashMap<MapData, IdKey, AdoptSelector>,
    names: HashMap<MapData, NameKey, u64>,
    generation: u32,
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

impl AdoptMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<AdoptMaps, LoadError> {
        Ok(AdoptMaps {
            active: take(ebpf, ADOPT_ACTIVE)?,
            config: take(ebpf, ADOPT_CONFIG)?,
            selectors: take(ebpf, ADOPT_SELECTORS)?,
            files: take(ebpf, ADOPT_FILES)?,
            ids: take(ebpf, ADOPT_IDS)?,
            users: take(ebpf, ADOPT_USERS)?,
            names: take(ebpf, ADOPT_CGROUP_NAMES)?,
            generation: 0,
        })
    }

    /// Generation in force (whose selectors the kernel reports in adoption records).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Makes `tables` the ones in force. On error, the previous generation stays active.
    pub fn install(&mut self, tables: &Tables) -> Result<(), MapError> {
        let next = 1 - self.generation;
        self.clear(next)?;
        for (&(field, dev, ino), &mask) in &tables.files {
            self.files.insert(FileKey { generation: next, field, ino, dev, _pad: 0 }, mask, 0)?;
        }
        for (&(field, id), &mask) in &tables.ids {
            self.ids.insert(IdKey { generation: next, field, id }, mask, 0)?;
        }
        for (&(kind, ref name), &mask) in &tables.names {
            let mut key = NameKey { generation: next, kind, name: [0; CGROUP_NAME_BYTES] };
            key.name[..name.len()].copy_from_slice(name.as_bytes());
            self.names.insert(key, mask, 0)?;
        }
        for &(selector, uid, session) in &tables.users {
            self.users.insert(IdKey { generation: next, field: selector, id: uid as u64 }, session, 0)?;
        }
        for (i, selector) in tables.selectors.iter().enumerate() {
            self.selectors.set(next * MAX_SELECTORS + i as u32, selector, 0)?;
        }
        self.config.set(next, tables.config, 0)?;
        self.active.set(0, next, 0)?;
        self.generation = next;
        Ok(())
    }

    /// Turns adoption off (before the daemon stops: no new session nobody handles).
    pub fn disable(&mut self) -> Result<(), MapError> {
        self.config.set(self.generation, AdoptConfig::default(), 0)
    }

    fn clear(&mut self, generation: u32) -> Result<(), MapError> {
        self.config.set(generation, AdoptConfig::default(), 0)?;
        let files: Vec<FileKey> =
            self.files.keys().filter_map(Result::ok).filter(|k| k.generation == generation).collect();
        for key in files {
            self.files.remove(&key)?;
        }
        let ids: Vec<IdKey> = self.ids.keys().filter_map(Result::ok).filter(|k| k.generation == generation).collect();
        for key in ids {
            self.ids.remove(&key)?;
        }
        let users: Vec<IdKey> =
            self.users.keys().filter_map(Result::ok).filter(|k| k.generation == generation).collect();
        for key in users {
            self.users.remove(&key)?;
        }
        let names: Vec<NameKey> =
            self.names.keys().filter_map(Result::ok).filter(|k| k.generation == generation).collect();
        for key in names {
            self.names.remove(&key)?;
        }
        Ok(())
    }
}
