//! `nubo`, the command-line client. It can do exactly what the API can: every
//! command is one or a few API calls, with the same types.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod client;
mod commands;
mod output;
mod profile;
mod progress;

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
        // The reader of the output went away: nothing is left to say.
        Ok(()) | Err(ClientError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(format!("nubo: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
