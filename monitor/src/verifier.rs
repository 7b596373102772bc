//! What the kernel's verifier said of each program the monitor loads: the instructions
//! it processed (`bpf_prog_info.verified_insns`, Linux >= 5.16), how long the load took,
//! and, for a program it refused, the summary of its log (the whole log goes to a file,
//! or to the terminal with `--verbose`).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Program, ProgramError},
};
use serde::Serialize;

/// The verifier's limit on processed instructions per program
/// (`BPF_COMPLEXITY_LIMIT_INSNS`, the same since Linux 5.2).
pub const INSN_LIMIT: u32 = 1_000_000;
/// What each program may use of that limit on every kernel we test: a program near the
/// limit on one kernel fails on the next point release or toolchain update.
pub const INSN_BUDGET: u32 = INSN_LIMIT / 4;

/// `--verbose`: a refused program's whole verifier log on the terminal too.
static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// One program, as the kernel verified it.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Attached to its hook (a program loaded only to be measured, or unloaded again
    /// because its tier is not used, is not).
    pub attached: bool,
    /// `None`: not loaded, or a kernel before 5.16 (which does not report it).
    pub verified_insns: Option<u32>,
    /// Wall time of the load: almost all of it is the verifier's.
    pub verify_ms: f64,
    /// Why the kernel refused it (the verifier's summary, not the whole log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `BPF_PROG_LOAD` errno of a refusal (1: EPERM, the kernel forbids the program
    /// type; 7: E2BIG, over the verifier's limit; 13 or 22: the verifier rejected it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// Why it was not loaded at all (it has no hook on this kernel or architecture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl ProgramRecord {
    /// The share of the verifier's limit this program used, in percent.
    pub fn share_of_limit(&self) -> Option<f64> {
        self.verified_insns.map(|insns| f64::from(insns) * 100.0 / f64::from(INSN_LIMIT))
    }
}

/// The record of every program load, in load order.
#[derive(Debug, Clone, Default)]
pub struct Verifications {
    records: Vec<ProgramRecord>,
}

impl Verifications {
    pub fn records(&self) -> &[ProgramRecord] {
        &self.records
    }

    pub fn contains(&self, name: &str) -> bool {
        self.records.iter().any(|r| r.name == name)
    }

    /// Loads the program `name` of `ebpf` with `load` (which converts it to its type and
    /// calls that type's `load`) and records what the verifier said.
    pub fn load(
        &mut self,
        ebpf: &mut Ebpf,
        name: &str,
        load: impl FnOnce(&mut Program) -> Result<(), ProgramError>,
    ) -> Result<(), ProgramFailure> {
        let Some(program) = ebpf.program_mut(name) else {
            let failure = ProgramFailure::missing(name);
            self.push(name, "unknown", Duration::ZERO, None, Some(&failure));
            return Err(failure);
        };
        let kind = kind_of(program);
        let started = Instant::now();
        let loaded = load(program);
        let elapsed = started.elapsed();
        let insns = program.info().ok().and_then(|info| info.verified_instruction_count());
        match loaded {
            Ok(()) => {
                self.push(name, kind, elapsed, insns, None);
                Ok(())
            }
            Err(error) => {
                let failure = ProgramFailure::new(name, &error);
                self.push(name, kind, elapsed, None, Some(&failure));
                Err(failure)
            }
        }
    }

    /// Records a program that was not loaded because it does not apply here, and why.
    pub fn skipped(&mut self, name: &str, kind: &'static str, why: String) {
        self.push(name, kind, Duration::ZERO, None, None);
        if let Some(record) = self.records.last_mut() {
            record.skipped = Some(why);
        }
    }

    /// Marks `name` as attached (or detached again).
    pub fn set_attached(&mut self, name: &str, attached: bool) {
        for record in self.records.iter_mut().filter(|r| r.name == name) {
            record.attached = attached;
        }
    }

    /// Records an attach failure of a program that loaded.
    pub fn attach_failed(&mut self, name: &str, error: String) {
        for record in self.records.iter_mut().filter(|r| r.name == name) {
            record.attached = false;
            record.error = Some(error.clone());
        }
    }

