//! Policy YAML -> validated [`Policy`], reporting every error (not only the first),
//! each with the profile, the field and how to fix it.
//!
//! The YAML is first read as a plain tree (syntax errors carry line and column), then
//! walked by hand: that is what lets validation go on past the first problem, and
//! reject unknown fields with the list of the known ones.

use std::{fmt, net::IpAddr};

use serde_json::{Map, Value};

use crate::capabilities::{self, CapabilityChoice};

use super::model::{
    Access, ConnectRule, ConnectTarget, FileRule, Mode, OnViolation, Origin, PathRule, Pattern, Policy, Profile,
    Segment, Selector, UserSpec,
};

/// Longest path a rule may name (the kernel's rule keys hold 248 bytes).
pub const MAX_RULE_PATH: usize = 240;
/// Longest `**/NAME` file name.
pub const MAX_RULE_NAME: usize = 62;
/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Profile name (or `profiles[i]` when it has none); `None` for file-level errors.
    pub profile: Option<String>,
    /// Where in the document: `version`, `files.read[2]`, ...
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.profile {
            Some(profile) => write!(f, "profile {profile}: {}: {}; fix: {}", self.field, self.problem, self.fix),
            None => write!(f, "{}: {}; fix: {}", self.field, self.problem, self.fix),
        }
    }
}

struct Errors {
    list: Vec<PolicyError>,
    profile: Option<String>,
}

impl Errors {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.list.push(PolicyError {
            profile: self.profile.clone(),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reports keys of `map` not in `known`.
fn unknown_fields(map: &Map<String, Value>, known: &[&str], at: &str, errors: &mut Errors) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let field = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            errors.add(field, format!("unknown field {key:?}"), format!("use one of: {}", known.join(", ")));
        }
    }
}

fn string_list<'a>(value: Option<&'a Value>, field: &str, errors: &mut Errors) -> Vec<(usize, &'a str)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some((i, s.as_str())),
                Value::Null => {
                    errors.add(
                        format!("{field}[{i}]"),
                        "empty entry (a bare ~ is YAML for nothing)",
                        "write the entry; for the home directory write \"~\" in quotes",
                    );
                    None
                }
                other => {
                    errors.add(
                        format!("{field}[{i}]"),
                        format!("expected a string, found {}", kind(other)),
                        "quote the entry",
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.add(
                field,
                format!("expected a list, found {}", kind(other)),
                format!("write {field}: [entry, ...]"),
            );
            Vec::new()
        }
    }
}

/// Parses a path pattern: `/abs/path`, `~/in/home`, `**/name`; `*` as a whole component.
pub fn parse_pattern(text: &str) -> Result<Pattern, (String, String)> {
    if text.is_empty() {
        return Err(("empty path".into(), "remove the entry or write an absolute path".into()));
    }
    if text.as_bytes().contains(&0) {
        return Err(("path contains a NUL byte".into(), "remove it".into()));
    }
    if let Some(name) = text.strip_prefix("**/") {
        if name.is_empty() || name.contains('/') || name.contains('*') || name == "." || name == ".." {
            return Err((
                format!("{text:?}: `**/` must be followed by one file name"),
                "write **/NAME, e.g. **/.env".into(),
            ));
        }
        if name.len() > MAX_RULE_NAME {
            return Err((format!("file name longer than {MAX_RULE_NAME} bytes"), "shorten it".into()));
        }
        return Ok(Pattern::Named(name.to_owned()));
    }
    let (home, rest) = if text == "~" {
        (true, "")
    } else if let Some(rest) = text.strip_prefix("~/") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix('/') {
        (false, rest)
    } else {
        return Err((
            format!("{text:?} is not an absolute path"),
            format!(
                "write it from the root, e.g. /{}, or under the home directory as ~/{}",
                text.trim_start_matches("./"),
                text.trim_start_matches("./")
            ),
        ));
    };
    if text.len() > MAX_RULE_PATH {
        return Err((format!("path longer than {MAX_RULE_PATH} bytes"), "name a shorter parent directory".into()));
    }
    let mut segments = Vec::new();
    for part in rest.split('/').filter(|p| !p.is_empty()) {
        match part {
            "." | ".." => {
                return Err((
                    format!("{text:?} contains {part:?}"),
                    "write the path without . and .. components".into(),
                ));
            }
            "**" => return Err((format!("{text:?}: ** is only allowed as **/NAME"), "use * for one component".into())),
            p if p.contains("**") => {
                return Err((format!("{text:?}: ** is only allowed as **/NAME"), "use * within one component".into()));
            }
            p if p.contains('*') => segments.push(Segment::Glob(p.to_owned())),
            p => segments.push(Segment::Literal(p.to_owned())),
        }
    }
    Ok(if home { Pattern::Home(segments) } else { Pattern::Absolute(segments) })
}

