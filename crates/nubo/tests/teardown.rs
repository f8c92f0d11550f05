//! `nubod teardown` (what `cargo xtask down` runs): it stops the running nubod
//! and takes away everything the region left on the machine (VMs, DHCP
//! servers, namespaces with their taps, tunnels, uplinks and rules, published
//! ports, the host's egress rules), keeps the data unless asked to purge it,
//! and a region started again on the same data works.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Creds, Region, StoreKind, launch};
use serde_json::{Value, json};

/// Processes whose command line names this region's data dir.
fn processes_of(r: &Region) -> Vec<String> {
    let data = r.dir.join("data").display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&data) {
            found.push(cmdline);
        }
    }
    found
}

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn root_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Some host on this machine (another test's region, say) has an uplink.
fn any_uplink() -> bool {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(": nbx")
}

fn running(r: &Region, c: &Creds, body: Value) -> Value {
    let id = launch(r, c, body).remove(0);
    r.wait_state_within(c, &id, "running", Duration::from_secs(180))
}

#[test]
fn teardown_leaves_nothing_of_the_region_running_and_keeps_its_data() {
    let mut r = Region::start_qemu(StoreKind::Sqlite, &["--egress-nat", "true"]);
    let c = r.signup("teardown@example.com");
    let body = json!({"name": "backend", "cidr": "10.40.0.0/24"}).to_string();
    let (status, backend) = r.signed(&c, "POST", "/v1/networks", Some(&body));
    assert_eq!(status, 201, "{backend}");
    let micro = json!({"image": "nubo-micro", "instance_type": "n1.nano"});
    let a = running(&r, &c, micro.clone());
    running(&r, &c, micro.clone());
    let mut on_backend = micro.clone();
    on_backend["network"] = backend["id"].clone();
    running(&r, &c, on_backend);
    let (status, published) = r.signed(
        &c,
        "POST",
        &format!("/v1/instances/{}/ports", a["id"].as_str().unwrap()),
        Some(&json!({"port": 22}).to_string()),
    );
    assert_eq!(status, 201, "{published}");
    let published = published["address"].as_str().unwrap().to_string();
    let (status, volume) = r.signed(
        &c,
        "POST",
        "/v1/volumes",
        Some(&json!({"size_gib": 1}).to_string()),
    );
    assert_eq!(status, 202, "{volume}");
    r.wait_for(
        &c,
        &format!("/v1/volumes/{}", volume["id"].as_str().unwrap()),
        "available",
    );

    let networks = [
        a["network_id"].as_str().unwrap(),
        backend["id"].as_str().unwrap(),
    ];
    let held = processes_of(&r);
    assert_eq!(
        held.iter().filter(|p| p.contains("qemu-system")).count(),
        3,
        "{held:#?}"
    );
    assert_eq!(
        held.iter().filter(|p| p.contains("dnsmasq")).count(),
        2,
        "{held:#?}"
    );
    for network in networks {
        assert!(
            namespaces().contains(network),
            "{network}: {}",
            namespaces()
        );
    }
    assert!(root_tables().contains("nubo_egress"), "{}", root_tables());

    // What `cargo xtask down` runs, while nubod serves.
    let out = r.teardown();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log()
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("stopped 3 VMs, removed 2 networks"), "{said}");
    assert!(
        r.wait_exit(Duration::from_secs(5)).success(),
        "nubod stopped cleanly"
    );

    assert_eq!(
        processes_of(&r),
        Vec::<String>::new(),
        "no process of the region"
    );
    for network in networks {
        assert!(
            !namespaces().contains(network),
            "{network}: {}",
            namespaces()
        );
    }
    assert!(
        std::net::TcpStream::connect(&published).is_err(),
        "{published} still accepts"
    );
    if !any_uplink() {
        assert!(!root_tables().contains("nubo_egress"), "{}", root_tables());
    }
    let data = r.dir.join("data");
    for kept in ["region.db", "secrets.key", "operator.token"] {
        assert!(data.join(kept).exists(), "{kept} is kept");
    }
    assert_eq!(common::volume_files(&r).len(), 1, "the volume is kept");

    // A region started again on the data comes up and its networks work.
    r.restart();
    let again = running(&r, &c, micro);
    assert_eq!(again["network_id"], a["network_id"]);

    let out = Command::new(env!("CARGO_BIN_EXE_nubod"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--hypervisor", "qemu", "teardown", "--purge"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.exists(), "purged");
    assert_eq!(processes_of(&r), Vec::<String>::new());
}
