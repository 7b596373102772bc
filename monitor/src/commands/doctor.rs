//! `agent-monitor doctor`: what this kernel supports and which tier will enforce each
//! resource. It loads the programs exactly as `run` does (and unloads them), so what
//! it prints is what a session would get.

use serde::Serialize;

use crate::{
    cgroup::cgroup2_mount,
    enforcement::{Enforcement, LsmChoice, Tier},
    loader::{LsmReport, Probes, Resource},
    verifier::{INSN_BUDGET, INSN_LIMIT, ProgramRecord, Verifications},
};

#[derive(Serialize)]
struct Report {
    arch: &'static str,
    kernel: String,
    btf: bool,
    cgroup2: Option<String>,
    /// Where the syscall tracepoints' tracefs is (`null`: none, and none could be mounted).
    tracefs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracefs_error: Option<String>,
    /// `bpf` in /sys/kernel/security/lsm (`null`: securityfs not readable).
    bpf_lsm_listed: Option<bool>,
    /// An attached LSM program was seen to run.
    bpf_lsm_active: bool,
    hooks: Vec<Hook>,
    /// `null` if the programs could not be loaded (see `error`).
    enforcement: Option<Enforcement>,
    /// Where tier 2 watches opens and connects: `functions` (fentry/fexit on the syscall
    /// functions), `tracepoints`, or `none` (BPF LSM enforces files and network).
    syscall_hooks: Option<&'static str>,
    lsm_unavailable: Option<String>,
    /// Every program loaded (or refused), with what the kernel's verifier said of it.
    programs: Vec<ProgramRecord>,
    /// The verifier's limit on processed instructions, and the share of it each program
    /// may use on every kernel agent-monitor is tested on.
    verifier_insn_limit: u32,
    verifier_insn_budget: u32,
    /// The toolchain this binary and its eBPF object were built with.
    build: Build,
    error: Option<String>,
}

#[derive(Serialize)]
struct Build {
    version: &'static str,
    toolchain: &'static str,
}

#[derive(Serialize)]
struct Hook {
    hook: &'static str,
    resource: &'static str,
    attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn resource_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Files => "files",
        Resource::Exec => "exec",
        Resource::Network => "network",
        Resource::SelfProtection => "self_protection",
    }
}

/// `all_programs`: also load (without attaching) the programs the chosen tiers leave
/// out, so that every program's verification on this kernel is reported.
pub fn doctor(json: bool, all_programs: bool, ebpf_log: Option<log::Level>) -> anyhow::Result<i32> {
    let mut programs = Verifications::default();
    let (tracefs, mut loaded) =
        crate::tracefs::with_tracefs(|| Probes::load_recording(LsmChoice::Probe, ebpf_log, &mut programs));
    if let Ok(probes) = &mut loaded {
        probes.read_ebpf_log()?;
        if all_programs {
            probes.verify_unused();
        }
        programs = probes.programs.clone();
    }
    let (enforcement, lsm, syscall_hooks, error) = match &loaded {
        Ok(probes) => (Some(probes.enforcement), Some(probes.lsm.clone()), Some(probes.syscall_hooks.name()), None),
        Err(error) => (None, None, None, Some(error.to_string())),
    };
    let tracefs_error = tracefs.as_ref().err().map(|e| format!("not mounted, and mounting one failed: {e}"));
    drop(loaded); // detaches everything
    let LsmReport { listed, active, hooks, unavailable } =
        lsm.unwrap_or(LsmReport { listed: None, active: false, hooks: Vec::new(), unavailable: None });
    let report = Report {
        arch: std::env::consts::ARCH,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        cgroup2: cgroup2_mount().map(|p| p.display().to_string()),
        tracefs: tracefs.as_ref().ok().map(|t| t.describe()),
        tracefs_error,
        bpf_lsm_listed: listed,
        bpf_lsm_active: active,
        hooks: hooks
            .iter()
            .map(|h| Hook {
                hook: h.hook,
                resource: resource_name(h.resource),
                attached: h.error.is_none(),
                error: h.error.clone(),
            })
            .collect(),
        enforcement,
        syscall_hooks,
        lsm_unavailable: unavailable,
        programs: programs.records().to_vec(),
        verifier_insn_limit: INSN_LIMIT,
        verifier_insn_budget: INSN_BUDGET,
        build: Build { version: env!("CARGO_PKG_VERSION"), toolchain: env!("AGENT_MONITOR_TOOLCHAIN") },
        error,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.error.is_some() { 1 } else { 0 })
}

