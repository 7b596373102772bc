//! One module per CLI subcommand.
pub mod doctor;
pub mod kill;
pub mod policy;
pub mod run;
