//! How the file hooks reach the fields of a file, its dentries and its filesystem.
//!
//! An LSM hook's arguments are BTF-typed pointers, and so is every struct pointer
//! loaded from one: their fields are plain loads ([`Btf`], see `kernel::Typed`). A
//! `struct file *` taken from the descriptor table at a syscall tracepoint, or a raw
//! tracepoint's argument, is an address the verifier knows nothing of: its fields are
//! read with `bpf_probe_read_kernel`, the several fields of one struct in one read of
//! the span that holds them ([`Probed`], see `kernel::SpanCopy`).

use crate::{
    kernel::{ReadError, Typed, config, read, read_ptr},
    path::PathScratch,
};

/// `struct dentry` from `d_parent` to the end of `d_name` (a `struct qstr`), read at
/// once by [`Probed`]; `monitor::kernel_config` refuses a kernel laid out otherwise.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DentryHead {
    pub parent: u64,
    pub hash: u32,
    pub len: u32,
    pub name: u64,
}

/// What the hooks need of a `struct file`.
pub struct FileFields {
    /// `f_mode`.
    pub mode: u32,
    /// `f_inode` (0 if none).
    pub inode: u64,
    /// `f_path.dentry` (never 0).
    pub dentry: u64,
}

/// What the path walk needs of a filesystem (`struct super_block`).
pub struct Filesystem {
    pub dev: u32,
    pub flags: u64,
    pub magic: u64,
    /// The root dentry; 0 for kernel-internal filesystems that have none.
    pub root: u64,
}

pub trait Access {
    /// The struct pointer at `offset` in the struct at `base`, itself reached the same
    /// way; null is an error.
    fn pointer(base: u64, offset: u32) -> Result<u64, ReadError>;
    fn file(file: u64, scratch: &mut PathScratch) -> Result<FileFields, ReadError>;
    /// The file's own dentry: its head, and its filesystem.
    fn leaf(dentry: u64, scratch: &mut PathScratch) -> Result<(DentryHead, Filesystem), ReadError>;
    /// A dentry's parent and name (the steps of the walk above the file).
    fn head(dentry: u64) -> Result<DentryHead, ReadError>;
    /// An inode's number; 0 for no inode.
    fn ino(inode: u64) -> u64;
}

/// Fields read by helper, a span of each struct at once.
pub struct Probed;

/// Fields loaded directly: only for pointers the verifier knows as BTF-typed (it
/// refuses to load a program that uses `Btf` on anything else).
pub struct Btf;

impl Access for Probed {
    #[inline(always)]
    fn pointer(base: u64, offset: u32) -> Result<u64, ReadError> {
        read_ptr(base, offset)
    }

    #[inline(always)]
    fn file(file: u64, scratch: &mut PathScratch) -> Result<FileFields, ReadError> {
        let fields = &mut scratch.file;
        fields.read(file, config!(spans.file))?;
        let dentry = fields.field::<u64>(config!(offsets.file_f_path) + config!(offsets.path_dentry));
        if dentry == 0 {
            return Err(ReadError);
        }
        Ok(FileFields {
            mode: fields.field::<u32>(config!(offsets.file_f_mode)),
            inode: fields.field::<u64>(config!(offsets.file_f_inode)),
            dentry,
        })
    }

    #[inline(always)]
    fn leaf(dentry: u64, scratch: &mut PathScratch) -> Result<(DentryHead, Filesystem), ReadError> {
        let leaf = &mut scratch.dentry;
        leaf.read(dentry, config!(spans.dentry))?;
        let name = config!(offsets.dentry_d_name);
        let head = DentryHead {
            parent: leaf.field::<u64>(config!(offsets.dentry_d_parent)),
            hash: leaf.field::<u32>(name),
            len: leaf.field::<u32>(name + 4),
            name: leaf.field::<u64>(name + 8),
        };
        let sb = leaf.field::<u64>(config!(offsets.dentry_d_sb));
        if sb == 0 {
            return Err(ReadError);
        }
        let fs = &mut scratch.super_block;
        fs.read(sb, config!(spans.super_block))?;
        let filesystem = Filesystem {
            dev: fs.field::<u32>(config!(offsets.super_block_s_dev)),
            flags: fs.field::<u64>(config!(offsets.super_block_s_flags)),
            magic: fs.field::<u64>(config!(offsets.super_block_s_magic)),
            root: fs.field::<u64>(config!(offsets.super_block_s_root)),
        };
        Ok((head, filesystem))
    }

    #[inline(always)]
    fn head(dentry: u64) -> Result<DentryHead, ReadError> {
        read::<DentryHead>(dentry, config!(offsets.dentry_d_parent))
    }

    #[inline(always)]
    fn ino(inode: u64) -> u64 {
        if inode == 0 { 0 } else { read::<u64>(inode, config!(offsets.inode_i_ino)).unwrap_or(0) }
    }
}

impl Access for Btf {
    #[inline(always)]
    fn pointer(base: u64, offset: u32) -> Result<u64, ReadError> {
        Typed::assume(base).load_ptr(offset).map(Typed::addr)
    }

    #[inline(always)]
    fn file(file: u64, _scratch: &mut PathScratch) -> Result<FileFields, ReadError> {
        let file = Typed::assume(file);
        let dentry = file.load_ptr(config!(offsets.file_f_path) + config!(offsets.path_dentry))?;
        Ok(FileFields {
            mode: file.load::<u32>(config!(offsets.file_f_mode)),
            inode: file.load::<u64>(config!(offsets.file_f_inode)),
            dentry: dentry.addr(),
        })
    }

    #[inline(always)]
    fn leaf(dentry: u64, _scratch: &mut PathScratch) -> Result<(DentryHead, Filesystem), ReadError> {
        let head = Self::head(dentry)?;
        let sb = Typed::assume(dentry).load_ptr(config!(offsets.dentry_d_sb))?;
        let filesystem = Filesystem {
            dev: sb.load::<u32>(config!(offsets.super_block_s_dev)),
            flags: sb.load::<u64>(config!(offsets.super_block_s_flags)),
            magic: sb.load::<u64>(config!(offsets.super_block_s_magic)),
            root: sb.load::<u64>(config!(offsets.super_block_s_root)),
        };
        Ok((head, filesystem))
    }

    /// A load that faults yields 0: a head with no parent, which the walk treats as a
    /// failed read.
    #[inline(always)]
    fn head(dentry: u64) -> Result<DentryHead, ReadError> {
        let dentry = Typed::assume(dentry);
        let name = config!(offsets.dentry_d_name);
        Ok(DentryHead {
            parent: dentry.load::<u64>(config!(offsets.dentry_d_parent)),
            hash: dentry.load::<u32>(name),
            len: dentry.load::<u32>(name + 4),
            name: dentry.load::<u64>(name + 8),
        })
    }

    #[inline(always)]
    fn ino(inode: u64) -> u64 {
        if inode == 0 { 0 } else { Typed::assume(inode).load::<u64>(config!(offsets.inode_i_ino)) }
    }
}
