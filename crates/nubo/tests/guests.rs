//! Real guests: instances are QEMU microvms of the nubo-micro image, driven through
//! the CLI and the API, and checked from the outside (processes, files, cgroups).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Creds, Region, StoreKind, console, launch, volume_files, wait_until};
use serde_json::{Value, json};

/// QEMU processes of this region: (pid, instance id).
fn vm_processes(r: &Region) -> Vec<(u32, String)> {
    let data = r.dir.join("data").display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a.contains(&data)) {
            continue;
        }
        if let Some(name) = args.iter().find_map(|a| a.strip_prefix("nubo-i-")) {
            let id = name.split(',').next().unwrap_or_default();
            found.push((pid, format!("i-{id}")));
        }
    }
    found
}

/// Folders of VMs the host agent holds.
fn vm_dirs(r: &Region) -> Vec<String> {
    std::fs::read_dir(r.dir.join("data/vms"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Starts a QEMU of the test image in the region's VM folder, as if nubo had,
/// for an instance id the store does not know; returns its pid.
fn spawn_orphan_vm(r: &Region, id: &str) -> u32 {
    let images = std::env::var("NUBO_TEST_IMAGES").unwrap();
    let image = Path::new(&images).join("nubo-micro");
    let dir = r.dir.join("data/vms").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("qemu-system-x86_64")
        .arg("-name")
        .arg(format!("nubo-{id}"))
        .args([
            "-accel",
            "tcg",
            "-machine",
            "microvm",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-m", "64M", "-kernel"])
        .arg(image.join("vmlinux"))
        .arg("-initrd")
        .arg(image.join("initramfs.cpio"))
        .args(["-append", "console=ttyS0 quiet"])
        .arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            dir.join("qmp.sock").display()
        ))
        .arg("-pidfile")
        .arg(dir.join("qemu.pid"))
        .arg("-daemonize")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(dir.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -9 {pid}");
}

#[test]
fn a_guest_runs_its_user_data_and_obeys_stop_start_reboot_terminate() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", "guest@example.com"]);
    let script = r.dir.join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"user-data says $((6 * 7))\"\n").unwrap();
    let launched = r.json(&common::launch_micro(&[
        "--user-data",
        script.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120",
    ]));
    let id = launched["instances"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(launched["instances"][0]["state"], "running");
    wait_until("the user-data output", Duration::from_secs(60), || {
        r.ok(&["instance", "console", &id])
            .contains("user-data says 42")
    });
    assert_eq!(
        vm_processes(&r).len(),
        1,
        "one QEMU process for one instance"
    );

    assert_eq!(r.json(&["instance", "reboot", &id])["state"], "running");
    wait_until("a second boot", Duration::from_secs(60), || {
        r.ok(&["instance", "console", &id])
            .matches("nubo-ready")
            .count()
            >= 2
    });

    let stopped = r.json(&["instance", "stop", &id, "--wait", "--timeout", "120"]);
    assert_eq!(stopped["state"], "stopped");
    assert!(
        stopped.get("state_reason").is_none(),
        "a clean stop has no failure reason: {stopped}"
    );
    assert!(vm_processes(&r).is_empty(), "a stopped instance has no VMM");
    assert!(vm_dirs(&r).is_empty(), "nor files on its host");

    assert_eq!(
        r.json(&["instance", "start", &id, "--wait", "--timeout", "120"])["state"],
        "running"
    );
    assert_eq!(
        r.json(&["instance", "terminate", &id, "--wait", "--timeout", "120"])["state"],
        "terminated"
    );
    assert!(
        vm_processes(&r).is_empty(),
        "nothing outlives a terminated instance"
    );
    assert!(vm_dirs(&r).is_empty());
}

#[test]
fn twenty_concurrent_launches_all_run_and_a_killed_vm_fails() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("many@example.com");
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (endpoint, c) = (r.endpoint.clone(), c.clone());
            std::thread::spawn(move || {
                let body = json!({"image": "nubo-micro", "instance_type": "n1.nano"});
                common::signed_request(
                    &endpoint,
                    &c,
                    "POST",
                    "/v1/instances",
                    Some(&body.to_string()),
                )
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in threads {
        let (status, v) = t.join().unwrap();
        assert_eq!(status, 202, "{v}");
        ids.push(v["instances"][0]["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        r.wait_state_within(&c, id, "running", Duration::from_secs(180));
    }
    assert_eq!(vm_processes(&r).len(), 20);

    let (pid, victim) = vm_processes(&r).into_iter().next().unwrap();
    kill9(pid);
    let failed = r.wait_state_within(&c, &victim, "failed", Duration::from_secs(10));
    assert!(
        failed["state_reason"].as_str().unwrap().contains("exited"),
        "{failed}"
    );

    for id in &ids {
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    }
    for id in &ids {
        r.wait_state_within(&c, id, "terminated", Duration::from_secs(60));
    }
    assert!(vm_processes(&r).is_empty());
    assert!(vm_dirs(&r).is_empty());
}

#[test]
fn a_killed_nubod_comes_back_to_its_vms_and_leaks_nothing() {
    let mut r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("crash@example.com");
    let first = launch(
        &r,
        &c,
        json!({"image": "nubo-micro", "instance_type": "n1.nano", "count": 3,
               "user_data": GREETER}),
    );
    for id in &first {
        r.wait_state_within(&c, id, "running", Duration::from_secs(120));
    }
    let ask = json!({"port": 7000}).to_string();
    let (status, published) = r.signed(
        &c,
        "POST",
        &format!("/v1/instances/{}/ports", first[0]),
        Some(&ask),
    );
    assert_eq!(status, 201, "{published}");
    let address = published["address"].as_str().unwrap().to_string();
    let running_pids: Vec<u32> = vm_processes(&r).into_iter().map(|(pid, _)| pid).collect();
    // More launches, and nubod dies while they are under way.
    let second = launch(
        &r,
        &c,
        json!({"image": "nubo-micro", "instance_type": "n1.nano", "count": 3}),
    );
    r.kill9();
    // A VM nobody owns: a running QEMU laid out like nubo's, for an instance that
    // does not exist.
    let orphan = spawn_orphan_vm(&r, "i-00000000000000aa");
    r.restart();

    for id in first.iter().chain(&second) {
        r.wait_state_within(&c, id, "running", Duration::from_secs(180));
    }
    let after: Vec<u32> = vm_processes(&r).into_iter().map(|(pid, _)| pid).collect();
    for pid in &running_pids {
        assert!(
            after.contains(pid),
            "running VMs are re-adopted, not restarted"
        );
    }
    let owned = vm_processes(&r)
        .into_iter()
        .filter(|(_, id)| first.contains(id) || second.contains(id))
        .count();
    assert_eq!(owned, 6, "one VM per instance, no duplicate: {after:?}");
    assert_eq!(
        greeting(&address),
        format!("hello from {}", first[0]),
        "a published port comes back with its host agent"
    );
    wait_until("the orphan's removal", Duration::from_secs(30), || {
        !r.dir.join("data/vms/i-00000000000000aa").exists()
            && !vm_processes(&r).iter().any(|(pid, _)| *pid == orphan)
    });

    for id in first.iter().chain(&second) {
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    }
    for id in first.iter().chain(&second) {
        r.wait_state_within(&c, id, "terminated", Duration::from_secs(60));
    }
    assert!(vm_processes(&r).is_empty());
    assert!(vm_dirs(&r).is_empty());
}

#[test]
fn key_pairs_reach_the_guest() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", "keys@example.com"]);
    let private = r.ok(&["key-pairs", "create", "mykey"]);
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{private}"
    );
    let pair = r.json(&["key-pairs", "show", "mykey"]);
    let public = pair["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ssh-ed25519 "));
    let script = r.dir.join("keys.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"authorized: $(cat /root/.ssh/authorized_keys)\"\n",
    )
    .unwrap();
    let launched = r.json(&common::launch_micro(&[
        "--key",
        "mykey",
        "--user-data",
        script.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120",
    ]));
    let id = launched["instances"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(launched["instances"][0]["key_name"], "mykey");
    let key_body = public.split_whitespace().nth(1).unwrap().to_string();
    wait_until("the key in the guest", Duration::from_secs(60), || {
        r.ok(&["instance", "console", &id]).contains(&key_body)
    });
    r.ok(&["instance", "terminate", &id, "--wait"]);
}

#[test]
fn a_private_image_with_a_root_disk_boots_copy_on_write() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", "disks@example.com"]);
    let images = std::env::var("NUBO_TEST_IMAGES").unwrap();
    let micro = Path::new(&images).join("nubo-micro");
    let disk = r.dir.join("base.raw");
    let mut base = b"nubo-disk-base\n".to_vec();
    base.resize(4 * 1024 * 1024, 0);
    std::fs::write(&disk, &base).unwrap();
    let registered = r.json(&[
        "images",
        "register",
        "--name",
        "micro-with-disk",
        "--kernel",
        micro.join("vmlinux").to_str().unwrap(),
        "--initrd",
        micro.join("initramfs.cpio").to_str().unwrap(),
        "--disk",
        disk.to_str().unwrap(),
        "--disk-format",
        "raw",
        "--cmdline",
        "console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check",
        "--ready-marker",
        "nubo-ready",
    ]);
    assert_eq!(registered["state"], "available", "{registered}");
    let image = registered["id"].as_str().unwrap().to_string();

    let script = r.dir.join("disk.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         echo \"base says: $(head -c 14 /dev/vda)\"\n\
         echo \"written-by-$(hostname)\" | dd of=/dev/vda bs=512 seek=1 conv=notrunc 2>/dev/null\n\
         sync\n\
         echo \"disk says: $(dd if=/dev/vda bs=512 skip=1 count=1 2>/dev/null | head -1)\"\n",
    )
    .unwrap();
    let launched = r.json(&[
        "instance",
        "launch",
        "--image",
        &image,
        "--type",
        "n1.nano",
        "--count",
        "2",
        "--user-data",
        script.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120",
    ]);
    let ids: Vec<String> = launched["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        wait_until("the guest's disk output", Duration::from_secs(60), || {
            let out = r.ok(&["instance", "console", id]);
            out.contains("base says: nubo-disk-base")
                && out.contains(&format!("disk says: written-by-{id}"))
        });
    }
    // A root volume's snapshot holds what its guest wrote, taken while the
    // guest runs and again while it is stopped.
    let volumes = r.json(&["volume", "list"])["items"].clone();
    let root = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["attachment"]["instance_id"] == ids[0].as_str())
        .map(|v| v["id"].as_str().unwrap().to_string())
        .expect("a root volume");
    for phase in ["running", "stopped"] {
        if phase == "stopped" {
            r.ok(&["instance", "stop", &ids[0], "--wait"]);
        }
        let snap = r.json(&["snapshot", "create", &root, "--wait"]);
        let snap = snap["id"].as_str().unwrap().to_string();
        let copy = r.json(&["volume", "create", "--from-snapshot", &snap, "--wait"]);
        let copy = copy["id"].as_str().unwrap().to_string();
        let file = std::fs::File::open(r.dir.join(format!("data/volumes/{copy}.raw"))).unwrap();
        let mut head = [0u8; 1024];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0).unwrap();
        let text = String::from_utf8_lossy(&head);
        assert!(text.starts_with("nubo-disk-base"), "{phase}: {text:?}");
        assert!(
            text[512..].starts_with(&format!("written-by-{}", ids[0])),
            "{phase}: {text:?}"
        );
        r.ok(&["volume", "delete", &copy, "--wait"]);
        r.ok(&["snapshot", "delete", &snap]);
    }
    let busy = r.nubo(&["images", "delete", &image]);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("InvalidState"));
    for id in &ids {
        r.ok(&["instance", "terminate", id, "--wait"]);
    }
    let stored = r.dir.join("data/private-images").join(&image).join("disk");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        base,
        "instances never write the image"
    );
    // Their root volumes go with them, and then the image may.
    wait_until("the image's deletion", Duration::from_secs(30), || {
        r.nubo(&["images", "delete", &image]).status.success()
    });
    assert!(!stored.exists());
    assert!(vm_dirs(&r).is_empty(), "no VM folder outlives its instance");
    assert_eq!(
        volume_files(&r),
        Vec::<String>::new(),
        "no root volume outlives its instance"
    );
}