    fn push(
        &mut self,
        name: &str,
        kind: &'static str,
        elapsed: Duration,
        insns: Option<u32>,
        failure: Option<&ProgramFailure>,
    ) {
        self.records.retain(|r| r.name != name);
        self.records.push(ProgramRecord {
            name: name.to_owned(),
            kind,
            attached: false,
            verified_insns: insns,
            verify_ms: (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            error: failure.map(ProgramFailure::short),
            errno: failure.and_then(|f| f.errno),
            skipped: None,
        });
    }
}

pub fn kind_of(program: &Program) -> &'static str {
    match program {
        Program::RawTracePoint(_) => "raw_tracepoint",
        Program::TracePoint(_) => "tracepoint",
        Program::Lsm(_) => "lsm",
        Program::FEntry(_) => "fentry",
        Program::FExit(_) => "fexit",
        Program::CgroupSockAddr(_) => "cgroup_sock_addr",
        Program::CgroupSock(_) => "cgroup_sock",
        _ => "other",
    }
}

/// A program the kernel did not load: its name, the kernel, what the verifier said in one
/// line, where its whole log is, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ProgramFailure {
    pub program: String,
    /// The `BPF_PROG_LOAD` error.
    pub error: String,
    pub errno: Option<i32>,
    /// The verifier's own summary (its error and its `processed N insns` line).
    pub summary: Option<String>,
    /// Where the whole log was written, or why it could not be.
    pub log: Result<PathBuf, String>,
}

impl ProgramFailure {
    fn missing(program: &str) -> ProgramFailure {
        ProgramFailure {
            program: program.to_owned(),
            error: "the embedded eBPF object has no such program (a build mismatch: rebuild agent-monitor)".to_owned(),
            errno: None,
            summary: None,
            log: Err("no log".to_owned()),
        }
    }

    pub fn new(program: &str, error: &ProgramError) -> ProgramFailure {
        ProgramFailure::with_log_in(program, error, &log_dir())
    }

    /// [`ProgramFailure::new`], writing the verifier's log into `dir`.
    pub fn with_log_in(program: &str, error: &ProgramError, dir: &Path) -> ProgramFailure {
        let ProgramError::LoadError { io_error, verifier_log } = error else {
            return ProgramFailure {
                program: program.to_owned(),
                error: error_chain(error),
                errno: None,
                summary: None,
                log: Err("no verifier log".to_owned()),
            };
        };
        let log = verifier_log.to_string();
        let summary = summarize(&log);
        let log = if log.trim().is_empty() {
            Err("the kernel wrote no verifier log".to_owned())
        } else {
            if VERBOSE.load(Ordering::Relaxed) {
                eprintln!("agent-monitor: the verifier's log of {program}:\n{log}");
            }
            write_log(dir, program, &log)
        };
        ProgramFailure {
            program: program.to_owned(),
            error: io_error.to_string(),
            errno: io_error.raw_os_error(),
            summary,
            log,
        }
    }

    /// What the user can do about it.
    fn hint(&self) -> &'static str {
        match self.errno {
            Some(libc::E2BIG) => {
                "The program needs more verification than this kernel allows: a bug of agent-monitor on this kernel; \
                 report it with the log and `agent-monitor doctor --json`"
            }
            Some(libc::EPERM) => {
                "The kernel does not let this process load it: run as root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN); \
                 kernel lockdown, a BPF LSM policy or this kernel's build may forbid the program type"
            }
            Some(libc::EINVAL) | Some(libc::EACCES) => {
                "This kernel's verifier rejects the program (a kernel older or built otherwise than those agent-monitor \
                 is tested on): report it with the log and `agent-monitor doctor --json`"
            }
            _ => "See the log; `agent-monitor doctor` reports what this kernel supports",
        }
    }

    /// The error and the verifier's summary, without the program's name or the hint
    /// (the same for every program of a kind a kernel refuses).
    pub fn short(&self) -> String {
        match &self.summary {
            Some(summary) => format!("{}; the verifier said: {summary}", self.error),
            None => self.error.clone(),
        }
    }

    fn describe(&self) -> String {
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
        let mut text = format!("the kernel ({kernel}) refused the eBPF program {}: {}", self.program, self.error);
        if let Some(summary) = &self.summary {
            text += &format!("; the verifier said: {summary}");
        }
        match &self.log {
            Ok(path) => text += &format!("; its whole log: {}", path.display()),
            Err(why) if self.summary.is_some() => text += &format!(" ({why}; --verbose prints the log)"),
            Err(_) => {}
        }
        format!("{text}. {}", self.hint())
    }
}

