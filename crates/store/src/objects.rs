//! Object versions. A key's versions are ordered by `seq`; exactly one is the
//! latest (which may be a delete marker). Storage changes are events, in the same
//! transaction, for metering (GB-seconds).

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{self, NewEvent};
use crate::{Conn, Result};

/// The version id of objects written while versioning is off or suspended.
pub const NULL_VERSION: &str = "null";

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub bucket_id: String,
    pub key: String,
    pub version_id: String,
    pub seq: i64,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: i64,
    pub etag: String,
    /// Where the data is, as JSON (files and their sizes, in order); `[]` for
    /// inline data and delete markers.
    pub segments: String,
    /// The data itself, for small objects; not loaded by listings.
    pub inline_data: Option<Vec<u8>>,
    pub content_type: Option<String>,
    /// Metadata as JSON: user metadata, content headers, checksums, part count.
    pub meta: String,
    pub created_at: i64,
}

const LISTED: &str = "bucket_id, object_key, version_id, seq, is_latest, delete_marker, size, \
                      etag, segments, content_type, meta, created_at";

fn from_row(r: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        bucket_id: r.try_get("bucket_id")?,
        key: r.try_get("object_key")?,
        version_id: r.try_get("version_id")?,
        seq: r.try_get("seq")?,
        is_latest: r.try_get::<i64, _>("is_latest")? != 0,
        delete_marker: r.try_get::<i64, _>("delete_marker")? != 0,
        size: r.try_get("size")?,
        etag: r.try_get("etag")?,
        segments: r.try_get("segments")?,
        inline_data: None,
        content_type: r.try_get("content_type")?,
        meta: r.try_get("meta")?,
        created_at: r.try_get("created_at")?,
    })
}

fn with_data(r: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        inline_data: r.try_get("inline_data")?,
        ..from_row(r)?
    })
}

fn event<'a>(account_id: &'a str, o: &'a ObjectRow, at: i64, action: &'a str) -> NewEvent<'a> {
    NewEvent {
        at,
        account_id: Some(account_id),
        resource_type: "object",
        resource_id: &o.bucket_id,
        action,
        data: json!({ "key": o.key, "version_id": o.version_id, "size": o.size }),
    }
}

async fn append(
    c: &mut Conn,
    account_id: &str,
    o: &ObjectRow,
    at: i64,
    action: &str,
) -> Result<()> {
    events::append(c, event(account_id, o, at, action)).await?;
    Ok(())
}

/// The latest version of a key (possibly a delete marker), with its data.
pub async fn latest(c: &mut Conn, bucket_id: &str, key: &str) -> Result<Option<ObjectRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED}, inline_data FROM objects \
             WHERE bucket_id = $1 AND object_key = $2 AND is_latest = 1"
        )))
        .bind(bucket_id)
        .bind(key),
        with_data,
    )
    .await
}

/// One version of a key, with its data.
pub async fn version(
    c: &mut Conn,
    bucket_id: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<ObjectRow>> {
    crate::fetch_optional(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED}, inline_data FROM objects \
             WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3"
        )))
        .bind(bucket_id)
        .bind(key)
        .bind(version_id),
        with_data,
    )
    .await
}

/// A version to make the latest of its key (see [`put_many`]).
#[derive(Debug, Clone)]
pub struct Put {
    pub account_id: String,
    pub row: ObjectRow,
    /// Remove the key's `null` version (if any) first: PUTs while versioning is
    /// off or suspended replace it.
    pub replace_null: bool,
}

/// Makes one version the latest of its key; see [`put_many`].
pub async fn put(
    c: &mut Conn,
    account_id: &str,
    row: &mut ObjectRow,
    replace_null: bool,
) -> Result<Vec<ObjectRow>> {
    let mut puts = [Put {
        account_id: account_id.to_string(),
        row: row.clone(),
        replace_null,
    }];
    let mut removed = put_many(c, &mut puts).await?;
    *row = puts[0].row.clone();
    Ok(removed.remove(0))
}

/// Makes each row the latest version of its key, in order, its `seq` raised
/// past the versions before it if the clock went back. Returns, for each put,
/// the rows it removed, whose files the caller deletes once the transaction
/// has committed.
///
/// Every PUT runs this, and concurrent PUTs are committed together: so it costs
/// four statements per batch rather than per object (lookups ride on
/// `RETURNING`), in rounds only where a batch writes one key twice.
pub async fn put_many(c: &mut Conn, puts: &mut [Put]) -> Result<Vec<Vec<ObjectRow>>> {
    if puts.is_empty() {
        return Ok(Vec::new());
    }
    let mut removed = vec![Vec::new(); puts.len()];
    // A key's n-th write in the batch goes in round n, after its earlier ones.
    let mut writes = std::collections::HashMap::new();
    let rounds: Vec<usize> = puts
        .iter()
        .map(|p| {
            let n = writes
                .entry((p.row.bucket_id.clone(), p.row.key.clone()))
                .or_insert(0);
            *n += 1;
            *n - 1
        })
        .collect();
    for round in 0..=rounds.iter().copied().max().unwrap_or(0) {
        let members: Vec<usize> = (0..puts.len()).filter(|&i| rounds[i] == round).collect();
        put_round(c, puts, &members, &mut removed).await?;
    }
    Ok(removed)
}

