//! The API over plain HTTP: authentication, bad input, idempotency, capacity,
//! rate limits, closing accounts, restarts.

mod common;

use std::time::{Duration, SystemTime};

use common::{Region, StoreKind};
use serde_json::{Value, json};

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

fn launch_body(count: u32) -> String {
    json!({ "image": "nubo-micro", "instance_type": "n1.nano", "count": count }).to_string()
}

/// The observable state of an account: its keys and instances.
fn snapshot(r: &Region, c: &common::Creds) -> (Value, Value) {
    let (_, keys) = r.signed(c, "GET", "/v1/keys", None);
    let (_, instances) = r.signed(c, "GET", "/v1/instances", None);
    (keys, instances)
}

on_both_stores!(
    bad_input_gets_a_clear_4xx_and_changes_nothing,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("bad@example.com");
        let before = snapshot(&r, &c);
        let big = format!(
            "{{\"scope\":\"full\",\"pad\":\"{}\"}}",
            "x".repeat(300 * 1024)
        );
        let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
            (
                "POST",
                "/v1/keys",
                Some("{\"scope\":".into()),
                400,
                "InvalidRequest",
            ),
            (
                "POST",
                "/v1/keys",
                Some("{\"scope\":\"full\",\"extra\":1}".into()),
                400,
                "InvalidRequest",
            ),
            (
                "POST",
                "/v1/keys",
                Some("{\"scope\":42}".into()),
                400,
                "InvalidRequest",
            ),
            ("POST", "/v1/keys", Some("[]".into()), 400, "InvalidRequest"),
            ("POST", "/v1/keys", Some(big), 413, "PayloadTooLarge"),
            (
                "POST",
                "/v1/instances",
                Some(launch_body(0)),
                400,
                "InvalidParameter",
            ),
            (
                "POST",
                "/v1/instances",
                Some(launch_body(101)),
                400,
                "InvalidParameter",
            ),
            (
                "POST",
                "/v1/instances",
                Some(json!({"image":"nubo-micro","instance_type":"n9.huge"}).to_string()),
                400,
                "InvalidParameter",
            ),
            (
                "POST",
                "/v1/instances",
                Some(json!({"image":"img-0000000000000000","instance_type":"n1.nano"}).to_string()),
                400,
                "InvalidParameter",
            ),
            (
                "POST",
                "/v1/instances",
                Some(
                    json!({"image":"nubo-micro","instance_type":"n1.nano",
                        "user_data":"x".repeat(17 * 1024)})
                    .to_string(),
                ),
                400,
                "InvalidParameter",
            ),
            (
                "GET",
                "/v1/instances/i-0000000000000000",
                None,
                404,
                "NotFound",
            ),
            ("GET", "/v1/instances/nonsense", None, 404, "NotFound"),
            ("DELETE", "/v1/keys/AKNOPE", None, 404, "NotFound"),
            (
                "GET",
                "/v1/instances?limit=0",
                None,
                400,
                "InvalidParameter",
            ),
            (
                "GET",
                "/v1/instances?limit=abc",
                None,
                400,
                "InvalidParameter",
            ),
            (
                "GET",
                "/v1/instances?colour=blue",
                None,
                400,
                "InvalidParameter",
            ),
            (
                "GET",
                "/v1/instances?state=dancing",
                None,
                400,
                "InvalidParameter",
            ),
            (
                "PUT",
                "/v1/quotas/vcpus",
                Some("{\"limit\":-1}".into()),
                400,
                "InvalidRequest",
            ),
            ("GET", "/v1/nothing-here", None, 404, "NotFound"),
            ("PUT", "/v1/instances", None, 405, "MethodNotAllowed"),
        ];
        for (method, path, body, status, expected) in cases {
            let (got, v) = if status == 413 {
                // Too large to sign cheaply in a loop; the bearer form reaches the same limit.
                let bearer = format!("Bearer {}:{}", c.key_id, c.secret);
                r.curl(method, path, body.as_deref(), &[("authorization", &bearer)])
                    .unwrap()
            } else {
                r.signed(&c, method, path, body.as_deref())
            };
            assert_eq!((got, code(&v)), (status, expected), "{method} {path}: {v}");
            assert!(v["request_id"].as_str().unwrap().starts_with("req-"));
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        let (status, v) = r
            .curl(
                "POST",
                "/v1/signup",
                None,
                &[("content-type", "text/plain")],
            )
            .unwrap();
        assert_eq!((status, code(&v)), (415, "UnsupportedMediaType"));
        assert_eq!(snapshot(&r, &c), before, "nothing changed");
        assert_eq!(
            r.curl("GET", "/healthz", None, &[]).unwrap().0,
            200,
            "still serving"
        );
    }
);

