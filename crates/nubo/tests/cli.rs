//! A user's session with the `nubo` CLI against a real `nubod`.

mod common;

use common::{Region, StoreKind};
use serde_json::Value;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

on_both_stores!(signup_keys_regions_and_quotas, |store: StoreKind| {
    let r = Region::start(store);
    let creds = r.json(&["signup", "--email", "me@example.com"]);
    let account = creds["account_id"].as_str().unwrap().to_string();
    assert!(creds["access_key_id"].as_str().unwrap().starts_with("AK"));
    assert_eq!(creds["secret_access_key"].as_str().unwrap().len(), 40);

    let who = r.json(&["whoami"]);
    assert_eq!(who["account"]["id"], account.as_str());
    assert_eq!(who["account"]["email"], "me@example.com");
    assert_eq!(who["scope"], "full");
    assert!(
        r.ok(&["whoami"]).contains(&account),
        "table output names the account"
    );

    let ro = r.json(&["keys", "create", "--scope", "read-only"]);
    let ro_id = ro["id"].as_str().unwrap();
    let ro_env = [
        ("NUBO_ACCESS_KEY_ID", ro_id),
        (
            "NUBO_SECRET_ACCESS_KEY",
            ro["secret_access_key"].as_str().unwrap(),
        ),
    ];
    let as_ro = r.nubo_env(&["-o", "json", "whoami"], &ro_env);
    assert!(
        as_ro.status.success(),
        "a read-only key reads: {}",
        stderr(&as_ro)
    );
    let denied = r.nubo_env(&["keys", "create"], &ro_env);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied).contains("AccessDenied"),
        "{}",
        stderr(&denied)
    );
    assert_eq!(stderr(&denied).trim().lines().count(), 1, "one-line error");

    let keys = r.json(&["keys", "list"]);
    assert_eq!(keys["items"].as_array().unwrap().len(), 2, "{keys}");
    r.ok(&["keys", "delete", ro_id]);
    let root = creds["access_key_id"].as_str().unwrap();
    let last = r.nubo(&["keys", "delete", root]);
    assert_eq!(last.status.code(), Some(1));
    assert!(stderr(&last).contains("LastAccessKey"), "{}", stderr(&last));
    let disable_last = r.nubo(&["keys", "disable", root]);
    assert!(stderr(&disable_last).contains("LastAccessKey"));
    assert_eq!(r.json(&["keys", "show", root])["status"], "active");

    let regions = r.json(&["regions", "list"]);
    assert_eq!(regions[0]["name"], "local-1");
    assert_eq!(regions[0]["api_endpoint"], r.endpoint.as_str());
    assert_eq!(regions[0]["current"], true);

    let quotas = r.json(&["quota", "show"]);
    let vcpus = quotas
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "vcpus")
        .unwrap();
    assert_eq!(vcpus["limit"], 32);
    let raised = r.json(&["quota", "raise", "--resource", "vcpus", "--to", "64"]);
    assert_eq!(raised["limit"], 64);
    let too_far = r.nubo(&["quota", "raise", "--resource", "vcpus", "--to", "100000"]);
    assert!(
        stderr(&too_far).contains("QuotaCeilingExceeded"),
        "{}",
        stderr(&too_far)
    );
    let unknown = r.nubo(&["quota", "raise", "--resource", "gpus", "--to", "1"]);
    assert!(stderr(&unknown).contains("InvalidParameter"));
});