/// Writes `puts[i]` for each `i` of `members`, whose keys are all different.
async fn put_round(
    c: &mut Conn,
    puts: &mut [Put],
    members: &[usize],
    removed: &mut [Vec<ObjectRow>],
) -> Result<()> {
    let key_of = |r: &ObjectRow| (r.bucket_id.clone(), r.key.clone());
    let mut member_of = std::collections::HashMap::new();
    for &i in members {
        member_of.insert(key_of(&puts[i].row), i);
    }
    let replacing: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| puts[i].replace_null)
        .collect();
    if !replacing.is_empty() {
        let keys = keys_condition(replacing.len(), 2);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM objects WHERE version_id = $1 AND ({keys}) RETURNING {LISTED}"
        )))
        .bind(NULL_VERSION);
        for &i in &replacing {
            q = q.bind(&puts[i].row.bucket_id).bind(&puts[i].row.key);
        }
        for old in crate::fetch_all(&mut *c, q, from_row).await? {
            if let Some(&i) = member_of.get(&key_of(&old)) {
                removed[i].push(old);
            }
        }
    }
    let keys = keys_condition(members.len(), 1);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE objects SET is_latest = 0 WHERE is_latest = 1 AND ({keys}) \
         RETURNING bucket_id, object_key, seq"
    )));
    for &i in members {
        q = q.bind(&puts[i].row.bucket_id).bind(&puts[i].row.key);
    }
    let mut last: std::collections::HashMap<(String, String), i64> = Default::default();
    for r in q.fetch_all(&mut *c).await? {
        let seq: i64 = r.try_get("seq")?;
        let k = (r.try_get("bucket_id")?, r.try_get("object_key")?);
        let e = last.entry(k).or_insert(seq);
        *e = (*e).max(seq);
    }
    for &i in members {
        let previous = last.get(&key_of(&puts[i].row)).copied();
        let replaced = removed[i].iter().map(|old| old.seq);
        if let Some(seq) = previous.into_iter().chain(replaced).max() {
            puts[i].row.seq = puts[i].row.seq.max(seq + 1);
        }
    }

    let values: Vec<String> = (0..members.len())
        .map(|n| {
            let p: Vec<String> = (1..=12).map(|k| format!("${}", n * 12 + k)).collect();
            format!("({}, 1, {})", p[..4].join(", "), p[4..].join(", "))
        })
        .collect();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO objects ({LISTED}, inline_data) VALUES {}",
        values.join(", ")
    )));
    for &i in members {
        let row = &puts[i].row;
        q = q
            .bind(&row.bucket_id)
            .bind(&row.key)
            .bind(&row.version_id)
            .bind(row.seq)
            .bind(i64::from(row.delete_marker))
            .bind(row.size)
            .bind(&row.etag)
            .bind(&row.segments)
            .bind(&row.content_type)
            .bind(&row.meta)
            .bind(row.created_at)
            .bind(&row.inline_data);
    }
    q.execute(&mut *c).await?;

    let mut log = Vec::new();
    for &i in members {
        let put = &puts[i];
        for old in removed[i].iter().filter(|old| !old.delete_marker) {
            log.push(event(&put.account_id, old, put.row.created_at, "removed"));
        }
        if !put.row.delete_marker {
            log.push(event(
                &put.account_id,
                &put.row,
                put.row.created_at,
                "stored",
            ));
        }
    }
    events::append_many(c, &log).await
}

/// `(bucket_id = $f AND object_key = $f+1) OR …` for `n` keys, placeholders
/// numbered from `first`.
fn keys_condition(n: usize, first: usize) -> String {
    let terms: Vec<String> = (0..n)
        .map(|k| {
            let b = first + 2 * k;
            format!("(bucket_id = ${b} AND object_key = ${})", b + 1)
        })
        .collect();
    terms.join(" OR ")
}

/// Deletes one version; if it was the latest, the next newest becomes latest.
/// Returns the deleted row.
pub async fn remove_version(
    c: &mut Conn,
    account_id: &str,
    bucket_id: &str,
    key: &str,
    version_id: &str,
    at: i64,
) -> Result<Option<ObjectRow>> {
    let Some(old) = version(&mut *c, bucket_id, key, version_id).await? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3")
        .bind(bucket_id)
        .bind(key)
        .bind(version_id)
        .execute(&mut *c)
        .await?;
    if old.is_latest {
        sqlx::query(
            "UPDATE objects SET is_latest = 1 WHERE bucket_id = $1 AND object_key = $2 AND seq = \
             (SELECT MAX(seq) FROM objects WHERE bucket_id = $1 AND object_key = $2)",
        )
        .bind(bucket_id)
        .bind(key)
        .execute(&mut *c)
        .await?;
    }
    if !old.delete_marker {
        append(c, account_id, &old, at, "removed").await?;
    }
    Ok(Some(old))
}

/// Latest versions that are not delete markers, with keys after `after` and from
/// `from` on, in key order.
pub async fn list_latest(
    c: &mut Conn,
    bucket_id: &str,
    after: &str,
    from: &str,
    limit: i64,
) -> Result<Vec<ObjectRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED} FROM objects \
             WHERE bucket_id = $1 AND is_latest = 1 AND delete_marker = 0 \
               AND object_key > $2 AND object_key >= $3 \
             ORDER BY object_key LIMIT $4"
        )))
        .bind(bucket_id)
        .bind(after)
        .bind(from)
        .bind(limit),
        from_row,
    )
    .await
}

/// Every version, keys from `from_key` on (newest version of a key first).
pub async fn list_versions(
    c: &mut Conn,
    bucket_id: &str,
    from_key: &str,
    limit: i64,
) -> Result<Vec<ObjectRow>> {
    crate::fetch_all(
        c,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTED} FROM objects WHERE bucket_id = $1 AND object_key >= $2 \
             ORDER BY object_key, seq DESC LIMIT $3"
        )))
        .bind(bucket_id)
        .bind(from_key)
        .bind(limit),
        from_row,
    )
    .await
}

/// Every file any object version uses, as stored (JSON segment lists).
pub async fn all_segments(c: &mut Conn) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT segments FROM objects WHERE segments <> '[]'")
            .fetch_all(c)
            .await?,
    )
}
