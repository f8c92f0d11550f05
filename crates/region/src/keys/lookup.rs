//! Finding the active key behind an access key id, for every authenticated request
//! of the API (and of the S3 endpoint).
//!
//! Answers are cached for a few seconds: a request then costs no store round trip.
//! This replica forgets a key at once when it changes it; other replicas of the
//! region see a disabled key refused within `TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nubo_api::keys::{KeyScope, KeyStatus};
use nubo_auth::SecretBox;
use nubo_store::{Store, StoreError, accounts, keys};

const TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 100_000;

/// A key that may sign requests now, with its secret in clear.
pub struct ActiveKey {
    pub key_id: String,
    pub account_id: String,
    pub scope: KeyScope,
    pub secret: String,
}

type Entry = (Instant, Option<Arc<ActiveKey>>);

pub struct KeyLookup {
    store: Store,
    secrets: SecretBox,
    cache: Mutex<HashMap<String, Entry>>,
}

impl KeyLookup {
    pub fn new(store: Store, secrets: SecretBox) -> KeyLookup {
        KeyLookup {
            store,
            secrets,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active key with this id; `None` when it is unknown, disabled, or its
    /// account is closed.
    pub async fn find(&self, key_id: &str) -> Result<Option<Arc<ActiveKey>>, StoreError> {
        if let Some((at, key)) = self.cache().get(key_id)
            && at.elapsed() < TTL
        {
            return Ok(key.clone());
        }
        let mut c = self.store.conn().await?;
        let found = keys::with_account(&mut c, key_id).await?;
        drop(c);
        let active = match found {
            Some((key, account))
                if key.status == KeyStatus::Active.as_str()
                    && account.status == accounts::ACTIVE =>
            {
                let secret = self
                    .secrets
                    .open(&key.id, &key.sealed_secret)
                    .map_err(|e| StoreError::Corrupt(format!("access key {}: {e}", key.id)))?;
                let scope = KeyScope::parse(&key.scope)
                    .ok_or_else(|| StoreError::Corrupt(format!("key scope {}", key.scope)))?;
                Some(Arc::new(ActiveKey {
                    key_id: key.id,
                    account_id: key.account_id,
                    scope,
                    secret,
                }))
            }
            _ => None,
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key_id.to_string(), (Instant::now(), active.clone()));
        Ok(active)
    }

    pub fn forget(&self, key_id: &str) {
        self.cache().remove(key_id);
    }

    pub fn forget_account(&self, account_id: &str) {
        self.cache()
            .retain(|_, (_, key)| key.as_ref().is_none_or(|k| k.account_id != account_id));
    }
}
