# Run by `cargo xtask package` (xtask/src/package.rs) as
#   unshare --mount --propagation private -- sh -c SCRIPT package-check.sh DEB WORKDIR
# Installs DEB with dpkg into a copy-on-write overlay of this machine's root, checks what
# it did, reinstalls it, removes and purges it. Everything written lands in
# WORKDIR/upper; the mounts vanish with the mount namespace. The host is not touched:
# the copy gets empty /run and /tmp, so no maintainer script reaches this machine's
# systemd (the scripts see no /run/systemd/system, as in any chroot).
set -eu
deb=$1
work=$2
root=$work/root
say() { echo "== package-check: $*"; }
fail() {
    echo "package-check: FAILED: $*" >&2
    exit 1
}
in_root() { chroot "$root" "$@"; }

mkdir -p "$work/upper" "$work/work" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root" ||
    fail "cannot mount an overlay of / (overlayfs, root)"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
cp "$deb" "$root/tmp/agent-monitor.deb"

# A clean start even on a machine that has the package installed.
if in_root dpkg-query -W agent-monitor >/dev/null 2>&1; then
    in_root dpkg --purge agent-monitor >/dev/null
fi

say "dpkg -i $(basename "$deb") into an overlay of /"
in_root dpkg -i /tmp/agent-monitor.deb </dev/null || fail "dpkg -i"
status=$(in_root dpkg-query -W -f='${Status}' agent-monitor)
[ "$status" = "install ok installed" ] || fail "dpkg status after install: $status"
for f in /usr/bin/agent-monitor /usr/lib/systemd/system/agent-monitor.service \
    /etc/agent-monitor/config.yaml /etc/agent-monitor/policy.yaml; do
    [ -f "$root$f" ] || fail "$f not installed"
done
for page in $MAN_PAGES; do
    [ -f "$root/usr/share/man/man1/$page.1.gz" ] || fail "man page $page.1.gz not installed"
done

enabled=$(systemctl --root="$root" is-enabled agent-monitor.service 2>&1 || true)
[ "$enabled" = disabled ] || fail "after install, is-enabled says '$enabled' (expected: disabled)"

say "the installed binary runs and accepts the installed policy"
in_root /usr/bin/agent-monitor --version
in_root /usr/bin/agent-monitor policy check /etc/agent-monitor/policy.yaml || fail "policy check"

# Where man is installed, verify also checks Documentation=man:agent-monitor(1) against
# the installed page, and man renders every page without a warning.
man_check=--man=no
if in_root sh -c 'command -v man' >/dev/null 2>&1; then
    man_check=--man=yes
    for page in $MAN_PAGES; do
        warnings=$(in_root env MANWIDTH=80 man --warnings -l "/usr/share/man/man1/$page.1.gz" 2>&1 >/dev/null) ||
            fail "man $page"
        [ -z "$warnings" ] || fail "man $page: $warnings"
    done
fi
say "systemd-analyze verify $man_check /usr/lib/systemd/system/agent-monitor.service"
# verify exits 0 on unknown keys and unparsable values (it only warns): any output fails.
out=$(in_root systemd-analyze verify "$man_check" /usr/lib/systemd/system/agent-monitor.service 2>&1) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

say "reinstall (upgrade path): a local edit of a conffile survives, enablement is kept"
echo "# local edit" >>"$root/etc/agent-monitor/policy.yaml"
systemctl --root="$root" enable agent-monitor.service >/dev/null 2>&1 || fail "systemctl enable"
in_root dpkg -i /tmp/agent-monitor.deb </dev/null || fail "dpkg -i (reinstall)"
grep -q "^# local edit" "$root/etc/agent-monitor/policy.yaml" || fail "reinstall replaced the edited policy.yaml"
enabled=$(systemctl --root="$root" is-enabled agent-monitor.service 2>&1 || true)
[ "$enabled" = enabled ] || fail "after reinstall of an enabled unit, is-enabled says '$enabled'"

say "dpkg --remove keeps the conffiles; dpkg --purge removes everything"
in_root dpkg --remove agent-monitor </dev/null || fail "dpkg --remove"
[ ! -e "$root/usr/bin/agent-monitor" ] || fail "remove left /usr/bin/agent-monitor"
[ ! -e "$root/usr/lib/systemd/system/agent-monitor.service" ] || fail "remove left the unit"
[ -f "$root/etc/agent-monitor/policy.yaml" ] || fail "remove deleted the conffiles"
in_root dpkg --purge agent-monitor </dev/null || fail "dpkg --purge"
[ ! -e "$root/etc/agent-monitor" ] || fail "purge left /etc/agent-monitor: $(ls -A "$root/etc/agent-monitor")"
left=$(find "$root/etc/systemd" "$root/var/lib/systemd" -name 'agent-monitor*' 2>/dev/null || true)
[ -z "$left" ] || fail "purge left $left"
if in_root dpkg-query -W agent-monitor >/dev/null 2>&1; then fail "dpkg still knows agent-monitor after purge"; fi
say "ok"
