//! nubo, the command-line client.

fn main() -> std::process::ExitCode {
    nubo_cli::main()
}
