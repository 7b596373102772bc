//! agent-monitor: the daemon and CLI. The data flow, one module per stage:
//! `loader` (eBPF in) -> `ingest` (ring buffer -> queue) -> `decode` (bytes -> typed
//! events) -> `process_tree` (who is who) -> `pipeline` (JSON events) -> `sink`.

mod actions;
pub mod arch;
mod attachments;
pub mod backlog;
pub mod btf;
pub mod capabilities;
pub mod cgroup;
pub mod cgroup_fence;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod decode;
pub mod enforcement;
pub mod event;
pub mod event_context;
pub mod guard_filter;
pub mod host_refresh;
pub mod ingest;
mod item;
pub mod kernel_config;
pub mod launcher;
pub mod loader;
pub mod loaders;
mod loss;
pub mod member_bits;
pub mod metrics;
pub mod mounts;
mod pidfd;
pub mod pipeline;
pub mod policy;
pub mod principal;
pub mod process_tree;
pub mod queue;
pub mod raw_devices;
pub mod rendered;
pub mod rule_maps;
pub mod running_process;
pub mod seccomp;
mod session;
pub mod session_map;
pub mod sink;
pub mod skipped_runs;
pub mod socket_families;
#[cfg(test)]
mod test_maps;
pub mod tracefs;
pub mod verifier;
pub mod watchdog;

#[cfg(test)]
mod event_schema_tests;
