//! An event file, appended to, owner-only, rotated by size: `path` -> `path.1` -> ...
//! -> `path.N`, the oldest removed.
//!
//! Invariant: the file ends at a line boundary. Rotation happens between lines (a file
//! exceeds `max_bytes` only when one line alone does, or when rotating failed), and a
//! write that fails part way is cut back to the last whole line.
//!
//! The name stays the monitor's: before each write the file checks that `path` still
//! names the file it writes. If the file was removed or moved away, or another file (or
//! a link) took the name, it makes a new file there (moving an impostor aside to
//! `path.replaced-N`, kept as evidence), and writes the notice it was given (an event
//! saying what happened) to both the old file and the new one. If no name leads to the
//! old file any more (removed, or renamed over), its events are copied into the new one.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The file is rotated before a line would take it past this size.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest .. `path.N` oldest); 0 keeps none.
    pub keep: u32,
}

/// What happened to the file's name behind the writer's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Displacement {
    /// No file has the name, and the file has no name left: it was deleted.
    Removed,
    /// No file has the name; the file lives on under another.
    Moved,
    /// Another file, or a link, took the name: it was moved aside to `kept_as`.
    Replaced { kept_as: PathBuf },
}

/// The line(s) that report a displacement of the file at `path`.
pub type Notice = Box<dyn Fn(&Path, &Displacement) -> Vec<u8> + Send>;

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// (device, inode) of `file`.
    identity: (u64, u64),
    /// Bytes in `file`.
    size: u64,
    rotation: Option<Rotation>,
    notice: Option<Notice>,
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<RotatingFile> {
        let file = open(path)?;
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino());
        Ok(RotatingFile { path: path.to_path_buf(), file, identity, size: meta.len(), rotation, notice: None })
    }

    /// Reports a displacement of the file with `notice`'s lines.
    pub fn with_notice(mut self, notice: Notice) -> RotatingFile {
        self.notice = Some(notice);
        self
    }

    /// Appends `lines` (whole lines, each ended by `\n`), rotating between lines.
    pub fn write_lines(&mut self, mut lines: &[u8]) -> io::Result<()> {
        self.keep_the_name()?;
        let mut rotation_failed = false;
        while !lines.is_empty() {
            let room = match self.rotation {
                Some(rotation) => rotation.max_bytes.saturating_sub(self.size),
                None => u64::MAX,
            };
            let fits = fitting_lines(lines, room);
            if fits == 0 && self.size > 0 && !rotation_failed {
                match self.rotate() {
                    Ok(()) => continue,
                    // Keeping events matters more than the size limit: append, and
                    // try again with the next batch.
                    Err(error) => {
                        log::warn!("rotating {}: {error}; appending past max_bytes", self.path.display());
                        rotation_failed = true;
                    }
                }
            }
            let take = if rotation_failed {
                lines.len()
            } else if fits == 0 {
                // An empty file takes at least one line, however long.
                first_line(lines)
            } else {
                fits
            };
            self.append(&lines[..take])?;
            lines = &lines[take..];
        }
        self.file.flush()
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(error) = self.file.write_all(bytes) {
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.map_or(0, |r| r.keep);
        if keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(&self.path, keep))?;
            for n in (1..keep).rev() {
                rename_if_present(&numbered(&self.path, n), &numbered(&self.path, n + 1))?;
            }
            fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        self.file = open(&self.path)?;
        let meta = self.file.metadata()?;
        self.identity = (meta.dev(), meta.ino());
        self.size = meta.len();
        Ok(())
    }

    /// If `path` no longer names the file, makes a new one there and reports it. An
    /// impostor made again at once is moved aside again (a few times).
    fn keep_the_name(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for _ in 0..3 {
            result = self.keep_the_name_once();
            if !matches!(&result, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
                break;
            }
        }
        result
    }

    fn keep_the_name_once(&mut self) -> io::Result<()> {
        let displacement = match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => return Ok(()),
            Ok(_) => {
                let kept_as = free_name(&self.path)?;
                fs::rename(&self.path, &kept_as)?;
                Displacement::Replaced { kept_as }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if self.file.metadata()?.nlink() == 0 {
                    Displacement::Removed
                } else {
                    Displacement::Moved
                }
            }
            Err(error) => return Err(error),
        };
        let notice = self.notice.as_ref().map(|notice| notice(&self.path, &displacement)).unwrap_or_default();
        // Whoever reads the old file learns where the events went on.
        let _ = self.file.write_all(&notice);
        // A new file only: whatever takes the name in between is not written to.
        let file = OpenOptions::new().create_new(true).append(true).mode(0o600).open(&self.path)?;
        let meta = file.metadata()?;
        let old = std::mem::replace(&mut self.file, file);
        (self.identity, self.size) = ((meta.dev(), meta.ino()), 0);
        log::warn!("the event file {} was {displacement:?}: a new one is made in its place", self.path.display());
        // A file no name leads to any more (removed, or renamed over) would take its
        // events with it: they are copied into the new one first, ending with the notice.
        if old.metadata()?.nlink() == 0 {
            use std::os::fd::AsRawFd;
            let mut reader = File::open(format!("/proc/self/fd/{}", old.as_raw_fd()))?;
            self.size = io::copy(&mut reader, &mut self.file)?;
            return Ok(());
        }
        self.append(&notice)
    }
}

