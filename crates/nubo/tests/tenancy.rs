//! Tenancy, walked over every endpoint of the OpenAPI document the server serves,
//! so that an endpoint added later is covered (or fails here until it is):
//!
//! - without credentials, every endpoint that declares security answers 401, and
//!   only the known public ones answer anything else;
//! - with a second account's credentials, every endpoint that names a resource of
//!   the first answers 404 (403 for operator endpoints), no answer mentions the
//!   first account's ids, and the first account's resources are unchanged.

mod common;

use std::collections::BTreeMap;

use common::{Creds, Region, StoreKind};
use serde_json::{Value, json};

/// Endpoints anyone may call, by operation id.
const PUBLIC: &[&str] = &[
    "healthz",
    "metrics",
    "region_list",
    "region_capacity",
    "instance_type_list",
    "pricing_list",
    "account_signup",
];

struct Operation {
    id: String,
    method: String,
    path: String,
    secured: bool,
    operator: bool,
}

fn operations(r: &Region) -> Vec<Operation> {
    let (status, doc) = r.curl("GET", "/v1/openapi.json", None, &[]).unwrap();
    assert_eq!(status, 200);
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().cloned().unwrap_or_default();
            ops.push(Operation {
                id: op["operationId"].as_str().unwrap().to_string(),
                method: method.to_uppercase(),
                path: path.clone(),
                secured: !security.is_empty(),
                operator: security.iter().any(|s| s.get("operator").is_some()),
            });
        }
    }
    assert!(ops.len() >= 20, "the document lists the API");
    ops
}

/// A request body for each operation that takes one. A new operation with a body
/// must be added here, which is the point.
fn body_for(op: &str, victim: &Creds, params: &BTreeMap<&str, String>) -> Option<String> {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let body = match op {
        "account_signup" => json!({"email": "walker@example.com"}),
        "account_close" => json!({"confirm_account_id": victim.account_id}),
        "key_create" => json!({"scope": "read-only"}),
        "key_update" => json!({"status": "disabled"}),
        "quota_set" => json!({"limit": 1}),
        "instance_launch" => json!({"image": "nubo-micro", "instance_type": "n1.nano"}),
        "key_pair_create" => json!({"name": "walker-key"}),
        "image_register" => json!({"name": "walker-image"}),
        "bucket_create" => json!({"name": "walker-bucket"}),
        "network_create" => json!({"name": "walker-net", "cidr": "10.1.0.0/24"}),
        "instance_publish" => json!({"port": 22}),
        "security_group_create" => json!({"name": "walker-sg"}),
        "security_group_rule_add" => {
            json!({"protocol": "tcp", "from_port": 22, "cidr": "0.0.0.0/0"})
        }
        "instance_set_security_groups" => json!({"security_groups": ["default"]}),
        "volume_create" => json!({"snapshot_id": param("snapshot_id")}),
        "volume_update" => json!({"name": "walker-volume", "size_gib": 2}),
        "volume_attach" => json!({"instance_id": param("instance_id")}),
        "volume_detach" => json!({"force": true}),
        "snapshot_create" => json!({"volume_id": param("volume_id")}),
        "commitment_create" => json!({"per_hour": 0.01, "term": "1y"}),
        "budget_create" => json!({"name": "walker-budget", "monthly": 5}),
        "admin_billing_close" => json!({"month": "2020-01"}),
        _ => return None,
    };
    Some(body.to_string())
}

/// The first account's resources, by path parameter name.
struct Victim {
    creds: Creds,
    params: BTreeMap<&'static str, String>,
    secrets: Vec<String>,
}