/// Parses `ADDR[/PREFIX]:PORT`, `[IPV6][/PREFIX]:PORT`, `HOST:PORT`, with `*` or no port
/// for any port.
pub fn parse_connect(text: &str) -> Result<(ConnectTarget, Option<u16>), (String, String)> {
    let fix = "write ADDRESS[/PREFIX]:PORT, [IPV6]:PORT or HOST:PORT (PORT may be *)";
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| (format!("{text:?}: missing ]"), fix.to_owned()))?;
        // [::1]/64:443 or [::1]:443
        let (prefix, port) = match after.split_once(':') {
            Some((prefix, port)) => (prefix, Some(port)),
            None => (after, None),
        };
        (format!("{inside}{prefix}"), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    let port = match port {
        None | Some("*") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err((format!("{text:?}: port {p:?} is not a number from 1 to 65535"), fix.to_owned()));
            }
            Ok(p) => Some(p),
        },
    };
    let (addr, prefix) = match host.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (host.as_str(), None),
    };
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err((format!("{text:?}: prefix /{p} is not 0..={max}"), fix.to_owned())),
            },
        };
        return Ok((ConnectTarget::Network { addr: ip, prefix }, port));
    }
    if prefix.is_some() {
        return Err((format!("{text:?}: {addr:?} is not an IP address"), fix.to_owned()));
    }
    let valid_host = !addr.is_empty()
        && addr.len() <= 253
        && addr.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_host {
        return Err((format!("{text:?}: {addr:?} is neither an IP address nor a host name"), fix.to_owned()));
    }
    Ok((ConnectTarget::Host(addr.to_ascii_lowercase()), port))
}