#[test]
fn signatures_are_checked_and_not_replayable() {
    let r = Region::start(StoreKind::Sqlite);
    let c = r.signup("sig@example.com");
    let now = SystemTime::now();
    assert_eq!(r.signed(&c, "GET", "/v1/account", None).0, 200);

    let wrong = common::Creds {
        secret: "not-the-secret".into(),
        ..c.clone()
    };
    let (s, v) = r.signed(&wrong, "GET", "/v1/account", None);
    assert_eq!((s, code(&v)), (403, "SignatureDoesNotMatch"));

    let unknown = common::Creds {
        key_id: "AKAAAAAAAAAAAAAAAAAA".into(),
        ..c.clone()
    };
    let (s, v) = r.signed(&unknown, "GET", "/v1/account", None);
    assert_eq!((s, code(&v)), (403, "InvalidAccessKeyId"));

    let (s, v) = r.signed_at(
        &c,
        "GET",
        "/v1/account",
        None,
        now - Duration::from_secs(900),
    );
    assert_eq!((s, code(&v)), (403, "RequestExpired"));
    let (s, v) = r.signed_at(
        &c,
        "GET",
        "/v1/account",
        None,
        now + Duration::from_secs(900),
    );
    assert_eq!((s, code(&v)), (403, "RequestExpired"));

    // The same signed POST twice: the first creates a key, the second is refused.
    let url = format!("{}/v1/keys", r.endpoint);
    let body = "{\"scope\":\"read-only\"}";
    let added = nubo_auth::sigv4::sign(
        "POST",
        &url,
        &[("content-type", "application/json")],
        body.as_bytes(),
        &c.key_id,
        &c.secret,
        "local-1",
        "nubo",
        now,
    )
    .unwrap();
    let headers: Vec<(&str, &str)> = added
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        r.curl("POST", "/v1/keys", Some(body), &headers).unwrap().0,
        201
    );
    let (s, v) = r.curl("POST", "/v1/keys", Some(body), &headers).unwrap();
    assert_eq!((s, code(&v)), (403, "RequestReplayed"));
    // The signed body cannot be swapped.
    let (s, v) = r
        .curl("POST", "/v1/keys", Some("{\"scope\":\"full\"}"), &headers)
        .unwrap();
    assert_eq!((s, code(&v)), (403, "SignatureDoesNotMatch"));

    let bearer = format!("Bearer {}:{}", c.key_id, c.secret);
    let (s, who) = r
        .curl("GET", "/v1/account", None, &[("authorization", &bearer)])
        .unwrap();
    assert_eq!(
        (s, who["account"]["id"].as_str()),
        (200, Some(c.account_id.as_str()))
    );
    let bad_bearer = format!("Bearer {}:nope", c.key_id);
    let (s, v) = r
        .curl(
            "GET",
            "/v1/account",
            None,
            &[("authorization", &bad_bearer)],
        )
        .unwrap();
    assert_eq!((s, code(&v)), (403, "SignatureDoesNotMatch"));
    let (s, v) = r
        .curl(
            "GET",
            "/v1/account",
            None,
            &[("authorization", "Basic abc")],
        )
        .unwrap();
    assert_eq!((s, code(&v)), (401, "Unauthenticated"));
    let (s, v) = r.curl("GET", "/v1/account", None, &[]).unwrap();
    assert_eq!((s, code(&v)), (401, "Unauthenticated"));

    // A disabled key stops working at once.
    let (_, k) = r.signed(&c, "POST", "/v1/keys", Some("{\"scope\":\"full\"}"));
    let second = common::Creds {
        key_id: k["id"].as_str().unwrap().into(),
        secret: k["secret_access_key"].as_str().unwrap().into(),
        ..c.clone()
    };
    assert_eq!(r.signed(&second, "GET", "/v1/account", None).0, 200);
    let path = format!("/v1/keys/{}", second.key_id);
    let (s, v) = r.signed(&c, "PATCH", &path, Some("{\"status\":\"disabled\"}"));
    assert_eq!((s, v["status"].as_str()), (200, Some("disabled")));
    let (s, v) = r.signed(&second, "GET", "/v1/account", None);
    assert_eq!((s, code(&v)), (403, "InvalidAccessKeyId"));
}