/// Creates a network of the account; its id.
fn create_network(r: &Region, c: &Creds, name: &str, cidr: &str) -> String {
    let body = json!({"name": name, "cidr": cidr}).to_string();
    let (status, v) = r.signed(c, "POST", "/v1/networks", Some(&body));
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Asks the metadata service: plainly (IMDSv1), with a session token (IMDSv2),
/// and with a forged token.
const IMDS_SCRIPT: &str = r#"#!/bin/sh
m=http://169.254.169.254/latest
echo "imds-id $(wget -qO- $m/meta-data/instance-id)"
echo "imds-ip $(wget -qO- $m/meta-data/local-ipv4)"
token=$(printf 'PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n' \
    | nc 169.254.169.254 80 | tail -n 1)
echo "imds-v2 $(wget -qO- --header "X-aws-ec2-metadata-token: $token" $m/meta-data/placement/region)"
echo "imds-forged $(wget -qO- --header 'X-aws-ec2-metadata-token: forged' $m/meta-data/instance-id \
    || echo refused)"
echo imds-done
"#;

/// Serves TCP on port 7000.
const LISTENERS: &str = "\n(while true; do echo hello | nc -l -p 7000; done) &\n";

/// Tries 10.20.0.4 by TCP and by UDP (DNS queries: busybox's nc has no UDP),
/// and the region's API (`port`) at the gateway.
fn knocker(gateway: &str, api_port: &str) -> String {
    format!(
        "echo \"tcp: $(timeout 5 nc 10.20.0.4 7000 </dev/null 2>/dev/null || echo refused)\"\n\
         for i in 1 2 3; do timeout 2 nslookup udp-probe 10.20.0.4 >/dev/null 2>&1; done\n\
         echo \"api: $(timeout 5 nc {gateway} {api_port} </dev/null 2>/dev/null && echo reached || echo unreachable)\"\n"
    )
}

/// Counts UDP datagrams to 10.20.0.4 in namespace `ns`, from `peer` and from
/// anyone else.
fn count_udp(ns: &str, peer: &str) {
    let script = format!(
        "table bridge nubotest {{\n\
         \tchain datagrams {{\n\
         \t\ttype filter hook forward priority -10; policy accept;\n\
         \t\tip daddr 10.20.0.4 ip saddr {peer} udp dport 53 counter\n\
         \t\tip daddr 10.20.0.4 ip saddr != {peer} udp dport 53 counter\n\
         \t}}\n\
         }}\n"
    );
    let mut nft = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    nft.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success());
}

