//! A simulated host: VMs that live in memory with the timing of real ones, so that
//! tests and benchmarks can model many hosts and thousands of instances without a
//! hypervisor. It also fails on demand (`crash`), as real VMs do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::volumes::{self, Attached, ChunkStore, Detach, Manifest, VolumeSpec};
use crate::{BoxFuture, Capacity, HostAgent, HostError, VmSpec, VmState, VmStatus};

#[derive(Debug, Clone, Copy)]
pub struct SimTiming {
    /// From `start` (or `reboot`) to the guest saying it is up.
    pub boot: Duration,
    /// From `stop` to the VM being down.
    pub shutdown: Duration,
}

impl Default for SimTiming {
    fn default() -> Self {
        SimTiming {
            boot: Duration::from_millis(150),
            shutdown: Duration::from_millis(50),
        }
    }
}

struct Vm {
    state: VmState,
    /// Bumped by every command, so that a timer of an older command does nothing.
    generation: u64,
}

/// A simulated volume holds no data (it reads as zeros), only its size and
/// the VM it is plugged into.
struct Volume {
    size_bytes: u64,
    plugged_into: Option<String>,
}

pub struct SimHost {
    name: String,
    capacity: Capacity,
    timing: SimTiming,
    vms: Arc<Mutex<HashMap<String, Vm>>>,
    volumes: Mutex<HashMap<String, Volume>>,
    events: broadcast::Sender<VmStatus>,
}

impl SimHost {
    pub fn new(name: impl Into<String>, capacity: Capacity, timing: SimTiming) -> SimHost {
        SimHost {
            name: name.into(),
            capacity,
            timing,
            vms: Arc::default(),
            volumes: Mutex::default(),
            events: broadcast::channel(4096).0,
        }
    }