#[test]
fn every_response_carries_its_request_id_and_metrics_count_requests() {
    let r = Region::start(StoreKind::Sqlite);
    for path in ["/healthz", "/v1/nowhere", "/v1/account"] {
        let (_, headers, text) = r.http("GET", path, None, &[]).unwrap();
        let id = headers["x-request-id"].to_str().unwrap().to_string();
        assert!(id.starts_with("req-"), "{path}: {id}");
        if path != "/healthz" {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["request_id"].as_str(), Some(id.as_str()), "{path}");
        }
    }
    let (status, headers, text) = r.http("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(text.contains("nubo_http_requests_total{"), "{text}");
    assert!(
        text.contains("route=\"/v1/account\",status=\"401\""),
        "{text}"
    );
    assert!(text.contains("nubo_accounts "), "{text}");
}

on_both_stores!(
    launches_are_idempotent_with_a_client_token,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("idem@example.com");
        let body = json!({"image":"nubo-micro","instance_type":"n1.nano","count":2,
                      "client_token":"deploy-42"})
        .to_string();
        let (s1, first) = r.signed(&c, "POST", "/v1/instances", Some(&body));
        assert_eq!(s1, 202, "{first}");
        let (s2, second) = r.signed(&c, "POST", "/v1/instances", Some(&body));
        assert_eq!(s2, 200, "a retry answers with the first launch: {second}");
        let ids = |v: &Value| -> Vec<String> {
            v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&first), ids(&second));
        let other = json!({"image":"nubo-micro","instance_type":"n1.micro","count":2,
                       "client_token":"deploy-42"})
        .to_string();
        let (s3, v) = r.signed(&c, "POST", "/v1/instances", Some(&other));
        assert_eq!((s3, code(&v)), (409, "IdempotencyMismatch"));
        let (_, all) = r.signed(&c, "GET", "/v1/instances", None);
        assert_eq!(
            all["items"].as_array().unwrap().len(),
            2,
            "no second launch"
        );
    }
);

on_both_stores!(
    a_full_region_refuses_before_accepting,
    |store: StoreKind| {
        // A second region with room, on loopback, in the first one's catalog.
        let roomy = Region::start(StoreKind::Sqlite);
        let dir =
            std::env::temp_dir().join(format!("nubo-cap-{:016x}", nubo_store::ids::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("nubod.toml");
        std::fs::write(
            &cfg,
            format!(
                "sim_hosts = 2\n[sim_host]\nvcpus = 2\nmemory_mib = 1024\ndisk_gib = 10\n\
             boot_ms = 20\n[[regions]]\nname = \"roomy-2\"\napi_endpoint = \"{}\"\n\
             s3_endpoint = \"{}\"\n",
                roomy.endpoint, roomy.endpoint
            ),
        )
        .unwrap();
        let r = Region::start_with(store, &["--config", cfg.to_str().unwrap()]);
        let c = r.signup("cap@example.com");
        let (s, room) = r.curl("GET", "/v1/capacity", None, &[]).unwrap();
        assert_eq!(
            (s, room["largest_free_vcpus"].as_u64()),
            (200, Some(2)),
            "{room}"
        );
        let big = json!({"image":"nubo-micro","instance_type":"n1.xlarge"}).to_string();
        let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&big));
        assert_eq!((s, code(&v)), (507, "InsufficientCapacity"), "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("Largest free slot: 2 vCPU / 1024 MiB"),
            "{msg}"
        );
        assert!(
            msg.contains("regions with room: roomy-2"),
            "names the region with room: {msg}"
        );
        let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(4)));
        assert_eq!(s, 202, "four 1-vCPU instances fit on two 2-vCPU hosts: {v}");
        let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(1)));
        assert_eq!((s, code(&v)), (507, "InsufficientCapacity"), "{v}");
        let (_, quotas) = r.signed(&c, "GET", "/v1/quotas", None);
        let instances = quotas
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["resource"] == "instances")
            .unwrap();
        assert_eq!(instances["used"], 4, "refused launches take no quota");
        let _ = std::fs::remove_dir_all(&dir);
    }
);

