//! DHCP, for images that ask for their address (cloud images do): one dnsmasq
//! per network namespace, answering only the VMs this host runs there, each
//! with the address IPAM gave it (a static lease by MAC), the gateway as its
//! router. It serves no DNS. dnsmasq outlives a restarted agent, like the VMs.
//!
//! Its whole command line is derived from the declared ports, and it is
//! restarted only when that line changes or it is not running: a server
//! left by a crash, or one that a failed start left half-configured, is
//! replaced by the next converge.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::Declared;
use crate::HostError;

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("dnsmasq.pid")
}

/// The command line the running server was started with.
fn args_file(dir: &Path) -> PathBuf {
    dir.join("dnsmasq.args")
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> HostError {
    HostError::Agent(format!("DHCP server {what}: {e}"))
}

/// dnsmasq's arguments for the declared ports. The hosts are given on its
/// command line because it drops its privileges and could not read them
/// again from a data folder kept private. `dir` is absolute: dnsmasq
/// changes to `/` before it writes its pid file.
fn args(dir: &Path, d: &Declared) -> Vec<String> {
    let (gateway, prefix_len) = d.gateway().unwrap_or((Ipv4Addr::UNSPECIFIED, 32));
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    let base = Ipv4Addr::from(u32::from(gateway) & mask);
    let mut args: Vec<String> = [
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
    args.push(format!(
        "--dhcp-range={base},static,{},1h",
        Ipv4Addr::from(mask)
    ));
    args.push(format!("--dhcp-option=option:router,{gateway}"));
    args.push(format!("--pid-file={}", pid_file(dir).display()));
    // One lease per address: dnsmasq refuses to start on a duplicate, and one
    // stale VM must not take the network's DHCP down with it.
    let mut leased = std::collections::BTreeSet::new();
    for p in &d.ports {
        if leased.insert(p.address) {
            args.push(format!(
                "--dhcp-host={},{},{}",
                p.mac, p.address, p.instance_id
            ));
        } else {
            tracing::warn!(
                instance_id = p.instance_id,
                address = %p.address,
                "two VMs of a network hold one address; the second gets no lease"
            );
        }
    }
    args
}

/// Makes the DHCP server of namespace `ns` (its files in `dir`) serve the
/// declared ports.
pub fn converge(dir: &Path, d: &Declared) -> Result<(), HostError> {
    if !dir.is_absolute() {
        return Err(failed(
            "folder",
            &format!("{} is not absolute", dir.display()),
        ));
    }
    let wanted = args(dir, d).join("\n");
    let started = std::fs::read_to_string(args_file(dir)).ok();
    if started.as_deref() == Some(wanted.as_str()) && running(dir) {
        return Ok(());
    }
    halt(dir);
    let _ = std::fs::remove_file(args_file(dir));
    let mut command = vec!["netns", "exec", d.namespace.as_str()];
    command.extend(wanted.lines());
    super::ip(&command).map_err(|e| failed("start", &e))?;
    std::fs::write(args_file(dir), wanted).map_err(|e| failed("folder", &e))
}

/// Stops the DHCP server of a namespace that is going away.
pub fn stop(dir: &Path) {
    halt(dir);
    let _ = std::fs::remove_file(args_file(dir));
}

fn pid(dir: &Path) -> Option<rustix::process::Pid> {
    let text = std::fs::read_to_string(pid_file(dir)).ok()?;
    rustix::process::Pid::from_raw(text.trim().parse().ok()?)
}

/// Whether the pid file names a live dnsmasq of this folder (not a reused pid).
fn running(dir: &Path) -> bool {
    let Some(pid) = pid(dir) else {
        return false;
    };
    let pid = pid.as_raw_nonzero();
    let needle = format!("--pid-file={}", pid_file(dir).display());
    crate::qemu::has_arg(pid, |arg| arg == needle.as_bytes()) && !zombie(pid)
}

/// Gone, or a zombie its (re)parent has yet to reap: either way it serves
/// no more.
fn zombie(pid: std::num::NonZeroI32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Ends the running server, waiting (briefly) until its port is free.
fn halt(dir: &Path) {
    if !running(dir) {
        let _ = std::fs::remove_file(pid_file(dir));
        return;
    }
    let Some(pid) = pid(dir) else {
        return;
    };
    let _ = std::fs::remove_file(pid_file(dir));
    if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
        return;
    }
    for _ in 0..100 {
        if zombie(pid.as_raw_nonzero()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::network::test_port;

    #[test]
    fn the_command_line_follows_the_ports_and_leases_each_address_once() {
        let d = Declared {
            namespace: "nubo-net-1".into(),
            network_id: "net-1".into(),
            state: Default::default(),
            ports: vec![
                test_port("i-a", 4),
                test_port("i-b", 5),
                test_port("i-c", 4),
            ],
        };
        let args = args(Path::new("/data/networks/nubo-net-1"), &d);
        assert!(args.contains(&"--dhcp-range=10.0.0.0,static,255.255.255.0,1h".to_string()));
        assert!(args.contains(&"--dhcp-option=option:router,10.0.0.1".to_string()));
        assert!(args.contains(&"--pid-file=/data/networks/nubo-net-1/dnsmasq.pid".to_string()));
        let hosts: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("--dhcp-host="))
            .collect();
        assert_eq!(
            hosts,
            [
                "--dhcp-host=02:00:00:00:00:04,10.0.0.4,i-a",
                "--dhcp-host=02:00:00:00:00:05,10.0.0.5,i-b"
            ]
        );
    }

    #[test]
    fn a_relative_folder_is_refused() {
        let d = Declared {
            namespace: "nubo-net-1".into(),
            network_id: "net-1".into(),
            state: Default::default(),
            ports: vec![test_port("i-a", 4)],
        };
        let e = converge(Path::new(".nubo/networks/nubo-net-1"), &d).unwrap_err();
        assert!(e.to_string().contains("not absolute"), "{e}");
    }
}
