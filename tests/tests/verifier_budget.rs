//! Every eBPF program verifies within a quarter of the kernel's limit on processed
//! instructions, on this kernel: `agent-monitor doctor --json --all-programs` loads every
//! program of the object (those the tiers use, and the others without attaching them)
//! and reports the kernel's own `verified_insns` of each.
//!
//! The same binary runs on the host and in every VM (`cargo xtask test`); each prints one
//! `AM_VERIFIER` line with its kernel's column, which `cargo xtask verifier-report`
//! gathers into one table of program x kernel.

use std::process::Command;

use monitor_tests::{expect_lsm, monitor_bin, privileged};
use serde_json::Value;

/// `BPF_COMPLEXITY_LIMIT_INSNS`, and the share of it a program may use.
const LIMIT: u64 = 1_000_000;
const BUDGET: u64 = LIMIT / 4;
const EPERM: i64 = 1;

fn report() -> Value {
    let output =
        Command::new(monitor_bin()).args(["doctor", "--json", "--all-programs"]).output().expect("running doctor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("doctor printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

#[test]
fn every_program_verifies_within_a_quarter_of_the_limit() {
    if !privileged() {
        return;
    }
    let report = report();
    assert!(report["error"].is_null(), "the monitor cannot start on this kernel: {}", report["error"]);
    assert_eq!(report["verifier_insn_limit"], LIMIT, "{report}");
    assert_eq!(report["verifier_insn_budget"], BUDGET, "{report}");
    let programs = report["programs"].as_array().expect("programs");
    let kernel = report["kernel"].as_str().unwrap_or_default();
    let arch = report["arch"].as_str().unwrap_or_default();

    // The table is the report of a passing run too (`cargo xtask verifier-report`
    // reads its AM_VERIFIER line), so it goes past libtest's capture.
    let mut table = format!("verified instructions on {kernel} ({arch}); budget {BUDGET} of {LIMIT}\n");
    let mut column = serde_json::Map::new();
    let mut total_ms = 0.0;
    for p in programs {
        let name = p["name"].as_str().unwrap_or_default();
        total_ms += p["verify_ms"].as_f64().unwrap_or_default();
        let cell = match (p["verified_insns"].as_u64(), p["skipped"].as_str(), p["error"].as_str()) {
            (Some(insns), _, _) => {
                column.insert(name.to_owned(), insns.into());
                format!("{insns:>7} ({:.1}%)", insns as f64 * 100.0 / LIMIT as f64)
            }
            (None, Some(why), _) => format!("not loaded: {why}"),
            (None, None, Some(error)) => format!("refused: {error}"),
            (None, None, None) => "no count".to_owned(),
        };
        table += &format!("  {name:<26} {:<16} {cell}\n", p["type"].as_str().unwrap_or_default());
    }
    table += &format!("  whole object: {total_ms:.0} ms of loading\n");
    let lsm = report["bpf_lsm_active"] == true;
    let line = serde_json::json!({"kernel": kernel, "arch": arch, "lsm": lsm, "programs": column, "load_ms": total_ms});
    table += &format!("AM_VERIFIER {line}\n");
    write_past_capture(&table);

    // Programs every kernel must load: membership, exec, tier 2's checks.
    for name in
        ["sched_process_fork", "sched_process_exit", "sched_process_exec", "cgroup_mkdir", "connect4", "sock_create"]
    {
        assert!(
            programs.iter().any(|p| p["name"] == name && p["verified_insns"].is_u64()),
            "{name} not measured: {report}"
        );
    }
    // The syscall tracepoint programs load on every kernel (the fallback of tier 2).
    for name in ["syscall_enter", "syscall_exit"] {
        assert!(
            programs.iter().any(|p| p["name"] == name && p["verified_insns"].is_u64()),
            "{name} not measured: {report}"
        );
    }
    let mut failures = Vec::new();
    for p in programs {
        let name = p["name"].as_str().unwrap_or_default();
        let kind = p["type"].as_str().unwrap_or_default();
        if let Some(insns) = p["verified_insns"].as_u64() {
            if insns > BUDGET {
                failures.push(format!("{name}: {insns} verified instructions, over the budget of {BUDGET}"));
            }
            continue;
        }
        if p["skipped"].is_string() {
            continue;
        }
        // The only refusal allowed: a kernel that forbids a whole program type (this
        // project's build machines refuse LSM and trampoline programs with EPERM), and
        // only where the runner does not expect that type to work.
        let forbidden_type = p["errno"] == EPERM && matches!(kind, "lsm" | "fentry" | "fexit");
        let expected_to_load = match kind {
            "lsm" => expect_lsm() == Some(true),
            "fentry" | "fexit" => std::env::var("AGENT_MONITOR_EXPECT_SYSCALL_HOOKS").as_deref() == Ok("functions"),
            _ => true,
        };
        if !forbidden_type || expected_to_load {
            failures.push(format!("{name} ({kind}) was not loaded: {}", p["error"]));
        }
    }
    assert!(failures.is_empty(), "on {kernel}:\n{}", failures.join("\n"));
}

/// Writes `text` to file descriptor 1 itself: libtest captures everything written
/// through std's stdout, even `io::stdout()`, until a test fails.
fn write_past_capture(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes from a valid buffer of `rest.len()` bytes.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        assert!(n > 0, "writing the table: {}", std::io::Error::last_os_error());
        rest = &rest[n as usize..];
    }
}

#[test]
fn doctor_reports_the_toolchain_it_was_built_with() {
    if !privileged() {
        return;
    }
    let report = report();
    let toolchain = report["build"]["toolchain"].as_str().expect("build.toolchain");
    for part in ["rustc ", "rustc-web ", "llvm-22-dev ", "bpf-linker ", "build kernel "] {
        assert!(toolchain.contains(part), "no {part:?} in {toolchain:?}");
    }
}
