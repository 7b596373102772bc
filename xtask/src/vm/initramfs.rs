//! The guest's initramfs: busybox for `/init`, the monitor, the probe, every integration
//! test binary, the host programs the tests run, and the shared libraries of all of them.
//!
//! Host files keep their host paths, symlinks included (`/bin -> usr/bin`, `/bin/sh ->
//! dash`): the test binaries have the probe's absolute path compiled in, and some tests
//! check the path of what ran (`/usr/bin/cat`, the target of `/bin/echo`). ELF files are
//! copied without their debug information. The image is an uncompressed `newc` cpio
//! (the kernel unpacks it faster than a compressed one under emulation).

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Component, Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

/// Programs the tests run besides the probe and the monitor: the commands of their
/// `sh -c` scripts and what they spawn themselves (`grep -rn 'Command::new\|sh", "-c' tests/`).
/// Real host programs, not busybox applets: tests check exec paths.
const HOST_PROGRAMS: &[&str] = &[
    "/bin/sh",
    "/bin/echo",
    "/bin/true",
    "/usr/bin/cat",
    "/usr/bin/true",
    "/usr/bin/sleep",
    // The default_profile suite: a device's first bytes, shown.
    "/usr/bin/head",
    "/usr/bin/od",
    "/usr/bin/ln",
    "/usr/bin/touch",
    "/usr/bin/mount",
    "/usr/bin/umount",
    // The daemon suite: what a stopped daemon left loaded; a non-root client.
    "/usr/sbin/bpftool",
    "/usr/bin/setpriv",
];

/// The guest's `/init`.
const INIT: &str = include_str!("init.sh");

/// `bounded SECONDS COMMAND...` for the guests' `/init` (this one's and the aarch64 VMs').
pub const WATCHDOG: &str = include_str!("watchdog.sh");

/// Seconds one test binary may run in the guest before the watchdog lists what every
/// process is doing and kills it (the slowest, `enforce` without BPF LSM, took 145 s
/// here, 200 s beside an emulated VM; the VM's own timeout leaves room for one kill).
const BINARY_TIMEOUT_S: u64 = 480;

/// What goes into the image besides [`HOST_PROGRAMS`].
pub struct Contents<'a> {
    pub busybox: &'a Path,
    pub monitor: &'a Path,
    pub probe: &'a Path,
    /// Integration test binaries, run in this order.
    pub tests: &'a [PathBuf],
    /// The working directory cargo gives the tests (their package directory).
    pub test_dir: &'a Path,
    pub test_threads: usize,
}

/// Builds the image from a fresh staging tree in `work` and returns its path.
pub fn build(contents: &Contents, work: &Path) -> anyhow::Result<PathBuf> {
    let tree = Tree::new(work.join("root"))?;
    tree.file("/bb/busybox", &fs::read(contents.busybox)?, 0o755)?;
    tree.file("/init", INIT.as_bytes(), 0o755)?;
    tree.file("/vm/watchdog.sh", WATCHDOG.as_bytes(), 0o644)?;
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/tmp"] {
        tree.dir(dir)?;
    }
    // What a Debian root file system has and the tests read.
    tree.file("/etc/hostname", b"agent-monitor-vm\n", 0o644)?;
    tree.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    tree.file("/etc/group", b"root:x:0:\n", 0o644)?;
    tree.file("/etc/shadow", b"root:*:20000:0:99999:7:::\n", 0o640)?;
    // Policies may name hosts (`localhost:8080`): glibc resolves them through these.
    tree.file("/etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)?;
    tree.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files\n", 0o644)?;

    let mut host = HostFiles { tree: &tree, done: BTreeSet::new() };
    for program in HOST_PROGRAMS {
        host.add(Path::new(program))?;
    }
    host.add(contents.monitor)?;
    host.add(contents.probe)?;
    for test in contents.tests {
        host.add(test)?;
    }
    tree.dir(&contents.test_dir.to_string_lossy())?;

    let list: String = contents.tests.iter().map(|t| format!("{}\n", t.display())).collect();
    tree.file("/vm/tests", list.as_bytes(), 0o644)?;
    let env = format!(
        "AGENT_MONITOR_BIN='{}'\nPROBE='{}'\nTEST_DIR='{}'\nTEST_THREADS={}\nBINARY_TIMEOUT={BINARY_TIMEOUT_S}\n",
        contents.monitor.display(),
        contents.probe.display(),
        contents.test_dir.display(),
        contents.test_threads
    );
    tree.file("/vm/env", env.as_bytes(), 0o644)?;

    let image = work.join("initramfs.cpio");
    tree.cpio(&image)?;
    Ok(image)
}

