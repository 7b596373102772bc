//! `cargo xtask arm64-vm`: the aarch64 unit and privileged integration tests on Debian
//! 12's own arm64 kernels (6.1 and 6.12, from apt), in an emulated arm64 machine
//! (qemu-system-aarch64, TCG; docs/BUILD.md "aarch64").
//!
//! Steps, each a function the shared VM runner can take over:
//! [`fetch`] (kernels and an arm64 userland from Debian, without installing them),
//! [`crate::cross::cross_tests`] (the binaries), [`initramfs`] (busybox init, Debian's
//! coreutils and dash, the binaries at the absolute paths they were built with),
//! [`boot`] (qemu, console to a log) and [`Console`] (what the tests said).
//! Logs: `target/arm64-vm/<kernel>.log`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::{
    cross::{self, CrossTests},
    vm::qemu,
    workspace_root,
};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Line {
    /// Debian 12's default kernel (6.1.0-N-arm64): no BPF trampolines on arm64.
    #[value(name = "6.1")]
    V6_1,
    /// bookworm-security's 6.12.N+deb12-arm64: trampolines, so BPF LSM attaches.
    #[value(name = "6.12")]
    V6_12,
    All,
}

#[derive(Args)]
pub struct Arm64VmArgs {
    #[arg(long, value_enum, default_value_t = Line::All)]
    pub kernel: Line,
    /// Seconds one VM may run before it is killed (and counted as failed).
    #[arg(long, default_value_t = 2400)]
    pub timeout: u64,
    /// `--test-threads` of each test binary in the guest.
    #[arg(long, default_value_t = 2)]
    pub test_threads: usize,
    /// Build the binaries with the test profile instead of release. Under emulation a
    /// debug agent-monitor takes about 23 s to start a session, a release one about 9 s
    /// (nearly all of it the kernel verifying the programs).
    #[arg(long)]
    pub debug: bool,
    /// Only these test binaries, by name, comma-separated (`monitor,lsm`), on every
    /// chosen kernel. Without it (and without `--all`), each kernel runs its own
    /// suites (`KERNEL_LINES`), as `cargo xtask test` does.
    #[arg(long)]
    pub only: Option<String>,
    /// The unit tests and every privileged suite, on every chosen kernel (about 16 min
    /// on 6.1 and 10 min on 6.12 under emulation).
    #[arg(long, conflicts_with = "only")]
    pub all: bool,
    /// Boot the kernels at the same time instead of one after the other.
    #[arg(long)]
    pub parallel: bool,
    /// Arguments for every test binary (a test name filter, `--exact`, ...).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

impl Default for Arm64VmArgs {
    /// What `cargo xtask test` runs: each kernel's own suites.
    fn default() -> Arm64VmArgs {
        Arm64VmArgs {
            kernel: Line::All,
            timeout: 1500,
            test_threads: 2,
            debug: false,
            only: None,
            all: false,
            parallel: false,
            test_args: Vec::new(),
        }
    }
}

/// A Debian kernel line, the apt package names that belong to it, and what it tests.
struct KernelLine {
    name: &'static str,
    /// `linux-image-<prefix><N><suffix>`, the newest N wins.
    prefix: &'static str,
    suffix: &'static str,
    /// Whether the tests are to get the LSM tier (`AGENT_MONITOR_EXPECT_LSM`): a
    /// session that reports another tier fails its test.
    expect_lsm: bool,
    /// What `doctor` must report as `syscall_hooks`.
    syscall_hooks: &'static str,
    /// The privileged suites (`tests/tests/NAME.rs`) this kernel runs by default.
    suites: &'static [&'static str],
}

/// Under emulation every session costs seconds before the agent starts (loading and
/// verifying every program of the object: about 5 s on 6.1 and 2 s on 6.12, which
/// took 16-19 s before the path walk's state left the stack), so each kernel runs what
/// its tier tells apart, not
/// every suite: 6.1 (tier 2) the sessions, resolved paths, the events against their
/// schema, tier-2 enforcement and the kill switch; 6.12 the LSM tier suite (which also
/// checks the paths of what its hooks refuse, a `--no-lsm` session and doctor). `paths`
/// on 6.12 passes too but costs 110-220 s there, over CI's budget (it runs under the
/// LSM tier in the x86_64 `lsm` VM). `--all` runs everything on both.
const KERNEL_LINES: [KernelLine; 2] = [
    KernelLine {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-arm64",
        expect_lsm: false,
        // No BPF trampolines on arm64 before 6.4 (so no LSM either): the tracepoints.
        syscall_hooks: "tracepoints",
        suites: &[
            "verifier_budget",
            "default_profile",
            "envelope",
            "unix_sockets",
            "socket_families",
            "code_outside_exec",
            "sessions",
            "paths",
            "rename_race",
            "schema",
            "enforce",
            "kill_switch",
        ],
    },
    KernelLine {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-arm64",
        expect_lsm: true,
        syscall_hooks: "none",
        // `syscall_hooks` runs `--no-lsm`: tier 2 on arm64's trampolines (6.4+).
        suites: &["verifier_budget", "default_profile", "monitor_death", "lsm", "syscall_hooks"],
    },
];

