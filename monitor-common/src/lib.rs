//! Types shared by the eBPF programs (`monitor-ebpf`) and the daemon (`monitor`).
//!
//! Everything that crosses the kernel boundary is `#[repr(C)]`, `Copy`, made of
//! fixed-width integers and byte arrays, with padding written out and the size pinned
//! by a compile-time assertion. Userspace never transmutes these from ring-buffer bytes:
//! it checks size and kind first (see `monitor::decode`).
#![no_std]

pub mod adopt;
pub mod config;
pub mod event;
pub mod maps;
pub mod policy;
pub mod session;
