//! Starting and stopping a region server.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use std::sync::{Arc, OnceLock};

use axum::serve::ListenerExt;
use nubo_auth::SecretBox;
use nubo_s3::ObjectStorage;
use nubo_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::accounts::signup_limit::SignupLimiter;
use crate::api::auth::{OPERATOR_TOKEN_PREFIX, ReplayGuard};
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::config::Config;
use crate::hosts::Fleet;
use crate::keys::lookup::KeyLookup;
use crate::state::{AppState, Shared};
use crate::storage::RegionTenancy;
use crate::{api, compute};

/// Runs the region until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), String> {
    // From the start: SIGHUP's default action would end nubod.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("SIGHUP handler: {e}"))?;
    nubo_tls::install_crypto_provider();
    let cert = config
        .tls
        .as_ref()
        .map(|files| nubo_tls::ServerCert::load(&files.cert, &files.key))
        .transpose()?;
    let tls = cert.as_ref().map(|c| c.server_config()).transpose()?;
    fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("data dir {}: {e}", config.data_dir.display()))?;
    fs::set_permissions(&config.data_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("data dir {}: {e}", config.data_dir.display()))?;
    let mut lock = lock_data_dir(&config.data_dir)?;
    // Who holds the lock, for `cargo xtask down` and operators.
    lock.set_len(0)
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .map_err(|e| format!("data dir {}: {e}", config.data_dir.display()))?;
    let secrets = SecretBox::load_or_create(&config.data_dir.join("secrets.key"))
        .map_err(|e| e.to_string())?;
    let operator_token = operator_token(&config.data_dir.join("operator.token"))?;
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let clock = match &config.clock_file {
        Some(path) => Clock::from_file(path.clone())?,
        None => Clock::system(),
    };
    compute::images::register_public(&config, &store, &clock)
        .await
        .map_err(|e| format!("images: {e}"))?;
    let fleet = Fleet::start(&config, &store, &clock)
        .await
        .map_err(|e| format!("hosts: {e}"))?;

    let listener = listen(config.listen, "", tls.clone()).await?;
    let state = AppState::new(Shared {
        keys: KeyLookup::new(store.clone(), secrets.clone()),
        signups: SignupLimiter::new(config.signups_per_hour),
        replay: ReplayGuard::default(),
        metrics: Metrics::default(),
        reconcile: Notify::new(),
        volumes: Notify::new(),
        chunk_gc: tokio::sync::RwLock::new(()),
        volume_files: tokio::sync::RwLock::new(()),
        fleet,
        secrets,
        operator_token,
        store: store.clone(),
        clock,
        config: config.clone(),
        objects: OnceLock::new(),
    });
    let storage = ObjectStorage::open(
        nubo_s3::Config {
            base_domain: config.s3_domain.clone(),
            ..nubo_s3::Config::new(config.region.clone(), config.data_dir.join("objects"))
        },
        store.clone(),
        Arc::new(RegionTenancy(state.clone())),
    )
    .await
    .map_err(|e| format!("object storage: {e}"))?;
    let _ = state.objects.set(storage.clone());
    let s3_listener = listen(config.s3_listen, " (S3)", tls.clone()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let reconciler = compute::reconciler::spawn(state.clone(), stop_rx.clone());
    let volumes = crate::volumes::reconciler::spawn(state.clone(), stop_rx.clone());
    let billing = crate::billing::cycle::spawn(state.clone(), stop_rx.clone());
    let reloads = tokio::spawn(reload_on_hangup(hangups, cert));
    let mut s3_stop = stop_rx;
    let s3 = tokio::spawn(nubo_s3::serve(storage, s3_listener, async move {
        let _ = s3_stop.changed().await;
    }));

    tracing::info!(
        region = config.region,
        endpoint = config.public_endpoint,
        s3 = config.public_s3_endpoint,
        store = store.engine().name(),
        hypervisor = ?config.hypervisor,
        tls = tls.is_some(),
        "nubod serving"
    );
    // tap_io changes nothing; through it axum hands handlers the peer's
    // address of any listener's connections, not only a TcpListener's.
    axum::serve(
        listener.tap_io(|_| {}),
        api::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| format!("serve: {e}"))?;

    tracing::info!("shutting down");
    reloads.abort();
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    let _ = volumes.await;
    let _ = billing.await;
    let _ = s3.await;
    store.close().await;
    Ok(())
}

