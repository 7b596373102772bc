//! Boots a kernel and initramfs in qemu with software emulation (TCG: KVM cannot run stock
//! kernels on these machines, see TOOLCHAIN.md), on x86_64 or aarch64; streams the serial
//! console to the terminal (each line prefixed), to a log file (each line timed) and to
//! the caller; kills qemu at a deadline, or once the guest shows it has hung (hang.rs).

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::hang;

/// The emulated machine.
#[derive(Clone, Copy)]
pub enum Machine {
    X86_64,
    Aarch64,
}

impl Machine {
    fn command(self) -> Command {
        match self {
            Machine::X86_64 => {
                let mut qemu = Command::new("qemu-system-x86_64");
                // max without ERMS/FSRM: with them the kernel copies memory with `rep movsb`,
                // which TCG emulates a byte at a time; the BPF verifier copies its states all
                // the time. Measured on 6.1: one monitor start (program loading) 8.9 s -> 6.0 s.
                // No network card: the guest needs loopback only (and boots without iPXE).
                qemu.args(["-accel", "tcg", "-cpu", "max,erms=off,fsrm=off", "-nic", "none"]);
                qemu
            }
            Machine::Aarch64 => {
                let mut qemu = Command::new("qemu-system-aarch64");
                qemu.args(["-machine", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"]);
                qemu
            }
        }
    }

    fn package(self) -> &'static str {
        match self {
            Machine::X86_64 => "qemu-system-x86",
            Machine::Aarch64 => "qemu-system-arm",
        }
    }
}

pub struct Boot<'a> {
    pub machine: Machine,
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// The kernel command line.
    pub append: &'a str,
    pub cpus: usize,
    pub memory_mib: usize,
    pub timeout: Duration,
    /// Printed before each console line on the terminal.
    pub prefix: &'a str,
    pub log: &'a Path,
}

/// How a boot went: whether qemu had to be killed, and why.
pub struct Run {
    pub timed_out: bool,
    /// The sign that the guest had hung for good (then qemu was killed).
    pub hung: Option<String>,
    pub wall: Duration,
}

/// Boots `boot` and gives each console line (without its ending and control sequences)
/// to `on_line` until the guest powers off, the deadline passes or the guest hangs.
pub fn boot(boot: &Boot, on_line: &mut dyn FnMut(&str)) -> anyhow::Result<Run> {
    let mut qemu = boot.machine.command();
    qemu.args(["-smp", &boot.cpus.to_string(), "-m", &boot.memory_mib.to_string()])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initramfs)
        .args(["-append", boot.append]);
    let limits = Limits { timeout: boot.timeout, silent: hang::SILENT, grace: hang::GRACE };
    watch(qemu, &limits, boot.prefix, boot.log, on_line)
        .with_context(|| format!("qemu (scripts/setup.sh installs {})", boot.machine.package()))
}

/// When [`watch`] kills what it watches.
struct Limits {
    timeout: Duration,
    /// Without a line for this long, the guest has hung.
    silent: Duration,
    /// Left to run after a sign of a hang.
    grace: Duration,
}

/// Runs `command` (qemu), streams its output as [`boot`] says, and kills it as `limits`
/// say.
fn watch(
    mut command: Command,
    limits: &Limits,
    prefix: &str,
    log_path: &Path,
    on_line: &mut dyn FnMut(&str),
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(log, "+ {command:?}")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;

    // One thread per output stream; the lines meet here, so the deadline is checked
    // while the guest is silent too.
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let readers = [forward(stdout, lines.clone(), ""), forward(stderr, lines, "qemu: ")];

    let mut deadline = started + limits.timeout;
    let mut timed_out = false;
    let mut hung: Option<String> = None;
    loop {
        let wait = deadline.min(Instant::now() + limits.silent).saturating_duration_since(Instant::now());
        match received.recv_timeout(wait) {
            Ok(line) => {
                println!("{prefix}{line}");
                writeln!(log, "[{:7.1}s] {line}", started.elapsed().as_secs_f64())?;
                on_line(&line);
                if hung.is_none()
                    && let Some(sign) = hang::stuck_cpu(&line)
                {
                    hung = Some(sign);
                    deadline = deadline.min(Instant::now() + limits.grace);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let message = if hung.is_some() {
                    "the guest hung: qemu killed".to_owned()
                } else if Instant::now() < deadline {
                    hung = Some(format!("the console was silent for {:?}", limits.silent));
                    format!("the guest hung (no console line for {:?}): qemu killed", limits.silent)
                } else {
                    timed_out = true;
                    format!("timeout: the guest ran longer than {:?}, qemu killed", limits.timeout)
                };
                println!("{prefix}{message}");
                writeln!(log, "{message}")?;
                child.kill().context("killing qemu")?; // our own child, by handle
                break;
            }
        }
    }
    let status = child.wait()?;
    for reader in readers {
        let _ = reader.join();
    }
    let wall = started.elapsed();
    writeln!(log, "qemu: {status}, {wall:.1?}")?;
    Ok(Run { timed_out, hung, wall })
}

/// Boots with `boot` (whose console goes to `log`) and, should the guest hang, once more:
/// the emulation hazard above is rare, and a second hang fails the VM. Returns the last
/// boot, what its console said, and the sign of the first boot's hang, whose log is kept
/// beside `log` as `*.hung.log`.
pub fn boot_once_more_if_hung<T>(
    log: &Path,
    mut boot: impl FnMut() -> anyhow::Result<(Run, T)>,
) -> anyhow::Result<(Run, T, Option<String>)> {
    let (run, console) = boot()?;
    let Some(sign) = run.hung.clone() else {
        return Ok((run, console, None));
    };
    let kept = log.with_extension("hung.log");
    std::fs::rename(log, &kept)?;
    println!("== the guest hung ({sign}; log: {}): booting it once more", kept.display());
    let (run, console) = boot()?;
    Ok((run, console, Some(format!("{sign} (log: {})", kept.display()))))
}

/// Sends each line of `stream` (console lines end in CR LF; bytes that are not UTF-8 are
/// replaced) until it closes.
fn forward(
    stream: impl Read + Send + 'static,
    lines: mpsc::Sender<String>,
    tag: &'static str,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        while reader.read_until(b'\n', &mut buffer).is_ok_and(|n| n > 0) {
            let line = printable(&String::from_utf8_lossy(&buffer));
            if lines.send(format!("{tag}{line}")).is_err() {
                return;
            }
            buffer.clear();
        }
    })
}

