//! Volumes on a QEMU host: files in the host's volumes folder, plugged into
//! VMs as virtio-blk-pci devices on PCIe root ports (see docs/volumes.md).
//!
//! A volume's file is raw (`vol-X.raw`, sparse: blank volumes and restored
//! snapshots), or qcow2 (`vol-X.qcow2`) when it is a copy-on-write copy of an
//! image's disk (root volumes), which only qcow2 can be.
//!
//! In a VM, volume `vol-X` is three things, all named after it so that every
//! step can tell whether it is done already: the format node `vol-X-disk`, a
//! raw node `vol-X` on top of it (the device's drive; its child can be
//! swapped, which is how a forced detach cuts the file loose from a guest
//! that does not let go), and the device `vol-X`, whose serial is the volume
//! id.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qapi::qmp;
use serde_json::json;

use super::Qmp;
use super::command::{VOLUME_SLOTS, slot_port};
use crate::HostError;
use crate::volumes::{Attached, Detach, Source, VolumeSpec};

/// How long a detach waits for the guest before it reports `Pending` (or,
/// forced, pulls the volume). Linux takes 5 s (pciehp's grace period) and a
/// little more.
const DETACH_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
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

/// The folder of a host's volumes.
#[derive(Debug, Clone)]
pub struct VolumeDir {
    path: PathBuf,
    /// VMs reach the files with O_DIRECT, past the host's page cache (which
    /// would hold a second copy of what guests cache, and hide the disk's real
    /// speed); only where the file system allows it. I/O goes through QEMU's
    /// thread pool, not native AIO, which blocks on the first writes into a
    /// sparse file (allocation): measured under TCG with 4 writers, 875 MiB/s
    /// with native AIO against 1652 MiB/s with threads.
    direct: bool,
}

impl VolumeDir {
    /// Makes the folder and finds out whether its file system takes O_DIRECT.
    pub fn open(path: PathBuf) -> std::io::Result<VolumeDir> {
        std::fs::create_dir_all(&path)?;
        let probe = path.join(".direct-probe");
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&probe)
            .is_ok();
        let _ = std::fs::remove_file(&probe);
        if !direct {
            tracing::warn!(dir = %path.display(), "volumes go through the page cache: no O_DIRECT here");
        }
        Ok(VolumeDir { path, direct })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a volume's file of `format` is.
    pub fn file(&self, id: &str, format: Format) -> PathBuf {
        self.path.join(format!("{id}.{}", format.name()))
    }

    /// The volume's file, if it exists, and its format.
    pub fn find(&self, id: &str) -> Option<(PathBuf, Format)> {
        [Format::Raw, Format::Qcow2]
            .into_iter()
            .map(|f| (self.file(id, f), f))
            .find(|(p, _)| p.exists())
    }

    fn found(&self, id: &str) -> Result<(PathBuf, Format), HostError> {
        self.find(id)
            .ok_or_else(|| HostError::Agent(format!("no volume {id} on this host")))
    }

    /// Makes the volume's file unless it is there: written beside it, then
    /// renamed, so that a crash never leaves a half-made volume under its name.
    pub async fn create(&self, spec: &VolumeSpec) -> Result<(), HostError> {
        if self.find(&spec.id).is_some() {
            return Ok(());
        }
        match &spec.source {
            Source::Blank => {
                let target = self.file(&spec.id, Format::Raw);
                let partial = target.with_extension("partial");
                std::fs::File::create(&partial)
                    .and_then(|f| f.set_len(spec.size_bytes))
                    .and_then(|()| std::fs::rename(&partial, &target))
                    .map_err(|e| agent("making the volume", e))
            }
            Source::Image(image) => {
                let image = super::command::ImageSpec::parse(image)?;
                let disk = image.disk.ok_or_else(|| {
                    HostError::BadImage("the image has no disk to make a root volume of".into())
                })?;
                let base = virtual_size(&disk.path).map_err(|e| agent("image disk", e))?;
                let target = self.file(&spec.id, Format::Qcow2);
                let partial = target.with_extension("partial");
                let mut cmd = tokio::process::Command::from(super::command::overlay(
                    &disk.path,
                    &disk.format,
                    &partial,
                ));
                cmd.arg(spec.size_bytes.max(base).to_string());
                run(&mut cmd, "making the volume").await?;
                std::fs::rename(&partial, &target).map_err(|e| agent("making the volume", e))
            }
        }
    }

    /// Where a restore writes the snapshot's bytes before they become the volume.
    pub fn restoring(&self, id: &str) -> PathBuf {
        self.file(id, Format::Raw).with_extension("restoring")
    }

    /// Makes the restored copy (`restoring`) the volume's file, grown to its size.
    pub fn restored(&self, spec: &VolumeSpec) -> Result<(), HostError> {
        let copy = self.restoring(&spec.id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .map_err(|e| agent("restoring the volume", e))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) < spec.size_bytes {
            file.set_len(spec.size_bytes)
                .map_err(|e| agent("restoring the volume", e))?;
        }
        file.sync_all()
            .and_then(|()| std::fs::rename(&copy, self.file(&spec.id, Format::Raw)))
            .map_err(|e| agent("restoring the volume", e))
    }

