//! Load-time configuration of the eBPF programs.
//!
//! rustc emits no CO-RE relocations, so every kernel struct field the programs read is
//! read at an offset the daemon takes from the running kernel's BTF and patches into
//! the global [`KernelConfig`] (named [`KERNEL_CONFIG`]) before loading. Syscall numbers
//! and the registers that carry syscall arguments differ per architecture; they travel
//! the same way, so one eBPF object serves x86_64 and aarch64.

/// Name of the global the daemon patches at load time.
pub const KERNEL_CONFIG: &str = "KERNEL_CONFIG";

/// Marks a syscall that does not exist on this architecture (e.g. `open` on aarch64).
pub const NO_SYSCALL: u32 = u32::MAX;

/// Syscall numbers the programs watch, for the running architecture.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallNumbers {
    /// `open(path, flags, mode)`; [`NO_SYSCALL`] on aarch64.
    pub open: u32,
    /// `creat(path, mode)`; [`NO_SYSCALL`] on aarch64.
    pub creat: u32,
    /// `openat(dirfd, path, flags, mode)`.
    pub openat: u32,
    /// `openat2(dirfd, path, how, size)`.
    pub openat2: u32,
    /// `open_by_handle_at(mount_fd, handle, flags)`.
    pub open_by_handle_at: u32,
    /// `connect(fd, addr, addrlen)`.
    pub connect: u32,
    /// `io_uring_setup(entries, params)`.
    pub io_uring_setup: u32,
    /// `pidfd_getfd(pidfd, targetfd, flags)`.
    pub pidfd_getfd: u32,
    /// `socket(family, type, protocol)`.
    pub socket: u32,
    pub _pad: u32,
}

/// Byte offsets, inside `struct pt_regs`, of what a syscall tracepoint needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegsOffsets {
    /// Offsets of syscall arguments 0..=2 (x86_64: di, si, dx; aarch64: regs[0..3]).
    pub arg0: u32,
    pub arg1: u32,
    pub arg2: u32,
    pub _pad: u32,
    /// Offset of the syscall number as seen at syscall exit
    /// (x86_64: `orig_ax`; aarch64: `syscallno`).
    pub syscall_nr: u32,
    /// Width of that field in bytes (8 on x86_64, 4 on aarch64).
    pub syscall_nr_size: u32,
}

/// Byte offsets of kernel struct fields, read from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_tgid: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_files: u32,
    pub task_mm: u32,
    pub signal_live: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_path: u32,
    pub file_f_flags: u32,
    pub file_f_mode: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_mode: u32,
    pub inode_i_uid: u32,
    pub inode_i_gid: u32,
    pub dentry_d_inode: u32,
    pub super_block_s_dev: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_sb: u32,
    pub qstr_name: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub binprm_file: u32,
    /// `super_block.s_root` and `.s_flags`: a walk that ends at a dentry other than
    /// its filesystem's root ended at a disconnected dentry.
    pub super_block_s_root: u32,
    pub super_block_s_flags: u32,
    /// `msghdr.msg_name` (the kernel's copy of a `sendmsg` destination).
    pub msghdr_msg_name: u32,
    /// `super_block.s_magic`: which filesystem a file is on (cgroup files are the
    /// monitor's to write, see `self_protection`).
    pub super_block_s_magic: u32,
    /// `task_struct.real_parent` and `mm_struct.exe_file`: the parent's executable,
    /// for adoption selectors.
    pub task_real_parent: u32,
    pub mm_exe_file: u32,
    /// `cgroup.kn`, `kernfs_node.name` and `.id`: a new cgroup's name and id.
    pub cgroup_kn: u32,
    pub kernfs_node_name: u32,
    pub kernfs_node_id: u32,
    /// `inode.i_rdev`: which device a device file is (raw devices, see
    /// `policy::raw_device`).
    pub inode_i_rdev: u32,
    /// `super_block.s_fs_info`, `proc_fs_info.pid_ns`, `pid_namespace.level`: whether a
    /// /proc shows the initial pid namespace, whose pids are the tgids the programs see.
    pub super_block_s_fs_info: u32,
    pub proc_fs_info_pid_ns: u32,
    pub pid_namespace_level: u32,
    /// `file.private_data` (a socket's `struct socket`), `socket.sk`, the family in
    /// `struct sock` (`__sk_common.skc_family`), `unix_sock.peer` and `unix_sock.path`:
    /// the file of the unix socket a connect or send reaches.
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sock_family: u32,
    pub unix_sock_peer: u32,
    pub unix_sock_path: u32,
    /// `vm_area_struct.vm_file`: the file a mapping made executable by `mprotect` maps.
    pub vma_vm_file: u32,
    pub _pad: u32,
}