fn print_text(r: &Report) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("architecture      {}", r.arch);
    println!("kernel            {}", r.kernel);
    println!("BTF               {}", yes(r.btf));
    println!(
        "cgroup v2         {}",
        r.cgroup2.as_deref().unwrap_or("not mounted (network rules and kill-session need it)")
    );
    match (&r.tracefs, &r.tracefs_error) {
        (Some(place), _) => println!("tracefs           {place}"),
        (None, error) => {
            println!("tracefs           {} (syscall tracepoints need it)", error.as_deref().unwrap_or("not found"))
        }
    }
    let listed = match r.bpf_lsm_listed {
        Some(b) => yes(b),
        None => "unknown (securityfs not mounted)",
    };
    println!("BPF LSM listed    {listed}");
    println!("BPF LSM active    {}", yes(r.bpf_lsm_active));
    if let Some(why) = &r.lsm_unavailable {
        println!("                  not used: {why}");
    }
    let first_error = r.hooks.first().and_then(|h| h.error.as_ref());
    if r.hooks.len() > 1 && first_error.is_some() && r.hooks.iter().all(|h| h.error.as_ref() == first_error) {
        // The same refusal for every hook (a kernel that refuses LSM programs): once.
        println!("  all {} LSM hooks refused: {}", r.hooks.len(), first_error.map_or("", String::as_str));
    } else {
        for hook in &r.hooks {
            match &hook.error {
                None => println!("  lsm/{:<22} attached ({})", hook.hook, hook.resource),
                Some(error) => println!("  lsm/{:<22} FAILED ({}): {error}", hook.hook, hook.resource),
            }
        }
    }
    match (&r.enforcement, &r.error) {
        (Some(e), _) => {
            println!("enforcement");
            println!("  files           {}", e.files.name());
            if e.files == Tier::Tracepoint {
                println!("                  an open is judged as it returns: until the kill lands, another thread");
                println!("                  of the process can use the descriptor (measure: cargo xtask bench window)");
            }
            println!("  exec            {}", e.exec.name());
            println!("  network         {}", e.network.name());
            println!("  self-protection {}", e.self_protection.name());
            if let Some(hooks) = r.syscall_hooks {
                println!("syscall hooks     {hooks}");
            }
        }
        (None, Some(error)) => println!("cannot run here: {error}"),
        (None, None) => {}
    }
    print_programs(&r.programs);
    println!("built with        {}", r.build.toolchain);
}

/// One line per program: the verifier's instructions and their share of its limit.
fn print_programs(programs: &[ProgramRecord]) {
    if programs.is_empty() {
        return;
    }
    println!("programs          verified insns (share of the {INSN_LIMIT} limit; budget {INSN_BUDGET}), load time");
    for p in programs {
        let state = if p.attached { "attached" } else { "loaded" };
        if let Some(why) = &p.skipped {
            println!("  {:<26} {:<16} not loaded: {why}", p.name, p.kind);
            continue;
        }
        match (&p.error, p.verified_insns, p.share_of_limit()) {
            (Some(error), _, _) => println!("  {:<26} {:<16} REFUSED: {error}", p.name, p.kind),
            (None, Some(insns), Some(share)) => {
                let over = if insns > INSN_BUDGET { "  OVER BUDGET" } else { "" };
                println!(
                    "  {:<26} {:<16} {insns:>7} ({share:>4.1}%) {:>8.1} ms  {state}{over}",
                    p.name, p.kind, p.verify_ms
                )
            }
            _ => println!("  {:<26} {:<16} {:>7} {:>17.1} ms  {state}", p.name, p.kind, "unknown", p.verify_ms),
        }
    }
}
