//! What every handler and reconciler shares.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use nubo_s3::ObjectStorage;

use nubo_auth::SecretBox;
use nubo_store::Store;
use tokio::sync::Notify;

use crate::accounts::signup_limit::SignupLimiter;
use crate::api::auth::ReplayGuard;
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::config::Config;
use crate::hosts::Fleet;
use crate::keys::lookup::KeyLookup;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub secrets: SecretBox,
    pub keys: KeyLookup,
    pub replay: ReplayGuard,
    pub signups: SignupLimiter,
    pub fleet: Fleet,
    pub metrics: Metrics,
    /// Wakes the instance reconciler after a change it should act on.
    pub reconcile: Notify,
    /// Wakes the volume reconciler.
    pub volumes: Notify,
    /// Held to read while snapshots are taken or restored, and to write while
    /// chunks are freed, so that no chunk goes that one of those counts on.
    pub chunk_gc: tokio::sync::RwLock<()>,
    /// Held to read while a volume's file is deleted, and to write while a
    /// backup copies volumes, so that every volume its copy of the store
    /// lists still has its file.
    pub volume_files: tokio::sync::RwLock<()>,
    pub operator_token: String,
    pub clock: Clock,
    /// Set once at start (object storage needs this state to check keys).
    pub objects: OnceLock<Arc<ObjectStorage>>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl AppState {
    /// Object storage; present from the moment the region serves.
    pub fn objects(&self) -> &Arc<ObjectStorage> {
        self.0
            .objects
            .get()
            .expect("object storage is opened before the region serves")
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