on_both_stores!(launch_and_drive_instances, |store: StoreKind| {
    let r = Region::start_with(store, &["--sim-hosts", "3"]);
    r.ok(&["signup", "--email", "ops@example.com"]);
    assert!(r.ok(&["instance-types", "list"]).contains("n1.nano"));
    let images = r.json(&["images", "list"]);
    assert_eq!(images["items"][0]["name"], "nubo-micro");

    let launched = r.json(&common::launch_micro(&["--count", "3", "--wait"]));
    let instances = launched["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    assert!(
        instances.iter().all(|i| i["state"] == "running"),
        "{launched}"
    );
    let mut hosts: Vec<&str> = instances
        .iter()
        .map(|i| i["host_id"].as_str().unwrap())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "one launch spreads over hosts: {launched}");

    let id = instances[0]["id"].as_str().unwrap();
    assert_eq!(
        r.json(&["instance", "stop", id, "--wait"])["state"],
        "stopped"
    );
    let stopped = r.json(&["instance", "show", id]);
    assert!(
        stopped.get("host_id").is_none(),
        "a stopped instance holds no host"
    );
    assert_eq!(
        r.json(&["instance", "start", id, "--wait"])["state"],
        "running"
    );
    assert_eq!(r.json(&["instance", "reboot", id])["state"], "running");
    assert_eq!(
        r.json(&["instance", "terminate", id, "--wait"])["state"],
        "terminated"
    );
    let again = r.nubo(&["instance", "stop", id]);
    assert!(
        stderr(&again).contains("InvalidState"),
        "{}",
        stderr(&again)
    );

    let running = r.json(&["instance", "list", "--state", "running"]);
    assert_eq!(running["items"].as_array().unwrap().len(), 2, "{running}");
    let quotas = r.json(&["quota", "show"]);
    let used = |name: &str| quota_used(&quotas, name).clone();
    assert_eq!(
        used("instances"),
        2,
        "a terminated instance gives its quota back"
    );
    assert_eq!(used("memory_mib"), 128);

    let missing = r.nubo(&["instance", "show", "i-0000000000000000"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("NotFound"));

    let token = r.operator_token();
    let hosts = r.json(&["admin", "hosts", "list", "--operator-token", &token]);
    let total: u64 = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["instances"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2);
});

