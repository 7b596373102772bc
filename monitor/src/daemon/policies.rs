//! The daemon's policy: every profile compiled into the kernel's rule maps under its
//! own policy ids, and the adoption tables of the profiles' selectors.
//!
//! Rule keys depend on a home directory (`~`), so an adopting profile is compiled once
//! without a home (for users the daemon does not know) and once per user with a home
//! on this host; the kernel picks by the uid at exec.

use std::{collections::HashMap, path::Path, sync::Arc};

use anyhow::Context as _;
use monitor_common::adopt::AdoptSelector;

use super::adoption::{self, Host, ProfileSelectors, Tables};
use crate::{
    cgroup::cgroup2_mount,
    enforcement::Tier,
    host_refresh::{FollowedHosts, host_entries},
    mounts::MountTable,
    pipeline::PolicyView,
    policy::{self, Policy, Profile, compile::compile, host},
    principal::User,
    rule_maps::RuleMaps,
    session::session_flags_for,
};

pub struct CompiledProfile {
    pub profile: Profile,
    /// Policy id without a home directory.
    pub base: u32,
    /// (uid, policy id) for adopting profiles.
    pub users: Vec<(u32, u32)>,
    pub view: Arc<PolicyView>,
    pub flags: u32,
}

pub struct PolicySet {
    pub profiles: Vec<CompiledProfile>,
    pub adoption: Tables,
    /// Every policy id this set installed.
    pub ids: Vec<u32>,
    pub notes: Vec<String>,
    /// The host names of network rules, per policy id, to follow (`host_refresh`).
    pub hosts: Vec<(u32, FollowedHosts)>,
}

/// Reads and validates a policy file (`None`: the built-in policy).
pub fn read_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else { return Ok(policy::default_policy()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the policy {}", path.display()))?;
    policy::parse_policy(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("{} has {} error(s):\n{}", path.display(), errors.len(), lines.join("\n"))
    })
}

/// Users with a home directory on this host (whose `~` rules can be compiled).
pub fn users_with_homes() -> Vec<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let home = *f.get(5)?;
            let uid = f.get(2)?.parse().ok()?;
            (home.len() > 1 && Path::new(home).is_dir()).then(|| User {
                name: f[0].to_owned(),
                uid,
                groups: Vec::new(),
                home: Some(home.to_owned()),
            })
        })
        .collect()
}

/// Compiles `profile` for `home` and writes it as policy `id`.
pub fn install_profile(
    rules: &mut RuleMaps,
    profile: &Profile,
    home: Option<String>,
    id: u32,
    mounts: &MountTable,
) -> anyhow::Result<(PolicyView, Vec<String>, FollowedHosts)> {
    let environment = host::environment(home, mounts);
    let compiled = compile(profile, &environment);
    rules.install(id, &compiled).with_context(|| format!("writing profile {} into the kernel", profile.name))?;
    let entries = host_entries(compiled.rules_of_network(profile), &|rule_id| compiled.addresses_of(rule_id));
    let host_rules: Vec<u32> = entries.iter().map(|entry| entry.rule_id).collect();
    let hosts = FollowedHosts { fixed: compiled.single_addresses_except(&host_rules), entries };
    let view = PolicyView {
        profile: profile.name.clone(),
        mode: profile.mode,
        on_violation: profile.on_violation,
        rules: compiled.rules.clone(),
        principal: String::new(),
    };
    Ok((view, compiled.notes, hosts))
}

impl PolicySet {
    pub fn empty() -> PolicySet {
        PolicySet {
            profiles: Vec::new(),
            adoption: Tables::default(),
            ids: Vec::new(),
            notes: Vec::new(),
            hosts: Vec::new(),
        }
    }

    /// Compiles and installs every profile of `policy` under fresh ids from `next_id`.
    /// On error, what was installed is removed again.
    pub fn install(policy: &Policy, rules: &mut RuleMaps, next_id: &mut u32, files: Tier) -> anyhow::Result<PolicySet> {
        let mut set = PolicySet::empty();
        match set.fill(policy, rules, next_id, files) {
            Ok(()) => Ok(set),
            Err(error) => {
                set.remove(rules);
                Err(error)
            }
        }
    }

