//! Builds for a target other than the build host's: aarch64 from x86_64 (docs/BUILD.md,
//! "aarch64"). Debian's cross gcc links (`.cargo/config.toml`); the target's Rust
//! standard library is compiled from the library source (`-Z build-std`, unlocked by
//! `RUSTC_BOOTSTRAP=1`), so no Rust package for the target is needed.
//!
//! - `cargo xtask release`: release `agent-monitor` for x86_64 and aarch64 into
//!   `target/dist/<triple>/`, and a check that both embed the same eBPF programs.
//! - [`cross_tests`]: the aarch64 test binaries (unit and privileged integration
//!   tests), `probe` and `agent-monitor`, with their paths, for a VM runner.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

use crate::{cargo, workspace_root};

pub const X86_64: &str = "x86_64-unknown-linux-gnu";
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";
/// The targets `cargo xtask release` builds.
pub const RELEASE_TARGETS: [&str; 2] = [X86_64, AARCH64];

/// The build host's target triple (`rustc -vV`).
pub fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host")
}

/// `cargo SUBCOMMAND` building for `target`. The host's own target is built without
/// `--target` (the same artifacts `cargo build` makes, in `target/<profile>`); another
/// target gets `--target` and `-Z build-std`.
pub fn cargo_for(subcommand: &str, target: &str) -> anyhow::Result<Command> {
    let mut cmd = cargo();
    cmd.arg(subcommand);
    if target != host_triple()? {
        cmd.args(["--target", target, "-Z", "build-std=std,panic_abort"]);
    }
    Ok(cmd)
}

/// What one `cargo --message-format=json` run reported.
#[derive(Default)]
pub struct Built {
    pub executables: Vec<Executable>,
    /// `OUT_DIR` of each package whose build script ran (package name, directory).
    pub out_dirs: Vec<(String, PathBuf)>,
}

/// An executable cargo built.
#[derive(Clone, Debug)]
pub struct Executable {
    /// Target name (`agent-monitor`, `probe`, `enforce`, `monitor` for unit tests, ...).
    pub name: String,
    pub package: String,
    /// `bin`, `test` (integration test), `lib` (unit tests of a library), ...
    pub kind: String,
    /// Built with the test harness.
    pub harness: bool,
    pub path: PathBuf,
    /// Directory of the package's Cargo.toml (cargo runs tests from there).
    pub package_dir: PathBuf,
}

/// Package name out of a cargo package id (`path+file:///dir/monitor#0.1.0`,
/// `path+file:///dir/tests#monitor-tests@0.1.0`, `registry+...#name@1.0`).
fn package_name(id: &str) -> String {
    let (url, fragment) = id.rsplit_once('#').unwrap_or((id, ""));
    match fragment.split_once('@') {
        Some((name, _)) => name.to_owned(),
        // `dir#version`: the package is named like its directory.
        None => url.rsplit('/').next().unwrap_or(url).to_owned(),
    }
}

/// Runs a cargo command with `--message-format=json-render-diagnostics` (diagnostics
/// still go to the terminal) and collects what it built.
pub fn run_json(mut cmd: Command) -> anyhow::Result<Built> {
    let mut child = cmd
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo")?;
    let mut built = Built::default();
    for line in BufReader::new(child.stdout.take().context("cargo stdout")?).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let package = || package_name(message["package_id"].as_str().unwrap_or_default());
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                let Some(path) = message["executable"].as_str() else { continue };
                let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
                built.executables.push(Executable {
                    name: message["target"]["name"].as_str().unwrap_or_default().to_owned(),
                    package: package(),
                    kind: message["target"]["kind"][0].as_str().unwrap_or_default().to_owned(),
                    harness: message["profile"]["test"] == true,
                    path: path.into(),
                    package_dir: manifest.parent().map(Path::to_owned).unwrap_or_default(),
                });
            }
            Some("build-script-executed") => {
                if let Some(dir) = message["out_dir"].as_str() {
                    built.out_dirs.push((package(), dir.into()));
                }
            }
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(built)
}

/// The test binaries for `target`: what a machine of that architecture runs.
pub struct CrossTests {
    pub target: String,
    /// `agent-monitor`: the integration tests find it next to their own directory
    /// (`target/<triple>/<profile>/agent-monitor`).
    pub monitor: Executable,
    /// `probe`, at the path the tests were compiled with (`CARGO_BIN_EXE_probe`).
    pub probe: Executable,
    /// Unit tests of monitor and monitor-common, then the privileged integration tests.
    pub tests: Vec<Executable>,
}