/// The packets the counters of [`count_udp`] saw: (from the peer, from others).
fn udp_counted(ns: &str) -> (u64, u64) {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "bridge", "nubotest",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let after = l.split("counter packets ").nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        })
        .collect();
    match counts[..] {
        [peer, others] => (peer, others),
        _ => panic!("no counters: {text}"),
    }
}

/// Takes the address 10.20.0.4 (another instance's), tells the network so
/// (gratuitous ARP), and asks the metadata service who it is.
const SPOOF_SCRIPT: &str = r#"
ip addr flush dev eth0
ip addr add 10.20.0.4/24 dev eth0
ip route add default via 10.20.0.1
arping -U -c 2 -I eth0 10.20.0.4 >/dev/null 2>&1
echo "spoofed: $(timeout 10 wget -qO- http://169.254.169.254/latest/meta-data/instance-id || echo nothing)"
echo spoof-done
"#;

/// A user-data script that pings each address and says which answered.
fn pinger(targets: &[&str]) -> String {
    let mut script = "#!/bin/sh\n".to_string();
    for t in targets {
        script.push_str(&format!(
            "if ping -c 3 -W 5 {t} >/dev/null 2>&1; then echo \"reached {t}\"; \
             else echo \"missed {t}\"; fi\n"
        ));
    }
    script.push_str("echo pings-done\n");
    script
}

