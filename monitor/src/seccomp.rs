//! A seccomp filter that kills any syscall made through a foreign ABI. The kernel hooks
//! watch the native syscall numbers only, so in an enforcing session another ABI, whose
//! numbers mean other syscalls, would be a way around them:
//! - x86_64: the 32-bit ia32 ABI (`int 0x80`, or a 32-bit binary), whose `seccomp_data`
//!   arch is AUDIT_ARCH_I386, and the x32 ABI (native arch, numbers with bit 30 set);
//! - aarch64: AArch32 compat tasks (AUDIT_ARCH_ARM). There is no x32-like ABI: native
//!   numbers with high bits set are simply unknown syscalls (ENOSYS) and pass.
//!
//! Installed by the launcher between fork and exec; inherited by every descendant and
//! never removable.

use crate::arch::Arch;

/// `struct sock_filter` program for one architecture.
pub struct ForeignAbiFilter {
    filter: [libc::sock_filter; MAX_LEN],
    len: usize,
}

/// Longest filter (x86_64's).
const MAX_LEN: usize = 7;

pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(crate) const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K
pub(crate) const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
pub(crate) const DATA_NR: u32 = 0;
pub(crate) const DATA_ARCH: u32 = 4;
/// Syscall numbers with this bit are the x32 ABI (x86_64 only).
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// include/uapi/linux/audit.h: AUDIT_ARCH_* = EM_* | flags.
const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
const AUDIT_ARCH_LE: u32 = 0x4000_0000;
const EM_386: u32 = 3;
const EM_ARM: u32 = 40;
const EM_X86_64: u32 = 62;
const EM_AARCH64: u32 = 183;
pub const AUDIT_ARCH_X86_64: u32 = EM_X86_64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE;
pub const AUDIT_ARCH_I386: u32 = EM_386 | AUDIT_ARCH_LE;
pub const AUDIT_ARCH_AARCH64: u32 = EM_AARCH64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE;
pub const AUDIT_ARCH_ARM: u32 = EM_ARM | AUDIT_ARCH_LE;

/// The `seccomp_data.arch` of native syscalls.
pub const fn native_audit_arch(arch: Arch) -> u32 {
    match arch {
        Arch::X86_64 => AUDIT_ARCH_X86_64,
        Arch::Aarch64 => AUDIT_ARCH_AARCH64,
    }
}

pub(crate) const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const ALLOW: libc::sock_filter = op(RET_K, 0, 0, SECCOMP_RET_ALLOW);
const KILL: libc::sock_filter = op(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS);

impl ForeignAbiFilter {
    /// The filter for the architecture this binary runs on.
    pub fn new() -> ForeignAbiFilter {
        ForeignAbiFilter::for_arch(Arch::NATIVE)
    }

    pub fn for_arch(arch: Arch) -> ForeignAbiFilter {
        let mut filter = [ALLOW; MAX_LEN];
        let program: &[libc::sock_filter] = match arch {
            Arch::X86_64 => &[
                op(LD_W_ABS, 0, 0, DATA_ARCH),
                op(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), // native: go on; else (ia32) kill
                KILL,
                op(LD_W_ABS, 0, 0, DATA_NR),
                op(JGE_K, 0, 1, X32_SYSCALL_BIT), // x32: kill; else allow
                KILL,
                ALLOW,
            ],
            Arch::Aarch64 => &[
                op(LD_W_ABS, 0, 0, DATA_ARCH),
                op(JEQ_K, 1, 0, AUDIT_ARCH_AARCH64), // native: allow; else (AArch32) kill
                KILL,
                ALLOW,
            ],
        };
        filter[..program.len()].copy_from_slice(program);
        ForeignAbiFilter { filter, len: program.len() }
    }

    /// Installs the filter on the calling thread. Async-signal-safe (no allocation);
    /// needs CAP_SYS_ADMIN, which the monitor's launcher has (no no_new_privs is set,
    /// so setuid programs in the session keep working).
    pub fn install(&self) -> std::io::Result<()> {
        let mut program = self.filter;
        let fprog = libc::sock_fprog { len: self.len as u16, filter: program.as_mut_ptr() };
        // SAFETY: fprog points at `program`, alive across the call.
        let ret = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
        };
        if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    #[cfg(test)]
    fn program(&self) -> &[libc::sock_filter] {
        &self.filter[..self.len]
    }
}

