//! `bench/billing`: closing a month's invoice for an account with 1,000,000
//! usage events, on SQLite. Target: under one second.
//!
//! The events are written straight into the store while nubod is stopped (the
//! API would take hours to make them): 2,000 instances that each start and
//! stop 100 times in the month (4 events a cycle) and 500 volumes resized 200
//! times each (2 events a resize). nubod then starts as it stands on the
//! month's last day: its billing cycle rolls the days before up (a running
//! region does this a day at a time; here it is timed in one go). The
//! invoice is then closed through the operator API, as at the month's end:
//! the close rolls up the last day and prices the days. Closing again prices
//! the same days and must give the identical invoice.

use std::time::{Duration, Instant, SystemTime};

use nubo_api::billing::{CloseReport, CloseRequest, Invoice};
use nubo_cli::{Client, Credentials};
use nubo_store::Store;
use nubo_store::events::{self, NewEvent};
use serde_json::json;
use time::OffsetDateTime;

use crate::region::Region;

const INSTANCES: usize = 2_000;
const CYCLES: usize = 100;
const VOLUMES: usize = 500;
const RESIZES: usize = 200;
const EVENTS: usize = INSTANCES * CYCLES * 4 + VOLUMES * RESIZES * 2;
const TARGET: Duration = Duration::from_secs(1);
const CLOSES: usize = 5;

/// While the events are written: nothing is rolled up or closed.
const IDLE: &str = "[billing]\nclose_after_seconds = 3000000000\n";

/// Roll-ups reach the start of the month's last day, and months close only
/// when asked, so that the measured close is the first.
fn month_end_config(end: i64) -> String {
    let now = (SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()) as i64;
    let grace = (now - (end - 12 * 3_600_000_000)) / 1_000_000;
    format!("[billing]\ncheck_seconds = 1\nclose_after_seconds = {grace}\n")
}

/// How far the account's usage is rolled up, read from the store.
async fn mark(url: &str, account_id: &str) -> Result<Option<i64>, String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&format!("{url}?mode=ro"))
        .await
        .map_err(|e| e.to_string())?;
    let through: Option<i64> =
        sqlx::query_scalar("SELECT through FROM metering_marks WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&mut c)
            .await
            .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(through)
}

/// The first microsecond of last month and of this one (UTC).
fn last_month() -> (i64, i64, String) {
    let now = OffsetDateTime::from(SystemTime::now());
    let this = now
        .date()
        .replace_day(1)
        .unwrap_or(now.date())
        .midnight()
        .assume_utc();
    let last = (this - time::Duration::days(1))
        .date()
        .replace_day(1)
        .unwrap_or(this.date())
        .midnight()
        .assume_utc();
    let micros = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1000) as i64;
    let name = format!("{:04}-{:02}", last.year(), u8::from(last.month()));
    (micros(last), micros(this), name)
}