/// The guest's userland besides busybox: the coreutils and shell the tests expect
/// (`/usr/bin/cat` as a program of its own, `sh` as dash), with their libraries. glibc
/// and libgcc come from the cross toolchain's copy (`/usr/aarch64-linux-gnu/lib`).
const USERLAND: [&str; 8] =
    ["busybox-static", "coreutils", "dash", "libacl1", "libattr1", "libgmp10", "libselinux1", "libpcre2-8-0"];

/// Where the cross toolchain keeps arm64 glibc.
const CROSS_LIBS: &str = "/usr/aarch64-linux-gnu/lib";

/// The BPF LSM is on the kernel command line in both kernels; on 6.1 its programs
/// cannot attach (no trampolines before 6.4 on arm64).
const LSM: &str = "lockdown,capability,landlock,yama,apparmor,bpf";
const CPUS: usize = 2;
const MEMORY_MIB: usize = 2048;

pub struct Kernel {
    pub line: &'static str,
    pub expect_lsm: bool,
    pub syscall_hooks: &'static str,
    pub suites: &'static [&'static str],
    /// `uname -r`, e.g. `6.1.0-56-arm64`.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// What [`fetch`] leaves in the cache.
pub struct Downloads {
    pub kernels: Vec<Kernel>,
    /// The userland packages, unpacked into one tree.
    pub userland: PathBuf,
}

fn work_dir() -> PathBuf {
    workspace_root().join("target/arm64-vm")
}

/// Sort key comparing embedded numbers as numbers (`-9-` < `-56-`).
fn natural_key(text: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let text_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        key.push((number.parse().unwrap_or(0), tail[..text_len].to_owned()));
        rest = &tail[text_len..];
    }
    key
}

/// The newest package of `line` among `names`.
fn newest<'a>(line: &KernelLine, names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter(|n| {
            n.strip_prefix(line.prefix)
                .and_then(|r| r.strip_suffix(line.suffix))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .max_by_key(|n| natural_key(n))
        .map(str::to_owned)
}

/// Adds the arm64 dpkg architecture for as long as it lives (unless it was there).
struct ForeignArch {
    added: bool,
}

impl ForeignArch {
    fn add() -> anyhow::Result<ForeignArch> {
        let out = Command::new("dpkg").arg("--print-foreign-architectures").output()?;
        if String::from_utf8_lossy(&out.stdout).lines().any(|a| a == "arm64") {
            return Ok(ForeignArch { added: false });
        }
        crate::run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        let guard = ForeignArch { added: true };
        crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
        Ok(guard)
    }
}

impl Drop for ForeignArch {
    fn drop(&mut self) {
        if self.added {
            let _ = Command::new("dpkg").args(["--remove-architecture", "arm64"]).status();
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        }
    }
}

