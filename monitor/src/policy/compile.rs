//! Validated profile -> the tables the kernel looks up. A pure function of the profile
//! and its environment (home directory, mount table, directory listings for `*`), so
//! it is tested without root.
//!
//! Table format (see `monitor_common::policy`): entries keyed by (device, path inside
//! that filesystem + `/`), longest prefix wins. For every mounted filesystem the
//! compiler also writes an entry for the filesystem's root carrying the decision of the
//! longest rule covering its mount point, so `read: [/]` covers `/proc` too.

use std::net::{IpAddr, Ipv6Addr};

use monitor_common::policy::{PATH_KEY_BYTES, RuleValue, allow, net_op, socket_family};

use super::model::{Access, ConnectRule, ConnectTarget, FileRule, Origin, PathRule, Pattern, Profile, Segment};
use crate::mounts::MountTable;

/// What the compiler needs to know of the machine.
pub struct Environment<'a> {
    /// Home directory of the user the session acts for (for `~`).
    pub home: Option<String>,
    pub mounts: &'a MountTable,
    /// Names of the entries of a directory (for components with `*`).
    pub list_dir: &'a dyn Fn(&str) -> Vec<String>,
    /// Addresses of a host name (for network entries naming hosts).
    pub resolve_host: &'a dyn Fn(&str) -> Vec<IpAddr>,
    /// The regular files at or under a path (for deny entries).
    pub files_under: &'a dyn Fn(&str) -> Vec<RegularFile>,
    /// Whether a path is itself a raw device node (`monitor_common::policy::raw_device`):
    /// an entry naming one lets it be opened.
    pub is_raw_device: &'a dyn Fn(&str) -> bool,
    /// Whether a path is one of the host's dynamic loaders (`crate::loaders`).
    pub is_loader: &'a dyn Fn(&str) -> bool,
    /// The path with every symlink on the way resolved, if it exists.
    pub canonical: &'a dyn Fn(&str) -> Option<String>,
}

/// A regular file as a deny entry pins it: (path, kernel dev, inode).
pub type RegularFile = (String, u32, u64);

/// A network entry: (operation, port or 0 for any, address prefix) -> allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEntry {
    /// One of `monitor_common::policy::net_op`.
    pub op: u16,
    pub port: u16,
    /// IPv6; IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
    /// Bits of `addr` that must match.
    pub prefix: u8,
    pub value: RuleValue,
}

impl NetEntry {
    /// `addr` as an address (IPv4 as itself).
    pub fn address(&self) -> IpAddr {
        Ipv6Addr::from(self.addr).to_canonical()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dev: u32,
    /// `/etc/` style: the path inside the filesystem, `/`-terminated.
    pub key: Vec<u8>,
    pub value: RuleValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub files: Vec<Entry>,
    pub exec: Vec<Entry>,
    /// `**/NAME` entries.
    pub names: Vec<(String, RuleValue)>,
    pub net: Vec<NetEntry>,
    /// Files under deny entries by identity: (dev, inode, entry).
    pub denied_inodes: Vec<(u32, u64, RuleValue)>,
    /// The socket families `network.families` names, a bit per family.
    pub families: u64,
    /// Rule id -> where it came from (ids index this list).
    pub rules: Vec<Origin>,
    /// Entries the kernel cannot hold, and why.
    pub notes: Vec<String>,
}

impl Compiled {
    /// The single addresses written for network rule `rule_id` (a host name's).
    pub fn addresses_of(&self, rule_id: u32) -> std::collections::BTreeSet<IpAddr> {
        self.net
            .iter()
            .filter(|entry| entry.value.rule_id == rule_id && entry.prefix == 128)
            .map(NetEntry::address)
            .collect()
    }

    /// The (op, port, address) of every single address written for a rule not in
    /// `rules`.
    pub fn single_addresses_except(&self, rules: &[u32]) -> std::collections::BTreeSet<(u16, u16, IpAddr)> {
        self.net
            .iter()
            .filter(|entry| entry.prefix == 128 && !rules.contains(&entry.value.rule_id))
            .map(|entry| (entry.op, entry.port, entry.address()))
            .collect()
    }