/// A staging directory that becomes the guest's `/`.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(root: PathBuf) -> anyhow::Result<Tree> {
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        }
        fs::create_dir_all(&root)?;
        Ok(Tree { root })
    }

    /// Where the guest path `path` (absolute) is staged.
    fn at(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn dir(&self, path: &str) -> anyhow::Result<()> {
        fs::create_dir_all(self.at(Path::new(path))).with_context(|| format!("staging {path}"))
    }

    fn file(&self, path: &str, data: &[u8], mode: u32) -> anyhow::Result<()> {
        let at = self.at(Path::new(path));
        fs::create_dir_all(at.parent().expect("absolute path"))?;
        fs::write(&at, data).with_context(|| format!("staging {path}"))?;
        fs::set_permissions(&at, fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Writes the tree as a newc cpio archive, every file owned by root.
    fn cpio(&self, image: &Path) -> anyhow::Result<()> {
        let mut paths = Vec::new();
        list(&self.root, Path::new("."), &mut paths)?;
        let out = fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
        let mut cpio = Command::new("cpio")
            .args(["--create", "--format=newc", "--owner=0:0", "--quiet"])
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(out)
            .spawn()
            .context("starting cpio")?;
        let mut stdin = cpio.stdin.take().context("cpio stdin")?;
        for path in &paths {
            stdin.write_all(path.as_os_str().as_encoded_bytes())?;
            stdin.write_all(b"\n")?;
        }
        drop(stdin);
        let status = cpio.wait()?;
        if !status.success() {
            bail!("cpio failed ({status})");
        }
        Ok(())
    }
}

/// Every path under `dir` (relative as `rel`), each directory before its contents.
fn list(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    out.push(rel.to_owned());
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list(&entry.path(), &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// Copies host files into the tree at their own paths, with every symlink on the way
/// and, for ELF files, every shared library the dynamic loader would load.
struct HostFiles<'a> {
    tree: &'a Tree,
    done: BTreeSet<PathBuf>,
}

impl HostFiles<'_> {
    fn add(&mut self, path: &Path) -> anyhow::Result<()> {
        let path = lexical(path);
        if !self.done.insert(path.clone()) {
            return Ok(());
        }
        // A symlink among the parent directories (`/bin` -> `usr/bin`): stage the link,
        // then the same path through its target.
        let mut prefix = PathBuf::from("/");
        let components: Vec<_> = path.components().skip(1).collect();
        for (i, component) in components.iter().enumerate() {
            prefix.push(component);
            let meta = fs::symlink_metadata(&prefix).with_context(|| format!("{}", prefix.display()))?;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&prefix)?;
                let link = self.tree.at(&prefix);
                if fs::symlink_metadata(&link).is_err() {
                    fs::create_dir_all(link.parent().expect("absolute path"))?;
                    symlink(&target, &link)?;
                }
                let mut through = prefix.parent().expect("absolute path").join(&target);
                through.extend(&components[i + 1..]);
                return self.add(&through);
            }
            if i + 1 < components.len() || meta.is_dir() {
                fs::create_dir_all(self.tree.at(&prefix))?;
            } else {
                self.copy(&prefix, meta.permissions())?;
            }
        }
        Ok(())
    }

    /// Copies a regular file; an ELF file loses its debug information and brings its
    /// shared libraries.
    fn copy(&mut self, path: &Path, permissions: fs::Permissions) -> anyhow::Result<()> {
        let to = self.tree.at(path);
        if !is_elf(path)? {
            fs::copy(path, &to).with_context(|| format!("copying {}", path.display()))?;
            return Ok(());
        }
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&to)
            .arg(path)
            .status()
            .context("starting strip")?;
        if !status.success() {
            bail!("strip --strip-debug {} failed ({status})", path.display());
        }
        fs::set_permissions(&to, permissions)?;
        for library in shared_libraries(path)? {
            self.add(&library)?;
        }
        Ok(())
    }
}

fn is_elf(path: &Path) -> anyhow::Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::Read::read_exact(&mut file, &mut magic).is_ok() && magic == *b"\x7fELF")
}

/// The libraries `ldd` lists with a path: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6
/// (0x...)` and the loader `/lib64/ld-linux-x86-64.so.2 (0x...)`. None for a static file.
fn shared_libraries(elf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(elf).output().context("starting ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {}: {}", elf.display(), String::from_utf8_lossy(&output.stderr));
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        let location = line.split_once("=>").map_or(line, |(_, to)| to).trim();
        let path = location.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("ldd {}: {line}", elf.display());
        }
    }
    Ok(libraries)
}

/// `path` with `.` and `..` resolved by name (the callers resolve symlinks one component
/// at a time, so the part before a `..` holds none).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_resolves_dots() {
        assert_eq!(lexical(Path::new("/usr/bin/../lib/./x")), PathBuf::from("/usr/lib/x"));
        assert_eq!(lexical(Path::new("/../a")), PathBuf::from("/a"));
    }

    #[test]
    fn ldd_of_a_host_program_names_libc() {
        let libraries = shared_libraries(Path::new("/usr/bin/cat")).unwrap();
        assert!(libraries.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{libraries:?}");
    }
}
