//! Profiles' `match:` selectors -> the kernel's adoption tables
//! (`monitor_common::adopt`), and the same matching over /proc for processes that were
//! running before the daemon started.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use monitor_common::adopt::{AdoptConfig, AdoptSelector, MAX_SELECTORS, choose, field, name_kind};

use crate::policy::model::{Selector, UserSpec};

/// What one selector starts, for the kernel and for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorInfo {
    pub profile: String,
    /// `match[i] {...}` as written.
    pub text: String,
    /// Whether adopted processes move into a session cgroup of their own. Not for
    /// `unit:`/`cgroup:` selectors: systemd (or whoever made that cgroup) keeps
    /// managing its processes, and the session's kill uses their pids.
    pub own_cgroup: bool,
}

/// A profile's selectors with the sessions they start.
pub struct ProfileSelectors<'a> {
    pub profile: &'a str,
    pub selectors: &'a [Selector],
    /// Base session (`~` rules of the profile skipped).
    pub base: AdoptSelector,
    /// Per uid: the profile compiled with that user's home.
    pub users: Vec<(u32, AdoptSelector)>,
}

/// One generation's tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tables {
    pub config: AdoptConfig,
    pub selectors: Vec<AdoptSelector>,
    /// (selector, uid, session).
    pub users: Vec<(u32, u32, AdoptSelector)>,
    /// (field, dev, ino) -> mask.
    pub files: BTreeMap<(u32, u32, u64), u64>,
    /// (field, id) -> mask.
    pub ids: BTreeMap<(u32, u64), u64>,
    /// (name kind, name) -> mask.
    pub names: BTreeMap<(u32, String), u64>,
    pub info: Vec<SelectorInfo>,
    /// Selectors that match nothing now (e.g. a program not installed), for the log.
    pub notes: Vec<String>,
}

/// How the tables learn about the host (real in the daemon, fixed in tests).
pub struct Host<'a> {
    /// (kernel dev, inode) of a file, symlinks followed.
    pub identity: &'a dyn Fn(&Path) -> Option<(u32, u64)>,
    /// uid of a user name.
    pub uid_of: &'a dyn Fn(&str) -> Option<u32>,
    /// Ids of existing cgroups with this name anywhere, or at this path.
    pub cgroups_named: &'a dyn Fn(&str) -> Vec<u64>,
    pub cgroup_at: &'a dyn Fn(&str) -> Option<u64>,
}

pub fn tables(profiles: &[ProfileSelectors], host: &Host) -> Result<Tables, String> {
    let mut t = Tables::default();
    let mut index = 0u32;
    for profile in profiles {
        for selector in profile.selectors {
            if index >= MAX_SELECTORS {
                return Err(format!("more than {MAX_SELECTORS} match: selectors in all profiles; merge some"));
            }
            let bit = 1u64 << index;
            let at = format!("profile {}: {}", profile.profile, selector.origin);
            t.config.defined |= bit;
            for f in 0..field::COUNT {
                t.config.unconstrained[f] |= bit;
            }
            let mut unconstrained = t.config.unconstrained;
            let mut constrain = |f: u32| unconstrained[f as usize] &= !bit;
            for (f, path) in [(field::EXE, &selector.exe), (field::PARENT_EXE, &selector.parent_exe)] {
                let Some(path) = path else { continue };
                constrain(f);
                match (host.identity)(Path::new(path)) {
                    Some((dev, ino)) => *t.files.entry((f, dev, ino)).or_default() |= bit,
                    None => t
                        .notes
                        .push(format!("{at}: {path} does not exist; the selector matches nothing until a reload")),
                }
            }
            if let Some(user) = &selector.uid {
                constrain(field::UID);
                let uid = match user {
                    UserSpec::Id(uid) => *uid,
                    UserSpec::Name(name) => {
                        (host.uid_of)(name).ok_or_else(|| format!("{at}: no user {name:?} in /etc/passwd"))?
                    }
                };
                *t.ids.entry((field::UID, uid as u64)).or_default() |= bit;
            }
            for (kind, name) in [(name_kind::UNIT, &selector.unit), (name_kind::PATH, &selector.cgroup)] {
                let Some(name) = name else { continue };
                constrain(field::CGROUP);
                if name.len() >= monitor_common::adopt::CGROUP_NAME_BYTES {
                    return Err(format!(
                        "{at}: {name:?} is longer than {} bytes",
                        monitor_common::adopt::CGROUP_NAME_BYTES - 1
                    ));
                }
                *t.names.entry((kind, name.clone())).or_default() |= bit;
                let existing = if kind == name_kind::UNIT {
                    (host.cgroups_named)(name)
                } else {
                    (host.cgroup_at)(name).into_iter().collect()
                };
                for id in existing {
                    *t.ids.entry((field::CGROUP, id)).or_default() |= bit;
                }
            }
            t.config.unconstrained = unconstrained;
            t.selectors.push(profile.base);
            t.users.extend(profile.users.iter().map(|&(uid, session)| (index, uid, session)));
            t.info.push(SelectorInfo {
                profile: profile.profile.to_owned(),
                text: selector.origin.to_string(),
                own_cgroup: selector.unit.is_none() && selector.cgroup.is_none(),
            });
            index += 1;
        }
    }
    Ok(t)
}

