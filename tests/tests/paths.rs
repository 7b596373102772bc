//! File paths come from the kernel's file object: whatever string the agent passed,
//! the event names the file that was opened.

use std::process::Command;

use monitor_tests::{TempDir, privileged, run_session};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

#[test]
fn relative_and_dot_dot_paths_resolve() {
    if !privileged() {
        return;
    }
    let session = run_session(&["sh", "-c", "cd /etc && cat hostname; cat ../etc/./hostname"]);
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 2, "{}", session.dump());
    let root = session.root_pid();
    for open in &opens {
        assert_ne!(open["process"]["pid"], root, "opened by a child process");
        assert_eq!(open["process"]["ppid"], root);
        assert_eq!(open["file"]["access"], "read");
        assert_eq!(open["decision"]["action"], "allow");
    }
    assert_ne!(opens[0]["process"]["pid"], opens[1]["process"]["pid"]);
}

#[test]
fn dirfd_relative_opens_resolve() {
    if !privileged() {
        return;
    }
    let session = run_session(&[PROBE, "openat", "/etc", "hostname"]);
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 1, "{}", session.dump());
    assert_eq!(opens[0]["file"]["syscall"], session.open_syscall("openat"));
    // The O_PATH directory descriptor is an open too; the LSM tier does not see it (the
    // kernel calls no file_open hook for O_PATH, which gives no access to the contents).
    let dir = session.opens_of("/etc");
    if session.tiers().files == "lsm" {
        assert!(dir.is_empty(), "{}", session.dump());
    } else {
        assert_eq!(dir.len(), 1, "{}", session.dump());
        assert_eq!(dir[0]["file"]["access"], "none");
    }
}

#[test]
fn openat2_resolves() {
    if !privileged() {
        return;
    }
    let session = run_session(&[PROBE, "openat2", "/etc", "hostname"]);
    let opens = session.opens_of("/etc/hostname");
    assert_eq!(opens.len(), 1, "{}", session.dump());
    assert_eq!(opens[0]["file"]["syscall"], session.open_syscall("openat2"));
}

#[test]
fn symlinks_resolve_to_their_target() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("symlink");
    let link = dir.path().join("innocent-name");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    let session = run_session(&[PROBE, "open", link.to_str().unwrap()]);
    assert_eq!(session.opens_of("/etc/hostname").len(), 1, "{}", session.dump());
    assert!(session.opens_of(link.to_str().unwrap()).is_empty());
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct BindMount(std::path::PathBuf);

impl BindMount {
    fn new(source: &str, target: &std::path::Path) -> BindMount {
        let status = Command::new("mount").arg("--bind").arg(source).arg(target).status().unwrap();
        assert!(status.success(), "mount --bind {source} {}", target.display());
        BindMount(target.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bind_mount_alias_resolves_to_the_real_path() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("bind");
    let alias = dir.path().join("alias");
    std::fs::create_dir(&alias).unwrap();
    let mount = BindMount::new("/etc", &alias);
    let through_alias = alias.join("hostname");
    let session = run_session(&[PROBE, "open", through_alias.to_str().unwrap()]);
    drop(mount);
    assert_eq!(session.opens_of("/etc/hostname").len(), 1, "{}", session.dump());
    assert!(session.opens_of(through_alias.to_str().unwrap()).is_empty(), "{}", session.dump());
}

#[test]
fn proc_self_fd_reopens_resolve_to_the_file() {
    if !privileged() {
        return;
    }
    let session = run_session(&["sh", "-c", "exec 3</etc/hostname; cat /proc/self/fd/3 /dev/fd/3 >/dev/null"]);
    // Once by the shell (fd 3), twice through the magic links.
    assert_eq!(session.opens_of("/etc/hostname").len(), 3, "{}", session.dump());
}

#[test]
fn write_create_and_truncate_are_reported() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("write");
    let file = dir.path().join("new-file");
    let session = run_session(&[PROBE, "write", file.to_str().unwrap()]);
    let opens = session.opens_of(file.to_str().unwrap());
    assert_eq!(opens.len(), 1, "{}", session.dump());
    let f = &opens[0]["file"];
    assert_eq!(f["access"], "write");
    assert_eq!(f["created"], true);
    assert_eq!(f["truncate"], true);
    assert!(f["flags"].as_array().unwrap().contains(&"O_CREAT".into()), "{f}");

    // Again: the file exists now, so it is truncated but not created.
    let again = run_session(&[PROBE, "write", file.to_str().unwrap()]);
    assert_eq!(again.opens_of(file.to_str().unwrap())[0]["file"]["created"], false);

    let rw = run_session(&[PROBE, "read-write", file.to_str().unwrap()]);
    assert_eq!(rw.opens_of(file.to_str().unwrap())[0]["file"]["access"], "read_write");
}

/// open(2) and creat(2), which only x86_64 has (arm64 has no syscall numbers for them;
/// there, `dirfd_relative_opens_resolve` and the rest cover openat): reported under
/// their own names, with open's flags read from its second argument.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_legacy_open_and_creat_syscalls_are_reported() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("legacy");
    let appended = dir.path().join("appended");
    let session = run_session(&[PROBE, "legacy-open", appended.to_str().unwrap()]);
    let opens = session.opens_of(appended.to_str().unwrap());
    assert_eq!(opens.len(), 1, "{}", session.dump());
    let f = &opens[0]["file"];
    assert_eq!(f["syscall"], session.open_syscall("open"), "{f}");
    assert_eq!(f["access"], "write", "{f}");
    assert_eq!(f["created"], true, "{f}");
    assert_eq!(f["truncate"], false, "{f}");
    for flag in ["O_CREAT", "O_APPEND"] {
        assert!(f["flags"].as_array().unwrap().contains(&flag.into()), "{flag} missing: {f}");
    }

    let created = dir.path().join("created");
    let session = run_session(&[PROBE, "legacy-creat", created.to_str().unwrap()]);
    let opens = session.opens_of(created.to_str().unwrap());
    assert_eq!(opens.len(), 1, "{}", session.dump());
    let f = &opens[0]["file"];
    assert_eq!(f["syscall"], session.open_syscall("creat"), "{f}");
    assert_eq!(f["access"], "write", "{f}");
    assert_eq!(f["created"], true, "{f}");
    assert_eq!(f["truncate"], true, "{f}");
}

#[test]
fn paths_with_odd_bytes_are_kept() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("odd");
    let name = "sp ace\"quote\\slash-é";
    let file = dir.path().join(name);
    std::fs::write(&file, "x").unwrap();
    let session = run_session(&[PROBE, "open", file.to_str().unwrap()]);
    assert_eq!(session.opens_of(file.to_str().unwrap()).len(), 1, "{}", session.dump());
}

#[test]
fn a_path_too_deep_to_walk_is_flagged_not_misreported() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("deep");
    let mut deep = dir.path().to_path_buf();
    for _ in 0..120 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let file = deep.join("leaf");
    std::fs::write(&file, "x").unwrap();
    // Open relative to the deepest directory (the full path exceeds what `open` takes
    // in one string on some systems, and an agent would do exactly this).
    let session = run_session(&["sh", "-c", &format!("cd {} && cat leaf >/dev/null", deep.display())]);
    let leaf: Vec<_> = session
        .of_type("file.open")
        .into_iter()
        .filter(|e| e["file"]["path"].as_str().unwrap().ends_with("/d/leaf"))
        .collect();
    assert_eq!(leaf.len(), 1, "{}", session.dump());
    assert_eq!(leaf[0]["file"]["path_truncated"], true, "{}", leaf[0]);
}