fn profile(index: usize, value: &Value, errors: &mut Errors) -> Option<Profile> {
    let Value::Object(map) = value else {
        errors.add(
            format!("profiles[{index}]"),
            format!("expected a mapping, found {}", kind(value)),
            "write name:, mode:, files: ...",
        );
        return None;
    };
    let name = match map.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) if !other.is_string() => {
            errors.add(
                format!("profiles[{index}].name"),
                format!("expected a string, found {}", kind(other)),
                "give the profile a name",
            );
            format!("profiles[{index}]")
        }
        _ => {
            errors.add(format!("profiles[{index}].name"), "missing profile name", "add name: <profile name>");
            format!("profiles[{index}]")
        }
    };
    errors.profile = Some(name.clone());
    unknown_fields(
        map,
        &[
            "name",
            "description",
            "mode",
            "on_violation",
            "files",
            "network",
            "exec",
            "allow_io_uring",
            "match",
            "envelope",
        ],
        "",
        errors,
    );
    let selectors = selectors(map.get("match"), errors);
    let envelope = envelope(map.get("envelope"), errors);
    let allow_io_uring = match map.get("allow_io_uring") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => {
            errors.add(
                "allow_io_uring",
                format!("expected true or false, found {}", kind(other)),
                "write allow_io_uring: true or leave it out",
            );
            false
        }
    };

    let mode = match map.get("mode") {
        None => Mode::Enforce,
        Some(Value::String(s)) if s == "enforce" => Mode::Enforce,
        Some(Value::String(s)) if s == "audit" => Mode::Audit,
        Some(other) => {
            errors.add("mode", format!("{other} is not a mode"), "use mode: audit or mode: enforce");
            Mode::Enforce
        }
    };
    let on_violation = match map.get("on_violation") {
        None => OnViolation::Kill,
        Some(Value::String(s)) if s == "deny" => OnViolation::Deny,
        Some(Value::String(s)) if s == "kill" => OnViolation::Kill,
        Some(Value::String(s)) if s == "kill-session" => OnViolation::KillSession,
        Some(other) => {
            errors.add("on_violation", format!("{other} is not an action"), "use deny, kill or kill-session");
            OnViolation::Kill
        }
    };

    let mut files = Vec::new();
    let files_given = !matches!(map.get("files"), None | Some(Value::Null));
    match map.get("files") {
        None | Some(Value::Null) => {}
        Some(Value::Object(f)) => {
            unknown_fields(f, &["read", "write", "deny"], "files", errors);
            for (field, access) in
                [("files.read", Access::Read), ("files.write", Access::Write), ("files.deny", Access::Deny)]
            {
                let key = &field[6..];
                for (i, text) in string_list(f.get(key), field, errors) {
                    match parse_pattern(text) {
                        Ok(pattern) => files.push(FileRule {
                            pattern,
                            access,
                            origin: Origin { field, index: i, text: text.to_owned() },
                        }),
                        Err((problem, fix)) => errors.add(format!("{field}[{i}]"), problem, fix),
                    }
                }
            }
        }
        Some(other) => errors.add(
            "files",
            format!("expected a mapping, found {}", kind(other)),
            "write files: {read: [...], write: [...], deny: [...]}",
        ),
    }
    // The same path both allowed and denied has no most specific entry. (In read and
    // write it is simply writable: write implies read.)
    for (i, a) in files.iter().enumerate() {
        for b in &files[i + 1..] {
            if a.pattern == b.pattern && (a.access == Access::Deny) != (b.access == Access::Deny) {
                errors.add(
                    format!("{}[{}]", b.origin.field, b.origin.index),
                    format!("{:?} is also in {}[{}]", b.origin.text, a.origin.field, a.origin.index),
                    "keep the path in one list only",
                );
            }
        }
    }

    let mut exec = Vec::new();
    let exec_given = !matches!(map.get("exec"), None | Some(Value::Null));
    for (i, text) in string_list(map.get("exec"), "exec", errors) {
        match parse_pattern(text) {
            Ok(Pattern::Named(_)) => {
                errors.add(format!("exec[{i}]"), "**/NAME is not allowed in exec", "name the directory of the programs")
            }
            Ok(pattern) => {
                exec.push(PathRule { pattern, origin: Origin { field: "exec", index: i, text: text.to_owned() } })
            }
            Err((problem, fix)) => errors.add(format!("exec[{i}]"), problem, fix),
        }
    }

    let (mut connect, mut bind, mut families) = (None, None, Vec::new());
    match map.get("network") {
        None | Some(Value::Null) => {}
        Some(Value::Object(n)) => {
            unknown_fields(n, &["connect", "bind", "families"], "network", errors);
            for (i, name) in string_list(n.get("families"), "network.families", errors) {
                match crate::socket_families::by_name(name) {
                    Some(family) => families.push(family),
                    None if crate::socket_families::always_allowed(name) => errors.add(
                        format!("network.families[{i}]"),
                        format!("{name} sockets are always allowed"),
                        "leave it out: only unix, inet, inet6 and netlink need no entry",
                    ),
                    None => errors.add(
                        format!("network.families[{i}]"),
                        format!("unknown socket family {name:?}"),
                        format!("name one of {}", crate::socket_families::names().collect::<Vec<_>>().join(", ")),
                    ),
                }
            }
            for (key, field, out) in [("connect", "network.connect", &mut connect), ("bind", "network.bind", &mut bind)]
            {
                if matches!(n.get(key), None | Some(Value::Null)) {
                    continue;
                }
                let mut rules = Vec::new();
                for (i, text) in string_list(n.get(key), field, errors) {
                    match parse_connect(text) {
                        Ok((target, port)) => rules.push(ConnectRule {
                            target,
                            port,
                            origin: Origin { field, index: i, text: text.to_owned() },
                        }),
                        Err((problem, fix)) => errors.add(format!("{field}[{i}]"), problem, fix),
                    }
                }
                *out = Some(rules);
            }
        }
        Some(other) => errors.add(
            "network",
            format!("expected a mapping, found {}", kind(other)),
            "write network: {connect: [...]}",
        ),
    }
    errors.profile = None;
    Some(Profile {
        name,
        mode,
        on_violation,
        files: files_given.then_some(files),
        exec: exec_given.then_some(exec),
        connect,
        bind,
        families,
        allow_io_uring,
        selectors,
        envelope,
    })
}

