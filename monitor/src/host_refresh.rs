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

/// One host entry of a profile, with the addresses installed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub op: u16,
    pub port: u16,
    pub rule_id: u32,
    pub installed: BTreeSet<IpAddr>,
}

/// What to add and remove to go from `installed` to `now`.
pub fn diff(installed: &BTreeSet<IpAddr>, now: &BTreeSet<IpAddr>) -> (Vec<IpAddr>, Vec<IpAddr>) {
    (now.difference(installed).copied().collect(), installed.difference(now).copied().collect())
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

fn key(policy: u32, entry: &HostEntry, addr: IpAddr) -> Key<[u8; 24]> {
    let (bytes, prefix) = match addr {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 128),
        IpAddr::V6(v6) => (v6.octets(), 128),
    };
    let mut data = [0u8; 24];
    data[..4].copy_from_slice(&policy.to_ne_bytes());
    data[4..6].copy_from_slice(&entry.op.to_ne_bytes());
    data[6..8].copy_from_slice(&entry.port.to_ne_bytes());
    data[8..].copy_from_slice(&bytes);
    Key::new(64 + prefix, data)
}

/// Follows the host names of every policy given to it, on one thread of its own (a
/// lookup can take seconds), until dropped. Each name is looked up once per round,
/// however many policies name it.
pub struct HostFollower {
    policies: Arc<Mutex<BTreeMap<u32, Vec<HostEntry>>>>,
    stop: Arc<AtomicBool>,
}

type NetTrie = LpmTrie<MapData, [u8; 24], RuleValue>;

impl HostFollower {
    pub fn spawn(trie: NetTrie, resolve: fn(&str) -> Vec<IpAddr>) -> std::io::Result<HostFollower> {
        let policies: Arc<Mutex<BTreeMap<u32, Vec<HostEntry>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (followed, stopped) = (policies.clone(), stop.clone());
        std::thread::Builder::new().name("host-refresh".into()).spawn(move || {
            let mut trie = trie;
            loop {
                std::thread::sleep(REFRESH_EVERY);
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let names: BTreeSet<String> =
                    followed.lock().expect("host entries").values().flatten().map(|entry| entry.host.clone()).collect();
                let resolved: BTreeMap<String, BTreeSet<IpAddr>> = names
                    .into_iter()
                    .map(|name| {
                        let addresses = resolve(&name).into_iter().collect();
                        (name, addresses)
                    })
                    .collect();
                // Under the lock: once `forget` returns, nothing more is written for
                // that policy.
                let mut policies = followed.lock().expect("host entries");
                for (&policy, entries) in policies.iter_mut() {
                    for entry in entries {
                        match resolved.get(&entry.host) {
                            // A failed lookup keeps what was known.
                            Some(now) if !now.is_empty() => update(&mut trie, policy, entry, now.clone()),
                            _ => {}
                        }
                    }
                }
            }
        })?;
        Ok(HostFollower { policies, stop })
    }

    pub fn follow(&self, policy: u32, entries: Vec<HostEntry>) {
        self.policies.lock().expect("host entries").insert(policy, entries);
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

/// Moves `entry`'s addresses in `trie` from those installed to `now`.
fn update(trie: &mut NetTrie, policy: u32, entry: &mut HostEntry, now: BTreeSet<IpAddr>) {
    let (added, removed) = diff(&entry.installed, &now);
    let value = RuleValue { rule_id: entry.rule_id, allow: allow::NET };
    for addr in added {
        if let Err(error) = trie.insert(&key(policy, entry, addr), value, 0) {
            log::warn!("{}: adding {addr}: {error}", entry.host);
        }
    }
    for addr in removed {
        let _ = trie.remove(&key(policy, entry, addr));
    }
    entry.installed = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse_connect;

    #[test]
    fn diff_adds_the_new_and_removes_the_gone() {
        let installed: BTreeSet<IpAddr> = ["192.0.2.1", "192.0.2.2"].iter().map(|a| a.parse().unwrap()).collect();
        let now: BTreeSet<IpAddr> = ["192.0.2.2", "2001:db8::9"].iter().map(|a| a.parse().unwrap()).collect();
        let (added, removed) = diff(&installed, &now);
        assert_eq!(added, vec!["2001:db8::9".parse::<IpAddr>().unwrap()]);
        assert_eq!(removed, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
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
