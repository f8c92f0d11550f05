//! Block storage: volumes, their attachments to instances, and snapshots kept
//! as content-addressed chunks in the region's object storage.
//!
//! The API records intent in the store and returns; the volume reconciler
//! (`reconciler`) drives the hosts that hold the volumes' files.

pub mod attachments;
pub mod chunks;
pub mod manage;
pub mod progress;
pub mod reconciler;
pub mod roots;
pub mod snapshots;

use std::collections::BTreeMap;

use nubo_api::volumes::{
    AttachState, Attachment, MAX_TAGS, Snapshot, SnapshotState, Volume, VolumeState,
};
use nubo_store::snapshots::SnapshotRow;
use nubo_store::volumes::VolumeRow;
use utoipa_axum::router::OpenApiRouter;

use crate::api::error::{ApiError, ApiResult};
use crate::clock::rfc3339;
use crate::state::AppState;

/// The largest volume, in GiB.
pub const MAX_SIZE_GIB: u64 = 16 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(manage::routes())
        .merge(attachments::routes())
        .merge(snapshots::routes())
}

pub fn gib(n: i64) -> u64 {
    n.max(0) as u64 * 1024 * 1024 * 1024
}

/// Where the guest finds an attached volume: udev names disks by serial, and
/// a volume's serial is its id.
pub fn device_path(volume_id: &str) -> String {
    format!("/dev/disk/by-id/virtio-{volume_id}")
}

pub fn tags_of(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).expect("a map of strings serializes")
}

pub fn validate_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!("at most {MAX_TAGS} tags")));
    }
    for (k, v) in tags {
        let printable = |s: &str| !s.chars().any(char::is_control);
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(ApiError::invalid(format!(
                "tag {k:?}: keys are 1 to 128 characters, values at most 256"
            )));
        }
        if !printable(k) || !printable(v) {
            return Err(ApiError::invalid(format!(
                "tag {k:?} holds control characters"
            )));
        }
    }
    Ok(())
}

pub fn validate_name(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

/// Checks an optional name and optional tags of a request.
pub fn validate_labels(
    name: Option<&String>,
    tags: Option<&BTreeMap<String, String>>,
) -> ApiResult<()> {
    if let Some(name) = name {
        validate_name(name)?;
    }
    match tags {
        Some(tags) => validate_tags(tags),
        None => Ok(()),
    }
}

pub fn validate_size(size_gib: u64) -> ApiResult<()> {
    if !(1..=MAX_SIZE_GIB).contains(&size_gib) {
        return Err(ApiError::invalid(format!(
            "size_gib must be between 1 and {MAX_SIZE_GIB}"
        )));
    }
    Ok(())
}

pub fn view(v: VolumeRow, region: &str) -> Volume {
    let attachment = match (
        &v.instance_id,
        v.attach_state.as_deref().and_then(AttachState::parse),
    ) {
        (Some(instance_id), Some(state)) => Some(Attachment {
            instance_id: instance_id.clone(),
            state,
            device: if v.is_root {
                "root".into()
            } else {
                device_path(&v.id)
            },
            delete_on_termination: v.delete_on_termination,
        }),
        _ => None,
    };
    // Only a restore copies anything while a volume is made.
    let progress_percent = v.snapshot_id.as_ref().map(|_| match v.state.as_str() {
        nubo_store::volumes::CREATING => v.progress.unwrap_or(0).clamp(0, 99) as u8,
        nubo_store::volumes::ERROR => v.progress.unwrap_or(0).clamp(0, 100) as u8,
        _ => 100,
    });
    Volume {
        progress_percent,
        name: v.name,
        size_gib: v.size_gib.max(0) as u64,
        state: VolumeState::parse(&v.state).unwrap_or(VolumeState::Error),
        state_reason: v.state_reason,
        host_id: v.host_id,
        bootable: v.image_id.is_some(),
        image_id: v.image_id,
        snapshot_id: v.snapshot_id,
        attachment,
        tags: tags_of(&v.tags),
        region: region.to_string(),
        created_at: rfc3339(v.created_at),
        id: v.id,
    }
}

pub fn snapshot_view(s: SnapshotRow, region: &str) -> Snapshot {
    let progress_percent = match s.state.as_str() {
        nubo_store::snapshots::PENDING => s.progress.unwrap_or(0).clamp(0, 99),
        nubo_store::snapshots::ERROR
        | nubo_store::snapshots::DELETING
        | nubo_store::snapshots::DELETED => s.progress.unwrap_or(0).clamp(0, 100),
        _ => 100,
    } as u8;
    Snapshot {
        progress_percent,
        volume_id: s.volume_id,
        volume_size_gib: s.volume_size_gib.max(0) as u64,
        description: s.description,
        state: SnapshotState::parse(&s.state).unwrap_or(SnapshotState::Error),
        state_reason: s.state_reason,
        stored_bytes: s.stored_bytes.max(0) as u64,
        tags: tags_of(&s.tags),
        region: region.to_string(),
        created_at: rfc3339(s.created_at),
        id: s.id,
    }
}
