#!/usr/bin/env bash
# Installs everything agent-monitor needs to build and test, on Debian 12 as root.
# Every run brings the Debian packages to the versions a fresh machine gets today (the
# eBPF programs' verification depends on the exact compiler and LLVM: a machine that
# kept older ones would hide what a new one sees), rebuilds bpf-linker when LLVM changed,
# and prints the versions in use. See docs/BUILD.md for why each piece.
set -euo pipefail

APT_PACKAGES=(
  # Debian's Rust 1.96 with its library source: the eBPF crate needs -Z build-std.
  rustc-web cargo-web rust-web-src libstd-rust-web-dev
  # clippy and rustfmt of the same compiler (rustup's clippy cannot read what rustc-web
  # built); `cargo xtask lints` gates on both.
  rust-web-clippy rustfmt-web
  # LLVM 22 for bpf-linker (same LLVM as rustc-web).
  llvm-22-dev gcc libc6-dev
  # Privileged tests: mounts, network namespaces.
  util-linux iproute2 procps
  # Ordinary tools that must run under the built-in profile (tests/tests/ordinary_tools.rs).
  git openssh-client bind9-dnsutils curl python3
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

# `apt-get install` of a package already installed upgrades it to the candidate; the
# update first, so that the candidate is today's.
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null

# Debian's toolchain first on PATH for everything below.
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:$PATH"

# bpf-linker links LLVM statically: it is rebuilt whenever llvm-22-dev changed since it
# was built (the version it was built against is kept beside it).
llvm_version=$(dpkg-query -W -f='${Version}' llvm-22-dev)
llvm_stamp=/usr/local/lib/agent-monitor/bpf-linker.llvm-version
if ! /usr/local/bin/bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION" ||
  [ "$(cat "$llvm_stamp" 2>/dev/null)" != "$llvm_version" ]; then
  echo "setup.sh: building bpf-linker $BPF_LINKER_VERSION against LLVM $llvm_version (about 2-4 minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 /usr/bin/cargo install --quiet --locked --force --root /usr/local \
    "bpf-linker@$BPF_LINKER_VERSION" --no-default-features --features llvm-22
  mkdir -p "$(dirname "$llvm_stamp")"
  echo "$llvm_version" >"$llvm_stamp"
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
version() { dpkg-query -W -f='${Version}' "$1"; }
echo "setup.sh: ready: rustc-web $(version rustc-web) ($(/usr/bin/rustc --version)), llvm-22-dev $(version llvm-22-dev)," \
  "$(/usr/local/bin/bpf-linker --version), $(/usr/local/bin/cargo-deb --version), kernel $(uname -r)"