#[test]
fn instances_of_a_network_reach_each_other_and_no_one_else() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let owner = r.signup("net-owner@example.com");
    let backend = create_network(&r, &owner, "backend", "10.20.0.0/24");
    let base = json!({"image": "nubo-micro", "instance_type": "n1.nano", "network": "backend"});
    // The first instance asks the metadata service about itself, v1 and v2.
    let mut server = base.clone();
    server["user_data"] = json!(format!("{IMDS_SCRIPT}{LISTENERS}"));
    let server = launch(&r, &owner, server)[0].clone();
    let shown = r.wait_state_within(&owner, &server, "running", Duration::from_secs(120));
    assert_eq!(shown["private_ip"], "10.20.0.4");
    wait_until("the metadata answers", Duration::from_secs(60), || {
        console(&r, &owner, &server).contains("imds-done")
    });
    let told = console(&r, &owner, &server);
    for line in [
        format!("imds-id {server}"),
        "imds-ip 10.20.0.4".into(),
        "imds-v2 local-1".into(),
        "imds-forged refused".into(),
    ] {
        assert!(told.contains(&line), "{line:?} not in: {told}");
    }

    let mut peer = base.clone();
    // Then it takes the first instance's address and asks the metadata service.
    let api_port = r.endpoint.rsplit(':').next().unwrap().to_string();
    peer["user_data"] = json!(
        pinger(&["10.20.0.4", "10.20.0.1"]) + &knocker("10.20.0.1", &api_port) + SPOOF_SCRIPT
    );
    let namespace = format!("nubo-{backend}");
    count_udp(&namespace, "10.20.0.5");
    let peer = launch(&r, &owner, peer)[0].clone();
    // Another account's instance, on its own default network, tries the same address.
    let stranger = r.signup("net-stranger@example.com");
    let outsider = json!({"image": "nubo-micro", "instance_type": "n1.nano",
                          "user_data": pinger(&["10.20.0.4", "172.31.0.1"])
                              + &knocker("172.31.0.1", &api_port)});
    let outsider = launch(&r, &stranger, outsider)[0].clone();
    let (_, shown) = r.signed(&stranger, "GET", &format!("/v1/instances/{outsider}"), None);
    let outsiders_network = shown["network_id"].as_str().unwrap().to_string();

    wait_until("both pingers to finish", Duration::from_secs(120), || {
        console(&r, &owner, &peer).contains("spoof-done")
            && console(&r, &stranger, &outsider).contains("api: ")
    });
    let (seen_by_peer, seen_by_outsider) = (
        console(&r, &owner, &peer),
        console(&r, &stranger, &outsider),
    );
    assert!(seen_by_peer.contains("reached 10.20.0.4"), "{seen_by_peer}");
    assert!(seen_by_peer.contains("reached 10.20.0.1"), "{seen_by_peer}");
    assert!(
        seen_by_peer.contains("spoofed: nothing"),
        "a borrowed address must not be answered: {seen_by_peer}"
    );
    // Its own network works, so the miss is isolation, not a dead interface.
    assert!(
        seen_by_outsider.contains("reached 172.31.0.1"),
        "{seen_by_outsider}"
    );
    assert!(
        seen_by_outsider.contains("missed 10.20.0.4"),
        "{seen_by_outsider}"
    );
    // TCP and UDP: the peer gets through, so the outsider's failure is isolation.
    assert!(seen_by_peer.contains("tcp: hello"), "{seen_by_peer}");
    assert!(
        seen_by_outsider.contains("tcp: refused"),
        "{seen_by_outsider}"
    );
    let (from_peer, from_others) = udp_counted(&namespace);
    assert!(from_peer > 0, "the peer's datagrams reach the server");
    assert_eq!(from_others, 0, "no one else's do");
    // Nothing of the host is reachable from inside: not the region's API.
    for seen in [&seen_by_peer, &seen_by_outsider] {
        assert!(seen.contains("api: unreachable"), "{seen}");
    }

    // Nothing of the guest networks is in the host's own namespace.
    let routes = std::process::Command::new("ip")
        .args(["-4", "addr"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("10.20.0.") && !routes.contains("172.31.0."),
        "{routes}"
    );

    for (c, id) in [(&owner, &server), (&owner, &peer), (&stranger, &outsider)] {
        r.signed(c, "DELETE", &format!("/v1/instances/{id}"), None);
        r.wait_state_within(c, id, "terminated", Duration::from_secs(60));
    }
    // The last VM of a network on a host takes the network's namespace with it.
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    for network in [&backend, &outsiders_network] {
        assert!(
            !netns.contains(network.as_str()),
            "{network} is left: {netns}"
        );
    }
}

/// A guest that greets whoever connects to its port 7000.
const GREETER: &str =
    "#!/bin/sh\nwhile true; do echo \"hello from $(hostname)\" | nc -l -p 7000; done\n";

/// What a guest's greeter says at `address`, waiting for it to listen.
fn greeting(address: &str) -> String {
    use std::io::Read;
    let hear = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(address).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    };
    let mut heard = None;
    wait_until("the guest's greeting", Duration::from_secs(60), || {
        heard = hear();
        heard.is_some()
    });
    heard.unwrap_or_default()
}

#[test]
fn a_published_port_reaches_the_guest_until_it_is_terminated() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("publisher@example.com");
    let body = json!({"image": "nubo-micro", "instance_type": "n1.nano", "user_data": GREETER});
    let id = launch(&r, &c, body)[0].clone();
    r.wait_state_within(&c, &id, "running", Duration::from_secs(120));
    let ask = json!({"port": 7000}).to_string();
    let (status, published) =
        r.signed(&c, "POST", &format!("/v1/instances/{id}/ports"), Some(&ask));
    assert_eq!(status, 201, "{published}");
    let address = published["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let (_, again) = r.signed(&c, "POST", &format!("/v1/instances/{id}/ports"), Some(&ask));
    assert_eq!(
        again["address"],
        address.as_str(),
        "publishing again answers the same"
    );

    assert_eq!(greeting(&address), format!("hello from {id}"));
    let (_, listed) = r.signed(&c, "GET", &format!("/v1/instances/{id}/ports"), None);
    assert_eq!(listed[0]["port"], 7000, "{listed}");

    let zero = json!({"port": 0}).to_string();
    let (status, _) = r.signed(
        &c,
        "POST",
        &format!("/v1/instances/{id}/ports"),
        Some(&zero),
    );
    assert_eq!(status, 400);

    r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    r.wait_state_within(&c, &id, "terminated", Duration::from_secs(60));
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "the port closes with the instance"
    );
    let (_, listed) = r.signed(&c, "GET", &format!("/v1/instances/{id}/ports"), None);
    assert_eq!(listed, json!([]), "and is no longer listed");
}

