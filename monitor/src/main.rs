use clap::{Parser, ValueEnum};
use monitor::{
    cli::{Cli, Command, EbpfLogLevel, PolicyCommand},
    commands::{control, doctor, kill, policy, run, run_args::RunArgs, run_via_daemon},
    daemon,
    watchdog::OnMonitorDeath,
};

fn main() {
    let cli = Cli::parse();
    let ebpf_log = cli.ebpf_log.map(|level| match level {
        EbpfLogLevel::Error => log::Level::Error,
        EbpfLogLevel::Warn => log::Level::Warn,
        EbpfLogLevel::Info => log::Level::Info,
        EbpfLogLevel::Debug => log::Level::Debug,
        EbpfLogLevel::Trace => log::Level::Trace,
    });
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if let Some(level) = ebpf_log {
        // What the programs log carries their module paths (`monitor_ebpf::kernel`).
        logger.filter_module("monitor_ebpf", level.to_level_filter());
    }
    logger.init();
    monitor::verifier::set_verbose(cli.verbose);
    let result = match cli.command {
        Command::Run { events, policy, profile, on_behalf_of, no_lsm, standalone, on_monitor_death, command } => {
            if ebpf_log.is_some() && !standalone && control::connect(&cli.socket).is_some() {
                eprintln!(
                    "agent-monitor: --ebpf-log: this run loads and holds its own session, not the running daemon"
                );
            }
            // --no-lsm and --ebpf-log are about this process's own programs.
            let socket = (!standalone && !no_lsm && ebpf_log.is_none()).then_some(cli.socket);
            // clap checked the value against the same names.
            let on_monitor_death = on_monitor_death.and_then(|action| OnMonitorDeath::from_str(&action, false).ok());
            let args =
                RunArgs { events, policy, profile, on_behalf_of, no_lsm, ebpf_log, socket, on_monitor_death, command };
            // A running daemon holds the session; without one, this process does.
            match args.socket.as_deref().and_then(control::connect) {
                Some(stream) => run_via_daemon::run(&args, stream),
                None => run::run(args),
            }
        }
        Command::Watchdog { monitor_pid, events, stdout } => monitor::watchdog::watch(monitor_pid, events, stdout),
        Command::Daemon { config } => daemon::daemon(&config, ebpf_log),
        Command::Doctor { json, all_programs } => doctor::doctor(json, all_programs, ebpf_log),
        Command::Status { json } => control::status(&cli.socket, json),
        Command::Sessions { json } => control::sessions(&cli.socket, json),
        Command::Events { follow: false, .. } => Err(anyhow::anyhow!(
            "events needs --follow: the daemon streams events as they happen and keeps no history (past events are in its event file or the journal)"
        )),
        Command::Events { follow: true, session, types } => control::events(&cli.socket, session, types),
        Command::Reload => control::reload(&cli.socket),
        // With a daemon running, it holds the sessions; without one, a `run`'s own.
        Command::Kill { session, freeze, thaw } => match control::connect(&cli.socket) {
            Some(_) => control::kill(&cli.socket, &session, freeze, thaw),
            None => kill::kill(&session, freeze, thaw),
        },
        Command::Policy(PolicyCommand::Check { file }) => policy::check(&file),
        Command::Policy(PolicyCommand::Default) => policy::default(),
        Command::Policy(PolicyCommand::Explain { file, profile }) => {
            policy::explain(file.as_deref(), profile.as_deref())
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("agent-monitor: {error:#}");
            std::process::exit(125);
        }
    }
}
