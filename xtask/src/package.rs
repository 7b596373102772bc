//! `cargo xtask package`: the Debian package of agent-monitor, built and checked.
//!
//! Builds the release binary and the man pages (`man.rs`), runs `cargo deb --no-build`
//! (metadata in monitor/Cargo.toml, unit and config in packaging/), then checks the .deb:
//! - `dpkg-deb -I`: the control fields, the conffiles, maintainer scripts that never
//!   start the unit;
//! - `dpkg-deb -c`: exactly the expected files, with their modes and root ownership;
//! - a real `dpkg -i` into a throwaway copy of this machine's root (an overlay mount in a
//!   private mount namespace, `package-check.sh`): dependencies resolve on this Debian,
//!   the maintainer scripts run, the unit is installed but not enabled, the installed
//!   binary runs and accepts the installed policy, `systemd-analyze verify` passes on
//!   the installed unit, a local edit of a conffile survives a reinstall, and remove
//!   and purge leave nothing behind. The host's own root is never written.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail, ensure};

use crate::{cargo, run, workspace_root};

/// The package check script, run under `unshare --mount` (see the module comment).
const CHECK_SCRIPT: &str = include_str!("package-check.sh");

#[derive(clap::Args, Debug, Default)]
pub struct PackageArgs {
    /// Use target/release/agent-monitor as it is (do not run cargo build first).
    #[arg(long)]
    pub no_build: bool,
    /// Package the debug binary already built (target/debug), not a release build:
    /// what `cargo xtask test` checks, to spare CI a release build of every crate.
    #[arg(long)]
    pub debug: bool,
}

/// `cargo xtask package`: prints the .deb's path last.
pub fn command(args: &PackageArgs) -> anyhow::Result<()> {
    let deb = build_and_check(args)?;
    println!("{}", deb.display());
    Ok(())
}

pub fn build_and_check(args: &PackageArgs) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    if !args.no_build && !args.debug {
        println!("== package: release build of agent-monitor");
        run(cargo().args(["build", "--release", "--package", "monitor", "--bin", "agent-monitor"]))?;
    }
    let pages = crate::man::generate(&crate::man::out_dir())?;
    println!("== package: {} man pages in {}", pages.len(), crate::man::out_dir().display());
    let deb = cargo_deb(args.debug)?;
    println!(
        "== package: {} ({} KiB) in {:.0?}",
        deb.display(),
        std::fs::metadata(&deb)?.len() / 1024,
        started.elapsed()
    );
    let page_names: Vec<String> =
        pages.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let checked = Instant::now();
    check_control(&deb)?;
    check_contents(&deb, &page_names)?;
    install_check(&deb, &page_names)?;
    println!("== package: checks passed in {:.1?}", checked.elapsed());
    Ok(deb)
}

/// Runs `cargo deb` on the binary already built; returns the .deb it wrote.
fn cargo_deb(debug: bool) -> anyhow::Result<PathBuf> {
    let out_dir = workspace_root().join("target/debian");
    // A stale .deb of another version must not be picked up below.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)?;
    }
    let output = cargo()
        .args(["deb", "--package", "monitor", "--no-build"])
        .args(if debug { &["--profile", "dev"][..] } else { &[] })
        .arg("--output")
        .arg(&out_dir)
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting cargo deb (scripts/setup.sh installs cargo-deb)")?;
    ensure!(output.status.success(), "cargo deb failed ({})", output.status);
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&out_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    ensure!(debs.len() == 1, "expected one .deb in {}, found {debs:?}", out_dir.display());
    Ok(debs.remove(0))
}

