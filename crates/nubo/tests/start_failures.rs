//! What a failed or crashed instance start leaves behind: each step of a start
//! (rules, tap, DHCP server, QEMU, cgroup, QMP) is made to fail, then to crash
//! nubod, through `nubod --fault-file`. Each time the network must be whole
//! afterwards: the next instance on it gets its address by DHCP and its
//! user-data from the metadata service, and the host holds nothing (tap, DHCP
//! lease, anti-spoofing element, VMM, folder) of an instance that is gone.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Creds, Region, StoreKind, console, launch, wait_until};
use serde_json::{Value, json};

/// The steps of a start, as the fault file names them, in the order a start
/// takes them.
const STEPS: [&str; 6] = ["nftables", "tap", "dhcp", "qemu-exec", "cgroup", "qmp"];

/// A region of real guests whose starts fail as the returned file says.
fn region_with_faults() -> (Region, PathBuf) {
    let faults = std::env::temp_dir().join(format!(
        "nubo-faults-{:016x}",
        nubo_store::ids::random_u64()
    ));
    std::fs::write(&faults, "").unwrap();
    let region = Region::start_qemu(
        StoreKind::Sqlite,
        &["--fault-file", faults.to_str().unwrap()],
    );
    (region, faults)
}

fn launch_one(r: &Region, c: &Creds) -> String {
    let body = json!({
        "image": "nubo-micro",
        "instance_type": "n1.nano",
        "user_data": "#!/bin/sh\necho user-data ran\n",
    });
    launch(r, c, body).remove(0)
}

fn instance(r: &Region, c: &Creds, id: &str) -> Value {
    let (status, v) = r.signed(c, "GET", &format!("/v1/instances/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until an instance is `running` or `failed`, and returns it.
fn settled(r: &Region, c: &Creds, id: &str) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("{id} to settle"), Duration::from_secs(180), || {
        last = instance(r, c, id);
        last["state"] == "running" || last["state"] == "failed"
    });
    last
}

/// A new instance of the network runs, took its address by DHCP and read its
/// user-data from the metadata service; it is terminated again.
fn network_works(r: &Region, c: &Creds, network_id: &str) {
    let id = launch_one(r, c);
    let shown = settled(r, c, &id);
    assert_eq!(shown["state"], "running", "{shown}\n{}", r.log());
    assert_eq!(shown["network_id"], network_id);
    let address = shown["private_ip"].as_str().unwrap().to_string();
    wait_until("the guest's user-data", Duration::from_secs(120), || {
        console(r, c, &id).contains("user-data ran")
    });
    let told = console(r, c, &id);
    for line in [
        format!("nubo: {address}/16 by DHCP"),
        "nubo: user-data from the metadata service".to_string(),
    ] {
        assert!(told.contains(&line), "{line:?} not in: {told}");
    }
    terminate(r, c, &id);
}

fn terminate(r: &Region, c: &Creds, id: &str) {
    let (status, v) = r.signed(c, "DELETE", &format!("/v1/instances/{id}"), None);
    assert!(status == 200 || status == 202, "{status} {v}");
    r.wait_state_within(c, id, "terminated", Duration::from_secs(120));
}

/// The taps of namespace `ns` (none when it does not exist).
fn taps(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-json", "link", "show"])
        .output()
        .unwrap();
    let links: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut taps: Vec<String> = links
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("tap"))
        .map(String::from)
        .collect();
    taps.sort();
    taps
}

fn tap(instance_id: &str) -> String {
    nubo_host::qemu::network::tap(instance_id)
}

/// What the host holds for network `network_id` is exactly the running
/// instances `live`: their taps, their leases, their anti-spoofing elements,
/// their VMMs and folders, and nothing of any other instance.
fn holds_exactly(r: &Region, network_id: &str, live: &[&str]) {
    let ns = format!("nubo-{network_id}");
    let mut wanted: Vec<String> = live.iter().map(|id| tap(id)).collect();
    wanted.sort();
    // A failed start's cleanup runs right after the failure is recorded.
    wait_until(
        "the host to hold only live instances",
        Duration::from_secs(30),
        || taps(&ns) == wanted,
    );
    let folders: Vec<String> = r
        .vm_folders()
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted_live: Vec<String> = live.iter().map(|s| s.to_string()).collect();
    sorted_live.sort();
    let mut folders_sorted = folders.clone();
    folders_sorted.sort();
    assert_eq!(folders_sorted, sorted_live, "VM folders");
    let dir = r.dir.join("data/networks").join(&ns);
    if live.is_empty() {
        assert!(!dir.exists(), "{} is left", dir.display());
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let netns = String::from_utf8_lossy(&netns.stdout);
        assert!(!netns.contains(&ns), "{ns} is left: {netns}");
        return;
    }
    let dhcp = std::fs::read_to_string(dir.join("dnsmasq.args")).unwrap();
    let leases: Vec<&str> = dhcp
        .lines()
        .filter(|l| l.starts_with("--dhcp-host="))
        .collect();
    assert_eq!(leases.len(), live.len(), "{dhcp}");
    for id in live {
        assert!(dhcp.contains(&format!(",{id}")), "no lease of {id}: {dhcp}");
    }
    let set = Command::new("ip")
        .args([
            "netns", "exec", &ns, "nft", "list", "set", "bridge", "nubo", "ips",
        ])
        .output()
        .unwrap();
    let set = String::from_utf8_lossy(&set.stdout);
    assert_eq!(set.matches("\"tap").count(), live.len(), "{set}");
    for t in &wanted {
        assert!(set.contains(&format!("\"{t}\"")), "{t} not in {set}");
    }
}