    /// The profile's network rules with the rule ids and operations this compilation
    /// gave them (ids follow the order of `compile`: files, exec, connect, bind).
    pub fn rules_of_network<'p>(&self, profile: &'p Profile) -> Vec<(u32, u16, &'p ConnectRule)> {
        let mut out = Vec::new();
        for (op, list) in [(net_op::CONNECT, &profile.connect), (net_op::BIND, &profile.bind)] {
            for rule in list.iter().flatten() {
                if let Some(id) = self.rules.iter().position(|origin| *origin == rule.origin) {
                    out.push((id as u32, op, rule));
                }
            }
        }
        out
    }
}

/// Expands `~` and `*` into concrete absolute paths.
fn expand(pattern: &Pattern, env: &Environment, notes: &mut Vec<String>, origin: &Origin) -> Vec<String> {
    let (base, segments) = match pattern {
        Pattern::Absolute(segments) => (String::new(), segments),
        Pattern::Home(segments) => match &env.home {
            Some(home) => (home.trim_end_matches('/').to_owned(), segments),
            None => {
                notes.push(format!("{origin}: no home directory for this session; entry skipped"));
                return Vec::new();
            }
        },
        Pattern::Named(_) => return Vec::new(),
    };
    let mut paths = vec![base];
    for segment in segments {
        paths = match segment {
            Segment::Literal(name) => paths.into_iter().map(|p| format!("{p}/{name}")).collect(),
            glob @ Segment::Glob(_) => paths
                .into_iter()
                .flat_map(|p| {
                    let dir = if p.is_empty() { "/".to_owned() } else { p.clone() };
                    let mut names: Vec<String> = (env.list_dir)(&dir).into_iter().filter(|n| glob.matches(n)).collect();
                    names.sort();
                    names.into_iter().map(move |n| format!("{p}/{n}"))
                })
                .collect(),
        };
    }
    paths.into_iter().map(|p| if p.is_empty() { "/".to_owned() } else { p }).collect()
}

/// Entries are matched against paths as the kernel resolves them: one that goes through
/// a symlink names nothing the kernel reports (a deny entry still covers the files that
/// exist now, by identity). Worth a word, with the name to write instead.
fn note_symlinks(paths: &[String], env: &Environment, notes: &mut Vec<String>, origin: &Origin) {
    for path in paths {
        if let Some(resolved) = (env.canonical)(path)
            && resolved != *path
        {
            notes.push(format!("{origin}: {path} goes through a symlink to {resolved}, and entries are matched as the kernel resolves paths: write {resolved}"));
        }
    }
}

/// `prefix` is `path` or one of its ancestors.
fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Maps absolute-path entries into per-filesystem kernel entries.
fn place(concrete: &[(String, RuleValue)], mounts: &MountTable, notes: &mut Vec<String>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut push = |dev: u32, fs_path: String, value: RuleValue, notes: &mut Vec<String>| {
        let key = if fs_path == "/" { b"/".to_vec() } else { format!("{fs_path}/").into_bytes() };
        if key.len() > PATH_KEY_BYTES {
            notes.push(format!("{fs_path}: longer than the kernel's {PATH_KEY_BYTES}-byte keys; not enforced"));
            return;
        }
        match entries.iter_mut().find(|e| e.dev == dev && e.key == key) {
            Some(existing) => existing.value = combine(existing.value, value),
            None => entries.push(Entry { dev, key, value }),
        }
    };
    for (dev, root, mount_point) in mounts.canonical() {
        let (Ok(root), Ok(mount_point)) = (std::str::from_utf8(root), std::str::from_utf8(mount_point)) else {
            continue;
        };
        let join = |rest: &str| -> String {
            let joined = format!("{}{rest}", if root == "/" { "" } else { root });
            if joined.is_empty() { "/".to_owned() } else { joined }
        };
        // The filesystem's root inherits the longest rule covering the mount point.
        if let Some((_, value)) =
            concrete.iter().filter(|(path, _)| covers(path, mount_point)).max_by_key(|(path, _)| path.len())
        {
            push(dev, join(""), *value, notes);
        }
        for (path, value) in concrete {
            if path != mount_point && covers(mount_point, path) {
                let rest = if mount_point == "/" { path.as_str() } else { &path[mount_point.len()..] };
                push(dev, join(rest), *value, notes);
            }
        }
    }
    entries.sort_by(|a, b| (a.dev, &a.key).cmp(&(b.dev, &b.key)));
    entries
}

