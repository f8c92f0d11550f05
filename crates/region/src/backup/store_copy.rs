//! The store's part of a backup: a consistent copy taken while the region
//! runs, and putting it back. SQLite copies itself (`VACUUM INTO`, one read
//! transaction); PostgreSQL's copy is `pg_dump`'s (one snapshot), restored by
//! `pg_restore`. Both client programs come with Debian's postgresql-client
//! and must be of the server's major version or newer.

use std::path::{Path, PathBuf};

use nubo_store::{Engine, Store};

/// The file a backup names the store's copy by.
pub fn archive_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "region.db",
        Engine::Postgres => "store.pgdump",
    }
}

/// Copies the store into `dir`; the copy's path.
pub async fn take(store: &Store, database_url: &str, dir: &Path) -> Result<PathBuf, String> {
    let to = dir.join(archive_name(store.engine()));
    match store.engine() {
        Engine::Sqlite => store
            .copy_sqlite(&to)
            .await
            .map_err(|e| format!("copying the store: {e}"))?,
        Engine::Postgres => {
            let mut cmd = postgres_client("pg_dump", database_url)?;
            cmd.args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(&to);
            run(cmd, "pg_dump").await?;
        }
    }
    Ok(to)
}

/// Loads a `pg_dump` copy into the (empty) database at `database_url`.
pub async fn restore_postgres(dump: &Path, database_url: &str) -> Result<(), String> {
    let mut cmd = postgres_client("pg_restore", database_url)?;
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
    ])
    .arg(dump);
    run(cmd, "pg_restore").await
}

/// A PostgreSQL client program for `database_url`, its password handed over
/// in the environment rather than on a command line others can read.
fn postgres_client(program: &str, database_url: &str) -> Result<tokio::process::Command, String> {
    let mut url = url::Url::parse(database_url).map_err(|e| format!("database URL: {e}"))?;
    let mut cmd = tokio::process::Command::new(program);
    if let Some(password) = url.password() {
        let password = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
        cmd.env("PGPASSWORD", password.as_ref());
        let _ = url.set_password(None);
    }
    cmd.arg(format!("--dbname={url}"));
    Ok(cmd)
}

async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<(), String> {
    let out = cmd.output().await.map_err(|e| {
        format!("{what}: {e} (install Debian's postgresql-client, of the server's version)")
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
