//! The volume reconciler: drives hosts toward what the store says of volumes
//! and snapshots, and records what hosts did.
//!
//! Host work (making files, copying snapshots, waiting for a guest to let go
//! of a disk) takes from milliseconds to minutes, so each operation runs as
//! its own task and the reconciler only starts what is not already running.
//! Every host call is idempotent, so after a crash the next pass simply
//! starts the unfinished ones again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nubo_api::compute::InstanceState;
use nubo_host::HostAgent;
use nubo_host::volumes::{Attached, ChunkStore, Detach, Manifest, Source, VolumeSpec};
use nubo_store::snapshots::{self, SnapshotRow};
use nubo_store::volumes::{self as store, VolumeRow};
use nubo_store::{Result, instances};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::chunks::SnapshotChunks;
use super::gib;
use super::progress;
use super::roots::mark;
use crate::state::AppState;

const PASS_EVERY: Duration = Duration::from_secs(1);
/// How often attachments are compared with what guests hold.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A guest that has not let go of a volume in this time keeps it (unless the
/// detach is forced).
const DETACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Deleted volumes and snapshots stay visible this long.
const KEEP_DELETED: Duration = Duration::from_secs(3600);
const PASS_BATCH: i64 = 1000;

pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let r = Reconciler {
            state,
            running: Arc::default(),
        };
        r.sweep_chunks().await;
        let mut pass = tokio::time::interval(PASS_EVERY);
        let mut last_resync = Instant::now();
        let mut last_purge = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = r.state.volumes.notified() => r.pass().await,
                _ = pass.tick() => {
                    r.pass().await;
                    if last_resync.elapsed() >= RESYNC_EVERY {
                        r.resync().await;
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

#[derive(Clone)]
struct Reconciler {
    state: AppState,
    /// Ids of volumes and snapshots with a host operation under way.
    running: Arc<Mutex<HashSet<String>>>,
}

impl Reconciler {
    fn agent(&self, host_id: Option<&str>) -> Option<Arc<dyn HostAgent>> {
        host_id.and_then(|h| self.state.fleet.agent(h).cloned())
    }

    fn chunks(&self) -> Arc<dyn ChunkStore> {
        Arc::new(SnapshotChunks(self.state.objects().clone()))
    }

    /// Runs `work` for resource `id` as its own task, unless one runs already.
    fn start<F>(&self, id: &str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if !self.running.lock().unwrap().insert(id.to_string()) {
            return;
        }
        let (running, id, state) = (self.running.clone(), id.to_string(), self.state.clone());
        tokio::spawn(async move {
            work.await;
            running.lock().unwrap().remove(&id);
            state.volumes.notify_one();
        });
    }

    /// Removes chunk files that no snapshot refers to: what a crash left of
    /// snapshots that were being taken or deleted. Runs before any snapshot
    /// work starts.
    async fn sweep_chunks(&self) {
        let _only = self.state.chunk_gc.write().await;
        let referenced = match self.state.store.conn().await {
            Ok(mut c) => snapshots::all_hashes(&mut c).await,
            Err(e) => Err(e),
        };
        let removed = match referenced {
            Ok(referenced) => self
                .state
                .objects()
                .chunks()
                .sweep(referenced)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match removed {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed snapshot chunks nothing refers to"),
            Err(e) => tracing::warn!(error = %e, "snapshot chunk sweep failed"),
        }
    }

    async fn pass(&self) {
        let rows = match self.state.store.conn().await {
            Ok(mut c) => match store::unsettled(&mut c, PASS_BATCH).await {
                Ok(v) => snapshots::unsettled(&mut c, PASS_BATCH)
                    .await
                    .map(|s| (v, s)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (volumes, snapshots) = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "volume reconciler cannot read the store");
                return;
            }
        };
        for v in volumes {
            if !self.running.lock().unwrap().contains(&v.id) {
                self.drive(v).await;
            }
        }
        for s in snapshots {
            if !self.running.lock().unwrap().contains(&s.id) {
                self.drive_snapshot(s).await;
            }
        }
    }

    async fn drive(&self, v: VolumeRow) {
        let agent = self.agent(v.host_id.as_deref());
        match (v.state.as_str(), v.attach_state.as_deref()) {
            // A new root volume is made by its instance's boot.
            (store::CREATING, _) if v.is_root => {}
            (store::CREATING, _) => self.create(v, agent),
            (store::RESIZING, _) => self.resize(v, agent),
            (store::DELETING, _) => self.delete(v, agent),
            (_, Some(store::ATTACHING)) => self.attach(v, agent).await,
            (_, Some(store::DETACHING)) => self.detach(v, agent).await,
            _ => {}
        }
    }

    fn create(&self, v: VolumeRow, agent: Option<Arc<dyn HostAgent>>) {
        let (r, id) = (self.clone(), v.id.clone());
        self.start(&id, async move {
            let Some(agent) = agent else {
                mark(&r.state, &v, |n| fail(n, "its host is unreachable")).await;
                return;
            };
            let spec = VolumeSpec {
                id: v.id.clone(),
                size_bytes: gib(v.size_gib),
                source: Source::Blank,
            };
            let made = match &v.snapshot_id {
                Some(snapshot) => r.restore(&agent, spec, snapshot).await,
                None => agent.create_volume(spec).await.map_err(|e| e.to_string()),
            };
            match made {
                Ok(()) => {
                    mark(&r.state, &v, |n| n.state = store::AVAILABLE.into()).await;
                }
                Err(why) => {
                    tracing::warn!(volume_id = v.id, error = why, "volume not made");
                    mark(&r.state, &v, |n| fail(n, &why)).await;
                }
            }
        });
    }

    /// Makes a volume from a snapshot's chunks; the chunks cannot be deleted
    /// meanwhile.
    async fn restore(
        &self,
        agent: &Arc<dyn HostAgent>,
        spec: VolumeSpec,
        snapshot_id: &str,
    ) -> std::result::Result<(), String> {
        let _chunks_stay = self.state.chunk_gc.read().await;
        let (snapshot, chunks) = {
            let mut c = self.state.store.conn().await.map_err(|e| e.to_string())?;
            let s = snapshots::get_any(&mut c, snapshot_id)
                .await
                .map_err(|e| e.to_string())?
                .filter(|s| s.state == snapshots::COMPLETED)
                .ok_or_else(|| format!("snapshot {snapshot_id} is no longer there"))?;
            let chunks = snapshots::chunks(&mut c, snapshot_id)
                .await
                .map_err(|e| e.to_string())?;
            (s, chunks)
        };
        let manifest = Manifest {
            size_bytes: gib(snapshot.volume_size_gib),
            chunk_size: snapshot.chunk_size as u64,
            chunks: chunks.into_iter().map(|(p, h)| (p as u64, h)).collect(),
        };
        let volume_id = spec.id.clone();
        progress::track(
            &self.state,
            progress::Copy::Restore,
            &volume_id,
            self.chunks(),
            |chunks| agent.restore_volume(spec, manifest, chunks),
        )
        .await
        .map_err(|e| format!("restoring snapshot {snapshot_id}: {e}"))
    }

    fn resize(&self, v: VolumeRow, agent: Option<Arc<dyn HostAgent>>) {
        let (r, id) = (self.clone(), v.id.clone());
        self.start(&id, async move {
            let Some(agent) = agent else { return };
            match agent.resize_volume(&v.id, gib(v.size_gib)).await {
                Ok(()) => {
                    mark(&r.state, &v, |n| n.state = store::AVAILABLE.into()).await;
                }
                Err(e) => tracing::warn!(volume_id = v.id, error = %e, "resize failed; will retry"),
            }
        });
    }

    fn delete(&self, v: VolumeRow, agent: Option<Arc<dyn HostAgent>>) {
        let (r, id) = (self.clone(), v.id.clone());
        self.start(&id, async move {
            let _no_backup_copies = r.state.volume_files.read().await;
            // A host that left the region took the file with it.
            if let Some(agent) = agent
                && let Err(e) = agent.delete_volume(&v.id).await
            {
                tracing::warn!(volume_id = v.id, error = %e, "delete failed; will retry");
                return;
            }
            let at = r.state.clock.now_micros();
            let result: Result<bool> = async {
                let mut tx = r.state.store.begin().await?;
                let next = VolumeRow {
                    state: store::DELETED.into(),
                    state_changed_at: at,
                    ..v.clone()
                };
                if store::update(&mut tx, &v, next).await?.is_none() {
                    return Ok(false);
                }
                super::manage::release(&mut tx, &v).await?;
                tx.commit().await?;
                Ok(true)
            }
            .await;
            match result {
                Ok(true) => tracing::info!(volume_id = v.id, "volume deleted"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(volume_id = v.id, error = %e, "volume deletion not recorded")
                }
            }
        });
    }

    /// The instance a volume is attached to, and whether its VM runs.
    async fn instance_of(&self, v: &VolumeRow) -> Option<(instances::InstanceRow, bool)> {
        let id = v.instance_id.as_deref()?;
        let mut c = self.state.store.conn().await.ok()?;
        let row = instances::get_any(&mut c, id).await.ok()??;
        let running = row.state == InstanceState::Running.as_str();
        Some((row, running))
    }

    async fn attach(&self, v: VolumeRow, agent: Option<Arc<dyn HostAgent>>) {
        let instance = self.instance_of(&v).await;
        let state = instance
            .as_ref()
            .and_then(|(i, _)| InstanceState::parse(&i.state));
        match state {
            Some(InstanceState::Running) => {}
            // Plugged in at its next start.
            Some(InstanceState::Stopped | InstanceState::Failed) => {
                mark(&self.state, &v, |n| {
                    n.attach_state = Some(store::ATTACHED.into())
                })
                .await;
                return;
            }
            Some(InstanceState::Pending | InstanceState::Stopping) => return,
            _ => {
                mark(&self.state, &v, |n| {
                    detached(n, Some("its instance terminated".into()))
                })
                .await;
                return;
            }
        }
        let (Some(agent), Some((instance, _)), Some(slot)) = (agent, instance, v.slot) else {
            return;
        };
        let (r, id) = (self.clone(), v.id.clone());
        self.start(&id, async move {
            let plug = Attached {
                volume_id: v.id.clone(),
                slot: slot as u32,
            };
            match agent.attach_volume(&instance.id, plug).await {
                Ok(()) => {
                    tracing::info!(
                        volume_id = v.id,
                        instance_id = instance.id,
                        "volume attached"
                    );
                    mark(&r.state, &v, |n| {
                        n.attach_state = Some(store::ATTACHED.into())
                    })
                    .await;
                }
                Err(e) => {
                    tracing::warn!(volume_id = v.id, error = %e, "attach failed");
                    let why = format!("attaching to {} failed: {e}", instance.id);
                    mark(&r.state, &v, |n| detached(n, Some(why))).await;
                }
            }
        });
    }

    async fn detach(&self, v: VolumeRow, agent: Option<Arc<dyn HostAgent>>) {
        let (agent, instance) = match (agent, self.instance_of(&v).await) {
            (Some(agent), Some((instance, true))) => (agent, instance),
            // No running VM holds it.
            _ => {
                mark(&self.state, &v, |n| detached(n, None)).await;
                return;
            }
        };
        let (r, id) = (self.clone(), v.id.clone());
        self.start(&id, async move {
            match agent
                .detach_volume(&instance.id, &v.id, v.force_detach)
                .await
            {
                Ok(Detach::Done) => {
                    tracing::info!(
                        volume_id = v.id,
                        instance_id = instance.id,
                        "volume detached"
                    );
                    mark(&r.state, &v, |n| detached(n, None)).await;
                }
                Ok(Detach::Pending) => {
                    let waited = r.state.clock.now_micros() - v.state_changed_at;
                    if waited > DETACH_TIMEOUT.as_micros() as i64 {
                        let why = format!(
                            "the guest of {} did not let go of the volume within {} s; \
                             unmount it and detach again, or detach with --force",
                            instance.id,
                            DETACH_TIMEOUT.as_secs()
                        );
                        mark(&r.state, &v, |n| {
                            n.attach_state = Some(store::ATTACHED.into());
                            n.state_reason = Some(why);
                        })
                        .await;
                    }
                }
                Err(e) => tracing::warn!(volume_id = v.id, error = %e, "detach failed; will retry"),
            }
        });
    }

    async fn drive_snapshot(&self, s: SnapshotRow) {
        match s.state.as_str() {
            snapshots::PENDING => self.take(s).await,
            snapshots::DELETING => self.forget(s),
            _ => {}
        }
    }

    async fn take(&self, s: SnapshotRow) {
        let volume = match self.state.store.conn().await {
            Ok(mut c) => store::get_any(&mut c, &s.volume_id).await.ok().flatten(),
            Err(_) => return,
        };
        let Some(v) = volume.filter(|v| v.state != store::DELETED && v.state != store::ERROR)
        else {
            self.finish_snapshot(&s, Err("its volume is gone".into()))
                .await;
            return;
        };
        if v.state == store::CREATING || v.state == store::RESIZING {
            return;
        }
        let Some(agent) = self.agent(v.host_id.as_deref()) else {
            self.finish_snapshot(&s, Err("its volume's host is unreachable".into()))
                .await;
            return;
        };
        // A running guest keeps writing while its host copies the volume.
        let writer = match self.instance_of(&v).await {
            Some((instance, true)) => Some(instance.id),
            _ => None,
        };
        let (r, id) = (self.clone(), s.id.clone());
        self.start(&id, async move {
            let _chunks_stay = r.state.chunk_gc.read().await;
            let started = Instant::now();
            let taken = progress::track(
                &r.state,
                progress::Copy::Snapshot,
                &s.id,
                r.chunks(),
                |chunks| agent.snapshot_volume(&v.id, writer.as_deref(), chunks),
            )
            .await
            .map_err(|e| e.to_string());
            if let Ok(m) = &taken {
                tracing::info!(
                    snapshot_id = s.id,
                    volume_id = v.id,
                    chunks = m.chunks.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "snapshot taken"
                );
            }
            r.finish_snapshot(&s, taken).await;
        });
    }

    async fn finish_snapshot(&self, s: &SnapshotRow, taken: std::result::Result<Manifest, String>) {
        let at = self.state.clock.now_micros();
        let result: Result<()> = async {
            let mut tx = self.state.store.begin().await?;
            let next = match &taken {
                Ok(m) => {
                    let chunks: Vec<(i64, String)> = m
                        .chunks
                        .iter()
                        .map(|(p, h)| (*p as i64, h.clone()))
                        .collect();
                    snapshots::set_chunks(&mut tx, &s.id, &chunks).await?;
                    let stored: u64 = m
                        .chunks
                        .iter()
                        .map(|(p, _)| m.chunk_size.min(m.size_bytes - p * m.chunk_size))
                        .sum();
                    SnapshotRow {
                        state: snapshots::COMPLETED.into(),
                        chunk_size: m.chunk_size as i64,
                        stored_bytes: stored as i64,
                        state_changed_at: at,
                        ..s.clone()
                    }
                }
                Err(why) => SnapshotRow {
                    state: snapshots::ERROR.into(),
                    state_reason: Some(why.clone()),
                    state_changed_at: at,
                    ..s.clone()
                },
            };
            if snapshots::update(&mut tx, s, next).await?.is_some() {
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(snapshot_id = s.id, error = %e, "snapshot result not recorded");
        }
    }

    /// Deletes a snapshot and the chunks only it used. No snapshot is taken
    /// or restored meanwhile, so a chunk one of those counts on never goes.
    fn forget(&self, s: SnapshotRow) {
        let (r, id) = (self.clone(), s.id.clone());
        self.start(&id, async move {
            let _alone = r.state.chunk_gc.write().await;
            let at = r.state.clock.now_micros();
            let result: Result<Option<Vec<String>>> = async {
                let mut tx = r.state.store.begin().await?;
                let orphans = snapshots::release_chunks(&mut tx, &s.id).await?;
                let next = SnapshotRow {
                    state: snapshots::DELETED.into(),
                    state_changed_at: at,
                    ..s.clone()
                };
                if snapshots::update(&mut tx, &s, next).await?.is_none() {
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(orphans))
            }
            .await;
            match result {
                Ok(Some(orphans)) => {
                    r.state.objects().chunks().remove(&orphans).await;
                    tracing::info!(
                        snapshot_id = s.id,
                        freed = orphans.len(),
                        "snapshot deleted"
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(snapshot_id = s.id, error = %e, "snapshot not deleted"),
            }
        });
    }

    /// Finds volumes a guest unplugged itself and records them detached.
    async fn resync(&self) {
        let rows = match self.state.store.conn().await {
            Ok(mut c) => store::attached(&mut c).await,
            Err(e) => Err(e),
        };
        let Ok(rows) = rows else { return };
        for v in rows.into_iter().filter(|v| !v.is_root) {
            if self.running.lock().unwrap().contains(&v.id) {
                continue;
            }
            let (Some(agent), Some((instance, true))) =
                (self.agent(v.host_id.as_deref()), self.instance_of(&v).await)
            else {
                continue;
            };
            let plugged = match agent.attached_volumes(&instance.id).await {
                Ok(Some(plugged)) => plugged,
                _ => continue,
            };
            if plugged.contains(&v.id) {
                continue;
            }
            let (r, id) = (self.clone(), v.id.clone());
            self.start(&id, async move {
                // Frees what QEMU still holds of the volume's file.
                if let Ok(Detach::Done) = agent.detach_volume(&instance.id, &v.id, false).await {
                    tracing::info!(volume_id = v.id, "the guest unplugged a volume");
                    let why = Some(format!("the guest of {} unplugged it", instance.id));
                    mark(&r.state, &v, |n| detached(n, why)).await;
                }
            });
        }
    }

    async fn purge(&self) {
        let before = self.state.clock.now_micros() - KEEP_DELETED.as_micros() as i64;
        let result: Result<()> = async {
            let mut tx = self.state.store.begin().await?;
            store::purge_deleted(&mut tx, before).await?;
            snapshots::purge_deleted(&mut tx, before).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "purge of deleted volumes failed");
        }
    }
}

fn fail(v: &mut VolumeRow, why: &str) {
    v.state = store::ERROR.into();
    v.state_reason = Some(why.to_string());
}

/// The volume is out of its instance.
fn detached(v: &mut VolumeRow, why: Option<String>) {
    v.state = store::AVAILABLE.into();
    v.state_reason = why;
    v.instance_id = None;
    v.attach_state = None;
    v.slot = None;
    v.force_detach = false;
}
