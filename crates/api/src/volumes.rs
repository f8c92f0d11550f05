//! Block volumes and their snapshots. A volume's data outlives the instances
//! it is attached to; a snapshot's outlives the volume and its host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

/// Tags a resource may hold: up to 50, keys of 1 to 128 characters and values
/// of at most 256, neither with control characters.
pub const MAX_TAGS: usize = 50;

/// The schema of a request's tags, with the limits above.
fn tags_schema() -> ObjectBuilder {
    let printable = |max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(max))
            .pattern(Some("^[^\\x00-\\x1F\\x7F-\\x9F]*$"))
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(printable(128).min_length(Some(1))))
        .additional_properties(Some(printable(256)))
        .max_properties(Some(MAX_TAGS))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeState {
    /// Its file is being made (blank, from an image, or from a snapshot).
    Creating,
    /// Ready to attach.
    Available,
    /// Attached to an instance (or being attached or detached).
    InUse,
    /// Being grown; available again when done.
    Resizing,
    Deleting,
    Deleted,
    /// Its creation failed; `state_reason` says why. It can only be deleted.
    Error,
}

impl VolumeState {
    pub const ALL: [VolumeState; 7] = [
        VolumeState::Creating,
        VolumeState::Available,
        VolumeState::InUse,
        VolumeState::Resizing,
        VolumeState::Deleting,
        VolumeState::Deleted,
        VolumeState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::InUse => "in-use",
            VolumeState::Resizing => "resizing",
            VolumeState::Deleting => "deleting",
            VolumeState::Deleted => "deleted",
            VolumeState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttachState {
    Attaching,
    Attached,
    Detaching,
}

impl AttachState {
    pub fn parse(s: &str) -> Option<Self> {
        [
            AttachState::Attaching,
            AttachState::Attached,
            AttachState::Detaching,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttachState::Attaching => "attaching",
            AttachState::Attached => "attached",
            AttachState::Detaching => "detaching",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    pub instance_id: String,
    pub state: AttachState,
    /// Where the guest finds it: `/dev/disk/by-id/virtio-<volume id>` (the
    /// disk's serial is the volume id), or `root` for the disk it boots from.
    pub device: String,
    /// It is deleted when the instance terminates.
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size_gib: u64,
    pub state: VolumeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The host that holds it; it attaches to instances on that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// The image a root volume started as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The snapshot it was restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// For a volume restored from a snapshot, how far the restore has come:
    /// 100 once it is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// It holds an operating system an instance can boot from.
    pub bootable: bool,
    pub tags: BTreeMap<String, String>,
    pub region: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    /// GiB, 1 to 16384; at least the snapshot's size when restoring (default: the
    /// snapshot's size).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16384, example = 1)]
    pub size_gib: Option<u64>,
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,128}$")]
    pub name: Option<String>,
    /// Restore this snapshot into the new volume.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Up to 50 tags; keys 1 to 128 characters, values up to 256.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVolumeRequest {
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,128}$")]
    pub name: Option<String>,
    /// Grows the volume (never shrinks it); only while it is not attached.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16384)]
    pub size_gib: Option<u64>,
    /// Replaces the volume's tags.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Whether it goes when its instance terminates.
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachVolumeRequest {
    pub instance_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachVolumeRequest {
    /// Pull the volume even if the guest does not let go of it (a hung guest);
    /// the guest's unwritten data is lost.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotState {
    /// Being copied into object storage.
    Pending,
    Completed,
    Deleting,
    Deleted,
    /// Taking it failed; `state_reason` says why.
    Error,
}

impl SnapshotState {
    pub fn parse(s: &str) -> Option<Self> {
        [
            SnapshotState::Pending,
            SnapshotState::Completed,
            SnapshotState::Deleting,
            SnapshotState::Deleted,
            SnapshotState::Error,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Deleting => "deleting",
            SnapshotState::Deleted => "deleted",
            SnapshotState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: String,
    /// The volume's size when the snapshot was taken.
    pub volume_size_gib: u64,
    pub description: String,
    pub state: SnapshotState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Bytes of data it holds (all-zero ranges take none); chunks it shares
    /// with other snapshots of the volume are stored once.
    pub stored_bytes: u64,
    /// How far its copy has come: 100 once completed.
    pub progress_percent: u8,
    pub tags: BTreeMap<String, String>,
    pub region: String,
    /// RFC 3339: the point in time it copies.
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    pub volume_id: String,
    /// At most 256 characters.
    #[serde(default)]
    #[schema(max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotListParams {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_page_token` of the previous page.
    #[param(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub page_token: Option<String>,
    /// Only snapshots of this volume.
    pub volume_id: Option<String>,
}
