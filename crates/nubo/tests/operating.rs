//! What docs/operating.md tells an operator to do works: the systemd unit,
//! TLS on both endpoints, backup and restore.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Creds, Region, StoreKind};
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nubo-{name}-{:016x}",
        nubo_store::ids::random_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `[Section]` → `Key=value` lines of a systemd unit, in order.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            settings.push((section.clone(), key.to_string(), value.to_string()));
        }
    }
    settings
}

#[test]
fn the_systemd_unit_is_valid_and_leaves_vms_running_when_stopped() {
    let path = repo().join("deploy/systemd/nubod.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings = unit_settings(&text);
    let get = |section: &str, key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    // Stopping the service must signal nubod alone: VMs, DHCP servers and
    // relays outlive it and are re-adopted.
    assert_eq!(get("Service", "KillMode"), ["process"]);
    assert_eq!(get("Service", "Restart"), ["on-failure"]);
    // A reload reads a renewed TLS certificate (nubod's SIGHUP).
    assert_eq!(get("Service", "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("Install", "WantedBy"), ["multi-user.target"]);

    // ExecStart is a command line nubod takes, on the data dir systemd makes.
    let exec = get("Service", "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/nubod");
    let args = nubo_region::Args::try_parse_from(&words)
        .unwrap_or_else(|e| panic!("nubod does not take {:?}: {e}", exec[0]));
    let state = get("Service", "StateDirectory");
    assert_eq!(state.len(), 1);
    assert_eq!(
        args.data_dir,
        Some(Path::new("/var/lib").join(state[0])),
        "the data dir is the unit's StateDirectory"
    );
    assert_eq!(get("Service", "StateDirectoryMode"), ["0700"]);

    // The example environment file names only variables nubod reads.
    let env = std::fs::read_to_string(repo().join("deploy/systemd/nubod.env")).unwrap();
    let help =
        String::from_utf8(run(Command::new(env!("CARGO_BIN_EXE_nubod")).arg("--help")).stdout)
            .unwrap();
    for line in env.lines() {
        let Some((name, _)) = line.trim_start_matches('#').split_once('=') else {
            continue;
        };
        if name.starts_with("NUBO_") {
            assert!(
                help.contains(&format!("[env: {name}")),
                "nubod reads no {name}"
            );
        }
    }

    // systemd's own check, with ExecStart pointing at the binary just built
    // (the unit names where an operator installs it).
    let dir = scratch("unit");
    let unit = dir.join("nubod.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/nubod", env!("CARGO_BIN_EXE_nubod")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package)");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A private CA, and a certificate it signed for 127.0.0.1: `ca.pem`,
/// `cert.pem` and `key.pem` in `dir`.
fn private_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=nubo test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("cert.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         subjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid,issuer\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "cert.ext",
        "-out",
        "cert.pem",
    ]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nubod serving both endpoints over TLS, until dropped.
struct TlsRegion {
    child: Child,
    dir: PathBuf,
    endpoint: String,
    s3_endpoint: String,
}

impl TlsRegion {
    fn start(dir: &Path) -> TlsRegion {
        let (api, s3) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_nubod"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--hypervisor",
                "sim",
                "--listen",
                &format!("127.0.0.1:{api}"),
            ])
            .args(["--s3-listen", &format!("127.0.0.1:{s3}")])
            .arg("--tls-cert")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("key.pem"))
            .env_remove("NUBO_DATABASE_URL")
            .env("NUBO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nubod.log")).unwrap())
            .spawn()
            .unwrap();
        let region = TlsRegion {
            child,
            dir: dir.to_path_buf(),
            endpoint: format!("https://127.0.0.1:{api}"),
            s3_endpoint: format!("https://127.0.0.1:{s3}"),
        };
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        let client = https_status_trusting(&ca);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client(&format!("{}/healthz", region.endpoint)) == Some(200) {
                return region;
            }
            assert!(
                Instant::now() < deadline,
                "nubod did not serve HTTPS: {}",
                std::fs::read_to_string(dir.join("nubod.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn nubo(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        common::nubo_command(&self.dir.join("config"), &self.endpoint, args, env)
            .output()
            .unwrap()
    }
}

impl TlsRegion {
    fn hangup(&self) {
        run(Command::new("kill").args(["-HUP", &self.child.id().to_string()]));
    }
}

impl Drop for TlsRegion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a GET of a URL, by a client that trusts only `ca`, on a
/// new connection each time.
fn https_status_trusting(ca: &[u8]) -> impl Fn(&str) -> Option<u16> {
    nubo_tls::install_crypto_provider();
    let certs = reqwest::Certificate::from_pem_bundle(ca).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only(certs)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    move |url: &str| {
        rt.block_on(async {
            client
                .get(url)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        })
    }
}

#[test]
fn the_cli_and_s3_clients_speak_https_trusting_a_private_ca() {
    let dir = scratch("tls");
    private_ca(&dir);
    let r = TlsRegion::start(&dir);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // Without the CA, the CLI refuses the region's certificate.
    let refused = r.nubo(&["regions", "list"], &[]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("certificate"), "{why}");

    // With it (flag or environment), everything works over HTTPS.
    let out = r.nubo(
        &[
            "--ca-bundle",
            ca,
            "-o",
            "json",
            "signup",
            "--email",
            "tls@example.com",
            "--no-save",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = created["access_key_id"].as_str().unwrap().to_string();
    let secret = created["secret_access_key"].as_str().unwrap().to_string();
    let out = r.nubo(
        &["-o", "json", "regions", "list"],
        &[("NUBO_CA_BUNDLE", ca)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let regions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        regions[0]["s3_endpoint"].as_str(),
        Some(r.s3_endpoint.as_str()),
        "the catalog names the https:// S3 endpoint: {regions}"
    );
    let who = r.nubo(
        &["whoami"],
        &[
            ("NUBO_CA_BUNDLE", ca),
            ("NUBO_ACCESS_KEY_ID", &key_id),
            ("NUBO_SECRET_ACCESS_KEY", &secret),
        ],
    );
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );

    // A CA bundle that is not one is a clear usage error.
    let bad = r.nubo(&["--ca-bundle", "/dev/null", "regions", "list"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CA bundle"));

    // boto3 and the aws CLI, with and without the CA.
    let python = std::env::var("NUBO_TEST_PYTHON")
        .expect("NUBO_TEST_PYTHON is not set: this test drives boto3. Run `cargo xtask test`");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut cmd = Command::new(python);
    cmd.arg(scripts.join("s3_tls.py"))
        .current_dir(&dir)
        .env("NUBO_S3_ENDPOINT", &r.s3_endpoint)
        .env("AWS_CA_BUNDLE", ca)
        .env("AWS_ACCESS_KEY_ID", &key_id)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .env("AWS_DEFAULT_REGION", "local-1")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    for var in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "HTTPS_PROXY",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("ok: a client without the region's CA is refused"),
        "{said}"
    );

    // A renewed certificate (here: of another CA) serves new connections
    // after SIGHUP, without a restart; a bad one leaves the old in place.
    let first_ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let renewed = dir.join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    private_ca(&renewed);
    let second_ca = std::fs::read(renewed.join("ca.pem")).unwrap();
    let healthz = format!("{}/healthz", r.endpoint);
    let first = https_status_trusting(&first_ca);
    let second = https_status_trusting(&second_ca);
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    r.hangup();
    common::wait_until(
        "the bad certificate refused",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(dir.join("nubod.log"))
                .unwrap_or_default()
                .contains("TLS certificate not reloaded")
        },
    );
    assert_eq!(
        first(&healthz),
        Some(200),
        "the old certificate still serves"
    );
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(renewed.join(file), dir.join(file)).unwrap();
    }
    r.hangup();
    common::wait_until("the renewed certificate", Duration::from_secs(30), || {
        second(&healthz) == Some(200)
    });
    // (A fresh client: one that resumes an earlier TLS session is not shown
    // a certificate at all.)
    assert_eq!(
        https_status_trusting(&first_ca)(&healthz),
        None,
        "the old CA no longer vouches for it"
    );

    drop(r);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a `backup_objects.py` mode against `r`'s S3 endpoint as `c`.
fn objects(r: &Region, c: &Creds, args: &[&str]) -> Command {
    let python = std::env::var("NUBO_TEST_PYTHON")
        .expect("NUBO_TEST_PYTHON is not set: this test drives boto3. Run `cargo xtask test`");
    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/backup_objects.py"))
        .args(args)
        .current_dir(&r.dir)
        .env("NUBO_S3_ENDPOINT", &r.s3_endpoint)
        .env("AWS_ACCESS_KEY_ID", &c.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret)
        .env("AWS_DEFAULT_REGION", "local-1")
        .env("AWS_CONFIG_FILE", r.dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            r.dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    for var in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Downloads a backup of `r` into `to` as the API streams it, running
/// `meanwhile` after its first bytes.
fn download_backup(r: &Region, to: &Path, meanwhile: impl FnOnce()) {
    nubo_tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut response = rt
        .block_on(
            reqwest::Client::new()
                .get(format!("{}/v1/admin/backup", r.endpoint))
                .bearer_auth(r.operator_token())
                .send(),
        )
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut bytes = rt.block_on(response.chunk()).unwrap().unwrap().to_vec();
    meanwhile();
    while let Some(piece) = rt.block_on(response.chunk()).unwrap() {
        bytes.extend_from_slice(&piece);
    }
    std::fs::write(to, bytes).unwrap();
}

/// `nubo admin backup` of `r` into `to`.
fn backup(r: &Region, to: &Path) {
    let token = r.operator_token();
    let out = r.nubo(&[
        "-o",
        "json",
        "admin",
        "backup",
        "--to",
        to.to_str().unwrap(),
        "--operator-token",
        &token,
    ]);
    assert!(
        out.status.success(),
        "nubo admin backup: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log()
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        said["bytes"].as_u64(),
        Some(std::fs::metadata(to).unwrap().len())
    );
}

on_both_stores!(
    a_backup_taken_while_the_region_works_restores_every_resource,
    |store: StoreKind| {
        let r = Region::start(store);
        let c = r.signup("backup@example.com");
        let launched = common::launch(
            &r,
            &c,
            json!({"image": "nubo-micro", "instance_type": "n1.nano"}),
        );
        let instance = launched[0].clone();
        r.wait_state(&c, &instance, "running");
        let volume = attach_new_volume(&r, &c, json!({"size_gib": 2, "name": "data"}), &instance);
        let path = format!("/v1/volumes/{volume}");
        r.wait_for(&c, &path, "in-use");
        run(&mut objects(&r, &c, &["fill", "kept", "24"]));

        // Objects are written, overwritten and deleted while the backup runs.
        let stop = r.dir.join("stop-churn");
        let churn = objects(&r, &c, &["churn", "churn", stop.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rounds = || {
            std::fs::read_to_string(r.dir.join("stop-churn.rounds"))
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        };
        common::wait_until("the churn starts", Duration::from_secs(60), || rounds() > 0);
        // The archive's first bytes come once the store is copied; while its
        // reader waits, 30 more rounds overwrite and delete objects whose
        // files the copy lists and the archive has yet to take.
        let archive = r.dir.join("region.tar");
        download_backup(&r, &archive, || {
            let from = rounds();
            common::wait_until("30 rounds of churn", Duration::from_secs(120), || {
                rounds() >= from + 30
            });
        });
        std::fs::write(&stop, "").unwrap();
        let churned = churn.wait_with_output().unwrap();
        assert!(
            churned.status.success(),
            "{}",
            String::from_utf8_lossy(&churned.stderr)
        );

        let restored = Region::restored(store, &archive, &["--hypervisor", "sim"]);
        let (s, v) = restored.signed(&c, "GET", "/v1/account", None);
        assert_eq!(s, 200, "the account and its key come back: {v}");
        assert_eq!(v["account"]["id"], c.account_id.as_str());
        // Its VM is not in the backup: the instance comes back failed (a
        // simulated host's volumes live in memory, so it cannot start again
        // here; a QEMU host's can, below).
        let v = restored.wait_state(&c, &instance, "failed");
        assert!(
            v["state_reason"]
                .as_str()
                .unwrap_or_default()
                .contains("disappeared"),
            "{v}"
        );
        let (s, v) = restored.signed(&c, "GET", &path, None);
        assert_eq!((s, v["name"].as_str()), (200, Some("data")), "{v}");
        assert_eq!(v["attachment"]["instance_id"], instance.as_str(), "{v}");
        let said = run(&mut objects(
            &restored,
            &c,
            &["verify", "kept:25", "churn:*"],
        ));
        let said = String::from_utf8_lossy(&said.stdout);
        assert!(said.contains("kept: 25 objects"), "{said}");
        // The operator token and the key that seals secrets came along.
        assert_eq!(restored.operator_token(), r.operator_token());
    }
);

#[test]
fn a_volume_comes_back_with_its_bytes() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("volume-backup@example.com");
    let (s, v) = r.signed(
        &c,
        "POST",
        "/v1/volumes",
        Some(&json!({"size_gib": 1}).to_string()),
    );
    assert_eq!(s, 202, "{v}");
    let volume = v["id"].as_str().unwrap().to_string();
    r.wait_for(&c, &format!("/v1/volumes/{volume}"), "available");
    // Bytes a guest could have written: at the start, across a chunk's end,
    // and at the very end of the volume.
    let file = r.dir.join(format!("data/volumes/{volume}.raw"));
    let size = 1u64 << 30;
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (0, b"nubo volume header".to_vec()),
        ((4 << 20) - 3, vec![0xab; 10]),
        (size - 512, vec![0x5a; 512]),
    ];
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        for (at, bytes) in &writes {
            f.write_all_at(bytes, *at).unwrap();
        }
        f.sync_all().unwrap();
    }
    let archive = r.dir.join("region.tar");
    backup(&r, &archive);

    let images = std::env::var("NUBO_TEST_IMAGES").unwrap();
    let restored = Region::restored(
        StoreKind::Sqlite,
        &archive,
        &["--hypervisor", "qemu", "--images-dir", &images],
    );
    let (s, v) = restored.signed(&c, "GET", &format!("/v1/volumes/{volume}"), None);
    assert_eq!((s, v["state"].as_str()), (200, Some("available")), "{v}");
    let copy = restored.dir.join(format!("data/volumes/{volume}.raw"));
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(&copy).unwrap();
    for (at, bytes) in &writes {
        let mut back = vec![0u8; bytes.len()];
        f.read_exact_at(&mut back, *at).unwrap();
        assert_eq!(&back, bytes, "the bytes at {at}");
    }
    let mut between = vec![1u8; 4096];
    f.read_exact_at(&mut between, 1 << 20).unwrap();
    assert!(between.iter().all(|b| *b == 0), "zeros stay zeros");
}

/// Creates a volume (`body`) and asks for it to be attached to `instance`.
fn attach_new_volume(r: &Region, c: &Creds, body: serde_json::Value, instance: &str) -> String {
    let (s, v) = r.signed(c, "POST", "/v1/volumes", Some(&body.to_string()));
    assert_eq!(s, 202, "{v}");
    let volume = v["id"].as_str().unwrap().to_string();
    let path = format!("/v1/volumes/{volume}");
    r.wait_for(c, &path, "available");
    let (s, v) = r.signed(
        c,
        "POST",
        &format!("{path}/attach"),
        Some(&json!({"instance_id": instance}).to_string()),
    );
    assert_eq!(s, 202, "{v}");
    volume
}

/// The highest block the appender acknowledged on `volume`.
fn acked(r: &Region, c: &Creds, id: &str, volume: &str) -> Option<u64> {
    let prefix = format!("acked {volume} ");
    common::console(r, c, id)
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix)?.trim().parse().ok())
        .max()
}

#[test]
fn a_volume_a_guest_writes_is_backed_up_as_of_a_moment_and_boots_again() {
    let r = Region::start_qemu(StoreKind::Sqlite, &[]);
    let c = r.signup("guest-backup@example.com");
    let instance = common::launch(
        &r,
        &c,
        json!({"image": "nubo-micro", "instance_type": "n1.nano", "user_data": common::APPENDER}),
    )[0]
    .clone();
    r.wait_state_within(&c, &instance, "running", Duration::from_secs(120));
    let volume = attach_new_volume(&r, &c, json!({"size_gib": 1}), &instance);
    common::wait_until("20 blocks on the volume", Duration::from_secs(120), || {
        acked(&r, &c, &instance, &volume).is_some_and(|n| n >= 20)
    });

    // Copied through QEMU while the guest goes on writing.
    let dir = scratch("guest-backup");
    let archive = dir.join("region.tar");
    let before = acked(&r, &c, &instance, &volume).unwrap();
    backup(&r, &archive);
    drop(r);

    let images = std::env::var("NUBO_TEST_IMAGES").unwrap();
    let restored = Region::restored(
        StoreKind::Sqlite,
        &archive,
        &["--hypervisor", "qemu", "--images-dir", &images],
    );
    use std::os::unix::fs::FileExt;
    let file =
        std::fs::File::open(restored.dir.join(format!("data/volumes/{volume}.raw"))).unwrap();
    let mut blocks = 0u64;
    loop {
        let mut block = [0u8; 14];
        file.read_exact_at(&mut block, 4096 * (4096 + blocks))
            .unwrap();
        if block != *format!("block-{blocks:08}").as_bytes() {
            break;
        }
        blocks += 1;
    }
    assert!(
        blocks > before,
        "every block acknowledged before the backup began is in it: {blocks} of {before}"
    );

    // The instance's VM is not in the backup; it starts again on the volume.
    restored.wait_state(&c, &instance, "failed");
    let (s, v) = restored.signed(&c, "POST", &format!("/v1/instances/{instance}/start"), None);
    assert_eq!(s, 200, "{v}");
    restored.wait_state_within(&c, &instance, "running", Duration::from_secs(120));
    common::wait_until(
        "the guest writes its volume again",
        Duration::from_secs(120),
        || acked(&restored, &c, &instance, &volume).is_some(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