#[test]
fn usage_errors_completions_and_unreachable_endpoints() {
    let r = Region::start(StoreKind::Sqlite);
    let bad = r.nubo(&["instance", "launch"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "missing arguments are usage errors"
    );
    let nocreds = r.nubo(&["whoami"]);
    assert_eq!(nocreds.status.code(), Some(2));
    assert!(
        stderr(&nocreds).contains("nubo signup"),
        "{}",
        stderr(&nocreds)
    );
    let completions = r.ok(&["completions", "bash"]);
    assert!(completions.contains("_nubo"), "a bash completion script");
    let down = r.nubo(&["--endpoint", "http://127.0.0.1:9", "regions", "list"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(stderr(&down).contains("cannot reach"), "{}", stderr(&down));
}

on_both_stores!(networks_and_private_addresses, |store: StoreKind| {
    let r = Region::start(store);
    r.ok(&["signup", "--email", "net@example.com"]);
    let listed = r.json(&["network", "list"]);
    let default = &listed["items"][0];
    assert_eq!(
        (&default["name"], &default["cidr"], &default["is_default"]),
        (
            &Value::from("default"),
            &Value::from("172.31.0.0/16"),
            &Value::from(true)
        ),
        "every account has a default network: {listed}"
    );

    let backend = r.json(&[
        "network",
        "create",
        "--name",
        "backend",
        "--cidr",
        "10.20.0.0/28",
    ]);
    assert_eq!(backend["gateway"], "10.20.0.1");
    assert_eq!(r.json(&["network", "show", "backend"])["id"], backend["id"]);
    for (cidr, why) in [
        ("10.20.0.1/24", "host bits set"),
        ("8.8.8.0/24", "public range"),
        ("10.0.0.0/8", "too large"),
        ("10.0.0.0/30", "too small"),
        ("banana", "not a range"),
    ] {
        let refused = r.nubo(&["network", "create", "--name", "x", "--cidr", cidr]);
        assert!(
            stderr(&refused).contains("InvalidParameter"),
            "{cidr} ({why}): {}",
            stderr(&refused)
        );
    }
    let taken = r.nubo(&[
        "network",
        "create",
        "--name",
        "backend",
        "--cidr",
        "10.30.0.0/24",
    ]);
    assert!(stderr(&taken).contains("Conflict"), "{}", stderr(&taken));

    // A /28 has 11 addresses for instances: the 4 first and the broadcast are kept.
    let launch = |count: &str, network: Option<&str>| {
        let mut args = common::launch_micro(&["--count", count]);
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        r.nubo(&[&["-o", "json"], args.as_slice()].concat())
    };
    let out = launch("2", Some("backend"));
    assert!(out.status.success(), "{}", stderr(&out));
    let launched: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ips: Vec<String> = launched["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["network_id"], backend["id"]);
            i["private_ip"].as_str().unwrap().to_string()
        })
        .collect();
    ips.sort();
    assert_eq!(ips, ["10.20.0.4", "10.20.0.5"]);
    let full = launch("10", Some("backend"));
    assert!(
        stderr(&full).contains("no free address"),
        "{}",
        stderr(&full)
    );
    let out = launch("1", None);
    let in_default: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(in_default["instances"][0]["private_ip"], "172.31.0.4");
    let nowhere = launch("1", Some("no-such-net"));
    assert!(
        stderr(&nowhere).contains("not found"),
        "{}",
        stderr(&nowhere)
    );

    let busy = r.nubo(&["network", "delete", "backend"]);
    assert!(stderr(&busy).contains("in use"), "{}", stderr(&busy));
    let first = launched["instances"][0]["id"].as_str().unwrap();
    let second = launched["instances"][1]["id"].as_str().unwrap();
    r.ok(&["instance", "terminate", first, "--wait"]);
    let out = launch("1", Some("backend"));
    let reused: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reused["instances"][0]["private_ip"], launched["instances"][0]["private_ip"],
        "a terminated instance's address is free again"
    );
    r.ok(&["instance", "terminate", second, "--wait"]);
    let third = reused["instances"][0]["id"].as_str().unwrap();
    r.ok(&["instance", "terminate", third, "--wait"]);
    r.ok(&["network", "delete", "backend"]);
    let gone = r.nubo(&["network", "show", "backend"]);
    assert!(stderr(&gone).contains("NotFound"), "{}", stderr(&gone));
});

on_both_stores!(security_groups_and_their_rules, |store: StoreKind| {
    let r = Region::start(store);
    r.ok(&["signup", "--email", "sg@example.com"]);
    let groups = r.json(&["security-group", "list"]);
    let default = &groups["items"][0];
    assert_eq!(default["name"], "default", "{groups}");
    let rule = |direction: &str| {
        default["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["direction"] == direction)
            .unwrap()
            .clone()
    };
    let (from_itself, anywhere_out) = (&rule("ingress"), &rule("egress"));
    assert_eq!(
        (
            &from_itself["direction"],
            &from_itself["protocol"],
            &from_itself["peer_group"]
        ),
        (&Value::from("ingress"), &Value::from("all"), &default["id"]),
        "a new group lets its own members in: {default}"
    );
    assert_eq!(
        (&anywhere_out["direction"], &anywhere_out["cidr"]),
        (&Value::from("egress"), &Value::from("0.0.0.0/0")),
        "and everything out: {default}"
    );

    let web = r.json(&["security-group", "create", "web", "--description", "front"]);
    let web_id = web["id"].as_str().unwrap().to_string();
    let allow = [
        "security-group",
        "allow",
        "web",
        "--proto",
        "tcp",
        "--port",
        "80",
        "--from",
        "0.0.0.0/0",
    ];
    let shown = r.json(&allow);
    assert_eq!(shown["rules"].as_array().unwrap().len(), 3, "{shown}");
    let again = r.json(&allow);
    assert_eq!(
        again["rules"], shown["rules"],
        "the same rule is not added twice"
    );
    let http = shown["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["from_port"] == 80)
        .unwrap()
        .clone();
    assert_eq!(
        (&http["to_port"], &http["cidr"]),
        (&Value::from(80), &Value::from("0.0.0.0/0"))
    );
    let ranged = r.json(&[
        "security-group",
        "allow",
        "web",
        "--proto",
        "udp",
        "--port",
        "5000-5010",
        "--to-group",
        "default",
    ]);
    let udp = ranged["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["protocol"] == "udp")
        .unwrap()
        .clone();
    assert_eq!(
        (&udp["direction"], &udp["to_port"], &udp["peer_group"]),
        (&Value::from("egress"), &Value::from(5010), &default["id"])
    );

    r.ok(&[
        "network",
        "create",
        "--name",
        "other",
        "--cidr",
        "10.50.0.0/24",
    ]);
    let elsewhere = r.json(&["security-group", "create", "db", "--network", "other"]);
    for (args, why) in [
        (
            vec!["--proto", "icmp", "--port", "80", "--from", "0.0.0.0/0"],
            "ICMP has no ports",
        ),
        (
            vec!["--port", "90-80", "--from", "0.0.0.0/0"],
            "a backward range",
        ),
        (vec!["--port", "0", "--from", "0.0.0.0/0"], "port zero"),
        (vec!["--from", "10.0.0.1/8"], "host bits set"),
        (vec!["--from", "banana"], "not a range"),
        (vec!["--from-group", "db"], "a group of another network"),
        (vec!["--from-group", "nobody"], "no such group"),
    ] {
        let refused = r.nubo(&[&["security-group", "allow", "web"], args.as_slice()].concat());
        let said = stderr(&refused);
        assert!(
            !refused.status.success() && (said.contains("Invalid") || said.contains("NotFound")),
            "{why}: {said}"
        );
    }
    let no_peer = r.nubo(&["security-group", "allow", "web", "--port", "22"]);
    assert!(stderr(&no_peer).contains("--from"), "{}", stderr(&no_peer));
    let twice = r.nubo(&["security-group", "create", "web"]);
    assert!(stderr(&twice).contains("Conflict"), "{}", stderr(&twice));
    // The same name in another network is another group; the name alone is ambiguous.
    r.ok(&["security-group", "create", "web", "--network", "other"]);
    let ambiguous = r.nubo(&["security-group", "show", "web"]);
    assert!(
        stderr(&ambiguous).contains("give the group's id"),
        "{}",
        stderr(&ambiguous)
    );

    let launched = r.json(&common::launch_micro(&[
        "--security-group",
        &web_id,
        "--security-group",
        "default",
    ]));
    let id = launched["instances"][0]["id"].as_str().unwrap().to_string();
    let mut expected = vec![web_id.clone(), default["id"].as_str().unwrap().to_string()];
    expected.sort();
    let member_of = r.json(&["instance", "security-groups", &id]);
    assert_eq!(member_of["security_groups"], Value::from(expected));
    let mismatched = r.nubo(&common::launch_micro(&[
        "--security-group",
        elsewhere["id"].as_str().unwrap(),
    ]));
    assert!(
        stderr(&mismatched).contains("is of network"),
        "{}",
        stderr(&mismatched)
    );

    let busy = r.nubo(&["security-group", "delete", &web_id]);
    assert!(stderr(&busy).contains("in use"), "{}", stderr(&busy));
    let moved = r.json(&["instance", "security-groups", &id, "--set", "default"]);
    assert_eq!(
        moved["security_groups"],
        Value::from(vec![default["id"].clone()])
    );
    r.ok(&[
        "security-group",
        "revoke",
        &web_id,
        http["id"].as_str().unwrap(),
    ]);
    let fewer = r.json(&["security-group", "show", &web_id]);
    assert!(
        fewer["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|rule| rule["id"] != http["id"]),
        "{fewer}"
    );
    let unknown = r.nubo(&["security-group", "revoke", &web_id, "sgr-0000000000000000"]);
    assert!(
        stderr(&unknown).contains("NotFound"),
        "{}",
        stderr(&unknown)
    );
    r.ok(&["security-group", "delete", &web_id]);
    r.ok(&["instance", "terminate", &id, "--wait"]);
});

#[test]
fn the_price_list_is_public_and_prices_the_instance_types() {
    let r = Region::start(StoreKind::Sqlite);
    let lists = r.json(&["pricing", "list"]);
    let now = &lists[0];
    assert_eq!(now["currency"], "USD", "{lists}");
    let types = r.json(&["instance-types", "list"]);
    for t in types.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert_eq!(
            now["instance_second_nanos"][name], t["price_per_second_nanos"],
            "{name}"
        );
    }
    assert!(now["volume_gib_month_nanos"].as_u64().unwrap() > 0);
    let table = r.ok(&["pricing", "list"]);
    assert!(
        table.contains("volume storage") && table.contains("USD per GiB-month"),
        "{table}"
    );
}

#[test]
fn signup_saves_a_new_profile_and_never_replaces_one_without_force() {
    let r = Region::start(StoreKind::Sqlite);
    let config = r.dir.join("config/nubo/config.toml");
    let first = r.json(&["signup", "--email", "one@example.com"]);
    let one = first["account_id"].as_str().unwrap();
    let second = r.nubo(&["signup", "--email", "two@example.com"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let said = stderr(&second);
    let two = String::from_utf8_lossy(&second.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("account_id:").map(|v| v.trim().to_string()))
        .unwrap();
    assert!(
        said.contains(&format!("--profile {two}")) && said.contains("NUBO_PROFILE"),
        "says how to select it: {said}"
    );
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.contains(first["secret_access_key"].as_str().unwrap()),
        "the first account's secret is kept: {saved}"
    );

    assert_eq!(
        r.json(&["whoami"])["account"]["id"],
        one,
        "the first is the default"
    );
    assert_eq!(
        r.json(&["--profile", &two, "whoami"])["account"]["id"],
        two.as_str()
    );
    let by_env = r.nubo_env(&["whoami"], &[("NUBO_PROFILE", &two)]);
    let by_env = String::from_utf8_lossy(&by_env.stdout).into_owned();
    assert!(
        by_env.contains(&two) && by_env.contains("named by NUBO_PROFILE"),
        "{by_env}"
    );

    let work = r.json(&["--profile", "work", "signup", "--email", "w@example.com"]);
    let again = r.nubo(&["--profile", "work", "signup", "--email", "w2@example.com"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(again.stdout.is_empty(), "no account was made");
    let who = r.json(&["--profile", "work", "whoami"]);
    assert_eq!(who["account"]["id"], work["account_id"]);
    let replaced = r.json(&[
        "--profile",
        "work",
        "signup",
        "--email",
        "w3@example.com",
        "--force",
    ]);
    let who = r.json(&["--profile", "work", "whoami"]);
    assert_eq!(who["account"]["id"], replaced["account_id"]);

    // configure keeps a profile's key unless told to replace it.
    let other_key = r.json(&["--profile", &two, "keys", "create"]);
    let refused = r.nubo(&[
        "--profile",
        "work",
        "configure",
        "--access-key-id",
        other_key["id"].as_str().unwrap(),
        "--secret-access-key",
        other_key["secret_access_key"].as_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));

    r.ok(&["profile", "use", &two]);
    assert_eq!(r.json(&["whoami"])["account"]["id"], two.as_str());
    let listed = r.json(&["profile", "list"]);
    let names: Vec<(&str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["default"].as_bool().unwrap()))
        .collect();
    let mut expected = vec![(one, false), (two.as_str(), true), ("work", false)];
    expected.sort();
    assert_eq!(names, expected);
    assert!(!listed.to_string().contains("secret"), "{listed}");
    let unknown = r.nubo(&["--profile", "nope", "whoami"]);
    assert!(
        stderr(&unknown).contains("work") && stderr(&unknown).contains("nope"),
        "names the profiles it has: {}",
        stderr(&unknown)
    );
}

on_both_stores!(
    instance_quotas_count_only_instances_that_hold_a_host,
    |store: StoreKind| {
        let r = Region::start(store);
        r.ok(&["signup", "--email", "quota@example.com"]);
        let used = || -> (u64, u64, u64) {
            let quotas = r.json(&["quota", "show"]);
            let of = |name: &str| quota_used(&quotas, name).as_u64().unwrap();
            (of("instances"), of("vcpus"), of("memory_mib"))
        };
        let launch = |count: &str| {
            r.json(&common::launch_micro(&["--count", count, "--wait"]))["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        // The README's launches, in its order, fit the default quotas.
        let first = launch("1").remove(0);
        let five = launch("5");
        assert_eq!(used(), (6, 6, 6 * 64));

        r.ok(&["instance", "stop", &first, "--wait"]);
        assert_eq!(used(), (5, 5, 5 * 64), "a stopped instance holds no quota");
        let more = launch("15");
        assert_eq!(used(), (20, 20, 20 * 64), "the default limit is 20");
        let refused = r.nubo(&["instance", "start", &first]);
        assert!(
            stderr(&refused).contains("QuotaExceeded") && stderr(&refused).contains("quota raise"),
            "starting takes quota again: {}",
            stderr(&refused)
        );
        assert_eq!(r.json(&["instance", "show", &first])["state"], "stopped");
        r.ok(&["instance", "terminate", &first, "--wait"]);
        assert_eq!(used(), (20, 20, 20 * 64), "nothing is given back twice");
        r.ok(&["instance", "terminate", &five[0], "--wait"]);
        assert_eq!(used(), (19, 19, 19 * 64));
        r.ok(&["instance", "stop", &more[0], "--wait"]);
        launch("2");
        let refused = r.nubo(&["instance", "start", &more[0]]);
        assert!(
            stderr(&refused).contains("QuotaExceeded"),
            "{}",
            stderr(&refused)
        );
        r.ok(&["quota", "raise", "--resource", "instances", "--to", "21"]);
        assert_eq!(
            r.json(&["instance", "start", &more[0], "--wait"])["state"],
            "running"
        );
        assert_eq!(used(), (21, 21, 21 * 64));
    }
);

/// What `nubo quota show` says is used of `resource`.
fn quota_used<'a>(quotas: &'a Value, resource: &str) -> &'a Value {
    &quotas
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == resource)
        .unwrap()["used"]
}