    /// Makes a VM die as if its VMM had crashed.
    pub fn crash(&self, instance_id: &str) -> bool {
        self.transition(instance_id, VmState::Failed("the VM process exited".into()))
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vm>> {
        self.vms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn volumes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Volume>> {
        self.volumes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_up(&self, instance_id: &str) -> bool {
        matches!(
            self.vms().get(instance_id).map(|vm| &vm.state),
            Some(VmState::Booting | VmState::Running | VmState::Stopping)
        )
    }

    /// Plugs a volume into a VM; it must exist and be free or already there.
    fn plug(&self, instance_id: &str, volume_id: &str) -> Result<(), HostError> {
        let mut volumes = self.volumes();
        let volume = volumes
            .get_mut(volume_id)
            .ok_or_else(|| HostError::Agent(format!("no volume {volume_id} on this host")))?;
        match &volume.plugged_into {
            Some(other) if other != instance_id => Err(HostError::Agent(format!(
                "volume {volume_id} is plugged into {other}"
            ))),
            _ => {
                volume.plugged_into = Some(instance_id.to_string());
                Ok(())
            }
        }
    }

    /// Unplugs every volume of a VM that is gone.
    fn unplug_all(&self, instance_id: &str) {
        for volume in self.volumes().values_mut() {
            if volume.plugged_into.as_deref() == Some(instance_id) {
                volume.plugged_into = None;
            }
        }
    }

    /// Sets a VM's state now, and returns whether it exists.
    fn transition(&self, instance_id: &str, state: VmState) -> bool {
        let mut vms = self.vms();
        let Some(vm) = vms.get_mut(instance_id) else {
            return false;
        };
        vm.generation += 1;
        vm.state = state.clone();
        drop(vms);
        let _ = self.events.send(VmStatus {
            instance_id: instance_id.to_string(),
            state,
        });
        true
    }

    /// Moves the VM to `to` after `delay`, unless another command came first.
    fn later(&self, instance_id: &str, generation: u64, delay: Duration, to: VmState) {
        let vms = self.vms.clone();
        let events = self.events.clone();
        let id = instance_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut guard = vms.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(vm) = guard.get_mut(&id).filter(|vm| vm.generation == generation) {
                vm.state = to.clone();
                drop(guard);
                let _ = events.send(VmStatus {
                    instance_id: id,
                    state: to,
                });
            }
        });
    }

    /// Starts a command on an existing VM: sets `now` and schedules `then`.
    fn command(&self, instance_id: &str, now: VmState, delay: Duration, then: VmState) -> bool {
        let generation = {
            let mut vms = self.vms();
            let Some(vm) = vms.get_mut(instance_id) else {
                return false;
            };
            vm.generation += 1;
            vm.state = now.clone();
            vm.generation
        };
        let _ = self.events.send(VmStatus {
            instance_id: instance_id.to_string(),
            state: now,
        });
        self.later(instance_id, generation, delay, then);
        true
    }
}

impl HostAgent for SimHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn driver(&self) -> &'static str {
        "sim"
    }

    fn capacity(&self) -> Capacity {
        self.capacity
    }

    fn start(&self, spec: VmSpec) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let fresh = {
                let mut vms = self.vms();
                match vms.get(&spec.instance_id).map(|vm| &vm.state) {
                    Some(VmState::Booting | VmState::Running) => false,
                    _ => {
                        vms.insert(
                            spec.instance_id.clone(),
                            Vm {
                                state: VmState::Booting,
                                generation: 0,
                            },
                        );
                        true
                    }
                }
            };
            if fresh {
                for volume in spec
                    .root_volume
                    .iter()
                    .chain(spec.volumes.iter().map(|a| &a.volume_id))
                {
                    if let Err(e) = self.plug(&spec.instance_id, volume) {
                        self.vms().remove(&spec.instance_id);
                        return Err(e);
                    }
                }
                self.command(
                    &spec.instance_id,
                    VmState::Booting,
                    self.timing.boot,
                    VmState::Running,
                );
            }
            Ok(())
        })
    }

    fn stop<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let state = self.vms().get(instance_id).map(|vm| vm.state.clone());
            match state {
                None | Some(VmState::Stopping | VmState::Stopped | VmState::Failed(_)) => {}
                Some(_) => {
                    self.command(
                        instance_id,
                        VmState::Stopping,
                        self.timing.shutdown,
                        VmState::Stopped,
                    );
                }
            }
            Ok(())
        })
    }

    fn reboot<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            if self.command(
                instance_id,
                VmState::Booting,
                self.timing.boot,
                VmState::Running,
            ) {
                Ok(())
            } else {
                Err(HostError::Agent(format!(
                    "no VM {instance_id} on this host"
                )))
            }
        })
    }

    fn destroy<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            self.vms().remove(instance_id);
            self.unplug_all(instance_id);
            Ok(())
        })
    }

    fn status<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<VmState>, HostError>> {
        Box::pin(async move { Ok(self.vms().get(instance_id).map(|vm| vm.state.clone())) })
    }

    fn console<'a>(
        &'a self,
        instance_id: &'a str,
        _max: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, HostError>> {
        Box::pin(async move {
            Ok(self
                .vms()
                .get(instance_id)
                .map(|vm| format!("simulated VM {instance_id}: {:?}\n", vm.state).into_bytes()))
        })
    }

    fn publish<'a>(
        &'a self,
        _instance_id: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, Result<std::net::SocketAddr, HostError>> {
        Box::pin(async {
            Err(HostError::Unsupported(
                "simulated hosts carry no traffic to publish".into(),
            ))
        })
    }

    /// Simulated VMs carry no packets, so there is nothing to tunnel or filter.
    fn network<'a>(
        &'a self,
        _network_id: &'a str,
        _state: crate::network_state::NetworkState,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async { Ok(()) })
    }

    fn underlay(&self) -> Option<std::net::Ipv4Addr> {
        None
    }

    fn create_volume(&self, spec: VolumeSpec) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            self.volumes().entry(spec.id).or_insert(Volume {
                size_bytes: spec.size_bytes,
                plugged_into: None,
            });
            Ok(())
        })
    }

    /// Checks every chunk as a real host would, then holds the size only.
    fn restore_volume(
        &self,
        spec: VolumeSpec,
        manifest: Manifest,
        chunks: Arc<dyn ChunkStore>,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            if self.volumes().contains_key(&spec.id) {
                return Ok(());
            }
            let total = manifest.chunks.len() as u64;
            for (done, (_, expected)) in manifest.chunks.iter().enumerate() {
                let data = chunks.get(expected).await.map_err(HostError::Agent)?;
                if volumes::hash(&data) != *expected {
                    return Err(HostError::Corrupt(format!(
                        "chunk {expected} of the snapshot does not match its checksum"
                    )));
                }
                chunks.advanced(done as u64 + 1, total);
            }
            self.create_volume(spec).await
        })
    }

    fn resize_volume<'a>(
        &'a self,
        volume_id: &'a str,
        size_bytes: u64,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let mut volumes = self.volumes();
            let volume = volumes
                .get_mut(volume_id)
                .ok_or_else(|| HostError::Agent(format!("no volume {volume_id} on this host")))?;
            volume.size_bytes = volume.size_bytes.max(size_bytes);
            Ok(())
        })
    }

    fn delete_volume<'a>(&'a self, volume_id: &'a str) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            let mut volumes = self.volumes();
            if let Some(other) = volumes.get(volume_id).and_then(|v| v.plugged_into.clone()) {
                return Err(HostError::Agent(format!(
                    "volume {volume_id} is plugged into {other}"
                )));
            }
            volumes.remove(volume_id);
            Ok(())
        })
    }

    fn attach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume: Attached,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            if !self.is_up(instance_id) {
                return Err(HostError::Agent(format!("{instance_id} does not run here")));
            }
            self.plug(instance_id, &volume.volume_id)
        })
    }

    fn detach_volume<'a>(
        &'a self,
        instance_id: &'a str,
        volume_id: &'a str,
        _force: bool,
    ) -> BoxFuture<'a, Result<Detach, HostError>> {
        Box::pin(async move {
            if let Some(volume) = self.volumes().get_mut(volume_id)
                && volume.plugged_into.as_deref() == Some(instance_id)
            {
                volume.plugged_into = None;
            }
            Ok(Detach::Done)
        })
    }

    fn attached_volumes<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, HostError>> {
        Box::pin(async move {
            if !self.is_up(instance_id) {
                return Ok(None);
            }
            let mut plugged: Vec<String> = self
                .volumes()
                .iter()
                .filter(|(_, v)| v.plugged_into.as_deref() == Some(instance_id))
                .map(|(id, _)| id.clone())
                .collect();
            plugged.sort();
            Ok(Some(plugged))
        })
    }

    /// A simulated volume reads as zeros, so its snapshot has no chunks.
    fn snapshot_volume<'a>(
        &'a self,
        volume_id: &'a str,
        _instance_id: Option<&'a str>,
        _chunks: Arc<dyn ChunkStore>,
    ) -> BoxFuture<'a, Result<Manifest, HostError>> {
        Box::pin(async move {
            let size_bytes = self
                .volumes()
                .get(volume_id)
                .map(|v| v.size_bytes)
                .ok_or_else(|| HostError::Agent(format!("no volume {volume_id} on this host")))?;
            Ok(Manifest {
                size_bytes,
                chunk_size: volumes::CHUNK_SIZE,
                chunks: Vec::new(),
            })
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<VmStatus>, HostError>> {
        Box::pin(async move {
            Ok(self
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
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> SimHost {
        SimHost::new(
            "sim-0",
            Capacity {
                vcpus: 4,
                memory_mib: 4096,
                disk_gib: 10,
            },
            SimTiming {
                boot: Duration::from_millis(20),
                shutdown: Duration::from_millis(10),
            },
        )
    }

    fn spec(id: &str) -> VmSpec {
        VmSpec {
            instance_id: id.into(),
            instance_type: "n1.nano".into(),
            region: "local-1".into(),
            vcpus: 1,
            memory_mib: 128,
            image: "{}".into(),
            user_data: None,
            hostname: id.into(),
            ssh_public_keys: Vec::new(),
            nic: None,
            root_volume: None,
            volumes: Vec::new(),
            metadata_tokens_required: false,
        }
    }

    async fn next_state(rx: &mut broadcast::Receiver<VmStatus>) -> VmState {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("channel open")
            .state
    }

    #[tokio::test]
    async fn boots_stops_and_is_idempotent() {
        let h = host();
        let mut rx = h.subscribe();
        h.start(spec("i-1")).await.unwrap();
        h.start(spec("i-1")).await.unwrap();
        assert_eq!(next_state(&mut rx).await, VmState::Booting);
        assert_eq!(next_state(&mut rx).await, VmState::Running);
        h.stop("i-1").await.unwrap();
        h.stop("i-1").await.unwrap();
        assert_eq!(next_state(&mut rx).await, VmState::Stopping);
        assert_eq!(next_state(&mut rx).await, VmState::Stopped);
        h.destroy("i-1").await.unwrap();
        h.destroy("i-1").await.unwrap();
        assert!(h.list().await.unwrap().is_empty());
        assert!(
            rx.try_recv().is_err(),
            "repeated commands emit nothing more"
        );
    }

    #[tokio::test]
    async fn a_crash_reports_failed_and_a_stale_timer_does_nothing() {
        let h = host();
        let mut rx = h.subscribe();
        h.start(spec("i-2")).await.unwrap();
        assert_eq!(next_state(&mut rx).await, VmState::Booting);
        assert!(h.crash("i-2"));
        assert!(matches!(next_state(&mut rx).await, VmState::Failed(_)));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let vms = h.list().await.unwrap();
        assert!(
            matches!(vms[0].state, VmState::Failed(_)),
            "boot timer was superseded"
        );
    }
}
