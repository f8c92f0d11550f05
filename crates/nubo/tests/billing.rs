//! Billing end to end, on a region whose clock a file sets (`--clock-file`):
//! the test moves time by seconds, hours and months, so runs of 90 s, price
//! changes, month ends, invoices and hourly commitments are exact. Totals are
//! checked against an independent computation from the store's events, which
//! samples every second instead of cutting intervals.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::{Creds, Region, StoreKind};
use nubo_store::events::Event;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The region's time, in whole seconds since the epoch.
struct TestClock {
    path: PathBuf,
    now: i64,
}

impl TestClock {
    fn new(at: &str) -> TestClock {
        let path =
            std::env::temp_dir().join(format!("nubo-clock-{:016x}", nubo_store::ids::random_u64()));
        let now = OffsetDateTime::parse(at, &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let clock = TestClock { path, now };
        clock.write();
        clock
    }

    fn write(&self) {
        let text = OffsetDateTime::from_unix_timestamp(self.now)
            .unwrap()
            .format(&Rfc3339)
            .unwrap();
        // Renamed into place, so that the region never reads half a time.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn advance(&mut self, seconds: i64) {
        self.now += seconds;
        self.write();
    }

    fn set(&mut self, at: &str) {
        self.now = OffsetDateTime::parse(at, &Rfc3339)
            .unwrap()
            .unix_timestamp();
        self.write();
    }
}

/// A sim region on the test clock with this config file.
fn region(store: StoreKind, clock: &TestClock, config: &str) -> Region {
    let file = clock.path.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    Region::start_with(
        store,
        &[
            "--clock-file",
            clock.path.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ],
    )
}

fn ok(r: &Region, c: &Creds, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = r.signed(c, method, path, body.map(|b| b.to_string()).as_deref());
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn launch(r: &Region, c: &Creds, instance_type: &str) -> String {
    let body = json!({"image": "nubo-micro", "instance_type": instance_type});
    let v = ok(r, c, "POST", "/v1/instances", Some(body));
    let id = v["instances"][0]["id"].as_str().unwrap().to_string();
    r.wait_state(c, &id, "running");
    id
}

fn act(r: &Region, c: &Creds, id: &str, action: &str, state: &str) {
    ok(r, c, "POST", &format!("/v1/instances/{id}/{action}"), None);
    r.wait_state(c, id, state);
}

/// The account's events, read from the store of the running region.
fn events_of(r: &Region, account_id: &str) -> Vec<Event> {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let url = match r.database_url() {
            sqlite if sqlite.starts_with("sqlite:") => format!("{sqlite}?mode=ro"),
            other => other,
        };
        let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
        let events =
            nubo_store::events::of_account(&mut c, account_id, &["instance", "volume"], i64::MAX)
                .await
                .unwrap();
        c.close().await.unwrap();
        events
    })
}

/// The prices, in nanos, of what these tests use: per second of `n1.small`,
/// and per GiB-month of volume, in effect at a second.
struct Prices(Vec<(i64, u64, u64)>);

impl Prices {
    fn fetch(r: &Region) -> Prices {
        let (_, lists) = r.curl("GET", "/v1/pricing", None, &[]).unwrap();
        Prices(
            lists
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let from =
                        OffsetDateTime::parse(l["effective_from"].as_str().unwrap(), &Rfc3339)
                            .unwrap()
                            .unix_timestamp();
                    (
                        from,
                        l["instance_second_nanos"]["n1.small"].as_u64().unwrap(),
                        l["volume_gib_month_nanos"].as_u64().unwrap(),
                    )
                })
                .collect(),
        )
    }

    fn at(&self, second: i64) -> (u64, u64) {
        let (_, small, volume) = self
            .0
            .iter()
            .rev()
            .find(|(from, ..)| *from <= second)
            .unwrap();
        (*small, *volume)
    }
}

/// What the events cost in `[from, to)` (seconds), worked out by sampling
/// each second: a running `n1.small` costs its price per second (and a run
/// shorter than a minute the rest of the minute, when it ends), a volume its
/// size's share of a 30-day month. In nanos, unrounded.
fn independent_cost(events: &[Event], prices: &Prices, from: i64, to: i64) -> f64 {
    let mut by_resource: std::collections::BTreeMap<&str, Vec<&Event>> = Default::default();
    for e in events.iter().filter(|e| e.action.starts_with("state.")) {
        by_resource.entry(&e.resource_id).or_default().push(e);
    }
    let mut total = 0.0;
    for events in by_resource.values() {
        let state_at = |s: i64| events.iter().rev().find(|e| e.at / 1_000_000 <= s);
        for s in from..to {
            let Some(e) = state_at(s) else { continue };
            let (small, volume) = prices.at(s);
            match (e.resource_type.as_str(), &e.action[6..]) {
                ("instance", "running") => total += small as f64,
                ("volume", state) if state != "deleted" => {
                    let gib = e.data["size_gib"].as_f64().unwrap();
                    total += gib * volume as f64 / (30.0 * 86_400.0);
                }
                _ => {}
            }
        }
        for (i, e) in events.iter().enumerate() {
            let Some(next) = events.get(i + 1) else {
                continue;
            };
            let (start, end) = (e.at / 1_000_000, next.at / 1_000_000);
            if e.action == "state.running" && end - start < 60 && (from..to).contains(&end) {
                total += (60 - (end - start)) as f64 * prices.at(end).0 as f64;
            }
        }
    }
    total
}

