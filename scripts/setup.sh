#!/usr/bin/env bash
# Installs everything agent-monitor needs to build and test, on Debian 12 as root.
# Idempotent: what is already there is kept. See docs/BUILD.md for why each piece.
set -euo pipefail

APT_PACKAGES=(
  # Debian's Rust 1.96 with its library source: the eBPF crate needs -Z build-std.
  rustc-web cargo-web rust-web-src libstd-rust-web-dev
  # LLVM 22 for bpf-linker (same LLVM as rustc-web).
  llvm-22-dev gcc libc6-dev
  # Privileged tests: mounts, network namespaces.
  util-linux iproute2 procps
  # Daemon tests: that a stopped daemon left no BPF link or program behind.
  bpftool
  # aarch64: cross linker and C library (the Rust std for aarch64 comes from build-std),
  # and the emulated arm64 machine the suite runs in (docs/BUILD.md, "aarch64").
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm
  # VM tests (cargo xtask vm): qemu, the initramfs (cpio), stripped copies of binaries.
  # The guest's kernel and busybox are fetched by `apt-get download`, not installed.
  qemu-system-x86 cpio binutils
  # cargo xtask package: systemd-analyze verify on the packaged unit (container images
  # of Debian do not have systemd; dpkg and dpkg-deb are always there).
  systemd
)
BPF_LINKER_VERSION=0.13.0
# cargo-deb 3.8.0 declares rust-version 1.85: builds with Debian's rustc-web 1.96.
CARGO_DEB_VERSION=3.8.0
BPF_TOOLCHAIN=agent-monitor-bpf

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's toolchain first on PATH for everything below.
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:$PATH"

if ! /usr/local/bin/bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  echo "setup.sh: building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about 2-4 minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 /usr/bin/cargo install --quiet --locked --root /usr/local \
    "bpf-linker@$BPF_LINKER_VERSION" --no-default-features --features llvm-22
fi

# `cargo xtask package`: the .deb with the daemon, its systemd unit, config and man pages.
if ! /usr/local/bin/cargo-deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "setup.sh: building cargo-deb $CARGO_DEB_VERSION (about 3-4 minutes)"
  /usr/bin/cargo install --quiet --locked --root /usr/local "cargo-deb@$CARGO_DEB_VERSION"
fi

# aya-build runs `rustup run <toolchain> cargo` for the eBPF crate whenever rustup is on
# PATH; give rustup the Debian toolchain (the one with the library source) by name.
if command -v rustup >/dev/null 2>&1; then
  if ! rustup toolchain list | grep -q "^$BPF_TOOLCHAIN"; then
    rustup toolchain link "$BPF_TOOLCHAIN" /usr
  fi
fi
echo "setup.sh: ready ($(/usr/bin/rustc --version), bpf-linker $(/usr/local/bin/bpf-linker --version | awk '{print $2}'), $(/usr/local/bin/cargo-deb --version))"
