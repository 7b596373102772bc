# Sourced by the scripts: Debian's Rust toolchain first on PATH (see docs/BUILD.md).
export PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