#[test]
fn quotas_refuse_what_exceeds_them_until_raised() {
    let r = Region::start(StoreKind::Sqlite);
    let c = r.signup("quota@example.com");
    let (s, v) = r.signed(&c, "PUT", "/v1/quotas/instances", Some("{\"limit\":2}"));
    assert_eq!(s, 200, "{v}");
    let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(3)));
    assert_eq!((s, code(&v)), (403, "QuotaExceeded"));
    assert!(
        v["message"].as_str().unwrap().contains("nubo quota raise"),
        "{v}"
    );
    assert_eq!(
        r.signed(&c, "POST", "/v1/instances", Some(&launch_body(2)))
            .0,
        202
    );
}

#[test]
fn signups_are_rate_limited_per_address() {
    let r = Region::start_with(StoreKind::Sqlite, &["--signups-per-hour", "2"]);
    r.signup("one@example.com");
    r.signup("two@example.com");
    let body = json!({"email":"three@example.com"}).to_string();
    let (status, headers, text) = r.http("POST", "/v1/signup", Some(&body), &[]).unwrap();
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("RateLimited"));
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1800).contains(&wait), "{wait}");
}

on_both_stores!(
    closing_an_account_terminates_and_locks_it,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("leaving@example.com");
        let (_, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(2)));
        let id = v["instances"][0]["id"].as_str().unwrap().to_string();
        r.wait_state(&c, &id, "running");
        let wrong = json!({"confirm_account_id": "acc-0000000000000000"}).to_string();
        let (s, v) = r.signed(&c, "POST", "/v1/account/close", Some(&wrong));
        assert_eq!((s, code(&v)), (400, "InvalidParameter"));
        let confirm = json!({"confirm_account_id": c.account_id}).to_string();
        let (s, v) = r.signed(&c, "POST", "/v1/account/close", Some(&confirm));
        assert_eq!((s, v["status"].as_str()), (200, Some("closed")), "{v}");
        let (s, v) = r.signed(&c, "GET", "/v1/account", None);
        assert_eq!((s, code(&v)), (403, "InvalidAccessKeyId"));
        let token = r.operator_token();
        let bearer = format!("Bearer {token}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, hosts) = r
                .curl(
                    "GET",
                    "/v1/admin/hosts",
                    None,
                    &[("authorization", &bearer)],
                )
                .unwrap();
            if hosts[0]["instances"] == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "instances were not terminated: {hosts}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let again = r.signup("leaving@example.com");
        assert_ne!(again.account_id, c.account_id, "the email is free again");
    }
);

on_both_stores!(
    a_restart_keeps_accounts_and_shuts_down_cleanly,
    |store: StoreKind| {
        let mut r = Region::start(store);
        let c = r.signup("stay@example.com");
        assert!(r.stop().success(), "SIGTERM ends nubod cleanly");
        r.restart();
        let (s, who) = r.signed(&c, "GET", "/v1/account", None);
        assert_eq!(
            (s, who["account"]["id"].as_str()),
            (200, Some(c.account_id.as_str()))
        );
    }
);

