//! `nubo`, the command-line client. It can do exactly what the API can: every
//! command is one or a few API calls, with the same types.

mod args;
mod client;
mod commands;
mod output;
mod profile;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
pub use client::{Client, ClientError, Credentials};

/// Runs the CLI with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nubo: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
