//! The QEMU driver: one `qemu-system-x86_64` process per instance, machine type
//! `microvm`, controlled over QMP.
//!
//! VMs outlive the agent: QEMU daemonizes, and everything about a VM lives in its
//! folder (`<state dir>/<instance id>/`: QMP socket, pid file, console log), so a
//! restarted agent re-adopts the VMs that still run and reports the ones that died
//! in between. Readiness is the guest's own word: the image's ready marker on the
//! serial console.

pub mod accel;
mod cgroup;
pub mod command;
mod console;
pub mod faults;
mod metadata;
pub mod network;
mod networks;
mod publish;
mod teardown;
pub mod volumes;

pub use self::teardown::{Removed, teardown};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use qapi::futures::{QapiEvents, QapiService, QmpStreamTokio};
use qapi::qmp;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use self::accel::{Accel, AccelChoice};
use self::cgroup::Cgroups;
use self::command::{ImageSpec, Launch, VmFiles, process_name};
use self::console::ConsoleScan;
use self::faults::{Faults, Step};
use self::network::Port;
use crate::network_state::NetworkState;
use crate::volumes::{Attached, ChunkStore, Detach, Manifest, VolumeSpec};
use crate::{BoxFuture, Capacity, HostAgent, HostError, VmSpec, VmState, VmStatus};

type Qmp = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;
type QmpEvents = QapiEvents<QmpStreamTokio<ReadHalf<UnixStream>>>;

/// How often a booting VM's console is read for its ready marker.
const CONSOLE_POLL: Duration = Duration::from_millis(10);
const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Power button presses while a VM is stopping, and their interval.
const POWER_BUTTON_PRESSES: u32 = 10;
const POWER_BUTTON_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The host's name in the region's registry.
    pub name: String,
    pub binary: PathBuf,
    /// Where VM folders live.
    pub state_dir: PathBuf,
    pub accel: AccelChoice,
    /// TCG translation cache per VM, in MiB.
    pub tcg_tb_size_mib: u32,
    /// vCPUs offered per host CPU.
    pub vcpu_overcommit: u32,
    /// Host memory kept back from guests, in MiB.
    pub memory_reserve_mib: u64,
    pub disk_gib: u64,
    /// The host address published VM ports are reached on.
    pub publish_address: std::net::IpAddr,
    /// How it builds its networks' namespaces.
    pub fabric: network::Fabric,
    /// Faults to inject, for tests (see `faults`).
    pub fault_file: Option<PathBuf>,
}

impl QemuConfig {
    pub fn new(name: String, state_dir: PathBuf) -> QemuConfig {
        QemuConfig {
            name,
            binary: PathBuf::from("qemu-system-x86_64"),
            state_dir,
            accel: AccelChoice::Auto,
            tcg_tb_size_mib: 16,
            vcpu_overcommit: 16,
            memory_reserve_mib: 1024,
            disk_gib: 100,
            publish_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            fabric: network::Fabric::default(),
            fault_file: None,
        }
    }
}

/// What the agent wants of a VM, which decides what its process ending means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Run,
    Stop,
    Destroy,
}

struct Vm {
    files: VmFiles,
    /// Its port on a tenant network, if it has one.
    port: Option<Port>,
    state: VmState,
    pid: Option<u32>,
    qmp: Option<Arc<Qmp>>,
    intent: Intent,
    watcher: Option<AbortHandle>,
}

struct Inner {
    config: QemuConfig,
    accel: Accel,
    tsc_khz: Option<u64>,
    cgroups: Cgroups,
    capacity: Capacity,
    vms: Mutex<HashMap<String, Vm>>,
    events: broadcast::Sender<VmStatus>,
    /// The tenant networks here; taken while one converges.
    networks: tokio::sync::Mutex<networks::Networks>,
    faults: Faults,
    /// Where this host's volumes are.
    volumes: volumes::VolumeDir,
    /// The metadata service of each network namespace here.
    metadata: Mutex<HashMap<String, AbortHandle>>,
    /// What the metadata services answer.
    documents: metadata::Directory,
    /// The relays of published ports, by VM.
    published: Mutex<HashMap<String, Vec<(publish::Port, AbortHandle)>>>,
}