/// Uploads `bytes` as a part of an image, with the bearer form (the body streams).
fn upload(r: &Region, c: &common::Creds, image: &str, part: &str, bytes: &[u8]) -> (u16, Value) {
    let bearer = format!("Bearer {}:{}", c.key_id, c.secret);
    let path = format!("/v1/images/{image}/files/{part}");
    let (status, _, text) = common::http_bytes(
        &r.endpoint,
        "PUT",
        &path,
        bytes,
        &[
            ("authorization", &bearer),
            ("content-type", "application/octet-stream"),
        ],
    )
    .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

on_both_stores!(
    private_images_are_uploaded_checked_and_guarded,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("images@example.com");
        let (s, v) = r.signed(&c, "POST", "/v1/images", Some("{\"name\":\"bad name!\"}"));
        assert_eq!((s, code(&v)), (400, "InvalidParameter"));
        let (s, img) = r.signed(
            &c,
            "POST",
            "/v1/images",
            Some("{\"name\":\"mine\",\"ready_marker\":\"up\"}"),
        );
        assert_eq!((s, img["state"].as_str()), (201, Some("pending")), "{img}");
        let id = img["id"].as_str().unwrap().to_string();
        let (s, v) = r.signed(&c, "POST", "/v1/images", Some("{\"name\":\"mine\"}"));
        assert_eq!(
            (s, code(&v)),
            (409, "Conflict"),
            "names are unique in an account"
        );

        let launch = json!({"image": id, "instance_type": "n1.nano"}).to_string();
        let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch));
        assert_eq!(
            (s, code(&v)),
            (400, "InvalidParameter"),
            "a pending image does not launch: {v}"
        );
        let (s, v) = r.signed(&c, "POST", &format!("/v1/images/{id}/complete"), None);
        assert_eq!((s, code(&v)), (409, "InvalidState"), "no kernel yet: {v}");
        let (s, v) = upload(&r, &c, &id, "bootloader", b"x");
        assert_eq!((s, code(&v)), (400, "InvalidParameter"));

        let (s, v) = upload(&r, &c, &id, "kernel", b"not really a kernel");
        assert_eq!((s, v["bytes"].as_u64()), (200, Some(19)), "{v}");
        assert_eq!(
            v["sha256"],
            "100d125cca4dd28597fbbbac418ec0091d3f121443803dc19156c766c432161e"
        );
        let (s, done) = r.signed(&c, "POST", &format!("/v1/images/{id}/complete"), None);
        assert_eq!(
            (s, done["state"].as_str()),
            (200, Some("available")),
            "{done}"
        );
        let (s, v) = upload(&r, &c, &id, "kernel", b"again");
        assert_eq!(
            (s, code(&v)),
            (409, "InvalidState"),
            "an available image is immutable"
        );

        let (s, v) = r.signed(&c, "POST", "/v1/instances", Some(&launch));
        assert_eq!(s, 202, "{v}");
        let instance = v["instances"][0]["id"].as_str().unwrap().to_string();
        let (s, v) = r.signed(&c, "DELETE", &format!("/v1/images/{id}"), None);
        assert_eq!((s, code(&v)), (409, "InvalidState"), "in use: {v}");
        r.signed(&c, "DELETE", &format!("/v1/instances/{instance}"), None);
        r.wait_state(&c, &instance, "terminated");
        let (s, _) = r.signed(&c, "DELETE", &format!("/v1/images/{id}"), None);
        assert_eq!(s, 204);
        let (s, _) = r.signed(&c, "GET", &format!("/v1/images/{id}"), None);
        assert_eq!(s, 404);
        assert!(
            !r.dir.join("data/private-images").join(&id).exists(),
            "its files are gone"
        );

        // A disk with a backing file could read the host's files: refused.
        let dir = r.dir.join("disks");
        std::fs::create_dir_all(&dir).unwrap();
        let sneaky = dir.join("sneaky.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "/etc/hostname",
            ])
            .arg(&sneaky)
            .status()
            .unwrap();
        assert!(made.success());
        let (_, img) = r.signed(
            &c,
            "POST",
            "/v1/images",
            Some("{\"name\":\"sneaky\",\"disk_format\":\"qcow2\"}"),
        );
        let sid = img["id"].as_str().unwrap().to_string();
        assert_eq!(upload(&r, &c, &sid, "kernel", b"k").0, 200);
        assert_eq!(
            upload(&r, &c, &sid, "disk", &std::fs::read(&sneaky).unwrap()).0,
            200
        );
        let (s, v) = r.signed(&c, "POST", &format!("/v1/images/{sid}/complete"), None);
        assert_eq!((s, code(&v)), (400, "InvalidParameter"), "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("backing file"),
            "{v}"
        );
    }
);

