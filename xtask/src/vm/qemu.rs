//! Boots a kernel and initramfs in qemu with software emulation (TCG: KVM cannot run stock
//! kernels on these machines, see TOOLCHAIN.md), streams the serial console to the
//! terminal (each line prefixed) and to a log file, and kills qemu at a deadline.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::console::Console;

pub struct Boot<'a> {
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

/// How a boot went: what the console said, and whether qemu had to be killed.
pub struct Run {
    pub console: Console,
    pub timed_out: bool,
    pub wall: Duration,
}

pub fn boot(boot: &Boot) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut log = std::fs::File::create(boot.log).with_context(|| format!("creating {}", boot.log.display()))?;
    let mut qemu = Command::new("qemu-system-x86_64");
    // max without ERMS/FSRM: with them the kernel copies memory with `rep movsb`, which TCG
    // emulates a byte at a time; the BPF verifier copies its states all the time. Measured
    // on 6.1: one monitor start (program loading) 8.9 s -> 6.0 s.
    qemu.args(["-accel", "tcg", "-cpu", "max,erms=off,fsrm=off"])
        .args(["-smp", &boot.cpus.to_string(), "-m", &boot.memory_mib.to_string()])
        // No network card: the guest needs loopback only (and boots without iPXE).
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initramfs)
        .args(["-append", boot.append]);
    writeln!(log, "+ {qemu:?}")?;
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (scripts/setup.sh installs it)")?;

    // One thread per output stream; the lines meet here, so the deadline is checked
    // while the guest is silent too.
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let readers = [forward(stdout, lines.clone(), ""), forward(stderr, lines, "qemu: ")];

    let deadline = started + boot.timeout;
    let mut console = Console::default();
    let mut timed_out = false;
    loop {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                println!("{}{line}", boot.prefix);
                writeln!(log, "{line}")?;
                console.feed(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let message = format!("timeout: the guest ran longer than {:?}, qemu killed", boot.timeout);
                println!("{}{message}", boot.prefix);
                writeln!(log, "{message}")?;
                child.kill().context("killing qemu")?;
                break;
            }
        }
    }
    let status = child.wait()?;
    for reader in readers {
        let _ = reader.join();
    }
    writeln!(log, "qemu: {status}")?;
    Ok(Run { console, timed_out, wall: started.elapsed() })
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
    use super::printable;

    #[test]
    fn control_sequences_are_dropped() {
        assert_eq!(printable("\u{1b}c\u{1b}[?7l\u{1b}[2JSeaBIOS (version 1.16)\r\n"), "SeaBIOS (version 1.16)");
        assert_eq!(printable("test result: ok. 3 passed\r\n"), "test result: ok. 3 passed");
        assert_eq!(printable("tab\there é"), "tab\there é");
    }
}
