use clap::Parser;
use monitor::{
    cli::{Cli, Command, PolicyCommand},
    commands::{
        doctor, kill, policy,
        run::{RunArgs, run},
    },
};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { events, policy, profile, on_behalf_of, no_lsm, command } => {
            run(RunArgs { events, policy, profile, on_behalf_of, no_lsm, command })
        }
        Command::Doctor { json } => doctor::doctor(json),
        Command::Kill { session, freeze, thaw } => kill::kill(&session, freeze, thaw),
        Command::Policy(PolicyCommand::Check { file }) => policy::check(&file),
        Command::Policy(PolicyCommand::Default) => policy::default(),
        Command::Policy(PolicyCommand::Explain { file, profile }) => policy::explain(file.as_deref(), profile.as_deref()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("agent-monitor: {error:#}");
            std::process::exit(125);
        }
    }
}
