//! Requests signed by AWS's own SDK (botocore) are accepted: the API speaks SigV4
//! as AWS defines it, not only as nubo's CLI signs it.

mod common;

use std::process::Command;

use common::{Region, StoreKind};
use serde_json::Value;

fn botocore(r: &Region, c: &common::Creds, method: &str, path: &str, body: Option<&str>) -> Value {
    let python = std::env::var("NUBO_TEST_PYTHON")
        .expect("NUBO_TEST_PYTHON is not set: this test drives botocore. Run `cargo xtask test`");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sigv4_request.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args([
        r.endpoint.as_str(),
        "local-1",
        &c.key_id,
        &c.secret,
        method,
        path,
    ]);
    if let Some(b) = body {
        cmd.arg(b);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn botocore_signed_requests_are_accepted_and_checked() {
    let r = Region::start(StoreKind::Sqlite);
    let c = r.signup("boto@example.com");
    let who = botocore(&r, &c, "GET", "/v1/account", None);
    assert_eq!(who["status"], 200, "{who}");
    assert_eq!(who["body"]["account"]["id"], c.account_id.as_str());

    let listed = botocore(&r, &c, "GET", "/v1/instances?limit=5&state=running", None);
    assert_eq!(
        listed["status"], 200,
        "a query string is canonicalized alike: {listed}"
    );

    let created = botocore(
        &r,
        &c,
        "POST",
        "/v1/keys",
        Some("{\"scope\":\"read-only\"}"),
    );
    assert_eq!(created["status"], 201, "{created}");
    assert_eq!(created["body"]["scope"], "read-only");

    let wrong = common::Creds {
        secret: "wrong".into(),
        ..c.clone()
    };
    let refused = botocore(&r, &wrong, "GET", "/v1/account", None);
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["body"]["code"], "SignatureDoesNotMatch");
}