    fn fill(&mut self, policy: &Policy, rules: &mut RuleMaps, next_id: &mut u32, files: Tier) -> anyhow::Result<()> {
        let mounts = MountTable::load().context("reading the mount table")?;
        let users = users_with_homes();
        let mut allocate = |ids: &mut Vec<u32>| {
            let id = *next_id;
            *next_id += 1;
            ids.push(id);
            id
        };
        for profile in &policy.profiles {
            let base = allocate(&mut self.ids);
            let (view, notes, hosts) = install_profile(rules, profile, None, base, &mounts)?;
            self.hosts.push((base, hosts));
            let adopting = !profile.selectors.is_empty();
            // Without a home, `~` entries are left out: expected for the base compile,
            // said once rather than per entry.
            let (homeless, other): (Vec<String>, Vec<String>) =
                notes.into_iter().partition(|n| n.contains("no home directory"));
            if adopting {
                self.notes.extend(other.into_iter().map(|n| format!("profile {}: {n}", profile.name)));
                if !homeless.is_empty() {
                    self.notes.push(format!(
                        "profile {}: its {} `~` entries apply to the {} user(s) with a home directory here; other uids get the profile without them",
                        profile.name,
                        homeless.len(),
                        users.len()
                    ));
                }
            }
            let mut per_user = Vec::new();
            if adopting {
                for user in &users {
                    let id = allocate(&mut self.ids);
                    let (_, _, hosts) = install_profile(rules, profile, user.home.clone(), id, &mounts)?;
                    self.hosts.push((id, hosts));
                    per_user.push((user.uid, id));
                }
            }
            self.profiles.push(CompiledProfile {
                profile: profile.clone(),
                base,
                users: per_user,
                view: Arc::new(view),
                flags: session_flags_for(profile, false, files),
            });
        }
        let cgroup_root = cgroup2_mount();
        let identity = |path: &Path| adoption::file_identity(path);
        let uid_of = |name: &str| crate::principal::lookup(name).ok().map(|u| u.uid);
        let named =
            |name: &str| cgroup_root.as_deref().map(|root| adoption::cgroups_named(root, name)).unwrap_or_default();
        let at = |path: &str| {
            use std::os::unix::fs::MetadataExt;
            let root = cgroup_root.as_deref()?;
            std::fs::metadata(root.join(path.trim_start_matches('/'))).ok().map(|m| m.ino())
        };
        let host = Host { identity: &identity, uid_of: &uid_of, cgroups_named: &named, cgroup_at: &at };
        let selectors: Vec<ProfileSelectors> = self
            .profiles
            .iter()
            .filter(|p| !p.profile.selectors.is_empty())
            .map(|p| ProfileSelectors {
                profile: &p.profile.name,
                selectors: &p.profile.selectors,
                base: AdoptSelector { policy_id: p.base, flags: p.flags },
                users: p
                    .users
                    .iter()
                    .map(|&(uid, id)| (uid, AdoptSelector { policy_id: id, flags: p.flags }))
                    .collect(),
            })
            .collect();
        self.adoption = adoption::tables(&selectors, &host).map_err(anyhow::Error::msg)?;
        self.notes.extend(self.adoption.notes.iter().cloned());
        Ok(())
    }

    pub fn profile(&self, name: &str) -> Option<&CompiledProfile> {
        self.profiles.iter().find(|p| p.profile.name == name)
    }

    /// The profile whose rules policy `id` holds.
    pub fn profile_of_policy(&self, id: u32) -> Option<&CompiledProfile> {
        self.profiles.iter().find(|p| p.base == id || p.users.iter().any(|&(_, u)| u == id))
    }

    /// The policy id in this set for a session that was held to `profile` (for `uid`).
    pub fn policy_for(&self, profile: &str, uid: Option<u32>) -> Option<u32> {
        let p = self.profile(profile)?;
        Some(uid.and_then(|uid| p.users.iter().find(|&&(u, _)| u == uid).map(|&(_, id)| id)).unwrap_or(p.base))
    }

    /// Removes this set's rules from the kernel.
    pub fn remove(&self, rules: &mut RuleMaps) {
        for &id in &self.ids {
            if let Err(error) = rules.remove_policy(id) {
                log::warn!("removing policy {id}: {error}");
            }
        }
    }

    /// Policy id -> view, for the pipeline.
    pub fn views(&self) -> HashMap<u32, Arc<PolicyView>> {
        let mut out = HashMap::new();
        for p in &self.profiles {
            out.insert(p.base, p.view.clone());
            for &(_, id) in &p.users {
                out.insert(id, p.view.clone());
            }
        }
        out
    }
}