/// The most bytes of a kernel struct a [`Span`] reads at once.
pub const SPAN_MAX_BYTES: u32 = 128;

/// Bytes `start..start + len` of a kernel struct, read with one
/// `bpf_probe_read_kernel` call where the programs need several of its fields (each
/// call costs more than copying a hundred bytes). `len <= SPAN_MAX_BYTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

/// The spans the open hooks read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spans {
    /// `struct file`: `f_mode`, `f_inode` and `f_path.dentry`.
    pub file: Span,
    /// `struct super_block`: `s_dev`, `s_flags`, `s_magic` and `s_root`.
    pub super_block: Span,
    /// `struct dentry`: `d_parent`, `d_name` and `d_sb`.
    pub dentry: Span,
}

/// Everything the programs take from the daemon at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    pub offsets: KernelOffsets,
    pub regs: RegsOffsets,
    pub syscalls: SyscallNumbers,
    pub spans: Spans,
    /// tgid of the monitor itself: never part of a session.
    pub monitor_tgid: u32,
    /// Majors of the raw character devices named in `/proc/devices` (see
    /// `policy::raw_device::CHAR_NAMES`); 0 where this host has none.
    pub raw_majors: [u32; crate::policy::raw_device::RAW_MAJORS],
    /// tgid of the monitor's watchdog (see the daemon's `watchdog`), protected like the
    /// monitor; 0 without one.
    pub watchdog_tgid: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 49 * 4);
const _: () = assert!(core::mem::size_of::<RegsOffsets>() == 24);
const _: () = assert!(core::mem::size_of::<SyscallNumbers>() == 40);
const _: () = assert!(core::mem::size_of::<Spans>() == 24);
const _: () = assert!(core::mem::size_of::<KernelConfig>() == 188 + 8 + 24 + 40 + 24 + 8 + 40);

impl KernelConfig {
    /// All-zero configuration, the value compiled into the object before patching.
    pub const ZERO: KernelConfig = KernelConfig {
        offsets: KernelOffsets {
            task_tgid: 0,
            task_group_leader: 0,
            task_start_boottime: 0,
            task_exit_code: 0,
            task_signal: 0,
            task_files: 0,
            task_mm: 0,
            signal_live: 0,
            files_fdt: 0,
            fdtable_max_fds: 0,
            fdtable_fd: 0,
            file_f_path: 0,
            file_f_flags: 0,
            file_f_mode: 0,
            file_f_inode: 0,
            inode_i_ino: 0,
            inode_i_mode: 0,
            inode_i_uid: 0,
            inode_i_gid: 0,
            dentry_d_inode: 0,
            super_block_s_dev: 0,
            path_dentry: 0,
            dentry_d_parent: 0,
            dentry_d_name: 0,
            dentry_d_sb: 0,
            qstr_name: 0,
            mm_arg_start: 0,
            mm_arg_end: 0,
            binprm_file: 0,
            super_block_s_root: 0,
            super_block_s_flags: 0,
            msghdr_msg_name: 0,
            super_block_s_magic: 0,
            task_real_parent: 0,
            mm_exe_file: 0,
            cgroup_kn: 0,
            kernfs_node_name: 0,
            kernfs_node_id: 0,
            inode_i_rdev: 0,
            super_block_s_fs_info: 0,
            proc_fs_info_pid_ns: 0,
            pid_namespace_level: 0,
            file_private_data: 0,
            socket_sk: 0,
            sock_family: 0,
            unix_sock_peer: 0,
            unix_sock_path: 0,
            vma_vm_file: 0,
            _pad: 0,
        },
        regs: RegsOffsets { arg0: 0, arg1: 0, arg2: 0, _pad: 0, syscall_nr: 0, syscall_nr_size: 0 },
        syscalls: SyscallNumbers {
            open: NO_SYSCALL,
            creat: NO_SYSCALL,
            openat: NO_SYSCALL,
            openat2: NO_SYSCALL,
            open_by_handle_at: NO_SYSCALL,
            connect: NO_SYSCALL,
            io_uring_setup: NO_SYSCALL,
            pidfd_getfd: NO_SYSCALL,
            socket: NO_SYSCALL,
            _pad: 0,
        },
        spans: Spans {
            file: Span { start: 0, len: 0 },
            super_block: Span { start: 0, len: 0 },
            dentry: Span { start: 0, len: 0 },
        },
        monitor_tgid: 0,
        raw_majors: [0; crate::policy::raw_device::RAW_MAJORS],
        watchdog_tgid: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields and arrays of them, no implicit padding.
unsafe impl aya::Pod for KernelConfig {}
