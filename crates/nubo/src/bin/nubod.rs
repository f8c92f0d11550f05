//! nubod, the region server.

use clap::Parser;
use nubo_region::config::Command;
use nubo_region::{Args, Config};

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    let command = args.command.take();
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nubod: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = nubo_region::init_logging(&config.log) {
        eprintln!("nubod: {e}");
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let done = match command {
        Some(Command::Restore { from }) => runtime
            .block_on(nubo_region::backup::restore::restore(&config, &from))
            .map(|r| {
                println!(
                    "restored {} files and {} volumes into {}; start nubod on it",
                    r.files,
                    r.volumes,
                    config.data_dir.display()
                )
            }),
        Some(Command::Teardown { purge }) => nubo_region::server::teardown(&config, purge),
        None => runtime.block_on(nubo_region::server::run(config)),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nubod: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