fn cost(r: &Region, c: &Creds, query: &str) -> Value {
    ok(r, c, "GET", &format!("/v1/billing/cost{query}"), None)
}

fn amount_of(report: &Value, group: &str, meter: &str) -> i64 {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["group"] == group && l["meter"] == meter)
        .map(|l| l["amount_nanos"].as_i64().unwrap())
        .sum()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(30), &mut done);
}

const CONFIG: &str = r#"
[billing]
check_seconds = 1
close_after_seconds = 60

[[prices]]
effective_from = "2026-11-15T00:00:00Z"
instance_second = { "n1.small" = 0.00002 }
volume_gib_month = 0.12
"#;

on_both_stores!(
    a_month_is_metered_priced_and_closed_exactly,
    |store: StoreKind| {
        let mut clock = TestClock::new("2026-11-14T23:58:00Z");
        let mut r = region(store, &clock, CONFIG);
        let prices = Prices::fetch(&r);
        let (old, _) = prices.at(clock.now);
        assert_eq!(prices.at(clock.now + 120).0, 20_000, "the change is listed");
        let c = r.signup("biller@example.com");
        let idle = r.signup("idle@example.com");

        // 90 s running: 90 s billed. (A report runs to now, and what happens
        // at its very end belongs to the next moment: look a second later.)
        let vm = launch(&r, &c, "n1.small");
        clock.advance(90);
        act(&r, &c, &vm, "stop", "stopped");
        clock.advance(1);
        let usage = ok(&r, &c, "GET", "/v1/billing/usage", None);
        assert_eq!(usage["lines"][0]["quantity"], 90.0, "{usage}");
        // 10 s running: 60 s billed; stopped time is free.
        act(&r, &c, &vm, "start", "running");
        clock.advance(10);
        act(&r, &c, &vm, "stop", "stopped");
        clock.advance(1);
        let usage = ok(&r, &c, "GET", "/v1/billing/usage", None);
        assert_eq!(usage["lines"][0]["quantity"], 150.0, "{usage}");
        let so_far = cost(&r, &c, "");
        assert_eq!(so_far["total_nanos"], (150 * old) as i64, "{so_far}");

        // At 23:59:42, a volume and a run across the price change at midnight.
        let vol = ok(
            &r,
            &c,
            "POST",
            "/v1/volumes",
            Some(json!({"size_gib": 10, "tags": {"team": "db"}})),
        );
        let vol = vol["id"].as_str().unwrap().to_string();
        r.wait_for(&c, &format!("/v1/volumes/{vol}"), "available");
        act(&r, &c, &vm, "start", "running");
        clock.advance(100);
        let running = cost(&r, &c, "");
        assert_eq!(
            amount_of(&running, &vm, "instance:n1.small"),
            (168 * old + 82 * 20_000) as i64,
            "{running}"
        );
        // The forecast takes what runs and what is stored to the month's end.
        let month_end = OffsetDateTime::parse("2026-12-01T00:00:00Z", &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let left = (month_end - clock.now) as f64;
        let rate = 20_000.0 + 10.0 * 120_000_000.0 / (30.0 * 86_400.0);
        let forecast = running["forecast"]["total_nanos"].as_i64().unwrap() as f64;
        let expected = running["total_nanos"].as_i64().unwrap() as f64 + left * rate;
        assert!(
            (forecast - expected).abs() < 10.0,
            "{forecast} vs {expected}"
        );
        let by_service = cost(&r, &c, "?by=service");
        let services: Vec<&str> = by_service["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["group"].as_str().unwrap())
            .collect();
        assert_eq!(services, ["block-storage", "compute"], "{by_service}");
        let by_team = cost(&r, &c, "?by=tag:team");
        assert!(
            amount_of(&by_team, "team=db", "volume-storage") > 0,
            "{by_team}"
        );
        assert!(
            amount_of(&by_team, "(no team)", "instance:n1.small") > 0,
            "{by_team}"
        );

        // A crash in the middle: the store's events carry on where they were.
        r.kill9();
        clock.advance(3600);
        r.restart();
        clock.advance(1800);
        // A simulated host forgets its VMs with nubod: the restarted region
        // fails the instance once it sees that, which may be before or after
        // the stop is asked for.
        let vm_now = ok(&r, &c, "GET", &format!("/v1/instances/{vm}"), None);
        if vm_now["state"] == "running" {
            let stop = format!("/v1/instances/{vm}/stop");
            match r.signed(&c, "POST", &stop, None) {
                (200, _) => {
                    r.wait_state(&c, &vm, "stopped");
                }
                (409, refused) => {
                    assert_eq!(refused["code"], "InvalidState", "{refused}");
                    r.wait_state(&c, &vm, "failed");
                }
                other => panic!("POST {stop}: {other:?}"),
            }
        }
        ok(&r, &c, "DELETE", &format!("/v1/volumes/{vol}"), None);
        wait_until("the volume is deleted", || {
            r.signed(&c, "GET", &format!("/v1/volumes/{vol}"), None).0 == 404
        });
        let events = events_of(&r, &c.account_id);
        let from = OffsetDateTime::parse("2026-11-01T00:00:00Z", &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let now = cost(&r, &c, "");
        let independent = independent_cost(&events, &prices, from, clock.now);
        let lines = now["lines"].as_array().unwrap().len() as f64;
        assert!(
            (now["total_nanos"].as_i64().unwrap() as f64 - independent).abs() <= lines,
            "{now} vs {independent}"
        );

        // The month ends; it is open until it closes a minute later.
        clock.set("2026-12-01T00:00:30Z");
        let (_, early) = r.signed(&c, "GET", "/v1/billing/invoices/2026-11", None);
        assert_eq!(early["status"], "open", "{early}");
        clock.set("2026-12-01T00:01:30Z");
        let path = "/v1/billing/invoices/2026-11";
        wait_until("November closes", || {
            r.signed(&c, "GET", path, None).1["status"] == "closed"
        });
        let invoice = ok(&r, &c, "GET", path, None);
        let lines = invoice["lines"].as_array().unwrap();
        let sum: i64 = lines
            .iter()
            .map(|l| l["amount_nanos"].as_i64().unwrap())
            .sum();
        assert_eq!(invoice["total_nanos"], sum, "the lines add up: {invoice}");
        let independent = independent_cost(&events, &prices, from, month_end);
        assert!(
            (sum as f64 - independent).abs() <= lines.len() as f64,
            "{invoice} vs {independent}"
        );
        assert!(
            lines.iter().any(|l| l["unit_price"] == "0.000020000"),
            "{invoice}"
        );
        // CSV: a row per line and the total.
        let (status, _, csv) = r
            .http("GET", &format!("{path}?format=csv"), None, &[])
            .unwrap();
        assert_eq!(status, 401, "signed like any other call");
        let _ = csv;
        let table = r.nubo_env(
            &["-o", "csv", "billing", "invoice", "--month", "2026-11"],
            &[
                ("NUBO_ACCESS_KEY_ID", &c.key_id),
                ("NUBO_SECRET_ACCESS_KEY", &c.secret),
            ],
        );
        let csv = String::from_utf8(table.stdout).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), lines.len() + 2, "{csv}");
        assert!(rows[0].starts_with("month,service,"), "{csv}");
        assert!(
            rows.last()
                .unwrap()
                .contains(invoice["total"].as_str().unwrap()),
            "{csv}"
        );
        // An account that used nothing owes nothing.
        let nothing = ok(&r, &idle, "GET", path, None);
        assert_eq!(
            (
                &nothing["status"],
                &nothing["total_nanos"],
                nothing["lines"].as_array().map(Vec::len)
            ),
            (&json!("closed"), &json!(0), Some(0))
        );

        // Closing again gives the identical invoice, which stays as it was.
        let token = format!("Bearer {}", r.operator_token());
        let (s, again) = r
            .curl(
                "POST",
                "/v1/admin/billing/close",
                Some(&json!({"month": "2026-11"}).to_string()),
                &[("authorization", &token)],
            )
            .unwrap();
        assert_eq!(s, 200, "{again}");
        assert_eq!(
            (again["closed"].as_u64(), again["different"].as_u64()),
            (Some(0), Some(0)),
            "{again}"
        );
        assert!(again["identical"].as_u64().unwrap() >= 2, "{again}");
        assert_eq!(ok(&r, &c, "GET", path, None), invoice);
        let (s, v) = r
            .curl(
                "POST",
                "/v1/admin/billing/close",
                Some(&json!({"month": "2026-12"}).to_string()),
                &[("authorization", &token)],
            )
            .unwrap();
        assert_eq!((s, v["code"].as_str()), (409, Some("InvalidState")), "{v}");
    }
);

/// A loopback webhook: each POST's JSON body, answered 200.
fn webhook() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20).flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