/// `path.replaced-N` for the first N no file has.
pub fn free_name(path: &Path) -> io::Result<PathBuf> {
    for n in 1..1000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".replaced-{n}"));
        let candidate = PathBuf::from(name);
        if fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
    Err(io::Error::other("no free name for the file that replaced the event file"))
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// `path.n`
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Length of the longest run of whole lines at the start of `lines` within `room` bytes.
fn fitting_lines(lines: &[u8], room: u64) -> usize {
    let window = &lines[..lines.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
    window.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

fn first_line(lines: &[u8]) -> usize {
    lines.iter().position(|&b| b == b'\n').map_or(lines.len(), |i| i + 1)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::sink::testdir::TestDir;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// Ten-byte lines `line-NNN\n` (9 bytes + newline).
    fn lines(from: u32, to: u32) -> String {
        (from..to).map(|i| format!("line-{i:03}\n")).collect()
    }

    #[test]
    fn appends_owner_only_without_rotation() {
        let dir = TestDir::new();
        let path = dir.path("events.ndjson");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let mut file = RotatingFile::open(&path, None).unwrap();
        file.write_lines(lines(0, 100).as_bytes()).unwrap();
        assert_eq!(read(&path), format!("old\n{}", lines(0, 100)));
        assert!(!numbered(&path, 1).exists());

        let created = dir.path("new.ndjson");
        RotatingFile::open(&created, None).unwrap();
        assert_eq!(mode(&created), 0o600);
    }

    #[test]
    fn rotates_between_lines_and_keeps_n() {
        let dir = TestDir::new();
        let path = dir.path("events.ndjson");
        let mut file = RotatingFile::open(&path, Some(Rotation { max_bytes: 35, keep: 2 })).unwrap();
        // One batch of 10 lines: 3 lines (30 bytes) per file, never a cut line.
        file.write_lines(lines(0, 10).as_bytes()).unwrap();
        assert_eq!(read(&path), lines(9, 10));
        assert_eq!(read(&numbered(&path, 1)), lines(6, 9));
        assert_eq!(read(&numbered(&path, 2)), lines(3, 6));
        assert!(!numbered(&path, 3).exists(), "only `keep` rotated files");
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }

        // Line by line, across a reopen (which picks up the current size).
        drop(file);
        let mut file = RotatingFile::open(&path, Some(Rotation { max_bytes: 35, keep: 2 })).unwrap();
        for i in 10..13 {
            file.write_lines(lines(i, i + 1).as_bytes()).unwrap();
        }
        assert_eq!(read(&path), lines(12, 13));
        assert_eq!(read(&numbered(&path, 1)), lines(9, 12));
        assert_eq!(read(&numbered(&path, 2)), lines(6, 9));
    }

    #[test]
    fn a_line_longer_than_max_gets_a_file_of_its_own() {
        let dir = TestDir::new();
        let path = dir.path("events.ndjson");
        let mut file = RotatingFile::open(&path, Some(Rotation { max_bytes: 15, keep: 3 })).unwrap();
        let long = format!("{}\n", "x".repeat(40));
        file.write_lines(format!("short\n{long}short2\n").as_bytes()).unwrap();
        assert_eq!(read(&path), "short2\n");
        assert_eq!(read(&numbered(&path, 1)), long);
        assert_eq!(read(&numbered(&path, 2)), "short\n");
    }

    #[test]
    fn keep_zero_starts_over() {
        let dir = TestDir::new();
        let path = dir.path("events.ndjson");
        let mut file = RotatingFile::open(&path, Some(Rotation { max_bytes: 20, keep: 0 })).unwrap();
        file.write_lines(lines(0, 5).as_bytes()).unwrap();
        assert_eq!(read(&path), lines(4, 5));
        assert!(!numbered(&path, 1).exists());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_failing_rotation_loses_no_line() {
        let dir = TestDir::new();
        let path = dir.path("events.ndjson");
        // `path.2` is a directory: removing the oldest file fails.
        fs::create_dir(numbered(&path, 2)).unwrap();
        fs::write(numbered(&path, 2).join("x"), "").unwrap();
        let mut file = RotatingFile::open(&path, Some(Rotation { max_bytes: 20, keep: 2 })).unwrap();
        file.write_lines(lines(0, 5).as_bytes()).unwrap();
        assert_eq!(read(&path), lines(0, 5));
        fs::remove_dir_all(numbered(&path, 2)).unwrap();
        file.write_lines(lines(5, 6).as_bytes()).unwrap();
        assert_eq!(read(&path), lines(5, 6), "rotation is tried again with the next batch");
        assert_eq!(read(&numbered(&path, 1)), lines(0, 5));
    }

    /// A file whose notice is `NOTICE <what>`.
    fn noticed(path: &Path) -> RotatingFile {
        let notice: Notice = Box::new(|_: &Path, d: &Displacement| format!("NOTICE {d:?}\n").into_bytes());
        RotatingFile::open(path, None).unwrap().with_notice(notice)
    }

    #[test]
    fn a_moved_or_removed_file_is_made_again_and_both_say_so() {
        let dir = TestDir::new();
        let path = dir.path("events");
        let mut file = noticed(&path);
        file.write_lines(b"one\n").unwrap();
        fs::rename(&path, dir.path("elsewhere")).unwrap();
        file.write_lines(b"two\n").unwrap();
        assert_eq!(read(&dir.path("elsewhere")), "one\nNOTICE Moved\n");
        assert_eq!(read(&path), "NOTICE Moved\ntwo\n");
        assert_eq!(mode(&path), 0o600);
        fs::remove_file(&path).unwrap();
        file.write_lines(b"three\n").unwrap();
        // What the removed file held is kept: copied into the new one, with the notice.
        assert_eq!(read(&path), "NOTICE Moved\ntwo\nNOTICE Removed\nthree\n");
    }

    #[test]
    fn an_impostor_is_moved_aside_and_never_written_to() {
        let dir = TestDir::new();
        let path = dir.path("events");
        let mut file = noticed(&path);
        file.write_lines(b"one\n").unwrap();
        fs::rename(&path, dir.path("moved")).unwrap();
        fs::write(&path, "forged\n").unwrap();
        file.write_lines(b"two\n").unwrap();
        let kept = dir.path("events.replaced-1");
        assert_eq!(read(&kept), "forged\n");
        assert_eq!(read(&path), format!("NOTICE Replaced {{ kept_as: {kept:?} }}\ntwo\n"));
        // A symlink put in its place is not followed.
        let target = dir.path("target");
        fs::write(&target, "").unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        file.write_lines(b"three\n").unwrap();
        assert_eq!(read(&target), "");
        assert!(fs::symlink_metadata(dir.path("events.replaced-2")).unwrap().file_type().is_symlink());
        assert!(read(&path).ends_with("three\n"));
    }

    #[test]
    fn rotation_config_rejects_unknown_fields() {
        let rotation: Rotation = serde_saphyr::from_str("max_bytes: 1048576\nkeep: 5\n").unwrap();
        assert_eq!(rotation, Rotation { max_bytes: 1 << 20, keep: 5 });
        assert!(serde_saphyr::from_str::<Rotation>("max_bytes: 1\nkeep: 1\nmax: 2\n").is_err());
    }
}
