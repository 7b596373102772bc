//! One module per CLI subcommand.
pub mod control;
pub mod doctor;
pub mod kill;
pub mod policy;
pub mod run;
pub mod run_args;
pub mod run_via_daemon;