/// `line` without its line ending and without terminal control sequences (the BIOS
/// clears the screen: `ESC c`, `ESC [ ? 7 l`, `ESC [ 2 J`).
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.next_if_eq(&'[').is_some() {
                    // CSI: parameters and intermediates up to a final byte in @..~.
                    while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{process::Command, time::Duration};

    use super::{Limits, Run, boot_once_more_if_hung, printable, watch};

    /// Runs `script` under `watch` with short limits; returns the run and the lines seen.
    fn watched(script: &str) -> (super::Run, Vec<String>) {
        let log = std::env::temp_dir().join(format!("xtask-qemu-watch-{}.log", std::process::id()));
        let limits = Limits {
            timeout: Duration::from_secs(5),
            silent: Duration::from_millis(1500),
            grace: Duration::from_millis(300),
        };
        let mut lines = Vec::new();
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let run = watch(command, &limits, "[test] ", &log, &mut |line| lines.push(line.to_owned())).unwrap();
        let _ = std::fs::remove_file(&log);
        (run, lines)
    }

    #[test]
    fn a_guest_that_ends_is_neither_hung_nor_late() {
        let (run, lines) = watched("echo one; echo two");
        assert!(!run.timed_out && run.hung.is_none());
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn a_cpu_stuck_for_a_minute_ends_the_guest_after_the_grace() {
        let (run, lines) = watched(
            "echo '[ 99.1] watchdog: BUG: soft lockup - CPU#1 stuck for 64s! [agent-monitor:7]'; echo trace; exec sleep 30",
        );
        assert_eq!(run.hung.as_deref(), Some("soft lockup - CPU#1 stuck for 64s! [agent-monitor:7]"));
        assert!(!run.timed_out);
        assert!(run.wall < Duration::from_secs(3), "killed after the grace, not at the silence: {:?}", run.wall);
        assert_eq!(lines.len(), 2, "the lines after the sign are kept: {lines:?}");
    }

    #[test]
    fn a_silent_guest_has_hung() {
        let (run, _) = watched("echo booted; exec sleep 30");
        assert!(run.hung.as_deref().is_some_and(|h| h.contains("silent")), "{:?}", run.hung);
        assert!(!run.timed_out);
    }

    #[test]
    fn a_talking_guest_runs_until_the_deadline() {
        let (run, _) = watched("while true; do echo tick; sleep 0.2; done");
        assert!(run.timed_out && run.hung.is_none());
    }

    #[test]
    fn control_sequences_are_dropped() {
        assert_eq!(printable("\u{1b}c\u{1b}[?7l\u{1b}[2JSeaBIOS (version 1.16)\r\n"), "SeaBIOS (version 1.16)");
        assert_eq!(printable("test result: ok. 3 passed\r\n"), "test result: ok. 3 passed");
        assert_eq!(printable("tab\there é"), "tab\there é");
    }

    fn run(hung: Option<&str>) -> Run {
        Run { timed_out: false, hung: hung.map(str::to_owned), wall: Duration::ZERO }
    }

    #[test]
    fn a_hung_guest_is_booted_once_more_and_its_log_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("nolsm.log");
        let mut boots = 0;
        let (last, console, first) = boot_once_more_if_hung(&log, || {
            boots += 1;
            std::fs::write(&log, format!("boot {boots}")).unwrap();
            Ok((run((boots == 1).then_some("stuck")), boots))
        })
        .unwrap();
        assert_eq!((boots, console), (2, 2));
        assert!(last.hung.is_none());
        assert!(first.unwrap().starts_with("stuck (log: "));
        assert_eq!(std::fs::read_to_string(dir.join("nolsm.hung.log")).unwrap(), "boot 1");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "boot 2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_hang_is_not_booted_again() {
        let log = std::env::temp_dir().join(format!("xtask-hang-twice-{}.log", std::process::id()));
        let mut boots = 0;
        let (last, _, first) = boot_once_more_if_hung(&log, || {
            boots += 1;
            std::fs::write(&log, "x").unwrap();
            Ok((run(Some("stuck")), ()))
        })
        .unwrap();
        assert_eq!(boots, 2);
        assert!(last.hung.is_some() && first.is_some());
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(log.with_extension("hung.log"));
    }
}