pub struct QemuHost {
    inner: Arc<Inner>,
}

impl QemuHost {
    /// Starts the agent: picks the accelerator and re-adopts the VMs in the state dir.
    pub async fn start(config: QemuConfig) -> Result<QemuHost, HostError> {
        if !is_executable(&config.binary) {
            return Err(HostError::Agent(format!(
                "{} not found: install Debian's qemu-system-x86 (cargo xtask up does), \
                 or run nubod --hypervisor sim",
                config.binary.display()
            )));
        }
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| HostError::Agent(format!("{}: {e}", config.state_dir.display())))?;
        let volumes = volumes::VolumeDir::open(volumes_dir(&config.state_dir))
            .map_err(|e| HostError::Agent(format!("volumes folder: {e}")))?;
        let (accel, why) = accel::choose(config.accel);
        tracing::info!(host = config.name, accel = accel.name(), "{why}");
        let cgroups = Cgroups::detect();
        if let Cgroups::Unavailable(why) = &cgroups {
            tracing::warn!("VMs run without their own cgroups: {why}");
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let capacity = Capacity {
            vcpus: cpus * config.vcpu_overcommit.max(1),
            memory_mib: host_memory_mib().saturating_sub(config.memory_reserve_mib),
            disk_gib: config.disk_gib,
        };
        let host = QemuHost {
            inner: Arc::new(Inner {
                accel,
                tsc_khz: accel::tsc_khz(),
                networks: tokio::sync::Mutex::default(),
                faults: Faults::new(config.fault_file.clone()),
                volumes,
                metadata: Mutex::default(),
                documents: metadata::Directory::default(),
                published: Mutex::default(),
                cgroups,
                capacity,
                vms: Mutex::default(),
                events: broadcast::channel(4096).0,
                config,
            }),
        };
        host.adopt().await;
        networks::repair(Arc::downgrade(&host.inner));
        Ok(host)
    }

    pub fn accel(&self) -> Accel {
        self.inner.accel
    }

    /// Re-adopts what an earlier agent left: live VMs are watched again, dead ones
    /// are reported failed, folders of VMs that never started are removed, and
    /// cgroups no VM owns go.
    async fn adopt(&self) {
        let dir = &self.inner.config.state_dir;
        let entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        for path in entries {
            let Some(id) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let files = VmFiles { dir: path.clone() };
            let Some(pid) = read_pid(&files.pidfile()) else {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            };
            if !pid_is_vm(pid, &id) {
                self.inner.insert(
                    &id,
                    Vm {
                        port: read_port(&files),
                        files,
                        state: VmState::Failed(
                            "the VM process exited while its host agent was down".into(),
                        ),
                        pid: None,
                        qmp: None,
                        intent: Intent::Run,
                        watcher: None,
                    },
                );
                continue;
            }
            let marker = read_marker(&files);
            let booted = marker
                .as_ref()
                .is_none_or(|m| ConsoleScan::from(files.console(), 0, m).found());
            match connect_qmp(&files.qmp()).await {
                Ok((qmp, events)) => {
                    // A crash between its start and its cgroup left it in none.
                    if let Some((vcpus, memory_mib)) = read_limits(&files)
                        && let Err(e) = self.inner.cgroups.place(&id, pid, vcpus, memory_mib)
                    {
                        tracing::warn!(instance_id = id, error = %e, "no cgroup for the VM");
                    }
                    let state = if booted {
                        VmState::Running
                    } else {
                        VmState::Booting
                    };
                    let scan = marker
                        .as_ref()
                        .filter(|_| !booted)
                        .map(|m| ConsoleScan::from(files.console(), 0, m));
                    self.inner.insert(
                        &id,
                        Vm {
                            port: read_port(&files),
                            files,
                            state,
                            pid: Some(pid),
                            qmp: Some(Arc::new(qmp)),
                            intent: Intent::Run,
                            watcher: None,
                        },
                    );
                    self.inner
                        .clone()
                        .watch(&id, events, scan, marker.unwrap_or_default());
                    tracing::info!(instance_id = id, pid, "re-adopted a running VM");
                }
                Err(e) => {
                    tracing::warn!(instance_id = id, pid, error = %e, "cannot reach a VM's QMP");
                    kill(pid);
                    self.inner.insert(
                        &id,
                        Vm {
                            port: read_port(&files),
                            files,
                            state: VmState::Failed("its VMM stopped answering".into()),
                            pid: None,
                            qmp: None,
                            intent: Intent::Run,
                            watcher: None,
                        },
                    );
                }
            }
        }
        // The running VMs' published ports come back on the same host ports.
        let running: Vec<(String, PathBuf)> = self
            .inner
            .vms()
            .iter()
            .filter(|(_, vm)| vm.pid.is_some())
            .map(|(id, vm)| (id.clone(), vm.files.published()))
            .collect();
        for (id, path) in running {
            let ports: Vec<publish::Port> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for p in ports {
                if let Err(e) = self.inner.publish(&id, p.guest, p.host.port()).await {
                    tracing::warn!(instance_id = id, error = %e, "published port lost");
                }
            }
        }
        // The running VMs' metadata comes back, and every network this host
        // made is converged on what its VMs still hold: finished where a
        // crash left it half made, taken away where no VM needs it.
        let mut networks: std::collections::BTreeMap<String, Option<NetworkState>> =
            self.inner.owned_networks().into_iter().collect();
        for vm in self.inner.vms().values() {
            if let Some(port) = &vm.port {
                let ns = network::namespace(&self.inner.config.fabric.prefix, &port.network_id);
                self.inner.documents.load(&ns, &vm.files);
                networks.entry(port.network_id.clone()).or_default();
            }
        }
        for (network_id, state) in networks {
            let _ = self.inner.converge_network(&network_id, state, false).await;
        }
        let known: Vec<String> = self.inner.vms().keys().cloned().collect();
        for name in self.inner.cgroups.names() {
            if !known.contains(&name) {
                self.inner.cgroups.remove(&name);
            }
        }
    }
}

