//! Block volumes with real guests: nubo-micro instances write and read volumes
//! that are hot-plugged into them, and their snapshots are restored, through
//! the CLI as a user would.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Region, StoreKind, wait_until};

/// For each disk that appears: fills a blank one with 16 MiB of random bytes,
/// then says the checksum of its first 16 MiB and how many numbered blocks
/// follow them.
const KEEPER: &str = r#"#!/bin/sh
seen=" "
while true; do
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] || continue
    s=$(cat "$b/serial"); d=/dev/${b##*/}
    case "$seen" in *" $s "*) continue ;; esac
    seen="$seen$s "
    if [ "$(head -c 16 "$d" | od -An -tx1 | tr -d ' \n')" = "00000000000000000000000000000000" ]; then
      dd if=/dev/urandom of="$d" bs=1M count=16 conv=fsync 2>/dev/null && echo "wrote $s"
    fi
    echo "sum $s $(head -c 16777216 "$d" | sha256sum | cut -d' ' -f1)"
    i=0
    while [ "$(dd if="$d" bs=4096 skip=$((4096 + i)) count=1 2>/dev/null | head -c 14)" = "$(printf 'block-%08d' $i)" ]; do
      i=$((i + 1))
    done
    echo "blocks $s $i"
  done
  usleep 200000
done
"#;

fn launch_with(r: &Region, script: &str, name: &str) -> String {
    let path = r.dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    let launched = r.json(&common::launch_micro(&[
        "--name",
        name,
        "--user-data",
        path.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120",
    ]));
    launched["instances"][0]["id"].as_str().unwrap().to_string()
}

fn console(r: &Region, id: &str) -> String {
    r.ok(&["instance", "console", id])
}

/// Waits for the instance's line `<word> <volume> <value>`; the value.
fn said(r: &Region, id: &str, word: &str, volume: &str) -> String {
    let prefix = format!("{word} {volume} ");
    let mut value = String::new();
    wait_until(
        &format!("{prefix}… on {id}"),
        Duration::from_secs(120),
        || {
            let text = console(r, id);
            match text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix(&prefix))
            {
                Some(v) => {
                    value = v.trim().to_string();
                    true
                }
                None => false,
            }
        },
    );
    value
}

/// The highest block the appender has acknowledged on `volume`.
fn acked(r: &Region, id: &str, volume: &str) -> Option<u64> {
    let prefix = format!("acked {volume} ");
    console(r, id)
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix)?.trim().parse().ok())
        .max()
}

/// The volume id (or snapshot id) the CLI printed as JSON.
fn id_of(v: &serde_json::Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn chunk_files(r: &Region) -> usize {
    let root = r.dir.join("data/objects/chunks");
    std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|sub| std::fs::read_dir(sub.path()).map_or(0, |d| d.count()))
        .sum()
}

