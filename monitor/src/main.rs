use clap::Parser;
use monitor::{
    cli::{Cli, Command},
    commands::run::{RunArgs, run},
};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { events, command } => run(RunArgs { events, command }),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("agent-monitor: {error:#}");
            std::process::exit(125);
        }
    }
}