#[test]
fn an_instance_may_require_metadata_session_tokens() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("imdsv2@example.com");
    let script = r#"#!/bin/sh
m=http://169.254.169.254/latest
echo "v1: $(wget -qO- $m/meta-data/instance-id || echo refused)"
token=$(printf 'PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n' \
    | nc 169.254.169.254 80 | tail -n 1)
echo "v2: $(wget -qO- --header "X-aws-ec2-metadata-token: $token" $m/meta-data/instance-id)"
echo tokens-done
"#;
    let body = json!({"image": "nubo-micro", "instance_type": "n1.nano",
                      "metadata_tokens": "required", "user_data": script});
    let id = launch(&r, &c, body)[0].clone();
    let shown = r.wait_state_within(&c, &id, "running", Duration::from_secs(120));
    assert_eq!(shown["metadata_tokens"], "required");
    wait_until("the guest's questions", Duration::from_secs(60), || {
        console(&r, &c, &id).contains("tokens-done")
    });
    let told = console(&r, &c, &id);
    assert!(told.contains("v1: refused"), "{told}");
    assert!(told.contains(&format!("v2: {id}")), "{told}");
    r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    r.wait_state_within(&c, &id, "terminated", Duration::from_secs(60));
}

#[test]
fn dhcp_offers_an_instance_the_address_it_was_given() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("dhcp@example.com");
    let script = "#!/bin/sh\n\
        echo \"dhcp: $(udhcpc -i eth0 -n -q -s /bin/true -t 5 2>&1 | grep -o 'lease of [0-9.]*')\"\n\
        echo dhcp-done\n";
    let body = json!({"image": "nubo-micro", "instance_type": "n1.nano", "user_data": script});
    let id = launch(&r, &c, body)[0].clone();
    let shown = r.wait_state_within(&c, &id, "running", Duration::from_secs(120));
    let address = shown["private_ip"].as_str().unwrap().to_string();
    wait_until("the DHCP answer", Duration::from_secs(60), || {
        console(&r, &c, &id).contains("dhcp-done")
    });
    let told = console(&r, &c, &id);
    assert!(
        told.contains(&format!("dhcp: lease of {address}")),
        "{told}"
    );
    // The image's own init took the same address by DHCP (the default network
    // is a /16), and the script it ran from the metadata service.
    for line in [
        format!("nubo: {address}/16 by DHCP"),
        "nubo: user-data from the metadata service".to_string(),
    ] {
        assert!(told.contains(&line), "{line:?} not in: {told}");
    }
    r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    r.wait_state_within(&c, &id, "terminated", Duration::from_secs(60));
    let dnsmasq = std::process::Command::new("pgrep")
        .args(["-f", &format!("dnsmasq .*{}", r.dir.display())])
        .output()
        .unwrap();
    assert!(
        dnsmasq.stdout.is_empty(),
        "the network's DHCP server ends with its last VM: {}",
        String::from_utf8_lossy(&dnsmasq.stdout)
    );
}

/// A guest that greets on ports 7000 and 7001.
const TWO_PORT_GREETER: &str = "#!/bin/sh\n\
for p in 7000 7001; do (while true; do echo hello | nc -l -p $p; done) & done\n";

/// A guest that tries ports 7000 and 7001 of 10.30.0.4 each round and says
/// which answered.
const PROBER: &str = r#"#!/bin/sh
i=0
while [ $i -lt 900 ]; do
  for p in 7000 7001; do
    if timeout 2 nc 10.30.0.4 $p </dev/null 2>/dev/null | grep -q hello; then s=open; else s=closed; fi
    echo "round $i port $p $s"
  done
  i=$((i+1))
  sleep 1
done
"#;

/// The prober's rounds: (round, port, open), oldest first.
fn probes(text: &str) -> Vec<(u32, u16, bool)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "round").then_some(())?;
            let round = w.next()?.parse().ok()?;
            (w.next()? == "port").then_some(())?;
            let port = w.next()?.parse().ok()?;
            Some((round, port, w.next()? == "open"))
        })
        .collect()
}