fn chunk_paths(r: &Region) -> Vec<std::path::PathBuf> {
    let root = r.dir.join("data/objects/chunks");
    let mut paths: Vec<_> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|sub| {
            std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

fn volume_state(r: &Region, id: &str) -> serde_json::Value {
    r.json(&["volume", "show", id])
}

/// A region with a keeper instance and an instance running `script`, and a
/// 1 GiB volume the keeper filled, then moved to the other instance, which
/// read the same checksum: (region, the other instance, volume, checksum).
fn moved_to(name: &str, script: &str) -> (Region, String, String, String) {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", &format!("{name}@example.com")]);
    let keeper = launch_with(&r, KEEPER, "keeper");
    let other = launch_with(&r, script, name);
    let data = id_of(&r.json(&["volume", "create", "--size", "1", "--wait"]));
    r.ok(&["volume", "attach", &data, "--instance", &keeper, "--wait"]);
    let sum = said(&r, &keeper, "sum", &data);
    r.ok(&["volume", "detach", &data, "--wait"]);
    r.ok(&["volume", "attach", &data, "--instance", &other, "--wait"]);
    assert_eq!(
        said(&r, &other, "sum", &data),
        sum,
        "the data moved with the volume"
    );
    (r, other, data, sum)
}

#[test]
fn volumes_carry_data_between_instances_and_snapshots_restore_it() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", "volumes@example.com"]);
    let keeper = launch_with(&r, KEEPER, "keeper");
    let appender = launch_with(&r, common::APPENDER, "appender");

    // A pattern written on one instance reads back the same on another.
    let data = id_of(&r.json(&[
        "volume", "create", "--size", "1", "--name", "data", "--wait",
    ]));
    r.ok(&["volume", "attach", &data, "--instance", &keeper, "--wait"]);
    let sum = said(&r, &keeper, "sum", &data);
    assert!(console(&r, &keeper).contains(&format!("wrote {data}")));
    let refused = r.nubo(&["volume", "delete", &data]);
    assert!(
        !refused.status.success(),
        "an attached volume is not deleted"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidState"));
    r.ok(&["volume", "detach", &data, "--wait"]);
    r.ok(&["volume", "attach", &data, "--instance", &appender, "--wait"]);
    assert_eq!(
        said(&r, &appender, "sum", &data),
        sum,
        "the data moved with the volume"
    );

    // A snapshot taken while the appender writes holds every block it had
    // acknowledged before the snapshot was asked for.
    wait_until("the appender's writes", Duration::from_secs(60), || {
        acked(&r, &appender, &data).is_some_and(|n| n >= 5)
    });
    let before = acked(&r, &appender, &data).unwrap();
    let snap = id_of(&r.json(&[
        "snapshot",
        "create",
        &data,
        "--description",
        "busy",
        "--wait",
    ]));
    assert!(
        acked(&r, &appender, &data).unwrap() > before,
        "the guest kept writing while the snapshot was taken"
    );
    let chunks = chunk_files(&r);
    assert!(
        chunks >= 4,
        "16 MiB of data is at least four 4 MiB chunks: {chunks}"
    );

    // Restored larger than the source, onto the other instance.
    let restored = r.json(&[
        "volume",
        "create",
        "--from-snapshot",
        &snap,
        "--size",
        "2",
        "--wait",
    ]);
    assert_eq!(restored["size_gib"], 2, "{restored}");
    let restored = id_of(&restored);
    r.ok(&[
        "volume",
        "attach",
        &restored,
        "--instance",
        &keeper,
        "--wait",
    ]);
    assert_eq!(said(&r, &keeper, "sum", &restored), sum);
    let blocks: u64 = said(&r, &keeper, "blocks", &restored).parse().unwrap();
    assert!(
        blocks > before,
        "{blocks} blocks restored; {before} were acknowledged first"
    );

    // A snapshot of the same bytes adds no chunk: snapshots after the first
    // store only what changed.
    let again = id_of(&r.json(&["snapshot", "create", &restored, "--wait"]));
    assert_eq!(
        chunk_files(&r),
        chunks,
        "an unchanged volume's snapshot stores nothing new"
    );

    // The snapshot outlives its volume.
    r.ok(&["volume", "detach", &data, "--wait"]);
    r.ok(&["volume", "delete", &data, "--wait"]);
    let third = id_of(&r.json(&["volume", "create", "--from-snapshot", &snap, "--wait"]));
    r.ok(&["volume", "attach", &third, "--instance", &keeper, "--wait"]);
    assert_eq!(said(&r, &keeper, "sum", &third), sum);

    // A corrupt chunk fails the restore instead of giving back wrong data.
    let victim = chunk_paths(&r).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let bad = r.nubo(&[
        "volume",
        "create",
        "--from-snapshot",
        &snap,
        "--wait",
        "--timeout",
        "120",
    ]);
    assert!(!bad.status.success());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("checksum"), "{why}");

    // Deleting a snapshot frees only the chunks no other snapshot uses.
    r.ok(&["snapshot", "delete", &again]);
    wait_until(
        "the second snapshot's deletion",
        Duration::from_secs(30),
        || !r.nubo(&["snapshot", "show", &again]).status.success(),
    );
    assert_eq!(
        chunk_files(&r),
        chunks,
        "the first snapshot still uses them all"
    );
    r.ok(&["snapshot", "delete", &snap]);
    wait_until("the chunks' removal", Duration::from_secs(30), || {
        chunk_files(&r) == 0
    });
    let state = volume_state(&r, &restored);
    assert_eq!(
        state["state"], "in-use",
        "restored volumes keep their data: {state}"
    );
}

#[test]
fn a_killed_nubod_leaves_every_volume_consistent() {
    let mut r = Region::start_qemu(StoreKind::Sqlite, &[]);
    r.ok(&["signup", "--email", "crash@example.com"]);
    let keeper = launch_with(&r, KEEPER, "keeper");
    let other = launch_with(&r, KEEPER, "other");
    let data = id_of(&r.json(&["volume", "create", "--size", "1", "--wait"]));

    // Killed right after asking to attach: it comes back attached, once.
    r.ok(&["volume", "attach", &data, "--instance", &keeper]);
    r.kill9();
    r.restart();
    let sum = said(&r, &keeper, "sum", &data);
    wait_until("the attachment", Duration::from_secs(60), || {
        volume_state(&r, &data)["attachment"]["state"] == "attached"
    });

    // Killed mid-snapshot: it completes after the restart and restores.
    let snap = id_of(&r.json(&["snapshot", "create", &data]));
    r.kill9();
    r.restart();
    wait_until("the snapshot", Duration::from_secs(120), || {
        r.json(&["snapshot", "show", &snap])["state"] == "completed"
    });

    // Killed mid-detach: it comes back detached and attaches elsewhere.
    r.ok(&["volume", "detach", &data]);
    r.kill9();
    r.restart();
    wait_until("the detach", Duration::from_secs(60), || {
        volume_state(&r, &data)["state"] == "available"
    });
    r.ok(&["volume", "attach", &data, "--instance", &other, "--wait"]);
    assert_eq!(said(&r, &other, "sum", &data), sum);
    let copy = id_of(&r.json(&["volume", "create", "--from-snapshot", &snap, "--wait"]));
    r.ok(&["volume", "attach", &copy, "--instance", &keeper, "--wait"]);
    assert_eq!(said(&r, &keeper, "sum", &copy), sum);

    let volumes = r.json(&["volume", "list"])["items"].clone();
    for v in volumes.as_array().unwrap() {
        let attachment = &v["attachment"];
        assert!(
            attachment.is_null() || attachment["state"] == "attached",
            "settled: {v}"
        );
    }
    let on_keeper = volumes
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["attachment"]["instance_id"] == keeper.as_str())
        .count();
    assert_eq!(on_keeper, 1, "{volumes}");
    assert!(Path::new(&r.dir.join("data/volumes")).exists());
}

