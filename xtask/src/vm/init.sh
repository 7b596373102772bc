#!/bb/busybox sh
# /init of the test VM (built by xtask/src/vm/initramfs.rs): mounts what agent-monitor
# needs, runs every integration test binary listed in /vm/tests, prints the sentinel line
# that the host requires (xtask/src/vm/console.rs), and powers off.
# A setup step that fails powers off without the sentinel: the host reports a failure.

export PATH=/bb
fail() {
    echo "agent-monitor-vm: setup failed: $*"
    poweroff -f
}
/bb/busybox --install -s /bb || fail "busybox --install"

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mount -t securityfs securityfs /sys/kernel/security || fail "mount securityfs"
mount -t tracefs tracefs /sys/kernel/tracing || fail "mount tracefs"
mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
# /tmp stays on the initramfs: a tmpfs mounted there would hide the binaries staged at
# their build paths when the workspace is under /tmp.
chmod 1777 /tmp || fail "chmod /tmp"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
# What udev would make: the tests open /dev/fd/N.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ip link set lo up || fail "ip link set lo up"
hostname -F /etc/hostname

# The host chooses the LSM expectation through the kernel command line.
AGENT_MONITOR_EXPECT_LSM=
TESTS=
BENCH=
for word in $(cat /proc/cmdline); do
    case "$word" in
        agent_monitor.expect_lsm=*) AGENT_MONITOR_EXPECT_LSM="${word#*=}" ;;
        agent_monitor.expect_syscall_hooks=*) AGENT_MONITOR_EXPECT_SYSCALL_HOOKS="${word#*=}" ;;
        agent_monitor.tests=*) TESTS="${word#*=}" ;;
        agent_monitor.bench=*) BENCH="${word#*=}" ;;
    esac
done
[ -n "$TESTS" ] || [ -n "$BENCH" ] || fail "no agent_monitor.tests= on the kernel command line"
[ -n "$AGENT_MONITOR_EXPECT_LSM" ] || fail "no agent_monitor.expect_lsm= on the kernel command line"
export AGENT_MONITOR_EXPECT_LSM AGENT_MONITOR_EXPECT_SYSCALL_HOOKS

echo "agent-monitor-vm: kernel $(uname -r)"
echo "agent-monitor-vm: cmdline $(cat /proc/cmdline)"
echo "agent-monitor-vm: lsm $(cat /sys/kernel/security/lsm)"
echo "agent-monitor-vm: cpus $(nproc), memory $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"

# AGENT_MONITOR_BIN, TEST_DIR, TEST_THREADS and BINARY_TIMEOUT, written by the host.
. /vm/env || fail "/vm/env"
. /vm/watchdog.sh || fail "/vm/watchdog.sh"
export AGENT_MONITOR_BIN
export CI=1 HOME=/root RUST_BACKTRACE=1
# The tests run host programs (sh, cat, mount, ...), not busybox: the host's PATH.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$TEST_DIR" || fail "cd $TEST_DIR"

# cargo xtask vm --bench: the cost of one open+close (ns) with no monitor, and with the
# monitor holding another process in a session (this one outside it) or this process
# inside one, with the LSM tier and with tier 2 (--no-lsm); alternating rounds.
if [ -n "$BENCH" ]; then
    n=20000
    file=/tmp/bench-file
    echo bench > "$file"
    outside() { # outside FLAGS: a session of `sleep` runs; this process is not in it
        "$AGENT_MONITOR_BIN" run $1 --events /dev/null -- /bb/sleep 600 2>/dev/null &
        monitor=$!
        /bb/sleep 10 # the monitor loads its programs
        result=$("$PROBE" open-loop $n "$file")
        kill -TERM $monitor; wait $monitor
        echo "$result"
    }
    inside() { "$AGENT_MONITOR_BIN" run $1 --events /dev/null -- "$PROBE" open-loop $n "$file" 2>/dev/null; }
    # Tier 2 twice: on the syscall functions (fentry/fexit), and on the tracepoints.
    for round in 1 2 3 4 5; do
        echo "agent-monitor-vm: bench round=$round none=$("$PROBE" open-loop $n "$file")" \
            "outside_lsm=$(outside '') outside_tier2=$(outside --no-lsm)" \
            "outside_tp=$(export AGENT_MONITOR_SYSCALL_HOOKS=tracepoints; outside --no-lsm)" \
            "inside_lsm=$(inside '') inside_tier2=$(inside --no-lsm)" \
            "inside_tp=$(export AGENT_MONITOR_SYSCALL_HOOKS=tracepoints; inside --no-lsm)"
    done
    echo "agent-monitor-vm: bench done"
    /bb/poweroff -f
fi

binaries=0
failed=0
started=$(/bb/cut -d' ' -f1 /proc/uptime)
while read -r test; do
    # Only the suites this configuration runs (cargo names a test binary NAME-HASH).
    name=$(/bb/basename "$test")
    case ",$TESTS," in
        *",${name%-*},"*) ;;
        *) continue ;;
    esac
    binaries=$((binaries + 1))
    echo "agent-monitor-vm: running $test (uptime $(/bb/cut -d' ' -f1 /proc/uptime)s)"
    bounded "$BINARY_TIMEOUT" "$test" --test-threads="$TEST_THREADS"
    status=$?
    if [ "$status" -ne 0 ]; then
        failed=$((failed + 1))
        echo "agent-monitor-vm: $test exited with status $status"
    fi
    # What a failed test left running (a monitor, its agent) must not slow down the
    # next binary: from pid 1, kill -1 reaches every other process.
    kill -KILL -1 2>/dev/null
done < /vm/tests
echo "agent-monitor-vm: tests took $(/bb/awk -v s="$started" '{ printf "%.1f", $1 - s }' /proc/uptime)s"
echo "agent-monitor-vm: done binaries=$binaries failed=$failed"
/bb/poweroff -f