/// Where a host's volumes live, beside its VMs' folders.
pub fn volumes_dir(state_dir: &Path) -> PathBuf {
    sibling(state_dir, "volumes")
}

/// A folder of a host beside its VMs' folders, named `kind` the way the VMs'
/// is named `vms` (`vms` → `volumes`, `vms-1` → `volumes-1`), so that hosts
/// sharing a machine share none.
fn sibling(state_dir: &Path, kind: &str) -> PathBuf {
    let name = state_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match name.strip_prefix("vms") {
        Some(rest) => format!("{kind}{rest}"),
        None => format!("{name}-{kind}"),
    };
    state_dir.with_file_name(name)
}

/// The vCPUs and memory (MiB) a VM's folder records.
fn read_limits(files: &VmFiles) -> Option<(u32, u32)> {
    let json = std::fs::read(files.limits()).ok()?;
    serde_json::from_slice(&json).ok()
}

/// The port a VM's folder records, if it has one.
fn read_port(files: &VmFiles) -> Option<Port> {
    let json = std::fs::read(files.port()).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Whether `binary` (a path, or a name looked up in PATH) can be run.
fn is_executable(binary: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if binary.components().count() > 1 {
        return runnable(binary);
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| runnable(&dir.join(binary))))
}

fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_marker(files: &VmFiles) -> Option<String> {
    std::fs::read_to_string(files.marker()).ok()
}

/// Whether `pid` is the QEMU of instance `id` (not a reused pid, not a zombie).
fn pid_is_vm(pid: u32, id: &str) -> bool {
    let name = process_name(id);
    has_arg(pid, |arg| String::from_utf8_lossy(arg).contains(&name))
}

/// Whether live process `pid` has an argument that `matches`: how a pid from
/// a file is told from a reused one. A zombie has no arguments left.
pub(crate) fn has_arg(pid: impl std::fmt::Display, matches: impl Fn(&[u8]) -> bool) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(matches))
}

fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Waits until `pid` is no longer the VM's process; false on timeout.
async fn wait_gone(pid: u32, id: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_is_vm(pid, id) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

async fn connect_qmp(socket: &Path) -> std::io::Result<(Qmp, QmpEvents)> {
    let mut last = None;
    for _ in 0..100 {
        match QmpStreamTokio::open_uds(socket).await {
            Ok(negotiation) => {
                let stream = negotiation.negotiate().await?;
                return Ok(stream.into_parts());
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("QMP socket never appeared")))
}

impl Inner {
    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vm>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: &str, vm: Vm) {
        self.vms().insert(id.to_string(), vm);
    }

    /// Records a VM's new state and tells the region.
    fn set_state(&self, id: &str, state: VmState) {
        let mut vms = self.vms();
        let Some(vm) = vms.get_mut(id) else { return };
        if vm.state == state {
            return;
        }
        vm.state = state.clone();
        drop(vms);
        let _ = self.events.send(VmStatus {
            instance_id: id.to_string(),
            state,
        });
    }

    /// Follows one VM: its QMP events, its console while it boots, and the end of
    /// its process.
    fn watch(
        self: Arc<Self>,
        id: &str,
        mut events: QmpEvents,
        mut scan: Option<ConsoleScan>,
        marker: String,
    ) {
        let inner = self.clone();
        let watched = id.to_string();
        let task = tokio::spawn(async move {
            let id = watched;
            let mut guest_shut_down = false;
            let console = inner.vms().get(&id).map(|vm| vm.files.console());
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(qmp::Event::SHUTDOWN { data, .. })) => {
                            guest_shut_down |= data.guest;
                        }
                        Some(Ok(qmp::Event::RESET { .. })) => {
                            match &console {
                                Some(console) if !marker.is_empty() => {
                                    scan = Some(ConsoleScan::from_end(console.clone(), &marker));
                                    inner.set_state(&id, VmState::Booting);
                                }
                                _ => inner.set_state(&id, VmState::Running),
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(instance_id = id, error = %e, "QMP stream ended");
                            break;
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep(CONSOLE_POLL), if scan.is_some() => {
                        if scan.as_mut().is_some_and(ConsoleScan::found) {
                            scan = None;
                            inner.set_state(&id, VmState::Running);
                        }
                    }
                }
            }
            inner.exited(&id, guest_shut_down).await;
        });
        if let Some(vm) = self.vms().get_mut(id) {
            vm.watcher = Some(task.abort_handle());
        }
    }

    /// The VM's QMP connection closed: its process is ending.
    async fn exited(&self, id: &str, guest_shut_down: bool) {
        let (pid, intent) = match self.vms().get_mut(id) {
            Some(vm) => {
                vm.qmp = None;
                (vm.pid.take(), vm.intent)
            }
            None => return,
        };
        if let Some(pid) = pid
            && !wait_gone(pid, id, Duration::from_secs(5)).await
        {
            kill(pid);
        }
        self.cgroups.remove(id);
        let state = match intent {
            Intent::Destroy => return,
            Intent::Stop => VmState::Stopped,
            Intent::Run if guest_shut_down => VmState::Stopped,
            Intent::Run => VmState::Failed("the VM process exited unexpectedly".into()),
        };
        self.set_state(id, state);
    }

    /// Presses the power button again while the VM is stopping: a guest that was
    /// not yet listening (still booting) misses a single press.
    fn press_again(self: Arc<Self>, id: String, qmp: Arc<Qmp>) {
        tokio::spawn(async move {
            for _ in 0..POWER_BUTTON_PRESSES {
                tokio::time::sleep(POWER_BUTTON_EVERY).await;
                let stopping = self
                    .vms()
                    .get(&id)
                    .is_some_and(|vm| vm.state == VmState::Stopping);
                if !stopping || qmp.execute(qmp::system_powerdown {}).await.is_err() {
                    return;
                }
            }
        });
    }

    fn qmp(&self, id: &str) -> Option<Arc<Qmp>> {
        self.vms().get(id).and_then(|vm| vm.qmp.clone())
    }

    async fn launch(self: Arc<Self>, spec: VmSpec) -> Result<(), HostError> {
        let image = ImageSpec::parse(&spec.image)?;
        let files = VmFiles {
            dir: self.config.state_dir.join(&spec.instance_id),
        };
        let agent = |what: &str, e: &dyn std::fmt::Display| {
            HostError::Agent(format!("{what} for {}: {e}", spec.instance_id))
        };
        std::fs::create_dir_all(&files.dir).map_err(|e| agent("VM folder", &e))?;
        if let Some(marker) = &image.ready_marker {
            std::fs::write(files.marker(), marker).map_err(|e| agent("VM folder", &e))?;
        }
        if image.disk.is_some() && spec.root_volume.is_none() {
            return Err(HostError::BadImage(
                "an image with a disk boots from a root volume, and none was given".into(),
            ));
        }
        let limits = serde_json::to_vec(&(spec.vcpus, spec.memory_mib))
            .map_err(|e| agent("VM folder", &e))?;
        std::fs::write(files.limits(), limits).map_err(|e| agent("VM folder", &e))?;
        if let Some(user_data) = &spec.user_data {
            std::fs::write(files.user_data(), user_data).map_err(|e| agent("user-data", &e))?;
        }
        if !spec.ssh_public_keys.is_empty() {
            let keys = spec.ssh_public_keys.join("\n") + "\n";
            std::fs::write(files.public_keys(), keys).map_err(|e| agent("public keys", &e))?;
        }
        let launch = Launch {
            binary: &self.config.binary,
            accel: self.accel,
            tcg_tb_size_mib: self.config.tcg_tb_size_mib,
            tsc_khz: self.tsc_khz,
            spec: &spec,
            image: &image,
            files: &files,
            disks: self
                .volumes
                .boot_args(spec.root_volume.as_deref(), &spec.volumes)?,
        };
        let log = std::fs::File::create(files.log()).map_err(|e| agent("QEMU log", &e))?;
        let scan = image
            .ready_marker
            .as_ref()
            .map(|marker| ConsoleScan::from_end(files.console(), marker));
        let mut cmd = launch.command();
        if let Some(nic) = &spec.nic {
            let port = Port::of(&spec.instance_id, nic)?;
            let json = serde_json::to_vec(&port).map_err(|e| agent("port", &e))?;
            std::fs::write(files.port(), json).map_err(|e| agent("VM folder", &e))?;
            // Before QEMU starts, so that the VM never sends or receives unfiltered.
            self.converge_network(&port.network_id, Some(nic.network.clone()), true)
                .await
                .map_err(|e| match e {
                    HostError::Agent(why) => agent("network", &why),
                    other => other,
                })?;
            let ns = network::namespace(&self.config.fabric.prefix, &port.network_id);
            let document = metadata::Document {
                instance_id: spec.instance_id.clone(),
                instance_type: spec.instance_type.clone(),
                hostname: spec.hostname.clone(),
                local_ipv4: port.address.to_string(),
                mac: port.mac.clone(),
                region: spec.region.clone(),
                public_keys: spec.ssh_public_keys.clone(),
                user_data: spec.user_data.clone(),
                tokens_required: spec.metadata_tokens_required,
            };
            let json = serde_json::to_vec(&document).map_err(|e| agent("metadata", &e))?;
            std::fs::write(files.metadata(), json).map_err(|e| agent("VM folder", &e))?;
            self.documents.insert(&ns, document);
            // QEMU opens the tap from inside the network's namespace.
            let mut inside = std::process::Command::new("ip");
            inside
                .args(["netns", "exec", &ns])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            cmd = inside;
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        // With -daemonize, this process exits once the VM is set up; the VM
        // itself continues, reparented away from the agent.
        let status = tokio::time::timeout(SPAWN_TIMEOUT, cmd.status())
            .await
            .map_err(|_| agent("QEMU start", &"timed out"))?
            .map_err(|e| agent("QEMU start", &e))?;
        if !status.success() {
            let log = std::fs::read_to_string(files.log()).unwrap_or_default();
            return Err(HostError::Agent(format!(
                "QEMU exited with {status}: {}",
                log.trim()
            )));
        }
        let pid = read_pid(&files.pidfile()).ok_or_else(|| agent("QEMU start", &"no pid file"))?;
        // Recorded at once: a start that fails from here on is undone by
        // `destroy`, which ends the process.
        match self.vms().get_mut(&spec.instance_id) {
            Some(vm) => vm.pid = Some(pid),
            None => {
                // Destroyed while starting.
                kill(pid);
                return Ok(());
            }
        }
        self.faults.at(Step::QemuExec)?;
        self.cgroups
            .place(&spec.instance_id, pid, spec.vcpus, spec.memory_mib)
            .map_err(|e| agent("cgroup", &e))?;
        self.faults.at(Step::Cgroup)?;
        self.faults.at(Step::Qmp)?;
        let (qmp, events) = connect_qmp(&files.qmp())
            .await
            .map_err(|e| agent("QMP", &e))?;
        match self.vms().get_mut(&spec.instance_id) {
            Some(vm) => vm.qmp = Some(Arc::new(qmp)),
            None => {
                kill(pid);
                return Ok(());
            }
        }
        if scan.is_none() {
            self.set_state(&spec.instance_id, VmState::Running);
        }
        self.clone().watch(
            &spec.instance_id,
            events,
            scan,
            image.ready_marker.unwrap_or_default(),
        );
        Ok(())
    }

    /// Relays `port` of the host's address to the VM's `guest` port (`port` 0:
    /// any free one), and remembers it beside the VM.
    async fn publish(&self, id: &str, guest: u16, port: u16) -> Result<SocketAddr, HostError> {
        let refused =
            |why: String| HostError::Agent(format!("publishing port {guest} of {id}: {why}"));
        if let Some(known) = self.published.lock().unwrap().get(id)
            && let Some((p, _)) = known.iter().find(|(p, _)| p.guest == guest)
        {
            return Ok(p.host);
        }
        let files = VmFiles {
            dir: self.config.state_dir.join(id),
        };
        let nic = self
            .vms()
            .get(id)
            .and_then(|vm| vm.port.clone())
            .ok_or_else(|| refused("the instance has no network here".into()))?;
        let ns = network::namespace(&self.config.fabric.prefix, &nic.network_id);
        let address = std::net::IpAddr::V4(nic.address);
        let listener = tokio::net::TcpListener::bind((self.config.publish_address, port))
            .await
            .map_err(|e| refused(e.to_string()))?;
        let host = listener.local_addr().map_err(|e| refused(e.to_string()))?;
        let relay = tokio::spawn(publish::relay(
            listener,
            ns,
            SocketAddr::new(address, guest),
        ));
        let entry = (publish::Port { guest, host }, relay.abort_handle());
        let ports: Vec<publish::Port> = {
            let mut published = self.published.lock().unwrap();
            let list = published.entry(id.to_string()).or_default();
            list.push(entry);
            list.iter().map(|(p, _)| *p).collect()
        };
        let json = serde_json::to_vec(&ports).map_err(|e| refused(e.to_string()))?;
        std::fs::write(files.published(), json).map_err(|e| refused(e.to_string()))?;
        Ok(host)
    }

    /// Removes what a VM that is gone (or no longer in `vms`, or marked for
    /// destruction) left: its published ports, its port on its network (which
    /// converges without it, losing the namespace with its last port), then
    /// its folder.
    async fn remove_files(&self, id: &str, files: VmFiles) {
        self.documents.remove(id);
        for (_, relay) in self
            .published
            .lock()
            .unwrap()
            .remove(id)
            .unwrap_or_default()
        {
            relay.abort();
        }
        if let Some(port) = read_port(&files) {
            // A failure leaves the network to the repair loop.
            let _ = self.converge_network(&port.network_id, None, false).await;
        }
        let _ = std::fs::remove_dir_all(&files.dir);
    }

    /// A scratch file for a volume's point-in-time copy.
    fn scratch(&self, name: &str) -> Result<PathBuf, HostError> {
        let dir = self.volumes.path().join("scratch");
        std::fs::create_dir_all(&dir)
            .map_err(|e| HostError::Agent(format!("volume scratch folder: {e}")))?;
        Ok(dir.join(name))
    }

    /// The QMP connection of a VM that runs here.
    fn running_qmp(&self, instance_id: &str) -> Option<Arc<Qmp>> {
        let vms = self.vms();
        let vm = vms.get(instance_id)?;
        matches!(
            vm.state,
            VmState::Booting | VmState::Running | VmState::Stopping
        )
        .then(|| vm.qmp.clone())
        .flatten()
    }

    async fn destroy(&self, id: &str) {
        let known = self.vms().get_mut(id).map(|vm| {
            vm.intent = Intent::Destroy;
            (
                vm.pid,
                vm.qmp.clone(),
                vm.watcher.take(),
                vm.files.dir.clone(),
            )
        });
        let Some((pid, qmp, watcher, dir)) = known else {
            let dir = self.config.state_dir.join(id);
            if dir.exists() {
                self.remove_files(id, VmFiles { dir }).await;
            }
            return;
        };
        if let Some(pid) = pid {
            // A VMM without QMP (its start failed half-way) is not asked.
            let asked = match qmp {
                Some(qmp) => {
                    tokio::time::timeout(Duration::from_secs(1), qmp.execute(qmp::quit {}))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
                None => false,
            };
            if !asked || !wait_gone(pid, id, Duration::from_secs(3)).await {
                kill(pid);
                wait_gone(pid, id, Duration::from_secs(2)).await;
            }
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        self.cgroups.remove(id);
        self.remove_files(id, VmFiles { dir }).await;
        self.vms().remove(id);
    }
}

impl HostAgent for QemuHost {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn driver(&self) -> &'static str {
        "qemu"
    }

    fn capacity(&self) -> Capacity {
        self.inner.capacity
    }

    fn start(&self, spec: VmSpec) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let id = spec.instance_id.clone();
            let stale = match self.inner.vms().get(&id).map(|vm| &vm.state) {
                Some(VmState::Booting | VmState::Running | VmState::Stopping) => return Ok(()),
                Some(_) => true,
                None => false,
            };
            if stale {
                self.inner.destroy(&id).await;
            }
            let port = match &spec.nic {
                Some(nic) => Some(Port::of(&id, nic)?),
                None => None,
            };
            self.inner.insert(
                &id,
                Vm {
                    files: VmFiles {
                        dir: self.inner.config.state_dir.join(&id),
                    },
                    port,
                    state: VmState::Booting,
                    pid: None,
                    qmp: None,
                    intent: Intent::Run,
                    watcher: None,
                },
            );
            let _ = self.inner.events.send(VmStatus {
                instance_id: id.clone(),
                state: VmState::Booting,
            });
            let result = self.inner.clone().launch(spec).await;
            if result.is_err() {
                self.inner.destroy(&id).await;
            }
            result
        })
    }

    fn stop<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let qmp = {
                let mut vms = self.inner.vms();
                let Some(vm) = vms.get_mut(instance_id) else {
                    return Ok(());
                };
                if matches!(vm.state, VmState::Stopped | VmState::Failed(_)) {
                    return Ok(());
                }
                vm.intent = Intent::Stop;
                vm.qmp.clone()
            };
            self.inner.set_state(instance_id, VmState::Stopping);
            match qmp {
                Some(qmp) => {
                    qmp.execute(qmp::system_powerdown {})
                        .await
                        .map_err(|e| HostError::Agent(format!("system_powerdown: {e}")))?;
                    self.inner.clone().press_again(instance_id.to_string(), qmp);
                    Ok(())
                }
                None => {
                    self.inner.set_state(instance_id, VmState::Stopped);
                    Ok(())
                }
            }
        })
    }

    fn reboot<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let qmp = self
                .inner
                .qmp(instance_id)
                .ok_or_else(|| HostError::Agent(format!("no running VM {instance_id}")))?;
            qmp.execute(qmp::system_reset {})
                .await
                .map(|_| ())
                .map_err(|e| HostError::Agent(format!("system_reset: {e}")))
        })
    }

    fn destroy<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            self.inner.destroy(instance_id).await;
            Ok(())
        })
    }

    fn status<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<VmState>, HostError>> {
        Box::pin(async move { Ok(self.inner.vms().get(instance_id).map(|vm| vm.state.clone())) })
    }

    fn console<'a>(
        &'a self,
        instance_id: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, HostError>> {
        Box::pin(async move {
            let path = self
                .inner
                .vms()
                .get(instance_id)
                .map(|vm| vm.files.console());
            Ok(path.map(|p| crate::tail_of_file(&p, max).unwrap_or_default()))
        })
    }

    fn publish<'a>(
        &'a self,
        instance_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<SocketAddr, HostError>> {
        Box::pin(async move {
            let running = matches!(
                self.inner.vms().get(instance_id).map(|vm| &vm.state),
                Some(VmState::Running | VmState::Booting)
            );
            if !running {
                return Err(HostError::Agent(format!("{instance_id} does not run here")));
            }
            self.inner.publish(instance_id, port, 0).await
        })
    }

    fn network<'a>(
        &'a self,
        network_id: &'a str,
        state: NetworkState,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            self.inner
                .converge_network(network_id, Some(state), false)
                .await
        })
    }

    fn underlay(&self) -> Option<std::net::Ipv4Addr> {
        self.inner
            .config
            .fabric
            .underlay
            .as_ref()
            .map(|u| u.address)
    }

    fn create_volume(&self, spec: VolumeSpec) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move { self.inner.volumes.create(&spec).await })
    }

    fn restore_volume(
        &self,
        spec: VolumeSpec,
        manifest: Manifest,
        chunks: Arc<dyn ChunkStore>,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let dir = &self.inner.volumes;
            if dir.find(&spec.id).is_some() {
                return Ok(());
            }
            let copy = dir.restoring(&spec.id);
            let result = crate::volumes::download(&manifest, &copy, &chunks).await;
            match result {
                Ok(()) => dir.restored(&spec),
                Err(e) => {
                    let _ = std::fs::remove_file(&copy);
                    Err(e)
                }
            }
        })
    }

    fn resize_volume<'a>(
        &'a self,
        volume_id: &'a str,
        size_bytes: u64,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move { self.inner.volumes.resize(volume_id, size_bytes).await })
    }

    fn delete_volume<'a>(&'a self, volume_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move { self.inner.volumes.delete(volume_id) })
    }

    fn attach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume: Attached,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let qmp = self
                .inner
                .running_qmp(instance_id)
                .ok_or_else(|| HostError::Agent(format!("{instance_id} does not run here")))?;
            self.inner
                .volumes
                .attach(&qmp, &volume.volume_id, volume.slot)
                .await
        })
    }

    fn detach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume_id: &'a str,
        force: bool,
    ) -> BoxFuture<'a, Result<Detach, HostError>> {
        Box::pin(async move {
            match self.inner.running_qmp(instance_id) {
                Some(qmp) => volumes::detach(&qmp, volume_id, force).await,
                None => Ok(Detach::Done),
            }
        })
    }

    fn attached_volumes<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, HostError>> {
        Box::pin(async move {
            match self.inner.running_qmp(instance_id) {
                Some(qmp) => volumes::plugged(&qmp).await.map(Some),
                None => Ok(None),
            }
        })
    }

    fn snapshot_volume<'a>(
        &'a self,
        volume_id: &'a str,
        instance_id: Option<&'a str>,
        chunks: Arc<dyn ChunkStore>,
    ) -> BoxFuture<'a, Result<Manifest, HostError>> {
        Box::pin(async move {
            let dir = &self.inner.volumes;
            let (path, _) = dir
                .find(volume_id)
                .ok_or_else(|| HostError::Agent(format!("no volume {volume_id} on this host")))?;
            let size = volumes::virtual_size(&path)
                .map_err(|e| HostError::Agent(format!("volume {volume_id}: {e}")))?;
            let scratch = self.inner.scratch(&format!("{volume_id}.snapshot.raw"))?;
            let qmp = instance_id.and_then(|i| self.inner.running_qmp(i));
            let result = async {
                let copy = match qmp {
                    Some(qmp) => {
                        volumes::backup(&qmp, volume_id, &scratch, size).await?;
                        scratch.clone()
                    }
                    None => dir.offline_copy(volume_id, &scratch).await?.0,
                };
                crate::volumes::upload(&copy, &chunks).await
            }
            .await;
            let _ = std::fs::remove_file(&scratch);
            result
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<VmStatus>, HostError>> {
        Box::pin(async move {
            Ok(self
                .inner
                .vms()
                .iter()
                .map(|(id, vm)| VmStatus {
                    instance_id: id.clone(),
                    state: vm.state.clone(),
                })
                .collect())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<VmStatus> {
        self.inner.events.subscribe()
    }
}