/// What /proc says of a running process, for matching at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcFacts {
    pub exe: Option<(u32, u64)>,
    pub parent_exe: Option<(u32, u64)>,
    pub uid: u32,
    /// Ids of the process's cgroup and its ancestors.
    pub cgroups: Vec<u64>,
}

impl Tables {
    /// The selector a running process matches, as the kernel would decide at exec.
    pub fn matching(&self, facts: &ProcFacts) -> Option<u32> {
        let file = |f: u32, id: Option<(u32, u64)>| {
            id.and_then(|(dev, ino)| self.files.get(&(f, dev, ino))).copied().unwrap_or(0)
        };
        let mut satisfied = [0u64; field::COUNT];
        satisfied[field::EXE as usize] = file(field::EXE, facts.exe);
        satisfied[field::PARENT_EXE as usize] = file(field::PARENT_EXE, facts.parent_exe);
        satisfied[field::UID as usize] = self.ids.get(&(field::UID, facts.uid as u64)).copied().unwrap_or(0);
        satisfied[field::CGROUP as usize] =
            facts.cgroups.iter().filter_map(|id| self.ids.get(&(field::CGROUP, *id))).fold(0, |a, m| a | m);
        choose(&self.config, &satisfied)
    }

    /// The session selector `index` starts for `uid`.
    pub fn session_for(&self, index: u32, uid: u32) -> AdoptSelector {
        self.users
            .iter()
            .find(|(s, u, _)| *s == index && *u == uid)
            .map(|(_, _, session)| *session)
            .unwrap_or(self.selectors[index as usize])
    }
}