/// Debian's arm64 kernels (newest 6.1 and 6.12 of bookworm and bookworm-security) and
/// the userland packages, downloaded once into `target/arm64-vm/debs` with `apt-get
/// download` (nothing is installed; the arm64 dpkg architecture is removed again).
pub fn fetch() -> anyhow::Result<Downloads> {
    let work = work_dir();
    let debs = work.join("debs");
    std::fs::create_dir_all(&debs)?;
    let have = |prefix: &str| -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&debs)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with("_arm64.deb") && name.starts_with(prefix) {
                names.push(name);
            }
        }
        Ok(names)
    };
    let cached_package = |file: &str| file.split('_').next().unwrap_or_default().to_owned();
    let complete = KERNEL_LINES.iter().all(|l| !have(l.prefix).unwrap_or_default().is_empty())
        && USERLAND.iter().all(|p| have(&format!("{p}_")).is_ok_and(|v| !v.is_empty()));
    if !complete {
        if effective_uid() != 0 {
            bail!("fetching arm64 packages needs root (dpkg --add-architecture arm64)");
        }
        println!("== arm64-vm: fetching Debian arm64 kernels and userland into {}", debs.display());
        let _arch = ForeignArch::add()?;
        let search = Command::new("apt-cache").args(["pkgnames", "linux-image-6."]).output()?;
        let names = String::from_utf8_lossy(&search.stdout).into_owned();
        let mut packages: Vec<String> = USERLAND.iter().map(|p| format!("{p}:arm64")).collect();
        for line in &KERNEL_LINES {
            let name = newest(line, names.lines())
                .with_context(|| format!("apt knows no {}N{} package", line.prefix, line.suffix))?;
            packages.push(format!("{name}:arm64"));
        }
        // apt-get download writes to its working directory (crate::run would move it).
        let status = Command::new("apt-get").args(["download", "-q"]).args(&packages).current_dir(&debs).status()?;
        if !status.success() {
            bail!("apt-get download {packages:?} failed ({status})");
        }
    }
    let mut kernels = Vec::new();
    for line in &KERNEL_LINES {
        let files = have(line.prefix)?;
        let package =
            newest(line, files.iter().map(|f| f.split('_').next().unwrap_or_default())).context("kernel deb")?;
        let file = files.iter().find(|f| cached_package(f) == package).context("kernel deb")?;
        let release = package.strip_prefix("linux-image-").unwrap_or(&package).to_owned();
        let dir = work.join(format!("kernel-{release}"));
        let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
        if !vmlinuz.exists() {
            std::fs::create_dir_all(&dir)?;
            // Only ./boot: the modules (hundreds of MB) are not needed.
            let script = format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./boot",
                debs.join(file).display(),
                dir.display()
            );
            crate::run(Command::new("sh").args(["-c", &script]))?;
        }
        kernels.push(Kernel {
            line: line.name,
            expect_lsm: line.expect_lsm,
            syscall_hooks: line.syscall_hooks,
            suites: line.suites,
            release,
            vmlinuz,
        });
    }
    let userland = work.join("userland");
    if !userland.join("bin/busybox").exists() {
        let _ = std::fs::remove_dir_all(&userland);
        std::fs::create_dir_all(&userland)?;
        for package in USERLAND {
            let file =
                have(&format!("{package}_"))?.into_iter().max_by_key(|f| natural_key(f)).context("userland deb")?;
            crate::run(Command::new("dpkg-deb").arg("-x").arg(debs.join(file)).arg(&userland))?;
        }
    }
    Ok(Downloads { kernels, userland })
}

