#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds agent-monitor, and runs a demo agent under it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release --quiet -p monitor 2>&1 | grep -v '^warning: monitor@' || true
test -x target/release/agent-monitor
echo "--- agent-monitor run -- sh -c 'cd /etc && cat hostname; cat ../etc/./hostname' ---"
exec target/release/agent-monitor run -- sh -c 'cd /etc && cat hostname; cat ../etc/./hostname'
