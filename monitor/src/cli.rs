//! Command-line interface.

use std::{ffi::OsString, path::PathBuf};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agent-monitor", version, about = "Holds AI-agent processes to the scope they were granted")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD as a new agent session and stream its events as NDJSON.
    ///
    /// Exits with CMD's exit status (128+N if signal N ended it).
    Run {
        /// Write events to FILE (appended, created 0600) instead of stdout; `-` is stdout.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// The agent command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}