/// For the first disk that appears: says its checksum, then unbinds its PCIe
/// port's driver, so that the guest never answers a request to unplug it (as
/// a hung guest would not), and reports what the disk reads.
const HOLDOUT: &str = r#"#!/bin/sh
while true; do
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] || continue
    s=$(cat "$b/serial"); d=/dev/${b##*/}
    echo "sum $s $(head -c 16777216 "$d" | sha256sum | cut -d' ' -f1)"
    port=$(dirname "$(dirname "$(readlink -f "$b/device")")")
    echo "${port##*/}" > /sys/bus/pci/drivers/pcieport/unbind && echo "holding $s ${port##*/}"
    while true; do
      echo "reads $s $(head -c 16 "$d" | od -An -tx1 | tr -d ' \n')"
      sleep 2
    done
  done
  usleep 200000
done
"#;

#[test]
fn a_guest_that_holds_on_keeps_its_volume_until_the_detach_is_forced() {
    let (r, holdout, data, sum) = moved_to("holdout", HOLDOUT);
    said(&r, &holdout, "holding", &data);

    // Asked nicely, the guest does not let go: the volume stays with it.
    r.ok(&["volume", "detach", &data]);
    std::thread::sleep(Duration::from_secs(15));
    let v = volume_state(&r, &data);
    assert_eq!(v["attachment"]["state"], "detaching", "{v}");
    assert_eq!(v["attachment"]["instance_id"], holdout.as_str(), "{v}");

    // Forced, the volume is cut loose: the guest's disk reads zeros, and the
    // volume, whole, attaches elsewhere.
    r.ok(&[
        "volume",
        "detach",
        &data,
        "--force",
        "--wait",
        "--timeout",
        "60",
    ]);
    wait_until(
        "the guest's disk reading zeros",
        Duration::from_secs(30),
        || said(&r, &holdout, "reads", &data) == "00000000000000000000000000000000",
    );
    let copy = id_of(&r.json(&["volume", "create", "--size", "1", "--wait"]));
    r.ok(&["volume", "attach", &copy, "--instance", &holdout, "--wait"]);
    let v = volume_state(&r, &copy);
    assert_eq!(
        v["attachment"]["state"], "attached",
        "a slot still held by the guest is skipped: {v}"
    );
    let other = launch_with(&r, KEEPER, "other");
    r.ok(&["volume", "attach", &data, "--instance", &other, "--wait"]);
    assert_eq!(
        said(&r, &other, "sum", &data),
        sum,
        "the forced detach lost nothing written"
    );
}

/// For the first disk that appears: says its checksum, then powers its slot
/// off, as a guest that unplugs a disk itself does.
const UNPLUGGER: &str = r#"#!/bin/sh
while true; do
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] || continue
    s=$(cat "$b/serial")
    echo "sum $s $(head -c 16777216 "/dev/${b##*/}" | sha256sum | cut -d' ' -f1)"
    function=$(basename "$(dirname "$(readlink -f "$b/device")")")
    for slot in /sys/bus/pci/slots/*; do
      [ "$(cat "$slot/address")" = "${function%.*}" ] && echo 0 > "$slot/power" && echo "unplugged $s ${slot##*/}"
    done
    exit 0
  done
  usleep 200000
done
"#;

#[test]
fn a_volume_the_guest_unplugs_itself_is_recorded_detached() {
    let (r, unplugger, data, sum) = moved_to("unplugger", UNPLUGGER);
    said(&r, &unplugger, "unplugged", &data);
    wait_until("the unplug to be recorded", Duration::from_secs(60), || {
        volume_state(&r, &data)["state"] == "available"
    });
    let v = volume_state(&r, &data);
    let reason = v["state_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unplugged"), "{v}");
    let other = launch_with(&r, KEEPER, "other");
    r.ok(&["volume", "attach", &data, "--instance", &other, "--wait"]);
    assert_eq!(
        said(&r, &other, "sum", &data),
        sum,
        "its file was let go whole"
    );
}