fn victim(r: &Region) -> Victim {
    let creds = r.signup("victim@example.com");
    let (_, key) = r.signed(
        &creds,
        "POST",
        "/v1/keys",
        Some(&json!({"scope": "full"}).to_string()),
    );
    let (_, pair) = r.signed(
        &creds,
        "POST",
        "/v1/key-pairs",
        Some(&json!({"name": "victim-key"}).to_string()),
    );
    let (_, launched) = r.signed(
        &creds,
        "POST",
        "/v1/instances",
        Some(
            &json!({"image": "nubo-micro", "instance_type": "n1.nano", "name": "victim-vm"})
                .to_string(),
        ),
    );
    let instance = launched["instances"][0]["id"].as_str().unwrap().to_string();
    r.wait_state(&creds, &instance, "running");
    let (_, image) = r.signed(
        &creds,
        "POST",
        "/v1/images",
        Some(&json!({"name": "victim-image", "description": "victim's own"}).to_string()),
    );
    let image = image["id"].as_str().unwrap().to_string();
    let token = format!("Bearer {}", r.operator_token());
    let (_, hosts) = r
        .curl("GET", "/v1/admin/hosts", None, &[("authorization", &token)])
        .unwrap();
    let host = hosts[0]["id"].as_str().unwrap().to_string();
    let mut params = BTreeMap::new();
    params.insert("key_id", key["id"].as_str().unwrap().to_string());
    params.insert("instance_id", instance.clone());
    params.insert("image_id", image.clone());
    params.insert("host_id", host);
    params.insert("resource", "vcpus".to_string());
    params.insert("key_name", "victim-key".to_string());
    params.insert("part", "kernel".to_string());
    let (status, bucket) = r.signed(
        &creds,
        "POST",
        "/v1/buckets",
        Some(&json!({"name": "victim-bucket"}).to_string()),
    );
    assert_eq!(status, 201, "{bucket}");
    params.insert("bucket_name", "victim-bucket".to_string());
    let (status, network) = r.signed(
        &creds,
        "POST",
        "/v1/networks",
        Some(&json!({"name": "victim-net", "cidr": "10.77.0.0/24"}).to_string()),
    );
    assert_eq!(status, 201, "{network}");
    let network = network["id"].as_str().unwrap().to_string();
    params.insert("network", network.clone());
    let (status, group) = r.signed(
        &creds,
        "POST",
        "/v1/security-groups",
        Some(&json!({"name": "victim-sg", "description": "victim's group"}).to_string()),
    );
    assert_eq!(status, 201, "{group}");
    let group = group["id"].as_str().unwrap().to_string();
    let (status, with_rule) = r.signed(
        &creds,
        "POST",
        &format!("/v1/security-groups/{group}/rules"),
        Some(&json!({"protocol": "udp", "from_port": 53, "cidr": "10.9.9.0/24"}).to_string()),
    );
    assert_eq!(status, 201, "{with_rule}");
    params.insert("group", group.clone());
    let (status, volume) = r.signed(
        &creds,
        "POST",
        "/v1/volumes",
        Some(&json!({"size_gib": 1, "name": "victim-volume"}).to_string()),
    );
    assert_eq!(status, 202, "{volume}");
    let volume = volume["id"].as_str().unwrap().to_string();
    r.wait_for(&creds, &format!("/v1/volumes/{volume}"), "available");
    let (status, snapshot) = r.signed(
        &creds,
        "POST",
        "/v1/snapshots",
        Some(&json!({"volume_id": volume, "description": "victim's snapshot"}).to_string()),
    );
    assert_eq!(status, 202, "{snapshot}");
    let snapshot = snapshot["id"].as_str().unwrap().to_string();
    r.wait_for(&creds, &format!("/v1/snapshots/{snapshot}"), "completed");
    params.insert("volume_id", volume.clone());
    params.insert("snapshot_id", snapshot.clone());
    params.insert(
        "rule_id",
        with_rule["rules"][0]["id"].as_str().unwrap().to_string(),
    );
    let (status, commitment) = r.signed(
        &creds,
        "POST",
        "/v1/billing/commitments",
        Some(&json!({"per_hour": 0.02, "term": "3y"}).to_string()),
    );
    assert_eq!(status, 201, "{commitment}");
    let commitment = commitment["id"].as_str().unwrap().to_string();
    params.insert("commitment_id", commitment.clone());
    let (status, budget) = r.signed(
        &creds,
        "POST",
        "/v1/billing/budgets",
        Some(&json!({"name": "victim-budget", "monthly": 7}).to_string()),
    );
    assert_eq!(status, 201, "{budget}");
    let budget = budget["id"].as_str().unwrap().to_string();
    params.insert("budget_id", budget.clone());
    params.insert("month", "2020-01".to_string());
    let secrets = vec![
        commitment,
        budget,
        "victim-budget".to_string(),
        volume,
        snapshot,
        "victim-volume".to_string(),
        "victim's snapshot".to_string(),
        group,
        "victim's group".to_string(),
        creds.account_id.clone(),
        creds.key_id.clone(),
        key["id"].as_str().unwrap().to_string(),
        instance,
        "victim@example.com".to_string(),
        "victim-vm".to_string(),
        pair["fingerprint"].as_str().unwrap().to_string(),
        image.clone(),
        "victim's own".to_string(),
        network,
        "victim-net".to_string(),
        "10.77.0.0/24".to_string(),
    ];
    Victim {
        creds,
        params,
        secrets,
    }
}

fn fill(path: &str, params: &BTreeMap<&str, String>) -> (String, Vec<String>) {
    let mut out = path.to_string();
    let mut used = Vec::new();
    while let Some(start) = out.find('{') {
        let end = out[start..].find('}').unwrap() + start;
        let name = out[start + 1..end].to_string();
        let value = params.get(name.as_str()).unwrap_or_else(|| {
            panic!("no fixture for path parameter {{{name}}} of {path}: add one")
        });
        out.replace_range(start..=end, value);
        used.push(name);
    }
    (out, used)
}

