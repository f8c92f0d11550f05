//! The instance reconciler: drives hosts toward what the store says, and records
//! in the store what hosts report.
//!
//! It acts on three signals: a nudge after an API change, a host's state event
//! (a guest came up, shut down, or died), and a periodic pass that also compares
//! every host's VMs with the store, which is how it re-adopts running VMs after a
//! restart and removes what no instance owns. Every host call is idempotent, so a
//! repeated or interrupted pass does no harm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nubo_api::compute::InstanceState;
use nubo_host::{HostAgent, VmSpec, VmState, VmStatus};

use crate::networks::sync;
use nubo_store::instances::{self, InstanceRow};
use nubo_store::{Result, images};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::compute::lifecycle;
use crate::state::AppState;
use crate::volumes;

/// How often the reconciler looks at everything, even when nothing nudged it.
const PASS_EVERY: Duration = Duration::from_secs(1);
/// How often it compares each host's VMs with the store.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A host command not acted upon after this long is sent again.
const REISSUE_AFTER: Duration = Duration::from_secs(30);
/// A guest that does not come up in this time has failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// A guest that does not shut down in this time is switched off.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Terminated instances stay visible this long.
const KEEP_TERMINATED: Duration = Duration::from_secs(3600);
const PASS_BATCH: i64 = 1000;
const MAX_CONCURRENT_STARTS: usize = 16;

/// `None` means "the host's event stream lagged: compare it in full".
type HostSignal = (String, Option<VmStatus>);

pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let (tx, mut signals) = mpsc::channel::<HostSignal>(16_384);
    for (host_id, agent) in state.fleet.iter() {
        forward_events(host_id.clone(), agent.subscribe(), tx.clone());
    }
    tokio::spawn(async move {
        let mut r = Reconciler {
            state,
            starts: Arc::new(Semaphore::new(MAX_CONCURRENT_STARTS)),
            issued: HashMap::new(),
        };
        r.resync_all().await;
        r.push_networks().await;
        let mut pass = tokio::time::interval(PASS_EVERY);
        let mut last_resync = Instant::now();
        let mut last_purge = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some((host_id, status)) = signals.recv() => match status {
                    Some(status) => r.on_vm_status(&host_id, status).await,
                    None => r.resync_host(&host_id).await,
                },
                _ = r.state.reconcile.notified() => r.pass().await,
                _ = pass.tick() => {
                    r.pass().await;
                    if last_resync.elapsed() >= RESYNC_EVERY {
                        r.resync_all().await;
                        last_resync = Instant::now();
                    }
                    if last_purge.elapsed() >= Duration::from_secs(60) {
                        r.purge().await;
                        last_purge = Instant::now();
                    }
                }
            }
        }
    })
}

