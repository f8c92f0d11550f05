//! The agent's tenant networks: which ports each network has here (those of
//! the VMs it holds), its newest state from the region, and keeping each
//! network's namespace and metadata service converged on them. Every change
//! of either converges the network whole, and one that fails is retried until
//! it holds: what a failed step or a crash left is repaired, never built on.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use super::faults::Faults;
use super::network::{self, Declared, Port};
use super::{Inner, Intent, metadata};
use crate::HostError;
use crate::network_state::NetworkState;

/// How often networks whose last converge failed are tried again.
const REPAIR_EVERY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct Networks {
    /// The newest state the region gave of each network with ports here.
    states: HashMap<String, NetworkState>,
    /// Networks whose last converge failed.
    dirty: BTreeSet<String>,
}

impl Inner {
    /// The folder of namespace `ns`'s files.
    fn network_dir(&self, ns: &str) -> PathBuf {
        self.networks_dir().join(ns)
    }

    /// Where the files of this host's networks live: beside its VMs' folders
    /// (`vms` → `networks`, `vms-1` → `networks-1`), one folder per namespace.
    pub(super) fn networks_dir(&self) -> PathBuf {
        super::sibling(&self.config.state_dir, "networks")
    }

    /// The ports of network `network_id`: of every VM here that is not being
    /// destroyed.
    fn ports_of(&self, network_id: &str) -> Vec<Port> {
        let mut ports: Vec<Port> = self
            .vms()
            .values()
            .filter(|vm| vm.intent != Intent::Destroy)
            .filter_map(|vm| vm.port.clone())
            .filter(|p| p.network_id == network_id)
            .collect();
        ports.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        ports
    }

    /// Makes network `network_id`'s namespace and metadata service what its
    /// ports here and its newest state (`state`, if newer than the one known)
    /// declare. A failure leaves the network to the repair loop. Injected
    /// faults fire only in the converge of a `starting` VM.
    pub(super) async fn converge_network(
        &self,
        network_id: &str,
        state: Option<NetworkState>,
        starting: bool,
    ) -> Result<(), HostError> {
        let mut networks = self.networks.lock().await;
        if let Some(state) = state {
            let known = networks.states.get(network_id).map_or(0, |s| s.version);
            if state.version >= known {
                networks.states.insert(network_id.to_string(), state);
            }
        }
        // Read under the lock: the ports of the last change to the VMs are
        // always the ones the last converge sees.
        let ports = self.ports_of(network_id);
        let ns = network::namespace(&self.config.fabric.prefix, network_id);
        if ports.is_empty() {
            self.stop_metadata(&ns);
        }
        let declared = Declared {
            namespace: ns.clone(),
            network_id: network_id.to_string(),
            state: networks.states.get(network_id).cloned().unwrap_or_default(),
            ports,
        };
        let empty = declared.ports.is_empty();
        let faults = match starting {
            true => self.faults.clone(),
            false => Faults::default(),
        };
        let (dir, fabric) = (self.network_dir(&ns), self.config.fabric.clone());
        let result = tokio::task::spawn_blocking(move || {
            network::converge(&declared, &dir, &fabric, &faults)
        })
        .await
        .unwrap_or_else(|e| Err(HostError::Agent(format!("network {network_id}: {e}"))));
        match &result {
            Ok(()) => {
                networks.dirty.remove(network_id);
                if empty {
                    networks.states.remove(network_id);
                } else {
                    self.serve_metadata(&ns).await;
                }
            }
            Err(e) => {
                tracing::warn!(network_id, error = %e, "network not converged; will retry");
                networks.dirty.insert(network_id.to_string());
            }
        }
        result
    }

    /// The networks whose namespaces this host made: those with a folder
    /// (made before the namespace), with the state last applied in each.
    pub(super) fn owned_networks(&self) -> Vec<(String, Option<NetworkState>)> {
        let prefix = &self.config.fabric.prefix;
        std::fs::read_dir(self.networks_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let ns = entry.file_name().to_string_lossy().into_owned();
                let network_id = ns.strip_prefix(prefix.as_str())?.to_string();
                let state = std::fs::read(entry.path().join(network::STATE_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                Some((network_id, state))
            })
            .collect()
    }

    /// Starts the metadata service of namespace `ns`, unless it runs.
    async fn serve_metadata(&self, ns: &str) {
        if self.metadata.lock().unwrap().contains_key(ns) {
            return;
        }
        let bound = {
            let ns = ns.to_string();
            tokio::task::spawn_blocking(move || metadata::bind(&ns)).await
        };
        match bound {
            Ok(Ok(listener)) => {
                let service = tokio::spawn(metadata::serve(
                    listener,
                    ns.to_string(),
                    self.documents.clone(),
                ));
                let old = self
                    .metadata
                    .lock()
                    .unwrap()
                    .insert(ns.to_string(), service.abort_handle());
                if let Some(old) = old {
                    old.abort();
                }
            }
            Ok(Err(e)) => tracing::warn!(ns, error = %e, "no metadata service"),
            Err(e) => tracing::warn!(ns, error = %e, "no metadata service"),
        }
    }

    /// Stops the metadata service of a namespace about to go: its socket
    /// would keep the namespace alive.
    fn stop_metadata(&self, ns: &str) {
        if let Some(service) = self.metadata.lock().unwrap().remove(ns) {
            service.abort();
        }
    }
}

/// Converges, every [`REPAIR_EVERY`], the networks whose last converge
/// failed, for as long as the agent lives.
pub(super) fn repair(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REPAIR_EVERY).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let dirty: Vec<String> = inner.networks.lock().await.dirty.iter().cloned().collect();
            for network_id in dirty {
                if inner
                    .converge_network(&network_id, None, false)
                    .await
                    .is_ok()
                {
                    tracing::info!(network_id, "network repaired");
                }
            }
        }
    });
}
