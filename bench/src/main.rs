//! nubo's benchmarks. Each runs real binaries and prints its figures beside the
//! target (or a peer measured in the same run) as a ratio.
//!
//!     nubo-bench api --nubod PATH [--postgres-url URL]
//!     nubo-bench launch --nubod PATH --images DIR
//!     nubo-bench s3 --nubod PATH --peer S3S_FS_PATH
//!     nubo-bench network --nubod PATH --images DIR
//!     nubo-bench volumes --nubod PATH --images DIR
//!     nubo-bench billing --nubod PATH

mod api;
mod billing;
mod io;
mod launch;
mod network;
mod region;
mod s3;
mod ssh_ready;
mod stats;
mod volumes;

use std::process::ExitCode;

fn main() -> ExitCode {
    nubo_tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("api") => api::run(&args[1..]),
        Some("launch") => launch::run(&args[1..]),
        Some("s3") => s3::run(&args[1..]),
        Some("network") => network::run(&args[1..]),
        Some("volumes") => volumes::run(&args[1..]),
        Some("billing") => billing::run(&args[1..]),
        // bench/volumes runs this inside its guest and on the host.
        Some("io") => io::run(&args[1..]),
        // QEMU runs this for each metadata request of bench/network's bare VM.
        Some("imds-stdio") => ssh_ready::imds_stdio(&args[1..]),
        _ => Err(
            "usage: nubo-bench api --nubod PATH [--postgres-url URL]\n       \
                  nubo-bench launch --nubod PATH --images DIR\n       \
                  nubo-bench s3 --nubod PATH --peer S3S_FS_PATH\n       \
                  nubo-bench network --nubod PATH --images DIR\n       \
                  nubo-bench volumes --nubod PATH --images DIR\n       \
                  nubo-bench billing --nubod PATH"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nubo-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value following `--name` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}