/// Registers a private image with a 3 MiB raw disk; its id.
fn image_with_disk(r: &Region, c: &common::Creds) -> String {
    let body = json!({"name": "with-disk", "disk_format": "raw"}).to_string();
    let (s, img) = r.signed(c, "POST", "/v1/images", Some(&body));
    assert_eq!(s, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(upload(r, c, &id, "kernel", b"k").0, 200);
    assert_eq!(upload(r, c, &id, "disk", &vec![0u8; 3 << 20]).0, 200);
    let (s, v) = r.signed(c, "POST", &format!("/v1/images/{id}/complete"), None);
    assert_eq!(s, 200, "{v}");
    id
}

on_both_stores!(
    volumes_follow_their_life_and_refuse_what_they_cannot_do,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("volumes@example.com");
        let post = |path: &str, body: Value| r.signed(&c, "POST", path, Some(&body.to_string()));
        for (body, why) in [
            (json!({}), "size_gib is required"),
            (json!({"size_gib": 0}), "between 1 and"),
            (json!({"size_gib": 20000}), "between 1 and"),
            (json!({"size_gib": 1, "name": ""}), "name must be"),
            (
                json!({"size_gib": 1, "tags": {"": "x"}}),
                "keys are 1 to 128",
            ),
        ] {
            let (s, v) = post("/v1/volumes", body);
            assert_eq!((s, code(&v)), (400, "InvalidParameter"), "{v}");
            assert!(v["message"].as_str().unwrap().contains(why), "{v}");
        }
        let (s, v) = post(
            "/v1/volumes",
            json!({"snapshot_id": "snap-0000000000000000"}),
        );
        assert_eq!((s, code(&v)), (404, "NotFound"), "{v}");
        let (s, v) = post("/v1/volumes", json!({"size_gib": 501}));
        assert_eq!((s, code(&v)), (403, "QuotaExceeded"), "{v}");

        let (s, v) = post(
            "/v1/volumes",
            json!({"size_gib": 2, "name": "data", "tags": {"team": "db"}}),
        );
        assert_eq!((s, v["state"].as_str()), (202, Some("creating")), "{v}");
        let vol = v["id"].as_str().unwrap().to_string();
        let path = format!("/v1/volumes/{vol}");
        let v = r.wait_for(&c, &path, "available");
        assert_eq!(v["tags"]["team"], "db");
        let (_, quotas) = r.signed(&c, "GET", "/v1/quotas", None);
        let used = quotas
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["resource"] == "volume_gib")
            .unwrap()["used"]
            .clone();
        assert_eq!(used, 2, "{quotas}");

        // Grown while detached; never shrunk.
        let patch = |body: Value| r.signed(&c, "PATCH", &path, Some(&body.to_string()));
        let (s, v) = patch(json!({"size_gib": 1}));
        assert_eq!((s, code(&v)), (400, "InvalidParameter"), "{v}");
        let (s, v) = patch(json!({"size_gib": 4, "tags": {"team": "web"}}));
        assert_eq!((s, v["state"].as_str()), (200, Some("resizing")), "{v}");
        let v = r.wait_for(&c, &path, "available");
        assert_eq!(
            (v["size_gib"].as_u64(), &v["tags"]["team"]),
            (Some(4), &json!("web"))
        );

        // Attached, it cannot be deleted, grown or attached twice.
        let (_, launched) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(2)));
        let a = launched["instances"][0]["id"].as_str().unwrap().to_string();
        let b = launched["instances"][1]["id"].as_str().unwrap().to_string();
        r.wait_state(&c, &a, "running");
        r.wait_state(&c, &b, "running");
        let (s, v) = post(&format!("{path}/attach"), json!({"instance_id": a}));
        assert_eq!((s, v["state"].as_str()), (202, Some("in-use")), "{v}");
        assert_eq!(
            v["attachment"]["device"],
            format!("/dev/disk/by-id/virtio-{vol}")
        );
        let v = r.wait_for(&c, &path, "in-use");
        assert_eq!(v["attachment"]["instance_id"], a.as_str(), "{v}");
        wait_attach(&r, &c, &path, "attached");
        let (s, v) = r.signed(&c, "DELETE", &path, None);
        assert_eq!((s, code(&v)), (409, "InvalidState"), "{v}");
        let (s, v) = patch(json!({"size_gib": 8}));
        assert_eq!((s, code(&v)), (409, "InvalidState"), "{v}");
        let (s, v) = post(&format!("{path}/attach"), json!({"instance_id": b}));
        assert_eq!((s, code(&v)), (409, "InvalidState"), "{v}");

        // A snapshot restores larger, not smaller.
        let (s, snap) = post(
            "/v1/snapshots",
            json!({"volume_id": vol, "description": "one"}),
        );
        assert_eq!(
            (s, snap["state"].as_str()),
            (202, Some("pending")),
            "{snap}"
        );
        assert!(snap["progress_percent"].as_u64() < Some(100), "{snap}");
        let snap = snap["id"].as_str().unwrap().to_string();
        let done = r.wait_for(&c, &format!("/v1/snapshots/{snap}"), "completed");
        assert_eq!(done["progress_percent"], 100, "{done}");
        let (s, v) = post("/v1/volumes", json!({"snapshot_id": snap, "size_gib": 3}));
        assert_eq!((s, code(&v)), (400, "InvalidParameter"), "{v}");
        let (s, v) = post("/v1/volumes", json!({"snapshot_id": snap}));
        assert_eq!((s, v["size_gib"].as_u64()), (202, Some(4)), "{v}");
        assert!(v["progress_percent"].as_u64() < Some(100), "{v}");
        let copy = v["id"].as_str().unwrap().to_string();
        let restored = r.wait_for(&c, &format!("/v1/volumes/{copy}"), "available");
        assert_eq!(restored["progress_percent"], 100, "{restored}");
        let (_, blank) = r.signed(&c, "GET", &path, None);
        assert!(
            blank["progress_percent"].is_null(),
            "not a restore: {blank}"
        );

        // Detached, it moves to the other instance; the instance's termination
        // detaches it, and then it goes.
        let (s, v) = post(&format!("{path}/detach"), json!({}));
        assert_eq!(
            (s, v["attachment"]["state"].as_str()),
            (202, Some("detaching")),
            "{v}"
        );
        r.wait_for(&c, &path, "available");
        post(&format!("{path}/attach"), json!({"instance_id": b}));
        wait_attach(&r, &c, &path, "attached");
        r.signed(&c, "DELETE", &format!("/v1/instances/{b}"), None);
        r.wait_state(&c, &b, "terminated");
        let v = r.wait_for(&c, &path, "available");
        assert!(v["attachment"].is_null(), "{v}");
        let (s, v) = r.signed(&c, "DELETE", &path, None);
        assert_eq!((s, v["state"].as_str()), (202, Some("deleting")), "{v}");
        wait_gone(&r, &c, &path);

        // Root volumes: made for images with a disk, deleted with their
        // instance unless kept, and then bootable again.
        let image = image_with_disk(&r, &c);
        let (s, v) = post(
            "/v1/instances",
            json!({"image": "nubo-micro", "instance_type": "n1.nano", "root_volume_size_gib": 2}),
        );
        assert_eq!(
            (s, code(&v)),
            (400, "InvalidParameter"),
            "no disk, no root volume: {v}"
        );
        let (s, v) = post(
            "/v1/instances",
            json!({"image": image, "instance_type": "n1.nano", "count": 2}),
        );
        assert_eq!(s, 202, "{v}");
        let gone = v["instances"][0]["id"].as_str().unwrap().to_string();
        let kept_by = {
            let (s, v) = post(
                "/v1/instances",
                json!({"image": image, "instance_type": "n1.nano", "root_volume_size_gib": 5,
                       "keep_root_volume": true}),
            );
            assert_eq!(s, 202, "{v}");
            v["instances"][0]["id"].as_str().unwrap().to_string()
        };
        r.wait_state(&c, &gone, "running");
        r.wait_state(&c, &kept_by, "running");
        let roots = |id: &str| -> Vec<Value> {
            let (_, list) = r.signed(&c, "GET", "/v1/volumes", None);
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["attachment"]["instance_id"] == id)
                .cloned()
                .collect()
        };
        let root = roots(&gone).pop().expect("a root volume");
        assert_eq!(
            (
                &root["size_gib"],
                &root["attachment"]["device"],
                &root["bootable"]
            ),
            (&json!(1), &json!("root"), &json!(true)),
            "the disk's size, rounded up: {root}"
        );
        let kept = roots(&kept_by).pop().expect("a root volume");
        assert_eq!(kept["size_gib"], 5, "{kept}");
        let kept = kept["id"].as_str().unwrap().to_string();
        let (s, v) = post(&format!("/v1/volumes/{kept}/detach"), json!({}));
        assert_eq!(
            (s, code(&v)),
            (409, "InvalidState"),
            "a root volume stays: {v}"
        );
        let root = root["id"].as_str().unwrap().to_string();
        for id in [&gone, &kept_by] {
            r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
            r.wait_state(&c, id, "terminated");
        }
        wait_gone(&r, &c, &format!("/v1/volumes/{root}"));
        let v = r.wait_for(&c, &format!("/v1/volumes/{kept}"), "available");
        assert_eq!(v["bootable"], true, "{v}");
        let (s, v) = post(
            "/v1/instances",
            json!({"image": "nubo-micro", "instance_type": "n1.nano", "root_volume": kept}),
        );
        assert_eq!(
            (s, code(&v)),
            (400, "InvalidParameter"),
            "another image: {v}"
        );
        let (s, v) = post(
            "/v1/instances",
            json!({"image": image, "instance_type": "n1.nano", "root_volume": kept}),
        );
        assert_eq!(s, 202, "{v}");
        let again = v["instances"][0]["id"].as_str().unwrap().to_string();
        r.wait_state(&c, &again, "running");
        assert_eq!(roots(&again)[0]["id"], kept.as_str());

        // Closing the account deletes its volumes and snapshots.
        let (s, v) = post(
            "/v1/account/close",
            json!({"confirm_account_id": c.account_id}),
        );
        assert_eq!(s, 200, "{v}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let token = format!("Bearer {}", r.operator_token());
            let (_, hosts) = r
                .curl("GET", "/v1/admin/hosts", None, &[("authorization", &token)])
                .unwrap();
            let used: u64 = hosts
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["allocated"]["disk_gib"].as_u64().unwrap())
                .sum();
            if used == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "disk still held: {hosts}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
);

