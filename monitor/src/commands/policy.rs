//! `agent-monitor policy check|default|explain`.

use std::path::Path;

use crate::{
    mounts::MountTable,
    policy::{
        self, DEFAULT_POLICY,
        compile::compile,
        model::{ConnectTarget, Pattern},
    },
};

/// `policy check FILE`: 0 if valid, 1 with every error listed.
pub fn check(file: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    match policy::parse_policy(&text) {
        Ok(policy) => {
            let names: Vec<&str> = policy.profiles.iter().map(|p| p.name.as_str()).collect();
            println!("{}: ok ({} profile(s): {})", file.display(), names.len(), names.join(", "));
            // What the daemon would adopt, and whether each named program is there.
            for profile in &policy.profiles {
                for selector in &profile.selectors {
                    let missing: Vec<&str> = [&selector.exe, &selector.parent_exe]
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .filter(|path| !Path::new(path).exists())
                        .collect();
                    let note = if missing.is_empty() {
                        String::new()
                    } else {
                        format!(" (not on this host: {}; matches nothing here)", missing.join(", "))
                    };
                    println!("  daemon adopts into {}: {}{note}", profile.name, selector.origin);
                }
            }
            Ok(0)
        }
        Err(errors) => {
            println!("{}: {} error(s)", file.display(), errors.len());
            for error in errors {
                println!("  {error}");
            }
            Ok(1)
        }
    }
}

pub fn default() -> anyhow::Result<i32> {
    print!("{DEFAULT_POLICY}");
    Ok(0)
}

/// `policy explain [FILE] [--profile NAME]`.
pub fn explain(file: Option<&Path>, profile: Option<&str>) -> anyhow::Result<i32> {
    let profile = super::run::choose_profile(file, profile)?;
    let mounts = MountTable::load()?;
    let home = crate::principal::invoking_user().home;
    let environment = crate::policy::host::environment(home, &mounts);
    let compiled = compile(&profile, &environment);
    let mode = match profile.mode {
        policy::Mode::Audit => "audit",
        policy::Mode::Enforce => "enforce",
    };
    println!("profile {} (mode {mode}, on_violation {})", profile.name, profile.on_violation.as_str());
    println!("  what no entry covers is a violation; the longest matching entry decides");
    if profile.files.is_none() {
        println!("  files: (no section) opens are not restricted");
    }
    if profile.files.is_some() && !profile.allow_io_uring {
        println!(
            "  io_uring: refused (its opens would bypass the file checks on this kernel; allow_io_uring: true opts in)"
        );
    } else if profile.allow_io_uring {
        println!("  io_uring: allowed; opens made through it are NOT checked on this kernel");
    }
    if profile.exec.is_none() {
        println!("  exec: (no section) any program may run");
    }
    if profile.connect.is_none() {
        println!("  network.connect: (not given) connections and sends are not restricted");
    }
    if profile.bind.is_none() {
        println!("  network.bind: (not given) binding is not restricted");
    }
    for rule in profile.files.iter().flatten() {
        let how = match &rule.pattern {
            Pattern::Named(_) => "kernel: file-name table, checked at every open (wins over path entries)",
            p if p.has_wildcard() => "kernel: * expanded against existing directories when the policy is loaded",
            _ => "kernel: path table, checked at every open before the syscall returns",
        };
        println!("  {:<40} {how}", rule.origin.to_string());
    }
    for rule in profile.exec.iter().flatten() {
        println!("  {:<40} kernel: exec table, checked before the new program runs", rule.origin.to_string());
    }
    for rule in profile.connect.iter().flatten().chain(profile.bind.iter().flatten()) {
        let how = match rule.target {
            ConnectTarget::Network { .. } => {
                "kernel: cgroup socket hooks on the session's cgroup refuse others with EPERM"
            }
            ConnectTarget::Host(_) => "kernel: as addresses, resolved at start and again every 30 s",
        };
        println!("  {:<40} {how}", rule.origin.to_string());
    }
    println!("  enforcement on this kernel: files and exec by SIGKILL from a tracepoint before the syscall returns;");
    println!("  network by cgroup connect/sendmsg/bind hooks that refuse with EPERM (also for io_uring)");
    if profile.on_violation == policy::OnViolation::Deny {
        println!("  on_violation deny: escalated to kill for files and exec (refusing needs BPF LSM)");
    }
    println!(
        "  kernel tables: {} file entries, {} exec entries, {} file-name entries, {} denied files by inode (hard links)",
        compiled.files.len(),
        compiled.exec.len(),
        compiled.names.len(),
        compiled.denied_inodes.len()
    );
    for note in &compiled.notes {
        println!("  note: {note}");
    }
    Ok(0)
}
