//! A seccomp filter that kills any syscall made through a foreign ABI (32-bit ia32 via
//! `int 0x80` or a 32-bit binary, x32 on x86_64; AArch32 on aarch64). The kernel hooks
//! watch the native syscall numbers only, so in an enforcing session those ABIs would
//! be a way around them. Installed by the launcher between fork and exec; inherited by
//! every descendant and never removable.

/// `struct sock_filter` program: arch check, x32 check, allow.
pub struct ForeignAbiFilter {
    filter: [libc::sock_filter; 6],
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// Syscall numbers with this bit are the x32 ABI (x86_64 only).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl ForeignAbiFilter {
    pub fn new() -> ForeignAbiFilter {
        ForeignAbiFilter {
            filter: [
                op(LD_W_ABS, 0, 0, DATA_ARCH),
                op(JEQ_K, 1, 0, NATIVE_ARCH), // native: go on; else kill
                op(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
                op(LD_W_ABS, 0, 0, DATA_NR),
                op(JGE_K, 0, 1, X32_SYSCALL_BIT), // x32: kill; else allow
                op(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
            ],
        }
    }

    /// Installs the filter on the calling thread. Async-signal-safe (no allocation);
    /// needs CAP_SYS_ADMIN, which the monitor's launcher has (no no_new_privs is set,
    /// so setuid programs in the session keep working).
    pub fn install(&self) -> std::io::Result<()> {
        // The last instruction allows: append it without allocating.
        let mut program = [op(RET_K, 0, 0, SECCOMP_RET_ALLOW); 7];
        program[..6].copy_from_slice(&self.filter);
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
        // SAFETY: fprog points at `program`, alive across the call.
        let ret = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
        };
        if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
}

impl Default for ForeignAbiFilter {
    fn default() -> Self {
        Self::new()
    }
}
