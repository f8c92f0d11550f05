//! bench/volumes: block I/O inside a guest on a nubo volume, beside the same
//! test (`nubo-bench io`, this very binary) on the host against a file in the
//! folder where the host keeps its volumes, and in a bare QEMU guest booted by
//! hand on nubo's command line with a volume file of its own, in the same run;
//! then snapshot and restore throughput of the data the guest wrote.
//!
//! The guests are debian-12 (its glibc runs this binary, copied in over SSH).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nubo_api::compute::{
    CreateKeyPairRequest, CreatedKeyPair, Instance, LaunchRequest, LaunchResponse, PublishRequest,
    PublishedPort,
};
use nubo_api::volumes::{
    AttachState, AttachVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest, Snapshot,
    SnapshotState, Volume, VolumeState,
};
use nubo_cli::Client;

use nubo_host::qemu::accel::{self, AccelChoice};
use nubo_host::qemu::volumes::VolumeDir;
use nubo_host::volumes::{Attached, Source, VolumeSpec};

use crate::io::Figures;
use crate::launch::{Bare, BareVm, image_spec, wait_state};
use crate::region::Region;

/// What each side writes sequentially, then reads.
const SIZE_MIB: u64 = 1024;
/// How long each random test runs.
const RANDOM_SECONDS: u64 = 10;
const VOLUME_GIB: u64 = 2;
/// The target: sequential I/O in the guest at least this share of the host's.
const SEQ_TARGET: f64 = 0.8;
const WAIT: Duration = Duration::from_secs(600);

