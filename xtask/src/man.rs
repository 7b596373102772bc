//! `cargo xtask man`: man pages generated from agent-monitor's clap CLI, into
//! `target/man/`: `agent-monitor.1` and one page per subcommand (`agent-monitor-run.1`,
//! `agent-monitor-policy-check.1`, ...), so every command is documented and a new one
//! gets its page without a change here.
//!
//! `monitor/src/cli.rs` is compiled into xtask as it is: depending on the `monitor`
//! crate would run its build script, which builds the eBPF object. So cli.rs must use
//! nothing but `std` and `clap`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

#[allow(dead_code, reason = "only the clap definition is used here, not the parsed values")]
#[path = "../../monitor/src/cli.rs"]
mod cli;

pub fn out_dir() -> PathBuf {
    crate::workspace_root().join("target/man")
}

/// Paths of the files the top-level page points to, and what each is.
const FILES: &[(&str, &str)] = &[
    ("/etc/agent-monitor/config.yaml", "Configuration of the daemon (agent-monitor daemon --config)."),
    (
        "/etc/agent-monitor/policy.yaml",
        "The policy: profiles and their rules (format: /usr/share/doc/agent-monitor/POLICY.md).",
    ),
    ("/run/agent-monitor/control.sock", "Control socket of the running daemon (root only)."),
    ("/var/log/agent-monitor/", "Event files of the daemon, when configured."),
    ("/usr/lib/systemd/system/agent-monitor.service", "The systemd unit that runs the daemon."),
    ("/usr/share/doc/agent-monitor/", "README.md, POLICY.md (policy reference), EVENTS.md (event reference)."),
];

/// Writes every page into `dir` (emptied first, so a removed command leaves no page)
/// and returns their paths.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages);
    let names: Vec<String> = pages.iter().map(page_name).collect();
    // The footer of every page, subcommands included: "agent-monitor 0.1.0".
    let source = format!("{} {}", cmd.get_name(), cmd.get_version().unwrap_or_default());
    let mut written = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page.clone()).source(source.clone()).render(&mut roff)?;
        if i == 0 {
            roff.extend_from_slice(files_section().as_bytes());
            let others: Vec<&str> = names[1..].iter().map(String::as_str).collect();
            roff.extend_from_slice(see_also(&others, &["systemctl(1)", "journalctl(1)"]).as_bytes());
        } else {
            roff.extend_from_slice(see_also(&[&names[0]], &[]).as_bytes());
        }
        let path = dir.join(format!("{}.1", names[i]));
        std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The command and its visible subcommands, depth first.
fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

/// `agent-monitor`, `agent-monitor-policy-check`: what clap_mangen names the page.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned()
}

/// Escapes text for a roff body line (backslashes; a leading `.` or `'`).
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') { format!("\\&{text}") } else { text }
}

fn files_section() -> String {
    let mut s = String::from(".SH FILES\n");
    for (path, what) in FILES {
        s += &format!(".TP\n\\fI{}\\fR\n{}\n", roff_text(path), roff_text(what));
    }
    s
}

fn see_also(pages: &[&str], external: &[&str]) -> String {
    let refs: Vec<String> = pages
        .iter()
        .map(|p| format!("\\fB{}\\fR(1)", roff_text(p)))
        .chain(external.iter().map(|e| {
            let (name, section) = e.split_once('(').unwrap_or((e, "1)"));
            format!("\\fB{}\\fR({section}", roff_text(name))
        }))
        .collect();
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", "))
}

/// `cargo xtask man`.
pub fn command() -> anyhow::Result<()> {
    let dir = out_dir();
    for page in generate(&dir)? {
        println!("{}", page.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_command_with_its_options() {
        let dir = std::env::temp_dir().join(format!("agent-monitor-man-test-{}", std::process::id()));
        let pages = generate(&dir).unwrap();
        let names: Vec<String> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for expected in ["agent-monitor.1", "agent-monitor-run.1", "agent-monitor-policy-check.1"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        let run = std::fs::read_to_string(dir.join("agent-monitor-run.1")).unwrap();
        assert!(run.contains("on\\-behalf\\-of"), "{run}");
        let top = std::fs::read_to_string(dir.join("agent-monitor.1")).unwrap();
        assert!(top.contains(".SH FILES") && top.contains("\\fBagent\\-monitor\\-run\\fR(1)"), "{top}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
