//! Volumes on a QEMU host: qcow2 files in the host's volumes folder, plugged
//! into VMs as virtio-blk-pci devices on PCIe root ports (see docs/volumes.md).
//!
//! In a VM, volume `vol-X` is three things, all named after it so that every
//! step can tell whether it is done already: the qcow2 node `vol-X-qcow2`, a
//! raw node `vol-X` on top of it (the device's drive; its child can be
//! swapped, which is how a forced detach cuts the file loose from a guest
//! that does not let go), and the device `vol-X`, whose serial is the volume
//! id.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qapi::qmp;
use serde_json::json;

use super::Qmp;
use super::command::{VOLUME_SLOTS, slot_port};
use crate::HostError;
use crate::volumes::{Detach, Source, VolumeSpec};

/// How long a detach waits for the guest before it reports `Pending` (or,
/// forced, pulls the volume). Linux takes 5 s (pciehp's grace period) and a
/// little more.
const DETACH_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

pub fn file(dir: &Path, volume_id: &str) -> PathBuf {
    dir.join(format!("{volume_id}.qcow2"))
}

fn agent(what: &str, e: impl std::fmt::Display) -> HostError {
    HostError::Agent(format!("{what}: {e}"))
}

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), HostError> {
    let out = cmd.output().await.map_err(|e| agent(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(agent(
            what,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The virtual size of a qcow2 (from its header) or raw image.
pub fn virtual_size(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut header = [0u8; 32];
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if f.read_exact(&mut header).is_ok() && header[..4] == *b"QFI\xfb" {
        let size: [u8; 8] = header[24..32].try_into().expect("8 bytes");
        return Ok(u64::from_be_bytes(size));
    }
    Ok(len)
}

/// Makes the volume's file unless it is there: written beside it, then
/// renamed, so that a crash never leaves a half-made volume under its name.
pub async fn create(dir: &Path, spec: &VolumeSpec) -> Result<(), HostError> {
    let target = file(dir, &spec.id);
    if target.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| agent("volumes folder", e))?;
    let partial = target.with_extension("partial");
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2"]);
    let mut size = spec.size_bytes;
    if let Source::Image(image) = &spec.source {
        let image = super::command::ImageSpec::parse(image)?;
        let disk = image.disk.ok_or_else(|| {
            HostError::BadImage("the image has no disk to make a root volume of".into())
        })?;
        size = size.max(virtual_size(&disk.path).map_err(|e| agent("image disk", e))?);
        cmd.args(["-F", &disk.format, "-b"]).arg(&disk.path);
    }
    cmd.arg(&partial).arg(size.to_string());
    run(&mut cmd, "making the volume").await?;
    std::fs::rename(&partial, &target).map_err(|e| agent("making the volume", e))
}

/// Turns a restored raw copy into the volume's file, grown to the volume's size.
pub async fn create_from_raw(dir: &Path, spec: &VolumeSpec, raw: &Path) -> Result<(), HostError> {
    let target = file(dir, &spec.id);
    let partial = target.with_extension("partial");
    run(
        tokio::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(&partial),
        "converting the restored volume",
    )
    .await?;
    grow(&partial, spec.size_bytes).await?;
    std::fs::rename(&partial, &target).map_err(|e| agent("restoring the volume", e))
}

async fn grow(path: &Path, size_bytes: u64) -> Result<(), HostError> {
    let now = virtual_size(path).map_err(|e| agent("volume size", e))?;
    if size_bytes <= now {
        return Ok(());
    }
    run(
        tokio::process::Command::new("qemu-img")
            .args(["resize", "-q", "-f", "qcow2"])
            .arg(path)
            .arg(size_bytes.to_string()),
        "growing the volume",
    )
    .await
}

pub async fn resize(dir: &Path, volume_id: &str, size_bytes: u64) -> Result<(), HostError> {
    let path = file(dir, volume_id);
    if !path.exists() {
        return Err(agent(
            "growing the volume",
            format!("no volume {volume_id} here"),
        ));
    }
    grow(&path, size_bytes).await
}

pub fn delete(dir: &Path, volume_id: &str) -> Result<(), HostError> {
    let path = file(dir, volume_id);
    for p in [path.with_extension("partial"), path] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(agent("deleting the volume", e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `-blockdev`/`-device` arguments that plug volumes in at boot: the root
/// volume on virtio-mmio (the disk the image's kernel boots from), the others
/// on their slots.
pub fn boot_args(
    dir: &Path,
    root: Option<&str>,
    attached: &[crate::volumes::Attached],
) -> Vec<String> {
    let mut args = Vec::new();
    let nodes = |id: &str| {
        let path = file(dir, id).display().to_string().replace(',', ",,");
        [
            "-blockdev".to_string(),
            format!(
                "driver=qcow2,node-name={id}-qcow2,discard=unmap,file.driver=file,file.filename={path}"
            ),
            "-blockdev".to_string(),
            format!("driver=raw,node-name={id},file={id}-qcow2"),
        ]
    };
    if let Some(id) = root {
        args.extend(nodes(id));
        args.extend([
            "-device".to_string(),
            format!("virtio-blk-device,drive={id}"),
        ]);
    }
    for a in attached {
        args.extend(nodes(&a.volume_id));
        args.extend([
            "-device".to_string(),
            format!(
                "virtio-blk-pci,bus={},addr=0,drive={id},id={id},serial={id}",
                slot_port(a.slot),
                id = a.volume_id
            ),
        ]);
    }
    args
}

async fn node_names(qmp: &Qmp) -> Result<Vec<String>, HostError> {
    let nodes = qmp
        .execute(qmp::query_named_block_nodes { flat: Some(true) })
        .await
        .map_err(|e| agent("query-named-block-nodes", e))?;
    Ok(nodes.into_iter().filter_map(|n| n.node_name).collect())
}

/// The ids of the devices the VM was given by id (volumes' among them).
async fn devices(qmp: &Qmp) -> Result<Vec<String>, HostError> {
    let children = qmp
        .execute(qmp::qom_list {
            path: "/machine/peripheral".into(),
        })
        .await
        .map_err(|e| agent("qom-list", e))?;
    Ok(children
        .into_iter()
        .filter(|p| p.type_.starts_with("child<"))
        .map(|p| p.name)
        .collect())
}

/// The volumes plugged into the VM.
pub async fn plugged(qmp: &Qmp) -> Result<Vec<String>, HostError> {
    let mut ids: Vec<String> = devices(qmp)
        .await?
        .into_iter()
        .filter(|d| d.starts_with("vol-"))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn blockdev_add(qmp: &Qmp, options: serde_json::Value) -> Result<(), HostError> {
    let options = serde_json::from_value(options).map_err(|e| agent("blockdev-add", e))?;
    qmp.execute(qmp::blockdev_add(options))
        .await
        .map(|_| ())
        .map_err(|e| agent("blockdev-add", e))
}

async fn blockdev_del(qmp: &Qmp, node: &str) -> Result<(), HostError> {
    qmp.execute(qmp::blockdev_del {
        node_name: node.to_string(),
    })
    .await
    .map(|_| ())
    .map_err(|e| agent("blockdev-del", e))
}

/// Plugs volume `id` into slot `slot` of a running VM; each step is skipped
/// when it is done already.
pub async fn attach(qmp: &Qmp, dir: &Path, id: &str, slot: u32) -> Result<(), HostError> {
    let path = file(dir, id);
    if !path.exists() {
        return Err(agent("attaching", format!("no volume {id} on this host")));
    }
    let nodes = node_names(qmp).await?;
    let qcow2 = format!("{id}-qcow2");
    if !nodes.contains(&qcow2) {
        blockdev_add(
            qmp,
            json!({
                "driver": "qcow2",
                "node-name": qcow2,
                "discard": "unmap",
                "file": {"driver": "file", "filename": path},
            }),
        )
        .await?;
    }
    if !nodes.iter().any(|n| n == id) {
        blockdev_add(
            qmp,
            json!({"driver": "raw", "node-name": id, "file": qcow2}),
        )
        .await?;
    }
    if devices(qmp).await?.iter().any(|d| d == id) {
        return Ok(());
    }
    // A port may still hold the dead device of a forced detach, whose guest
    // never let go: then the volume takes the next free one.
    let ports = std::iter::once(slot).chain((0..VOLUME_SLOTS).filter(|s| *s != slot));
    let mut refused = None;
    for port in ports {
        let arguments = json!({"addr": "0", "drive": id, "serial": id});
        let added = qmp
            .execute(qmp::device_add {
                bus: Some(slot_port(port)),
                id: Some(id.to_string()),
                driver: "virtio-blk-pci".into(),
                arguments: serde_json::from_value(arguments).map_err(|e| agent("device_add", e))?,
            })
            .await;
        match added {
            Ok(_) => return Ok(()),
            Err(e) => refused = Some(e),
        }
    }
    Err(agent(
        "device_add",
        refused.map_or_else(|| "no free slot".to_string(), |e| e.to_string()),
    ))
}

/// Asks the guest to let go of volume `id`, waits for it a while, then frees
/// the volume's nodes. Forced, a guest that holds on keeps a device that
/// reads zeros and drops writes, and the volume's file is closed.
pub async fn detach(qmp: &Qmp, id: &str, force: bool) -> Result<Detach, HostError> {
    if devices(qmp).await?.iter().any(|d| d == id) {
        // A second request while the first is pending is refused; either way
        // the guest has been asked.
        let _ = qmp.execute(qmp::device_del { id: id.to_string() }).await;
        let deadline = Instant::now() + DETACH_GRACE;
        while devices(qmp).await?.iter().any(|d| d == id) {
            if Instant::now() >= deadline {
                if !force {
                    return Ok(Detach::Pending);
                }
                cut_loose(qmp, id).await?;
                return Ok(Detach::Done);
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let nodes = node_names(qmp).await?;
    for node in [id.to_string(), format!("{id}-qcow2"), format!("{id}-gone")] {
        if nodes.contains(&node) {
            blockdev_del(qmp, &node).await?;
        }
    }
    Ok(Detach::Done)
}

/// Points the device of volume `id` at a null node and closes the volume's
/// file, for a guest that does not let go.
async fn cut_loose(qmp: &Qmp, id: &str) -> Result<(), HostError> {
    let nodes = node_names(qmp).await?;
    let qcow2 = format!("{id}-qcow2");
    let gone = format!("{id}-gone");
    if !nodes.contains(&qcow2) {
        return Ok(());
    }
    if !nodes.contains(&gone) {
        let size = qmp
            .execute(qmp::query_named_block_nodes { flat: Some(true) })
            .await
            .map_err(|e| agent("query-named-block-nodes", e))?
            .into_iter()
            .find(|n| n.node_name.as_deref() == Some(id))
            .map_or(0, |n| n.image.base.virtual_size);
        blockdev_add(
            qmp,
            json!({"driver": "null-co", "node-name": gone, "size": size, "read-zeroes": true}),
        )
        .await?;
    }
    let reopen = json!({"options": [{"driver": "raw", "node-name": id, "file": gone}]});
    let reopen: qmp::blockdev_reopen =
        serde_json::from_value(reopen).map_err(|e| agent("blockdev-reopen", e))?;
    qmp.execute(reopen)
        .await
        .map_err(|e| agent("blockdev-reopen", e))?;
    blockdev_del(qmp, &qcow2).await
}

/// Copies volume `id` of a running VM, as it is now, into the raw file
/// `target` (zeros left as holes), while the guest goes on writing.
pub async fn backup(qmp: &Qmp, id: &str, target: &Path, size: u64) -> Result<(), HostError> {
    let file = std::fs::File::create(target).map_err(|e| agent("snapshot copy", e))?;
    file.set_len(size).map_err(|e| agent("snapshot copy", e))?;
    drop(file);
    let node = format!("{id}-backup");
    let job = format!("{id}-backup");
    // A copy an earlier agent started (and died during) is dropped: this one
    // starts from the present.
    if node_names(qmp).await?.contains(&node) {
        let _ = qmp.execute(qmp::job_cancel { id: job.clone() }).await;
        while let Some(info) = job_info(qmp, &job).await? {
            if matches!(
                info.status,
                qmp::JobStatus::concluded | qmp::JobStatus::null
            ) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = qmp.execute(qmp::job_dismiss { id: job.clone() }).await;
        blockdev_del(qmp, &node).await?;
    }
    blockdev_add(
        qmp,
        json!({
            "driver": "raw",
            "node-name": node,
            "discard": "unmap",
            "detect-zeroes": "unmap",
            "file": {"driver": "file", "filename": target},
        }),
    )
    .await?;
    let result = run_backup(qmp, id, &node, &job).await;
    let _ = qmp.execute(qmp::job_dismiss { id: job }).await;
    blockdev_del(qmp, &node).await?;
    result
}

async fn run_backup(qmp: &Qmp, id: &str, node: &str, job: &str) -> Result<(), HostError> {
    let backup = json!({
        "job-id": job,
        "device": id,
        "target": node,
        "sync": "full",
        "auto-dismiss": false,
    });
    qmp.execute(qmp::blockdev_backup(
        serde_json::from_value(backup).map_err(|e| agent("blockdev-backup", e))?,
    ))
    .await
    .map_err(|e| agent("blockdev-backup", e))?;
    loop {
        let Some(info) = job_info(qmp, job).await? else {
            return Err(agent("snapshot copy", "the copy job vanished"));
        };
        if matches!(
            info.status,
            qmp::JobStatus::concluded | qmp::JobStatus::null
        ) {
            return match info.error {
                Some(e) => Err(agent("snapshot copy", e)),
                None => Ok(()),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn job_info(qmp: &Qmp, job: &str) -> Result<Option<qmp::JobInfo>, HostError> {
    let jobs = qmp
        .execute(qmp::query_jobs {})
        .await
        .map_err(|e| agent("query-jobs", e))?;
    Ok(jobs.into_iter().find(|j| j.id == job))
}

/// Copies the file of a volume no VM uses into the raw file `target`.
pub async fn copy_offline(dir: &Path, id: &str, target: &Path) -> Result<(), HostError> {
    run(
        tokio::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
            .arg(file(dir, id))
            .arg(target),
        "snapshot copy",
    )
    .await
}
