//! The store's contract, run against both engines: SQLite always, PostgreSQL at
//! `NUBO_TEST_POSTGRES_URL` (which `cargo xtask test` starts and sets).

use std::sync::Arc;

use nubo_store::buckets::BucketRow;
use nubo_store::instances::InstanceRow;
use nubo_store::multipart::{self, PartRow, UploadRow};
use nubo_store::objects::{NULL_VERSION, ObjectRow, Put};
use nubo_store::{
    Engine, PageQuery, Store, StoreError, accounts, buckets, events, hosts, ids, images, instances,
    keys, objects, quotas,
};

/// A fresh, empty store of each engine.
async fn stores() -> Vec<Store> {
    let dir = std::env::temp_dir().join(format!("nubo-store-test-{}", ids::random_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = Store::open(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .unwrap();
    vec![sqlite, postgres().await]
}

async fn postgres() -> Store {
    let admin_url = std::env::var("NUBO_TEST_POSTGRES_URL").expect(
        "NUBO_TEST_POSTGRES_URL is not set: the store suite runs on PostgreSQL too. \
         Run `cargo xtask test`, or `export NUBO_TEST_POSTGRES_URL=$(cargo xtask pg-url)`",
    );
    let name = format!("nubo_test_{:016x}", ids::random_u64());
    let admin = Store::open(&admin_url).await.unwrap();
    let mut c = admin.conn().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut *c)
        .await
        .unwrap();
    drop(c);
    admin.close().await;
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let store = Store::open(&format!("{base}/{name}")).await.unwrap();
    assert_eq!(store.engine(), Engine::Postgres);
    store
}

async fn account(store: &Store, email: &str) -> String {
    let id = ids::new("acc");
    let mut tx = store.begin().await.unwrap();
    accounts::insert(&mut tx, &id, email, 1).await.unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn migrations_apply_once_and_a_reopen_applies_nothing_again() {
    let dir = std::env::temp_dir().join(format!("nubo-store-reopen-{}", ids::random_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    for store in [Store::open(&url).await.unwrap(), postgres().await] {
        let count = |store: Store| async move {
            let mut c = store.conn().await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut *c)
                .await
                .unwrap()
        };
        assert_eq!(
            count(store.clone()).await,
            nubo_store::migrations::COUNT as i64
        );
        if store.engine() == Engine::Sqlite {
            store.close().await;
            let again = Store::open(&url).await.unwrap();
            assert_eq!(count(again).await, nubo_store::migrations::COUNT as i64);
        }
    }
}

#[tokio::test]
async fn an_active_email_is_unique_and_free_again_once_closed() {
    for store in stores().await {
        let first = account(&store, "a@example.com").await;
        let mut tx = store.begin().await.unwrap();
        let dup = accounts::insert(&mut tx, &ids::new("acc"), "a@example.com", 2).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict(_))),
            "{:?}",
            store.engine()
        );
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        assert!(accounts::close(&mut tx, &first, 3).await.unwrap());
        assert!(
            !accounts::close(&mut tx, &first, 3).await.unwrap(),
            "closing twice is a no-op"
        );
        tx.commit().await.unwrap();
        account(&store, "a@example.com").await;
        let mut c = store.conn().await.unwrap();
        assert_eq!(accounts::count_active(&mut c).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn events_are_written_with_their_change_and_never_rewritten() {
    for store in stores().await {
        let kept = account(&store, "kept@example.com").await;
        let mut tx = store.begin().await.unwrap();
        let lost = ids::new("acc");
        accounts::insert(&mut tx, &lost, "lost@example.com", 5)
            .await
            .unwrap();
        drop(tx);
        let mut c = store.conn().await.unwrap();
        let kept_events = events::for_resource(&mut c, &kept).await.unwrap();
        assert_eq!(kept_events.len(), 1);
        assert_eq!(kept_events[0].action, "created");
        assert!(
            events::for_resource(&mut c, &lost)
                .await
                .unwrap()
                .is_empty(),
            "a rolled-back change leaves no event"
        );
        for sql in ["UPDATE events SET action = 'x'", "DELETE FROM events"] {
            let r = sqlx::query(sql).execute(&mut *c).await;
            assert!(r.is_err(), "{sql} must fail on {:?}", store.engine());
        }
        assert_eq!(
            events::for_resource(&mut c, &kept).await.unwrap(),
            kept_events
        );
    }
}

#[tokio::test]
async fn quota_reservations_never_overshoot_under_concurrency() {
    for store in stores().await {
        let acc = account(&store, "q@example.com").await;
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let (store, acc) = (store.clone(), acc.clone());
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    let ok = quotas::reserve(&mut tx, &acc, "vcpus", 1, 10)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    ok
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 10, "{:?}", store.engine());
        let mut tx = store.begin().await.unwrap();
        quotas::release(&mut tx, &acc, "vcpus", 25).await.unwrap();
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        assert_eq!(
            quotas::usage(&mut c, &acc).await.unwrap()["vcpus"],
            0,
            "never below zero"
        );
    }
}

#[tokio::test]
async fn host_allocation_respects_capacity_under_concurrency() {
    for store in stores().await {
        let mut tx = store.begin().await.unwrap();
        let host = hosts::register(&mut tx, &ids::new("host"), "h1", "sim", (4, 4096, 10), 1)
            .await
            .unwrap();
        let again = hosts::register(&mut tx, &ids::new("host"), "h1", "sim", (4, 4096, 10), 2)
            .await
            .unwrap();
        assert_eq!(
            host.id, again.id,
            "a host keeps its id across registrations"
        );
        tx.commit().await.unwrap();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (store, id) = (store.clone(), host.id.clone());
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    let ok = hosts::allocate(&mut tx, &id, 1, 512).await.unwrap();
                    tx.commit().await.unwrap();
                    ok
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 4, "{:?}", store.engine());
        let mut c = store.conn().await.unwrap();
        let h = hosts::get(&mut c, &host.id).await.unwrap().unwrap();
        assert_eq!((h.used_vcpus, h.used_memory_mib, h.instances), (4, 2048, 4));
    }
}

fn instance(account_id: &str, image_id: &str, n: usize) -> InstanceRow {
    InstanceRow {
        id: format!("i-{n:016x}"),
        account_id: account_id.into(),
        name: None,
        image_id: image_id.into(),
        instance_type: "n1.nano".into(),
        vcpus: 1,
        memory_mib: 64,
        host_id: None,
        state: "pending".into(),
        desired_state: "running".into(),
        state_reason: None,
        user_data: Some("#!/bin/sh\necho hi".into()),
        key_name: None,
        ssh_public_key: None,
        network_id: None,
        private_ip: None,
        metadata_tokens_required: false,
        launch_id: "launch-1".into(),
        launched_at: 10,
        state_changed_at: 10,
        version: 0,
    }
}

#[tokio::test]
async fn instances_page_by_id_are_tenant_scoped_and_update_optimistically() {
    for store in stores().await {
        let a = account(&store, "a@example.com").await;
        let b = account(&store, "b@example.com").await;
        let mut tx = store.begin().await.unwrap();
        let img = images::upsert_public(&mut tx, &ids::new("img"), "nubo-micro", "d", "{}", 1)
            .await
            .unwrap();
        for n in 0..5 {
            instances::insert(&mut tx, &instance(&a, &img.id, n))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();

        let mut c = store.conn().await.unwrap();
        let mut seen = Vec::new();
        let mut page = PageQuery {
            after: None,
            limit: 2,
        };
        loop {
            let p = instances::list(&mut c, &a, None, &page).await.unwrap();
            seen.extend(p.items.into_iter().map(|i| i.id));
            match p.next_after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{:?}", store.engine());
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let none = PageQuery {
            after: None,
            limit: 10,
        };
        assert!(
            instances::list(&mut c, &b, None, &none)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            instances::get(&mut c, &b, &seen[0])
                .await
                .unwrap()
                .is_none()
        );
        let running = instances::list(&mut c, &a, Some("running"), &none)
            .await
            .unwrap();
        assert!(running.items.is_empty());
        drop(c);

        let mut tx = store.begin().await.unwrap();
        let row = instances::get(&mut tx, &a, &seen[0])
            .await
            .unwrap()
            .unwrap();
        let next = InstanceRow {
            state: "running".into(),
            state_changed_at: 20,
            ..row.clone()
        };
        let stored = instances::update(&mut tx, &row, next.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 1);
        assert!(
            instances::update(&mut tx, &row, next)
                .await
                .unwrap()
                .is_none(),
            "a stale row does not overwrite"
        );
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        let actions: Vec<String> = events::for_resource(&mut c, &seen[0])
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["state.pending", "state.running"]);
    }
}

#[tokio::test]
async fn keys_are_found_with_their_account() {
    for store in stores().await {
        let a = account(&store, "k@example.com").await;
        let key = keys::KeyRow {
            id: "AKAAAAAAAAAAAAAAAAAA".into(),
            account_id: a.clone(),
            scope: "full".into(),
            status: "active".into(),
            sealed_secret: "v1:sealed".into(),
            created_at: 3,
        };
        let mut tx = store.begin().await.unwrap();
        keys::insert(&mut tx, &key).await.unwrap();
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        let (found, account) = keys::with_account(&mut c, &key.id).await.unwrap().unwrap();
        assert_eq!(found, key);
        assert_eq!(account.id, a);
        assert!(
            keys::get(&mut c, "acc-other", &key.id)
                .await
                .unwrap()
                .is_none()
        );
        drop(c);
        let mut tx = store.begin().await.unwrap();
        let disabled = keys::disable_all(&mut tx, &a, 4).await.unwrap();
        assert_eq!(disabled, vec![key.id.clone()]);
        assert!(keys::delete(&mut tx, &a, &key.id, 5).await.unwrap());
        tx.commit().await.unwrap();
    }
}

fn version(bucket_id: &str, key: &str, version_id: &str, seq: i64) -> ObjectRow {
    ObjectRow {
        bucket_id: bucket_id.into(),
        key: key.into(),
        version_id: version_id.into(),
        seq,
        is_latest: true,
        delete_marker: false,
        size: 3,
        etag: "e".into(),
        segments: "[]".into(),
        inline_data: Some(b"abc".to_vec()),
        content_type: None,
        meta: "{}".into(),
        created_at: seq,
    }
}

/// A private, unversioned bucket of `account_id` with a name of its own.
fn private_bucket(account_id: &str) -> BucketRow {
    BucketRow {
        id: ids::new("bkt"),
        name: format!("b{}", ids::random_u64()),
        account_id: account_id.to_string(),
        region: "r".into(),
        versioning: String::new(),
        acl: buckets::PRIVATE.into(),
        policy: None,
        cors: None,
        created_at: 1,
    }
}

#[tokio::test]
async fn a_batch_of_puts_leaves_each_key_one_latest_version_in_order() {
    for store in stores().await {
        let account_id = account(&store, "batch@example.com").await;
        let bucket = private_bucket(&account_id);
        let b = bucket.id.as_str();
        let mut tx = store.begin().await.unwrap();
        buckets::insert(&mut tx, &bucket).await.unwrap();
        // Written when the clock was ahead: the batch must still come after it.
        let mut old = version(b, "replaced", NULL_VERSION, 500);
        objects::put(&mut tx, &account_id, &mut old, true)
            .await
            .unwrap();
        let put = |key: &str, version_id: &str, replace_null| Put {
            account_id: account_id.clone(),
            row: version(b, key, version_id, 100),
            replace_null,
        };
        let mut puts = vec![
            put("twice", NULL_VERSION, true),
            put("versioned", "v1", false),
            put("twice", NULL_VERSION, true),
            put("replaced", NULL_VERSION, true),
            put("versioned", "v2", false),
        ];
        let removed = objects::put_many(&mut tx, &mut puts).await.unwrap();
        tx.commit().await.unwrap();

        let removed_seqs: Vec<Vec<i64>> = removed
            .iter()
            .map(|r| r.iter().map(|o| o.seq).collect())
            .collect();
        assert_eq!(
            removed_seqs,
            vec![vec![], vec![], vec![puts[0].row.seq], vec![500], vec![]]
        );
        assert_eq!(puts[3].row.seq, 501, "raised past the version it replaced");
        assert!(puts[2].row.seq > puts[0].row.seq);
        assert!(puts[4].row.seq > puts[1].row.seq);

        let mut c = store.conn().await.unwrap();
        let all = objects::list_versions(&mut c, b, "", 100).await.unwrap();
        let seen: Vec<(&str, &str, bool)> = all
            .iter()
            .map(|o| (o.key.as_str(), o.version_id.as_str(), o.is_latest))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("replaced", NULL_VERSION, true),
                ("twice", NULL_VERSION, true),
                ("versioned", "v2", true),
                ("versioned", "v1", false),
            ]
        );
        assert_eq!(
            objects::latest(&mut c, b, "twice")
                .await
                .unwrap()
                .unwrap()
                .seq,
            puts[2].row.seq
        );
        let actions: Vec<String> = events::for_resource(&mut c, b)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.resource_type == "object")
            .map(|e| e.action)
            .collect();
        let count = |a: &str| actions.iter().filter(|x| *x == a).count();
        assert_eq!((count("stored"), count("removed")), (6, 2), "{actions:?}");
    }
}

