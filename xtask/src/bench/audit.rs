//! `bench audit`: Linux audit as a reference. The open+close and stat loops under
//! (a) no monitor, (d) agent-monitor with the realistic profile, (e) auditd with an
//! equivalent rule set: a watch on each literal path the profile denies, and a rule that
//! records every open of the benchmark's process.
//!
//! Audit is host-wide state; the benchmark keeps its mark on the host small:
//! - it runs only when no audit daemon runs, no rule is loaded and audit is not locked;
//! - a task rule (`-a never,task -F gid!=GID`) keeps every other process without an
//!   audit context, and the audited loop runs as a child of a shell in group GID;
//! - afterwards rules are deleted, audit disabled, the backlog limit restored and our
//!   auditd stopped. One rule stays: `-a never,task`. Once audit has been enabled the
//!   kernel gives every new process an audit context (and the syscall slow path) until
//!   reboot, whether or not audit is still enabled; that rule stops it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Scratch, kernel_release, median, parse_ns, realistic_policy, release_binaries, write_json};

/// The group the audited loop runs in.
const GID: u32 = 4242;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Iterations per loop.
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
}

fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl").args(args).output().with_context(|| format!("auditctl {args:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("auditctl {}: {}", args.join(" "), text.trim());
    }
    Ok(text)
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Why audit cannot be used here, or None.
fn unavailable() -> Option<String> {
    let status = match auditctl(&["-s"]) {
        Ok(s) => s,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some() || e.to_string().contains("No such file") => {
            return Some(format!("auditctl not found ({e:#}); apt-get install auditd"));
        }
        Err(e) => return Some(format!("the kernel's audit interface does not answer: {e:#}")),
    };
    if status_field(&status, "enabled") == Some(2) {
        return Some("audit is locked (enabled 2) on this host".into());
    }
    if let Some(pid) = status_field(&status, "pid").filter(|p| *p != 0) {
        return Some(format!("an audit daemon already runs (pid {pid}); the benchmark does not touch a host's audit"));
    }
    match auditctl(&["-l"]) {
        Ok(rules) if rules.trim() == "No rules" => None,
        // The one rule an earlier run of this benchmark leaves (see the module comment).
        Ok(rules) if rules.trim() == "-a never,task" => None,
        Ok(rules) => Some(format!("audit rules are loaded ({}); the benchmark does not touch them", rules.trim())),
        Err(e) => Some(format!("auditctl -l: {e:#}")),
    }
}

/// Our auditd and rules; taken down on drop.
struct Audit {
    auditd: Option<Child>,
    old_backlog: u64,
    log: PathBuf,
    watches: usize,
    watch_failures: Vec<String>,
}

