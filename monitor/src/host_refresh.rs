//! Network entries that name hosts follow the host's addresses while the session runs:
//! the names are resolved again every `REFRESH_EVERY` (the system resolver does not
//! expose DNS TTLs, so a fixed interval short enough for common TTLs stands in), and
//! the kernel's table gains the new addresses and loses the ones that went away.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use monitor_common::policy::{RuleValue, allow};

use crate::policy::model::{ConnectRule, ConnectTarget};

pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// One host entry of a profile, with the addresses last known for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub op: u16,
    pub port: u16,
    pub rule_id: u32,
    pub installed: BTreeSet<IpAddr>,
}

/// One key of the network table for a single address: (op, port, address).
pub type Slot = (u16, u16, IpAddr);

/// A policy's host entries, and the single addresses its other rules hold (never
/// touched here: an address named outright stays allowed whatever a host resolves to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowedHosts {
    pub entries: Vec<HostEntry>,
    pub fixed: BTreeSet<Slot>,
}

impl FollowedHosts {
    /// The slots the host entries want now, each with the first entry's rule id.
    fn wanted(&self) -> BTreeMap<Slot, u32> {
        let mut wanted = BTreeMap::new();
        for entry in &self.entries {
            for &addr in &entry.installed {
                let slot = (entry.op, entry.port, addr.to_canonical());
                if !self.fixed.contains(&slot) {
                    wanted.entry(slot).or_insert(entry.rule_id);
                }
            }
        }
        wanted
    }
}

/// What to write and remove to go from the slots `held` to those `wanted`: a slot
/// two entries share is removed only once neither wants it.
pub fn plan(held: &BTreeMap<Slot, u32>, wanted: &BTreeMap<Slot, u32>) -> (Vec<(Slot, u32)>, Vec<Slot>) {
    let write = wanted.iter().filter(|(slot, rule)| held.get(slot) != Some(rule)).map(|(s, r)| (*s, *r)).collect();
    let remove = held.keys().filter(|slot| !wanted.contains_key(slot)).copied().collect();
    (write, remove)
}

/// Host entries of a compiled profile: `rules` are (rule id, op, rule) in rule-id order;
/// `installed(rule_id)` gives the addresses the compile wrote for a rule (so that what
/// a later lookup no longer returns is removed, not what a second lookup returned).
pub fn host_entries<'a>(
    rules: impl IntoIterator<Item = (u32, u16, &'a ConnectRule)>,
    installed: &dyn Fn(u32) -> BTreeSet<IpAddr>,
) -> Vec<HostEntry> {
    rules
        .into_iter()
        .filter_map(|(rule_id, op, rule)| match &rule.target {
            ConnectTarget::Host(host) => Some(HostEntry {
                host: host.clone(),
                op,
                port: rule.port.unwrap_or(0),
                rule_id,
                installed: installed(rule_id),
            }),
            ConnectTarget::Network { .. } => None,
        })
        .collect()
}

fn key(policy: u32, (op, port, addr): Slot) -> Key<[u8; 24]> {
    let bytes = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut data = [0u8; 24];
    data[..4].copy_from_slice(&policy.to_ne_bytes());
    data[4..6].copy_from_slice(&op.to_ne_bytes());
    data[6..8].copy_from_slice(&port.to_ne_bytes());
    data[8..].copy_from_slice(&bytes);
    Key::new(64 + 128, data)
}

/// A followed policy, with the slots written for its host entries.
struct Followed {
    hosts: FollowedHosts,
    held: BTreeMap<Slot, u32>,
}

/// Follows the host names of every policy given to it, on one thread of its own (a
/// lookup can take seconds), until dropped. Each name is looked up once per round,
/// however many policies name it.
pub struct HostFollower {
    policies: Arc<Mutex<BTreeMap<u32, Followed>>>,
    stop: Arc<AtomicBool>,
}

type NetTrie = LpmTrie<MapData, [u8; 24], RuleValue>;

impl HostFollower {
    pub fn spawn(trie: NetTrie, resolve: fn(&str) -> Vec<IpAddr>) -> std::io::Result<HostFollower> {
        let policies: Arc<Mutex<BTreeMap<u32, Followed>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (followed, stopped) = (policies.clone(), stop.clone());
        std::thread::Builder::new().name("host-refresh".into()).spawn(move || {
            let mut trie = trie;
            loop {
                std::thread::sleep(REFRESH_EVERY);
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let names: BTreeSet<String> = followed
                    .lock()
                    .expect("host entries")
                    .values()
                    .flat_map(|f| f.hosts.entries.iter().map(|entry| entry.host.clone()))
                    .collect();
                let resolved: BTreeMap<String, BTreeSet<IpAddr>> = names
                    .into_iter()
                    .map(|name| {
                        let addresses = resolve(&name).into_iter().map(|a| a.to_canonical()).collect();
                        (name, addresses)
                    })
                    .collect();
                // Under the lock: once `forget` returns, nothing more is written for
                // that policy.
                let mut policies = followed.lock().expect("host entries");
                for (&policy, followed) in policies.iter_mut() {
                    for entry in &mut followed.hosts.entries {
                        // A failed lookup keeps what was known.
                        if let Some(now) = resolved.get(&entry.host).filter(|now| !now.is_empty()) {
                            entry.installed = now.clone();
                        }
                    }
                    let wanted = followed.hosts.wanted();
                    let (write, remove) = plan(&followed.held, &wanted);
                    for (slot, rule_id) in write {
                        let value = RuleValue { rule_id, allow: allow::NET };
                        if let Err(error) = trie.insert(&key(policy, slot), value, 0) {
                            log::warn!("network rule {rule_id}: adding {}: {error}", slot.2);
                        }
                    }
                    for slot in remove {
                        let _ = trie.remove(&key(policy, slot));
                    }
                    followed.held = wanted;
                }
            }
        })?;
        Ok(HostFollower { policies, stop })
    }