/// Writes the month's events for the account, and dates the account before it.
async fn fill(url: &str, account_id: &str, start: i64, end: i64) -> Result<(), String> {
    let store = Store::open(url).await.map_err(|e| e.to_string())?;
    let span = end - start;
    let mut batch: Vec<(i64, String, &str, serde_json::Value)> = Vec::with_capacity(EVENTS);
    for i in 0..INSTANCES {
        let id = format!("i-{:016x}", 0xb111_0000_0000u64 + i as u64);
        let period = span / CYCLES as i64;
        for k in 0..CYCLES as i64 {
            // Runs from a few minutes to most of the period, spread by instance.
            let begin = start + k * period + (i as i64 * 7_919_000_000) % (period / 4);
            let run = 30_000_000 + (i as i64 * 104_729_000 + k * 15_485_863_000) % (period / 2);
            let instance_type = ["n1.nano", "n1.small", "n1.medium"][i % 3];
            let data = json!({ "instance_type": instance_type });
            for (at, state) in [
                (begin, "pending"),
                (begin + 1_000_000, "running"),
                (begin + 1_000_000 + run, "stopping"),
                (begin + 2_000_000 + run, "stopped"),
            ] {
                batch.push((at, id.clone(), state, data.clone()));
            }
        }
    }
    let mut volumes: Vec<(i64, String, &str, serde_json::Value)> = Vec::new();
    for v in 0..VOLUMES {
        let id = format!("vol-{:016x}", 0xb111_0000_0000u64 + v as u64);
        let period = span / RESIZES as i64;
        for k in 0..RESIZES as i64 {
            let at = start + k * period + v as i64 * 1_000_000;
            let size = json!({"size_gib": 1 + k + v as i64 % 50});
            volumes.push((at, id.clone(), "resizing", size.clone()));
            volumes.push((at + 2_000_000, id.clone(), "available", size));
        }
    }
    let mut tx = store.begin().await.map_err(|e| e.to_string())?;
    sqlx::query("UPDATE accounts SET created_at = $1 WHERE id = $2")
        .bind(start - 86_400_000_000)
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let all: Vec<_> = batch
        .iter()
        .map(|e| ("instance", e))
        .chain(volumes.iter().map(|e| ("volume", e)))
        .collect();
    for chunk in all.chunks(500) {
        let actions: Vec<String> = chunk
            .iter()
            .map(|(_, (_, _, state, _))| format!("state.{state}"))
            .collect();
        let rows: Vec<NewEvent> = chunk
            .iter()
            .zip(&actions)
            .map(|((kind, (at, id, _, data)), action)| NewEvent {
                at: *at,
                account_id: Some(account_id),
                resource_type: kind,
                resource_id: id,
                action,
                data: data.clone(),
            })
            .collect();
        events::append_many(&mut tx, &rows)
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    store.close().await;
    Ok(())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut region = Region::start(nubod, IDLE, None, &["--hypervisor", "sim"])?;
    let (start, end, month) = last_month();
    let client = runtime.block_on(region.signed_up("billing-bench@example.com"))?;
    let account: serde_json::Value = runtime
        .block_on(client.get("/v1/account"))
        .map_err(|e| e.to_string())?;
    let account_id = account["account"]["id"]
        .as_str()
        .ok_or("no account id")?
        .to_string();
    region.stop();
    let url = format!("sqlite://{}", region.dir.join("data/region.db").display());
    let t = Instant::now();
    runtime.block_on(fill(&url, &account_id, start, end))?;
    eprintln!(
        "[billing] {EVENTS} events written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::fs::write(region.dir.join("nubod.toml"), month_end_config(end))
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    region.restart()?;
    let last_day = end - 24 * 3_600_000_000;
    let deadline = Instant::now() + Duration::from_secs(300);
    while runtime.block_on(mark(&url, &account_id))? != Some(last_day) {
        if Instant::now() > deadline {
            return Err("the month's days were not rolled up within 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let rolled = t.elapsed();
    let token = std::fs::read_to_string(region.dir.join("data/operator.token"))
        .map_err(|e| format!("operator token: {e}"))?;
    let operator = Client::new(
        &region.endpoint,
        "local-1",
        Credentials::Operator(token.trim().to_string()),
    );
    let mut times = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..CLOSES {
        let t = Instant::now();
        let report: CloseReport = runtime
            .block_on(operator.post(
                "/v1/admin/billing/close",
                &CloseRequest {
                    month: month.clone(),
                },
            ))
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        reports.push(report);
    }
    let invoice: Invoice = runtime
        .block_on(client.get(&format!("/v1/billing/invoices/{month}")))
        .map_err(|e| e.to_string())?;
    if reports[0].closed != 1 || reports[1..].iter().any(|r| r.identical != 1) {
        return Err(format!("unexpected closes: {reports:?}"));
    }
    let first = times[0];
    let mut again: Vec<Duration> = times[1..].to_vec();
    again.sort();
    let median = again[again.len() / 2];
    println!("bench/billing: one account, {EVENTS} events in {month}, SQLite");
    println!(
        "  invoice: {} lines, total {} {}",
        invoice.lines.len(),
        invoice.total,
        invoice.currency
    );
    println!(
        "  rolling up the month's first {} days in one go: {:.1} s ({:.0} events/s; a \
         running region does one day at a time)",
        (last_day - start) / (24 * 3_600_000_000),
        rolled.as_secs_f64(),
        EVENTS as f64 * ((last_day - start) as f64 / (end - start) as f64) / rolled.as_secs_f64()
    );
    println!("| close | seconds | target s | ratio (lower is better) |");
    println!("| --- | --- | --- | --- |");
    for (what, t) in [
        ("at month end: rolls up the last day, writes it", first),
        ("again (from the days), median of 4", median),
    ] {
        println!(
            "| {what} | {:.3} | {:.1} | {:.2} |",
            t.as_secs_f64(),
            TARGET.as_secs_f64(),
            t.as_secs_f64() / TARGET.as_secs_f64()
        );
    }
    Ok(())
}
