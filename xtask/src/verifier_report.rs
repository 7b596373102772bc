//! The verifier's cost of every eBPF program on every kernel the project tests: the
//! `AM_VERIFIER` lines that `tests/tests/verifier_budget.rs` prints on the host and in each
//! VM, gathered into one table of program x kernel (`cargo xtask verifier-report`, and at
//! the end of `cargo xtask test`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{arm64, cargo, vm, workspace_root};

/// The verifier's limit on processed instructions, and each program's budget of it.
const LIMIT: u64 = 1_000_000;
const BUDGET: u64 = LIMIT / 4;
const MARK: &str = "AM_VERIFIER ";

/// One kernel's column: each program's verified instructions there.
pub struct Column {
    pub kernel: String,
    pub programs: BTreeMap<String, u64>,
    pub load_ms: f64,
}

/// The columns in a console log or a test's output.
pub fn columns_in(text: &str) -> Vec<Column> {
    text.lines()
        .filter_map(|line| line.split_once(MARK).map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .map(|v| Column {
            kernel: format!(
                "{} {}{}",
                v["arch"].as_str().unwrap_or("?"),
                v["kernel"].as_str().unwrap_or("?"),
                if v["lsm"] == true { " lsm" } else { "" }
            ),
            programs: v["programs"]
                .as_object()
                .map(|p| p.iter().filter_map(|(name, insns)| Some((name.clone(), insns.as_u64()?))).collect())
                .unwrap_or_default(),
            load_ms: v["load_ms"].as_f64().unwrap_or_default(),
        })
        .collect()
}

/// Prints the table (the largest programs first); returns the programs over budget on
/// some kernel.
pub fn print_table(columns: &[Column]) -> Vec<String> {
    if columns.is_empty() {
        println!("verifier report: no kernel reported (no AM_VERIFIER line)");
        return Vec::new();
    }
    let mut largest: BTreeMap<&str, u64> = BTreeMap::new();
    for column in columns {
        for (name, insns) in &column.programs {
            let max = largest.entry(name).or_default();
            *max = (*max).max(*insns);
        }
    }
    let mut rows: Vec<(&str, u64)> = largest.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    println!(
        "== verified instructions per program and kernel (limit {LIMIT}, budget {BUDGET}; '-': not loadable there)"
    );
    let mut header = format!("{:<26}", "program");
    for column in columns {
        header += &format!(" {:>24}", column.kernel);
    }
    println!("{header} {:>8}", "max %");
    for (name, max) in &rows {
        let mut line = format!("{name:<26}");
        for column in columns {
            let cell = column.programs.get(*name).map_or_else(|| "-".to_owned(), u64::to_string);
            line += &format!(" {cell:>24}");
        }
        println!("{line} {:>7.1}%", *max as f64 * 100.0 / LIMIT as f64);
    }
    let mut load = format!("{:<26}", "load, whole object (ms)");
    for column in columns {
        load += &format!(" {:>24.0}", column.load_ms);
    }
    println!("{load}");
    rows.iter().filter(|(_, max)| *max > BUDGET).map(|(name, max)| format!("{name}: {max}")).collect()
}

/// `cargo xtask verifier-report`: the budget test on the host, then in every VM (x86_64
/// with and without BPF LSM, arm64 6.1 and 6.12), and the table of all of them.
pub fn command() -> anyhow::Result<()> {
    println!("== host");
    let output = cargo()
        .args(["test", "--package", "monitor-tests", "--test", "verifier_budget"])
        .current_dir(workspace_root())
        .output()
        .context("starting cargo test")?;
    let host = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{host}");
    let mut columns = columns_in(&host);
    let only = Some("verifier_budget".to_owned());
    let vms = vm::run(&vm::VmArgs { only: only.clone(), ..Default::default() })?;
    for outcome in &vms {
        columns.extend(columns_in(&std::fs::read_to_string(&outcome.log).unwrap_or_default()));
    }
    let arm64 = arm64::run(&arm64::Arm64VmArgs { only, ..Default::default() })?;
    for outcome in &arm64 {
        columns.extend(columns_in(&std::fs::read_to_string(&outcome.log).unwrap_or_default()));
    }
    let over = print_table(&columns);
    if !output.status.success() || vms.iter().any(|o| o.problem.is_some()) || arm64.iter().any(|o| o.problem.is_some())
    {
        bail!("the verifier budget test failed somewhere (see above)");
    }
    if !over.is_empty() {
        bail!("over the budget of {BUDGET}: {}", over.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_and_finds_programs_over_budget() {
        let log = "[vm lsm] AM_VERIFIER {\"kernel\":\"6.1.0-41-amd64\",\"arch\":\"x86_64\",\"programs\":{\"file_open\":12000,\"big\":300000},\"load_ms\":900.5}\n\
                   noise\nAM_VERIFIER {\"kernel\":\"6.18\",\"arch\":\"x86_64\",\"programs\":{\"file_open\":9000},\"load_ms\":40}\n";
        let columns = columns_in(log);
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[0].kernel, "x86_64 6.1.0-41-amd64");
        assert_eq!(columns[0].programs["big"], 300_000);
        assert_eq!(columns[1].programs.get("big"), None);
        assert_eq!(print_table(&columns), ["big: 300000"]);
    }
}