/// `id -u` (the xtask has no libc dependency).
fn effective_uid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// Makes `path` (absolute, on the build host) a path inside `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copies the unpacked userland into `root`, merging `/bin`, `/sbin` and `/lib` into
/// `/usr` (Debian 12's layout), without documentation.
fn copy_userland(from: &Path, to: &Path, relative: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from.join(relative))? {
        let entry = entry?;
        let rel = relative.join(entry.file_name());
        if rel.starts_with("usr/share") {
            continue;
        }
        let mut dest_rel = rel.clone();
        for dir in ["bin", "sbin", "lib"] {
            if let Ok(rest) = rel.strip_prefix(dir) {
                dest_rel = Path::new("usr").join(dir).join(rest);
            }
        }
        let dest = to.join(&dest_rel);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_userland(from, to, &rel)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(target, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// `DT_NEEDED` entries of an ELF file (`readelf -d`; empty for static binaries).
fn needed(path: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("readelf").arg("-dW").arg(path).output().context("running readelf (binutils)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_owned()))
        .collect())
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"\x7fELF"
}

/// Copies the shared libraries every ELF file under `dirs` needs, transitively, into
/// `root/usr/lib/aarch64-linux-gnu`, from the userland tree or the cross toolchain.
fn add_libraries(root: &Path, elves: &[PathBuf]) -> anyhow::Result<()> {
    let libdir = root.join("usr/lib/aarch64-linux-gnu");
    std::fs::create_dir_all(&libdir)?;
    let mut todo: Vec<PathBuf> = elves.to_vec();
    let mut done = BTreeSet::new();
    while let Some(file) = todo.pop() {
        for lib in needed(&file)? {
            if !done.insert(lib.clone()) {
                continue;
            }
            let dest = libdir.join(&lib);
            if !dest.exists() {
                let source = Path::new(CROSS_LIBS).join(&lib);
                if !source.exists() {
                    bail!("{} needs {lib}, found neither in the userland nor in {CROSS_LIBS}", file.display());
                }
                std::fs::copy(&source, &dest)?;
            }
            todo.push(dest);
        }
    }
    // The program interpreter (PT_INTERP /lib/ld-linux-aarch64.so.1).
    std::fs::copy(Path::new(CROSS_LIBS).join("ld-linux-aarch64.so.1"), root.join("usr/lib/ld-linux-aarch64.so.1"))?;
    Ok(())
}

/// Single-quotes `text` for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The guest's /init: mounts, then every test binary from its package directory
/// (as cargo runs them), each under the watchdog, with markers the host parses, then
/// power off.
/// Seconds one test binary may run in the guest before the watchdog lists what every
/// process is doing and kills it (the slowest binary takes about 110 s under emulation).
const BINARY_TIMEOUT_S: u64 = 600;

fn init_script(tests: &CrossTests, test_threads: usize, test_args: &[String]) -> String {
    let mut script = String::from(
        r#"#!/usr/bin/busybox sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Applets for what coreutils and dash do not provide (existing files are kept).
/usr/bin/busybox --install -s /usr/bin 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Pseudo-terminals (/dev/ptmx finds its instance at /dev/pts), as on any system.
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
# /tmp stays on the initramfs (a tmpfs would hide binaries staged under /tmp).
chmod 1777 /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
# What udev would create.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
hostname "$(cat /etc/hostname)"
ip link set lo up
echo "AM_GUEST kernel=$(uname -r) machine=$(uname -m) cpus=$(nproc) lsm=$(cat /sys/kernel/security/lsm) uptime=$(cut -d' ' -f1 /proc/uptime)"
export CI=1 RUST_BACKTRACE=1 HOME=/root
# The host says which test binaries this kernel runs and which tier they are to get.
TESTS=
for word in $(cat /proc/cmdline); do
    case "$word" in
        agent_monitor.expect_lsm=*) export AGENT_MONITOR_EXPECT_LSM="${word#*=}" ;;
        agent_monitor.tests=*) TESTS="${word#*=}" ;;
    esac
done
echo "AM_TESTS $TESTS expect_lsm=$AGENT_MONITOR_EXPECT_LSM"
"#,
    );
    script.push_str(crate::vm::initramfs::WATCHDOG);
    // What this kernel offers (architecture, each LSM hook and why it did not attach,
    // the tier of each resource) and how long loading the programs takes here (what
    // every session of the tests pays); then the same as JSON, which the host checks
    // against the tiers this kernel should give.
    let monitor = quote(&tests.monitor.path.display().to_string());
    script.push_str(&format!(
        "t0=$(cut -d' ' -f1 /proc/uptime); RUST_LOG=monitor::loader=debug {monitor} doctor 2>&1; \
         echo \"AM_TIMING agent-monitor doctor: rc=$? from $t0 to $(cut -d' ' -f1 /proc/uptime)\"\n\
         echo \"AM_DOCTOR $({monitor} doctor --json 2>/dev/null)\"\n"
    ));
    let args: Vec<String> = test_args.iter().map(|a| quote(a)).collect();
    for test in &tests.tests {
        let label = format!("{}/{}", test.package, test.name);
        script.push_str(&format!(
            "case \",$TESTS,\" in *,{name},*)\n\
             echo \"AM_BINARY_START {label} uptime=$(cut -d' ' -f1 /proc/uptime)\"\n\
             cd {dir} && bounded {BINARY_TIMEOUT_S} {exe} --test-threads={test_threads} {args} 2>&1\n\
             echo \"AM_BINARY_END {label} rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)\"\n\
             esac\n",
            name = test.name,
            dir = quote(&test.package_dir.display().to_string()),
            exe = quote(&test.path.display().to_string()),
            args = args.join(" "),
        ));
    }
    script.push_str("cd /\necho AM_DONE\nsync\npoweroff -f\n");
    script
}

