//! The CPU architectures agent-monitor builds for. Everything that differs between them
//! (syscall numbers, where `struct pt_regs` keeps syscall arguments, which syscall ABIs
//! are foreign) is written once per architecture and selected by [`Arch::NATIVE`]; the
//! other architecture's values stay compiled in so that the unit tests of either can
//! run on any build host.

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("agent-monitor supports x86_64 and aarch64 only");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    #[cfg_attr(target_arch = "x86_64", allow(dead_code, reason = "its values stay compiled in for the unit tests"))]
    Aarch64,
}

impl Arch {
    /// The architecture this binary was built for.
    #[cfg(target_arch = "x86_64")]
    pub const NATIVE: Arch = Arch::X86_64;
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Arch = Arch::Aarch64;

    /// As `uname -m` prints it.
    #[cfg(test)]
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}