/// nubo can make cgroups on this machine (v2, or v1's memory controller).
fn cgroups_here() -> bool {
    ["/sys/fs/cgroup/nubo", "/sys/fs/cgroup/memory/nubo"]
        .iter()
        .any(|p| std::path::Path::new(p).is_dir())
}

/// The VMM of `id` runs in the cgroup nubo made for it.
fn in_its_cgroup(r: &Region, id: &str) -> bool {
    let pid = std::fs::read_to_string(r.dir.join("data/vms").join(id).join("qemu.pid")).unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
    cgroups.contains(&format!("/nubo/{id}"))
}

/// The account's default network.
fn default_network(r: &Region, c: &Creds) -> String {
    let (status, v) = r.signed(c, "GET", "/v1/networks", None);
    assert_eq!(status, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "default")
        .and_then(|n| n["id"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn a_failed_step_fails_only_its_instance_and_the_network_stays_whole() {
    let (r, faults) = region_with_faults();
    let c = r.signup("fails@example.com");
    let network = default_network(&r, &c);
    // The first step fails in a network new to the host: it takes the
    // namespace away again. The others fail beside a running instance.
    let mut resident: Option<String> = None;
    for step in STEPS {
        std::fs::write(&faults, format!("{step}=fail\n")).unwrap();
        let id = launch_one(&r, &c);
        let shown = settled(&r, &c, &id);
        assert_eq!(shown["state"], "failed", "{step}: {shown}");
        let reason = shown["state_reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("{step} failed: injected fault")),
            "{step}: {reason}"
        );
        assert_eq!(std::fs::read_to_string(&faults).unwrap(), "", "consumed");
        let live: Vec<&str> = resident.iter().map(String::as_str).collect();
        holds_exactly(&r, &network, &live);
        network_works(&r, &c, &network);
        if resident.is_none() {
            let id = launch_one(&r, &c);
            assert_eq!(settled(&r, &c, &id)["state"], "running");
            resident = Some(id);
        }
    }
    let resident = resident.unwrap();
    holds_exactly(&r, &network, &[&resident]);
    terminate(&r, &c, &resident);
    holds_exactly(&r, &network, &[]);
    let _ = std::fs::remove_file(faults);
}

#[test]
fn a_crash_at_any_step_of_a_start_is_repaired_by_the_restart() {
    let (mut r, faults) = region_with_faults();
    let c = r.signup("crashes@example.com");
    let network = default_network(&r, &c);
    let resident = launch_one(&r, &c);
    assert_eq!(settled(&r, &c, &resident)["state"], "running");
    for step in STEPS {
        std::fs::write(&faults, format!("{step}=crash\n")).unwrap();
        let id = launch_one(&r, &c);
        let status = r.wait_exit(Duration::from_secs(120));
        assert!(!status.success(), "{step}: nubod was to crash: {status}");
        assert_eq!(std::fs::read_to_string(&faults).unwrap(), "", "consumed");
        r.restart();
        // The restarted region starts the instance again, or re-adopts the VM
        // that was starting: either way it runs.
        let shown = settled(&r, &c, &id);
        assert_eq!(shown["state"], "running", "{step}: {shown}\n{}", r.log());
        holds_exactly(&r, &network, &[&resident, &id]);
        if cgroups_here() {
            assert!(
                in_its_cgroup(&r, &id),
                "{step}: the VMM of {id} has no cgroup"
            );
        }
        network_works(&r, &c, &network);
        terminate(&r, &c, &id);
    }
    holds_exactly(&r, &network, &[&resident]);
    let _ = std::fs::remove_file(faults);
}