on_both_stores!(
    commitments_cover_hours_and_budgets_alert_once,
    |store: StoreKind| {
        let mut clock = TestClock::new("2026-11-10T00:00:00Z");
        let r = region(store, &clock, "[billing]\ncheck_seconds = 1\n");
        let p = Prices::fetch(&r).at(clock.now).0 as i64;
        let c = r.signup("committed@example.com");
        // Enough for one n1.small an hour at the 1-year discount (25%).
        let per_hour = 2700 * p;
        let commitment = ok(
            &r,
            &c,
            "POST",
            "/v1/billing/commitments",
            Some(json!({"per_hour": per_hour as f64 / 1e9, "term": "1y"})),
        );
        assert_eq!(
            (
                commitment["discount_percent"].as_f64(),
                commitment["per_hour_nanos"].as_i64()
            ),
            (Some(25.0), Some(per_hour)),
            "{commitment}"
        );
        for bad in [
            json!({"per_hour": 0, "term": "1y"}),
            json!({"per_hour": 1, "term": "2w"}),
        ] {
            let (s, v) = r.signed(
                &c,
                "POST",
                "/v1/billing/commitments",
                Some(&bad.to_string()),
            );
            assert_eq!(s, 400, "{bad}: {v}");
        }
        let (hook, alerts) = webhook();
        let monthly = 11_700 * p;
        let budget = ok(
            &r,
            &c,
            "POST",
            "/v1/billing/budgets",
            Some(
                json!({"name": "team", "monthly": monthly as f64 / 1e9, "alert_at": [100, 50], "webhook_url": hook}),
            ),
        );
        assert_eq!(budget["alert_at"], json!([50, 100]));
        let (s, v) = r.signed(
            &c,
            "POST",
            "/v1/billing/budgets",
            Some(&json!({"name": "team", "monthly": 1}).to_string()),
        );
        assert_eq!(s, 409, "{v}");
        let (s, v) = r.signed(
            &c,
            "POST",
            "/v1/billing/budgets",
            Some(
                &json!({"name": "x", "monthly": 1, "webhook_url": "file:///etc/passwd"})
                    .to_string(),
            ),
        );
        assert_eq!(s, 400, "{v}");

        // Two instances the first hour, one the second, none the third.
        let a = launch(&r, &c, "n1.small");
        let b = launch(&r, &c, "n1.small");
        clock.advance(3600);
        act(&r, &c, &b, "stop", "stopped");
        // 6300p of 11700p: past 50%.
        let first = alerts
            .recv_timeout(Duration::from_secs(30))
            .expect("the 50% alert is posted");
        assert_eq!(
            (
                first["threshold_percent"].as_u64(),
                first["budget_name"].as_str()
            ),
            (Some(50), Some("team")),
            "{first}"
        );
        clock.advance(3600);
        act(&r, &c, &a, "stop", "stopped");
        clock.advance(3600);
        let second = alerts
            .recv_timeout(Duration::from_secs(30))
            .expect("the 100% alert is posted");
        assert_eq!(second["threshold_percent"], 100, "{second}");

        let report = cost(&r, &c, "?by=service");
        assert_eq!(
            amount_of(&report, "compute", "instance:n1.small"),
            3 * 3600 * p
        );
        assert_eq!(
            amount_of(&report, "commitments", "commitment-coverage"),
            -2 * 3600 * p,
            "{report}"
        );
        assert_eq!(
            amount_of(&report, "commitments", "commitment-fee"),
            3 * per_hour
        );
        assert_eq!(report["total_nanos"], 3600 * p + 3 * per_hour, "{report}");
        // Nothing runs, but the commitment is owed to the month's end.
        let hours_left = (20 * 24 + 21) as i64;
        assert_eq!(
            report["forecast"]["total_nanos"],
            3600 * p + (3 + hours_left) * per_hour,
            "{report}"
        );

        // Each threshold alerts once, however many cycles pass.
        std::thread::sleep(Duration::from_secs(3));
        let listed = ok(&r, &c, "GET", "/v1/billing/alerts", None);
        let listed: Vec<(u64, &str)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["threshold_percent"].as_u64().unwrap(),
                    a["webhook"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, [(100, "delivered"), (50, "delivered")]);
        assert!(alerts.try_recv().is_err(), "no alert twice");

        // Another account sees none of it and owes nothing.
        let other = r.signup("uncommitted@example.com");
        let theirs = cost(&r, &other, "");
        assert_eq!(
            (&theirs["total_nanos"], &theirs["forecast"]["total_nanos"]),
            (&json!(0), &json!(0)),
            "{theirs}"
        );
        assert_eq!(ok(&r, &other, "GET", "/v1/billing/alerts", None), json!([]));
        let (s, _) = r.signed(
            &other,
            "GET",
            &format!(
                "/v1/billing/commitments/{}",
                commitment["id"].as_str().unwrap()
            ),
            None,
        );
        assert_eq!(s, 404);
    }
);