/// Two entries for the same path: a deny wins; otherwise the wider grant (an entry in
/// both `read` and `write` is writable, since write implies read).
fn combine(a: RuleValue, b: RuleValue) -> RuleValue {
    match (a.allow == 0, b.allow == 0) {
        (true, _) => a,
        (false, true) => b,
        (false, false) if b.allow & !a.allow != 0 => b,
        (false, false) => a,
    }
}

fn merge(concrete: &mut Vec<(String, RuleValue)>) {
    concrete.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.rule_id.cmp(&b.1.rule_id)));
    let mut merged: Vec<(String, RuleValue)> = Vec::with_capacity(concrete.len());
    for (path, value) in concrete.drain(..) {
        match merged.last_mut() {
            Some((last, existing)) if *last == path => *existing = combine(*existing, value),
            _ => merged.push((path, value)),
        }
    }
    *concrete = merged;
}

/// Where the system's shared libraries are (Debian's multiarch directories are below
/// these): the dynamic loader maps them into every program, so they may be mapped
/// executable wherever exec is restricted. Not executed, unless an exec entry covers
/// them.
const LIBRARY_DIRECTORIES: [&str; 9] =
    ["/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32", "/usr/local/lib"];

/// Adds the library directories that exist (by their real paths: `/lib` is a link to
/// `/usr/lib` on merged-/usr systems) to `exec_paths` as mappable, with whatever the
/// exec entry that covers each allows (an entry is a prefix: `/usr/lib`, longer than
/// an entry `/usr`, would otherwise take exec away from everything under it).
fn library_directories(env: &Environment, rules: &mut Vec<Origin>, exec_paths: &mut Vec<(String, RuleValue)>) {
    let mut directories: Vec<String> = LIBRARY_DIRECTORIES.iter().filter_map(|dir| (env.canonical)(dir)).collect();
    directories.sort();
    directories.dedup();
    let rule_id = rules.len() as u32;
    rules.push(Origin {
        field: "exec",
        index: usize::MAX,
        text: "the system's library directories (mapped, not executed)".into(),
    });
    for directory in directories {
        let covering =
            exec_paths.iter().filter(|(entry, _)| covers(entry, &directory)).max_by_key(|(entry, _)| entry.len());
        let value = match covering {
            Some((_, value)) => RuleValue { allow: value.allow | allow::MAP, ..*value },
            None => RuleValue { rule_id, allow: allow::MAP },
        };
        exec_paths.push((directory, value));
    }
}

/// A section the profile leaves out is not restricted: compiled as one entry on `/`.
fn unrestricted(field: &'static str) -> Origin {
    Origin { field, index: 0, text: "/ (section not in the profile: not restricted)".into() }
}