impl Audit {
    fn start(dir: &Path, watch_paths: &[String]) -> anyhow::Result<Audit> {
        let old_backlog = status_field(&auditctl(&["-s"])?, "backlog_limit").unwrap_or(64);
        let log = dir.join("audit.log");
        std::fs::create_dir_all(dir.join("plugins.d"))?;
        let conf = format!(
            "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_group = root\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 4096\nnum_logs = 1\nmax_log_file_action = IGNORE\nspace_left = 75\nspace_left_action = IGNORE\nadmin_space_left = 50\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\nq_depth = 2000\noverflow_action = IGNORE\nplugin_dir = {}\nend_of_event_timeout = 2\n",
            log.display(),
            dir.join("plugins.d").display()
        );
        std::fs::write(dir.join("auditd.conf"), conf)?;
        // The only rule loaded, if any, is the one an earlier run left (`unavailable`):
        // kept, it would deny the benchmark's own loop an audit context.
        auditctl(&["-D"])?;
        // First: nobody but the benchmark's group gets an audit context.
        auditctl(&["-a", "never,task", "-F", &format!("gid!={GID}")])?;
        let mut audit = Audit { auditd: None, old_backlog, log, watches: 0, watch_failures: Vec::new() };
        audit.auditd = Some(
            Command::new("auditd")
                .args(["-n", "-s", "nochange", "-c"])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("auditd.stderr"))?)
                .spawn()
                .context("starting auditd")?,
        );
        let pid = audit.auditd.as_ref().map_or(0, Child::id) as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while status_field(&auditctl(&["-s"])?, "pid") != Some(pid) {
            if Instant::now() > deadline {
                bail!(
                    "auditd did not register: {}",
                    std::fs::read_to_string(dir.join("auditd.stderr")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        auditctl(&["-b", "8192"])?;
        for path in watch_paths {
            match auditctl(&["-w", path, "-p", "rwa", "-k", "am-bench-deny"]) {
                Ok(_) => audit.watches += 1,
                Err(e) => audit.watch_failures.push(format!("{path}: {e:#}")),
            }
        }
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "open,openat,openat2",
            "-F",
            &format!("gid={GID}"),
            "-k",
            "am-bench",
        ])?;
        auditctl(&["-e", "1"])?;
        Ok(audit)
    }

    fn records(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .map(|t| {
                t.lines().filter(|l| l.starts_with("type=SYSCALL") && l.contains("key=\"am-bench\"")).count() as u64
            })
            .unwrap_or(0)
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = auditctl(&["-e", "0"]);
        let _ = auditctl(&["-D"]);
        let _ = auditctl(&["-a", "never,task"]);
        let _ = auditctl(&["-b", &self.old_backlog.to_string()]);
        if let Some(mut child) = self.auditd.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// The literal paths the realistic profile denies (globs cannot be watched), `~` as
/// root's home.
fn denied_paths(policy: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut in_deny = false;
    for line in policy.lines() {
        if line.trim_start() == "deny:" {
            in_deny = true;
            continue;
        }
        if in_deny {
            let Some(item) = line.trim_start().strip_prefix("- ") else {
                in_deny = false;
                continue;
            };
            let item = item.trim().trim_matches('"');
            let item = item.strip_prefix('~').map_or(item.to_owned(), |rest| format!("/root{rest}"));
            if !item.contains('*') {
                paths.push(item);
            }
        }
    }
    paths
}

/// Installs Debian's auditd if `auditctl` is missing, without starting it: a
/// `policy-rc.d` refuses the package's start while it installs (unless the host has one
/// of its own), and the unit is disabled again afterwards. The
/// benchmark starts an auditd of its own and stops it at the end.
fn ensure_auditd() -> anyhow::Result<()> {
    if Command::new("auditctl").arg("-v").output().is_ok() {
        return Ok(());
    }
    println!("audit: installing auditd (apt-get install auditd, not started)");
    let policy_rc = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy_rc.exists();
    if ours {
        std::fs::write(
            policy_rc,
            "#!/bin/sh
# agent-monitor bench audit: no service starts while auditd installs
exit 101
",
        )?;
        std::fs::set_permissions(policy_rc, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", "auditd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if ours {
        std::fs::remove_file(policy_rc)?;
    }
    match installed {
        Ok(status) if status.success() => {}
        Ok(status) => bail!("apt-get install auditd failed ({status})"),
        Err(error) => bail!("running apt-get: {error}"),
    }
    // The package enables the unit for the next boot; `systemctl disable` undoes that
    // with or without a running systemd.
    let _ = Command::new("systemctl").args(["disable", "--quiet", "auditd"]).status();
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let loops = ["open", "stat"];
    if let Err(error) = ensure_auditd() {
        println!("audit: could not install auditd: {error:#}");
    }
    if let Some(reason) = unavailable() {
        println!("audit: NOT MEASURED: {reason}");
        write_json(
            "audit",
            &json!({"benchmark": "audit", "kernel": kernel_release(), "audit_available": false, "reason": reason}),
        )?;
        return Ok(());
    }
    let scratch = Scratch::new("audit")?;
    let policy_text = realistic_policy(&monitor, 9)?;
    let policy = scratch.path("realistic.yaml");
    std::fs::write(&policy, &policy_text)?;
    let watch = denied_paths(&policy_text);
    let n = args.iterations.to_string();
    let audit = Audit::start(&scratch.path("audit"), &watch)?;
    let mut results = vec![[Vec::new(), Vec::new(), Vec::new()]; loops.len()];
    let started = Instant::now();
    let records_before = audit.records();
    let mut audited_opens = 0u64;
    for _ in 0..args.rounds {
        for (l, kind) in loops.iter().enumerate() {
            let bare = Command::new(&probe).args(["loop", kind, &n, "-"]).output()?;
            results[l][0].push(parse_ns(&bare.stdout)?);
            let session = Command::new(&monitor)
                .args(["run", "--standalone", "--profile", "default", "--policy"])
                .arg(&policy)
                .args(["--events", "/dev/null", "--"])
                .arg(&probe)
                .args(["loop", kind, &n, "-"])
                .stderr(Stdio::null())
                .output()?;
            results[l][1].push(parse_ns(&session.stdout).context("the loop in a session")?);
            // A shell in the audited group forks the loop: the child gets an audit
            // context at fork (`; :` keeps the shell from exec'ing it directly).
            let audited = Command::new("setpriv")
                .args(["--regid", &GID.to_string(), "--clear-groups", "--", "sh", "-c"])
                .arg(format!("{} loop {kind} {n} -; :", probe.display()))
                .output()?;
            results[l][2].push(parse_ns(&audited.stdout).context("the loop under audit")?);
            if *kind == "open" {
                audited_opens += args.iterations;
            }
        }
    }
    // Let auditd write out what it has.
    std::thread::sleep(Duration::from_secs(2));
    let records = audit.records() - records_before;
    let lost = status_field(&auditctl(&["-s"])?, "lost").unwrap_or(0);
    let (watches, failures) = (audit.watches, audit.watch_failures.clone());
    drop(audit);
    if records == 0 {
        bail!(
            "audit recorded none of the {audited_opens} opens it should have: the (e) column would not measure audit"
        );
    }

    println!(
        "open and stat under Linux audit, median of {} alternating rounds of {} ({:.0?}); ns per iteration, ratio to (a); kernel {}",
        args.rounds,
        args.iterations,
        started.elapsed(),
        kernel_release()
    );
    println!(
        "  {:<6} {:>18} {:>26} {:>26}",
        "loop", "(a) no monitor", "(d) agent-monitor, realistic", "(e) auditd, equivalent rules"
    );
    let mut rows = serde_json::Map::new();
    for (l, kind) in loops.iter().enumerate() {
        let m: Vec<f64> = results[l].iter_mut().map(|v| median(v)).collect();
        println!(
            "  {:<6} {:>18.0} {:>18.0} ({:.3}) {:>18.0} ({:.3})",
            kind,
            m[0],
            m[1],
            m[1] / m[0],
            m[2],
            m[2] / m[0]
        );
        rows.insert(
            kind.to_string(),
            json!({"none": m[0].round(), "agent_monitor": m[1].round(), "audit": m[2].round(),
                   "agent_monitor_ratio": m[1] / m[0], "audit_ratio": m[2] / m[0]}),
        );
    }
    println!(
        "  audit: {watches} path watches (of {} literal denied paths; {} refused, e.g. paths whose directory does not exist), 1 open rule; {records} of {audited_opens} audited opens in audit.log, kernel lost counter {lost}",
        watch.len(),
        failures.len()
    );
    println!(
        "  left on the host: the audit rule `-a never,task` (see xtask/src/bench/audit.rs); audit disabled, auditd stopped"
    );
    write_json(
        "audit",
        &json!({"benchmark": "audit", "kernel": kernel_release(), "audit_available": true, "rounds": args.rounds,
                "iterations": args.iterations, "unit": "ns per iteration (median)", "loops": rows,
                "watches": watches, "watch_failures": failures, "open_records": records, "audited_opens": audited_opens,
                "kernel_lost": lost, "left_on_host": "auditctl rule `-a never,task`"}),
    )?;
    Ok(())
}
