//! Builds monitor-ebpf for bpfel-unknown-none and leaves the object in OUT_DIR, where
//! `loader.rs` embeds it. When rustup is on PATH, aya-build runs the eBPF build
//! through `rustup run <toolchain>`: that toolchain must carry the Rust library source
//! (`scripts/setup.sh` links Debian's rustc-web as `agent-monitor-bpf`; see
//! docs/BUILD.md). AYA_EBPF_TOOLCHAIN names another one.
//!
//! It also records the toolchain (`AGENT_MONITOR_TOOLCHAIN`, reported by `doctor`, and
//! printed in the build output): the verifier's cost of a program depends on the code
//! the compiler and linker emit, so a change in either must be visible at once.

use std::process::Command;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=AYA_EBPF_TOOLCHAIN");
    let toolchain_name = std::env::var("AYA_EBPF_TOOLCHAIN")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent-monitor-bpf".to_owned());
    let toolchain = toolchain_description();
    println!("cargo::rustc-env=AGENT_MONITOR_TOOLCHAIN={toolchain}");
    println!("cargo::warning=toolchain: {toolchain}");
    // A new bpf-linker or LLVM changes the object without changing any source.
    for path in ["/usr/local/bin/bpf-linker", "/var/lib/dpkg/status"] {
        println!("cargo::rerun-if-changed={path}");
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "monitor-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Custom(&toolchain_name),
    )
}

/// `rustc X; rustc-web X; llvm-22-dev X; bpf-linker X; build kernel X`, each as its tool
/// or dpkg reports it, or `unknown`.
fn toolchain_description() -> String {
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let package = |name: &str| format!("{name} {}", output("dpkg-query", &["-W", "-f=${Version}", name]));
    [
        output(&rustc, &["--version"]),
        package("rustc-web"),
        package("llvm-22-dev"),
        output("bpf-linker", &["--version"]),
        format!("build kernel {}", output("uname", &["-r"])),
    ]
    .join("; ")
}
