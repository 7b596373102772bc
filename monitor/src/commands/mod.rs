//! One module per CLI subcommand.
pub mod policy;
pub mod run;