pub fn compile(profile: &Profile, env: &Environment) -> Compiled {
    let mut rules = Vec::new();
    let mut notes = Vec::new();
    let mut file_paths = Vec::new();
    let mut names = Vec::new();
    let root = || Pattern::Absolute(Vec::new());
    let files = profile
        .files
        .clone()
        .unwrap_or_else(|| vec![FileRule { pattern: root(), access: Access::Write, origin: unrestricted("files") }]);
    let exec = profile.exec.clone().unwrap_or_else(|| vec![PathRule { pattern: root(), origin: unrestricted("exec") }]);
    for rule in &files {
        let rule_id = rules.len() as u32;
        rules.push(rule.origin.clone());
        let allowed = match rule.access {
            Access::Deny => 0,
            Access::Read => allow::READ,
            Access::Write => allow::READ | allow::WRITE,
        };
        let value = RuleValue { rule_id, allow: allowed };
        if let Pattern::Named(name) = &rule.pattern {
            names.push((name.clone(), value));
            continue;
        }
        let expanded = expand(&rule.pattern, env, &mut notes, &rule.origin);
        note_symlinks(&expanded, env, &mut notes, &rule.origin);
        // An allow that matches nothing is worth a word; a deny that does is the usual
        // case for a list written for many hosts (the built-in one names every kind of
        // disk device).
        if expanded.is_empty() && rule.pattern.has_wildcard() && rule.access != Access::Deny {
            notes
                .push(format!("{}: matches no existing directory now (expanded when the session starts)", rule.origin));
        }
        // Only an entry that names the node itself, not a `*` that happened to match one
        // (a node the agent made in a writable directory before the session started).
        let literal = !rule.pattern.has_wildcard();
        file_paths.extend(expanded.into_iter().map(|path| {
            let names_a_device = literal && value.allow != 0 && (env.is_raw_device)(&path);
            let value = if names_a_device { RuleValue { allow: value.allow | allow::DEVICES, ..value } } else { value };
            (path, value)
        }));
    }
    let mut exec_paths = Vec::new();
    for rule in &exec {
        let rule_id = rules.len() as u32;
        rules.push(rule.origin.clone());
        // What may run may also be mapped executable (a program's plugins, `dlopen`).
        let value = RuleValue { rule_id, allow: allow::EXEC | allow::MAP };
        // Only an entry that names a loader itself lets it run directly; or `/`, which
        // lets any program run, so that the loader adds nothing to it.
        let literal = !rule.pattern.has_wildcard();
        let expanded = expand(&rule.pattern, env, &mut notes, &rule.origin);
        note_symlinks(&expanded, env, &mut notes, &rule.origin);
        exec_paths.extend(expanded.into_iter().map(|path| {
            let names_a_loader = literal && (path == "/" || (env.is_loader)(&path));
            (path, if names_a_loader { RuleValue { allow: value.allow | allow::LOADER, ..value } } else { value })
        }));
    }
    if profile.exec.is_some() {
        library_directories(env, &mut rules, &mut exec_paths);
    }
    // A file under a deny entry is recorded by identity unless a longer entry (an allow
    // inside the denied tree) decides it.
    let mut denied_inodes = Vec::new();
    for (path, value) in &file_paths {
        if value.allow != 0 {
            continue;
        }
        for (file, dev, ino) in (env.files_under)(path) {
            let decides =
                file_paths.iter().filter(|(entry, _)| covers(entry, &file)).max_by_key(|(entry, _)| entry.len());
            if decides.is_some_and(|(_, decided)| decided.allow == 0) {
                denied_inodes.push((dev, ino, *value));
            }
        }
    }
    denied_inodes.sort_by_key(|(dev, ino, value)| (*dev, *ino, value.rule_id));
    denied_inodes.dedup_by_key(|(dev, ino, _)| (*dev, *ino));
    merge(&mut file_paths);
    merge(&mut exec_paths);
    merge(&mut names);
    let files = place(&file_paths, env.mounts, &mut notes);
    let exec = place(&exec_paths, env.mounts, &mut notes);
    let mut net = Vec::new();
    for (op, field, list) in
        [(net_op::CONNECT, "network.connect", &profile.connect), (net_op::BIND, "network.bind", &profile.bind)]
    {
        let any = || {
            vec![ConnectRule {
                target: ConnectTarget::Network { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), prefix: 0 },
                port: None,
                origin: Origin {
                    field,
                    index: 0,
                    text: "any address, any port (not in the profile: not restricted)".into(),
                },
            }]
        };
        for rule in list.clone().unwrap_or_else(any) {
            let rule_id = rules.len() as u32;
            rules.push(rule.origin.clone());
            let value = RuleValue { rule_id, allow: allow::NET };
            let port = rule.port.unwrap_or(0);
            let targets: Vec<(IpAddr, u8)> = match &rule.target {
                ConnectTarget::Network { addr, prefix } => vec![(*addr, *prefix)],
                ConnectTarget::Host(host) => {
                    let addrs = (env.resolve_host)(host);
                    if addrs.is_empty() {
                        notes.push(format!("{}: {host} did not resolve; nothing is allowed for it", rule.origin));
                    }
                    addrs.into_iter().map(|a| (a, if a.is_ipv4() { 32 } else { 128 })).collect()
                }
            };
            for (addr, prefix) in targets {
                let (addr, prefix) = match addr {
                    IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + prefix),
                    IpAddr::V6(v6) => (v6.octets(), prefix),
                };
                let entry = NetEntry { op, port, addr: masked(addr, prefix), prefix, value };
                if !net.iter().any(|e: &NetEntry| (e.op, e.port, e.addr, e.prefix) == (op, port, entry.addr, prefix)) {
                    net.push(entry);
                }
            }
        }
    }
    let families = profile.families.iter().fold(0, |bits, &family| bits | socket_family::bit(family));
    Compiled { files, exec, names, net, denied_inodes, families, rules, notes }
}