    /// Follows `hosts` of `policy`, whose compile wrote the addresses each entry has.
    pub fn follow(&self, policy: u32, hosts: FollowedHosts) {
        let held = hosts.wanted();
        self.policies.lock().expect("host entries").insert(policy, Followed { hosts, held });
    }

    /// No longer follows `policy` (its rules are about to be removed).
    pub fn forget(&self, policy: u32) {
        self.policies.lock().expect("host entries").remove(&policy);
    }
}

impl Drop for HostFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse_connect;

    fn addr(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn entry(host: &str, rule_id: u32, addrs: &[&str]) -> HostEntry {
        HostEntry { host: host.into(), op: 1, port: 443, rule_id, installed: addrs.iter().map(|a| addr(a)).collect() }
    }

    #[test]
    fn a_plan_writes_the_new_and_removes_the_gone() {
        let held = BTreeMap::from([((1, 443, addr("192.0.2.1")), 4), ((1, 443, addr("192.0.2.2")), 4)]);
        let hosts =
            FollowedHosts { entries: vec![entry("a", 4, &["192.0.2.2", "2001:db8::9"])], fixed: BTreeSet::new() };
        let (write, remove) = plan(&held, &hosts.wanted());
        assert_eq!(write, vec![((1, 443, addr("2001:db8::9")), 4)]);
        assert_eq!(remove, vec![(1, 443, addr("192.0.2.1"))]);
    }

    #[test]
    fn an_address_two_hosts_share_stays_until_neither_has_it() {
        let shared = (1, 443, addr("192.0.2.7"));
        let mut hosts = FollowedHosts {
            entries: vec![entry("a", 4, &["192.0.2.7"]), entry("b", 5, &["192.0.2.7"])],
            fixed: BTreeSet::new(),
        };
        let held = hosts.wanted();
        assert_eq!(held, BTreeMap::from([(shared, 4)]));
        hosts.entries[0].installed = BTreeSet::from([addr("192.0.2.8")]);
        let (write, remove) = plan(&held, &hosts.wanted());
        // Still b's: rewritten under b's rule, not removed.
        assert!(remove.is_empty(), "{remove:?}");
        assert!(write.contains(&(shared, 5)), "{write:?}");
        hosts.entries[1].installed = BTreeSet::from([addr("192.0.2.9")]);
        let held = BTreeMap::from([(shared, 5)]);
        assert_eq!(plan(&held, &hosts.wanted()).1, vec![shared]);
    }

    #[test]
    fn an_address_named_outright_is_never_taken_or_removed() {
        let named = (1, 443, addr("192.0.2.7"));
        let hosts = FollowedHosts { entries: vec![entry("a", 4, &["192.0.2.7"])], fixed: BTreeSet::from([named]) };
        assert!(hosts.wanted().is_empty());
        let (write, remove) = plan(&BTreeMap::new(), &hosts.wanted());
        assert!(write.is_empty() && remove.is_empty());
    }

    #[test]
    fn an_ipv4_mapped_answer_is_the_ipv4_address() {
        let hosts = FollowedHosts { entries: vec![entry("a", 4, &["::ffff:192.0.2.7"])], fixed: BTreeSet::new() };
        assert_eq!(hosts.wanted(), BTreeMap::from([((1, 443, addr("192.0.2.7")), 4)]));
    }

    #[test]
    fn only_host_entries_are_followed() {
        let rule = |text: &str| {
            let (target, port) = parse_connect(text).unwrap();
            ConnectRule {
                target,
                port,
                origin: crate::policy::model::Origin { field: "network.connect", index: 0, text: text.into() },
            }
        };
        let (a, b) = (rule("10.0.0.0/8:443"), rule("api.example.com:443"));
        let installed =
            |rule_id: u32| if rule_id == 4 { BTreeSet::from(["192.0.2.7".parse().unwrap()]) } else { BTreeSet::new() };
        let entries = host_entries([(3, 1, &a), (4, 1, &b)], &installed);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].rule_id, entries[0].port, entries[0].installed.len()), (4, 443, 1));
    }
}
