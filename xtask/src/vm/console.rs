//! What the guest's console says about its tests. qemu exits 0 whatever happened inside,
//! so the console is the only witness: the `test result:` lines of every test binary,
//! and the sentinel line that `/init` prints after the last one.

/// The line `/init` prints once every test binary has run (see init.sh):
/// `agent-monitor-vm: done binaries=N failed=M` (M = binaries that exited non-zero).
pub const SENTINEL: &str = "agent-monitor-vm: done";

/// What the guest's `/init` reported at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentinel {
    pub binaries: u64,
    pub failed_binaries: u64,
}

/// Which tests a guest's console shows as failed or hung, by name: what a summary line
/// has to say for a failure to be understood from the end of a CI log.
#[derive(Debug, Default)]
pub struct Progress {
    /// The test binary running now (cargo's name, without its hash).
    binary: String,
    /// `binary: test` of each failed test.
    failed: Vec<String>,
    /// `binary: test` of each test libtest said runs for over 60 s, until it finished.
    long_running: Vec<String>,
    /// Binaries the guest's watchdog (watchdog.sh) killed.
    killed: Vec<String>,
}

impl Progress {
    /// A test binary starts: its path, or its `package/name` label.
    pub fn binary_started(&mut self, path_or_label: &str) {
        let name = path_or_label.rsplit('/').next().unwrap_or(path_or_label);
        // cargo names a test binary NAME-HASH.
        let name = name.rsplit_once('-').filter(|(_, hash)| hash.len() == 16).map_or(name, |(name, _)| name);
        self.binary = name.to_owned();
    }