fn command_output(cmd: &mut Command) -> anyhow::Result<String> {
    let output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(output.status.success(), "{cmd:?} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// `Field: value` lines of a control file (continuation lines dropped).
fn control_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn check_control(deb: &Path) -> anyhow::Result<()> {
    let control = command_output(Command::new("dpkg-deb").args(["--field"]).arg(deb))?;
    let fields = control_fields(&control);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let arch = command_output(Command::new("dpkg").arg("--print-architecture"))?;
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    let expected = [
        ("Package", "agent-monitor"),
        ("Version", version.as_str()),
        ("Architecture", arch.trim()),
        ("Section", "admin"),
        ("Priority", "optional"),
    ];
    for (name, want) in expected {
        ensure!(field(name) == want, "control field {name}: {:?}, expected {want:?}\n{control}", field(name));
    }
    ensure!(field("Depends").contains("libc6"), "Depends does not name libc6: {:?}", field("Depends"));
    ensure!(field("Maintainer").contains('<'), "Maintainer without an address: {:?}", field("Maintainer"));
    ensure!(!field("Description").is_empty(), "no Description");

    let conffiles = command_output(Command::new("dpkg-deb").args(["--info"]).arg(deb).arg("conffiles"))?;
    let mut conffiles: Vec<&str> = conffiles.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    conffiles.sort();
    ensure!(
        conffiles == ["/etc/agent-monitor/config.yaml", "/etc/agent-monitor/policy.yaml"],
        "conffiles: {conffiles:?}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = command_output(Command::new("dpkg-deb").args(["--info"]).arg(deb).arg(script))
            .with_context(|| format!("no {script} in the package"))?;
        ensure!(text.contains("agent-monitor.service"), "{script} does not handle agent-monitor.service:\n{text}");
        // Not started on installation: only a running daemon is restarted on upgrade.
        ensure!(!text.contains("deb-systemd-invoke start"), "{script} starts the unit:\n{text}");
    }
    println!("== package: control fields, conffiles and maintainer scripts as expected");
    Ok(())
}

fn check_contents(deb: &Path, pages: &[String]) -> anyhow::Result<()> {
    let listing = command_output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    // path -> (mode, owner)
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(fields.len() >= 6, "unexpected dpkg-deb -c line: {line}");
        let (mode, owner, path) = (fields[0], fields[1], fields[5]);
        ensure!(owner == "0/0" || owner == "root/root", "{path} owned by {owner}");
        if !mode.starts_with('d') {
            files.insert(path.trim_start_matches('.').to_owned(), mode.to_owned());
        }
    }
    let mut expected: BTreeMap<String, &str> = [
        ("/usr/bin/agent-monitor", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/agent-monitor.service", "-rw-r--r--"),
        ("/etc/agent-monitor/config.yaml", "-rw-r--r--"),
        ("/etc/agent-monitor/policy.yaml", "-rw-r--r--"),
        ("/usr/share/doc/agent-monitor/README.md", "-rw-r--r--"),
        ("/usr/share/doc/agent-monitor/POLICY.md", "-rw-r--r--"),
        ("/usr/share/doc/agent-monitor/EVENTS.md", "-rw-r--r--"),
        ("/usr/share/doc/agent-monitor/copyright", "-rw-r--r--"),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m))
    .collect();
    for page in pages {
        expected.insert(format!("/usr/share/man/man1/{page}.gz"), "-rw-r--r--");
    }
    let mut problems = Vec::new();
    for (path, mode) in &expected {
        match files.get(path) {
            None => problems.push(format!("missing {path}")),
            Some(m) if m != mode => problems.push(format!("{path}: mode {m}, expected {mode}")),
            Some(_) => {}
        }
    }
    for path in files.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("unexpected {path}"));
    }
    if !problems.is_empty() {
        bail!("package contents:\n  {}\n{listing}", problems.join("\n  "));
    }
    println!("== package: {} files, each where and as expected", files.len());
    Ok(())
}

/// Installs, reinstalls, removes and purges the package in a throwaway overlay of this
/// machine's root (`package-check.sh`).
fn install_check(deb: &Path, pages: &[String]) -> anyhow::Result<()> {
    let work = workspace_root().join("target/package-check");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let man_pages = pages.iter().map(|p| p.trim_end_matches(".1").to_owned()).collect::<Vec<_>>().join(" ");
    let result = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", CHECK_SCRIPT, "package-check.sh"])
        .arg(deb)
        .arg(&work)
        .env("MAN_PAGES", man_pages));
    // The overlay and its mounts went away with the namespace; the upper layer is on disk.
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    result.context("installing the package into an overlay of this root (package-check.sh)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_fields_skip_continuation_lines() {
        let f = control_fields("Package: agent-monitor\nDescription: short\n long text: here\nSection: admin\n");
        assert_eq!(f.get("Package").map(String::as_str), Some("agent-monitor"));
        assert_eq!(f.get("Description").map(String::as_str), Some("short"));
        assert_eq!(f.get("Section").map(String::as_str), Some("admin"));
        assert_eq!(f.len(), 3);
    }
}
