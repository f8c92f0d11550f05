//! Embedded migrations, one source for both engines (see `migrations/`).

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::{Engine, Result, Store};

/// (version, description, source). Append only: a shipped migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/0001_foundation.sql"),
    ),
    (
        2,
        "key pairs",
        include_str!("../migrations/0002_key_pairs.sql"),
    ),
    (
        3,
        "private images",
        include_str!("../migrations/0003_private_images.sql"),
    ),
    (
        4,
        "object storage",
        include_str!("../migrations/0004_object_storage.sql"),
    ),
    (
        5,
        "networks",
        include_str!("../migrations/0005_networks.sql"),
    ),
    (
        6,
        "published ports",
        include_str!("../migrations/0006_published_ports.sql"),
    ),
    (
        7,
        "metadata tokens",
        include_str!("../migrations/0007_metadata_tokens.sql"),
    ),
    (
        8,
        "security groups",
        include_str!("../migrations/0008_security_groups.sql"),
    ),
    (
        9,
        "network tunnels",
        include_str!("../migrations/0009_network_tunnels.sql"),
    ),
    (
        10,
        "volumes",
        include_str!("../migrations/0010_volumes.sql"),
    ),
    (
        11,
        "billing",
        include_str!("../migrations/0011_billing.sql"),
    ),
    (
        12,
        "events by account",
        include_str!("../migrations/0012_events_by_account.sql"),
    ),
    (
        13,
        "usage roll-ups",
        include_str!("../migrations/0013_usage_rollups.sql"),
    ),
    (
        14,
        "usage batches",
        include_str!("../migrations/0014_usage_batches.sql"),
    ),
    (
        15,
        "instance quotas follow hosts",
        include_str!("../migrations/0015_instance_quotas_follow_hosts.sql"),
    ),
    (
        16,
        "copy progress",
        include_str!("../migrations/0016_copy_progress.sql"),
    ),
];

/// How many migrations this build carries.
pub const COUNT: usize = MIGRATIONS.len();

pub(crate) async fn run(store: &Store) -> Result<()> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, source)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                AssertSqlSafe(for_engine(source, store.engine())).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
        .run(store.pool())
        .await?;
    Ok(())
}

/// Keeps the common lines and the lines of `engine`'s `-- @<engine>` blocks.
pub(crate) fn for_engine(source: &str, engine: Engine) -> String {
    let mut out = String::with_capacity(source.len());
    let mut block: Option<&str> = None;
    for line in source.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("-- @") {
            block = (name != "end").then_some(name);
            continue;
        }
        if block.is_none_or(|b| b == engine.name()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_blocks_are_kept_only_for_their_engine() {
        let src = "a\n-- @sqlite\nb\n-- @end\n-- @postgres\nc\n-- @end\nd\n";
        assert_eq!(for_engine(src, Engine::Sqlite), "a\nb\nd\n");
        assert_eq!(for_engine(src, Engine::Postgres), "a\nc\nd\n");
    }

    #[test]
    fn every_block_is_closed_and_names_an_engine() {
        for (_, name, src) in MIGRATIONS {
            let mut open = None;
            for line in src.lines() {
                if let Some(tag) = line.trim().strip_prefix("-- @") {
                    match tag {
                        "end" => assert!(open.take().is_some(), "{name}: @end without block"),
                        "sqlite" | "postgres" => {
                            assert!(open.replace(tag).is_none(), "{name}: nested block")
                        }
                        other => panic!("{name}: unknown engine block @{other}"),
                    }
                }
            }
            assert!(open.is_none(), "{name}: unclosed block");
        }
    }
}
