//! The region's store: one schema on two engines.
//!
//! SQLite is the embedded default; PostgreSQL serves a region that spans hosts or
//! runs several `nubod` replicas. Both run the same migrations (`migrations/`) and
//! the same queries, written in the SQL both understand, through sqlx's `Any`
//! driver. Times are microseconds since the Unix epoch.
//!
//! Every function that changes the state of a resource also appends its event in
//! the same transaction, so the event log (which metering reads) cannot disagree
//! with the resources.

pub mod accounts;
pub mod buckets;
pub mod budgets;
pub mod commitments;
mod error;
pub mod events;
pub mod hosts;
pub mod ids;
pub mod images;
pub mod instances;
pub mod invoices;
pub mod key_pairs;
pub mod keys;
pub mod migrations;
pub mod multipart;
pub mod networks;
pub mod objects;
pub mod quotas;
pub mod rollups;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
pub mod volumes;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use error::StoreError;
pub use sqlx::AnyConnection as Conn;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// SQLite allows one writer at a time and does not retry a deferred transaction
    /// that must upgrade to a write lock, so writers queue here instead of failing
    /// with SQLITE_BUSY. PostgreSQL needs no such gate.
    writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction. Dropping it without `commit` rolls back.
pub struct Tx {
    inner: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Store {
    /// Opens (creating it if needed) and migrates the store at `url`:
    /// `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL scheme (use sqlite:// or postgres://): {}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let url = match engine {
            Engine::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::from)?;
        let pool = match engine {
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never wait for the writer. FULL: a committed
                            // transaction survives power loss, which billing relies on.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Engine::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?
            }
        };
        let store = Store {
            pool,
            engine,
            writer: (engine == Engine::Sqlite).then(|| Arc::new(Mutex::new(()))),
        };
        migrations::run(&store).await?;
        Ok(store)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A connection for reads outside a transaction.
    pub async fn conn(&self) -> Result<PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let Some(gate) = &self.writer else {
            return Ok(Tx {
                inner: self.pool.begin().await?,
                _writer: None,
            });
        };
        let writer = gate.clone().lock_owned().await;
        // A write outside a transaction (autocommit) does not queue at the gate:
        // IMMEDIATE waits for it (busy_timeout) as the transaction begins, where
        // a deferred one would fail with SQLITE_BUSY once it first writes.
        Ok(Tx {
            inner: self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _writer: Some(writer),
        })
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Writes a consistent copy of an SQLite store to the new file `to`
    /// while writers go on (`VACUUM INTO`: one read transaction).
    pub async fn copy_sqlite(&self, to: &std::path::Path) -> Result<()> {
        if self.engine != Engine::Sqlite {
            return Err(StoreError::Config(
                "only an SQLite store copies itself; use pg_dump".into(),
            ));
        }
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Config(format!("{} is not UTF-8", to.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(to)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.inner.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.inner
    }
}

/// A query with its parameters bound, ready to run.
pub(crate) type Bound<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Runs `query` and maps the row it finds, if any.
pub(crate) async fn fetch_optional<T>(
    c: &mut Conn,
    query: Bound<'_>,
    map: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    query.fetch_optional(c).await?.as_ref().map(map).transpose()
}

/// Runs `query` and maps every row.
pub(crate) async fn fetch_all<T>(
    c: &mut Conn,
    query: Bound<'_>,
    map: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    query.fetch_all(c).await?.iter().map(map).collect()
}

/// Page bounds for keyset pagination on a resource's id.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Only ids strictly greater than this.
    pub after: Option<String>,
    pub limit: u32,
}

impl PageQuery {
    pub(crate) fn after(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// Asks for one row more than the page, to learn whether another page follows.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// A page of rows and the id to continue after, if there is more.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

impl<T> Paged<T> {
    pub(crate) fn from_rows(mut rows: Vec<T>, page: &PageQuery, id: impl Fn(&T) -> &str) -> Self {
        let limit = page.limit as usize;
        let next_after = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| id(r).to_string())
        } else {
            None
        };
        Paged {
            items: rows,
            next_after,
        }
    }
}
