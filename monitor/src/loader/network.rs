//! The cgroup tier of network rules: socket-address and socket-creation programs on a
//! session's cgroup (`run`) or the root cgroup (the daemon).

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr},
};

use super::LoadError;
use crate::verifier::Verifications;

/// (program, what it hooks), attached to each session's cgroup.
const CGROUP_PROGRAMS: [(&str, &str); 6] = [
    ("connect4", "cgroup/connect4"),
    ("connect6", "cgroup/connect6"),
    ("sendmsg4", "cgroup/sendmsg4"),
    ("sendmsg6", "cgroup/sendmsg6"),
    ("bind4", "cgroup/bind4"),
    ("bind6", "cgroup/bind6"),
];

/// Attaches the network programs to a session's cgroup (inherited by every cgroup
/// below it; no program may be attached below it, so an agent cannot override them).
/// The links live as long as `ebpf`.
pub fn attach_network(ebpf: &mut Ebpf, cgroup: &std::fs::File) -> Result<(), LoadError> {
    attach_network_in(ebpf, cgroup, CgroupAttachMode::Single)
}

/// The daemon's variant: attached once to the root cgroup, so that they cover adopted
/// processes wherever they run. Attached as BPF links, they run beside any other
/// programs there and below (a link attachment is always multi; the kernel refuses
/// the `BPF_F_ALLOW_MULTI` flag on links). The programs let every process outside
/// the sessions pass after one map lookup.
pub fn attach_network_everywhere(ebpf: &mut Ebpf, root: &std::fs::File) -> Result<(), LoadError> {
    attach_network_in(ebpf, root, CgroupAttachMode::Single)
}

fn attach_network_in(ebpf: &mut Ebpf, cgroup: &std::fs::File, mode: CgroupAttachMode) -> Result<(), LoadError> {
    for (program, attach) in CGROUP_PROGRAMS {
        cgroup_program(ebpf, program, attach)?.attach(cgroup, mode).map_err(|source| LoadError::Cgroup {
            program,
            attach,
            source,
        })?;
    }
    let (program, attach) = SOCK_CREATE;
    sock_create_program(ebpf)?.attach(cgroup, mode).map_err(|source| LoadError::Cgroup { program, attach, source })?;
    Ok(())
}

fn sock_create_program(ebpf: &mut Ebpf) -> Result<&mut CgroupSock, LoadError> {
    let (program, attach) = SOCK_CREATE;
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Cgroup { program, attach, source })
}

/// Refuses raw and ICMP sockets where connections are restricted.
const SOCK_CREATE: (&str, &str) = ("sock_create", "cgroup/sock_create");

fn cgroup_program<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
    attach: &'static str,
) -> Result<&'a mut CgroupSockAddr, LoadError> {
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Cgroup { program, attach, source })
}

/// Loads (without attaching) the network programs.
pub fn load(ebpf: &mut Ebpf, programs: &mut Verifications) -> Result<(), LoadError> {
    for (program, _) in CGROUP_PROGRAMS {
        programs.load(ebpf, program, |p| <&mut CgroupSockAddr>::try_from(p)?.load())?;
    }
    programs.load(ebpf, SOCK_CREATE.0, |p| <&mut CgroupSock>::try_from(p)?.load())?;
    Ok(())
}
