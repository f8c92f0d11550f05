//! `cargo xtask down`: stops the region `cargo xtask up` started and takes away
//! what it left running on this machine (VMs, DHCP servers, network
//! namespaces and their rules), through `nubod teardown`. The data dir stays
//! unless `--purge` is given.

use std::process::Command;

use crate::cmd::{self, Result};
use crate::up;

/// `down [--purge] [-- nubod args]`: the nubod args are those given to `up`
/// (a config with several hosts, say), so that teardown finds every host.
pub fn run(args: &[String]) -> Result {
    let (purge, nubod_args) = parse(args);
    let nubod = up::target_dir()?.join("release/nubod");
    if !nubod.exists() {
        up::build()?;
    }
    cmd::run(Command::new(nubod).args(teardown_args(purge, &nubod_args)))
}

fn parse(args: &[String]) -> (bool, Vec<String>) {
    let purge = args.first().is_some_and(|a| a == "--purge");
    let rest = &args[usize::from(purge)..];
    let rest = match rest {
        [dashes, rest @ ..] if dashes == "--" => rest,
        _ => rest,
    };
    (purge, rest.to_vec())
}

/// nubod's arguments: `up`'s own, then the teardown.
fn teardown_args(purge: bool, nubod_args: &[String]) -> Vec<String> {
    let mut args: Vec<String> = up::NUBOD_ARGS.iter().map(|a| a.to_string()).collect();
    args.extend_from_slice(nubod_args);
    args.push("teardown".into());
    if purge {
        args.push("--purge".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_tears_down_the_data_dir_up_serves() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (purge, extra) = parse(&[]);
        assert_eq!(
            teardown_args(purge, &extra),
            args(&["--data-dir", ".nubo", "teardown"])
        );
        let (purge, extra) = parse(&args(&["--purge", "--", "--config", "c.toml"]));
        assert_eq!(
            teardown_args(purge, &extra),
            args(&[
                "--data-dir",
                ".nubo",
                "--config",
                "c.toml",
                "teardown",
                "--purge"
            ])
        );
        let (purge, extra) = parse(&args(&["--config", "c.toml"]));
        assert!(!purge);
        assert_eq!(extra, args(&["--config", "c.toml"]));
    }
}