/// `envelope: {capabilities: {add: [...], drop: [...]}, no_new_privs: true}`: the
/// capabilities relative to the container runtimes' default (`ALL` names every one).
fn envelope(value: Option<&Value>, errors: &mut Errors) -> CapabilityChoice {
    let mut envelope = CapabilityChoice::default();
    let map = match value {
        None | Some(Value::Null) => return envelope,
        Some(Value::Object(map)) => map,
        Some(other) => {
            errors.add(
                "envelope",
                format!("expected a mapping, found {}", kind(other)),
                "write envelope: {capabilities: {add: [...]}}",
            );
            return envelope;
        }
    };
    unknown_fields(map, &["capabilities", "no_new_privs"], "envelope", errors);
    match map.get("no_new_privs") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => envelope.no_new_privs = false,
        Some(other) => errors.add(
            "envelope.no_new_privs",
            format!("expected true or false, found {}", kind(other)),
            "write no_new_privs: false to let set-uid programs raise privileges, or leave it out",
        ),
    }
    match map.get("capabilities") {
        None | Some(Value::Null) => {}
        Some(Value::Object(caps)) => {
            unknown_fields(caps, &["add", "drop"], "envelope.capabilities", errors);
            for (key, out) in [("add", &mut envelope.add), ("drop", &mut envelope.drop)] {
                let field = format!("envelope.capabilities.{key}");
                for (i, name) in string_list(caps.get(key), &field, errors) {
                    if name.eq_ignore_ascii_case("all") {
                        out.0 |= capabilities::ALL.0;
                    } else if let Some(number) = capabilities::number(name) {
                        out.0 |= 1 << number;
                    } else {
                        errors.add(
                            format!("{field}[{i}]"),
                            format!("{name:?} is not a capability"),
                            "use a name from capabilities(7), such as CAP_SYS_PTRACE, or ALL",
                        );
                    }
                }
            }
        }
        Some(other) => errors.add(
            "envelope.capabilities",
            format!("expected a mapping, found {}", kind(other)),
            "write capabilities: {add: [CAP_SYS_PTRACE], drop: [CAP_NET_RAW]}",
        ),
    }
    envelope
}

/// `match:`: a list of mappings with the keys of [`Selector`].
fn selectors(value: Option<&Value>, errors: &mut Errors) -> Vec<Selector> {
    const KEYS: [&str; 5] = ["exe", "parent_exe", "unit", "cgroup", "uid"];
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.add(
                "match",
                format!("expected a list, found {}", kind(other)),
                "write match: [{exe: /usr/bin/agent}]",
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("match[{i}]");
        let Value::Object(map) = item else {
            errors.add(
                &at,
                format!("expected a mapping, found {}", kind(item)),
                "write {exe: /path}, {unit: name.service}, {uid: 1000}, ...",
            );
            continue;
        };
        unknown_fields(map, &KEYS, &at, errors);
        let mut selector = Selector::default();
        let text = |key: &str, errors: &mut Errors| -> Option<String> {
            match map.get(key)? {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.add(
                        format!("{at}.{key}"),
                        format!("expected a string, found {}", kind(other)),
                        "quote the value",
                    );
                    None
                }
            }
        };
        for key in ["exe", "parent_exe"] {
            if let Some(path) = text(key, errors) {
                if !path.starts_with('/') || path.contains('\0') {
                    errors.add(
                        format!("{at}.{key}"),
                        format!("{path:?} is not an absolute path"),
                        "write the program's absolute path",
                    );
                } else if key == "exe" {
                    selector.exe = Some(path);
                } else {
                    selector.parent_exe = Some(path);
                }
            }
        }
        if let Some(unit) = text("unit", errors) {
            let valid = [".service", ".scope", ".slice"]
                .iter()
                .any(|suffix| unit.len() > suffix.len() && unit.ends_with(suffix))
                && !unit.contains('/');
            if valid {
                selector.unit = Some(unit);
            } else {
                errors.add(
                    format!("{at}.unit"),
                    format!("{unit:?} is not a systemd unit name"),
                    "write the full unit name, e.g. agent.service",
                );
            }
        }
        if let Some(cgroup) = text("cgroup", errors) {
            if cgroup.starts_with('/') && !cgroup.split('/').any(|c| c == "..") {
                selector.cgroup = Some(cgroup);
            } else {
                errors.add(
                    format!("{at}.cgroup"),
                    format!("{cgroup:?} is not a cgroup path"),
                    "write the path below the cgroup root, e.g. /system.slice/agent.service",
                );
            }
        }
        if selector.unit.is_some() && selector.cgroup.is_some() {
            errors.add(
                &at,
                "unit and cgroup in one selector",
                "give either unit: or cgroup: (a unit is a cgroup), or two selectors",
            );
        }
        match map.get("uid") {
            None => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|u| u < u32::MAX as u64) => {
                selector.uid = Some(UserSpec::Id(n.as_u64().unwrap_or_default() as u32));
            }
            Some(Value::String(name))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) =>
            {
                selector.uid = Some(UserSpec::Name(name.clone()));
            }
            Some(other) => errors.add(
                format!("{at}.uid"),
                format!("{other} is not a uid or user name"),
                "write a number or a user name",
            ),
        }
        let set = [&selector.exe, &selector.parent_exe, &selector.unit, &selector.cgroup].iter().any(|f| f.is_some())
            || selector.uid.is_some();
        if !set {
            // Keys that were given are reported above; none at all is its own error.
            if map.is_empty() {
                errors.add(
                    &at,
                    "empty selector (it would adopt every process)",
                    format!("give at least one of: {}", KEYS.join(", ")),
                );
            }
            continue;
        }
        selector.origin = Origin { field: "match", index: i, text: serde_json::to_string(item).unwrap_or_default() };
        out.push(selector);
    }
    out
}

