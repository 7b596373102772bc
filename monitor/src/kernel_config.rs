//! The load-time configuration of the eBPF programs: struct offsets from the running
//! kernel's BTF, and the syscall numbers and argument registers of this architecture.

use monitor_common::config::{
    KernelConfig, KernelOffsets, NO_SYSCALL, RegsOffsets, SPAN_MAX_BYTES, Span, Spans, SyscallNumbers,
};

use crate::{
    arch::Arch,
    btf::{Btf, BtfError},
};

/// Syscall numbers of the architecture this binary was built for.
pub const fn syscall_numbers() -> SyscallNumbers {
    syscall_numbers_of(Arch::NATIVE)
}

/// Syscall numbers of `arch`'s native ABI.
/// x86_64: arch/x86/entry/syscalls/syscall_64.tbl. aarch64: include/uapi/asm-generic/unistd.h,
/// which has no `open` and no `creat` (only their `*at` successors).
pub const fn syscall_numbers_of(arch: Arch) -> SyscallNumbers {
    match arch {
        Arch::X86_64 => SyscallNumbers {
            open: 2,
            creat: 85,
            openat: 257,
            openat2: 437,
            open_by_handle_at: 304,
            connect: 42,
            io_uring_setup: 425,
            pidfd_getfd: 438,
            socket: 41,
            _pad: 0,
        },
        Arch::Aarch64 => SyscallNumbers {
            open: NO_SYSCALL,
            creat: NO_SYSCALL,
            openat: 56,
            openat2: 437,
            open_by_handle_at: 265,
            connect: 203,
            io_uring_setup: 425,
            pidfd_getfd: 438,
            socket: 198,
            _pad: 0,
        },
    }
}

/// Where `struct pt_regs` keeps syscall arguments and the syscall number, on the
/// running kernel.
fn regs_offsets(btf: &Btf) -> Result<RegsOffsets, BtfError> {
    regs_offsets_of(Arch::NATIVE, btf)
}

/// Where `arch`'s `struct pt_regs` keeps what the syscall hooks read, at syscall entry
/// *and* exit (the open hooks read arguments at exit).
fn regs_offsets_of(arch: Arch, btf: &Btf) -> Result<RegsOffsets, BtfError> {
    match arch {
        // arch/x86/include/asm/ptrace.h: arguments in di, si, dx; the syscall number in
        // orig_ax (ax holds the return value at exit). Nothing here is overwritten by
        // the return value.
        Arch::X86_64 => Ok(RegsOffsets {
            arg0: btf.member_offset("pt_regs", "di")?,
            arg1: btf.member_offset("pt_regs", "si")?,
            arg2: btf.member_offset("pt_regs", "dx")?,
            _pad: 0,
            syscall_nr: btf.member_offset("pt_regs", "orig_ax")?,
            syscall_nr_size: 8,
        }),
        // arch/arm64/include/asm/ptrace.h:
        //   struct pt_regs {
        //       union { struct user_pt_regs user_regs;
        //               struct { u64 regs[31]; u64 sp; u64 pc; u64 pstate; }; };
        //       u64 orig_x0;
        //       s32 syscallno; u32 unused2;   /* little-endian order */
        //       ...
        // Arguments arrive in x0..x5 (regs[0..6]). At syscall exit the kernel has
        // already stored the return value in regs[0], so the first argument is read
        // from orig_x0, the copy of x0 that el0_svc_common() saves before the syscall
        // (and before the sys_enter tracepoint): valid at entry and at exit.
        // x1 and x2 are not written back. Checked against the BTF of Debian's
        // 6.1.0-56-arm64 and 6.12.117+deb12-arm64 (the .BTF blob carved out of their
        // Image files: orig_x0 at 272, syscallno at 280 in both) and on those kernels
        // by `cargo xtask arm64-vm` (every_offset_resolves_on_the_running_kernel).
        Arch::Aarch64 => {
            let regs = btf.member_offset("pt_regs", "regs")?;
            Ok(RegsOffsets {
                arg0: btf.member_offset("pt_regs", "orig_x0")?,
                arg1: regs + 8,
                arg2: regs + 16,
                _pad: 0,
                syscall_nr: btf.member_offset("pt_regs", "syscallno")?,
                syscall_nr_size: 4,
            })
        }
    }
}