/// Where the cross-built test binaries go: a build directory of their own
/// (`target/cross`), so that building them, in the background while `cargo xtask test`
/// runs the x86_64 VMs, neither waits for nor holds the lock of the host's builds.
pub fn cross_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from).join("cross")
}

/// Builds `agent-monitor`, `probe` and test binaries for `target` in one cargo run (one
/// feature resolution, so nothing is built twice), in [`cross_target_dir`], and returns
/// their paths. `suites`: only these privileged integration tests
/// (`tests/tests/NAME.rs`), no unit tests; `None`: the unit tests of monitor and
/// monitor-common and every integration test. `release`: the release profile (tests
/// then find `<dir>/<triple>/release/agent-monitor`). `background`: at the lowest CPU
/// priority (`nice -n 19`) and without progress output, to use what CPU time the
/// foreground leaves.
pub fn cross_tests(
    target: &str,
    release: bool,
    suites: Option<&[&str]>,
    background: bool,
) -> anyhow::Result<CrossTests> {
    let started = Instant::now();
    let mut build = cargo_for("build", target)?;
    if background {
        let mut nice = Command::new("nice");
        nice.args(["-n", "19"]).arg(build.get_program()).args(build.get_args()).arg("--quiet");
        build = nice;
    }
    build.env("CARGO_TARGET_DIR", cross_target_dir());
    if release {
        build.arg("--release");
    }
    build.args(["--package", "monitor", "--package", "monitor-tests", "--bin", "agent-monitor", "--bin", "probe"]);
    match suites {
        Some(suites) => {
            for suite in suites {
                build.args(["--test", suite]);
            }
        }
        None => {
            build.args(["--package", "monitor-common", "--lib", "--tests"]);
        }
    }
    let built = run_json(build)?;
    let executable = |name: &str| {
        built
            .executables
            .iter()
            .find(|e| e.name == name && !e.harness)
            .cloned()
            .with_context(|| format!("cargo built no {name}"))
    };
    let (monitor, probe) = (executable("agent-monitor")?, executable("probe")?);
    let mut tests: Vec<Executable> = built.executables.into_iter().filter(|e| e.harness).collect();
    // Unit tests first (no root needed), then the privileged ones, each group by name.
    tests.sort_by_key(|e| (e.package == "monitor-tests", e.package.clone(), e.name.clone()));
    tests.dedup_by(|a, b| a.path == b.path);
    if !tests.iter().any(|e| e.package == "monitor-tests") {
        bail!("cargo built no privileged test binaries for {target}");
    }
    println!("== {target} agent-monitor, probe and {} test binaries built in {:.0?}", tests.len(), started.elapsed());
    Ok(CrossTests { target: target.to_owned(), monitor, probe, tests })
}

/// `cargo xtask cross-tests`: builds them and prints one a line: `test` (a test harness)
/// or `bin`, target kind (`lib` for unit tests, `test` for integration tests, `bin`),
/// package, name, path.
pub fn print_cross_tests(target: &str, release: bool) -> anyhow::Result<()> {
    let built = cross_tests(target, release, None, false)?;
    for e in std::iter::once(&built.monitor).chain(std::iter::once(&built.probe)).chain(&built.tests) {
        let harness = if e.harness { "test" } else { "bin" };
        println!("{harness} {} {} {} {}", e.kind, e.package, e.name, e.path.display());
    }
    Ok(())
}

