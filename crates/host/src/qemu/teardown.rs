//! Taking away everything a host made on its machine, for an operator who
//! stops a region for good (`nubod teardown`, `cargo xtask down`): VMs run on
//! after nubod by design, and so do their networks' DHCP servers and
//! namespaces. Volumes and every other file of the data dir stay.

use std::time::{Duration, Instant};

use super::cgroup::Cgroups;
use super::command::VmFiles;
use super::{QemuConfig, kill, network, pid_is_vm, read_pid, sibling};
use crate::HostError;

/// What a teardown took away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// VMs whose process was running, now killed.
    pub vms: usize,
    /// Network namespaces, with their DHCP servers and rules.
    pub networks: usize,
}

/// Kills the host's VMs (they get no chance to shut down, as in a power cut)
/// and removes their folders and cgroups, then its networks' namespaces, then
/// the machine's egress rules if no host on it has an uplink left.
pub fn teardown(config: &QemuConfig) -> Result<Removed, HostError> {
    let io = |path: &std::path::Path, e: std::io::Error| {
        HostError::Agent(format!("{}: {e}", path.display()))
    };
    let mut removed = Removed::default();
    let cgroups = Cgroups::detect();
    for entry in folders(&config.state_dir) {
        let id = entry.file_name().to_string_lossy().into_owned();
        let files = VmFiles { dir: entry.path() };
        if let Some(pid) = read_pid(&files.pidfile())
            && pid_is_vm(pid, &id)
        {
            kill(pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while pid_is_vm(pid, &id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            removed.vms += 1;
        }
        cgroups.remove(&id);
        std::fs::remove_dir_all(&files.dir).map_err(|e| io(&files.dir, e))?;
    }
    for entry in folders(&sibling(&config.state_dir, "networks")) {
        let ns = entry.file_name().to_string_lossy().into_owned();
        network::remove(&ns, &entry.path())?;
        removed.networks += 1;
    }
    network::remove_shared_rules()?;
    Ok(removed)
}

fn folders(dir: &std::path::Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect()
}