#[test]
fn security_group_changes_hold_for_running_instances() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("firewalled@example.com");
    // An API call that must succeed; its answer.
    let call = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        let (status, v) = r.signed(&c, method, path, body.as_deref());
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status}: {v}"
        );
        v
    };
    // The id of the first rule of `group` that `pick` picks.
    let rule_of = |group: &str, pick: &dyn Fn(&Value) -> bool| {
        let shown = call("GET", &format!("/v1/security-groups/{group}"), None);
        let rules = shown["rules"].as_array().unwrap().clone();
        let rule = rules.into_iter().find(|rule| pick(rule)).unwrap();
        rule["id"].as_str().unwrap().to_string()
    };
    create_network(&r, &c, "sg-net", "10.30.0.0/24");
    for name in ["web", "clients"] {
        call(
            "POST",
            "/v1/security-groups",
            Some(json!({"name": name, "network": "sg-net"})),
        );
    }
    let allow = |group: &str, rule: Value| {
        call(
            "POST",
            &format!("/v1/security-groups/{group}/rules"),
            Some(rule),
        );
    };
    let revoke = |group: &str, rule: &str| {
        call(
            "DELETE",
            &format!("/v1/security-groups/{group}/rules/{rule}"),
            None,
        );
    };
    allow(
        "web",
        json!({"protocol": "tcp", "from_port": 7000, "peer_group": "clients"}),
    );
    let port_7000 = rule_of("web", &|rule| rule["from_port"] == 7000);

    let base = json!({"image": "nubo-micro", "instance_type": "n1.nano", "network": "sg-net"});
    let mut server = base.clone();
    server["security_groups"] = json!(["web"]);
    server["user_data"] = json!(TWO_PORT_GREETER);
    let server = launch(&r, &c, server)[0].clone();
    let shown = r.wait_state_within(&c, &server, "running", Duration::from_secs(120));
    assert_eq!(shown["private_ip"], "10.30.0.4");
    let mut prober = base.clone();
    prober["security_groups"] = json!(["clients"]);
    prober["user_data"] = json!(PROBER);
    let prober = launch(&r, &c, prober)[0].clone();

    // Waits for a round after `after` in which the ports answer as expected;
    // returns that round.
    let expect = |after: Option<u32>, open_7000: bool, open_7001: bool| -> u32 {
        let mut seen = Vec::new();
        let mut found = None;
        wait_until(
            &format!("7000 {open_7000}, 7001 {open_7001} after round {after:?}"),
            Duration::from_secs(120),
            || {
                seen = probes(&console(&r, &c, &prober));
                let round = |n: u32, port: u16| {
                    seen.iter()
                        .find(|(i, p, _)| *i == n && *p == port)
                        .map(|(_, _, open)| *open)
                };
                found = seen
                    .iter()
                    .map(|(i, _, _)| *i)
                    .filter(|i| after.is_none_or(|a| *i > a))
                    .find(|&i| {
                        round(i, 7000) == Some(open_7000) && round(i, 7001) == Some(open_7001)
                    });
                found.is_some()
            },
        );
        found.unwrap()
    };
    let last_round = || {
        probes(&console(&r, &c, &prober))
            .last()
            .map(|(i, _, _)| *i)
            .unwrap_or(0)
    };

    // The group lets its clients in on 7000 only.
    expect(None, true, false);
    // A blocked port opens for a running instance...
    let before = last_round();
    allow(
        "web",
        json!({"protocol": "tcp", "from_port": 7001, "to_port": 7001, "cidr": "10.30.0.0/24"}),
    );
    let opened = expect(Some(before), true, true);
    // ...and an open one closes.
    let before = last_round().max(opened);
    revoke("web", &port_7000);
    expect(Some(before), false, true);
    // Joining the server's group lets the prober in everywhere (members trust
    // each other).
    let before = last_round();
    let member_of = |groups: &[&str]| {
        call(
            "PUT",
            &format!("/v1/instances/{prober}/security-groups"),
            Some(json!({ "security_groups": groups })),
        );
    };
    member_of(&["clients", "web"]);
    expect(Some(before), true, true);

    // Egress: back in its own group alone, whose rule to send anywhere is
    // revoked, the prober reaches nothing; a narrower egress rule opens one port.
    member_of(&["clients"]);
    let anywhere = rule_of("clients", &|rule| rule["direction"] == "egress");
    let before = last_round();
    revoke("clients", &anywhere);
    expect(Some(before), false, false);
    let before = last_round();
    allow(
        "clients",
        json!({"direction": "egress", "protocol": "tcp", "from_port": 7000,
               "to_port": 7001, "cidr": "10.30.0.4/32"}),
    );
    // 7000 stays closed: the server's group no longer lets it in.
    expect(Some(before), false, true);

    for id in [&server, &prober] {
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
        r.wait_state_within(&c, id, "terminated", Duration::from_secs(60));
    }
}

/// Two namespaces joined by a veth pair: the network between two modelled
/// machines, each host's underlay in one of them. Documentation addresses
/// (TEST-NET-1), in namespaces of the test's own.
struct Underlay {
    namespaces: [String; 2],
    config: std::path::PathBuf,
}

impl Underlay {
    const ADDRESSES: [&str; 2] = ["192.0.2.1", "192.0.2.2"];