    /// Grows a volume no VM uses; a larger one stays.
    pub async fn resize(&self, id: &str, size_bytes: u64) -> Result<(), HostError> {
        let (path, format) = self.found(id)?;
        let now = virtual_size(&path).map_err(|e| agent("volume size", e))?;
        if size_bytes <= now {
            return Ok(());
        }
        match format {
            Format::Raw => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(size_bytes))
                .map_err(|e| agent("growing the volume", e)),
            Format::Qcow2 => {
                run(
                    tokio::process::Command::new("qemu-img")
                        .args(["resize", "-q", "-f", "qcow2"])
                        .arg(&path)
                        .arg(size_bytes.to_string()),
                    "growing the volume",
                )
                .await
            }
        }
    }

    pub fn delete(&self, id: &str) -> Result<(), HostError> {
        for format in [Format::Raw, Format::Qcow2] {
            let path = self.file(id, format);
            for p in [
                path.with_extension("partial"),
                path.with_extension("restoring"),
                path,
            ] {
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(agent("deleting the volume", e));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The format node of a volume, for `-blockdev` or QMP's blockdev-add.
    fn disk_node(&self, id: &str, path: &Path, format: Format) -> serde_json::Value {
        let file = json!({"driver": "file", "filename": path});
        json!({
            "driver": format.name(),
            "node-name": format!("{id}-disk"),
            "discard": "unmap",
            "cache": {"direct": self.direct},
            "file": file,
        })
    }

    /// The `-blockdev`/`-device` arguments that plug volumes in at boot: the
    /// root volume on virtio-mmio (the disk the image's kernel boots from),
    /// the others on their slots.
    pub fn boot_args(
        &self,
        root: Option<&str>,
        attached: &[Attached],
    ) -> Result<Vec<String>, HostError> {
        let mut args = Vec::new();
        let mut nodes = |id: &str| -> Result<(), HostError> {
            let (path, format) = self.found(id)?;
            args.push("-blockdev".to_string());
            args.push(self.disk_node(id, &path, format).to_string());
            args.push("-blockdev".to_string());
            args.push(
                json!({"driver": "raw", "node-name": id, "file": format!("{id}-disk")}).to_string(),
            );
            Ok(())
        };
        for id in root
            .into_iter()
            .chain(attached.iter().map(|a| a.volume_id.as_str()))
        {
            nodes(id)?;
        }
        if let Some(id) = root {
            args.extend([
                "-device".to_string(),
                format!("virtio-blk-device,drive={id}"),
            ]);
        }
        for a in attached {
            args.extend([
                "-device".to_string(),
                format!(
                    "virtio-blk-pci,bus={},addr=0,drive={id},id={id},serial={id}",
                    slot_port(a.slot),
                    id = a.volume_id
                ),
            ]);
        }
        Ok(args)
    }

    /// Plugs volume `id` into slot `slot` of a running VM; each step is
    /// skipped when it is done already.
    pub async fn attach(&self, qmp: &Qmp, id: &str, slot: u32) -> Result<(), HostError> {
        let (path, format) = self.found(id)?;
        let nodes = node_names(qmp).await?;
        let disk = format!("{id}-disk");
        if !nodes.contains(&disk) {
            blockdev_add(qmp, self.disk_node(id, &path, format)).await?;
        }
        if !nodes.iter().any(|n| n == id) {
            blockdev_add(qmp, json!({"driver": "raw", "node-name": id, "file": disk})).await?;
        }
        if devices(qmp).await?.iter().any(|d| d == id) {
            return Ok(());
        }
        plug(qmp, id, slot).await
    }

    /// A raw point-in-time copy of a volume no VM uses: the raw file itself
    /// (the caller keeps VMs off it meanwhile), or a copy of a qcow2 one in
    /// `scratch`. Whether the returned file is that copy.
    pub async fn offline_copy(
        &self,
        id: &str,
        scratch: &Path,
    ) -> Result<(PathBuf, bool), HostError> {
        match self.found(id)? {
            (path, Format::Raw) => Ok((path, false)),
            (path, Format::Qcow2) => {
                run(
                    tokio::process::Command::new("qemu-img")
                        .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
                        .arg(&path)
                        .arg(scratch),
                    "snapshot copy",
                )
                .await?;
                Ok((scratch.to_path_buf(), true))
            }
        }
    }
}

async fn nodes(qmp: &Qmp) -> Result<Vec<qmp::BlockDeviceInfo>, HostError> {
    qmp.execute(qmp::query_named_block_nodes { flat: Some(true) })
        .await
        .map_err(|e| agent("query-named-block-nodes", e))
}

async fn node_names(qmp: &Qmp) -> Result<Vec<String>, HostError> {
    Ok(nodes(qmp)
        .await?
        .into_iter()
        .filter_map(|n| n.node_name)
        .collect())
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

/// Adds volume `id`'s device on port `slot`.
async fn plug(qmp: &Qmp, id: &str, slot: u32) -> Result<(), HostError> {
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
    for node in [id.to_string(), format!("{id}-disk"), format!("{id}-gone")] {
        if nodes.contains(&node) {
            blockdev_del(qmp, &node).await?;
        }
    }
    Ok(Detach::Done)
}

/// Points the device of volume `id` at a null node and closes the volume's
/// file, for a guest that does not let go.
async fn cut_loose(qmp: &Qmp, id: &str) -> Result<(), HostError> {
    let nodes = nodes(qmp).await?;
    let node = |name: &str| nodes.iter().find(|n| n.node_name.as_deref() == Some(name));
    let disk = format!("{id}-disk");
    let gone = format!("{id}-gone");
    if node(&disk).is_none() {
        return Ok(());
    }
    if node(&gone).is_none() {
        let size = node(id).map_or(0, |n| n.image.base.virtual_size);
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
    blockdev_del(qmp, &disk).await
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