/// Builds the initramfs (a newc cpio, uncompressed) and returns its path.
pub fn initramfs(
    downloads: &Downloads,
    tests: &CrossTests,
    test_threads: usize,
    test_args: &[String],
) -> anyhow::Result<PathBuf> {
    let work = work_dir();
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["usr/bin", "usr/sbin", "usr/lib", "proc", "sys", "dev", "tmp", "run", "etc", "root", "var/tmp"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        std::os::unix::fs::symlink(target, root.join(link))?;
    }
    copy_userland(&downloads.userland, &root, Path::new(""))?;
    // /bin/sh is dash on Debian (dash's postinst makes that link, not its data).
    let _ = std::fs::remove_file(root.join("usr/bin/sh"));
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh"))?;

    // The test binaries where they were built (tests embed CARGO_BIN_EXE_probe), without
    // debug info (they are run, not debugged, and the guest's memory holds them).
    let mut elves = Vec::new();
    for exe in std::iter::once(&tests.monitor).chain(std::iter::once(&tests.probe)).chain(&tests.tests) {
        let dest = inside(&root, &exe.path);
        std::fs::create_dir_all(dest.parent().context("binary directory")?)?;
        std::fs::create_dir_all(inside(&root, &exe.package_dir))?;
        crate::run(Command::new("aarch64-linux-gnu-strip").arg("--strip-debug").arg("-o").arg(&dest).arg(&exe.path))?;
        elves.push(dest);
    }
    for dir in ["usr/bin", "usr/sbin"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.is_file() && !path.is_symlink() && is_elf(&path) {
                elves.push(path);
            }
        }
    }
    add_libraries(&root, &elves)?;
    // The kernel headers the syscall-number unit test compares against.
    for header in
        ["/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/aarch64-linux-gnu/include/asm-generic/unistd.h"]
    {
        let dest = inside(&root, Path::new(header));
        std::fs::create_dir_all(dest.parent().context("header directory")?)?;
        std::fs::copy(header, dest).with_context(|| format!("{header} (scripts/setup.sh installs it)"))?;
    }

    let etc = root.join("etc");
    std::fs::write(etc.join("hostname"), "am-arm64\n")?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )?;
    std::fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\n")?;
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n")?;
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640))?;
        let init = root.join("init");
        std::fs::write(&init, init_script(tests, test_threads, test_args))?;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    }

    let image = work.join("initramfs.cpio");
    let script = format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 > '{}'",
        root.display(),
        image.display()
    );
    crate::run(Command::new("sh").args(["-c", &script]))?;
    std::fs::remove_dir_all(&root)?;
    Ok(image)
}

/// What the guest's console said.
#[derive(Default)]
pub struct Console {
    pub kernel: Option<String>,
    pub guest: Option<String>,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Names of failed tests, as `binary: test`.
    pub failures: Vec<String>,
    /// Binaries that exited non-zero without reporting a failed test (crashed, or
    /// failed to start).
    pub crashed: Vec<String>,
    pub done: bool,
    /// `agent-monitor doctor --json`, as the guest printed it.
    pub doctor: Option<String>,
    current: Option<String>,
    binary_failed: u64,
    progress: crate::vm::Progress,
}

