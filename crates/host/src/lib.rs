//! The host agent: everything the region asks of one machine.
//!
//! The region never knows which driver it talks to. Each operation is idempotent
//! and keyed by instance id, so the region can repeat any of them after a crash
//! (its own, the agent's, or a VMM's) and converge.

pub mod network_state;
pub mod qemu;
pub mod sim;
pub mod volumes;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The last `max` bytes of a file, or `None` when it does not exist.
pub fn tail_of_file(path: &std::path::Path, max: usize) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(max as u64);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut out = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut out).ok()?;
    Some(out)
}

/// What a host offers to instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// What the region asks a host to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub instance_id: String,
    pub instance_type: String,
    /// The region's name, which the guest learns from the metadata service.
    pub region: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The image's boot description, as the region stores it (driver-specific JSON).
    pub image: String,
    pub user_data: Option<String>,
    pub hostname: String,
    /// OpenSSH public keys the guest installs for its default user.
    pub ssh_public_keys: Vec<String>,
    /// Its interface on a tenant network, if it has one.
    pub nic: Option<Nic>,
    /// The volume it boots from (images with a disk), held by this host.
    pub root_volume: Option<String>,
    /// Volumes attached to it when it starts.
    pub volumes: Vec<volumes::Attached>,
    /// Its metadata service answers only requests with an IMDSv2 token.
    pub metadata_tokens_required: bool,
}

/// A VM's interface on a tenant network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub network_id: String,
    /// `a.b.c.d/n`: the VM's address and its network's prefix length.
    pub address: String,
    /// The network's gateway, which the host keeps on the network's bridge.
    pub gateway: String,
    /// Locally administered, derived from the instance id.
    pub mac: String,
    /// The network as it stands when the VM starts (tunnels, security groups).
    pub network: network_state::NetworkState,
}

/// A VM's state as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// The VMM runs; the guest has not yet said it is up.
    Booting,
    /// The guest said it is up.
    Running,
    /// Asked to shut down; not yet down.
    Stopping,
    /// Shut down cleanly; the VMM is gone.
    Stopped,
    /// The VMM died or the guest crashed; the reason is for the user.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    pub instance_id: String,
    pub state: VmState,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the host has no room for this VM: {0}")]
    NoRoom(String),
    #[error("the image cannot be booted here: {0}")]
    BadImage(String),
    #[error("host agent: {0}")]
    Agent(String),
    /// The host cannot do this at all (not a transient failure).
    #[error("{0}")]
    Unsupported(String),
    /// Stored data failed its checksum.
    #[error("{0}")]
    Corrupt(String),
}

/// The interface between the region and a host.
pub trait HostAgent: Send + Sync {
    /// The host's stable name (its registry key).
    fn name(&self) -> &str;

    /// `sim`, `qemu`, …
    fn driver(&self) -> &'static str;

    fn capacity(&self) -> Capacity;

    /// Creates and boots the VM unless it exists already.
    fn start(&self, spec: VmSpec) -> BoxFuture<'_, Result<(), HostError>>;

    /// Asks the guest to shut down; done when it reports `Stopped`.
    fn stop<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>>;

    /// Resets the guest; it reports `Booting`, then `Running` again.
    fn reboot<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>>;

    /// Removes the VM and everything it holds on the host; absent VMs are done.
    fn destroy<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>>;

    /// The state of one VM; `None` when the host has no such VM.
    fn status<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<VmState>, HostError>>;

    /// The end of the VM's serial console output (at most `max` bytes); `None`
    /// when the host has no such VM.
    fn console<'a>(
        &'a self,
        instance_id: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, HostError>>;

    /// Forwards TCP connections to a port of the host's address to `port` of
    /// the VM, and returns that address. The same VM port keeps its host port;
    /// the forwarding ends with the VM.
    fn publish<'a>(
        &'a self,
        instance_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<std::net::SocketAddr, HostError>>;

    /// Makes `state` the state of network `network_id` on this host (its
    /// tunnels and security groups), if the host has the network; a state older
    /// than the one the host applied is ignored.
    fn network<'a>(
        &'a self,
        network_id: &'a str,
        state: network_state::NetworkState,
    ) -> BoxFuture<'a, Result<(), HostError>>;

    /// This host's end of the tunnels that carry networks between hosts:
    /// `None` for a host that runs alone.
    fn underlay(&self) -> Option<std::net::Ipv4Addr>;

    /// Makes a volume's file unless it exists.
    fn create_volume(&self, spec: volumes::VolumeSpec) -> BoxFuture<'_, Result<(), HostError>>;

    /// Makes a volume's file from a snapshot's chunks, checking each, unless
    /// the file exists; then grows it to `spec.size_bytes`.
    fn restore_volume(
        &self,
        spec: volumes::VolumeSpec,
        manifest: volumes::Manifest,
        chunks: std::sync::Arc<dyn volumes::ChunkStore>,
    ) -> BoxFuture<'_, Result<(), HostError>>;

    /// Grows a volume that no VM uses to `size_bytes`; a larger one stays.
    fn resize_volume<'a>(
        &'a self,
        volume_id: &'a str,
        size_bytes: u64,
    ) -> BoxFuture<'a, Result<(), HostError>>;

    /// Removes a volume's file; an absent one is done.
    fn delete_volume<'a>(&'a self, volume_id: &'a str) -> BoxFuture<'a, Result<(), HostError>>;

    /// Plugs a volume into a running VM; done if it is plugged in already.
    fn attach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume: volumes::Attached,
    ) -> BoxFuture<'a, Result<(), HostError>>;

    /// Asks the guest to let go of a volume (and pulls it out when `force` and
    /// the guest did not within a grace period); repeat until `Done`. A VM
    /// that is not running holds no volume.
    fn detach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume_id: &'a str,
        force: bool,
    ) -> BoxFuture<'a, Result<volumes::Detach, HostError>>;

    /// The volumes plugged into a running VM now (a guest may unplug one
    /// itself); `None` when the VM does not run here.
    fn attached_volumes<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, HostError>>;

    /// Copies a volume as it is at this moment into `chunks` (while
    /// `instance_id`'s guest may write to it) and returns the snapshot's chunks.
    fn snapshot_volume<'a>(
        &'a self,
        volume_id: &'a str,
        instance_id: Option<&'a str>,
        chunks: std::sync::Arc<dyn volumes::ChunkStore>,
    ) -> BoxFuture<'a, Result<volumes::Manifest, HostError>>;

    /// Every VM the host has.
    fn list(&self) -> BoxFuture<'_, Result<Vec<VmStatus>, HostError>>;

    /// State changes as they happen. A receiver that lags must call `list`.
    fn subscribe(&self) -> broadcast::Receiver<VmStatus>;
}
