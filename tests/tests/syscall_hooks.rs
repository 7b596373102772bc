//! Tier 2 hooks the syscall functions all together or not at all.
//!
//! A BPF trampoline takes a bounded number of programs (38 on x86_64): another tool
//! that filled the one of the last function the monitor hooks makes that attach fail
//! after the others succeeded. The monitor must then drop the function hooks it made
//! and use the syscall tracepoints alone: left attached, they would report every open
//! twice. This binary holds one test, so no other test's monitor starts while the
//! trampoline is full (test binaries run one after another).

use std::os::fd::{FromRawFd, OwnedFd};

use monitor_tests::{TempDir, policy_file, privileged, run_session_with_env};

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// The function of the syscall the monitor hooks last (`loader::watched_syscalls`).
#[cfg(target_arch = "x86_64")]
const LAST_HOOKED: &str = "__x64_sys_pidfd_getfd";
#[cfg(target_arch = "aarch64")]
const LAST_HOOKED: &str = "__arm64_sys_pidfd_getfd";

#[test]
fn a_syscall_function_that_cannot_be_hooked_leaves_tier_2_on_the_tracepoints_alone() {
    if !privileged() {
        return;
    }
    let filled = fill_trampoline(LAST_HOOKED);
    match &filled {
        Ok(links) => eprintln!("the trampoline of {LAST_HOOKED} is full with {} no-op programs", links.len()),
        Err(why) => eprintln!("no tracing program attaches here ({why}): the tracepoints regardless"),
    }
    if let Err(why) = &filled {
        // Where no tracing program attaches (this host refuses them; arm64 before 6.4
        // has no trampolines), the monitor cannot hook the functions either.
        assert_ne!(
            std::env::var("AGENT_MONITOR_EXPECT_SYSCALL_HOOKS").as_deref(),
            Ok("functions"),
            "this kernel should run tracing programs, yet: {why}"
        );
    }
    let dir = TempDir::new("hooks");
    let (readable, secret) = (dir.path().join("readable"), dir.path().join("secret"));
    std::fs::write(&readable, "ok\n").unwrap();
    std::fs::write(&secret, "top secret\n").unwrap();
    let policy = policy_file(
        &dir,
        &format!(
            "version: 1\nprofiles:\n  - name: t\n    files:\n      read: [/]\n      deny: [{}]\n",
            secret.display()
        ),
    );
    let (readable_path, secret_path) = (readable.to_str().unwrap(), secret.to_str().unwrap());
    let session = run_session_with_env(
        &[("RUST_LOG", "monitor::loader=debug")],
        &["--no-lsm", "--policy", policy.to_str().unwrap()],
        &[PROBE, "try", "open", readable_path, "--", "open", secret_path],
    );
    let filled = filled.map(|links| links.len());
    assert!(
        session.stderr.contains("syscall hooks (tracepoints) attached"),
        "tier 2 is on the tracepoints: {}",
        session.dump()
    );
    if let Ok(programs) = filled {
        assert!(programs > 0);
        assert!(
            session.stderr.contains(&format!("fentry_pidfd_getfd for {LAST_HOOKED}")),
            "the full trampoline is what failed: {}",
            session.dump()
        );
    }
    let opens_of_readable: Vec<_> =
        session.of_type("file.open").into_iter().filter(|e| e["file"]["path"] == readable_path).collect();
    assert_eq!(opens_of_readable.len(), 1, "one open, one event: {}", session.dump());
    assert_eq!(session.stdout.lines().next(), Some("open ok"), "{}", session.dump());
    assert_eq!(session.exit_code(), 128 + 9, "killed at the denied open: {}", session.dump());
    assert!(!session.stdout.contains("top secret"), "{}", session.dump());
}

/// Attaches no-op fexit programs to `function` until its trampoline takes no more
/// (bounded at 64); the links are held until the result is dropped. Err if not even
/// one attaches.
fn fill_trampoline(function: &str) -> Result<Vec<OwnedFd>, String> {
    let btf = aya_obj::btf::Btf::from_sys_fs().map_err(|e| format!("BTF: {e}"))?;
    let btf_id =
        btf.id_by_type_name_kind(function, aya_obj::btf::BtfKind::Func).map_err(|e| format!("{function}: {e}"))?;
    let mut links = Vec::new();
    for _ in 0..64 {
        let program = load_noop_fexit(btf_id)?;
        match attach_tracing(&program) {
            Ok(link) => links.push(link),
            Err(error) if links.is_empty() => return Err(format!("attaching to {function}: {error}")),
            // E2BIG: the trampoline is full.
            Err(error) if error.raw_os_error() == Some(libc::E2BIG) => return Ok(links),
            Err(error) => return Err(format!("attaching to {function} after {} programs: {error}", links.len())),
        }
    }
    Err(format!("{function} took 64 programs; expected the trampoline to be full before"))
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FEXIT: u32 = 25;

/// `r0 = 0; exit`, as a fexit program of the function of BTF id `btf_id`.
fn load_noop_fexit(btf_id: u32) -> Result<OwnedFd, String> {
    let instructions: [u64; 2] = [0xb7, 0x95]; // BPF_ALU64|BPF_MOV|BPF_K r0, 0; BPF_JMP|BPF_EXIT
    let license = c"GPL";
    // `union bpf_attr` for BPF_PROG_LOAD (include/uapi/linux/bpf.h), fields by offset.
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_TRACING);
    put_u32(&mut attr, 4, instructions.len() as u32);
    put_u64(&mut attr, 8, instructions.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    attr[48..48 + 12].copy_from_slice(b"am_test_fill");
    put_u32(&mut attr, 68, BPF_TRACE_FEXIT);
    put_u32(&mut attr, 108, btf_id);
    bpf(BPF_PROG_LOAD, &attr).map_err(|e| format!("loading a fexit program: {e}"))
}

/// Attaches a tracing program to the function it was loaded for; the link's fd.
fn attach_tracing(program: &OwnedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut attr = [0u8; 16]; // name (NULL: the program's own target), prog_fd
    put_u32(&mut attr, 8, program.as_raw_fd() as u32);
    bpf(BPF_RAW_TRACEPOINT_OPEN, &attr)
}

fn bpf(command: libc::c_long, attr: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a `union bpf_attr` prefix of `attr.len()` bytes whose pointers
    // (instructions, license) outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_ptr(), attr.len() as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_ne_bytes());
}
