//! What the policy compiler asks of the host: directory listings (for `*`), host
//! names' addresses, and the files under a deny entry.

use super::compile::Environment;
use crate::mounts::MountTable;

/// The compiler's view of this host, for a session whose user's home is `home`.
pub fn environment(home: Option<String>, mounts: &MountTable) -> Environment<'_> {
    Environment {
        home,
        mounts,
        list_dir: &list_dirs,
        resolve_host: &resolve_host,
        files_under: &files_under,
        is_raw_device: &crate::raw_devices::is_raw_device,
        is_loader: &crate::loaders::is_loader,
        canonical: &canonical,
    }
}

/// `path` with every symlink on the way resolved, if it exists.
fn canonical(path: &str) -> Option<String> {
    std::fs::canonicalize(path).ok().map(|p| p.display().to_string())
}

/// Addresses of a host name, through the system resolver.
pub fn resolve_host(host: &str) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<std::net::IpAddr> =
        (host, 0).to_socket_addrs().map(|it| it.map(|a| a.ip()).collect()).unwrap_or_default();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Most files recorded under one deny entry (a larger tree is noted as partly covered).
const MAX_DENIED_FILES: usize = 100_000;

/// (path, kernel dev, inode) of the regular files at or under `path`, symlinks not
/// followed.
pub fn files_under(path: &str) -> Vec<(String, u32, u64)> {
    use std::os::unix::fs::MetadataExt;
    let kernel_dev = |dev: u64| (libc::major(dev) << 20) | libc::minor(dev);
    let mut out = Vec::new();
    let mut pending = vec![std::path::PathBuf::from(path)];
    while let Some(next) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&next) else { continue };
        if meta.is_file() {
            out.push((next.to_string_lossy().into_owned(), kernel_dev(meta.dev()), meta.ino()));
        } else if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&next)
        {
            pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
        if out.len() >= MAX_DENIED_FILES {
            log::warn!("{path}: more than {MAX_DENIED_FILES} files; the rest are denied by path only");
            break;
        }
    }
    out
}

/// Names of the entries of `dir` (files and directories), for `*` in rule paths.
pub fn list_dirs(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}