    fn new() -> Underlay {
        let tag = format!("{:08x}", nubo_store::ids::random_u64() as u32);
        let namespaces = [format!("nubotest-ula-{tag}"), format!("nubotest-ulb-{tag}")];
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        let [a, b] = &namespaces;
        for ns in &namespaces {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", a, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b,
        ]);
        for (ns, address) in namespaces.iter().zip(Self::ADDRESSES) {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "ul0",
            ]);
            ip(&["-n", ns, "link", "set", "ul0", "up"]);
        }
        let config = std::env::temp_dir().join(format!("nubotest-two-hosts-{tag}.toml"));
        let hosts: String = namespaces
            .iter()
            .zip(Self::ADDRESSES)
            .map(|(ns, address)| {
                format!(
                    "[[qemu.hosts]]\nunderlay_address = \"{address}\"\nunderlay_namespace = \"{ns}\"\n"
                )
            })
            .collect();
        std::fs::write(&config, hosts).unwrap();
        Underlay { namespaces, config }
    }

    /// The links left in an underlay namespace (tunnels move out of it).
    fn links(&self, i: usize) -> String {
        let out = std::process::Command::new("ip")
            .args(["-n", &self.namespaces[i], "-o", "link"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", ns])
                .status();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Reaches 10.40.0.4 by ICMP and TCP (retrying while it boots), and asks the
/// metadata service for its own address.
const ACROSS_HOSTS: &str = r#"#!/bin/sh
for i in $(seq 1 60); do
  said=$(timeout 3 nc 10.40.0.4 7000 </dev/null 2>/dev/null)
  [ -n "$said" ] && break
  sleep 1
done
echo "heard: $said"
if ping -c 3 -W 5 10.40.0.4 >/dev/null 2>&1; then echo "reached 10.40.0.4"; else echo "missed 10.40.0.4"; fi
echo "imds-ip $(wget -qO- http://169.254.169.254/latest/meta-data/local-ipv4)"
echo across-done
"#;

#[test]
fn a_network_spans_two_hosts_through_a_tunnel() {
    let underlay = Underlay::new();
    let config = underlay.config.to_string_lossy().into_owned();
    let r = Region::start_qemu(StoreKind::Sqlite, &["--config", &config]);
    let token = format!("Bearer {}", r.operator_token());
    let (_, hosts) = r
        .curl("GET", "/v1/admin/hosts", None, &[("authorization", &token)])
        .unwrap();
    assert_eq!(hosts.as_array().unwrap().len(), 2, "{hosts}");

    let c = r.signup("two-hosts@example.com");
    let network = create_network(&r, &c, "spread", "10.40.0.0/24");
    let base = json!({"image": "nubo-micro", "instance_type": "n1.nano", "network": "spread"});
    let mut server = base.clone();
    server["user_data"] = json!(GREETER);
    let server = launch(&r, &c, server)[0].clone();
    let shown = r.wait_state_within(&c, &server, "running", Duration::from_secs(120));
    assert_eq!(shown["private_ip"], "10.40.0.4");
    let mut client = base.clone();
    client["user_data"] = json!(ACROSS_HOSTS);
    let client = launch(&r, &c, client)[0].clone();
    let seen = r.wait_state_within(&c, &client, "running", Duration::from_secs(120));
    assert_ne!(
        seen["host_id"], shown["host_id"],
        "the scheduler spreads the network's instances over both hosts"
    );

    wait_until("the client to finish", Duration::from_secs(180), || {
        console(&r, &c, &client).contains("across-done")
    });
    let told = console(&r, &c, &client);
    for line in [
        format!("heard: hello from {server}"),
        "reached 10.40.0.4".to_string(),
        // Its own host's metadata service answered, not the other's.
        format!("imds-ip {}", seen["private_ip"].as_str().unwrap()),
    ] {
        assert!(told.contains(&line), "{line:?} not in: {told}");
    }
    // Each host has the network in a namespace of its own, and its tunnel
    // left the underlay for it.
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout).into_owned();
    assert_eq!(netns.matches(network.as_str()).count(), 2, "{netns}");
    for i in 0..2 {
        assert!(!underlay.links(i).contains("vx"), "{}", underlay.links(i));
    }

    for id in [&server, &client] {
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
        r.wait_state_within(&c, id, "terminated", Duration::from_secs(60));
    }
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(network.as_str()),
        "both hosts removed the network"
    );
}

/// The outside world as a namespace of the test's own: 198.51.100.1
/// (TEST-NET-2) behind a veth from the host's namespace, whose end is
/// 198.51.100.2.
struct Outside {
    namespace: String,
    link: String,
}

impl Outside {
    const ADDRESS: &str = "198.51.100.1";
    const HOST: &str = "198.51.100.2";

    fn new() -> Outside {
        let tag = format!("{:06x}", nubo_store::ids::random_u64() as u32 & 0xff_ffff);
        let (namespace, link) = (format!("nubotest-out-{tag}"), format!("nbtout{tag}"));
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &namespace]);
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
        ]);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{}/24", Self::ADDRESS),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        ip(&["addr", "add", &format!("{}/24", Self::HOST), "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        Outside { namespace, link }
    }

    /// Answers each connection to `port` with the address it came from.
    fn serve(&self, port: u16) {
        let listener = nubo_host::qemu::network::in_namespace(&self.namespace, || {
            std::net::TcpListener::bind((Self::ADDRESS, port))
        })
        .unwrap();
        std::thread::spawn(move || tell_callers(listener));
    }
}