/// Marks a still-pending instance failed (its host could not start it).
async fn fail_pending(state: &AppState, id: &str, reason: &str) {
    let result: Result<()> = async {
        let mut tx = state.store.begin().await?;
        if let Some(row) = instances::get_any(&mut tx, id).await?
            && row.state == InstanceState::Pending.as_str()
            && lifecycle::mark_failed(&mut tx, &row, reason, state.clock.now_micros())
                .await?
                .is_some()
        {
            tx.commit().await?;
            tracing::warn!(instance_id = id, reason, "instance failed to start");
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(instance_id = id, error = %e, "cannot record a failed start");
    }
}

fn forward_events(
    host_id: String,
    mut rx: broadcast::Receiver<VmStatus>,
    tx: mpsc::Sender<HostSignal>,
) {
    tokio::spawn(async move {
        loop {
            let signal = match rx.recv().await {
                Ok(status) => Some(status),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send((host_id.clone(), signal)).await.is_err() {
                return;
            }
        }
    });
}

/// Where a transition takes an instance.
enum To {
    Running,
    Stopped(Option<String>),
    Failed(String),
    Terminated,
}

struct Reconciler {
    state: AppState,
    /// VMM launches in flight at once.
    starts: Arc<Semaphore>,
    /// Host commands sent and not yet seen through: instance id → (when, what).
    issued: HashMap<String, (Instant, &'static str)>,
}

impl Reconciler {
    fn agent(&self, host_id: &str) -> Option<Arc<dyn HostAgent>> {
        self.state.fleet.agent(host_id).cloned()
    }

    /// Sends `what` for `id` unless it was sent recently; returns whether to send.
    fn should_issue(&mut self, id: &str, what: &'static str) -> bool {
        match self.issued.get(id) {
            Some((at, prev)) if *prev == what && at.elapsed() < REISSUE_AFTER => false,
            _ => {
                self.issued.insert(id.to_string(), (Instant::now(), what));
                true
            }
        }
    }

    fn issued_for(&self, id: &str, what: &str) -> Option<Duration> {
        self.issued
            .get(id)
            .filter(|(_, prev)| *prev == what)
            .map(|(at, _)| at.elapsed())
    }

    /// Applies a transition in its own transaction. A stale row (someone else
    /// changed it) is left for the next pass, which reads it afresh.
    async fn commit(&self, row: &InstanceRow, to: To) {
        let at = self.state.clock.now_micros();
        let outcome: Result<_> = async {
            let mut tx = self.state.store.begin().await?;
            let c = &mut *tx;
            let done = match &to {
                To::Running => lifecycle::mark_running(c, row, at).await?,
                To::Stopped(reason) => {
                    lifecycle::mark_stopped(c, row, reason.as_deref(), at).await?
                }
                To::Failed(reason) => lifecycle::mark_failed(c, row, reason, at).await?,
                To::Terminated => lifecycle::mark_terminated(c, row, at).await?,
            };
            if done.is_some() {
                tx.commit().await?;
            }
            nubo_store::Result::Ok(done)
        }
        .await;
        match outcome {
            Ok(Some(next)) => {
                tracing::info!(
                    instance_id = next.id,
                    from = row.state,
                    to = next.state,
                    "instance state"
                );
                // Its address may go to another instance: no rule may still name it.
                if let (To::Terminated, Some(network)) = (&to, &row.network_id)
                    && let Err(e) = sync::push(&self.state, network).await
                {
                    tracing::warn!(network, error = %e, "network state not recomputed");
                }
            }
            Ok(None) => tracing::debug!(instance_id = row.id, "stale instance row; next pass"),
            Err(e) => {
                tracing::warn!(instance_id = row.id, error = %e, "instance transition failed")
            }
        }
    }

    async fn pass(&mut self) {
        let rows = match self.state.store.conn().await {
            Ok(mut c) => instances::unsettled(&mut c, PASS_BATCH).await,
            Err(e) => Err(e),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot read the store");
                return;
            }
        };
        for row in rows {
            self.drive(row).await;
        }
    }

    /// One step toward the desired state of a mid-transition instance.
    async fn drive(&mut self, row: InstanceRow) {
        let agent = row.host_id.as_deref().and_then(|h| self.agent(h));
        let state = InstanceState::parse(&row.state);
        match (state, agent) {
            (Some(InstanceState::ShuttingDown), agent) => {
                if let Some(agent) = agent
                    && let Err(e) = agent.destroy(&row.id).await
                {
                    tracing::warn!(instance_id = row.id, error = %e, "destroy failed; will retry");
                    return;
                }
                self.issued.remove(&row.id);
                self.commit(&row, To::Terminated).await;
            }
            (Some(InstanceState::Pending | InstanceState::Stopping), None) => {
                self.commit(&row, To::Failed("its host is unreachable".into()))
                    .await;
            }
            (Some(InstanceState::Pending), Some(agent)) => self.boot(row, agent).await,
            (Some(InstanceState::Stopping), Some(agent)) => self.shut_down(row, agent).await,
            _ => {}
        }
    }

    async fn boot(&mut self, row: InstanceRow, agent: Arc<dyn HostAgent>) {
        let pending_for = Duration::from_micros(
            (self.state.clock.now_micros() - row.state_changed_at).max(0) as u64,
        );
        if pending_for > BOOT_TIMEOUT {
            let _ = agent.destroy(&row.id).await;
            self.issued.remove(&row.id);
            let reason = format!(
                "the guest did not come up within {} s",
                BOOT_TIMEOUT.as_secs()
            );
            self.commit(&row, To::Failed(reason)).await;
            return;
        }
        if !self.should_issue(&row.id, "start") {
            return;
        }
        let looked_up = match self.state.store.conn().await {
            Ok(mut c) => match images::get(&mut c, &row.image_id).await {
                Ok(image) => crate::networks::nic_of(&mut c, &row)
                    .await
                    .map(|nic| image.map(|image| (image, nic))),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (mut spec, image) = match looked_up {
            Ok(Some((image, nic))) => (
                VmSpec {
                    instance_id: row.id.clone(),
                    instance_type: row.instance_type.clone(),
                    region: self.state.config.region.clone(),
                    vcpus: row.vcpus as u32,
                    memory_mib: row.memory_mib as u32,
                    image: image.spec.clone(),
                    user_data: row.user_data.clone(),
                    hostname: row.id.clone(),
                    ssh_public_keys: row.ssh_public_key.iter().cloned().collect(),
                    nic,
                    metadata_tokens_required: row.metadata_tokens_required,
                    root_volume: None,
                    volumes: Vec::new(),
                },
                image,
            ),
            Ok(None) => {
                self.commit(&row, To::Failed("its image no longer exists".into()))
                    .await;
                return;
            }
            Err(e) => {
                self.issued.remove(&row.id);
                tracing::warn!(instance_id = row.id, error = %e, "cannot read the image");
                return;
            }
        };
        let network = spec.nic.as_ref().map(|nic| nic.network_id.clone());
        if let (Some(nic), Some(network)) = (spec.nic.as_mut(), &network) {
            match sync::current(&self.state, network).await {
                Ok((seen, hosts)) => {
                    let host = row.host_id.as_deref().unwrap_or_default();
                    nic.network = sync::for_host(&self.state, &seen, &hosts, host);
                }
                Err(e) => {
                    self.issued.remove(&row.id);
                    tracing::warn!(instance_id = row.id, error = %e, "cannot read its network");
                    return;
                }
            }
        }
        // Starting a VM takes a VMM launch; several run at once, bounded, and a
        // failure comes back through the store like any other transition.
        let (state, limit, id) = (self.state.clone(), self.starts.clone(), row.id.clone());
        tokio::spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            match volumes::roots::for_boot(&state, &agent, &row, &image).await {
                Ok((root, attached)) => {
                    spec.root_volume = root;
                    spec.volumes = attached;
                }
                Err(reason) => {
                    fail_pending(&state, &id, &reason).await;
                    return;
                }
            }
            match agent.start(spec).await {
                Err(e) => {
                    let reason = format!("the host could not start it: {e}");
                    fail_pending(&state, &id, &reason).await;
                }
                // Its groups' rules elsewhere in the network now name its address.
                Ok(()) => {
                    if let Some(network) = network
                        && let Err(e) = sync::push(&state, &network).await
                    {
                        tracing::warn!(network, error = %e, "network state not pushed");
                    }
                }
            }
        });
    }

    async fn shut_down(&mut self, row: InstanceRow, agent: Arc<dyn HostAgent>) {
        let vm = match agent.status(&row.id).await {
            Ok(vm) => vm,
            Err(e) => {
                tracing::warn!(instance_id = row.id, error = %e, "host status failed");
                return;
            }
        };
        match vm {
            None | Some(VmState::Stopped | VmState::Failed(_)) => {
                self.finish_stop(&row, &agent, None).await;
            }
            Some(_) => {
                if self
                    .issued_for(&row.id, "stop")
                    .is_some_and(|d| d > SHUTDOWN_TIMEOUT)
                {
                    let reason = format!(
                        "switched off: the guest did not shut down within {} s",
                        SHUTDOWN_TIMEOUT.as_secs()
                    );
                    self.finish_stop(&row, &agent, Some(reason)).await;
                } else if self.issued_for(&row.id, "stop").is_none() {
                    self.issued.insert(row.id.clone(), (Instant::now(), "stop"));
                    if let Err(e) = agent.stop(&row.id).await {
                        tracing::warn!(instance_id = row.id, error = %e, "stop failed; will retry");
                        self.issued.remove(&row.id);
                    }
                }
            }
        }
    }

    async fn finish_stop(
        &mut self,
        row: &InstanceRow,
        agent: &Arc<dyn HostAgent>,
        reason: Option<String>,
    ) {
        if let Err(e) = agent.destroy(&row.id).await {
            tracing::warn!(instance_id = row.id, error = %e, "destroy failed; will retry");
            return;
        }
        self.issued.remove(&row.id);
        self.commit(row, To::Stopped(reason)).await;
    }

    /// Records what a host reported about one of its VMs.
    async fn on_vm_status(&mut self, host_id: &str, status: VmStatus) {
        let row = match self.state.store.conn().await {
            Ok(mut c) => instances::get_any(&mut c, &status.instance_id).await,
            Err(e) => Err(e),
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot read the store");
                return;
            }
        };
        let Some(agent) = self.agent(host_id) else {
            return;
        };
        let Some(row) = row.filter(|r| r.host_id.as_deref() == Some(host_id)) else {
            tracing::info!(
                instance_id = status.instance_id,
                host_id,
                "removing a VM no instance owns"
            );
            let _ = agent.destroy(&status.instance_id).await;
            return;
        };
        let state = InstanceState::parse(&row.state);
        match (status.state, state) {
            (VmState::Running, Some(InstanceState::Pending)) if row.desired_state == "running" => {
                self.issued.remove(&row.id);
                self.commit(&row, To::Running).await;
            }
            (VmState::Stopped, Some(InstanceState::Stopping)) => {
                self.finish_stop(&row, &agent, None).await;
            }
            (VmState::Stopped, Some(InstanceState::Pending | InstanceState::Running)) => {
                self.finish_stop(&row, &agent, Some("the guest shut itself down".into()))
                    .await;
            }
            (VmState::Failed(reason), Some(InstanceState::Stopping)) => {
                self.finish_stop(&row, &agent, Some(reason)).await;
            }
            (VmState::Failed(reason), Some(InstanceState::Pending | InstanceState::Running)) => {
                let _ = agent.destroy(&row.id).await;
                self.issued.remove(&row.id);
                self.commit(&row, To::Failed(reason)).await;
            }
            _ => {}
        }
    }

    async fn resync_all(&mut self) {
        let hosts: Vec<String> = self.state.fleet.iter().map(|(id, _)| id.clone()).collect();
        for host_id in hosts {
            self.resync_host(&host_id).await;
        }
    }

    /// Sends every network with instances on this region's hosts its state as
    /// it stands, so that hosts that missed a change while the region was down
    /// catch up.
    async fn push_networks(&mut self) {
        let mut networks = std::collections::BTreeSet::new();
        for (host_id, _) in self.state.fleet.iter() {
            let rows = match self.state.store.conn().await {
                Ok(mut c) => instances::on_host(&mut c, host_id).await,
                Err(e) => Err(e),
            };
            networks.extend(rows.into_iter().flatten().filter_map(|r| r.network_id));
        }
        for network in networks {
            if let Err(e) = sync::push(&self.state, &network).await {
                tracing::warn!(network, error = %e, "network state not pushed");
            }
        }
    }

    /// Makes one host and the store agree: VMs nobody owns go, instances whose VM
    /// vanished fail, and what the host knows better is recorded.
    async fn resync_host(&mut self, host_id: &str) {
        let Some(agent) = self.agent(host_id) else {
            return;
        };
        let vms = match agent.list().await {
            Ok(vms) => vms,
            Err(e) => {
                tracing::warn!(host_id, error = %e, "cannot list the host's VMs");
                return;
            }
        };
        let rows = match self.state.store.conn().await {
            Ok(mut c) => instances::on_host(&mut c, host_id).await,
            Err(e) => Err(e),
        };
        let Ok(rows) = rows else { return };
        let mut on_host: HashMap<String, VmState> =
            vms.into_iter().map(|v| (v.instance_id, v.state)).collect();
        for row in rows {
            match on_host.remove(&row.id) {
                Some(state) => {
                    let status = VmStatus {
                        instance_id: row.id.clone(),
                        state,
                    };
                    self.on_vm_status(host_id, status).await;
                }
                None if row.state == InstanceState::Running.as_str() => {
                    self.commit(&row, To::Failed("its VM disappeared from the host".into()))
                        .await;
                }
                None => {}
            }
        }
        for orphan in on_host.into_keys() {
            tracing::info!(
                instance_id = orphan,
                host_id,
                "removing a VM no instance owns"
            );
            let _ = agent.destroy(&orphan).await;
        }
    }

    async fn purge(&mut self) {
        let before = self.state.clock.now_micros() - KEEP_TERMINATED.as_micros() as i64;
        let result: Result<_> = async {
            let mut tx = self.state.store.begin().await?;
            let n = instances::purge_terminated(&mut tx, before).await?;
            tx.commit().await?;
            nubo_store::Result::Ok(n)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "forgot instances terminated over an hour ago"),
            Err(e) => tracing::warn!(error = %e, "purge of terminated instances failed"),
        }
        self.issued.retain(|_, (at, _)| at.elapsed() < BOOT_TIMEOUT);
    }
}
