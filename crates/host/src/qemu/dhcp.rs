//! DHCP, for images that ask for their address (cloud images do): one dnsmasq
//! per network namespace, answering only the VMs this host runs there, each
//! with the address IPAM gave it (a static lease by MAC), the gateway as its
//! router. It serves no DNS. dnsmasq outlives a restarted agent, like the VMs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::{HostError, Nic};

fn hosts(dir: &Path) -> PathBuf {
    dir.join("dhcp-hosts")
}

fn settings(dir: &Path) -> PathBuf {
    dir.join("dhcp-settings")
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("dnsmasq.pid")
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> HostError {
    HostError::Agent(format!("DHCP {what}: {e}"))
}

/// Readies the DHCP server of namespace `ns`, keeping its files in `dir`.
/// It runs once the first VM is added.
pub fn start(dir: &Path, nic: &Nic) -> Result<(), HostError> {
    let (address, prefix) = nic
        .address
        .split_once('/')
        .ok_or_else(|| failed("address", &nic.address))?;
    let address: Ipv4Addr = address.parse().map_err(|e| failed("address", &e))?;
    let prefix: u32 = prefix.parse().map_err(|e| failed("prefix", &e))?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let base = Ipv4Addr::from(u32::from(address) & mask);
    std::fs::create_dir_all(dir).map_err(|e| failed("folder", &e))?;
    let settings_text = format!(
        "--dhcp-range={base},static,{},1h\n--dhcp-option=option:router,{}\n",
        Ipv4Addr::from(mask),
        nic.gateway
    );
    std::fs::write(settings(dir), settings_text).map_err(|e| failed("settings", &e))?;
    std::fs::write(hosts(dir), "").map_err(|e| failed("hosts", &e))
}

/// Gives `instance_id` its address, from now on.
pub fn add(dir: &Path, ns: &str, instance_id: &str, nic: &Nic) -> Result<(), HostError> {
    let address = nic.address.split('/').next().unwrap_or_default();
    edit(
        dir,
        ns,
        instance_id,
        Some(format!("{},{address},{instance_id}", nic.mac)),
    )
}

/// Forgets `instance_id`.
pub fn remove(dir: &Path, ns: &str, instance_id: &str) {
    if let Err(e) = edit(dir, ns, instance_id, None) {
        tracing::warn!(instance_id, error = %e, "DHCP host not removed");
    }
}

/// Stops the DHCP server of a namespace that is going away.
pub fn stop(dir: &Path) {
    halt(dir);
    let _ = std::fs::remove_dir_all(dir);
}

fn pid(dir: &Path) -> Option<rustix::process::Pid> {
    let text = std::fs::read_to_string(pid_file(dir)).ok()?;
    rustix::process::Pid::from_raw(text.trim().parse().ok()?)
}

/// Ends the running server, waiting (briefly) until its port is free.
fn halt(dir: &Path) {
    let Some(pid) = pid(dir) else {
        return;
    };
    let _ = std::fs::remove_file(pid_file(dir));
    if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
        return;
    }
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.as_raw_nonzero()));
    for _ in 0..100 {
        // Gone, or a zombie its (re)parent has yet to reap: either way it
        // serves no more.
        let running = std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        });
        if !running {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Rewrites the hosts file without `instance_id`'s line (and with `line`),
/// then restarts the server with them. The hosts are given on its command
/// line because it drops its privileges and could not read them again from a
/// data folder kept private.
fn edit(dir: &Path, ns: &str, instance_id: &str, line: Option<String>) -> Result<(), HostError> {
    let text = std::fs::read_to_string(hosts(dir)).unwrap_or_default();
    let suffix = format!(",{instance_id}");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.ends_with(&suffix))
        .map(String::from)
        .collect();
    lines.extend(line);
    std::fs::write(hosts(dir), lines.join("\n") + "\n").map_err(|e| failed("hosts", &e))?;
    halt(dir);
    if lines.is_empty() {
        return Ok(());
    }
    let settings_text =
        std::fs::read_to_string(settings(dir)).map_err(|e| failed("settings", &e))?;
    let mut args: Vec<String> = [
        "netns",
        "exec",
        ns,
        "dnsmasq",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=br0",
        "--bind-interfaces",
        "--dhcp-authoritative",
        "--leasefile-ro",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(settings_text.lines().map(String::from));
    args.push(format!("--pid-file={}", pid_file(dir).display()));
    args.extend(lines.iter().map(|l| format!("--dhcp-host={l}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    super::network::ip(&args)
}
