//! The maps userspace takes out of the loaded object: one generic accessor, and the
//! rule maps the policy is written into.

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, MapError},
};
use monitor_common::{maps, policy::ProtectedInode};

use super::LoadError;
use crate::rule_maps::RuleMaps;

/// Takes the map `name` out of `ebpf` as a `T` (a ring buffer, an array, a hash map...):
/// the map lives as long as the `T`.
pub fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// The map `name` in `ebpf`, borrowed as a `T` (programs loaded later still refer to it).
pub fn borrow_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<&'a mut Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// The maps a policy is written into.
pub fn rule_maps(ebpf: &mut Ebpf) -> Result<RuleMaps, LoadError> {
    Ok(RuleMaps {
        files: take(ebpf, maps::FILE_RULES)?,
        exec: take(ebpf, maps::EXEC_RULES)?,
        names: take(ebpf, maps::NAME_RULES)?,
        net: take(ebpf, maps::NET_RULES)?,
        principals: take(ebpf, maps::PRINCIPALS)?,
        principal_groups: take(ebpf, maps::PRINCIPAL_GROUP_SET)?,
        denied_inodes: take(ebpf, maps::DENIED_INODES)?,
        families: take(ebpf, maps::POLICY_FAMILIES)?,
    })
}

/// Records the host's dynamic loaders (`crate::loaders`) for the exec hooks. The map
/// stays in `ebpf`: programs loaded later (`Probes::verify_unused`) refer to it by its
/// descriptor.
pub fn record_loaders(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let mut loaders: HashMap<&mut MapData, ProtectedInode, u8> = borrow_mut(ebpf, maps::LOADER_INODES)?;
    for (dev, ino) in crate::loaders::identities() {
        loaders
            .insert(ProtectedInode { dev, _pad: 0, ino }, 1, 0)
            .map_err(|source| LoadError::Map { name: maps::LOADER_INODES, source })?;
    }
    Ok(())
}