/// The verifier's error line and its statistics line (`processed N insns (limit M) ...`),
/// which end its log.
pub fn summarize(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let stats = lines.iter().rposition(|l| l.starts_with("processed ") && l.contains(" insns"));
    let before = stats.unwrap_or(lines.len());
    let error = lines[..before]
        .iter()
        .rev()
        .find(|l| !l.starts_with("verification time") && !l.starts_with("stack depth"))
        .copied();
    match (error, stats.map(|i| lines[i])) {
        (Some(error), Some(stats)) => Some(format!("{error} ({stats})")),
        (Some(line), None) | (None, Some(line)) => Some(line.to_owned()),
        (None, None) => None,
    }
}

/// Where a refused program's verifier log goes: where root keeps runtime files,
/// systemd's `RUNTIME_DIRECTORY`, else /run/agent-monitor.
fn log_dir() -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .unwrap_or_else(|| PathBuf::from("/run/agent-monitor"))
}

/// Writes the log into `dir` (created 0700, so no one else can put a link where the log
/// goes).
fn write_log(dir: &Path, program: &str, log: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("the log could not be written to {}: {e}", dir.display()))?;
    let name: String = program.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    let path = dir.join(format!("verifier-{name}.log"));
    std::fs::write(&path, log).map_err(|e| format!("the log could not be written to {}: {e}", path.display()))?;
    Ok(path)
}

/// `error: source: source...`: aya's errors keep the errno in their source.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_program_too_large() {
        let log = "0: R1=ctx() R10=fp0\n1356: (bf) r4 = r0\nBPF program is too large. Processed 1000001 insn\n\
                   verification time 4309679 usec\nstack depth 192+72+0\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 19 total_states 27976 peak_states 105801 mark_read 0\n";
        assert_eq!(
            summarize(log).as_deref(),
            Some(
                "BPF program is too large. Processed 1000001 insn (processed 1000001 insns (limit 1000000) max_states_per_insn 19 total_states 27976 peak_states 105801 mark_read 0)"
            )
        );
    }

    #[test]
    fn summary_of_an_invalid_access() {
        let log = "12: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\nverification time 13 usec\n\
                   stack depth 0\nprocessed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1\n";
        assert_eq!(
            summarize(log).as_deref(),
            Some(
                "R1 invalid mem access 'scalar' (processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1)"
            )
        );
    }

    #[test]
    fn summary_without_statistics_is_the_last_line() {
        assert_eq!(summarize("a\nunknown func bpf_loop#181\n\n").as_deref(), Some("unknown func bpf_loop#181"));
        assert_eq!(summarize(" \n"), None);
    }

    #[test]
    fn a_refused_program_is_named_with_the_kernel_the_summary_and_its_log_in_a_file() {
        let dir = std::env::temp_dir().join(format!("agent-monitor-verifier-test-{}", std::process::id()));
        let log = "0: R1=ctx() R10=fp0\n1: (85) call bpf_loop#181\nBPF program is too large. Processed 1000001 insn\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 19 total_states 27976\n";
        let error = ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
            verifier_log: aya_obj::VerifierLog::new(log.to_owned()),
        };
        let failure = ProgramFailure::with_log_in("sched_process_exec", &error, &dir);
        let text = failure.to_string();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert!(text.contains("sched_process_exec"), "{text}");
        assert!(text.contains(kernel.trim()), "{text}");
        assert!(text.contains("BPF program is too large. Processed 1000001 insn (processed 1000001 insns"), "{text}");
        assert!(text.contains("report it with the log"), "{text}");
        assert!(!text.contains("R10=fp0"), "the log itself is not in the message: {text}");
        let path = dir.join("verifier-sched_process_exec.log");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), log);
        assert_eq!(failure.errno, Some(libc::E2BIG));
        assert_eq!(
            failure.short(),
            format!("{}; the verifier said: {}", failure.error, failure.summary.clone().unwrap())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refusal_without_a_log_says_what_to_do() {
        let error = ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        let failure = ProgramFailure::with_log_in("file_open", &error, Path::new("/nonexistent-dir-never-created"));
        let text = failure.to_string();
        assert!(text.contains("refused the eBPF program file_open"), "{text}");
        assert!(text.contains("run as root"), "{text}");
        assert_eq!(failure.short(), failure.error);
        assert!(!Path::new("/nonexistent-dir-never-created").exists());
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_limit() {
        assert_eq!(INSN_BUDGET, 250_000);
        let record = ProgramRecord {
            name: "x".into(),
            kind: "raw_tracepoint",
            attached: true,
            verified_insns: Some(25_000),
            verify_ms: 1.0,
            error: None,
            errno: None,
            skipped: None,
        };
        assert_eq!(record.share_of_limit(), Some(2.5));
    }
}
