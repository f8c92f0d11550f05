use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the write refers to is gone (a foreign key refused it).
    #[error("missing: {0}")]
    Missing(String),
    #[error("store configuration: {0}")]
    Config(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Missing(db.message().to_string())
            }
            _ => StoreError::Db(e),
        }
    }
}

impl StoreError {
    /// True when the store could not be reached (as opposed to refusing the query).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Db(
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::WorkerCrashed
                )
        )
    }
}