/// Answers each connection with the address it came from.
fn tell_callers(listener: std::net::TcpListener) {
    use std::io::Write;
    for mut stream in listener.incoming().flatten() {
        if let Ok(peer) = stream.peer_addr() {
            let _ = writeln!(stream, "you are {}", peer.ip());
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .status();
    }
}

/// Calls the outside, and the host the outside is reached through.
const EGRESS: &str = r#"#!/bin/sh
for i in $(seq 1 30); do
  out=$(timeout 3 nc 198.51.100.1 8000 </dev/null 2>/dev/null)
  [ -n "$out" ] && break
  sleep 1
done
echo "outside: $out"
echo "host: $(timeout 3 nc 198.51.100.2 8001 </dev/null 2>/dev/null || echo unreachable)"
echo egress-done
"#;

#[test]
fn instances_reach_the_outside_through_nat_only_when_the_operator_allows() {
    let outside = Outside::new();
    outside.serve(8000);
    // A service of the host itself, on the address the outside is reached by.
    let host_service = std::net::TcpListener::bind((Outside::HOST, 8001)).unwrap();
    std::thread::spawn(move || tell_callers(host_service));

    for egress in [true, false] {
        let flag = if egress { "true" } else { "false" };
        let r = Region::start_qemu(StoreKind::Sqlite, &["--egress-nat", flag]);
        let c = r.signup(&format!("egress-{flag}@example.com"));
        let body = json!({"image": "nubo-micro", "instance_type": "n1.nano", "user_data": EGRESS});
        let id = launch(&r, &c, body)[0].clone();
        r.wait_state_within(&c, &id, "running", Duration::from_secs(120));
        wait_until("the calls to finish", Duration::from_secs(120), || {
            console(&r, &c, &id).contains("egress-done")
        });
        let told = console(&r, &c, &id);
        let reached = format!("outside: you are {}", Outside::HOST);
        if egress {
            assert!(
                told.contains(&reached),
                "the outside sees the host's address: {told}"
            );
        } else {
            assert!(
                told.contains("outside: \n") || told.contains("outside: \r\n"),
                "{told}"
            );
        }
        assert!(
            told.contains("host: unreachable"),
            "an instance never reaches the host's own services: {told}"
        );
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
        r.wait_state_within(&c, &id, "terminated", Duration::from_secs(60));
    }
}

/// The user-data of the Debian instance: cloud-config, as cloud-init reads it.
const CLOUD_CONFIG: &str = "#cloud-config
write_files:
  - path: /var/tmp/from-user-data
    content: written by cloud-init
runcmd:
  - [sh, -c, 'echo ran > /var/tmp/runcmd-ran']
";

#[test]
fn ssh_reaches_a_debian_instance_that_cloud_init_configured() {
    let images = std::env::var("NUBO_TEST_IMAGES").unwrap_or_default();
    assert!(
        Path::new(&images).join("debian-12/image.json").exists(),
        "the debian-12 image is not built in {images:?}: run `cargo xtask test` \
         (or `cargo xtask image --into DIR`)"
    );
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("debian@example.com");
    let (status, pair) = r.signed(
        &c,
        "POST",
        "/v1/key-pairs",
        Some(&json!({"name": "mykey"}).to_string()),
    );
    assert_eq!(status, 201, "{pair}");
    let key = std::env::temp_dir().join(format!("nubo-test-key-{}", c.account_id));
    std::fs::write(&key, pair["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // A group that lets in only port 80: SSH comes through the published port,
    // which is its owner's own allow.
    let (status, v) = r.signed(
        &c,
        "POST",
        "/v1/security-groups",
        Some(&json!({"name": "web"}).to_string()),
    );
    assert_eq!(status, 201, "{v}");
    let rule = json!({"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}).to_string();
    r.signed(&c, "POST", "/v1/security-groups/web/rules", Some(&rule));

    // A root volume twice the image's disk, kept when the instance goes.
    let body = json!({"image": "debian-12", "instance_type": "n1.small", "key_name": "mykey",
                      "security_groups": ["web"], "user_data": CLOUD_CONFIG,
                      "root_volume_size_gib": 4, "keep_root_volume": true});
    let id = launch(&r, &c, body)[0].clone();
    r.wait_state_within(&c, &id, "running", Duration::from_secs(300));
    let ask = json!({"port": 22}).to_string();
    let (status, published) =
        r.signed(&c, "POST", &format!("/v1/instances/{id}/ports"), Some(&ask));
    assert_eq!(status, 201, "{published}");
    let address = published["address"].as_str().unwrap().to_string();
    let (host, port) = address.rsplit_once(':').unwrap();

    let ssh = |command: &str| {
        std::process::Command::new("ssh")
            .args(["-i", &key.to_string_lossy(), "-p", port])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("debian@{host}"))
            .arg(command)
            .output()
            .unwrap()
    };
    let (mut said, mut why) = (String::new(), String::new());
    wait_until("SSH with the key pair", Duration::from_secs(120), || {
        let out = ssh("hostname");
        said = String::from_utf8_lossy(&out.stdout).into_owned();
        why = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success()
    });
    assert_eq!(said.trim(), id, "cloud-init set the hostname ({why})");
    let out = ssh(
        "timeout 240 cloud-init status --wait; cat /var/tmp/from-user-data /var/tmp/runcmd-ran",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("status: done"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("written by cloud-init"), "{text}");
    assert!(text.contains("ran"), "{text}");
    let out = ssh("df -B1M --output=size / | tail -1");
    let root_mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        root_mib > 3500,
        "the file system grew into the root volume: {root_mib} MiB"
    );
    let _ = std::fs::remove_file(&key);
    r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
    r.wait_state_within(&c, &id, "terminated", Duration::from_secs(120));

    // The kept root volume, attached to another instance, holds what
    // cloud-init wrote.
    let (_, volumes) = r.signed(&c, "GET", "/v1/volumes", None);
    let kept = volumes["items"][0].clone();
    assert_eq!(
        (&kept["bootable"], &kept["size_gib"]),
        (&json!(true), &json!(4)),
        "{kept}"
    );
    let kept = kept["id"].as_str().unwrap().to_string();
    r.wait_for(&c, &format!("/v1/volumes/{kept}"), "available");
    let body = json!({"image": "nubo-micro", "instance_type": "n1.nano", "user_data": MOUNTER});
    let reader = launch(&r, &c, body)[0].clone();
    r.wait_state(&c, &reader, "running");
    let attach = json!({"instance_id": reader}).to_string();
    let (status, v) = r.signed(
        &c,
        "POST",
        &format!("/v1/volumes/{kept}/attach"),
        Some(&attach),
    );
    assert_eq!(status, 202, "{v}");
    wait_until("the kept volume's file", Duration::from_secs(60), || {
        console(&r, &c, &reader).contains(&format!("file {kept} written by cloud-init"))
    });
}

/// Mounts the first disk that appears and prints what cloud-init wrote on it.
const MOUNTER: &str = r#"#!/bin/sh
while true; do
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] || continue
    mkdir -p /mnt && mount -t ext4 "/dev/${b##*/}" /mnt \
      && echo "file $(cat "$b/serial") $(cat /mnt/var/tmp/from-user-data)" && exit 0
  done
  usleep 200000
done
"#;
