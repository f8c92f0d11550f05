//! nubo volume … and nubo snapshot …

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nubo_api::volumes::{
    AttachVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest, DetachVolumeRequest, Snapshot,
    SnapshotState, UpdateVolumeRequest, Volume, VolumeState,
};
use serde::de::DeserializeOwned;

use crate::args::{Output, SnapshotCommand, VolumeCommand, Wait};
use crate::client::{Client, ClientError};
use crate::commands::{Context, all_pages};
use crate::output::{note, opt, print, print_record};
use crate::progress::Progress;

const HEADERS: &[&str] = &[
    "id", "name", "size_gib", "state", "instance", "device", "host", "reason",
];
const SNAPSHOT_HEADERS: &[&str] = &[
    "id",
    "volume",
    "size_gib",
    "state",
    "stored_mib",
    "created_at",
    "reason",
];

fn row(v: &Volume) -> Vec<String> {
    let attachment = v.attachment.as_ref();
    vec![
        v.id.clone(),
        opt(&v.name),
        v.size_gib.to_string(),
        match attachment {
            Some(a) => format!("{} ({})", v.state.as_str(), a.state.as_str()),
            None => v.state.as_str().into(),
        },
        opt(&attachment.map(|a| a.instance_id.clone())),
        opt(&attachment.map(|a| a.device.clone())),
        opt(&v.host_id),
        v.state_reason.clone().unwrap_or_default(),
    ]
}

fn snapshot_row(s: &Snapshot) -> Vec<String> {
    vec![
        s.id.clone(),
        s.volume_id.clone(),
        s.volume_size_gib.to_string(),
        s.state.as_str().into(),
        format!("{:.1}", s.stored_bytes as f64 / (1 << 20) as f64),
        s.created_at.clone(),
        s.state_reason.clone().unwrap_or_default(),
    ]
}

fn tag_list(tags: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(", ")
}

/// One volume with every field whole.
fn print_volume(out: Output, v: &Volume) -> Result<(), ClientError> {
    let attachment = v.attachment.as_ref();
    print_record(
        out,
        v,
        vec![
            ("id", v.id.clone()),
            ("name", opt(&v.name)),
            ("size_gib", v.size_gib.to_string()),
            ("state", v.state.as_str().into()),
            ("state_reason", opt(&v.state_reason)),
            ("instance", opt(&attachment.map(|a| a.instance_id.clone()))),
            (
                "attachment",
                opt(&attachment.map(|a| a.state.as_str().into())),
            ),
            ("device", opt(&attachment.map(|a| a.device.clone()))),
            ("host", opt(&v.host_id)),
            ("image", opt(&v.image_id)),
            ("snapshot", opt(&v.snapshot_id)),
            ("bootable", v.bootable.to_string()),
            ("tags", tag_list(&v.tags)),
            ("created", v.created_at.clone()),
        ],
    )
}

/// One snapshot with every field whole.
fn print_snapshot(out: Output, s: &Snapshot) -> Result<(), ClientError> {
    print_record(
        out,
        s,
        vec![
            ("id", s.id.clone()),
            ("volume", s.volume_id.clone()),
            ("size_gib", s.volume_size_gib.to_string()),
            ("state", s.state.as_str().into()),
            ("state_reason", opt(&s.state_reason)),
            ("description", s.description.clone()),
            ("stored_bytes", s.stored_bytes.to_string()),
            ("progress", format!("{}%", s.progress_percent)),
            ("tags", tag_list(&s.tags)),
            ("created", s.created_at.clone()),
        ],
    )
}

fn tags(pairs: Vec<(String, String)>) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

/// What a wait shows of a volume or a snapshot.
trait Shown {
    fn id(&self) -> &str;
    fn state(&self) -> String;
    /// How far its copy has come, while one runs.
    fn copying(&self) -> Option<u8>;
}

impl Shown for Volume {
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> String {
        match &self.attachment {
            Some(a) => format!("{} ({})", self.state.as_str(), a.state.as_str()),
            None => self.state.as_str().into(),
        }
    }
    fn copying(&self) -> Option<u8> {
        self.progress_percent
            .filter(|_| self.state == VolumeState::Creating)
    }
}

