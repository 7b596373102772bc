//! One module per CLI subcommand.
pub mod run;