/// `offsetof(struct task_struct, start_boottime)`; kernels before 5.5 call it
/// `real_start_time`.
fn task_start_boottime(btf: &Btf) -> Result<u32, BtfError> {
    btf.member_offset("task_struct", "start_boottime").or_else(|_| btf.member_offset("task_struct", "real_start_time"))
}

pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let m = |s: &str, f: &str| btf.member_offset(s, f);
    check_dentry_head(m("dentry", "d_parent")?, m("dentry", "d_name")?, m("qstr", "len")?, m("qstr", "name")?)?;
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
        task_real_parent: m("task_struct", "real_parent")?,
        mm_exe_file: m("mm_struct", "exe_file")?,
        cgroup_kn: m("cgroup", "kn")?,
        kernfs_node_name: m("kernfs_node", "name")?,
        kernfs_node_id: m("kernfs_node", "id")?,
        inode_i_rdev: m("inode", "i_rdev")?,
        super_block_s_fs_info: m("super_block", "s_fs_info")?,
        proc_fs_info_pid_ns: m("proc_fs_info", "pid_ns")?,
        pid_namespace_level: m("pid_namespace", "level")?,
        file_private_data: m("file", "private_data")?,
        socket_sk: m("socket", "sk")?,
        sock_family: m("sock", "__sk_common")? + m("sock_common", "skc_family")?,
        unix_sock_peer: m("unix_sock", "peer")?,
        unix_sock_path: m("unix_sock", "path")?,
        vma_vm_file: m("vm_area_struct", "vm_file")?,
        _pad: 0,
    })
}

/// The path walk reads a dentry's parent, name length and name pointer in one read
/// (`DentryHead` in monitor-ebpf's `path`): `d_parent` must be followed by `d_name`,
/// a `struct qstr` with its length at 4 and name at 8, as in every Linux since 2.6
/// on little-endian machines.
fn check_dentry_head(d_parent: u32, d_name: u32, qstr_len: u32, qstr_name: u32) -> Result<(), BtfError> {
    if d_name == d_parent + 8 && qstr_len == 4 && qstr_name == 8 {
        return Ok(());
    }
    Err(BtfError::Layout(format!(
        "struct dentry has d_parent at {d_parent} and d_name at {d_name}, struct qstr its len at {qstr_len} and name at \
         {qstr_name}; the path walk needs d_name right after d_parent, len at 4 and name at 8"
    )))
}

/// The bytes of `strukt` that hold `fields` (name, offset, bytes the programs read
/// there), read at once; an error if they are further apart than one read takes. The
/// span starts 8-aligned, so a naturally aligned field stays aligned in the copy.
fn span(strukt: &str, fields: &[(&str, u32, u32)]) -> Result<Span, BtfError> {
    let start = fields.iter().map(|&(_, offset, _)| offset).min().unwrap_or(0) & !7;
    let end = fields.iter().map(|&(_, offset, width)| offset + width).max().unwrap_or(0);
    if end - start <= SPAN_MAX_BYTES {
        return Ok(Span { start, len: end - start });
    }
    let names: Vec<String> = fields.iter().map(|(name, offset, _)| format!("{name} at {offset}")).collect();
    Err(BtfError::Layout(format!(
        "struct {strukt} has {}: {} bytes apart, and the open hooks read them at once, at most {SPAN_MAX_BYTES}",
        names.join(", "),
        end - start
    )))
}

/// The spans the open hooks read (see `monitor_common::config::Span`).
fn spans(offsets: &KernelOffsets) -> Result<Spans, BtfError> {
    let o = offsets;
    Ok(Spans {
        file: span(
            "file",
            &[
                ("f_mode", o.file_f_mode, 4),
                ("f_inode", o.file_f_inode, 8),
                ("f_path.dentry", o.file_f_path + o.path_dentry, 8),
            ],
        )?,
        super_block: span(
            "super_block",
            &[
                ("s_dev", o.super_block_s_dev, 4),
                ("s_flags", o.super_block_s_flags, 8),
                ("s_magic", o.super_block_s_magic, 8),
                ("s_root", o.super_block_s_root, 8),
            ],
        )?,
        dentry: span(
            "dentry",
            &[("d_parent", o.dentry_d_parent, 8), ("d_name", o.dentry_d_name, 16), ("d_sb", o.dentry_d_sb, 8)],
        )?,
    })
}

