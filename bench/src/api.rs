//! `bench/api`: the control plane's latency and throughput with 10,000 simulated
//! instances on 100 simulated hosts, on SQLite and on PostgreSQL.
//!
//! Phases, each bounded in count and time: signup latency (sequential), filling
//! the region, describe throughput and latency (concurrent), list latency
//! (concurrent). Clients sign every request with SigV4, as the CLI does, and run
//! on the same two cores as the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nubo_api::account::{SignupRequest, SignupResponse};
use nubo_api::compute::{Instance, LaunchRequest, LaunchResponse};
use nubo_api::page::Page;
use nubo_cli::{Client, Credentials};

use crate::region::Region;
use crate::stats::{Samples, ms};

const ACCOUNTS: usize = 100;
const PER_ACCOUNT: u32 = 100;
const HOSTS: u32 = 100;
const SIGNUPS: usize = 200;
const PHASE: Duration = Duration::from_secs(10);
const DESCRIBE_CLIENTS: usize = 16;
const LIST_CLIENTS: usize = 4;

const LIST_P99_TARGET: Duration = Duration::from_millis(20);
const DESCRIBE_RATE_TARGET: f64 = 3000.0;

fn config() -> String {
    format!(
        "sim_hosts = {HOSTS}\nsignups_per_hour = 1000000\n\
         [sim_host]\nvcpus = 128\nmemory_mib = 262144\ndisk_gib = 1024\nboot_ms = 20\n\
         [quota_defaults]\ninstances = {PER_ACCOUNT}\nvcpus = {PER_ACCOUNT}\n"
    )
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let postgres = crate::flag(args, "--postgres-url");
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for (engine, url) in [("sqlite", None), ("postgres", postgres)] {
        if engine == "postgres" && url.is_none() {
            return Err("--postgres-url is required (cargo xtask bench api passes it)".into());
        }
        let url = url.map(fresh_database).transpose()?;
        let region = Region::start(nubod, &config(), url.as_deref(), &["--hypervisor", "sim"])?;
        eprintln!("[{engine}] region at {}", region.endpoint);
        rows.push((engine, runtime.block_on(measure(&region.endpoint, engine))?));
    }
    print_report(&mut rows);
    Ok(())
}

