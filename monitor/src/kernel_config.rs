//! The load-time configuration of the eBPF programs: struct offsets from the running
//! kernel's BTF, and the syscall numbers and argument registers of this architecture.

#[cfg(target_arch = "aarch64")]
use monitor_common::config::NO_SYSCALL;
use monitor_common::config::{KernelConfig, KernelOffsets, RegsOffsets, SyscallNumbers};

use crate::btf::{Btf, BtfError};

/// Syscall numbers of the architecture this binary was built for.
/// x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: include/uapi/asm-generic/unistd.h
/// (aarch64 has no `open` and no `creat`).
pub const fn syscall_numbers() -> SyscallNumbers {
    #[cfg(target_arch = "x86_64")]
    {
        SyscallNumbers {
            open: 2,
            creat: 85,
            openat: 257,
            openat2: 437,
            open_by_handle_at: 304,
            connect: 42,
            io_uring_setup: 425,
            pidfd_getfd: 438,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        SyscallNumbers {
            open: NO_SYSCALL,
            creat: NO_SYSCALL,
            openat: 56,
            openat2: 437,
            open_by_handle_at: 265,
            connect: 203,
            io_uring_setup: 425,
            pidfd_getfd: 438,
        }
    }
}

/// Where `struct pt_regs` keeps syscall arguments and the syscall number.
fn regs_offsets(btf: &Btf) -> Result<RegsOffsets, BtfError> {
    #[cfg(target_arch = "x86_64")]
    {
        Ok(RegsOffsets {
            arg0: btf.member_offset("pt_regs", "di")?,
            arg1: btf.member_offset("pt_regs", "si")?,
            arg2: btf.member_offset("pt_regs", "dx")?,
            _pad: 0,
            syscall_nr: btf.member_offset("pt_regs", "orig_ax")?,
            syscall_nr_size: 8,
        })
    }
    #[cfg(target_arch = "aarch64")]
    {
        // struct pt_regs { union { struct user_pt_regs user_regs; struct { u64 regs[31]; ...} } ...
        let regs = btf.member_offset("pt_regs", "regs")?;
        Ok(RegsOffsets {
            arg0: regs,
            arg1: regs + 8,
            arg2: regs + 16,
            _pad: 0,
            syscall_nr: btf.member_offset("pt_regs", "syscallno")?,
            syscall_nr_size: 4,
        })
    }
}

/// `offsetof(struct task_struct, start_boottime)`; kernels before 5.5 call it
/// `real_start_time`.
fn task_start_boottime(btf: &Btf) -> Result<u32, BtfError> {
    btf.member_offset("task_struct", "start_boottime")
        .or_else(|_| btf.member_offset("task_struct", "real_start_time"))
}

pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let m = |s: &str, f: &str| btf.member_offset(s, f);
    Ok(KernelOffsets {
        task_tgid: m("task_struct", "tgid")?,
        task_group_leader: m("task_struct", "group_leader")?,
        task_start_boottime: task_start_boottime(btf)?,
        task_exit_code: m("task_struct", "exit_code")?,
        task_signal: m("task_struct", "signal")?,
        task_files: m("task_struct", "files")?,
        task_mm: m("task_struct", "mm")?,
        signal_live: m("signal_struct", "live")?,
        files_fdt: m("files_struct", "fdt")?,
        fdtable_max_fds: m("fdtable", "max_fds")?,
        fdtable_fd: m("fdtable", "fd")?,
        file_f_path: m("file", "f_path")?,
        file_f_flags: m("file", "f_flags")?,
        file_f_mode: m("file", "f_mode")?,
        file_f_inode: m("file", "f_inode")?,
        inode_i_ino: m("inode", "i_ino")?,
        inode_i_mode: m("inode", "i_mode")?,
        inode_i_uid: m("inode", "i_uid")?,
        inode_i_gid: m("inode", "i_gid")?,
        dentry_d_inode: m("dentry", "d_inode")?,
        super_block_s_dev: m("super_block", "s_dev")?,
        path_dentry: m("path", "dentry")?,
        dentry_d_parent: m("dentry", "d_parent")?,
        dentry_d_name: m("dentry", "d_name")?,
        dentry_d_sb: m("dentry", "d_sb")?,
        qstr_name: m("qstr", "name")?,
        mm_arg_start: m("mm_struct", "arg_start")?,
        mm_arg_end: m("mm_struct", "arg_end")?,
        binprm_file: m("linux_binprm", "file")?,
        super_block_s_root: m("super_block", "s_root")?,
        super_block_s_flags: m("super_block", "s_flags")?,
        msghdr_msg_name: m("msghdr", "msg_name")?,
        super_block_s_magic: m("super_block", "s_magic")?,
    })
}

/// Everything the programs need, for this kernel and this process.
pub fn kernel_config(btf: &Btf) -> Result<KernelConfig, BtfError> {
    Ok(KernelConfig {
        offsets: kernel_offsets(btf)?,
        regs: regs_offsets(btf)?,
        syscalls: syscall_numbers(),
        monitor_tgid: std::process::id(),
        _pad: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers_match_libc() {
        let nr = syscall_numbers();
        assert_eq!(nr.openat as i64, libc::SYS_openat);
        assert_eq!(nr.openat2 as i64, libc::SYS_openat2);
        assert_eq!(nr.open_by_handle_at as i64, libc::SYS_open_by_handle_at);
        assert_eq!(nr.connect as i64, libc::SYS_connect);
        assert_eq!(nr.io_uring_setup as i64, libc::SYS_io_uring_setup);
        assert_eq!(nr.pidfd_getfd as i64, libc::SYS_pidfd_getfd);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(nr.open as i64, libc::SYS_open);
            assert_eq!(nr.creat as i64, libc::SYS_creat);
        }
        #[cfg(target_arch = "aarch64")]
        {
            use monitor_common::config::NO_SYSCALL;
            assert_eq!(nr.open, NO_SYSCALL);
            assert_eq!(nr.creat, NO_SYSCALL);
        }
    }

    #[test]
    fn every_offset_resolves_on_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: no kernel BTF here");
            return;
        };
        let config = kernel_config(&btf).expect("all offsets");
        assert_eq!(config.offsets.path_dentry, 8);
        assert!(config.offsets.file_f_path > 0);
        assert_ne!(config.regs.arg0, config.regs.arg1);
    }
}
