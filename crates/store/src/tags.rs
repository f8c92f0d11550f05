//! Tags of an account's resources, for what is grouped by tag.

use std::collections::{BTreeMap, HashMap};

use crate::{Conn, Result, StoreError};

pub type Tags = BTreeMap<String, String>;

/// The tags of each of the account's tagged resources, by resource id.
pub async fn of_account(c: &mut Conn, account_id: &str) -> Result<HashMap<String, Tags>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, tags FROM volumes WHERE account_id = $1 \
         UNION ALL SELECT id, tags FROM snapshots WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_all(c)
    .await?;
    rows.into_iter()
        .map(|(id, tags)| {
            serde_json::from_str(&tags)
                .map(|t| (id, t))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}
