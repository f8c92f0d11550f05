//! The OpenAPI document is the contract: schemathesis generates requests from
//! it (its examples, boundary cases, fuzzed and malformed input, and chains of
//! calls that feed one response into the next request) and sends them to a
//! real region, authenticated. Every answer must be one the document lists for
//! that operation, with the documented body, and none may be a server error.
//! How it runs is in `tests/schemathesis.toml` and `tests/python/contract_auth.py`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Creds, Region};
use serde_json::Value;

/// Far beyond what a run takes on a busy machine; only a hung run meets it.
const HUNG: Duration = Duration::from_secs(30 * 60);

fn schemathesis() -> PathBuf {
    let python = std::env::var("NUBO_TEST_PYTHON").expect(
        "NUBO_TEST_PYTHON is not set: this test drives schemathesis from the test venv. \
         Run `cargo xtask test`",
    );
    Path::new(&python).with_file_name("schemathesis")
}

fn bearer(c: &Creds) -> String {
    format!("{}:{}", c.key_id, c.secret)
}

/// Runs schemathesis against the region; its exit status and its report.
fn run_schemathesis(r: &Region, account: &Creds, spare: &Creds) -> (bool, String) {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let report = r.dir.join("schemathesis.log");
    let mut child = Command::new(schemathesis())
        .arg("--config-file")
        .arg(tests.join("schemathesis.toml"))
        .args(["run", "--no-color"])
        .arg(format!("{}/v1/openapi.json", r.endpoint))
        .current_dir(&r.dir)
        .env("SCHEMATHESIS_HOOKS", tests.join("python/contract_auth.py"))
        .env("NUBO_CONTRACT_BEARER", bearer(account))
        .env("NUBO_CONTRACT_SPARE_BEARER", bearer(spare))
        .env("NUBO_CONTRACT_OPERATOR", r.operator_token())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("schemathesis runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HUNG {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "schemathesis hung: {}",
                std::fs::read_to_string(&report).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (status.success(), std::fs::read_to_string(&report).unwrap())
}

/// Requests the region answered, from its own metrics: (method, route) to
/// the count of each status.
fn answered(r: &Region) -> BTreeMap<(String, String), BTreeMap<u16, u64>> {
    let (status, _, text) = r.http("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(status, 200);
    let mut answered: BTreeMap<_, BTreeMap<u16, u64>> = BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("nubo_http_requests_total{") else {
            continue;
        };
        let (labels, count) = labels.split_once("} ").unwrap();
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            labels[start..].split('"').next().unwrap().to_string()
        };
        let key = (label("method"), label("route"));
        let status: u16 = label("status").parse().unwrap();
        *answered.entry(key).or_default().entry(status).or_default() +=
            count.parse::<u64>().unwrap();
    }
    answered
}

on_both_stores!(the_region_answers_as_its_openapi_document_says, |store| {
    let r = Region::start(store);
    let account = r.signup("contract@example.com");
    let spare = r.signup("contract-spare@example.com");

    let (passed, report) = run_schemathesis(&r, &account, &spare);
    assert!(passed, "schemathesis found failures:\n{report}");
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅ {phase}")),
            "the {phase} phase did not run and pass:\n{report}"
        );
    }

    let answered = answered(&r);
    let server_errors: Vec<_> = answered
        .iter()
        .flat_map(|(op, statuses)| statuses.keys().map(move |s| (op, *s)))
        .filter(|(_, status)| *status >= 500 && *status != 507)
        .collect();
    assert!(server_errors.is_empty(), "server errors: {server_errors:?}");

    // Every operation was tried, and every one that needs credentials was
    // reached with valid ones: it answered something other than 401 or 403.
    let (_, doc) = r.curl("GET", "/v1/openapi.json", None, &[]).unwrap();
    let mut unreached = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let key = (method.to_uppercase(), path.clone());
            let statuses = answered.get(&key).cloned().unwrap_or_default();
            let needs_credentials = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let reached = statuses
                .keys()
                .any(|s| !needs_credentials || (*s != 401 && *s != 403));
            if !reached {
                unreached.insert(format!("{} {path}: {statuses:?}", key.0));
            }
        }
    }
    assert!(unreached.is_empty(), "not reached: {unreached:#?}");

    // schemathesis sends no NUL (see schemathesis.toml): no text holds one,
    // wherever it is written.
    for (method, path, body) in [
        (
            "POST",
            "/v1/volumes",
            Some(r#"{"name": "a\u0000b", "size_gib": 1}"#),
        ),
        ("GET", "/v1/volumes/vol-%00", None),
        ("GET", "/v1/instances?page_token=a%00b", None),
    ] {
        let (status, v) = r.signed(&account, method, path, body);
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("InvalidRequest")),
            "{method} {path}: {v}"
        );
    }

    let (status, who) = r.signed(&account, "GET", "/v1/account", None);
    assert_eq!(status, 200, "the account kept its credentials: {who}");
    assert_eq!(who["account"]["status"], Value::from("active"));
});
