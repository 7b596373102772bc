//! Command-line interface.

use std::{ffi::OsString, path::PathBuf};

use clap::{Parser, Subcommand};

/// The daemon's control socket (kept here, beside the CLI: `cargo xtask man` compiles
/// this file alone, with std and clap only).
pub const DEFAULT_SOCKET: &str = "/run/agent-monitor/control.sock";
/// The daemon's configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/agent-monitor/config.yaml";

#[derive(Debug, Parser)]
#[command(name = "agent-monitor", version, about = "Holds AI-agent processes to the scope they were granted")]
pub struct Cli {
    /// The daemon's control socket (status, sessions, events, kill, reload, and `run`
    /// when a daemon is running).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// When the kernel refuses an eBPF program, print the verifier's whole log too (it
    /// is always written to a file, named in the error).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// The eBPF programs' own diagnostics (lost events, adoptions) on stderr, at this
    /// level and above; off by default, at no cost. For `run` (which then holds its own
    /// session, as with --standalone), `daemon` and `doctor`.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub ebpf_log: Option<EbpfLogLevel>,
    #[command(subcommand)]
    pub command: Command,
}

/// A level of `--ebpf-log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EbpfLogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
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
        /// Policy file (YAML); without it, the built-in policy (`agent-monitor policy default`).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Profile of the policy to hold the agent to (default: the file's only profile,
        /// or `default` for the built-in policy).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// The user the agent acts for (name or uid): the agent reaches no file that
        /// user could not open (owner, group and mode bits). Default: the user who ran
        /// agent-monitor (SUDO_UID under sudo).
        #[arg(long, value_name = "USER")]
        on_behalf_of: Option<String>,
        /// Do not use BPF LSM even where the kernel allows it: tier 2 (tracepoints and
        /// cgroup hooks) enforces everything. For comparing the tiers. Implies
        /// --standalone.
        #[arg(long)]
        no_lsm: bool,
        /// Load the programs for this session even if a daemon is running (by default
        /// the daemon is asked to hold the session, so one copy of the programs serves
        /// the host).
        #[arg(long)]
        standalone: bool,
        /// What becomes of the session if the monitor dies without ending it: `kill`
        /// every process of it, or `freeze` them in place for an operator to inspect.
        /// Default: `kill` in enforce mode, `freeze` in audit mode.
        #[arg(long, value_name = "ACTION", value_parser = ["kill", "freeze"])]
        on_monitor_death: Option<String>,
        /// The agent command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// The monitor's watchdog (started by `run` and `daemon`, not by hand): ends the
    /// sessions the monitor guarded if it dies.
    #[command(hide = true)]
    Watchdog {
        #[arg(long)]
        monitor_pid: u32,
        #[arg(long)]
        events: Option<PathBuf>,
        #[arg(long)]
        stdout: bool,
    },
    /// Run as the host's monitor: adopt agents that the policy's `match:` selectors
    /// name, serve the control socket, until SIGTERM; SIGHUP reloads the policy.
    Daemon {
        /// Configuration file (YAML); a missing default file means the defaults.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The daemon's version, enforcement tiers, policy, sessions and counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The daemon's sessions, one per line (or a JSON list).
    Sessions {
        #[arg(long)]
        json: bool,
    },
    /// Stream the daemon's events (NDJSON) as they happen.
    Events {
        /// Keep streaming (required: the daemon keeps no history; past events are in
        /// its file sink or the journal).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only this session's events.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Only events of this type (repeatable), e.g. --type file.open --type session.killed.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
    },
    /// Make the daemon read its policy again (as SIGHUP does); a broken policy is
    /// refused and the one in force stays.
    Reload,
    /// Kill every process of a session at once (or freeze it in place for forensics).
    Kill {
        /// Session id (16 hex digits, as in the events' `session.id`).
        session: String,
        /// Stop the session's processes in place instead of killing them.
        #[arg(long, conflicts_with = "thaw")]
        freeze: bool,
        /// Resume a frozen session.
        #[arg(long)]
        thaw: bool,
    },
    /// Show what this kernel supports and which tier will enforce files, exec, the
    /// network and the monitor's self-protection. Exits 0 if the monitor can run here.
    Doctor {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also verify the programs this kernel's tiers do not use (loaded, never
        /// attached), so that every program's verified instructions are listed.
        #[arg(long)]
        all_programs: bool,
    },
    /// Check, show and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: report every error with its profile, field and fix.
    Check { file: PathBuf },
    /// Print the built-in policy.
    Default,
    /// Show, per rule, how it is enforced on this host (kernel or userspace).
    Explain {
        file: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
    },
}
