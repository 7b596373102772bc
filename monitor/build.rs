//! Builds monitor-ebpf for bpfel-unknown-none and leaves the object in OUT_DIR, where
//! `loader.rs` embeds it. When rustup is on PATH, aya-build runs the eBPF build
//! through `rustup run <toolchain>`: that toolchain must carry the Rust library source
//! (`scripts/setup.sh` links Debian's rustc-web as `agent-monitor-bpf`; see
//! docs/BUILD.md). AYA_EBPF_TOOLCHAIN names another one.

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=AYA_EBPF_TOOLCHAIN");
    let toolchain_name = std::env::var("AYA_EBPF_TOOLCHAIN")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent-monitor-bpf".to_owned());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "monitor-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Custom(&toolchain_name),
    )
}
