//! Developer tasks for the nubo workspace: `cargo xtask <task>`. Std only, so
//! that it builds in seconds on a fresh clone.

mod bench;
mod cache;
mod cmd;
mod debian;
mod down;
mod image;
mod packages;
mod postgres;
mod python;
mod test;
mod up;

use std::env;
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task> [-- args]

tasks:
  up [-- nubod args]   build and run a local region on http://127.0.0.1:8080
  down [--purge]       stop it and take away its VMs, DHCP servers and networks
                       (--purge: its data dir .nubo too)
  test [-- filter]     the whole suite as CI runs it: rustfmt, clippy, tests
  image [--into DIR]   build the guest images (cached) and install them in DIR
  bench <name>         run a benchmark (api, launch, s3, network, volumes, billing) against its targets
  openapi              regenerate the checked-in OpenAPI document
  pg-url               start the test PostgreSQL if needed and print its URL
  pg-stop              stop the test PostgreSQL";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    // `cargo xtask up -- --listen ...` hands us the `--` too.
    let rest = match rest {
        [dashes, rest @ ..] if dashes == "--" => rest,
        _ => rest,
    };
    // Relative paths (`.nubo`, `target`) mean the workspace root, wherever
    // we were started from.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    if let Err(e) = env::set_current_dir(root) {
        eprintln!("xtask: cannot enter the workspace root {root}: {e}");
        return ExitCode::FAILURE;
    }

    let result = match (task.as_str(), rest) {
        ("up", nubod_args) => up::run(nubod_args),
        ("down", args) => down::run(args),
        ("test", test_args) => test::run(test_args),
        ("bench", [name]) => bench::run(name),
        ("image", image_args) => image::run(image_args),
        ("openapi", []) => openapi(),
        ("pg-url", []) => pg_url(),
        ("pg-stop", []) => postgres::stop(),
        ("help" | "-h" | "--help", []) => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!(
                "xtask: unknown task or arguments: {}\n\n{USAGE}",
                args.join(" ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// The region crate's test rewrites the document when asked to, instead of
/// comparing against it.
fn openapi() -> cmd::Result {
    cmd::run(
        Command::new("cargo")
            .args(["test", "-p", "nubo-region", "--lib", "openapi_document"])
            .env("NUBO_UPDATE_OPENAPI", "1"),
    )
}

/// For benchmarks: the test PostgreSQL, installed and started if need be.
fn pg_url() -> cmd::Result {
    packages::ensure(&["postgresql"])?;
    println!("{}", postgres::ensure()?);
    Ok(())
}
