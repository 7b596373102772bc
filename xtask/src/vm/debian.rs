//! Debian packages for the guest, from apt and nowhere else: the kernel that
//! `linux-image-amd64` currently depends on (only its `/boot/vmlinuz-*`), and
//! `busybox-static`. Each is unpacked once into a cache directory named after the package
//! version; a later run finds it there and downloads nothing.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::run;

/// A kernel image from a Debian package.
pub struct Kernel {
    /// `uname -r` of that kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// Where downloads are kept between runs (outside `target/`, so `cargo clean` and a fresh
/// clone keep them): `AGENT_MONITOR_VM_CACHE`, else `/var/cache/agent-monitor/vm`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("AGENT_MONITOR_VM_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/agent-monitor/vm"), PathBuf::from)
}

/// The kernel `linux-image-amd64` depends on today, e.g. `linux-image-6.1.0-56-amd64`.
pub fn kernel(cache: &Path) -> anyhow::Result<Kernel> {
    retry_with_fresh_lists(|| {
        let package = dependency_of("linux-image-amd64", "linux-image-")?;
        let release = package.strip_prefix("linux-image-").expect("prefix checked").to_owned();
        let vmlinuz = unpacked(cache, &package, &format!("./boot/vmlinuz-{release}"))?;
        Ok(Kernel { release, vmlinuz })
    })
}

/// `/bin/busybox` of `busybox-static` (statically linked: needs nothing else in the guest).
pub fn busybox(cache: &Path) -> anyhow::Result<PathBuf> {
    retry_with_fresh_lists(|| unpacked(cache, "busybox-static", "./bin/busybox"))
}

/// Package lists may be missing (a fresh machine) or name versions the mirror no longer
/// has (old lists): then `apt-get update` and try once more.
fn retry_with_fresh_lists<T>(fetch: impl Fn() -> anyhow::Result<T>) -> anyhow::Result<T> {
    fetch().or_else(|first| {
        println!("== {first:#}; apt-get update and again");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        fetch()
    })
}

fn apt_cache(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("apt-cache").args(args).output().context("starting apt-cache")?;
    if !output.status.success() {
        bail!("apt-cache {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The dependency of `package`'s candidate version whose name starts with `prefix`:
/// `Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)` gives `linux-image-6.1.0-56-amd64`.
fn dependency_of(package: &str, prefix: &str) -> anyhow::Result<String> {
    let text = apt_cache(&["show", "--no-all-versions", package])?;
    let depends =
        text.lines().find_map(|l| l.strip_prefix("Depends: ")).with_context(|| format!("{package} has no Depends"))?;
    depends
        .split(',')
        .filter_map(|dependency| dependency.split_whitespace().next())
        .find(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .with_context(|| format!("{package} depends on no {prefix}* package: {depends}"))
}

fn candidate_version(package: &str) -> anyhow::Result<String> {
    let text = apt_cache(&["policy", package])?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_owned)
        .with_context(|| format!("apt knows no candidate version of {package}"))
}

/// `member` (a path inside the package, `./boot/...`) of the candidate version of
/// `package`, downloaded and unpacked the first time only.
fn unpacked(cache: &Path, package: &str, member: &str) -> anyhow::Result<PathBuf> {
    let version = candidate_version(package)?;
    let dir = cache.join(format!("{package}_{}", version.replace(':', "%3a")));
    let file = dir.join(member);
    if file.exists() {
        return Ok(file);
    }
    let download = cache.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    println!("== apt-get download {package}={version}");
    let status = Command::new("apt-get")
        .args(["download", "-qq", &format!("{package}={version}")])
        .current_dir(&download)
        .status()
        .context("starting apt-get")?;
    if !status.success() {
        bail!("apt-get download {package}={version} failed ({status})");
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let unpacking = cache.join("unpacking");
    let _ = std::fs::remove_dir_all(&unpacking);
    std::fs::create_dir_all(&unpacking)?;
    // dpkg-deb --fsys-tarfile | tar -x MEMBER: only that file, not the kernel's modules.
    let mut archive = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&unpacking)
        .arg(member)
        .stdin(archive.stdout.take().context("dpkg-deb stdout")?)
        .status()
        .context("starting tar")?;
    let dpkg = archive.wait()?;
    if !dpkg.success() || !tar.success() {
        bail!("unpacking {member} from {}: dpkg-deb {dpkg}, tar {tar}", deb.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&unpacking, &dir)?;
    std::fs::remove_dir_all(&download)?;
    if !file.exists() {
        bail!("{member} is not in {}", deb.display());
    }
    Ok(file)
}
