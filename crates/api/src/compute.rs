//! Compute: instance types, images and instances.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceType {
    /// e.g. `n1.nano`.
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Price of one running second, in billionths of the region's currency unit.
    pub price_per_second_nanos: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageVisibility {
    /// Offered by the region to every account.
    Public,
    /// Registered by, and visible to, one account.
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    /// Registered; its files are being uploaded.
    Pending,
    /// Ready to launch.
    Available,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub visibility: ImageVisibility,
    pub state: ImageState,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Accepted; being placed and booted.
    Pending,
    /// The guest signalled that it is up.
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    /// The VM died unexpectedly; `state_reason` says why.
    Failed,
}

impl InstanceState {
    pub const ALL: [InstanceState; 7] = [
        InstanceState::Pending,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::ShuttingDown,
        InstanceState::Terminated,
        InstanceState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub state: InstanceState,
    /// Why the instance is in its state, for `failed` and `terminated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The host it runs on, once placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    pub region: String,
    /// The key pair the instance was launched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The network it is attached to, and its address there (kept for life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// Whether the metadata service demands IMDSv2 session tokens.
    #[serde(default)]
    pub metadata_tokens: MetadataTokens,
    /// RFC 3339.
    pub launched_at: String,
    /// RFC 3339, last state change.
    pub state_changed_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// Image id or public image name (`nubo-micro`).
    #[schema(example = "nubo-micro")]
    pub image: String,
    #[schema(example = "n1.nano")]
    pub instance_type: String,
    /// How many identical instances, 1 to 100 (default 1); spread over hosts.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub count: Option<u32>,
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,128}$")]
    pub name: Option<String>,
    /// Script or cloud-config handed to the guest, at most 16 KiB.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Idempotency token: the same token with the same request returns the same
    /// instances instead of launching again.
    #[serde(default)]
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub client_token: Option<String>,
    /// Name of a key pair whose public key the guest installs.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Id or name of the network to join; the account's `default` one if absent.
    #[serde(default)]
    pub network: Option<String>,
    /// Ids or names of security groups of the network (at most 5); its
    /// `default` group if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 5)]
    pub security_groups: Option<Vec<String>>,
    /// `required`: the metadata service answers only IMDSv2 requests (with a
    /// session token); `optional` (default) answers both.
    #[serde(default)]
    pub metadata_tokens: Option<MetadataTokens>,
    /// GiB of the root volume, for images with a disk (default: the image
    /// disk's size); the guest grows its file system into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume_size_gib: Option<u64>,
    /// Keep the root volume as an ordinary volume when the instance terminates
    /// (default: it is deleted with the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_root_volume: Option<bool>,
    /// Boot from this available volume (a kept root volume) instead of a new
    /// copy of the image; `image` must be the image it started as. One instance only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume: Option<String>,
}

impl LaunchRequest {
    /// One instance of `image` and `instance_type`, everything else default.
    pub fn new(image: &str, instance_type: &str) -> LaunchRequest {
        LaunchRequest {
            image: image.into(),
            instance_type: instance_type.into(),
            count: None,
            name: None,
            user_data: None,
            client_token: None,
            key_name: None,
            network: None,
            security_groups: None,
            metadata_tokens: None,
            root_volume_size_gib: None,
            keep_root_volume: None,
            root_volume: None,
        }
    }
}

/// Whether an instance's metadata service demands session tokens (IMDSv2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetadataTokens {
    #[default]
    Optional,
    Required,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LaunchResponse {
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstanceListParams {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_page_token` of the previous page.
    #[param(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub page_token: Option<String>,
    /// Only instances in this state.
    pub state: Option<InstanceState>,
}

/// The end of an instance's serial console output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceConsole {
    pub instance_id: String,
    /// The console's last 64 KiB, as text (invalid UTF-8 replaced).
    pub output: String,
    /// True when earlier output was cut off.
    pub truncated: bool,
}

/// An SSH key pair; nubo keeps only its public half.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyPair {
    pub name: String,
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub key_type: String,
    /// OpenSSH SHA-256 fingerprint (`SHA256:…`).
    pub fingerprint: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyPairRequest {
    /// 1 to 255 letters, digits, `.`, `_` or `-`; unique in the account.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,255}$", example = "laptop")]
    pub name: String,
    /// An OpenSSH public key to import. Without it, nubo creates an ed25519 key
    /// pair and returns its private key, once.
    #[serde(default)]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedKeyPair {
    #[serde(flatten)]
    pub key_pair: KeyPair,
    /// OpenSSH private key, for created (not imported) key pairs; shown only here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// Registers a private image; its files are uploaded next, then it is completed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterImageRequest {
    /// 1 to 128 letters, digits, `.`, `_` or `-`; unique among the account's images.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$", example = "my-kernel")]
    pub name: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub description: Option<String>,
    /// Kernel command line, e.g. `console=ttyS0 root=/dev/vda`; at most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub cmdline: Option<String>,
    /// A line the guest prints on its serial console once it is up. Without one,
    /// an instance counts as running as soon as its VM starts. At most 128 characters.
    #[serde(default)]
    #[schema(max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub ready_marker: Option<String>,
    /// Format of the root disk, if the image has one (uploaded as part `disk`).
    #[serde(default)]
    pub disk_format: Option<DiskFormat>,
}

/// A part of a private image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImagePart {
    Kernel,
    Initrd,
    Disk,
}

impl ImagePart {
    pub const ALL: [ImagePart; 3] = [ImagePart::Kernel, ImagePart::Initrd, ImagePart::Disk];

    pub fn as_str(self) -> &'static str {
        match self {
            ImagePart::Kernel => "kernel",
            ImagePart::Initrd => "initrd",
            ImagePart::Disk => "disk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// An uploaded part of an image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageFile {
    pub part: ImagePart,
    pub bytes: u64,
    /// Hex SHA-256 of what was received.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The instance's TCP port, 1 to 65535.
    #[schema(minimum = 1, maximum = 65535, example = 22)]
    pub port: u16,
}

/// A TCP port of an instance, reachable on its host's address until the
/// instance is terminated.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedPort {
    pub instance_id: String,
    pub port: u16,
    /// `host:port` to connect to.
    pub address: String,
    /// RFC 3339.
    pub created_at: String,
}
