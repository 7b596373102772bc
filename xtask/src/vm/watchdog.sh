# Sourced by the /init of both test VMs (x86_64: init.sh; aarch64: arm64.rs).
# `bounded SECONDS COMMAND...` runs COMMAND and returns its status. If COMMAND still runs
# after SECONDS, every process of the guest is listed with each thread's kernel stack,
# then COMMAND is killed: a hung test binary fails on its own, with the state that hung
# it on the console, instead of using up the whole VM's time in silence.

# A busybox applet, wherever this image keeps busybox.
bb() {
    if [ -x /bb/busybox ]; then /bb/busybox "$@"; else /usr/bin/busybox "$@"; fi
}

guest_processes() {
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [ "$pid" = 1 ] && continue
        command=$(bb tr '\0' ' ' < "$dir/cmdline" 2>/dev/null | bb cut -c1-300)
        [ -n "$command" ] || continue # a kernel thread
        echo "AM_WATCHDOG process $pid, parent $(bb awk '/^PPid/ { print $2 }' "$dir/status")," \
            "$(bb grep '^State' "$dir/status"): $command"
        for task in "$dir"/task/*; do
            echo "AM_WATCHDOG   thread ${task##*/} $(bb cat "$task/comm"), wchan $(bb cat "$task/wchan" 2>/dev/null)"
            bb sed 's/^/AM_WATCHDOG     /' "$task/stack" 2>/dev/null
        done
    done
}

bounded() {
    limit=$1
    shift
    "$@" &
    command_pid=$!
    (
        bb sleep "$limit"
        echo "AM_WATCHDOG still running after ${limit}s: $1"
        guest_processes
        bb kill -KILL "$command_pid"
    ) &
    watchdog_pid=$!
    wait "$command_pid"
    status=$?
    bb kill "$watchdog_pid" 2>/dev/null
    return "$status"
}