impl Default for ForeignAbiFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// A `struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }`
/// (the low 32 bits of each argument; little-endian, as on both supported arches).
#[cfg(test)]
pub(crate) fn seccomp_data(nr: u32, arch: u32, args: [u32; 6]) -> [u8; 64] {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..20 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    data
}

/// Runs a classic-BPF program over `data` the way the kernel does (the instructions
/// the filters here use; anything else is a test failure).
#[cfg(test)]
pub(crate) fn simulate(program: &[libc::sock_filter], data: &[u8; 64]) -> u32 {
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let insn = program.get(pc).unwrap_or_else(|| panic!("ran off the end at {pc}"));
        pc += 1;
        match insn.code {
            LD_W_ABS => {
                let at = insn.k as usize;
                acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            JEQ_K => pc += if acc == insn.k { insn.jt } else { insn.jf } as usize,
            JGE_K => pc += if acc >= insn.k { insn.jt } else { insn.jf } as usize,
            RET_K => return insn.k,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        simulate(program, &seccomp_data(nr, arch, [0; 6]))
    }

    #[test]
    fn audit_arch_values_are_the_kernels() {
        // The values in include/uapi/linux/audit.h, as the kernel reports them.
        assert_eq!(AUDIT_ARCH_X86_64, 0xc000_003e);
        assert_eq!(AUDIT_ARCH_I386, 0x4000_0003);
        assert_eq!(AUDIT_ARCH_AARCH64, 0xc000_00b7);
        assert_eq!(AUDIT_ARCH_ARM, 0x4000_0028);
    }

    #[test]
    fn x86_64_kills_ia32_and_x32_and_allows_native() {
        let filter = ForeignAbiFilter::for_arch(Arch::X86_64);
        let p = filter.program();
        assert_eq!(run(p, AUDIT_ARCH_X86_64, 257), SECCOMP_RET_ALLOW, "openat");
        assert_eq!(run(p, AUDIT_ARCH_X86_64, 0), SECCOMP_RET_ALLOW, "read");
        assert_eq!(run(p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT - 1), SECCOMP_RET_ALLOW);
        assert_eq!(run(p, AUDIT_ARCH_I386, 5), SECCOMP_RET_KILL_PROCESS, "ia32 open");
        assert_eq!(run(p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 257), SECCOMP_RET_KILL_PROCESS, "x32 openat");
        assert_eq!(run(p, AUDIT_ARCH_AARCH64, 56), SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn aarch64_kills_aarch32_and_allows_native() {
        let filter = ForeignAbiFilter::for_arch(Arch::Aarch64);
        let p = filter.program();
        assert_eq!(run(p, AUDIT_ARCH_AARCH64, 56), SECCOMP_RET_ALLOW, "openat");
        assert_eq!(run(p, AUDIT_ARCH_AARCH64, 203), SECCOMP_RET_ALLOW, "connect");
        // No x32 on arm64: an out-of-range number is the kernel's ENOSYS, not a kill.
        assert_eq!(run(p, AUDIT_ARCH_AARCH64, X32_SYSCALL_BIT | 56), SECCOMP_RET_ALLOW);
        assert_eq!(run(p, AUDIT_ARCH_ARM, 5), SECCOMP_RET_KILL_PROCESS, "AArch32 open");
        assert_eq!(run(p, AUDIT_ARCH_ARM, 322), SECCOMP_RET_KILL_PROCESS, "AArch32 openat");
        assert_eq!(run(p, AUDIT_ARCH_X86_64, 257), SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn the_native_filter_is_this_architectures() {
        let (native, foreign) = match Arch::NATIVE {
            Arch::X86_64 => (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386),
            Arch::Aarch64 => (AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM),
        };
        let filter = ForeignAbiFilter::new();
        assert_eq!(run(filter.program(), native, libc::SYS_openat as u32), SECCOMP_RET_ALLOW);
        assert_eq!(run(filter.program(), foreign, libc::SYS_openat as u32), SECCOMP_RET_KILL_PROCESS);
    }
}
