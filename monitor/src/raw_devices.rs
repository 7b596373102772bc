//! This host's raw devices (`monitor_common::policy::raw_device`): the majors of the
//! character devices named in `/proc/devices`, and whether a path is such a device node.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use monitor_common::policy::raw_device::{self, CHAR_NAMES, RAW_MAJORS};

/// The majors of [`CHAR_NAMES`] in `/proc/devices` (0 for a name the host has not
/// registered; all 0 if the file cannot be read).
pub fn majors() -> [u32; RAW_MAJORS] {
    majors_in(&std::fs::read_to_string("/proc/devices").unwrap_or_default())
}

/// [`majors`] of the text of a `/proc/devices`.
pub fn majors_in(devices: &str) -> [u32; RAW_MAJORS] {
    let characters = devices.split("Block devices:").next().unwrap_or_default();
    let mut majors = [0; RAW_MAJORS];
    for line in characters.lines() {
        let mut fields = line.split_whitespace();
        let (Some(major), Some(name)) = (fields.next().and_then(|m| m.parse::<u32>().ok()), fields.next()) else {
            continue;
        };
        if let Some(i) = CHAR_NAMES.iter().position(|n| !n.is_empty() && *n == name) {
            majors[i] = major;
        }
    }
    majors
}

/// Whether `path` is a raw device node, symlinks followed (an entry names what it
/// resolves to).
pub fn is_raw_device(path: &str) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let mode = if meta.file_type().is_block_device() {
        raw_device::S_IFBLK
    } else if meta.file_type().is_char_device() {
        raw_device::S_IFCHR
    } else {
        return false;
    };
    let rdev = meta.rdev();
    let kernel_rdev = (libc::major(rdev) << raw_device::MINOR_BITS) | libc::minor(rdev);
    raw_device::is_raw(mode, kernel_rdev, &majors())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_come_from_the_character_devices_only() {
        let devices = "Character devices:\n  1 mem\n 21 sg\n 90 mtd\n202 cpu/msr\n248 bsg\n241 nvme-generic\n242 nvme\n\nBlock devices:\n  8 sd\n259 blkext\n 21 sg\n";
        let majors = majors_in(devices);
        assert_eq!(majors, [21, 248, 242, 241, 90, 202, 0, 0, 0, 0]);
    }

    #[test]
    fn raw_devices_by_type_and_number() {
        let majors = majors_in("Character devices:\n248 bsg\n");
        let dev = |major: u32, minor: u32| (major << raw_device::MINOR_BITS) | minor;
        let (chr, blk) = (raw_device::S_IFCHR, raw_device::S_IFBLK);
        assert!(raw_device::is_raw(blk, dev(7, 0), &majors), "a block device");
        assert!(raw_device::is_raw(chr, dev(1, 1), &majors), "/dev/mem");
        assert!(raw_device::is_raw(chr, dev(1, 4), &majors), "/dev/port");
        assert!(!raw_device::is_raw(chr, dev(1, 3), &majors), "/dev/null");
        assert!(!raw_device::is_raw(chr, dev(1, 9), &majors), "/dev/urandom");
        assert!(raw_device::is_raw(chr, dev(10, 236), &majors), "/dev/mapper/control");
        assert!(raw_device::is_raw(chr, dev(10, 231), &majors), "/dev/snapshot");
        assert!(!raw_device::is_raw(chr, dev(10, 229), &majors), "/dev/fuse");
        assert!(raw_device::is_raw(chr, dev(21, 0), &majors), "/dev/sg0, before its driver is loaded too");
        assert!(raw_device::is_raw(chr, dev(90, 0), &majors), "/dev/mtd0");
        assert!(raw_device::is_raw(chr, dev(202, 0), &majors), "/dev/cpu/0/msr");
        assert!(raw_device::is_raw(chr, dev(248, 0), &majors), "/dev/bsg/...");
        assert!(!raw_device::is_raw(chr, dev(136, 0), &majors), "a pty");
        assert!(!raw_device::is_raw(0o100000, dev(0, 0), &majors), "a regular file");
    }
}
