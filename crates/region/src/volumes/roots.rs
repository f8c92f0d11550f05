//! Volumes and the life of their instances: the root volume an instance of a
//! disk image boots from, the volumes a VM gets when it starts, and what
//! becomes of them when it terminates.

use std::sync::Arc;

use nubo_api::quotas::QuotaResource;
use nubo_host::volumes::{Attached, Source, VolumeSpec};
use nubo_host::{HostAgent, HostError};
use nubo_store::images::ImageRow;
use nubo_store::instances::InstanceRow;
use nubo_store::volumes::{self as store, VolumeRow};
use nubo_store::{Conn, hosts, ids};

use super::{gib, validate_size};
use crate::api::error::{ApiError, ApiResult};
use crate::quotas;
use crate::state::AppState;

/// The size of an image's disk in GiB (rounded up), or `None` for an image
/// without one, which boots from its kernel and initrd alone.
pub fn image_disk_gib(image: &ImageRow) -> Option<u64> {
    let spec: serde_json::Value = serde_json::from_str(&image.spec).ok()?;
    let path = spec.get("disk")?.get("path")?.as_str()?;
    let bytes = nubo_host::qemu::volumes::virtual_size(std::path::Path::new(path)).unwrap_or(0);
    Some(bytes.div_ceil(1 << 30).max(1))
}

/// What a launch asks of root volumes.
pub struct RootRequest {
    pub size_gib: Option<u64>,
    pub keep: bool,
}

/// Checks a launch's root-volume request against its image and takes the
/// quota for `count` root volumes; returns the size of each (`None`: the
/// image has no disk).
pub async fn reserve(
    c: &mut Conn,
    state: &AppState,
    account_id: &str,
    image: &ImageRow,
    req: &RootRequest,
    count: u64,
) -> ApiResult<Option<u64>> {
    let Some(image_gib) = image_disk_gib(image) else {
        if req.size_gib.is_some() || req.keep {
            return Err(ApiError::invalid(format!(
                "image {} has no disk, so its instances have no root volume",
                image.name
            )));
        }
        return Ok(None);
    };
    let size = req.size_gib.unwrap_or(image_gib);
    validate_size(size)?;
    if size < image_gib {
        return Err(ApiError::invalid(format!(
            "root_volume_size_gib {size} is smaller than image {}'s disk ({image_gib} GiB)",
            image.name
        )));
    }
    let what = format!("{count} root volume(s) of {size} GiB");
    quotas::reserve(
        c,
        &state.config,
        account_id,
        QuotaResource::VolumeGib,
        count * size,
        &what,
    )
    .await?;
    Ok(Some(size))
}

/// Records the root volume of a new instance on its host, in the launch's
/// transaction. The instance's boot makes its file.
pub async fn insert(
    c: &mut Conn,
    instance: &InstanceRow,
    image: &ImageRow,
    size_gib: u64,
    keep: bool,
) -> ApiResult<VolumeRow> {
    let host = instance.host_id.clone().unwrap_or_default();
    if !hosts::allocate_disk(&mut *c, &host, size_gib as i64).await? {
        return Err(ApiError::new(
            nubo_api::error::ErrorCode::InsufficientCapacity,
            format!("host {host} has no disk left for a root volume of {size_gib} GiB"),
        ));
    }
    let row = VolumeRow {
        id: ids::new("vol"),
        account_id: instance.account_id.clone(),
        name: None,
        size_gib: size_gib as i64,
        host_id: Some(host),
        state: store::CREATING.into(),
        state_reason: None,
        image_id: Some(image.id.clone()),
        snapshot_id: None,
        instance_id: Some(instance.id.clone()),
        attach_state: Some(store::ATTACHED.into()),
        slot: None,
        is_root: true,
        delete_on_termination: !keep,
        force_detach: false,
        tags: "{}".into(),
        created_at: instance.launched_at,
        state_changed_at: instance.launched_at,
        version: 0,
        progress: None,
    };
    store::insert(c, &row).await?;
    Ok(row)
}

