//! `--on-behalf-of USER`: an agent running as root on behalf of a user reaches no file
//! that user could not open, even where the profile allows it.

use std::os::unix::fs::{PermissionsExt, chown};

use monitor_tests::{TempDir, privileged, run_session_with};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
/// Neither exists on the test machine; numeric uids need no account.
const ALICE: u32 = 47_101;
const BOB: u32 = 47_102;

fn file(dir: &TempDir, name: &str, owner: u32, mode: u32) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{name}-content")).unwrap();
    chown(&path, Some(owner), Some(owner)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn as_alice(command: &[&str]) -> monitor_tests::Session {
    run_session_with(&["--on-behalf-of", &ALICE.to_string()], command)
}

#[test]
fn a_root_agent_cannot_read_what_its_user_cannot() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("obo-read");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bobs_private = file(&dir, "bob-private", BOB, 0o600);
    let bobs_public = file(&dir, "bob-public", BOB, 0o644);
    let alices_private = file(&dir, "alice-private", ALICE, 0o600);

    let denied = as_alice(&[PROBE, "cat", &bobs_private]);
    assert_eq!(denied.exit_code(), 137, "{}", denied.dump());
    assert!(!denied.stdout.contains("bob-private-content"));
    let v = &denied.violations()[0];
    assert_eq!(v["file"]["path"], bobs_private.as_str());
    assert!(v["decision"]["rule"].as_str().unwrap().starts_with(&format!("on behalf of {ALICE} (uid {ALICE})")), "{v}");
    let start = &denied.of_type("session.start")[0];
    assert_eq!(start["session"]["principal"]["uid"], ALICE);

    assert_eq!(as_alice(&[PROBE, "cat", &bobs_public]).stdout, "bob-public-content");
    assert_eq!(as_alice(&[PROBE, "cat", &alices_private]).stdout, "alice-private-content");
}

#[test]
fn a_root_agent_cannot_write_or_create_where_its_user_cannot() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("obo-write");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bobs = file(&dir, "bob-readable", BOB, 0o644);
    let overwrite = as_alice(&[PROBE, "overwrite", &bobs, "X"]);
    assert_eq!(overwrite.exit_code(), 137, "{}", overwrite.dump());
    assert_eq!(std::fs::read_to_string(&bobs).unwrap(), "bob-readable-content");

    // Creating needs write permission on the directory (root's, 0755 here).
    let new_file = dir.path().join("new").to_str().unwrap().to_owned();
    let create = as_alice(&[PROBE, "write", &new_file]);
    assert_eq!(create.exit_code(), 137, "{}", create.dump());
    // A directory the user may write to.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ok = as_alice(&[PROBE, "write", shared.join("new").to_str().unwrap()]);
    assert_eq!(ok.exit_code(), 0, "{}", ok.dump());
}

#[test]
fn by_default_the_session_acts_for_the_invoking_user() {
    if !privileged() {
        return;
    }
    // The tests run as root (no SUDO_UID): root may open anything, so only the profile
    // decides, and the principal is reported.
    let dir = TempDir::new("obo-default");
    let bobs_private = file(&dir, "bob-private", BOB, 0o600);
    let session = monitor_tests::run_session(&[PROBE, "cat", &bobs_private]);
    assert_eq!(session.stdout, "bob-private-content");
    assert_eq!(session.of_type("session.start")[0]["session"]["principal"]["uid"], 0);
}

#[test]
fn an_unknown_user_is_an_error_before_anything_runs() {
    let output = std::process::Command::new(monitor_tests::monitor_bin())
        .args(["run", "--on-behalf-of", "no-such-user-xyz", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no user \"no-such-user-xyz\""), "{stderr}");
}

#[test]
fn a_readable_file_in_a_directory_its_user_cannot_enter_is_out_of_reach() {
    if !privileged() {
        return;
    }
    // Like /root/.profile: 0644 itself, inside a 0700 directory of another user.
    let dir = TempDir::new("obo-search");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private_dir = dir.path().join("bobs-home");
    std::fs::create_dir(&private_dir).unwrap();
    chown(&private_dir, Some(BOB), Some(BOB)).unwrap();
    std::fs::set_permissions(&private_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inside = private_dir.join("profile");
    std::fs::write(&inside, "bob-profile").unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o644)).unwrap();
    let session = as_alice(&[PROBE, "cat", inside.to_str().unwrap()]);
    assert_eq!(session.exit_code(), 137, "{}", session.dump());
    assert!(!session.stdout.contains("bob-profile"));
}