/// `addr` with the bits past `prefix` cleared (the trie stores canonical prefixes).
fn masked(mut addr: [u8; 16], prefix: u8) -> [u8; 16] {
    for (i, byte) in addr.iter_mut().enumerate() {
        let keep = (prefix as i32 - 8 * i as i32).clamp(0, 8);
        *byte &= if keep == 8 { 0xff } else { !(0xffu8 >> keep) };
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse_policy;

    const MOUNTS: &[u8] = b"\
22 1 254:0 / / rw - ext4 /dev/vda rw
23 22 0:21 / /proc rw - proc proc rw
24 22 0:45 / /tmp rw - tmpfs tmpfs rw
40 22 254:0 /etc /tmp/alias rw - ext4 /dev/vda rw
";
    const ROOT: u32 = 254 << 20;

    fn compiled(yaml: &str) -> Compiled {
        let policy = parse_policy(yaml).unwrap();
        let mounts = MountTable::parse(MOUNTS);
        let list = |dir: &str| -> Vec<String> {
            match dir {
                "/home" => vec!["bob".into(), "alice".into()],
                "/tmp" => vec!["vdc".into()],
                "/etc/ssh" => vec!["ssh_host_rsa_key".into(), "ssh_host_rsa_key.pub".into(), "sshd_config".into()],
                _ => Vec::new(),
            }
        };
        let resolve = |host: &str| -> Vec<IpAddr> {
            match host {
                "api.example.com" => vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
                _ => Vec::new(),
            }
        };
        let under = |path: &str| -> Vec<(String, u32, u64)> {
            let file = |p: &str, ino| (p.to_owned(), ROOT, ino);
            match path {
                "/etc/shadow" => vec![file("/etc/shadow", 817)],
                "/home/bob/.ssh" => vec![file("/home/bob/.ssh/id_rsa", 9001), file("/home/bob/.ssh/config", 9002)],
                "/srv/secret" => vec![file("/srv/secret/key", 1), file("/srv/secret/open/readme", 2)],
                _ => Vec::new(),
            }
        };
        let env = Environment {
            home: Some("/home/alice".into()),
            mounts: &mounts,
            list_dir: &list,
            resolve_host: &resolve,
            files_under: &under,
            is_raw_device: &|path| path == "/dev/vdb" || path == "/tmp/vdc",
            is_loader: &|path| path == "/usr/lib/ld-linux-x86-64.so.2",
            canonical: &|path| match path {
                "/lib64/ld.so" => Some("/usr/lib/ld-linux-x86-64.so.2".to_owned()),
                // Merged /usr: /lib is a link to /usr/lib.
                "/lib" | "/usr/lib" => Some("/usr/lib".to_owned()),
                _ => None,
            },
        };
        compile(&policy.profiles[0], &env)
    }

    fn entry(dev: u32, key: &str, rule_id: u32, allow: u32) -> Entry {
        Entry { dev, key: key.as_bytes().to_vec(), value: RuleValue { rule_id, allow } }
    }

    const R: u32 = allow::READ;
    const RW: u32 = allow::READ | allow::WRITE;

    #[test]
    fn golden_tables() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/]\n      write: [/tmp, ~/work]\n      deny: [/etc/shadow, /home/*/.ssh, '**/.env', /proc/kcore]\n    exec: [/usr/bin]\n",
        );
        // rule ids: 0 read /, 1 write /tmp, 2 write ~/work, 3 deny /etc/shadow,
        // 4 deny /home/*/.ssh, 5 deny **/.env, 6 deny /proc/kcore, 7 exec /usr/bin
        assert_eq!(
            c.files,
            vec![
                entry(21, "/", 0, R),
                entry(21, "/kcore/", 6, 0),
                entry(45, "/", 1, RW),
                entry(ROOT, "/", 0, R),
                entry(ROOT, "/etc/shadow/", 3, 0),
                entry(ROOT, "/home/alice/.ssh/", 4, 0),
                entry(ROOT, "/home/alice/work/", 2, RW),
                entry(ROOT, "/home/bob/.ssh/", 4, 0),
                // A rule below a mount point also lands on the filesystem underneath,
                // where it names a directory the mount hides: harmless.
                entry(ROOT, "/proc/kcore/", 6, 0),
                entry(ROOT, "/tmp/", 1, RW),
            ]
        );
        assert_eq!(c.names, vec![(".env".to_owned(), RuleValue { rule_id: 5, allow: 0 })]);
        // Denied files by identity, so that a hard link elsewhere is denied too.
        let deny = |rule_id| RuleValue { rule_id, allow: 0 };
        assert_eq!(c.denied_inodes, vec![(ROOT, 817, deny(3)), (ROOT, 9001, deny(4)), (ROOT, 9002, deny(4))]);
        // The library directories may be mapped executable, not executed.
        assert_eq!(
            c.exec,
            vec![entry(ROOT, "/usr/bin/", 7, allow::EXEC | allow::MAP), entry(ROOT, "/usr/lib/", 8, allow::MAP)]
        );
        assert_eq!(c.rules[8].text, "the system's library directories (mapped, not executed)");
        assert_eq!(c.rules[4].text, "/home/*/.ssh");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn a_filesystem_without_a_covering_rule_gets_no_root_entry() {
        let c = compiled("version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/usr]\n");
        assert_eq!(c.files, vec![entry(ROOT, "/usr/", 0, R)]);
    }

    #[test]
    fn sections_left_out_are_unrestricted_and_empty_ones_allow_nothing() {
        let c = compiled("version: 1\nprofiles:\n  - name: p\n");
        assert!(c.files.contains(&entry(ROOT, "/", 0, RW)), "{:?}", c.files);
        assert!(c.files.contains(&entry(21, "/", 0, RW)), "{:?}", c.files);
        // Any program may run, through the loader too.
        assert!(c.exec.contains(&entry(ROOT, "/", 1, allow::EXEC | allow::MAP | allow::LOADER)), "{:?}", c.exec);
        let none = compiled("version: 1\nprofiles:\n  - name: p\n    exec: []\n    files: {}\n");
        assert!(none.files.is_empty());
        // Nothing may run; the system's libraries may only be mapped.
        assert!(none.exec.iter().all(|e| e.value.allow == allow::MAP), "{:?}", none.exec);
    }

    #[test]
    fn a_bind_mount_does_not_add_entries_of_its_own() {
        // /tmp/alias is a bind of /etc: files there are named /etc/... by the kernel
        // walk and by userspace, and the rule on /etc must be the one that applies.
        let c =
            compiled("version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/etc]\n      deny: [/tmp/alias]\n");
        assert!(c.files.contains(&entry(ROOT, "/etc/", 0, R)), "{:?}", c.files);
        assert!(
            !c.files.iter().any(|e| e.dev == ROOT && e.key.starts_with(b"/etc/") && e.value.allow == 0),
            "{:?}",
            c.files
        );
    }

    #[test]
    fn overlapping_expansions_keep_the_stricter_rule() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    files:\n      write: [~/.ssh]\n      deny: [/home/*/.ssh]\n",
        );
        assert!(c.files.contains(&entry(ROOT, "/home/alice/.ssh/", 1, 0)), "{:?}", c.files);
    }

    #[test]
    fn denied_inodes_leave_out_what_a_longer_entry_allows() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/, /srv/secret/open]\n      deny: [/srv/secret]\n",
        );
        assert_eq!(c.denied_inodes, vec![(ROOT, 1, RuleValue { rule_id: 2, allow: 0 })]);
    }

    #[test]
    fn globs_within_a_component_expand_against_existing_entries() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/]\n      deny: [/etc/ssh/ssh_host_*_key]\n",
        );
        assert!(c.files.contains(&entry(ROOT, "/etc/ssh/ssh_host_rsa_key/", 1, 0)), "{:?}", c.files);
        assert!(!c.files.iter().any(|e| e.key == b"/etc/ssh/ssh_host_rsa_key.pub/"), "{:?}", c.files);
        assert!(!c.files.iter().any(|e| e.key == b"/etc/ssh/sshd_config/"), "{:?}", c.files);
    }

    #[test]
    fn read_and_write_on_one_path_is_writable() {
        let c = compiled("version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/work]\n      write: [/work]\n");
        assert_eq!(c.files, vec![entry(ROOT, "/work/", 1, RW)]);
    }

    fn net(op: u16, port: u16, addr: &str, prefix: u8, rule_id: u32) -> NetEntry {
        let addr = match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        NetEntry { op, port, addr, prefix, value: RuleValue { rule_id, allow: allow::NET } }
    }

    #[test]
    fn golden_network_entries() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    network:\n      connect: [\"127.0.0.1:8080\", \"10.1.2.3/8:443\", \"[::1]:9000\", \"api.example.com:443\", \"nowhere.invalid:1\"]\n      bind: [\"127.0.0.1:*\"]\n",
        );
        // rule ids: files and exec are unrestricted (0, 1), then the network entries.
        assert_eq!(
            c.net,
            vec![
                net(net_op::CONNECT, 8080, "127.0.0.1", 128, 2),
                net(net_op::CONNECT, 443, "10.0.0.0", 104, 3),
                net(net_op::CONNECT, 9000, "::1", 128, 4),
                net(net_op::CONNECT, 443, "192.0.2.7", 128, 5),
                net(net_op::CONNECT, 443, "2001:db8::7", 128, 5),
                net(net_op::BIND, 0, "127.0.0.1", 128, 7),
            ]
        );
        assert_eq!(c.rules[6].text, "nowhere.invalid:1");
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        // Left out: anything goes; an empty list: nothing.
        let open = compiled("version: 1\nprofiles:\n  - name: p\n");
        assert_eq!(open.net.len(), 2);
        assert!(open.net.iter().all(|e| e.prefix == 0 && e.port == 0));
        let closed = compiled("version: 1\nprofiles:\n  - name: p\n    network: {connect: [], bind: []}\n");
        assert!(closed.net.is_empty());
    }

    #[test]
    fn only_an_entry_naming_a_device_node_itself_lets_it_be_opened() {
        let c = compiled(
            "version: 1\nprofiles:\n  - name: p\n    files:\n      read: [/dev/vdb, \"/tmp/vd*\", /dev]\n      deny: [/dev/vdd]\n",
        );
        let value = |key: &str| c.files.iter().find(|e| e.key == key.as_bytes()).map(|e| e.value.allow);
        assert_eq!(value("/dev/vdb/"), Some(allow::READ | allow::DEVICES));
        // A node a `*` matched (the agent could have made it) and a directory entry do not.
        assert_eq!(c.files.iter().find(|e| e.dev == 45 && e.key == b"/vdc/").map(|e| e.value.allow), Some(allow::READ));
        assert_eq!(value("/dev/"), Some(allow::READ));
        assert_eq!(value("/dev/vdd/"), Some(0));
    }

    #[test]
    fn only_an_entry_naming_a_loader_itself_lets_it_run_directly() {
        let c = compiled("version: 1\nprofiles:\n  - name: p\n    exec: [/usr, /usr/lib/ld-linux-x86-64.so.2]\n");
        let value = |key: &str| c.exec.iter().find(|e| e.key == key.as_bytes()).map(|e| e.value.allow);
        assert_eq!(value("/usr/lib/ld-linux-x86-64.so.2/"), Some(allow::EXEC | allow::MAP | allow::LOADER));
        assert_eq!(value("/usr/"), Some(allow::EXEC | allow::MAP));
        // A library directory under an exec entry keeps what the entry allows.
        assert_eq!(value("/usr/lib/"), Some(allow::EXEC | allow::MAP));
        // Any program may run under `/`: through the loader too.
        let all = compiled("version: 1\nprofiles:\n  - name: p\n    exec: [/]\n");
        assert_eq!(
            all.exec.iter().find(|e| e.key == b"/").map(|e| e.value.allow),
            Some(allow::EXEC | allow::MAP | allow::LOADER)
        );
    }

    #[test]
    fn an_entry_through_a_symlink_is_noted_with_the_name_to_write() {
        let c = compiled("version: 1\nprofiles:\n  - name: p\n    exec: [/usr, /lib64/ld.so]\n");
        assert!(
            c.notes.iter().any(|n| n.contains("/lib64/ld.so goes through a symlink")
                && n.ends_with("write /usr/lib/ld-linux-x86-64.so.2")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn home_without_a_home_directory_is_noted() {
        let policy = parse_policy("version: 1\nprofiles:\n  - name: p\n    files:\n      deny: [~/.aws]\n").unwrap();
        let mounts = MountTable::parse(MOUNTS);
        let env = Environment {
            home: None,
            mounts: &mounts,
            list_dir: &|_| Vec::new(),
            resolve_host: &|_| Vec::new(),
            files_under: &|_| Vec::new(),
            is_raw_device: &|_| false,
            is_loader: &|_| false,
            canonical: &|_| None,
        };
        let c = compile(&policy.profiles[0], &env);
        assert!(c.files.is_empty());
        assert_eq!(c.notes.len(), 1);
    }
}
