//! Renames racing the path walk, alone in their test binary.
//!
//! The directory an agent opens a file in, through a descriptor it holds, is renamed
//! back and forth between "a" (kept inside the dentry) and a 100-letter name (allocated
//! apart) meanwhile. Every open must be reported, with a path made of bytes of a name:
//! "a", or the long name or a prefix of it (the walk may pair one name's length with the
//! other's bytes). The pairing itself is a window of a few instructions this test is not
//! known to hit: the walk before the string read, which would have reported bytes from
//! past "a" there, passed it as well.
//!
//! The agent renames its own directory, and nothing else runs beside it: under qemu's
//! software emulation (the test VMs), attaching or detaching the LSM programs while
//! another CPU called `rename` in a tight loop twice left that CPU stuck for good at the
//! patched entry of `bpf_lsm_path_rename` (docs/LIMITS.md).

use monitor_tests::{TempDir, privileged, run_session};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

#[test]
fn a_rename_racing_the_walk_reports_only_bytes_of_a_name() {
    if !privileged() {
        return;
    }
    const OPENS: usize = 20_000;
    let dir = TempDir::new("rename-race");
    let short = dir.path().join("a");
    let long = dir.path().join("b".repeat(100));
    std::fs::create_dir(&short).unwrap();
    std::fs::write(short.join("file"), "x").unwrap();
    let session = run_session(&[
        PROBE,
        "openat-loop-renaming",
        &OPENS.to_string(),
        short.to_str().unwrap(),
        long.to_str().unwrap(),
        "file",
    ]);
    let renames =
        session.stdout.trim().strip_prefix("renames=").unwrap_or_else(|| panic!("{}", session.dump())).to_owned();
    let prefix = format!("{}/", dir.path().display());
    let opens: Vec<String> = session
        .of_type("file.open")
        .into_iter()
        .filter_map(|open| open["file"]["path"].as_str())
        .filter(|path| path.starts_with(&prefix) && path.ends_with("/file"))
        .map(str::to_owned)
        .collect();
    assert_eq!(opens.len(), OPENS, "every open reported\n{}", session.dump());
    let (mut short_seen, mut long_seen) = (0, 0);
    for path in &opens {
        let name = &path[prefix.len()..path.len() - "/file".len()];
        if name == "a" {
            short_seen += 1;
        } else if !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b == b'b') {
            long_seen += 1;
        } else {
            panic!("{path:?}: not a name the directory ever had");
        }
    }
    eprintln!("{OPENS} opens during {renames} renames: {short_seen} through \"a\", {long_seen} through the long name");
    assert!(short_seen > 0 && long_seen > 0, "the renames raced the opens");
}