impl Shown for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> String {
        self.state.as_str().into()
    }
    fn copying(&self) -> Option<u8> {
        (self.state == SnapshotState::Pending).then_some(self.progress_percent)
    }
}

/// Polls `path` until `done` says the resource arrived (`Ok(true)`) or
/// cannot (`Err`).
async fn wait_until<T: DeserializeOwned + Shown>(
    client: &Client,
    out: Output,
    path: &str,
    mut current: T,
    wait: Wait,
    what: &str,
    done: impl Fn(&T) -> Result<bool, String>,
) -> Result<T, ClientError> {
    if !wait.wait {
        return Ok(current);
    }
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    let mut delay = Duration::from_millis(50);
    let waiting = format!("{} to be {what}", current.id());
    let mut progress = Progress::start(out, &waiting);
    loop {
        progress.reached(current.id(), &current.state());
        if let Some(percent) = current.copying() {
            progress.waiting_for(format!("{waiting}: {percent}% copied"));
        }
        if done(&current).map_err(ClientError::Other)? {
            return Ok(current);
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Other(format!(
                "gave up after {} s waiting for {path} to be {what}",
                wait.timeout
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_millis(500));
        current = client.get(path).await?;
    }
}

/// Polls `path` until it is not found any more.
async fn wait_gone(
    client: &Client,
    out: Output,
    path: &str,
    wait: Wait,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    let mut progress = Progress::start(out, &format!("{path} to go"));
    loop {
        let read = client.get::<Volume>(path).await;
        if let Ok(v) = &read {
            progress.reached(&v.id, &v.state());
        }
        match read {
            Err(ClientError::Api(f)) if f.status == 404 => return Ok(()),
            Err(e) => return Err(e),
            Ok(v) if v.state == VolumeState::Error => {
                return Err(ClientError::Other(format!(
                    "volume {} failed: {}",
                    v.id,
                    v.state_reason.as_deref().unwrap_or("no reason given")
                )));
            }
            Ok(_) if Instant::now() >= deadline => {
                return Err(ClientError::Other(format!(
                    "gave up after {} s waiting for {path} to go",
                    wait.timeout
                )));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A volume is settled in `target`; `error` (or a reason while it went back)
/// ends the wait.
fn volume_is(
    target: VolumeState,
    attached: Option<bool>,
) -> impl Fn(&Volume) -> Result<bool, String> {
    move |v| {
        if v.state == VolumeState::Error {
            return Err(format!(
                "volume {} failed: {}",
                v.id,
                v.state_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        let settled = match (attached, &v.attachment) {
            (Some(true), Some(a)) => a.state == nubo_api::volumes::AttachState::Attached,
            (Some(true), None) => {
                return Err(format!(
                    "volume {} was not attached: {}",
                    v.id,
                    v.state_reason.as_deref().unwrap_or("no reason given")
                ));
            }
            (Some(false), Some(a)) if a.state == nubo_api::volumes::AttachState::Attached => {
                return Err(format!(
                    "volume {} is still attached: {}",
                    v.id,
                    v.state_reason.as_deref().unwrap_or("no reason given")
                ));
            }
            (Some(false), a) => a.is_none(),
            (None, _) => true,
        };
        Ok(settled && v.state == target)
    }
}

pub async fn run(ctx: &Context, cmd: VolumeCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    let path = |id: &str| format!("/v1/volumes/{id}");
    let volume = match cmd {
        VolumeCommand::List => {
            let page = all_pages::<Volume>(&client, "/v1/volumes").await?;
            return print(out, &page, HEADERS, page.items.iter().map(row).collect());
        }
        VolumeCommand::Create {
            size,
            name,
            from_snapshot,
            tags: t,
            wait,
        } => {
            let req = CreateVolumeRequest {
                size_gib: size,
                name,
                snapshot_id: from_snapshot,
                tags: tags(t),
            };
            let v: Volume = client.post("/v1/volumes", &req).await?;
            let p = path(&v.id);
            let check = volume_is(VolumeState::Available, None);
            wait_until(&client, out, &p, v, wait, "available", check).await?
        }
        VolumeCommand::Show { volume_id } => {
            let v: Volume = client.get(&path(&volume_id)).await?;
            return print_volume(out, &v);
        }
        VolumeCommand::Attach {
            volume_id,
            instance,
            wait,
        } => {
            let req = AttachVolumeRequest {
                instance_id: instance,
            };
            let p = path(&volume_id);
            let v: Volume = client.post(&format!("{p}/attach"), &req).await?;
            let check = volume_is(VolumeState::InUse, Some(true));
            wait_until(&client, out, &p, v, wait, "attached", check).await?
        }
        VolumeCommand::Detach {
            volume_id,
            force,
            wait,
        } => {
            let p = path(&volume_id);
            let v: Volume = client
                .post(&format!("{p}/detach"), &DetachVolumeRequest { force })
                .await?;
            let check = volume_is(VolumeState::Available, Some(false));
            wait_until(&client, out, &p, v, wait, "detached", check).await?
        }
        VolumeCommand::Resize {
            volume_id,
            size,
            wait,
        } => {
            let req = UpdateVolumeRequest {
                size_gib: Some(size),
                ..Default::default()
            };
            let p = path(&volume_id);
            let v: Volume = client.patch(&p, &req).await?;
            let check = volume_is(VolumeState::Available, None);
            wait_until(&client, out, &p, v, wait, "available", check).await?
        }
        VolumeCommand::Tag { volume_id, tags: t } => {
            let req = UpdateVolumeRequest {
                tags: Some(t.into_iter().collect()),
                ..Default::default()
            };
            client.patch(&path(&volume_id), &req).await?
        }
        VolumeCommand::Delete { volume_id, wait } => {
            let p = path(&volume_id);
            let v: Volume = client.delete(&p).await?;
            if wait.wait {
                wait_gone(&client, out, &p, wait).await?;
                if out == Output::Table {
                    note(format!("deleted volume {volume_id}"));
                    return Ok(());
                }
            }
            // Gone, it cannot be read again: the answer to the delete.
            v
        }
    };
    print(out, &volume, HEADERS, vec![row(&volume)])
}

pub async fn snapshots(ctx: &Context, cmd: SnapshotCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    let snapshot: Snapshot = match cmd {
        SnapshotCommand::List { volume } => {
            let path = match volume {
                Some(v) => format!("/v1/snapshots?volume_id={v}"),
                None => "/v1/snapshots".into(),
            };
            let page = all_pages::<Snapshot>(&client, &path).await?;
            let rows = page.items.iter().map(snapshot_row).collect();
            return print(out, &page, SNAPSHOT_HEADERS, rows);
        }
        SnapshotCommand::Create {
            volume_id,
            description,
            tags: t,
            wait,
        } => {
            let req = CreateSnapshotRequest {
                volume_id,
                description,
                tags: tags(t),
            };
            let s: Snapshot = client.post("/v1/snapshots", &req).await?;
            let path = format!("/v1/snapshots/{}", s.id);
            wait_until(
                &client,
                out,
                &path,
                s,
                wait,
                "completed",
                |s: &Snapshot| match s.state {
                    SnapshotState::Completed => Ok(true),
                    SnapshotState::Error => Err(format!(
                        "snapshot {} failed: {}",
                        s.id,
                        s.state_reason.as_deref().unwrap_or("no reason given")
                    )),
                    _ => Ok(false),
                },
            )
            .await?
        }
        SnapshotCommand::Show { snapshot_id } => {
            let s: Snapshot = client.get(&format!("/v1/snapshots/{snapshot_id}")).await?;
            return print_snapshot(out, &s);
        }
        SnapshotCommand::Delete { snapshot_id } => {
            client
                .delete(&format!("/v1/snapshots/{snapshot_id}"))
                .await?
        }
    };
    print(
        out,
        &snapshot,
        SNAPSHOT_HEADERS,
        vec![snapshot_row(&snapshot)],
    )
}
