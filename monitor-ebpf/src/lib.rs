#![no_std]
// Exists so that monitor/build.rs can name this crate as a build-dependency, which
// makes cargo rebuild the embedded eBPF object when this crate changes.
