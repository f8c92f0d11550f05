//! The region's hosts: their agents, their registration, the operator's view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use nubo_api::error::ErrorBody;
use nubo_api::hosts::{Capacity, Host, HostState};
use nubo_host::HostAgent;
use nubo_host::qemu::network::Fabric;
use nubo_host::qemu::tunnel::Underlay;
use nubo_host::qemu::{QemuConfig, QemuHost};
use nubo_host::sim::{SimHost, SimTiming};
use nubo_store::hosts::{self, HostRow};
use nubo_store::{Store, ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Operator;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Path;
use crate::clock::{Clock, rfc3339};
use crate::config::{Config, Hypervisor};
use crate::state::AppState;

/// The agents of the hosts this `nubod` drives, by host id.
#[derive(Default)]
pub struct Fleet {
    agents: HashMap<String, Arc<dyn HostAgent>>,
}

impl Fleet {
    pub fn agent(&self, host_id: &str) -> Option<&Arc<dyn HostAgent>> {
        self.agents.get(host_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<dyn HostAgent>)> {
        self.agents.iter()
    }

    /// Starts the configured hosts and registers them in the store; hosts the store
    /// knows but nobody drives any more become `unreachable`.
    pub async fn start(config: &Config, store: &Store, clock: &Clock) -> nubo_store::Result<Fleet> {
        let agents: Vec<Arc<dyn HostAgent>> = match config.hypervisor {
            Hypervisor::Sim => (0..config.sim_hosts)
                .map(|i| {
                    let c = config.sim_host;
                    Arc::new(SimHost::new(
                        format!("{}-sim-{i:03}", config.region),
                        nubo_host::Capacity {
                            vcpus: c.vcpus,
                            memory_mib: c.memory_mib,
                            disk_gib: c.disk_gib,
                        },
                        SimTiming {
                            boot: Duration::from_millis(c.boot_ms),
                            ..SimTiming::default()
                        },
                    )) as Arc<dyn HostAgent>
                })
                .collect(),
            Hypervisor::Qemu => {
                let mut agents: Vec<Arc<dyn HostAgent>> = Vec::new();
                for qemu in qemu_hosts(config) {
                    let host = QemuHost::start(qemu)
                        .await
                        .map_err(|e| nubo_store::StoreError::Config(e.to_string()))?;
                    agents.push(Arc::new(host));
                }
                agents
            }
        };
        let at = clock.now_micros();
        let mut tx = store.begin().await?;
        let mut fleet = Fleet::default();
        for agent in agents {
            let cap = agent.capacity();
            let row = hosts::register(
                &mut tx,
                &ids::new("host"),
                agent.name(),
                agent.driver(),
                (
                    i64::from(cap.vcpus),
                    cap.memory_mib as i64,
                    cap.disk_gib as i64,
                ),
                at,
            )
            .await?;
            hosts::set_state(&mut tx, &row.id, hosts::ACTIVE, at).await?;
            fleet.agents.insert(row.id, agent);
        }
        for row in hosts::list(&mut tx).await? {
            if !fleet.agents.contains_key(&row.id) {
                hosts::set_state(&mut tx, &row.id, "unreachable", at).await?;
            }
        }
        tx.commit().await?;
        Ok(fleet)
    }
}

/// The QEMU hosts of this machine: the first keeps the plain names (its
/// folder `vms`, namespaces `nubo-…`), the others get their own.
pub(crate) fn qemu_hosts(config: &Config) -> Vec<QemuConfig> {
    let q = &config.qemu;
    let entries: Vec<Option<&crate::config::QemuHostEntry>> = if q.hosts.is_empty() {
        vec![None]
    } else {
        q.hosts.iter().map(Some).collect()
    };
    let machine = machine_name();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let (name, vms, prefix) = match i {
                0 => (
                    format!("{}-{machine}", config.region),
                    "vms".to_string(),
                    "nubo-".to_string(),
                ),
                _ => (
                    format!("{}-{machine}-{i}", config.region),
                    format!("vms-{i}"),
                    format!("nubo-h{i}-"),
                ),
            };
            QemuConfig {
                binary: q.binary.clone(),
                accel: config.accel,
                tcg_tb_size_mib: q.tcg_tb_size_mib,
                vcpu_overcommit: q.vcpu_overcommit,
                memory_reserve_mib: q.memory_reserve_mib,
                fabric: Fabric {
                    prefix,
                    underlay: entry.map(|e| Underlay {
                        address: e.underlay_address,
                        namespace: e.underlay_namespace.clone(),
                    }),
                    egress: config.egress_nat,
                },
                ..QemuConfig::new(name, config.data_dir.join(vms))
            }
        })
        .collect()
}

/// This machine's name, for its host's name in the registry.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(host_list))
        .routes(routes!(host_show))
}

fn view(h: HostRow) -> Host {
    Host {
        state: match h.state.as_str() {
            "active" => HostState::Active,
            "draining" => HostState::Draining,
            _ => HostState::Unreachable,
        },
        capacity: Capacity {
            vcpus: h.vcpus as u64,
            memory_mib: h.memory_mib as u64,
            disk_gib: h.disk_gib as u64,
        },
        allocated: Capacity {
            vcpus: h.used_vcpus as u64,
            memory_mib: h.used_memory_mib as u64,
            disk_gib: h.used_disk_gib as u64,
        },
        instances: h.instances as u64,
        created_at: rfc3339(h.created_at),
        id: h.id,
        name: h.name,
        driver: h.driver,
    }
}

/// Lists the region's hosts with their capacity and allocations (operator only).
#[utoipa::path(get, path = "/v1/admin/hosts", tag = "admin", operation_id = "admin_host_list",
    responses((status = 200, body = Vec<Host>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("operator" = [])))]
async fn host_list(State(state): State<AppState>, _: Operator) -> ApiResult<axum::Json<Vec<Host>>> {
    let mut c = state.store.conn().await?;
    Ok(axum::Json(
        hosts::list(&mut c).await?.into_iter().map(view).collect(),
    ))
}

/// Shows one host (operator only).
#[utoipa::path(get, path = "/v1/admin/hosts/{host_id}", tag = "admin",
    operation_id = "admin_host_show",
    params(("host_id" = String, Path, description = "Host id")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
async fn host_show(
    State(state): State<AppState>,
    _: Operator,
    Path(host_id): Path<String>,
) -> ApiResult<axum::Json<Host>> {
    let mut c = state.store.conn().await?;
    hosts::get(&mut c, &host_id)
        .await?
        .map(|h| axum::Json(view(h)))
        .ok_or_else(|| ApiError::not_found("host", &host_id))
}