/// Kernel encoding of a device number (major << 20 | minor).
pub fn kernel_dev(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

pub fn file_identity(path: &Path) -> Option<(u32, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((kernel_dev(meta.dev()), meta.ino()))
}

/// Ids (directory inode numbers) of the cgroups named `name` under `root`.
pub fn cgroups_named(root: &Path, name: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name
                && let Ok(meta) = entry.metadata()
            {
                found.push(meta.ino());
            }
            if depth < monitor_common::adopt::MAX_CGROUP_LEVELS {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
    found
}

/// What /proc/PID says, or `None` for a process that is gone or a kernel thread.
pub fn proc_facts(pid: u32, cgroup_root: Option<&Path>) -> Option<ProcFacts> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let exe = file_identity(&base.join("exe"))?;
    let status = std::fs::read_to_string(base.join("status")).ok()?;
    let field_of = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let uid = field_of("Uid:")?.split_whitespace().next()?.parse().ok()?;
    let ppid: u32 = field_of("PPid:")?.parse().ok()?;
    let parent_exe = (ppid > 0).then(|| file_identity(Path::new(&format!("/proc/{ppid}/exe")))).flatten();
    let mut cgroups = Vec::new();
    if let Some(root) = cgroup_root
        && let Ok(text) = std::fs::read_to_string(base.join("cgroup"))
        && let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::"))
    {
        let mut dir = root.to_path_buf();
        cgroups.extend(std::fs::metadata(&dir).ok().map(|m| m.ino()));
        for component in path.split('/').filter(|c| !c.is_empty()) {
            dir.push(component);
            cgroups.extend(std::fs::metadata(&dir).ok().map(|m| m.ino()));
        }
    }
    Some(ProcFacts { exe: Some(exe), parent_exe, uid, cgroups })
}

/// (pid, ppid, start time in clock ticks) of every process, parents before children.
pub fn processes() -> Vec<(u32, u32, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Some(stat) = crate::running_process::process_stat(pid) else { continue };
        out.push((pid, stat.ppid, stat.start));
    }
    out.sort_by_key(|&(pid, _, start)| (start, pid));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn selectors(yaml: &str) -> Vec<Selector> {
        parse_policy(&format!("version: 1\nprofiles:\n  - name: p\n    match:\n{yaml}"))
            .unwrap()
            .profiles
            .remove(0)
            .selectors
    }

    fn host_tables(selectors: &[Selector]) -> Result<Tables, String> {
        let identity = |p: &Path| match p.to_str() {
            Some("/usr/bin/agent") => Some((8, 100)),
            Some("/usr/bin/runner") => Some((8, 200)),
            _ => None,
        };
        let uid_of = |name: &str| (name == "alice").then_some(1000);
        let named = |name: &str| if name == "agent.service" { vec![77] } else { vec![] };
        let at = |path: &str| (path == "/ci.slice").then_some(88);
        let host = Host { identity: &identity, uid_of: &uid_of, cgroups_named: &named, cgroup_at: &at };
        let base = AdoptSelector { policy_id: 10, flags: 1 };
        let profile = ProfileSelectors {
            profile: "p",
            selectors,
            base,
            users: vec![(1000, AdoptSelector { policy_id: 11, flags: 1 })],
        };
        tables(&[profile], &host)
    }

    #[test]
    fn running_processes_match_like_the_kernel() {
        let s = selectors(
            "      - {exe: /usr/bin/agent}\n      - {parent_exe: /usr/bin/runner, uid: alice}\n      - {unit: agent.service}\n      - {cgroup: /ci.slice}\n",
        );
        let t = host_tables(&s).unwrap();
        assert_eq!(t.config.defined, 0b1111);
        let agent = ProcFacts { exe: Some((8, 100)), uid: 0, ..Default::default() };
        assert_eq!(t.matching(&agent), Some(0));
        let child_of_runner = ProcFacts { exe: Some((8, 5)), parent_exe: Some((8, 200)), uid: 1000, cgroups: vec![1] };
        assert_eq!(t.matching(&child_of_runner), Some(1));
        assert_eq!(t.matching(&ProcFacts { uid: 0, ..child_of_runner.clone() }), None, "uid must match too");
        let in_unit = ProcFacts { exe: Some((8, 5)), cgroups: vec![1, 50, 77], ..Default::default() };
        assert_eq!(t.matching(&in_unit), Some(2));
        let in_slice = ProcFacts { exe: Some((8, 5)), cgroups: vec![1, 88, 90], ..Default::default() };
        assert_eq!(t.matching(&in_slice), Some(3));
        assert_eq!(t.matching(&ProcFacts::default()), None);
        assert_eq!(t.session_for(1, 1000).policy_id, 11, "alice gets the profile compiled with her home");
        assert_eq!(t.session_for(1, 0).policy_id, 10);
        assert!(t.info[0].own_cgroup && !t.info[2].own_cgroup);
        assert_eq!(t.names.get(&(name_kind::UNIT, "agent.service".into())), Some(&0b100));
    }

    #[test]
    fn missing_programs_are_noted_and_unknown_users_refused() {
        let t = host_tables(&selectors("      - {exe: /opt/missing}\n")).unwrap();
        assert_eq!(t.notes.len(), 1);
        assert_eq!(t.matching(&ProcFacts { exe: Some((8, 100)), ..Default::default() }), None);
        let error = host_tables(&selectors("      - {uid: mallory}\n")).err().unwrap();
        assert!(error.contains("mallory"), "{error}");
    }

    #[test]
    fn this_process_is_described_by_proc() {
        let facts = proc_facts(std::process::id(), None).unwrap();
        assert_eq!(facts.exe, file_identity(&std::env::current_exe().unwrap()));
        assert!(processes().iter().any(|&(pid, _, _)| pid == std::process::id()));
    }
}
