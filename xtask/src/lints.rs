//! `cargo xtask lints`: the formatting and lint gates `cargo xtask test` runs first.
//! rustfmt (`rustfmt.toml`) over the whole workspace, clippy with warnings as errors
//! over the host crates with every target, and clippy over the eBPF crate for its own
//! target, with the toolchain `monitor/build.rs` builds it with; and no import cycle
//! among the modules of any crate (`module_cycles`).

use anyhow::bail;

use crate::{cargo, workspace_root};

/// Runs every gate, even after one fails, and names those that failed.
pub fn check() -> anyhow::Result<()> {
    let root = workspace_root();
    let bpf_toolchain =
        std::env::var("AYA_EBPF_TOOLCHAIN").ok().filter(|name| !name.is_empty()).unwrap_or("agent-monitor-bpf".into());
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]).current_dir(&root);
    let mut host = cargo();
    host.args(["clippy", "--workspace", "--exclude", "monitor-ebpf", "--all-targets", "--", "-D", "warnings"])
        .current_dir(&root);
    let mut ebpf = std::process::Command::new("rustup");
    // The eBPF crate needs `-Z build-std`, as in its build by aya-build.
    ebpf.args(["run", &bpf_toolchain, "cargo", "clippy", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--release", "--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .current_dir(root.join("monitor-ebpf"));
    let mut failed = Vec::new();
    for (name, mut command) in
        [("cargo fmt --check", fmt), ("clippy (host crates)", host), ("clippy (eBPF crate)", ebpf)]
    {
        println!("== lints: {name}");
        let status = command.status()?;
        if !status.success() {
            failed.push(name);
        }
    }
    println!("== lints: import cycles");
    for krate in ["monitor", "monitor-common", "monitor-ebpf", "xtask"] {
        for cycle in crate::module_cycles::cycles(&root.join(krate).join("src"))? {
            println!("{krate}: modules in an import cycle: {}", cycle.join(" -> "));
            failed.push("import cycles");
        }
    }
    failed.dedup();
    if !failed.is_empty() {
        bail!("failed: {} (run `cargo xtask lints` to see them again)", failed.join(", "));
    }
    Ok(())
}