fn wait_attach(r: &Region, c: &common::Creds, path: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = r.signed(c, "GET", path, None);
        if v["attachment"]["state"] == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never {state}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(r: &Region, c: &common::Creds, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = r.signed(c, "GET", path, None);
        if s == 404 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never gone: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

on_both_stores!(
    usage_accrues_per_second_from_the_event_log,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("usage@example.com");
        let usage = |query: &str| r.signed(&c, "GET", &format!("/v1/billing/usage{query}"), None);
        for bad in [
            "?since=yesterday",
            "?since=2030-01-01",
            "?until=1970-01-01",
            "?by=colour",
            "?by=tag:",
        ] {
            let (s, v) = usage(bad);
            assert_eq!((s, code(&v)), (400, "InvalidParameter"), "{bad}: {v}");
        }
        let (s, v) = usage("");
        assert_eq!(
            (s, v["lines"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{v}"
        );

        let (_, launched) = r.signed(&c, "POST", "/v1/instances", Some(&launch_body(1)));
        let id = launched["instances"][0]["id"].as_str().unwrap().to_string();
        r.wait_state(&c, &id, "running");
        let body = json!({"size_gib": 2}).to_string();
        let (_, vol) = r.signed(&c, "POST", "/v1/volumes", Some(&body));
        let vol = vol["id"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(1500));
        let (_, v) = usage("?since=2020-01-01");
        let lines = v["lines"].as_array().unwrap();
        let of = |rid: &str| lines.iter().find(|l| l["group"] == rid).cloned();
        let running = of(&id).expect("the instance is metered");
        assert_eq!(running["meter"], "instance:n1.nano", "{v}");
        let seconds = running["quantity"].as_f64().unwrap();
        assert!((1.0..60.0).contains(&seconds), "running so far: {v}");
        let storage = of(&vol).expect("the volume is metered");
        assert_eq!(
            (&storage["meter"], &storage["unit"]),
            (&json!("volume-storage"), &json!("GiB-second"))
        );
        assert!(storage["quantity"].as_f64().unwrap() >= 2.0, "{v}");

        // Terminated within a minute, the run costs the minute.
        r.signed(&c, "DELETE", &format!("/v1/instances/{id}"), None);
        r.wait_state(&c, &id, "terminated");
        let (_, v) = usage("?since=2020-01-01");
        let run = v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["group"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(run["quantity"].as_f64().unwrap(), 60.0, "{v}");
        let (_, other) = r.signed(
            &r.signup("other-usage@example.com"),
            "GET",
            "/v1/billing/usage",
            None,
        );
        assert_eq!(
            other["lines"].as_array().map(Vec::len),
            Some(0),
            "accounts see only their own"
        );
    }
);
