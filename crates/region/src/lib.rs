//! nubod: the region server of the nubo cloud.
//!
//! Layout, by domain: `accounts` (signup), `keys` (access keys), `quotas`,
//! `regions`, `hosts` (the fleet and its registry), `compute` (instance types,
//! images, launch, lifecycle, scheduler, reconciler). `api` holds what every
//! endpoint shares: authentication, errors, the request envelope, metrics, and the
//! OpenAPI document.

pub mod accounts;
pub mod api;
pub mod backup;
pub mod billing;
pub mod clock;
pub mod compute;
pub mod config;
pub mod hosts;
pub mod keys;
pub mod networks;
pub mod quotas;
pub mod regions;
pub mod server;
pub mod state;
pub mod storage;
pub mod volumes;

pub use config::{Args, Config};

/// Logs to stderr, filtered like `info` or `nubo_region=debug,info`.
pub fn init_logging(filter: &str) -> Result<(), String> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let targets: Targets = filter
        .parse()
        .map_err(|e| format!("log filter {filter:?}: {e}"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(targets)
        .init();
    Ok(())
}