fn state_of(r: &Region, v: &Victim) -> Value {
    let (_, keys) = r.signed(&v.creds, "GET", "/v1/keys", None);
    let (_, instances) = r.signed(&v.creds, "GET", "/v1/instances", None);
    let (_, quotas) = r.signed(&v.creds, "GET", "/v1/quotas", None);
    let (_, images) = r.signed(&v.creds, "GET", "/v1/images", None);
    let (_, pairs) = r.signed(&v.creds, "GET", "/v1/key-pairs", None);
    let (_, buckets) = r.signed(&v.creds, "GET", "/v1/buckets", None);
    let (_, networks) = r.signed(&v.creds, "GET", "/v1/networks", None);
    let (_, groups) = r.signed(&v.creds, "GET", "/v1/security-groups", None);
    let (_, volumes) = r.signed(&v.creds, "GET", "/v1/volumes", None);
    let (_, snapshots) = r.signed(&v.creds, "GET", "/v1/snapshots", None);
    let (_, commitments) = r.signed(&v.creds, "GET", "/v1/billing/commitments", None);
    let (_, mut budgets) = r.signed(&v.creds, "GET", "/v1/billing/budgets", None);
    // The month's cost so far grows as the victim's instance runs.
    for b in budgets.as_array_mut().into_iter().flatten() {
        b["month_to_date"] = Value::Null;
        b["month_to_date_nanos"] = Value::Null;
    }
    json!({"keys": keys, "instances": instances, "quotas": quotas, "images": images,
           "key_pairs": pairs, "buckets": buckets, "networks": networks,
           "security_groups": groups, "volumes": volumes, "snapshots": snapshots,
           "commitments": commitments, "budgets": budgets})
}

fn walk(store: StoreKind) {
    let r = Region::start(store);
    let ops = operations(&r);

    for op in &ops {
        let dummy: BTreeMap<&str, String> = [
            ("key_id", "AKAAAAAAAAAAAAAAAAAA"),
            ("instance_id", "i-0000000000000000"),
            ("image_id", "img-0000000000000000"),
            ("host_id", "host-0000000000000000"),
            ("resource", "vcpus"),
            ("key_name", "no-such-key"),
            ("part", "kernel"),
            ("bucket_name", "no-such-bucket"),
            ("network", "net-0000000000000000"),
            ("group", "sg-0000000000000000"),
            ("rule_id", "sgr-0000000000000000"),
            ("volume_id", "vol-0000000000000000"),
            ("snapshot_id", "snap-0000000000000000"),
            ("commitment_id", "cm-0000000000000000"),
            ("budget_id", "bud-0000000000000000"),
            ("month", "2020-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        let (path, _) = fill(&op.path, &dummy);
        let body = if op.id == "account_signup" {
            None
        } else {
            body_for(
                &op.id,
                &Creds {
                    account_id: "acc-0000000000000000".into(),
                    key_id: String::new(),
                    secret: String::new(),
                },
                &dummy,
            )
        };
        let (status, v) = r.curl(&op.method, &path, body.as_deref(), &[]).unwrap();
        if op.secured {
            assert_eq!(
                status, 401,
                "{} {} without credentials: {v}",
                op.method, op.path
            );
            assert_eq!(v["code"], "Unauthenticated");
        } else {
            assert!(
                PUBLIC.contains(&op.id.as_str()),
                "{} ({} {}) declares no security but is not a known public endpoint",
                op.id,
                op.method,
                op.path
            );
        }
    }

    let victim = victim(&r);
    let before = state_of(&r, &victim);
    let walker = r.signup("walker-b@example.com");
    let mut ordered: Vec<&Operation> = ops.iter().filter(|o| o.secured).collect();
    ordered.sort_by_key(|o| (o.method != "GET", o.id == "account_close"));
    for op in ordered {
        let (path, used) = fill(&op.path, &victim.params);
        let body = body_for(&op.id, &victim.creds, &victim.params);
        let (status, v) = r.signed(&walker, &op.method, &path, body.as_deref());
        let names_victims_resource =
            used.iter().any(|p| {
                matches!(
                    p.as_str(),
                    "key_id"
                        | "instance_id"
                        | "key_name"
                        | "image_id"
                        | "bucket_name"
                        | "network"
                        | "group"
                        | "volume_id"
                        | "snapshot_id"
                        | "commitment_id"
                        | "budget_id"
                )
            }) || matches!(op.id.as_str(), "volume_create" | "snapshot_create");
        if op.operator {
            assert_eq!(
                status, 403,
                "{} {} with an account key: {v}",
                op.method, path
            );
        } else if names_victims_resource {
            assert_eq!(
                (status, v["code"].as_str()),
                (404, Some("NotFound")),
                "{} {} as another account must look like a missing resource: {v}",
                op.method,
                path
            );
        }
        let text = v.to_string();
        let asked = format!("{path} {}", body.as_deref().unwrap_or(""));
        for secret in victim
            .secrets
            .iter()
            .filter(|s| !asked.contains(s.as_str()))
        {
            assert!(
                !text.contains(secret.as_str()),
                "{} {} leaked {secret}: {text}",
                op.method,
                path
            );
        }
    }
    assert_eq!(
        state_of(&r, &victim),
        before,
        "the first account is untouched"
    );
}

#[test]
fn every_endpoint_keeps_accounts_apart_on_sqlite() {
    walk(StoreKind::Sqlite);
}

#[test]
fn every_endpoint_keeps_accounts_apart_on_postgres() {
    walk(StoreKind::Postgres);
}
