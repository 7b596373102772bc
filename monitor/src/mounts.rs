//! Places a path the kernel resolved inside a filesystem (device + path from the
//! filesystem's root) at the filesystem's canonical mount point, from
//! `/proc/self/mountinfo`. A filesystem mounted more than once (bind mounts) is named
//! by the mount of the largest part of it — its root if mounted — so an alias made
//! with `mount --bind` never changes the name a file is reported by.

use std::time::{Duration, Instant};

const MOUNTINFO: &str = "/proc/self/mountinfo";
/// A miss re-reads the mount table at most this often.
const REFRESH_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// Kernel-internal dev_t: major << 20 | minor.
    dev: u32,
    /// Directory of the filesystem mounted here (`/` unless a bind mount of a subtree).
    root: Vec<u8>,
    mount_point: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct MountTable {
    mounts: Vec<Mount>,
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() && field[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = field[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + (b - b'0') as u32);
            out.push(value as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

fn parse_dev(field: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(field).ok()?;
    let (major, minor) = text.split_once(':')?;
    Some((major.parse::<u32>().ok()? << 20) | minor.parse::<u32>().ok()?)
}

/// `prefix` is `path` or one of its parent directories.
fn is_component_prefix(prefix: &[u8], path: &[u8]) -> bool {
    prefix == b"/" || path == prefix || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

impl MountTable {
    pub fn parse(text: &[u8]) -> MountTable {
        let mut mounts = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if fields.len() < 5 {
                continue;
            }
            let Some(dev) = parse_dev(fields[2]) else { continue };
            mounts.push(Mount { dev, root: unescape(fields[3]), mount_point: unescape(fields[4]) });
        }
        MountTable { mounts }
    }

    pub fn load() -> std::io::Result<MountTable> {
        Ok(MountTable::parse(&std::fs::read(MOUNTINFO)?))
    }

    /// For each filesystem, the mount that names it (the one `place` uses):
    /// (device, directory of the filesystem mounted, mount point).
    pub fn canonical(&self) -> Vec<(u32, &[u8], &[u8])> {
        let mut out: Vec<(u32, &[u8], &[u8])> = Vec::new();
        for m in &self.mounts {
            match out.iter_mut().find(|(dev, _, _)| *dev == m.dev) {
                Some(slot) if m.root.len() < slot.1.len() => *slot = (m.dev, &m.root, &m.mount_point),
                Some(_) => {}
                None => out.push((m.dev, &m.root, &m.mount_point)),
            }
        }
        out
    }

    /// The absolute path of `fs_path` (a path from the root of the filesystem on `dev`).
    pub fn place(&self, dev: u32, fs_path: &[u8]) -> Option<Vec<u8>> {
        let mount = self
            .mounts
            .iter()
            .filter(|m| m.dev == dev && is_component_prefix(&m.root, fs_path))
            .min_by_key(|m| m.root.len())?;
        let rest = if mount.root == b"/" { fs_path } else { &fs_path[mount.root.len()..] };
        let rest = if rest == b"/" { &b""[..] } else { rest };
        let mut out = if mount.mount_point == b"/" { Vec::new() } else { mount.mount_point.clone() };
        out.extend_from_slice(rest);
        if out.is_empty() {
            out.push(b'/');
        }
        Some(out)
    }
}

/// The mount table, re-read when a device is not found in it.
#[derive(Debug, Default)]
pub struct Mounts {
    table: MountTable,
    loaded: Option<Instant>,
}

impl Mounts {
    pub fn new() -> Mounts {
        Mounts::default()
    }

    /// `(absolute path, true)`, or `(fs_path, false)` when no mount of the filesystem
    /// is visible (an unmounted or internal filesystem).
    pub fn resolve(&mut self, dev: u32, fs_path: &[u8]) -> (Vec<u8>, bool) {
        if self.loaded.is_none() {
            self.reload();
        }
        if let Some(path) = self.table.place(dev, fs_path) {
            return (path, true);
        }
        if self.loaded.is_none_or(|at| at.elapsed() >= REFRESH_AFTER) {
            self.reload();
            if let Some(path) = self.table.place(dev, fs_path) {
                return (path, true);
            }
        }
        (fs_path.to_vec(), false)
    }

    fn reload(&mut self) {
        match MountTable::load() {
            Ok(table) => self.table = table,
            Err(error) => log::warn!("reading {MOUNTINFO}: {error}"),
        }
        self.loaded = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &[u8] = b"\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 254:0 /etc /tmp/alias rw,relatime shared:1 - ext4 /dev/vda rw
41 22 0:45 / /tmp/with\\040space rw - tmpfs tmpfs rw
42 22 0:46 /sub /srv/only-sub rw - tmpfs tmpfs rw
";
    const VDA: u32 = 254 << 20;

    #[test]
    fn places_paths_under_their_mount() {
        let table = MountTable::parse(INFO);
        assert_eq!(table.place(VDA, b"/etc/shadow").unwrap(), b"/etc/shadow");
        assert_eq!(table.place(21, b"/self/status").unwrap(), b"/proc/self/status");
        assert_eq!(table.place(21, b"/").unwrap(), b"/proc");
        assert_eq!(table.place(VDA, b"/").unwrap(), b"/");
        assert_eq!(table.place(45, b"/f").unwrap(), b"/tmp/with space/f");
    }

    #[test]
    fn a_bind_alias_does_not_rename_a_file() {
        let table = MountTable::parse(INFO);
        // /tmp/alias/shadow is the same file as /etc/shadow: the kernel reports the
        // filesystem path /etc/shadow, which the root mount names.
        assert_eq!(table.place(VDA, b"/etc/shadow").unwrap(), b"/etc/shadow");
    }

    #[test]
    fn a_filesystem_visible_only_through_a_subtree() {
        let table = MountTable::parse(INFO);
        assert_eq!(table.place(46, b"/sub/x").unwrap(), b"/srv/only-sub/x");
        assert_eq!(table.place(46, b"/subx"), None);
        assert_eq!(table.place(46, b"/other"), None);
        assert_eq!(table.place(99, b"/x"), None);
    }

    #[test]
    fn tolerates_garbage() {
        let table = MountTable::parse(b"\n\nnot a line\n1 2 x:y / / -\n1 2 3:4 /\\9 /\\ - x\n");
        assert_eq!(table.mounts.len(), 1);
        assert_eq!(unescape(b"a\\0"), b"a\\0");
    }

    #[test]
    fn reads_this_machine() {
        let table = MountTable::load().unwrap();
        assert!(table.mounts.iter().any(|m| m.mount_point == b"/"));
    }
}