/// `cargo xtask release`: release `agent-monitor` for every target into
/// `target/dist/<triple>/agent-monitor`; fails if the embedded eBPF programs differ.
pub fn release(targets: &[String]) -> anyhow::Result<()> {
    let dist = workspace_root().join("target/dist");
    let mut objects = Vec::new();
    let mut lines = Vec::new();
    for target in targets {
        let started = Instant::now();
        println!("== release {target}");
        let mut cmd = cargo_for("build", target)?;
        cmd.args(["--release", "--package", "monitor", "--bin", "agent-monitor"]);
        let built = run_json(cmd)?;
        let exe =
            built.executables.iter().find(|e| e.name == "agent-monitor").context("cargo built no agent-monitor")?;
        let machine = elf::machine(&std::fs::read(&exe.path)?)?;
        let expected = match target.split('-').next() {
            Some("x86_64") => elf::EM_X86_64,
            Some("aarch64") => elf::EM_AARCH64,
            _ => machine,
        };
        if machine != expected {
            bail!("{} is for ELF machine {machine}, not {target}", exe.path.display());
        }
        let out_dir = built
            .out_dirs
            .iter()
            .rev()
            .find(|(package, _)| package == "monitor")
            .map(|(_, dir)| dir.clone())
            .context("no OUT_DIR of monitor's build script (the eBPF object)")?;
        objects.push((target.clone(), out_dir.join("monitor")));
        let dir = dist.join(target);
        std::fs::create_dir_all(&dir)?;
        let dest = dir.join("agent-monitor");
        let _ = std::fs::remove_file(&dest);
        std::fs::copy(&exe.path, &dest)?;
        let size = std::fs::metadata(&dest)?.len();
        lines.push(format!(
            "  {} ({:.1} MiB, built in {:.0?})",
            dest.display(),
            size as f64 / (1 << 20) as f64,
            started.elapsed()
        ));
    }
    // One eBPF object for every architecture: aya-build compiles it once per target
    // (with `--cfg bpf_target_arch`), so check that the programs and maps came out the
    // same; only debug info and BTF line info (source paths) may differ.
    if let Some(((first_target, first), rest)) = objects.split_first() {
        let reference = elf::program_sections(&std::fs::read(first)?)?;
        for (target, object) in rest {
            let other = elf::program_sections(&std::fs::read(object)?)?;
            if other != reference {
                let names = |s: &[(String, Vec<u8>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                let differing: Vec<&String> = reference
                    .iter()
                    .filter(|(name, bytes)| !other.iter().any(|(n, b)| n == name && b == bytes))
                    .map(|(name, _)| name)
                    .collect();
                bail!(
                    "the eBPF object embedded for {target} differs from {first_target}'s in {differing:?} \
                     (sections {:?} vs {:?}): one object must serve both",
                    names(&reference),
                    names(&other)
                );
            }
        }
        println!("eBPF object: {} program and map sections identical for {}", reference.len(), targets.join(", "));
    }
    println!("release binaries:");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Just enough ELF64 (little-endian) to compare eBPF objects and check binaries.
pub mod elf {
    use anyhow::{Context, bail};

    pub const EM_X86_64: u16 = 62;
    pub const EM_AARCH64: u16 = 183;

    fn bytes<const N: usize>(data: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
        data.get(at..at + N).and_then(|b| b.try_into().ok()).context("truncated ELF")
    }
    fn u16_at(data: &[u8], at: usize) -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(bytes(data, at)?))
    }
    fn u32_at(data: &[u8], at: usize) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(bytes(data, at)?))
    }
    fn u64_at(data: &[u8], at: usize) -> anyhow::Result<usize> {
        Ok(u64::from_le_bytes(bytes(data, at)?) as usize)
    }

    fn check(data: &[u8]) -> anyhow::Result<()> {
        if data.get(..6) != Some(b"\x7fELF\x02\x01") {
            bail!("not a little-endian ELF64 file");
        }
        Ok(())
    }

    /// `e_machine`.
    pub fn machine(data: &[u8]) -> anyhow::Result<u16> {
        check(data)?;
        u16_at(data, 18)
    }

    /// (name, contents) of every section, in file order.
    pub fn sections(data: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        check(data)?;
        let (shoff, shentsize, shnum, shstrndx) = (
            u64_at(data, 0x28)?,
            u16_at(data, 0x3a)? as usize,
            u16_at(data, 0x3c)? as usize,
            u16_at(data, 0x3e)? as usize,
        );
        let header = |i: usize| shoff + i * shentsize;
        let contents = |i: usize| -> anyhow::Result<&[u8]> {
            let (kind, offset, size) =
                (u32_at(data, header(i) + 4)?, u64_at(data, header(i) + 0x18)?, u64_at(data, header(i) + 0x20)?);
            if kind == 8 {
                return Ok(&[]); // SHT_NOBITS
            }
            data.get(offset..offset + size).context("section out of the file")
        };
        let names = contents(shstrndx)?;
        let mut out = Vec::new();
        for i in 1..shnum {
            let at = u32_at(data, header(i))? as usize;
            let name = names.get(at..).context("section name")?;
            let name =
                String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]).into_owned();
            out.push((name, contents(i)?.to_vec()));
        }
        Ok(out)
    }

    /// Sections that make up the programs and maps: everything but debug info and BTF
    /// (which carry source file paths).
    pub fn program_sections(data: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let skip = |name: &str| {
            let name = name.strip_prefix(".rel").unwrap_or(name);
            name.starts_with(".debug") || name.starts_with(".BTF")
        };
        Ok(sections(data)?.into_iter().filter(|(name, _)| !skip(name)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_ids() {
        assert_eq!(package_name("path+file:///work/x/monitor#0.1.0"), "monitor");
        assert_eq!(package_name("path+file:///work/x/tests#monitor-tests@0.1.0"), "monitor-tests");
        assert_eq!(package_name("registry+https://github.com/rust-lang/crates.io-index#libc@0.2.191"), "libc");
    }
}