#[tokio::test]
async fn uploads_do_not_keep_a_bucket_and_aborting_them_all_ends_their_metering() {
    for store in stores().await {
        let account_id = account(&store, "uploads@example.com").await;
        let bucket = private_bucket(&account_id);
        let b = bucket.id.as_str();
        let mut tx = store.begin().await.unwrap();
        buckets::insert(&mut tx, &bucket).await.unwrap();
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            let upload = UploadRow {
                id: format!("up-{key}"),
                bucket_id: b.into(),
                key: key.into(),
                meta: "{}".into(),
                created_at: 2,
            };
            multipart::create(&mut tx, &account_id, &upload)
                .await
                .unwrap();
            // Upload a has no part, b one, c two.
            for part_number in 1..=n as i64 {
                let part = PartRow {
                    upload_id: upload.id.clone(),
                    part_number,
                    size: 10 * part_number,
                    etag: "e".into(),
                    blob_id: format!("blob-{key}-{part_number}"),
                    checksums: "{}".into(),
                    created_at: 3,
                };
                multipart::put_part(&mut tx, &account_id, b, &part)
                    .await
                    .unwrap();
            }
        }
        assert!(
            buckets::is_empty(&mut tx, b).await.unwrap(),
            "uploads are not content"
        );
        let mut marker = version(b, "k", "v1", 4);
        marker.delete_marker = true;
        objects::put(&mut tx, &account_id, &mut marker, false)
            .await
            .unwrap();
        assert!(
            !buckets::is_empty(&mut tx, b).await.unwrap(),
            "a delete marker is"
        );
        objects::remove_version(&mut tx, &account_id, b, "k", "v1", 5)
            .await
            .unwrap();
        assert!(buckets::is_empty(&mut tx, b).await.unwrap());

        let mut parts: Vec<String> = multipart::abort_all(&mut tx, &account_id, b, 6)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.blob_id)
            .collect();
        parts.sort();
        assert_eq!(parts, ["blob-b-1", "blob-c-1", "blob-c-2"]);
        buckets::delete(&mut tx, &bucket, 6).await.unwrap();
        tx.commit().await.unwrap();

        let mut c = store.conn().await.unwrap();
        assert!(multipart::all_blobs(&mut c).await.unwrap().is_empty());
        assert!(
            multipart::get(&mut c, b, "up-a").await.unwrap().is_none(),
            "no upload is left"
        );
        let logged = events::for_resource(&mut c, b).await.unwrap();
        let removed: Vec<(i64, i64)> = logged
            .iter()
            .filter(|e| e.resource_type == "part" && e.action == "removed")
            .map(|e| {
                (
                    e.data["parts"].as_i64().unwrap(),
                    e.data["size"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            removed,
            [(1, 10), (2, 30)],
            "one event per upload with parts"
        );
        let mut aborted = Vec::new();
        for id in ["up-a", "up-b", "up-c"] {
            let upload_events = events::for_resource(&mut c, id).await.unwrap();
            aborted.extend(upload_events.into_iter().filter(|e| e.action == "aborted"));
        }
        assert_eq!(aborted.len(), 3, "every upload ends as aborted");
    }
}

#[tokio::test]
async fn network_addresses_are_the_lowest_free_and_come_back_when_released() {
    use nubo_store::networks::{self, NetworkRow};
    for store in stores().await {
        let account_id = account(&store, "net@example.com").await;
        let mut tx = store.begin().await.unwrap();
        let default = networks::default_for(&mut tx, &account_id, 1)
            .await
            .unwrap();
        let again = networks::default_for(&mut tx, &account_id, 2)
            .await
            .unwrap();
        assert_eq!(default, again, "one default network per account");
        let mut small = NetworkRow {
            id: ids::new("net"),
            account_id: account_id.clone(),
            name: "small".into(),
            cidr: "10.9.0.0/29".into(),
            is_default: false,
            created_at: 3,
            vni: 0,
        };
        networks::insert(&mut tx, &mut small).await.unwrap();
        assert!(
            small.vni > 0 && small.vni != default.vni,
            "each network has a VXLAN id of its own: {} {}",
            small.vni,
            default.vni
        );
        let mut given = Vec::new();
        for i in 0..3 {
            given.push(
                networks::allocate(&mut tx, &small, &format!("i-{i}"))
                    .await
                    .unwrap(),
            );
        }
        let addr = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            given,
            [addr("10.9.0.4"), addr("10.9.0.5"), addr("10.9.0.6")]
        );
        assert_eq!(
            networks::allocate(&mut tx, &small, "i-3").await.unwrap(),
            None,
            "a /29 has three addresses for instances"
        );
        networks::release(&mut tx, "i-1").await.unwrap();
        assert_eq!(
            networks::allocate(&mut tx, &small, "i-4").await.unwrap(),
            addr("10.9.0.5")
        );
        let refused = networks::delete(&mut tx, &small, 4).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        for i in ["i-0", "i-2", "i-4"] {
            networks::release(&mut tx, i).await.unwrap();
        }
        networks::delete(&mut tx, &small, 5).await.unwrap();
        tx.commit().await.unwrap();

        let mut c = store.conn().await.unwrap();
        assert_eq!(
            networks::get(&mut c, &account_id, "small").await.unwrap(),
            None
        );
        let actions: Vec<String> = events::for_resource(&mut c, &small.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["created", "deleted"]);
        let other = account(&store, "other-net@example.com").await;
        assert_eq!(
            networks::get(&mut c, &other, &default.id).await.unwrap(),
            None,
            "another account's network is not found"
        );
    }
}