/// Makes an available bootable volume the root volume of a new instance.
pub async fn adopt(c: &mut Conn, volume: &VolumeRow, instance: &InstanceRow) -> ApiResult<()> {
    let next = VolumeRow {
        state: store::IN_USE.into(),
        instance_id: Some(instance.id.clone()),
        attach_state: Some(store::ATTACHED.into()),
        slot: None,
        is_root: true,
        delete_on_termination: false,
        state_changed_at: instance.launched_at,
        ..volume.clone()
    };
    store::update(c, volume, next)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::new(nubo_api::error::ErrorCode::Unavailable, "retry"))
}

/// The host an instance must start on: that of its volumes, if it has any.
pub async fn home(c: &mut Conn, instance_id: &str) -> nubo_store::Result<Option<String>> {
    Ok(store::of_instance(c, instance_id)
        .await?
        .into_iter()
        .find_map(|v| v.host_id))
}

/// The volumes a VM starts with: its root volume (made now, from its image,
/// if it is new) and the volumes attached to it.
pub async fn for_boot(
    state: &AppState,
    agent: &Arc<dyn HostAgent>,
    instance: &InstanceRow,
    image: &ImageRow,
) -> Result<(Option<String>, Vec<Attached>), String> {
    let volumes = {
        let mut c = state.store.conn().await.map_err(|e| e.to_string())?;
        store::of_instance(&mut c, &instance.id)
            .await
            .map_err(|e| e.to_string())?
    };
    let mut root = None;
    let mut attached = Vec::new();
    for v in volumes {
        if v.is_root {
            if v.state == store::CREATING {
                let spec = VolumeSpec {
                    id: v.id.clone(),
                    size_bytes: gib(v.size_gib),
                    source: Source::Image(image.spec.clone()),
                };
                agent.create_volume(spec).await.map_err(|e| match e {
                    HostError::BadImage(why) => why,
                    e => format!("its root volume could not be made: {e}"),
                })?;
                mark(state, &v, |next| next.state = store::IN_USE.into()).await;
            }
            root = Some(v.id);
        } else if matches!(
            v.attach_state.as_deref(),
            Some(store::ATTACHING | store::ATTACHED)
        ) && let Some(slot) = v.slot
        {
            attached.push(Attached {
                volume_id: v.id,
                slot: slot as u32,
            });
        }
    }
    Ok((root, attached))
}

/// Applies `change` to a volume in its own transaction; a stale row is left
/// for the reconciler's next look.
pub async fn mark(state: &AppState, v: &VolumeRow, change: impl FnOnce(&mut VolumeRow)) -> bool {
    let mut next = v.clone();
    change(&mut next);
    next.state_changed_at = state.clock.now_micros();
    let result: nubo_store::Result<bool> = async {
        let mut tx = state.store.begin().await?;
        let done = store::update(&mut tx, v, next).await?.is_some();
        if done {
            tx.commit().await?;
        }
        Ok(done)
    }
    .await;
    match result {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(volume_id = v.id, error = %e, "volume transition failed");
            false
        }
    }
}

/// An instance terminated: its volumes marked `delete_on_termination` (its
/// root volume, unless kept) go; the others are detached (its VM, and so
/// their devices, are gone).
pub async fn on_terminated(c: &mut Conn, instance_id: &str, at: i64) -> nubo_store::Result<()> {
    for v in store::of_instance(&mut *c, instance_id).await? {
        let delete = v.delete_on_termination;
        let next = VolumeRow {
            state: if delete {
                store::DELETING.into()
            } else if v.state == store::CREATING {
                // A root volume whose file was never made has nothing to keep.
                store::DELETING.into()
            } else {
                store::AVAILABLE.into()
            },
            instance_id: None,
            attach_state: None,
            slot: None,
            is_root: false,
            force_detach: false,
            state_changed_at: at,
            ..v.clone()
        };
        store::update(&mut *c, &v, next).await?;
    }
    Ok(())
}