fn e(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// SSH to the guest as `debian` through its published port.
struct Guest {
    key: PathBuf,
    port: String,
}

impl Guest {
    fn options(&self) -> Vec<String> {
        [
            "-i",
            &self.key.display().to_string(),
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
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn run(&self, command: &str) -> Result<String, String> {
        let out = Command::new("ssh")
            .args(self.options())
            .args(["-p", &self.port, "debian@127.0.0.1", command])
            .output()
            .map_err(|e| format!("ssh: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ssh {command:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn copy_in(&self, file: &Path, to: &str) -> Result<(), String> {
        let out = Command::new("scp")
            .args(self.options())
            .args(["-P", &self.port])
            .arg(file)
            .arg(format!("debian@127.0.0.1:{to}"))
            .output()
            .map_err(|e| format!("scp: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scp: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Polls `path` until `done`, failing on `error` or after `WAIT`.
async fn poll<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    done: impl Fn(&T) -> Result<bool, String>,
) -> Result<T, String> {
    let started = Instant::now();
    loop {
        let v: T = client.get(path).await.map_err(e)?;
        if done(&v)? {
            return Ok(v);
        }
        if started.elapsed() > WAIT {
            return Err(format!("{path} did not settle within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn volume_ready(v: &Volume) -> Result<bool, String> {
    match v.state {
        VolumeState::Error => Err(format!("{} failed: {:?}", v.id, v.state_reason)),
        state => Ok(state == VolumeState::Available),
    }
}

/// Waits until the guest answers SSH.
async fn reachable(guest: &Guest, what: &str) -> Result<(), String> {
    let started = Instant::now();
    while guest.run("true").is_err() {
        if started.elapsed() > WAIT {
            return Err(format!("{what} never accepted SSH"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Runs the I/O test in the guest on `device`.
async fn measure_in(guest: &Guest, device: &str) -> Result<Figures, String> {
    let me = std::env::current_exe().map_err(e)?;
    guest.copy_in(&me, "/tmp/nubo-bench")?;
    let started = Instant::now();
    while guest.run(&format!("test -e {device}")).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{device} never appeared in the guest"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = guest.run(&format!(
        "sudo /tmp/nubo-bench io --path {device} --size-mib {SIZE_MIB} --seconds {RANDOM_SECONDS}"
    ))?;
    Figures::from_json(&out)
}

/// The same test in debian-12 booted by hand on nubo's command line, with a
/// volume file made and plugged in as nubo's driver does, reached through
/// QEMU's user-mode network (cloud-init gets the key from this binary, which
/// answers its metadata requests).
async fn in_bare(
    images: &Path,
    dir: &Path,
    key: &Path,
    public_key: &str,
) -> Result<Figures, String> {
    let image = image_spec(&images.join("debian-12"))?;
    let volumes = VolumeDir::open(dir.join("bare-volumes")).map_err(e)?;
    let volume = "vol-0000000000000000";
    volumes
        .create(&VolumeSpec {
            id: volume.into(),
            size_bytes: VOLUME_GIB << 30,
            source: Source::Blank,
        })
        .await
        .map_err(e)?;
    let plugged = Attached {
        volume_id: volume.into(),
        slot: 0,
    };
    let key_file = dir.join("bare-key.pub");
    std::fs::write(&key_file, public_key).map_err(e)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(e)?
        .port();
    let id = BareVm::next_id();
    let me = std::env::current_exe().map_err(e)?;
    // A comma in a QEMU option value is doubled.
    let serve =
        format!("{} imds-stdio {id} {}", me.display(), key_file.display()).replace(',', ",,");
    let mut extra = vec![
        "-netdev".to_string(),
        format!(
            "user,id=nic0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15,\
             guestfwd=tcp:169.254.169.254:80-cmd:{serve},hostfwd=tcp:127.0.0.1:{port}-:22"
        ),
        "-device".into(),
        "virtio-net-device,netdev=nic0".into(),
    ];
    extra.extend(volumes.boot_args(None, &[plugged]).map_err(e)?);
    let (accel, _) = accel::choose(AccelChoice::Auto);
    let _vm = Bare {
        memory_mib: 1024,
        extra,
        ..Bare::new(&image, accel)
    }
    .start(&id)?;
    let guest = Guest {
        key: key.to_path_buf(),
        port: port.to_string(),
    };
    reachable(&guest, "the bare VM").await?;
    let figures = measure_in(&guest, &format!("/dev/disk/by-id/virtio-{volume}")).await;
    let _ = volumes.delete(volume);
    figures
}

/// A debian-12 instance with the key, reachable by SSH; and the key's public half.
async fn guest(client: &Client, dir: &Path) -> Result<(Instance, Guest, String), String> {
    let pair: CreatedKeyPair = client
        .post(
            "/v1/key-pairs",
            &CreateKeyPairRequest {
                name: "bench".into(),
                public_key: None,
            },
        )
        .await
        .map_err(e)?;
    let key = dir.join("bench-key");
    std::fs::write(&key, pair.private_key.unwrap_or_default()).map_err(e)?;
    let public_key = pair.key_pair.public_key;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(e)?;
    let request = LaunchRequest {
        key_name: Some("bench".into()),
        ..LaunchRequest::new("debian-12", "n1.small")
    };
    let launched: LaunchResponse = client.post("/v1/instances", &request).await.map_err(e)?;
    let id = launched.instances[0].id.clone();
    let instance = wait_state(client, &id, "running").await?;
    let published: PublishedPort = client
        .post(
            &format!("/v1/instances/{id}/ports"),
            &PublishRequest { port: 22 },
        )
        .await
        .map_err(e)?;
    let port = published
        .address
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .ok_or("no port")?;
    let guest = Guest { key, port };
    reachable(&guest, &id).await?;
    Ok((instance, guest, public_key))
}

/// One figure of a side's I/O test.
type Measure = fn(&Figures) -> f64;

struct Copies {
    snapshot_mib_s: f64,
    restore_mib_s: f64,
    data_mib: f64,
}

/// Snapshots the volume (attached, with what the guest wrote), then restores
/// the snapshot into a new volume; MiB of data per second each way.
async fn copies(client: &Client, volume: &str) -> Result<Copies, String> {
    let started = Instant::now();
    let s: Snapshot = client
        .post(
            "/v1/snapshots",
            &CreateSnapshotRequest {
                volume_id: volume.into(),
                ..Default::default()
            },
        )
        .await
        .map_err(e)?;
    let s: Snapshot = poll(
        client,
        &format!("/v1/snapshots/{}", s.id),
        |s: &Snapshot| match s.state {
            SnapshotState::Error => Err(format!("snapshot failed: {:?}", s.state_reason)),
            state => Ok(state == SnapshotState::Completed),
        },
    )
    .await?;
    let took_snapshot = started.elapsed();
    let started = Instant::now();
    let v: Volume = client
        .post(
            "/v1/volumes",
            &CreateVolumeRequest {
                snapshot_id: Some(s.id.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(e)?;
    poll(client, &format!("/v1/volumes/{}", v.id), volume_ready).await?;
    let took_restore = started.elapsed();
    let data_mib = s.stored_bytes as f64 / (1 << 20) as f64;
    Ok(Copies {
        snapshot_mib_s: data_mib / took_snapshot.as_secs_f64(),
        restore_mib_s: data_mib / took_restore.as_secs_f64(),
        data_mib,
    })
}

/// The I/O test on a nubo volume, and its snapshot and restore; and the
/// guest's public key.
async fn in_guest(client: &Client, dir: &Path) -> Result<(Figures, Copies, String), String> {
    let (instance, guest, public_key) = guest(client, dir).await?;
    eprintln!("debian-12 guest up");
    let v: Volume = client
        .post(
            "/v1/volumes",
            &CreateVolumeRequest {
                size_gib: Some(VOLUME_GIB),
                ..Default::default()
            },
        )
        .await
        .map_err(e)?;
    let path = format!("/v1/volumes/{}", v.id);
    poll(client, &path, volume_ready).await?;
    let _: Volume = client
        .post(
            &format!("{path}/attach"),
            &AttachVolumeRequest {
                instance_id: instance.id.clone(),
            },
        )
        .await
        .map_err(e)?;
    poll(client, &path, |v: &Volume| {
        Ok(v.attachment.as_ref().map(|a| a.state) == Some(AttachState::Attached))
    })
    .await?;
    let figures = measure_in(&guest, &format!("/dev/disk/by-id/virtio-{}", v.id)).await?;
    eprintln!("guest measured");
    let copies = copies(client, &v.id).await?;
    eprintln!("snapshot and restore measured");
    Ok((figures, copies, public_key))
}

fn on_host(volumes_dir: &Path) -> Result<Figures, String> {
    std::fs::create_dir_all(volumes_dir).map_err(e)?;
    let file = volumes_dir.join("bench-host-io.raw");
    let figures = crate::io::measure(&file, SIZE_MIB << 20, Duration::from_secs(RANDOM_SECONDS));
    let _ = std::fs::remove_file(&file);
    figures
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let images = crate::flag(args, "--images").ok_or("--images DIR is required")?;
    let runtime = tokio::runtime::Runtime::new().map_err(e)?;
    let extra = ["--hypervisor", "qemu", "--images-dir", images];
    let region = Region::start(nubod, "", None, &extra)?;
    let volumes_dir = region.dir.join("data/volumes");
    let host_before = on_host(&volumes_dir)?;
    eprintln!("host measured");
    let client = runtime.block_on(region.signed_up("volumes-bench@example.com"))?;
    let (guest, copies, public_key) = runtime.block_on(in_guest(&client, &region.dir))?;
    let images = Path::new(images);
    let key = region.dir.join("bench-key");
    let bare = runtime.block_on(in_bare(images, &region.dir, &key, &public_key))?;
    eprintln!("bare QEMU guest measured");
    let host_after = on_host(&volumes_dir)?;
    eprintln!("host measured again");
    let mean = |f: fn(&Figures) -> f64| (f(&host_before) + f(&host_after)) / 2.0;
    let host = Figures {
        seq_write_mib_s: mean(|f| f.seq_write_mib_s),
        seq_read_mib_s: mean(|f| f.seq_read_mib_s),
        rand_write_iops: mean(|f| f.rand_write_iops),
        rand_read_iops: mean(|f| f.rand_read_iops),
    };

    println!();
    println!(
        "bench/volumes: O_DIRECT I/O on a {VOLUME_GIB} GiB volume in a debian-12 guest (n1.small, \
         under the host's accelerator), beside a bare QEMU guest on nubo's command line and the \
         host on a file in its volumes folder (mean of a run before and after)"
    );
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "", "nubo", "bare QEMU", "host", "nubo/host", "nubo/bare"
    );
    let pick: [(&str, Measure); 4] = [
        ("seq write 1 MiB, MiB/s", |f| f.seq_write_mib_s),
        ("seq read 1 MiB, MiB/s", |f| f.seq_read_mib_s),
        ("rand write 4 KiB, IOPS", |f| f.rand_write_iops),
        ("rand read 4 KiB, IOPS", |f| f.rand_read_iops),
    ];
    let rows: Vec<(&str, f64, f64, f64)> = pick
        .iter()
        .map(|(name, f)| (*name, f(&guest), f(&bare), f(&host)))
        .collect();
    for (name, g, b, h) in &rows {
        println!(
            "{name:<26} {g:>10.1} {b:>10.1} {h:>10.1} {:>11.3} {:>11.3}",
            g / h.max(1e-9),
            g / b.max(1e-9)
        );
    }
    println!();
    println!(
        "snapshot of {:.0} MiB of data (attached volume, into object storage): {:.1} MiB/s; \
         restore into a new volume: {:.1} MiB/s",
        copies.data_mib, copies.snapshot_mib_s, copies.restore_mib_s
    );
    println!();
    println!("against the target (ratio > 1 meets it):");
    for (name, g, b, h) in &rows[..2] {
        let ratio = g / h.max(1e-9);
        println!(
            "  {name}: {ratio:.3} of the host vs >= {SEQ_TARGET}: {:.2}x (the bare QEMU guest: {:.3})",
            ratio / SEQ_TARGET,
            b / h.max(1e-9)
        );
    }
    Ok(())
}
