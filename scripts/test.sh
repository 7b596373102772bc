#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine (as root): installs what is
# missing, builds, runs unit tests and the privileged integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
exec cargo xtask test
