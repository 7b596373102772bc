//! A validated policy: what the user's YAML means.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub profiles: Vec<Profile>,
}

impl Policy {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Report what enforce would do; change nothing for the agent.
    Audit,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    /// Refuse the operation (where the kernel can; elsewhere escalates to `Kill`).
    Deny,
    /// Kill the violating process.
    Kill,
    /// Kill every process of the session.
    KillSession,
}

impl OnViolation {
    pub fn as_str(self) -> &'static str {
        match self {
            OnViolation::Deny => "deny",
            OnViolation::Kill => "kill",
            OnViolation::KillSession => "kill-session",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub mode: Mode,
    pub on_violation: OnViolation,
    /// `None`: the profile has no `files:` section, and opens are not restricted.
    pub files: Option<Vec<FileRule>>,
    /// `None`: no `exec:` section, any program may run (`exec: []` allows none).
    pub exec: Option<Vec<PathRule>>,
    /// `None`: no `network:` section (or no `connect:` in it), connections are not
    /// restricted. Also governs sends to an address (UDP).
    pub connect: Option<Vec<ConnectRule>>,
    /// `None`: no `bind:` list, binding is not restricted.
    pub bind: Option<Vec<ConnectRule>>,
    /// `network.families`: socket families (`AF_*` numbers) allowed beyond unix, IPv4,
    /// IPv6 and netlink, which every session may use; any other is refused.
    pub families: Vec<u32>,
    /// Let the agent use io_uring although the profile restricts files: io_uring opens
    /// are then not checked on kernels without BPF LSM.
    pub allow_io_uring: bool,
    /// `match:`: processes the daemon adopts into a session of this profile when they
    /// exec (any selector matches; every field of a selector must).
    pub selectors: Vec<Selector>,
    /// `envelope:`: the capabilities a `run` session keeps, and `no_new_privs`.
    pub envelope: crate::capabilities::CapabilityChoice,
}

/// One entry of `match:`. At least one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// The program executed (an absolute path; matched by the file's identity).
    pub exe: Option<String>,
    /// The program of the parent process.
    pub parent_exe: Option<String>,
    /// A systemd unit (`name.service`, `.scope`, `.slice`): its cgroup or below.
    pub unit: Option<String>,
    /// A cgroup v2 path below the cgroup root (`/system.slice/x.service`), or below.
    pub cgroup: Option<String>,
    /// The real user after the exec: a uid or a user name.
    pub uid: Option<UserSpec>,
    /// `match[i]` and the entry as written, for events.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Id(u32),
    Name(String),
}

/// Where a rule came from in the policy file, to name it in events and errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// `files.read`, `files.write`, `files.deny`, `exec`, `network.connect`, `network.bind`.
    pub field: &'static str,
    pub index: usize,
    /// The entry as written.
    pub text: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}] {}", self.field, self.index, self.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing (a `deny` entry).
    Deny,
    Read,
    /// Read and write (create, truncate, delete).
    Write,
}

/// One component of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A component with `*` in it: `*` matches any run of characters within the
    /// component (`*` alone: any component; `ssh_host_*_key`).
    Glob(String),
}

impl Segment {
    /// Whether `name` (one component) matches this segment.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Segment::Literal(literal) => literal == name,
            Segment::Glob(glob) => glob_match(glob.as_bytes(), name.as_bytes()),
        }
    }
}

/// `*`-only wildcard match (iterative, linear in practice; no backtracking blow-up).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `/a/b`, possibly with `*` components. No segment at all is `/`.
    Absolute(Vec<Segment>),
    /// `~/a/b`: under the home directory of the user the session acts for.
    Home(Vec<Segment>),
    /// `**/NAME`: a file of this name anywhere.
    Named(String),
}

impl Pattern {
    pub fn has_wildcard(&self) -> bool {
        match self {
            Pattern::Absolute(s) | Pattern::Home(s) => s.iter().any(|seg| matches!(seg, Segment::Glob(_))),
            Pattern::Named(_) => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    pub pattern: Pattern,
    pub access: Access,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub pattern: Pattern,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    Network { addr: IpAddr, prefix: u8 },
    Host(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    pub target: ConnectTarget,
    /// `None`: any port.
    pub port: Option<u16>,
    pub origin: Origin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_component() {
        let g = |p: &str| Segment::Glob(p.into());
        assert!(g("*").matches("anything"));
        assert!(g("ssh_host_*_key").matches("ssh_host_ed25519_key"));
        assert!(!g("ssh_host_*_key").matches("ssh_host_ed25519_key.pub"));
        assert!(g("*.pem").matches("server.pem") && !g("*.pem").matches("server.pem.bak"));
        assert!(g("a*b*c").matches("abc") && g("a*b*c").matches("axxbyyc") && !g("a*b*c").matches("axxbyy"));
        assert!(!g("*x").matches(&"a".repeat(10_000)));
        assert!(Segment::Literal("etc".into()).matches("etc"));
    }
}
