//! Tier 2's syscall hooks: fentry/fexit on the syscall functions where the kernel has
//! BPF trampolines (`monitor-ebpf/src/syscall_functions.rs`), else the `syscalls:`
//! tracepoints.

use aya::{
    Ebpf,
    programs::{FEntry, FExit, ProgramError, TracePoint},
};
use monitor_common::config::SyscallNumbers;

use super::LoadError;
use crate::verifier::Verifications;

/// Syscall tracepoints (`syscalls:sys_enter_NAME`, `syscalls:sys_exit_NAME`): only
/// where tier 2 judges opens or reports connects. Once any is attached, every task on
/// the host takes the kernel's slower syscall path (about 70 ns per syscall measured);
/// only these syscalls run a program. A syscall the architecture lacks (aarch64: open,
/// creat) is skipped.
pub struct WatchedSyscall {
    pub name: &'static str,
    /// On this architecture; `NO_SYSCALL` if it has none.
    pub nr: u32,
    pub at_entry: bool,
    pub at_exit: bool,
}

pub fn watched_syscalls(n: &SyscallNumbers) -> [WatchedSyscall; 9] {
    let watch = |name, nr, at_entry, at_exit| WatchedSyscall { name, nr, at_entry, at_exit };
    [
        watch("open", n.open, false, true),
        watch("creat", n.creat, false, true),
        watch("openat", n.openat, false, true),
        watch("openat2", n.openat2, false, true),
        watch("open_by_handle_at", n.open_by_handle_at, true, true),
        watch("connect", n.connect, true, true),
        watch("io_uring_setup", n.io_uring_setup, true, false),
        watch("pidfd_getfd", n.pidfd_getfd, true, false),
        watch("socket", n.socket, true, false),
    ]
}

/// Where tier 2 hooks the watched syscalls (none where BPF LSM enforces files and
/// network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallHooks {
    None,
    /// fentry/fexit on the syscall functions (`__x64_sys_openat`, ...): only the watched
    /// syscalls pay, where the kernel has BPF trampolines.
    Functions,
    /// The `syscalls:sys_enter_*`/`sys_exit_*` tracepoints: every task of the host takes
    /// the syscall slow path while one is attached.
    Tracepoints,
}

impl SyscallHooks {
    pub fn name(self) -> &'static str {
        match self {
            SyscallHooks::None => "none",
            SyscallHooks::Functions => "functions",
            SyscallHooks::Tracepoints => "tracepoints",
        }
    }
}

/// Tier 2's syscall links (tracepoints, or fentry/fexit), detached all at once when
/// dropped. Removing a syscall tracepoint makes the kernel wait for a grace period
/// (about 70 ms on 6.18); one after the other, the ten links added 0.7 s to every exit
/// of a monitor.
#[derive(Default)]
pub struct SyscallLinks(Vec<Box<dyn Send>>);

impl Drop for SyscallLinks {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
    }
}

/// Loads `program` once and attaches it to each `syscalls:` tracepoint in `tracepoints`;
/// the links go to `links`.
pub fn attach_tracepoints(
    ebpf: &mut Ebpf,
    programs: &mut Verifications,
    program: &'static str,
    tracepoints: &[String],
    links: &mut SyscallLinks,
) -> Result<(), LoadError> {
    let error = |tracepoint: &str| {
        let tracepoint = tracepoint.to_owned();
        move |source| LoadError::SyscallTracepoint { program, tracepoint, source }
    };
    let first = tracepoints.first().map(String::as_str).unwrap_or_default();
    programs.load(ebpf, program, |p| <&mut TracePoint>::try_from(p)?.load())?;
    let prog: &mut TracePoint =
        ebpf.program_mut(program).ok_or(LoadError::MissingProgram(program))?.try_into().map_err(error(first))?;
    for tracepoint in tracepoints {
        let link = prog.attach("syscalls", tracepoint).map_err(error(tracepoint))?;
        links.0.push(Box::new(prog.take_link(link).map_err(error(tracepoint))?));
    }
    programs.set_attached(program, !tracepoints.is_empty());
    Ok(())
}

/// The functions the syscall table calls, named `<prefix><syscall>`.
#[cfg(target_arch = "x86_64")]
const PREFIX: &str = "__x64_sys_";
#[cfg(target_arch = "aarch64")]
const PREFIX: &str = "__arm64_sys_";

/// The kernel function of the syscall `name`.
pub fn function(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Attaches `fentry_<name>` and `fexit_<name>` to each syscall's function, as it is
/// watched at entry and exit; all of them, or none (the links made before a failure
/// are dropped, which detaches them, for the tracepoints to take over).
pub fn attach_functions(
    ebpf: &mut Ebpf,
    programs: &mut Verifications,
    btf: &aya::Btf,
    present: &[WatchedSyscall],
) -> Result<SyscallLinks, String> {
    let mut links = SyscallLinks::default();
    let mut hooked = Vec::new();
    // FEntry and FExit share these methods but no trait.
    macro_rules! hook {
        ($kind:ty, $program:expr, $function:expr) => {{
            let (program, function) = ($program, $function);
            programs.load(ebpf, &program, |p| <&mut $kind>::try_from(p)?.load(function, btf)).map_err(|e| e.short())?;
            let prog: &mut $kind = program_of(ebpf, &program)?;
            let id = prog.attach().map_err(failed("attaching", &program, function))?;
            links.0.push(Box::new(prog.take_link(id).map_err(failed("keeping", &program, function))?));
            hooked.push(program);
        }};
    }
    let mut attach_all = || -> Result<(), String> {
        for syscall in present {
            let function = function(syscall.name);
            if syscall.at_entry {
                hook!(FEntry, format!("fentry_{}", syscall.name), &function);
            }
            if syscall.at_exit {
                hook!(FExit, format!("fexit_{}", syscall.name), &function);
            }
        }
        Ok(())
    };
    let attached = attach_all();
    // On a failure the links are dropped with `links`: none stays attached.
    for program in &hooked {
        programs.set_attached(program, attached.is_ok());
    }
    attached.map(|()| links)
}

fn failed<'a>(what: &'a str, program: &'a str, function: &'a str) -> impl Fn(ProgramError) -> String + 'a {
    move |e| format!("{what} {program} for {function}: {e:#}")
}

fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name).ok_or_else(|| format!("no program {name}"))?.try_into().map_err(|e| format!("{name}: {e}"))
}
