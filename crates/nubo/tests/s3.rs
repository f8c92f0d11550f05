//! The region's S3-compatible object storage, driven by AWS's own clients
//! (boto3 and the aws CLI, from `NUBO_TEST_PYTHON`'s venv) through the Python
//! scripts in `tests/python/s3_*.py`, and by the `nubo bucket` commands.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Creds, Region, StoreKind};
use serde_json::Value;

/// How long one script may run before it is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn python() -> String {
    std::env::var("NUBO_TEST_PYTHON").expect(
        "NUBO_TEST_PYTHON is not set: the S3 tests drive boto3 and the aws CLI. \
         Run `cargo xtask test`",
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A Python command speaking to the region's S3 endpoint as `me`, with `other`
/// as the second account, and no AWS settings from the environment.
fn python_cmd(r: &Region, me: &Creds, other: &Creds, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.args(args)
        .current_dir(&r.dir)
        .env("NUBO_S3_ENDPOINT", &r.s3_endpoint)
        .env("AWS_ACCESS_KEY_ID", &me.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &me.secret)
        .env("AWS_DEFAULT_REGION", "local-1")
        .env("OTHER_ACCESS_KEY_ID", &other.key_id)
        .env("OTHER_SECRET_ACCESS_KEY", &other.secret)
        .env("AWS_CONFIG_FILE", r.dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            r.dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A child whose stdout and stderr are read as it runs.
struct Running {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

struct Finished {
    /// None if it was killed for running too long.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits up to `timeout`, then kills it.
    fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Finished {
            status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

fn log_tail(r: &Region) -> String {
    let log = r.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Panics with the script's output and the tail of nubod's log unless it succeeded.
fn assert_success(r: &Region, what: &str, out: &Finished, timeout: Duration) {
    let verdict = match out.status {
        Some(status) if status.success() => return,
        Some(status) => format!("{what} failed ({status})"),
        None => format!("{what} was killed after {timeout:?}"),
    };
    panic!(
        "{verdict}\n--- stdout:\n{}\n--- stderr:\n{}\n--- nubod log (tail):\n{}",
        out.stdout,
        out.stderr,
        log_tail(r)
    );
}

/// Runs one script to completion and asserts it passed.
fn run_script(r: &Region, me: &Creds, other: &Creds, name: &str, env: &[(&str, &str)]) {
    let path = script(name);
    let mut cmd = python_cmd(r, me, other, &[path.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = Running::start(cmd).finish(SCRIPT_TIMEOUT);
    assert_success(r, name, &out, SCRIPT_TIMEOUT);
    assert!(
        out.stdout.contains("ok: "),
        "{name} ended without its ok line:\n{}",
        out.stdout
    );
}

/// A fresh region with two accounts, running one script.
fn s3_script(store: StoreKind, name: &str) {
    let r = Region::start(store);
    let me = r.signup("s3-owner@example.com");
    let other = r.signup("s3-other@example.com");
    run_script(&r, &me, &other, name, &[]);
}

on_both_stores!(s3_buckets, |store: StoreKind| s3_script(
    store,
    "s3_buckets.py"
));

on_both_stores!(s3_objects, |store: StoreKind| s3_script(
    store,
    "s3_objects.py"
));

on_both_stores!(s3_listing, |store: StoreKind| s3_script(
    store,
    "s3_listing.py"
));

on_both_stores!(s3_multipart, |store: StoreKind| s3_script(
    store,
    "s3_multipart.py"
));

#[test]
fn s3_presigned_urls() {
    s3_script(StoreKind::Sqlite, "s3_presign.py");
}

#[test]
fn s3_protocol_details() {
    s3_script(StoreKind::Sqlite, "s3_protocol.py");
}

#[test]
fn s3_aws_cli() {
    s3_script(StoreKind::Sqlite, "s3_cli.py");
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn s3_objects_survive_a_crash_whole_or_not_at_all() {
    let mut r = Region::start(StoreKind::Sqlite);
    let me = r.signup("crash@example.com");
    let other = r.signup("crash-other@example.com");
    let acked = r.dir.join("acked.jsonl");
    std::fs::write(&acked, "").unwrap();
    let acked_str = acked.to_str().unwrap().to_string();
    let env = [
        ("NUBO_ACKED_FILE", acked_str.as_str()),
        ("NUBO_CRASH_BUCKET", "crash-bucket"),
    ];

    let writer_script = script("s3_crash_writer.py");
    let mut cmd = python_cmd(&r, &me, &other, &[writer_script.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut writer = Running::start(cmd);
    let started = Instant::now();
    loop {
        let elapsed = started.elapsed();
        if (elapsed >= Duration::from_secs(4) && lines_in(&acked) >= 20)
            || elapsed >= Duration::from_secs(30)
        {
            break;
        }
        if writer.exited() {
            let out = writer.finish(Duration::from_secs(1));
            panic!(
                "the writer ended before the crash ({:?})\n--- stdout:\n{}\n--- stderr:\n{}\n--- nubod log (tail):\n{}",
                out.status,
                out.stdout,
                out.stderr,
                log_tail(&r)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = lines_in(&acked);
    assert!(
        before >= 1,
        "no upload was acknowledged in 30 s\n{}",
        log_tail(&r)
    );

    r.kill9();
    let timeout = Duration::from_secs(60);
    let out = writer.finish(timeout);
    assert_success(&r, "s3_crash_writer.py", &out, timeout);

    r.restart();
    run_script(&r, &me, &other, "s3_crash_verify.py", &env);
}

#[test]
fn nubo_bucket_create_list_delete() {
    let r = Region::start(StoreKind::Sqlite);
    let signed_up = r.json(&["signup", "--email", "buckets@example.com"]);
    let me = Creds {
        account_id: signed_up["account_id"].as_str().unwrap().into(),
        key_id: signed_up["access_key_id"].as_str().unwrap().into(),
        secret: signed_up["secret_access_key"].as_str().unwrap().into(),
    };
    let names = |listed: &Value| -> Vec<String> {
        let mut names: Vec<String> = listed
            .as_array()
            .expect("bucket list -o json prints an array")
            .iter()
            .map(|b| {
                assert!(
                    b["created_at"].as_str().is_some_and(|s| !s.is_empty()),
                    "{b}"
                );
                b["name"].as_str().unwrap().to_string()
            })
            .collect();
        names.sort();
        names
    };

    r.ok(&["bucket", "create", "cli-bucket-one"]);
    r.ok(&["bucket", "create", "cli-bucket-two"]);
    assert_eq!(
        names(&r.json(&["bucket", "list"])),
        ["cli-bucket-one", "cli-bucket-two"]
    );
    let table = r.ok(&["bucket", "list"]);
    assert!(
        table.contains("cli-bucket-one") && table.contains("cli-bucket-two"),
        "{table}"
    );

    r.ok(&["bucket", "delete", "cli-bucket-two"]);
    assert_eq!(names(&r.json(&["bucket", "list"])), ["cli-bucket-one"]);

    // An object put through S3 keeps the bucket from being deleted.
    let put = concat!(
        "import os, boto3\n",
        "from botocore.config import Config\n",
        "cfg = Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1})\n",
        "s3 = boto3.client('s3', endpoint_url=os.environ['NUBO_S3_ENDPOINT'], region_name='local-1', config=cfg)\n",
        "s3.put_object(Bucket='cli-bucket-one', Key='k', Body=b'x')\n",
    );
    let out = Running::start(python_cmd(&r, &me, &me, &["-c", put])).finish(SCRIPT_TIMEOUT);
    assert_success(&r, "put_object with boto3", &out, SCRIPT_TIMEOUT);

    let refused = r.nubo(&["bucket", "delete", "cli-bucket-one"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("BucketNotEmpty"), "{stderr}");
    assert_eq!(names(&r.json(&["bucket", "list"])), ["cli-bucket-one"]);
}

/// Billing derives storage (GB-seconds) from the `stored`/`removed` events of
/// each object and each multipart part, and requests and bytes out from `usage`
/// events: check them against what a client did.
fn usage_is_metered(store: StoreKind) {
    let mut r = Region::start(store);
    let me = r.signup("metered@example.com");
    let workload = concat!(
        "import os, boto3\n",
        "from botocore.config import Config\n",
        "cfg = Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1})\n",
        "s3 = boto3.client('s3', endpoint_url=os.environ['NUBO_S3_ENDPOINT'], region_name='local-1', config=cfg)\n",
        "s3.create_bucket(Bucket='metered')\n",
        "s3.put_object(Bucket='metered', Key='a', Body=b'a' * 1000)\n",
        "s3.put_object(Bucket='metered', Key='a', Body=b'A' * 2000)\n",
        "s3.put_object(Bucket='metered', Key='b', Body=b'b' * 5000)\n",
        "assert len(s3.get_object(Bucket='metered', Key='a')['Body'].read()) == 2000\n",
        "assert len(s3.get_object(Bucket='metered', Key='b', Range='bytes=0-99')['Body'].read()) == 100\n",
        "s3.head_object(Bucket='metered', Key='b')\n",
        "s3.delete_object(Bucket='metered', Key='a')\n",
        "up = s3.create_multipart_upload(Bucket='metered', Key='m')['UploadId']\n",
        "s3.upload_part(Bucket='metered', Key='m', UploadId=up, PartNumber=1, Body=b'1' * 3000)\n",
        "etag = s3.upload_part(Bucket='metered', Key='m', UploadId=up, PartNumber=1, Body=b'2' * 4000)['ETag']\n",
        "s3.complete_multipart_upload(Bucket='metered', Key='m', UploadId=up, MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': etag}]})\n",
        "up = s3.create_multipart_upload(Bucket='metered', Key='n')['UploadId']\n",
        "s3.upload_part(Bucket='metered', Key='n', UploadId=up, PartNumber=1, Body=b'3' * 700)\n",
        "s3.abort_multipart_upload(Bucket='metered', Key='n', UploadId=up)\n",
    );
    let out = Running::start(python_cmd(&r, &me, &me, &["-c", workload])).finish(SCRIPT_TIMEOUT);
    assert_success(&r, "the metered workload", &out, SCRIPT_TIMEOUT);
    // Killed before the counts were recorded, the region records them when it
    // starts again, once: bytes out add up exactly.
    r.kill9();
    r.restart();
    assert!(r.stop().success());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let events = rt.block_on(async {
        let store = nubo_store::Store::open(&r.database_url()).await.unwrap();
        let mut c = store.conn().await.unwrap();
        let bucket = nubo_store::buckets::by_name(&mut c, "metered")
            .await
            .unwrap()
            .expect("the bucket is in the store");
        nubo_store::events::for_resource(&mut c, &bucket.id)
            .await
            .unwrap()
    });
    let of = |kind: &str, action: &str| -> Vec<&nubo_store::events::Event> {
        events
            .iter()
            .filter(|e| e.resource_type == kind && e.action == action)
            .collect()
    };
    let sizes = |action: &str| -> Vec<(String, i64)> {
        of("object", action)
            .iter()
            .map(|e| {
                assert_eq!(e.account_id.as_deref(), Some(me.account_id.as_str()));
                (
                    e.data["key"].as_str().unwrap().to_string(),
                    e.data["size"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let own = |k: &str, n: i64| (k.to_string(), n);
    assert_eq!(
        sizes("stored"),
        [
            own("a", 1000),
            own("a", 2000),
            own("b", 5000),
            own("m", 4000)
        ],
        "{events:#?}"
    );
    assert_eq!(
        sizes("removed"),
        [own("a", 1000), own("a", 2000)],
        "{events:#?}"
    );
    // Parts: stored as uploaded, removed when replaced, completed or aborted.
    let part_sizes = |action: &str| -> Vec<i64> {
        of("part", action)
            .iter()
            .map(|e| e.data["size"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(part_sizes("stored"), [3000, 4000, 700], "{events:#?}");
    assert_eq!(part_sizes("removed"), [3000, 4000, 700], "{events:#?}");
    let usage: Vec<_> = events.iter().filter(|e| e.action == "usage").collect();
    assert!(!usage.is_empty(), "no usage was recorded: {events:#?}");
    let total =
        |field: &str| -> u64 { usage.iter().map(|e| e.data[field].as_u64().unwrap()).sum() };
    // Six object requests after the bucket was made, and the bucket's creation.
    assert!(total("requests") >= 6, "{usage:#?}");
    assert_eq!(total("bytes_out"), 2100, "{usage:#?}");
}

on_both_stores!(usage_is_recorded_for_billing, usage_is_metered);
