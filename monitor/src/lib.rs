//! agent-monitor: the daemon and CLI. The data flow, one module per stage:
//! `loader` (eBPF in) -> `ingest` (ring buffer -> queue) -> `decode` (bytes -> typed
//! events) -> `actions` (what a violation costs) -> `process_tree` (who is who) ->
//! `pipeline` (JSON events) -> `sink`. Only what the binary uses is public.

mod actions;
mod arch;
mod attachments;
mod backlog;
mod btf;
mod capabilities;
mod cgroup;
mod cgroup_fence;
pub mod cli;
mod clock;
pub mod commands;
pub mod daemon;
mod decode;
mod ebpf_log;
mod enforcement;
mod event;
mod event_context;
mod guard_filter;
mod host_refresh;
mod ingest;
mod item;
mod kernel_config;
mod launcher;
mod loader;
mod loaders;
mod loss;
mod member_bits;
mod metrics;
mod mounts;
mod pidfd;
mod pipeline;
mod policy;
mod principal;
mod process_tree;
mod queue;
mod raw_devices;
mod rendered;
mod rule_maps;
mod running_process;
mod seccomp;
mod session;
mod session_map;
mod sink;
mod skipped_runs;
mod socket_families;
#[cfg(test)]
mod test_maps;
mod tracefs;
pub mod verifier;
pub mod watchdog;

#[cfg(test)]
mod event_schema_tests;
