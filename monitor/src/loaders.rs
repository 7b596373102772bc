//! This host's dynamic loaders (`ld-linux-x86-64.so.2`, `ld-linux-aarch64.so.1`,
//! `ld-musl-*.so.1`, ...). Executed directly, a loader runs whatever program it is
//! given by mapping it, with no exec of that program: an exec entry that covers a
//! loader's directory must not let it run unnamed (see `allow::LOADER`).

use std::{collections::BTreeSet, os::unix::fs::MetadataExt, path::Path};

/// Where distributions keep their loaders (Debian's multiarch directories included).
const LIBRARY_DIRS: [&str; 6] = ["/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32"];

/// Whether a file name is a dynamic loader's.
fn is_loader_name(name: &str) -> bool {
    (name.starts_with("ld-linux") || name.starts_with("ld-musl-")) && name.contains(".so")
}

/// (device, inode) of every loader found, as the kernel programs see them
/// (kernel-internal dev_t, `MAJOR << 20 | MINOR`), symlinks followed.
pub fn identities() -> BTreeSet<(u32, u64)> {
    let mut found = BTreeSet::new();
    for dir in LIBRARY_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_loader_name(&name) {
                found.extend(identity(&path));
            } else if path.is_dir() && name.contains("-linux-") {
                // A multiarch directory: /usr/lib/x86_64-linux-gnu, /lib/aarch64-linux-gnu.
                let Ok(inner) = std::fs::read_dir(&path) else { continue };
                for entry in inner.flatten() {
                    if is_loader_name(&entry.file_name().to_string_lossy()) {
                        found.extend(identity(&entry.path()));
                    }
                }
            }
        }
    }
    found
}

/// Whether `path` is (or, symlinks followed, leads to) one of the host's loaders.
pub fn is_loader(path: &str) -> bool {
    identity(Path::new(path)).is_some_and(|id| identities().contains(&id))
}

/// The identity of an ELF file at `path`.
fn identity(path: &Path) -> Option<(u32, u64)> {
    use std::io::Read;
    let meta = std::fs::metadata(path).ok()?;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).ok()?.read_exact(&mut magic).ok()?;
    (meta.is_file() && magic == *b"\x7fELF")
        .then(|| ((libc::major(meta.dev()) << 20) | libc::minor(meta.dev()), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_names() {
        for name in ["ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2", "ld-musl-x86_64.so.1"] {
            assert!(is_loader_name(name), "{name}");
        }
        for name in ["ld.so.conf", "ld.so.cache", "libld-foo.so", "ldconfig", "libc.so.6"] {
            assert!(!is_loader_name(name), "{name}");
        }
    }

    /// This machine runs dynamically linked programs: it has a loader, and the one the
    /// test binary itself names (its `PT_INTERP`, read by the kernel) is among them.
    #[test]
    fn the_hosts_loader_is_found() {
        let found = identities();
        assert!(!found.is_empty());
        let interpreter =
            if cfg!(target_arch = "x86_64") { "/lib64/ld-linux-x86-64.so.2" } else { "/lib/ld-linux-aarch64.so.1" };
        assert!(is_loader(interpreter), "{interpreter} not among {found:?}");
        assert!(!is_loader("/bin/sh"));
    }
}
