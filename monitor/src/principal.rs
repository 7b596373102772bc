//! The user a session acts for (`--on-behalf-of`): uid, groups and home directory from
//! the system's user database (/etc/passwd, /etc/group).

use std::fmt;

use monitor_common::policy::{PRINCIPAL_GROUPS, Principal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Primary group first, then supplementary groups.
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} in /etc/passwd; give an existing user name or a numeric uid")]
    Unknown(String),
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

/// Finds `spec` (a user name or a numeric uid) in `passwd` and its groups in `group`.
/// A numeric uid with no entry is accepted with no groups and no home.
pub fn lookup_in(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == spec || (spec.parse::<u32>().is_ok() && f[2] == spec)));
    let (name, uid, primary, home) = match entry {
        Some(f) => (f[0].to_owned(), f[2].parse().unwrap_or(u32::MAX), f[3].parse::<u32>().ok(), Some(f[5].to_owned())),
        None => match spec.parse::<u32>() {
            Ok(uid) => (spec.to_owned(), uid, None, None),
            Err(_) => return Err(UserError::Unknown(spec.to_owned())),
        },
    };
    let mut groups: Vec<u32> = primary.into_iter().collect();
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4
            && f[3].split(',').any(|member| member == name)
            && let Ok(gid) = f[2].parse::<u32>()
            && !groups.contains(&gid)
        {
            groups.push(gid);
        }
    }
    Ok(User { name, uid, groups, home })
}

pub fn lookup(spec: &str) -> Result<User, UserError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    lookup_in(spec, &passwd, &group)
}

/// The user who ran the launcher: `SUDO_UID` when run through sudo, else the real uid.
pub fn invoking_user() -> User {
    let uid = std::env::var("SUDO_UID").ok().and_then(|u| u.parse::<u32>().ok()).unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }
    });
    lookup(&uid.to_string()).unwrap_or(User { name: uid.to_string(), uid, groups: Vec::new(), home: None })
}

impl User {
    /// The kernel's view. Groups past `PRINCIPAL_GROUPS` are dropped (the check then
    /// errs on the side of refusing).
    pub fn principal(&self) -> Principal {
        let mut groups = [0u32; PRINCIPAL_GROUPS];
        let n = self.groups.len().min(PRINCIPAL_GROUPS);
        groups[..n].copy_from_slice(&self.groups[..n]);
        Principal { uid: self.uid, ngroups: n as u32, groups }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nalice:x:1000:\nbob:x:1001:\ndev:x:2000:alice,bob\nops:x:2001:bob\n";

    #[test]
    fn by_name_and_by_uid() {
        let alice = lookup_in("alice", PASSWD, GROUP).unwrap();
        assert_eq!(
            alice,
            User { name: "alice".into(), uid: 1000, groups: vec![1000, 2000], home: Some("/home/alice".into()) }
        );
        assert_eq!(lookup_in("1001", PASSWD, GROUP).unwrap().groups, vec![1001, 2000, 2001]);
        let unknown = lookup_in("4242", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.groups.len(), unknown.home), (4242, 0, None));
        assert_eq!(lookup_in("mallory", PASSWD, GROUP), Err(UserError::Unknown("mallory".into())));
    }

    #[test]
    fn principal_carries_the_groups() {
        let p = lookup_in("bob", PASSWD, GROUP).unwrap().principal();
        assert_eq!((p.uid, p.ngroups, &p.groups[..3]), (1001, 3, &[1001, 2000, 2001][..]));
    }
}