impl Console {
    pub fn line(&mut self, line: &str) {
        self.progress.feed(line);
        if let Some(rest) = line.strip_prefix("AM_GUEST ") {
            self.guest = Some(rest.to_owned());
            self.kernel = rest.split_whitespace().find_map(|w| w.strip_prefix("kernel=")).map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("AM_BINARY_START ") {
            self.current = rest.split_whitespace().next().map(str::to_owned);
            self.progress.binary_started(self.current.as_deref().unwrap_or("?"));
            self.binary_failed = 0;
        } else if let Some(rest) = line.strip_prefix("AM_BINARY_END ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            let rc = words.find_map(|w| w.strip_prefix("rc=")).unwrap_or("?");
            if rc != "0" && self.binary_failed == 0 {
                self.crashed.push(format!("{name} (rc={rc})"));
            }
            self.current = None;
        } else if let Some(rest) = line.strip_prefix("AM_DOCTOR ") {
            self.doctor = Some(rest.to_owned());
        } else if line == "AM_DONE" {
            self.done = true;
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 36 passed; 0 failed; 0 ignored; ..."
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| part.trim().strip_suffix(word)?.split_whitespace().last()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            self.passed += count("passed");
            self.failed += count("failed");
            self.ignored += count("ignored");
            self.binary_failed += count("failed");
        } else if let Some(rest) = line.strip_prefix("test ")
            && let Some(name) = rest.strip_suffix(" ... FAILED")
        {
            self.failures.push(format!("{}: {name}", self.current.as_deref().unwrap_or("?")));
        }
    }

    /// Why the run does not count as a pass, if it does not, with the tests to blame.
    pub fn problem(&self) -> Option<String> {
        let problem = self.problem_alone()?;
        Some(match self.progress.describe() {
            Some(tests) => format!("{problem} ({tests})"),
            None => problem,
        })
    }

    fn problem_alone(&self) -> Option<String> {
        if !self.done {
            Some("the guest did not finish (no AM_DONE): crash, panic or timeout".into())
        } else if self.failed > 0 || !self.crashed.is_empty() {
            Some(format!("{} tests failed, binaries failed without a test failure: {:?}", self.failed, self.crashed))
        } else if self.passed == 0 {
            Some("no test passed".into())
        } else {
            None
        }
    }
}

/// Boots `kernel` with `image` until the guest powers off, hangs or `timeout` passes;
/// returns the boot and what its console said.
fn boot(
    kernel: &Kernel,
    tests: &[&str],
    image: &Path,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<(qemu::Run, Console)> {
    let append = format!(
        "console=ttyAMA0 panic=-1 softlockup_all_cpu_backtrace=1 init=/init lsm={LSM} agent_monitor.expect_lsm={} agent_monitor.tests={}",
        u8::from(kernel.expect_lsm),
        tests.join(",")
    );
    let mut console = Console::default();
    let run = qemu::boot(
        &qemu::Boot {
            machine: qemu::Machine::Aarch64,
            vmlinuz: &kernel.vmlinuz,
            initramfs: image,
            append: &append,
            cpus: CPUS,
            memory_mib: MEMORY_MIB,
            timeout,
            prefix: &format!("[arm64 {}] ", kernel.line),
            log,
        },
        &mut |line| console.line(line),
    )?;
    Ok((run, console))
}

/// How one VM did.
pub struct Outcome {
    pub kernel: String,
    pub console: Console,
    pub wall: Duration,
    pub problem: Option<String>,
    /// The sign of a first boot's hang, when the guest was booted once more.
    pub hung_before: Option<String>,
    pub log: PathBuf,
}

impl Outcome {
    /// Failures to count: the failed tests, or one for a run that failed without any (it
    /// crashed, hung or ran nothing).
    pub fn failures(&self) -> u64 {
        if self.problem.is_some() { self.console.failed.max(1) } else { self.console.failed }
    }

    pub fn summary(&self) -> String {
        let c = &self.console;
        let mut verdict = self.problem.as_deref().map_or_else(|| "ok".to_owned(), |p| format!("FAILED: {p}"));
        if let Some(sign) = &self.hung_before {
            verdict += &format!(" (booted twice: the first boot hung: {sign})");
        }
        format!(
            "arm64 vm {}: {} passed, {} failed, {} ignored, {:.0?} wall: {verdict}",
            self.kernel, c.passed, c.failed, c.ignored, self.wall
        )
    }
}

/// Builds, fetches and boots; returns one outcome per kernel.
pub fn run(args: &Arm64VmArgs) -> anyhow::Result<Vec<Outcome>> {
    let downloads = fetch()?;
    let tests = build(args, false)?;
    boot_all(args, &downloads, &tests)
}

/// The chosen kernel lines.
fn chosen_lines(args: &Arm64VmArgs) -> impl Iterator<Item = &'static KernelLine> + '_ {
    KERNEL_LINES.iter().filter(|l| match args.kernel {
        Line::All => true,
        Line::V6_1 => l.name == "6.1",
        Line::V6_12 => l.name == "6.12",
    })
}

/// Cross-builds what the chosen kernels run: their own suites, or everything for
/// `--only` (which may name unit tests) and `--all`. `background`: see
/// [`cross::cross_tests`].
pub fn build(args: &Arm64VmArgs, background: bool) -> anyhow::Result<CrossTests> {
    let mut suites: Vec<&str> = chosen_lines(args).flat_map(|l| l.suites.iter().copied()).collect();
    suites.sort_unstable();
    suites.dedup();
    let every = args.only.is_some() || args.all;
    cross::cross_tests(cross::AARCH64, !args.debug, (!every).then_some(&suites[..]), background)
}

/// Boots the chosen kernels with `tests`; returns one outcome per kernel.
pub fn boot_all(args: &Arm64VmArgs, downloads: &Downloads, tests: &CrossTests) -> anyhow::Result<Vec<Outcome>> {
    let image = prepare(args, downloads, tests)?;
    let kernels: Vec<&Kernel> =
        downloads.kernels.iter().filter(|k| chosen_lines(args).any(|l| l.name == k.line)).collect();
    if args.parallel {
        std::thread::scope(|scope| {
            let running: Vec<_> = kernels.iter().map(|k| scope.spawn(|| boot_kernel(args, k, tests, &image))).collect();
            running.into_iter().map(|r| r.join().expect("VM thread panicked")).collect()
        })
    } else {
        kernels.iter().map(|k| boot_kernel(args, k, tests, &image)).collect()
    }
}

/// Boots the kernel of line `line` (`6.1`, `6.12`) with `image` (from [`prepare`]).
/// Several may run at once: each has its own qemu and log.
pub fn boot_line(
    args: &Arm64VmArgs,
    downloads: &Downloads,
    tests: &CrossTests,
    image: &Path,
    line: &str,
) -> anyhow::Result<Outcome> {
    let kernel =
        downloads.kernels.iter().find(|k| k.line == line).with_context(|| format!("no arm64 kernel of line {line}"))?;
    boot_kernel(args, kernel, tests, image)
}

/// Checks `--only` and builds the initramfs of `tests`.
pub fn prepare(args: &Arm64VmArgs, downloads: &Downloads, tests: &CrossTests) -> anyhow::Result<PathBuf> {
    if let Some(only) = &args.only {
        for name in only.split(',') {
            if !tests.tests.iter().any(|t| t.name == name) {
                bail!("no test binary {name:?} (--only takes test binary names, comma-separated)");
            }
        }
    }
    let started = Instant::now();
    let image = initramfs(downloads, tests, args.test_threads, &args.test_args)?;
    println!(
        "== arm64-vm: initramfs {} ({} MiB, {} test binaries for {}) in {:.0?}",
        image.display(),
        std::fs::metadata(&image)?.len() >> 20,
        tests.tests.len(),
        tests.target,
        started.elapsed()
    );
    Ok(image)
}

fn boot_kernel(args: &Arm64VmArgs, kernel: &Kernel, tests: &CrossTests, image: &Path) -> anyhow::Result<Outcome> {
    let only: Option<Vec<&str>> = args.only.as_deref().map(|only| only.split(',').collect());
    let all: Vec<&str> = tests.tests.iter().map(|t| t.name.as_str()).collect();
    let chosen: &[&str] = match &only {
        Some(names) => names,
        None if args.all => &all,
        None => kernel.suites,
    };
    println!("== arm64-vm: Debian kernel {} (lsm={LSM}): {}", kernel.release, chosen.join(", "));
    let log = work_dir().join(format!("{}.log", kernel.release));
    let (run, console, hung_before) =
        qemu::boot_once_more_if_hung(&log, || boot(kernel, chosen, image, &log, Duration::from_secs(args.timeout)))?;
    let mut problem = console.problem();
    if run.timed_out {
        problem = Some(format!("timed out after {}s", args.timeout));
    }
    if let Some(sign) = &run.hung {
        problem = Some(format!("the guest hung twice: {sign}"));
    }
    if let Some(booted) = console.kernel.as_deref().filter(|k| *k != kernel.release) {
        problem = Some(format!("booted {booted}, expected {}", kernel.release));
    }
    if let Err(error) = check_doctor(console.doctor.as_deref(), kernel.expect_lsm, kernel.syscall_hooks) {
        problem = Some(format!("agent-monitor doctor: {error}"));
    }
    let outcome = Outcome { kernel: kernel.release.clone(), console, wall: run.wall, problem, hung_before, log };
    println!("{}", outcome.summary());
    Ok(outcome)
}

/// Whether `doctor --json` in the guest named the architecture and reported the tiers
/// this kernel should give: the LSM tier for every resource, or tier 2 for every one,
/// and tier 2's syscall hooks.
fn check_doctor(json: Option<&str>, expect_lsm: bool, syscall_hooks: &str) -> anyhow::Result<()> {
    let json = json.context("the guest printed no doctor report")?;
    let report: serde_json::Value = serde_json::from_str(json).with_context(|| format!("not JSON: {json}"))?;
    if report["arch"] != "aarch64" {
        bail!("architecture {} instead of aarch64", report["arch"]);
    }
    let tiers = &report["enforcement"];
    let expected = if expect_lsm {
        serde_json::json!({"files": "lsm", "exec": "lsm", "network": "lsm", "self_protection": "lsm"})
    } else {
        serde_json::json!({"files": "tracepoint", "exec": "tracepoint", "network": "cgroup", "self_protection": "seccomp"})
    };
    if *tiers != expected {
        bail!("tiers {tiers}, expected {expected} (unavailable: {})", report["lsm_unavailable"]);
    }
    if report["syscall_hooks"] != syscall_hooks {
        bail!("syscall hooks {}, expected {syscall_hooks}", report["syscall_hooks"]);
    }
    Ok(())
}

/// `cargo xtask arm64-vm`: fails unless every chosen VM passed.
pub fn command(args: &Arm64VmArgs) -> anyhow::Result<()> {
    let outcomes = run(args)?;
    for outcome in &outcomes {
        println!("{}", outcome.summary());
        if let Some(guest) = &outcome.console.guest {
            println!("  guest: {guest}");
        }
        for failure in &outcome.console.failures {
            println!("  failed: {failure}");
        }
        for crashed in &outcome.console.crashed {
            println!("  binary failed: {crashed}");
        }
        println!("  log: {}", outcome.log.display());
    }
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.problem.is_some()).map(|o| o.kernel.as_str()).collect();
    if !failed.is_empty() {
        bail!("arm64 vm {} failed", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_kernel_of_each_line() {
        let names = [
            "linux-image-6.1.0-9-arm64",
            "linux-image-6.1.0-56-arm64",
            "linux-image-6.1.0-56-arm64-unsigned",
            "linux-image-6.1.0-56-rt-arm64",
            "linux-image-6.12.9+deb12-arm64",
            "linux-image-6.12.117+deb12-arm64",
            "linux-image-6.12.117+deb12-arm64-dbg",
        ];
        assert_eq!(newest(&KERNEL_LINES[0], names.into_iter()).as_deref(), Some("linux-image-6.1.0-56-arm64"));
        assert_eq!(newest(&KERNEL_LINES[1], names.into_iter()).as_deref(), Some("linux-image-6.12.117+deb12-arm64"));
    }

    #[test]
    fn doctor_report_must_match_the_kernel() {
        let report = |arch: &str, network: &str, hooks: &str| {
            format!(
                r#"{{"arch":"{arch}","enforcement":{{"files":"lsm","exec":"lsm","network":"{network}","self_protection":"lsm"}},"syscall_hooks":"{hooks}","lsm_unavailable":null}}"#
            )
        };
        assert!(check_doctor(Some(&report("aarch64", "lsm", "none")), true, "none").is_ok());
        assert!(
            check_doctor(Some(&report("aarch64", "cgroup", "none")), true, "none").is_err(),
            "one resource fell back"
        );
        assert!(check_doctor(Some(&report("x86_64", "lsm", "none")), true, "none").is_err());
        assert!(check_doctor(Some(&report("aarch64", "lsm", "none")), false, "none").is_err());
        assert!(
            check_doctor(Some(&report("aarch64", "lsm", "tracepoints")), true, "none").is_err(),
            "hooks it needs not"
        );
        let tier_2 = |hooks: &str| {
            format!(
                r#"{{"arch":"aarch64","enforcement":{{"files":"tracepoint","exec":"tracepoint","network":"cgroup","self_protection":"seccomp"}},"syscall_hooks":"{hooks}"}}"#
            )
        };
        assert!(check_doctor(Some(&tier_2("tracepoints")), false, "tracepoints").is_ok());
        assert!(check_doctor(Some(&tier_2("functions")), false, "tracepoints").is_err());
        assert!(check_doctor(None, false, "tracepoints").is_err());
        assert!(check_doctor(Some(""), false, "tracepoints").is_err(), "doctor failed to print");
    }

    #[test]
    fn console_counts_results_failures_and_crashes() {
        let mut c = Console::default();
        for line in [
            "AM_GUEST kernel=6.1.0-56-arm64 machine=aarch64 cpus=2 lsm=x uptime=1",
            "AM_BINARY_START monitor-tests/enforce uptime=2",
            "test a ... ok",
            "test b ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "AM_BINARY_END monitor-tests/enforce rc=101 uptime=3",
            "AM_BINARY_START monitor-tests/paths uptime=3",
            "AM_BINARY_END monitor-tests/paths rc=139 uptime=3",
        ] {
            c.line(line);
        }
        assert_eq!(c.kernel.as_deref(), Some("6.1.0-56-arm64"));
        assert_eq!((c.passed, c.failed), (1, 1));
        assert_eq!(c.failures, ["monitor-tests/enforce: b"]);
        assert_eq!(c.crashed, ["monitor-tests/paths (rc=139)"]);
        assert!(c.problem().is_some(), "no AM_DONE");
        c.line("AM_DONE");
        assert!(c.problem().unwrap().contains("1 tests failed"));
    }
}