/// Everything the programs need, for this kernel and this process.
pub fn kernel_config(btf: &Btf) -> Result<KernelConfig, BtfError> {
    let offsets = kernel_offsets(btf)?;
    Ok(KernelConfig {
        offsets,
        regs: regs_offsets(btf)?,
        syscalls: syscall_numbers(),
        spans: spans(&offsets)?,
        monitor_tgid: std::process::id(),
        watchdog_tgid: crate::watchdog::watchdog_pid(),
        raw_majors: crate::raw_devices::majors(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::tests::Builder;

    /// The native table against the libc crate's constants for the target (which
    /// come from the target's kernel headers). libc has no `SYS_open`/`SYS_creat` on
    /// aarch64: there, the table must say the syscalls do not exist.
    #[test]
    fn syscall_numbers_match_libc() {
        let nr = syscall_numbers();
        assert_eq!(nr.openat as i64, libc::SYS_openat);
        assert_eq!(nr.openat2 as i64, libc::SYS_openat2);
        assert_eq!(nr.open_by_handle_at as i64, libc::SYS_open_by_handle_at);
        assert_eq!(nr.connect as i64, libc::SYS_connect);
        assert_eq!(nr.io_uring_setup as i64, libc::SYS_io_uring_setup);
        assert_eq!(nr.pidfd_getfd as i64, libc::SYS_pidfd_getfd);
        assert_eq!(nr.socket as i64, libc::SYS_socket);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(nr.open as i64, libc::SYS_open);
            assert_eq!(nr.creat as i64, libc::SYS_creat);
        }
        #[cfg(target_arch = "aarch64")]
        {
            assert_eq!(nr.open, NO_SYSCALL);
            assert_eq!(nr.creat, NO_SYSCALL);
        }
    }

    /// `#define __NR_<name> <number>` lines of a kernel UAPI header.
    fn header_numbers(text: &str) -> std::collections::HashMap<String, u32> {
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "#define").then_some(())?;
                let name = words.next()?.strip_prefix("__NR_")?;
                Some((name.to_owned(), words.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Both tables, whatever the build host, against each architecture's own kernel
    /// headers (Debian's linux-libc-dev and linux-libc-dev-arm64-cross, which
    /// scripts/setup.sh installs): a number the header lacks must be NO_SYSCALL.
    #[test]
    fn syscall_numbers_match_each_architectures_kernel_headers() {
        let headers = [
            (Arch::X86_64, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
            (Arch::Aarch64, "/usr/aarch64-linux-gnu/include/asm-generic/unistd.h"),
        ];
        for (arch, header) in headers {
            let Ok(text) = std::fs::read_to_string(header) else {
                assert!(std::env::var_os("CI").is_none(), "{header} missing (scripts/setup.sh installs it)");
                eprintln!("skipping {}: {header} not here", arch.name());
                continue;
            };
            let defined = header_numbers(&text);
            assert!(defined.len() > 300, "{header}: parsed only {} syscalls", defined.len());
            let nr = syscall_numbers_of(arch);
            let table = [
                ("open", nr.open),
                ("creat", nr.creat),
                ("openat", nr.openat),
                ("openat2", nr.openat2),
                ("open_by_handle_at", nr.open_by_handle_at),
                ("connect", nr.connect),
                ("io_uring_setup", nr.io_uring_setup),
                ("pidfd_getfd", nr.pidfd_getfd),
                ("socket", nr.socket),
            ];
            for (name, number) in table {
                let expected = defined.get(name).copied().unwrap_or(NO_SYSCALL);
                assert_eq!(number, expected, "{} {name}", arch.name());
            }
        }
    }

    /// x86_64's `struct pt_regs` (arch/x86/include/asm/ptrace.h) as BTF.
    fn x86_64_pt_regs() -> Btf {
        let mut b = Builder::new();
        let ulong = b.int("long unsigned int", 8);
        let names = [
            "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax",
            "ip", "cs", "flags", "sp", "ss",
        ];
        let members: Vec<(&str, u32, u32)> = names.iter().enumerate().map(|(i, n)| (*n, ulong, 8 * i as u32)).collect();
        b.structure("pt_regs", 168, &members);
        Btf::parse(&b.build()).unwrap()
    }

    /// arm64's `struct pt_regs` (arch/arm64/include/asm/ptrace.h, 6.1) as BTF, with its
    /// anonymous union and struct.
    fn arm64_pt_regs() -> Btf {
        let mut b = Builder::new();
        let u64_ty = b.int("long long unsigned int", 8);
        let s32 = b.int("int", 4);
        let u32_ty = b.int("unsigned int", 4);
        let index = b.int("int", 4);
        let regs31 = b.array(u64_ty, index, 31);
        let stack2 = b.array(u64_ty, index, 2);
        let user = b.structure(
            "user_pt_regs",
            272,
            &[("regs", regs31, 0), ("sp", u64_ty, 248), ("pc", u64_ty, 256), ("pstate", u64_ty, 264)],
        );
        let inner = b.structure(
            "",
            272,
            &[("regs", regs31, 0), ("sp", u64_ty, 248), ("pc", u64_ty, 256), ("pstate", u64_ty, 264)],
        );
        let union = b.union("", 272, &[("user_regs", user, 0), ("", inner, 0)]);
        b.structure(
            "pt_regs",
            336,
            &[
                ("", union, 0),
                ("orig_x0", u64_ty, 272),
                ("syscallno", s32, 280),
                ("unused2", u32_ty, 284),
                ("sdei_ttbr1", u64_ty, 288),
                ("pmr_save", u64_ty, 296),
                ("stackframe", stack2, 304),
                ("lockdep_hardirqs", u64_ty, 320),
                ("exit_rcu", u64_ty, 328),
            ],
        );
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn x86_64_arguments_come_from_di_si_dx() {
        let regs = regs_offsets_of(Arch::X86_64, &x86_64_pt_regs()).unwrap();
        assert_eq!((regs.arg0, regs.arg1, regs.arg2), (14 * 8, 13 * 8, 12 * 8));
        assert_eq!((regs.syscall_nr, regs.syscall_nr_size), (15 * 8, 8));
    }

    /// At syscall exit arm64's regs[0] holds the return value: the first argument must
    /// come from orig_x0.
    #[test]
    fn arm64_first_argument_comes_from_orig_x0() {
        let regs = regs_offsets_of(Arch::Aarch64, &arm64_pt_regs()).unwrap();
        assert_eq!(regs.arg0, 272, "orig_x0, not regs[0]");
        assert_eq!((regs.arg1, regs.arg2), (8, 16), "regs[1], regs[2]");
        assert_eq!((regs.syscall_nr, regs.syscall_nr_size), (280, 4), "s32 syscallno");
    }

    #[test]
    fn the_kernel_reads_accept_only_the_layouts_they_assume() {
        assert!(check_dentry_head(24, 32, 4, 8).is_ok(), "Linux 6.x, x86_64 and arm64");
        let moved = check_dentry_head(24, 40, 4, 8).unwrap_err().to_string();
        assert!(moved.contains("d_name at 40") && moved.contains("right after d_parent"), "{moved}");
        assert!(check_dentry_head(24, 32, 0, 8).is_err(), "big-endian qstr: len first");
        // Linux 6.1 and 6.18 (x86_64): f_mode 68 / 4, f_inode 32, f_path 16 / 64.
        assert_eq!(
            span("file", &[("f_mode", 68, 4), ("f_inode", 32, 8), ("f_path.dentry", 24, 8)]).unwrap(),
            Span { start: 24, len: 48 }
        );
        assert_eq!(
            span("file", &[("f_mode", 4, 4), ("f_inode", 32, 8), ("f_path.dentry", 72, 8)]).unwrap(),
            Span { start: 0, len: 80 }
        );
        let apart = span("file", &[("f_mode", 4, 4), ("f_path.dentry", 200, 8)]).unwrap_err().to_string();
        assert!(apart.contains("f_mode at 4, f_path.dentry at 200: 208 bytes apart"), "{apart}");
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
        for span in [config.spans.file, config.spans.super_block, config.spans.dentry] {
            assert!(span.len > 0 && span.len <= SPAN_MAX_BYTES, "{span:?}");
        }
        // The register layouts are user ABI (ptrace) on both architectures: the running
        // kernel's BTF must agree with the layouts the tests above assume.
        let regs = config.regs;
        match Arch::NATIVE {
            Arch::X86_64 => {
                assert_eq!((regs.arg0, regs.arg1, regs.arg2, regs.syscall_nr), (112, 104, 96, 120), "{regs:?}");
            }
            Arch::Aarch64 => {
                assert_eq!(btf.member_offset("pt_regs", "regs").unwrap(), 0);
                assert_eq!((regs.arg0, regs.arg1, regs.arg2, regs.syscall_nr), (272, 8, 16, 280), "{regs:?}");
            }
        }
    }
}