/// `nubod teardown`: stops the nubod that serves the data dir, then takes
/// away what the region's hosts made on this machine and left running (VMs,
/// their networks' namespaces and DHCP servers, the rules of those); with
/// `purge`, the data dir goes too.
pub fn teardown(config: &Config, purge: bool) -> Result<(), String> {
    let dir = &config.data_dir;
    if !dir.exists() {
        println!("{} does not exist: nothing to tear down", dir.display());
        return Ok(());
    }
    let _lock = match lock_data_dir(dir) {
        Ok(lock) => lock,
        Err(_) => stop_server(dir)?,
    };
    for host in crate::hosts::qemu_hosts(config) {
        let removed =
            nubo_host::qemu::teardown(&host).map_err(|e| format!("{}: {e}", host.name))?;
        println!(
            "{}: stopped {} VMs, removed {} networks",
            host.name, removed.vms, removed.networks
        );
    }
    if purge {
        fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        println!("removed {}", dir.display());
    }
    Ok(())
}

/// How long a nubod asked to stop may take before it is killed.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Stops the nubod that holds the data dir's lock (it wrote its pid there):
/// SIGTERM, then SIGKILL if it has not let go within [`STOP_TIMEOUT`].
/// Returns the lock, now ours.
fn stop_server(dir: &Path) -> Result<File, String> {
    let path = dir.join("nubod.lock");
    let pid: i32 = fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "{} is locked by a process that did not say who it is",
                path.display()
            )
        })?;
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| format!("{}: bad pid {pid}", path.display()))?;
    println!("stopping nubod (pid {})", pid.as_raw_nonzero());
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    loop {
        if let Ok(lock) = lock_data_dir(dir) {
            return Ok(lock);
        }
        if std::time::Instant::now() > deadline {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if std::time::Instant::now() > deadline + std::time::Duration::from_secs(10) {
            return Err(format!("nubod (pid {}) did not stop", pid.as_raw_nonzero()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Binds `addr`, serving TLS if the region has a certificate.
async fn listen(
    addr: SocketAddr,
    what: &str,
    tls: Option<Arc<nubo_tls::ServerConfig>>,
) -> Result<nubo_tls::Listener, String> {
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listen on {addr}{what}: {e}"))?;
    nubo_tls::Listener::new(tcp, tls).map_err(|e| format!("listen on {addr}{what}: {e}"))
}

/// Reads the TLS certificate and key again on each SIGHUP (`systemctl
/// reload nubod`), for new connections; a bad pair leaves the one in use.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    cert: Option<Arc<nubo_tls::ServerCert>>,
) {
    while hangups.recv().await.is_some() {
        match &cert {
            None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            Some(cert) => match cert.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; the old one serves")
                }
            },
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Holds an exclusive lock on the data dir for the life of the server, so that
/// two servers never share one store file.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<File, String> {
    let path = dir.join("nubod.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.try_lock().map_err(|_| {
        format!(
            "another nubod is using {}; stop it or pick another --data-dir",
            dir.display()
        )
    })?;
    Ok(file)
}

/// The operator token, created on first start (mode 0600) and read afterwards.
fn operator_token(path: &Path) -> Result<String, String> {
    if let Ok(token) = fs::read_to_string(path) {
        let token = token.trim().to_string();
        if token.starts_with(OPERATOR_TOKEN_PREFIX) {
            return Ok(token);
        }
        return Err(format!(
            "{} does not hold an operator token",
            path.display()
        ));
    }
    let token = format!("{OPERATOR_TOKEN_PREFIX}{}", nubo_auth::new_secret());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{token}").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}