/// A new database on the PostgreSQL server at `admin_url`, via `psql`.
fn fresh_database(admin_url: &str) -> Result<String, String> {
    let name = format!("nubo_bench_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        let out = std::process::Command::new("psql")
            .args([admin_url, "-q", "-c", &sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .ok_or("bad URL")?;
    Ok(format!("{base}/{name}"))
}

struct Figures {
    signup: Samples,
    fill_secs: f64,
    describe_rate: f64,
    describe: Samples,
    list_rate: f64,
    list: Samples,
}

async fn measure(endpoint: &str, engine: &str) -> Result<Figures, String> {
    let public = Client::new(endpoint, "local-1", Credentials::None);
    let mut signup = Samples::default();
    let mut accounts = Vec::new();
    for i in 0..SIGNUPS {
        let started = Instant::now();
        let created: SignupResponse = public
            .post(
                "/v1/signup",
                &SignupRequest {
                    email: format!("bench-{i}@example.com"),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        signup.push(started.elapsed());
        accounts.push(Client::new(
            endpoint,
            "local-1",
            Credentials::Key {
                id: created.access_key_id,
                secret: created.secret_access_key,
            },
        ));
    }
    accounts.truncate(ACCOUNTS);

    let started = Instant::now();
    let mut instances: Vec<(usize, String)> = Vec::new();
    for (a, client) in accounts.iter().enumerate() {
        let launched: LaunchResponse = client
            .post(
                "/v1/instances",
                &LaunchRequest {
                    count: Some(PER_ACCOUNT),
                    ..LaunchRequest::new("nubo-micro", "n1.nano")
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        instances.extend(launched.instances.into_iter().map(|i| (a, i.id)));
    }
    wait_all_running(&accounts).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[{engine}] {} instances running on {HOSTS} hosts after {fill_secs:.1} s",
        instances.len()
    );

    let accounts = Arc::new(accounts);
    let instances = Arc::new(instances);
    let (describe_rate, describe) = load(DESCRIBE_CLIENTS, {
        let (accounts, instances) = (accounts.clone(), instances.clone());
        move |n| {
            let (accounts, instances) = (accounts.clone(), instances.clone());
            async move {
                let (a, id) = &instances[(n * 7919) % instances.len()];
                let _: Instance = accounts[*a]
                    .get(&format!("/v1/instances/{id}"))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    })
    .await?;
    let (list_rate, list) = load(LIST_CLIENTS, {
        let accounts = accounts.clone();
        move |n| {
            let accounts = accounts.clone();
            async move {
                let page: Page<Instance> = accounts[n % accounts.len()]
                    .get("/v1/instances")
                    .await
                    .map_err(|e| e.to_string())?;
                if page.items.len() != PER_ACCOUNT as usize {
                    return Err(format!("a list returned {} instances", page.items.len()));
                }
                Ok(())
            }
        }
    })
    .await?;
    Ok(Figures {
        signup,
        fill_secs,
        describe_rate,
        describe,
        list_rate,
        list,
    })
}

async fn wait_all_running(accounts: &[Client]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    for client in accounts {
        loop {
            let page: Page<Instance> = client
                .get("/v1/instances?state=running&limit=1000")
                .await
                .map_err(|e| e.to_string())?;
            if page.items.len() == PER_ACCOUNT as usize {
                break;
            }
            if Instant::now() > deadline {
                return Err("the region did not run every instance within 600 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Runs `call` from `clients` concurrent tasks for `PHASE`; returns the rate of
/// completed calls per second and their latencies.
async fn load<F, Fut>(clients: usize, call: F) -> Result<(f64, Samples), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (call, stop) = (call.clone(), stop.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut n = c;
                while !stop.load(Ordering::Relaxed) && samples.len() < 1_000_000 {
                    let t = Instant::now();
                    call(n).await?;
                    samples.push(t.elapsed());
                    n += clients;
                }
                Ok::<_, String>(samples)
            })
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, all))
}

fn print_report(rows: &mut [(&str, Figures)]) {
    println!();
    println!(
        "bench/api: {} instances on {HOSTS} simulated hosts, {ACCOUNTS} accounts; clients sign \
         with SigV4 and share the machine's cores",
        ACCOUNTS * PER_ACCOUNT as usize
    );
    println!();
    println!(
        "{:<9} {:>12} {:>12} {:>10} {:>14} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "store",
        "signup p50",
        "signup p99",
        "fill",
        "describe/s",
        "desc p50",
        "desc p99",
        "list/s",
        "list p50",
        "list p99"
    );
    for (engine, f) in rows.iter_mut() {
        println!(
            "{:<9} {:>12} {:>12} {:>9.1}s {:>14.0} {:>12} {:>12} {:>12.0} {:>12} {:>12}",
            engine,
            ms(f.signup.percentile(50.0)),
            ms(f.signup.percentile(99.0)),
            f.fill_secs,
            f.describe_rate,
            ms(f.describe.percentile(50.0)),
            ms(f.describe.percentile(99.0)),
            f.list_rate,
            ms(f.list.percentile(50.0)),
            ms(f.list.percentile(99.0)),
        );
    }
    println!();
    println!("against the targets (ratio > 1 meets it):");
    for (engine, f) in rows.iter_mut() {
        let list_p99 = f.list.percentile(99.0);
        println!(
            "  {engine:<9} describe {:.0}/s vs > {DESCRIBE_RATE_TARGET:.0}/s: {:.2}x    \
             list p99 {} vs < {}: {:.2}x",
            f.describe_rate,
            f.describe_rate / DESCRIBE_RATE_TARGET,
            ms(list_p99),
            ms(LIST_P99_TARGET),
            LIST_P99_TARGET.as_secs_f64() / list_p99.as_secs_f64().max(1e-9),
        );
    }
}