fn volume(account_id: &str, n: i64) -> nubo_store::volumes::VolumeRow {
    nubo_store::volumes::VolumeRow {
        id: ids::new("vol"),
        account_id: account_id.into(),
        name: Some(format!("v{n}")),
        size_gib: n,
        host_id: Some("host-a".into()),
        state: nubo_store::volumes::AVAILABLE.into(),
        state_reason: None,
        image_id: None,
        snapshot_id: None,
        instance_id: None,
        attach_state: None,
        slot: None,
        is_root: false,
        delete_on_termination: false,
        force_detach: false,
        tags: "{}".into(),
        created_at: n,
        state_changed_at: n,
        version: 0,
        progress: None,
    }
}

#[tokio::test]
async fn volumes_update_optimistically_and_log_every_state_change() {
    use nubo_store::volumes;
    for store in stores().await {
        let a = account(&store, "vols@example.com").await;
        let b = account(&store, "other@example.com").await;
        let mut tx = store.begin().await.unwrap();
        let v = volume(&a, 2);
        volumes::insert(&mut tx, &v).await.unwrap();
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        assert!(volumes::get(&mut c, &b, &v.id).await.unwrap().is_none());
        let attached = volumes::VolumeRow {
            state: volumes::IN_USE.into(),
            instance_id: Some("i-1".into()),
            attach_state: Some(volumes::ATTACHING.into()),
            slot: Some(0),
            state_changed_at: 10,
            ..v.clone()
        };
        let stored = volumes::update(&mut c, &v, attached.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 1);
        assert!(
            volumes::update(&mut c, &v, attached)
                .await
                .unwrap()
                .is_none(),
            "a stale row does not overwrite"
        );
        let renamed = volumes::VolumeRow {
            name: Some("renamed".into()),
            ..stored.clone()
        };
        volumes::update(&mut c, &stored, renamed)
            .await
            .unwrap()
            .unwrap();
        let actions: Vec<String> = events::for_resource(&mut c, &v.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            ["state.available", "state.in-use"],
            "a rename is no state change"
        );
        assert_eq!(volumes::unsettled(&mut c, 10).await.unwrap().len(), 1);
        assert_eq!(volumes::of_instance(&mut c, "i-1").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_deleted_snapshot_frees_only_the_chunks_no_other_uses() {
    use nubo_store::snapshots::{self, SnapshotRow};
    for store in stores().await {
        let a = account(&store, "snaps@example.com").await;
        let snapshot = |n: i64| SnapshotRow {
            id: ids::new("snap"),
            account_id: a.clone(),
            volume_id: "vol-1".into(),
            volume_size_gib: 1,
            description: String::new(),
            state: snapshots::PENDING.into(),
            state_reason: None,
            chunk_size: 4 << 20,
            stored_bytes: 0,
            tags: "{}".into(),
            created_at: n,
            state_changed_at: n,
            version: 0,
            progress: None,
        };
        let (first, second) = (snapshot(1), snapshot(2));
        let mut tx = store.begin().await.unwrap();
        snapshots::insert(&mut tx, &first).await.unwrap();
        snapshots::insert(&mut tx, &second).await.unwrap();
        let many: Vec<(i64, String)> = (0..700).map(|p| (p, format!("{p:064x}"))).collect();
        snapshots::set_chunks(&mut tx, &first.id, &many)
            .await
            .unwrap();
        let shared = vec![(0, format!("{:064x}", 0)), (1, "f".repeat(64))];
        snapshots::set_chunks(&mut tx, &second.id, &shared)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        assert_eq!(snapshots::chunks(&mut c, &first.id).await.unwrap(), many);
        let mut freed = snapshots::release_chunks(&mut c, &first.id).await.unwrap();
        freed.sort();
        assert_eq!(freed.len(), 699, "all but the one the second shares");
        assert!(!freed.contains(&format!("{:064x}", 0)));
        let left = snapshots::all_hashes(&mut c).await.unwrap();
        assert_eq!(left.len(), 2);
        assert!(
            snapshots::chunks(&mut c, &first.id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