/// Parses and validates a policy document.
pub fn parse_policy(text: &str) -> Result<Policy, Vec<PolicyError>> {
    let file_error = |field: &str, problem: String, fix: &str| {
        vec![PolicyError { profile: None, field: field.into(), problem, fix: fix.into() }]
    };
    if text.len() > MAX_POLICY_BYTES {
        return Err(file_error(
            "file",
            format!("{} bytes is larger than {MAX_POLICY_BYTES}", text.len()),
            "split or shorten the policy",
        ));
    }
    let document: Value = match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return Err(file_error(
                "file",
                format!("not valid YAML: {error}"),
                "fix the YAML syntax at the place shown",
            ));
        }
    };
    let mut errors = Errors { list: Vec::new(), profile: None };
    let Value::Object(top) = &document else {
        return Err(file_error(
            "file",
            format!("expected a mapping with version: and profiles:, found {}", kind(&document)),
            "start the file with version: 1",
        ));
    };
    unknown_fields(top, &["version", "profiles"], "", &mut errors);
    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(other) => errors.add("version", format!("version {other} is not supported"), "write version: 1"),
        None => errors.add("version", "missing version", "add version: 1 at the top"),
    }
    let mut profiles = Vec::new();
    match top.get("profiles") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = profile(i, item, &mut errors) {
                    profiles.push(p);
                }
            }
            if items.is_empty() {
                errors.add("profiles", "no profile", "add at least one profile");
            }
        }
        Some(other) => {
            errors.add("profiles", format!("expected a list, found {}", kind(other)), "write profiles: [- name: ...]")
        }
        None => errors.add("profiles", "missing profiles", "add profiles: with at least one profile"),
    }
    for (i, p) in profiles.iter().enumerate() {
        if profiles[..i].iter().any(|q| q.name == p.name) {
            errors.add(
                format!("profiles[{i}].name"),
                format!("profile name {:?} is used twice", p.name),
                "give each profile its own name",
            );
        }
    }
    if errors.list.is_empty() { Ok(Policy { profiles }) } else { Err(errors.list) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
version: 1
profiles:
  - name: coding-agent
    mode: enforce
    on_violation: kill
    files:
      read:  [/usr, /lib, /etc/ssl, /workspace]
      write: [/workspace, /tmp]
      deny:  [/etc/shadow, /root, "/home/*/.ssh", "**/.env", "~/.aws"]
    network:
      connect: ["127.0.0.1:8080", "10.0.0.0/8:443", "[::1]:9000", "api.example.com:443"]
    exec: [/usr/bin, /bin]
"#;

    fn errors_of(text: &str) -> Vec<PolicyError> {
        parse_policy(text).expect_err("should be rejected")
    }

    #[test]
    fn parses_the_documented_example() {
        let policy = parse_policy(EXAMPLE).unwrap();
        let p = policy.profile("coding-agent").unwrap();
        assert_eq!((p.mode, p.on_violation), (Mode::Enforce, OnViolation::Kill));
        let files = p.files.as_ref().unwrap();
        assert_eq!(files.len(), 11);
        assert_eq!(
            files[8].pattern,
            Pattern::Absolute(vec![
                Segment::Literal("home".into()),
                Segment::Glob("*".into()),
                Segment::Literal(".ssh".into())
            ])
        );
        assert_eq!(files[9].pattern, Pattern::Named(".env".into()));
        assert_eq!(files[10].pattern, Pattern::Home(vec![Segment::Literal(".aws".into())]));
        assert_eq!(p.exec.as_ref().unwrap().len(), 2);
        let connect = p.connect.as_ref().unwrap();
        assert_eq!(connect[1].target, ConnectTarget::Network { addr: "10.0.0.0".parse().unwrap(), prefix: 8 });
        assert_eq!(connect[1].port, Some(443));
        assert_eq!(connect[2].target, ConnectTarget::Network { addr: "::1".parse().unwrap(), prefix: 128 });
        assert_eq!(connect[3].target, ConnectTarget::Host("api.example.com".into()));
    }

    #[test]
    fn network_families_are_named_by_linux_name() {
        let policy =
            parse_policy("version: 1\nprofiles:\n  - name: a\n    network:\n      families: [packet, vsock]\n")
                .unwrap();
        assert_eq!(policy.profiles[0].families, [libc::AF_PACKET as u32, libc::AF_VSOCK as u32]);
        assert!(policy.profiles[0].connect.is_none(), "naming families restricts no connection");
        let errors =
            errors_of("version: 1\nprofiles:\n  - name: a\n    network:\n      families: [AF_PACKET, inet6]\n");
        let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.problem.as_str())).collect();
        assert_eq!(
            found,
            [
                ("network.families[0]", "unknown socket family \"AF_PACKET\""),
                ("network.families[1]", "inet6 sockets are always allowed")
            ]
        );
        assert!(errors[0].fix.contains("packet, "), "{}", errors[0].fix);
    }

    #[test]
    fn reports_every_error_with_profile_field_and_fix() {
        let errors = errors_of(
            r#"
version: 2
extra: 1
profiles:
  - name: a
    mode: watch
    on_violation: explode
    files:
      read: [etc, /ok, "/x/../y", "/a/b**"]
      writ: [/tmp]
    network:
      connect: ["1.2.3.4:99999", "10.0.0.0/40:1", "bad host!:1"]
    exec: ["**/x", 5]
    color: blue
  - name: a
"#,
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "extra",
            "version",
            "mode",
            "on_violation",
            "files.read[0]",
            "files.read[2]",
            "files.read[3]",
            "files.writ",
            "network.connect[0]",
            "network.connect[1]",
            "network.connect[2]",
            "exec[0]",
            "exec[1]",
            "color",
            "profiles[1].name",
        ] {
            assert!(fields.contains(&expected), "no error for {expected}: {errors:#?}");
        }
        let relative = errors.iter().find(|e| e.field == "files.read[0]").unwrap();
        assert_eq!(relative.profile.as_deref(), Some("a"));
        assert!(relative.fix.contains("/etc"), "{relative}");
        let unknown = errors.iter().find(|e| e.field == "files.writ").unwrap();
        assert!(unknown.fix.contains("write"), "{unknown}");
    }

    #[test]
    fn the_same_path_allowed_and_denied_is_an_error() {
        let errors = errors_of("version: 1\nprofiles:\n  - name: p\n    files: {read: [/etc], deny: [/etc/]}\n");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, "files.deny[0]");
        // Read and write: write implies read, nothing to resolve.
        assert!(parse_policy("version: 1\nprofiles:\n  - name: p\n    files: {read: [/w], write: [/w]}\n").is_ok());
    }

    #[test]
    fn syntax_and_shape_errors() {
        assert!(errors_of("version: 1\nprofiles: [")[0].problem.contains("YAML"));
        assert_eq!(errors_of("- a\n- b\n")[0].field, "file");
        assert_eq!(errors_of("version: 1\n")[0].field, "profiles");
        assert_eq!(errors_of("version: 1\nprofiles: []\n")[0].field, "profiles");
        assert!(errors_of("version: 1\nprofiles:\n  - mode: audit\n").iter().any(|e| e.field == "profiles[0].name"));
        assert!(errors_of("").iter().any(|e| e.field == "file" || e.field == "version"));
    }

    #[test]
    fn defaults_are_enforce_and_kill_and_absent_sections_are_unrestricted() {
        let policy = parse_policy("version: 1\nprofiles:\n  - name: p\n").unwrap();
        let p = &policy.profiles[0];
        assert_eq!((p.mode, p.on_violation), (Mode::Enforce, OnViolation::Kill));
        assert_eq!((&p.files, &p.exec, &p.connect, &p.bind), (&None, &None, &None, &None));
        let none = parse_policy("version: 1\nprofiles:\n  - name: p\n    exec: []\n").unwrap();
        assert_eq!(none.profiles[0].exec, Some(Vec::new()));
    }

    #[test]
    fn patterns() {
        assert_eq!(parse_pattern("/").unwrap(), Pattern::Absolute(vec![]));
        assert_eq!(parse_pattern("//etc//").unwrap(), Pattern::Absolute(vec![Segment::Literal("etc".into())]));
        assert_eq!(parse_pattern("~").unwrap(), Pattern::Home(vec![]));
        assert!(parse_pattern("**/a/b").is_err());
        assert!(parse_pattern("/a/**").is_err());
        assert!(parse_pattern(&format!("/{}", "a".repeat(300))).is_err());
        assert!(parse_pattern(&format!("**/{}", "a".repeat(63))).is_err());
    }

    #[test]
    fn connect_targets() {
        assert_eq!(parse_connect("127.0.0.1:*").unwrap().1, None);
        assert_eq!(
            parse_connect("[::1]/64:22").unwrap(),
            (ConnectTarget::Network { addr: "::1".parse().unwrap(), prefix: 64 }, Some(22))
        );
        assert!(parse_connect("1.2.3.4:0").is_err());
        assert!(parse_connect("[::1:80").is_err());
        assert!(parse_connect("host.example/8:80").is_err());
    }

    #[test]
    fn match_selectors_are_checked_key_by_key() {
        let ok = parse_policy(
            "version: 1\nprofiles:\n  - name: a\n    match:\n      - {exe: /usr/bin/claude}\n      - {unit: ci.service, uid: builder}\n      - {cgroup: /agents.slice, parent_exe: /usr/bin/runner, uid: 1000}\n",
        )
        .unwrap();
        let selectors = &ok.profiles[0].selectors;
        assert_eq!(selectors.len(), 3);
        assert_eq!(selectors[0].exe.as_deref(), Some("/usr/bin/claude"));
        assert_eq!(selectors[1].uid, Some(UserSpec::Name("builder".into())));
        assert_eq!(selectors[2].uid, Some(UserSpec::Id(1000)));
        assert_eq!(selectors[1].origin.to_string(), r#"match[1] {"uid":"builder","unit":"ci.service"}"#);
        let errors = errors_of(
            "version: 1\nprofiles:\n  - name: a\n    match:\n      - {}\n      - {exe: claude}\n      - {unit: ci}\n      - {cgroup: ../x}\n      - {uid: -1}\n      - {unit: a.service, cgroup: /b}\n      - {exe: /x, colour: red}\n      - 5\n",
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "match[0]",
                "match[1].exe",
                "match[2].unit",
                "match[3].cgroup",
                "match[4].uid",
                "match[5]",
                "match[6].colour",
                "match[7]"
            ],
            "{errors:?}"
        );
        assert!(errors[0].problem.contains("every process"), "an empty selector would adopt everything: {}", errors[0]);
        let not_a_list = errors_of("version: 1\nprofiles:\n  - name: a\n    match: {exe: /x}\n");
        assert_eq!(not_a_list[0].field, "match");
    }

    #[test]
    fn hostile_input_does_not_panic() {
        // Deep nesting, anchors, odd scalars: errors, never a panic.
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let _ = parse_policy(&deep);
        let _ = parse_policy("a: &x [*x]");
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
        let _ = parse_policy(bomb);
        let _ = parse_policy("version: 1\nprofiles:\n  - name: \"\\0\"\n    files: {read: [\"/a\\0b\"]}\n");
    }
}
