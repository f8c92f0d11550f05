//! nubod, the region server.

use clap::Parser;
use nubo_region::config::Command;
use nubo_region::{Args, Config};

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let command = args.command;
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
    if let Some(Command::Teardown { purge }) = command {
        return match nubo_region::server::teardown(&config, purge) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nubod: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(nubo_region::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nubod: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