    /// Takes one console line.
    pub fn feed(&mut self, line: &str) {
        let named =
            |test: &str| if self.binary.is_empty() { test.to_owned() } else { format!("{}: {test}", self.binary) };
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some(test) = rest.strip_suffix(" has been running for over 60 seconds") {
                self.long_running.push(named(test));
            } else if let Some((test, verdict)) = rest.rsplit_once(" ... ") {
                let test = named(test);
                self.long_running.retain(|t| *t != test);
                if verdict.starts_with("FAILED") {
                    self.failed.push(test);
                }
            }
        } else if line.starts_with("AM_WATCHDOG still running after ") {
            self.killed.push(self.binary.clone());
        }
    }

    /// The failed, hung and still running tests, by name (`None`: there are none).
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.failed.is_empty() {
            parts.push(format!("failed: {}", self.failed.join(", ")));
        }
        if !self.killed.is_empty() {
            parts.push(format!("killed by the guest's watchdog: {}", self.killed.join(", ")));
        }
        if !self.long_running.is_empty() {
            parts.push(format!("over 60 s and never finished: {}", self.long_running.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Everything read from one guest's console.
#[derive(Debug, Default)]
pub struct Console {
    pub progress: Progress,
    pub passed: u64,
    pub failed: u64,
    /// `test result:` lines seen (one per test binary that finished).
    pub results: u64,
    pub sentinel: Option<Sentinel>,
    /// The kernel release `/init` printed (`uname -r`).
    pub kernel: Option<String>,
}

/// (passed, failed) of a libtest summary line:
/// `test result: ok. 36 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ...`.
pub fn test_result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(word)?.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((count("passed"), count("failed")))
}

fn parse_sentinel(line: &str) -> Option<Sentinel> {
    let rest = line.strip_prefix(SENTINEL)?;
    let field = |name: &str| {
        rest.split_whitespace().find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    Some(Sentinel { binaries: field("binaries")?, failed_binaries: field("failed")? })
}

impl Console {
    /// Takes one console line (without its line ending).
    pub fn feed(&mut self, line: &str) {
        self.progress.feed(line);
        if let Some(path) = line.strip_prefix("agent-monitor-vm: running ") {
            self.progress.binary_started(path.split(" (uptime").next().unwrap_or(path));
        } else if let Some((passed, failed)) = test_result_counts(line) {
            self.passed += passed;
            self.failed += failed;
            self.results += 1;
        } else if let Some(sentinel) = parse_sentinel(line) {
            self.sentinel = Some(sentinel);
        } else if let Some(release) = line.strip_prefix("agent-monitor-vm: kernel ") {
            self.kernel = Some(release.trim().to_owned());
        }
    }

    /// Why this run does not count as a pass, if it does not, with the tests to blame.
    pub fn problem(&self) -> Option<String> {
        let problem = self.problem_alone()?;
        Some(match self.progress.describe() {
            Some(tests) => format!("{problem} ({tests})"),
            None => problem,
        })
    }

    fn problem_alone(&self) -> Option<String> {
        let Some(sentinel) = self.sentinel else {
            return Some("the guest never reported its end (crash, panic or timeout): see the log".into());
        };
        if sentinel.failed_binaries > 0 && self.failed == 0 {
            return Some(format!(
                "{} test binaries failed without a failing test (crashed?)",
                sentinel.failed_binaries
            ));
        }
        if self.results != sentinel.binaries {
            return Some(format!("{} test binaries ran but {} printed a result", sentinel.binaries, self.results));
        }
        if self.passed == 0 {
            return Some("no test passed".into());
        }
        if self.failed > 0 {
            return Some(format!("{} tests failed", self.failed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(lines: &[&str]) -> Console {
        let mut console = Console::default();
        for line in lines {
            console.feed(line);
        }
        console
    }

    #[test]
    fn sums_the_results_of_every_binary() {
        let c = console(&[
            "agent-monitor-vm: kernel 6.1.0-56-amd64",
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.10s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s",
            "agent-monitor-vm: done binaries=2 failed=1",
        ]);
        assert_eq!((c.passed, c.failed, c.results), (15, 2, 2));
        assert_eq!(c.sentinel, Some(Sentinel { binaries: 2, failed_binaries: 1 }));
        assert_eq!(c.kernel.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(c.problem().unwrap(), "2 tests failed");
    }

    #[test]
    fn a_clean_run_has_no_problem() {
        let c =
            console(&["test result: ok. 4 passed; 0 failed; 0 ignored", "agent-monitor-vm: done binaries=1 failed=0"]);
        assert_eq!(c.problem(), None);
    }

    #[test]
    fn no_sentinel_is_a_failure_whatever_passed_before() {
        let c = console(&["test result: ok. 40 passed; 0 failed; 0 ignored", "Kernel panic - not syncing"]);
        assert!(c.problem().unwrap().contains("never reported its end"));
    }

    #[test]
    fn a_binary_that_died_without_a_result_is_a_failure() {
        let crashed = console(&["test result: ok. 4 passed; 0 failed", "agent-monitor-vm: done binaries=2 failed=1"]);
        assert!(crashed.problem().unwrap().contains("without a failing test"));
        let silent = console(&["test result: ok. 4 passed; 0 failed", "agent-monitor-vm: done binaries=2 failed=0"]);
        assert!(silent.problem().unwrap().contains("printed a result"));
        let nothing = console(&["agent-monitor-vm: done binaries=0 failed=0"]);
        assert_eq!(nothing.problem().unwrap(), "no test passed");
    }

    #[test]
    fn a_failure_names_the_failed_and_the_hung_tests() {
        let c = console(&[
            "agent-monitor-vm: running /w/target/debug/deps/enforce-0123456789abcdef (uptime 2.1s)",
            "test fast ... ok",
            "test leaks ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored",
            "agent-monitor-vm: running /w/target/debug/deps/lsm-fedcba9876543210 (uptime 9.0s)",
            "test slow_but_done has been running for over 60 seconds",
            "test stuck has been running for over 60 seconds",
            "test slow_but_done ... ok",
            "AM_WATCHDOG still running after 300s: /w/target/debug/deps/lsm-fedcba9876543210",
            "agent-monitor-vm: done binaries=2 failed=2",
        ]);
        assert_eq!(
            c.problem().unwrap(),
            "2 test binaries ran but 1 printed a result (failed: enforce: leaks; killed by the guest's watchdog: lsm; \
             over 60 s and never finished: lsm: stuck)"
        );
    }

    #[test]
    fn the_sentinel_needs_its_fields() {
        assert_eq!(parse_sentinel("agent-monitor-vm: done"), None);
        assert_eq!(parse_sentinel("agent-monitor-vm: done binaries=x failed=0"), None);
    }
}
