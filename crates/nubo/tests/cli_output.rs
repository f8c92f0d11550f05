//! What the `nubo` CLI prints, for every command: `-o json` is the API's own
//! answer, a closed pipe ends it quietly, `--wait` shows progress only to
//! people at a terminal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use common::{Region, StoreKind};
use serde_json::Value;

/// Every command of the CLI (`instance launch`), from its own definition.
fn commands() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut BTreeSet<String>) {
        let subs: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.insert(path.trim().to_string());
        }
        for sub in subs {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&nubo_cli::Cli::command(), "", &mut out);
    out
}

/// One API exchange, as `--debug` tells it.
#[derive(Debug)]
struct Answer {
    method: String,
    url: String,
    status: u16,
    body: String,
}

fn answers(stderr: &str) -> Vec<Answer> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("debug: "))
        .map(|line| {
            let (request, rest) = line.split_once(" answered ").expect("an exchange");
            let (method, url) = request.split_once(' ').expect("method and URL");
            let (status, body) = rest
                .split_once(": ")
                .unwrap_or((rest.trim_end_matches(':'), ""));
            Answer {
                method: method.into(),
                url: url.into(),
                status: status.parse().expect("a status"),
                body: body.into(),
            }
        })
        .collect()
}

/// How a command's JSON output relates to the API's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The body of the last answer, unchanged.
    Answer,
    /// The answer has no body: nothing is printed.
    NoBody,
    /// No API call: the command prints what it reads locally.
    Local,
    /// The API refuses it on simulated hosts; the command prints nothing.
    Refused,
    /// The answer (an archive) is saved to a file; the command prints the
    /// file and its size.
    Saved,
}

/// Runs commands with `-o json --debug`, checks each against its rule and
/// remembers which commands ran.
struct Walk<'a> {
    r: &'a Region,
    commands: BTreeSet<String>,
    ran: BTreeSet<String>,
}

impl Walk<'_> {
    fn run(&mut self, rule: Rule, args: &[&str]) -> Value {
        let command = (1..=args.len())
            .rev()
            .map(|n| args[..n].join(" "))
            .find(|c| self.commands.contains(c))
            .unwrap_or_else(|| panic!("{args:?} is no command of the CLI"));
        self.ran.insert(command);
        let out = self.r.nubo(&[&["-o", "json", "--debug"], args].concat());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let answers = answers(&stderr);
        if rule == Rule::Refused {
            assert!(!out.status.success(), "{args:?} was refused before");
            assert_eq!(stdout, "", "{args:?}");
            assert!(answers.last().is_some_and(|a| a.status >= 400), "{stderr}");
            return Value::Null;
        }
        assert!(out.status.success(), "{args:?}: {stderr}\n{}", self.r.log());
        match rule {
            Rule::Answer => {
                let last = answers
                    .last()
                    .unwrap_or_else(|| panic!("{args:?}: {stderr}"));
                assert!(last.status < 300, "{args:?}: {last:?}");
                let answered: Value = serde_json::from_str(&last.body).unwrap();
                let printed: Value = serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("{args:?} prints JSON: {e}: {stdout}"));
                assert_eq!(
                    printed, answered,
                    "{args:?} prints the answer of {} {}",
                    last.method, last.url
                );
                printed
            }
            Rule::NoBody => {
                let last = answers
                    .last()
                    .unwrap_or_else(|| panic!("{args:?}: {stderr}"));
                assert_eq!((last.status, last.body.as_str()), (204, ""), "{args:?}");
                assert_eq!(stdout, "", "{args:?} prints nothing");
                Value::Null
            }
            Rule::Local => {
                assert!(answers.is_empty(), "{args:?} calls no API: {stderr}");
                Value::String(stdout)
            }
            Rule::Saved => {
                let printed: Value = serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("{args:?} prints JSON: {e}: {stdout}"));
                let file = printed["file"].as_str().unwrap_or_default();
                let size = std::fs::metadata(file).map(|m| m.len()).ok();
                assert!(size > Some(0), "{args:?}: {printed}");
                assert_eq!(printed["bytes"].as_u64(), size, "{args:?}: {printed}");
                printed
            }
            Rule::Refused => unreachable!(),
        }
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {v}"))
        .to_string()
}

/// Walks every command of the CLI on a simulated region and checks that
/// `-o json` prints exactly what the API answered; a command this walk does
/// not run fails it, so a new command cannot skip the rule.
#[test]
fn json_output_is_the_api_answer_for_every_command() {
    use Rule::{Answer, Local, NoBody, Refused, Saved};
    let r = Region::start(StoreKind::Sqlite);
    let mut w = Walk {
        r: &r,
        commands: commands(),
        ran: BTreeSet::new(),
    };
    let dir = r.dir.join("walk");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };

    let created = w.run(Answer, &["signup", "--email", "walk@example.com"]);
    let account = created["account_id"].as_str().unwrap().to_string();
    let (key, secret) = (
        created["access_key_id"].as_str().unwrap().to_string(),
        created["secret_access_key"].as_str().unwrap().to_string(),
    );
    w.run(
        Answer,
        &[
            "configure",
            "--access-key-id",
            &key,
            "--secret-access-key",
            &secret,
        ],
    );
    w.run(Answer, &["whoami"]);
    w.run(Local, &["profile", "list"]);
    let exported = w.run(Local, &["profile", "export"]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ] {
        assert!(
            exported.as_str().unwrap().contains(&format!("\"{var}\"")),
            "{exported}"
        );
    }
    assert!(
        exported
            .as_str()
            .unwrap()
            .contains(&format!("\"{}\"", r.s3_endpoint)),
        "{exported}"
    );
    w.run(Local, &["profile", "use", &account]);
    w.run(Local, &["completions", "bash"]);

    let ro = w.run(Answer, &["keys", "create", "--scope", "read-only"]);
    let ro = ro["id"].as_str().unwrap().to_string();
    w.run(Answer, &["keys", "list"]);
    w.run(Answer, &["keys", "show", &ro]);
    w.run(Answer, &["keys", "disable", &ro]);
    w.run(Answer, &["keys", "enable", &ro]);
    w.run(NoBody, &["keys", "delete", &ro]);

    w.run(Answer, &["regions", "list"]);
    w.run(Answer, &["quota", "show"]);
    w.run(
        Answer,
        &["quota", "raise", "--resource", "vcpus", "--to", "64"],
    );
    w.run(Answer, &["instance-types", "list"]);
    w.run(Answer, &["pricing", "list"]);
    w.run(Answer, &["images", "list"]);
    w.run(Answer, &["images", "show", "nubo-micro"]);
    let kernel = file("vmlinux", "not really a kernel");
    let image = w.run(
        Answer,
        &["images", "register", "--name", "mine", "--kernel", &kernel],
    );
    w.run(NoBody, &["images", "delete", &id(&image)]);

    let pair = w.run(Answer, &["key-pairs", "create", "one"]);
    let public = file("one.pub", pair["public_key"].as_str().unwrap());
    w.run(
        Answer,
        &["key-pairs", "import", "two", "--public-key-file", &public],
    );
    w.run(Answer, &["key-pairs", "list"]);
    w.run(Answer, &["key-pairs", "show", "two"]);
    w.run(NoBody, &["key-pairs", "delete", "two"]);

    w.run(Answer, &["network", "list"]);
    w.run(
        Answer,
        &[
            "network",
            "create",
            "--name",
            "backend",
            "--cidr",
            "10.20.0.0/24",
        ],
    );
    w.run(Answer, &["network", "show", "backend"]);
    w.run(Answer, &["security-group", "list"]);
    w.run(Answer, &["security-group", "create", "web"]);
    w.run(Answer, &["security-group", "show", "web"]);
    let allowed = w.run(
        Answer,
        &[
            "security-group",
            "allow",
            "web",
            "--port",
            "80",
            "--from",
            "0.0.0.0/0",
        ],
    );
    let rule = allowed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["from_port"] == 80)
        .map(id)
        .unwrap();
    w.run(NoBody, &["security-group", "revoke", "web", &rule]);

    let launched = w.run(Answer, &common::launch_micro(&["--count", "2"]));
    let i = id(&launched["instances"][0]);
    w.run(Answer, &["instance", "list"]);
    w.run(Answer, &["instance", "show", &i]);
    w.run(Answer, &["instance", "stop", &i, "--wait"]);
    w.run(Answer, &["instance", "start", &i, "--wait"]);
    w.run(Answer, &["instance", "reboot", &i, "--wait"]);
    w.run(Answer, &["instance", "console", &i]);
    w.run(Answer, &["instance", "ports", &i]);
    // Simulated hosts carry no traffic; guests.rs publishes a real guest's port.
    w.run(Refused, &["instance", "publish", &i, "--port", "22"]);
    w.run(Answer, &["instance", "security-groups", &i]);
    w.run(Answer, &["instance", "security-groups", &i, "--set", "web"]);

    let v = id(&w.run(Answer, &["volume", "create", "--size", "1", "--wait"]));
    w.run(Answer, &["volume", "list"]);
    w.run(Answer, &["volume", "show", &v]);
    w.run(
        Answer,
        &["volume", "attach", &v, "--instance", &i, "--wait"],
    );
    w.run(Answer, &["volume", "detach", &v, "--wait"]);
    w.run(Answer, &["volume", "resize", &v, "--size", "2", "--wait"]);
    w.run(Answer, &["volume", "tag", &v, "team=walk"]);
    let s = id(&w.run(Answer, &["snapshot", "create", &v, "--wait"]));
    w.run(Answer, &["snapshot", "list"]);
    w.run(Answer, &["snapshot", "show", &s]);
    let copy = id(&w.run(
        Answer,
        &["volume", "create", "--from-snapshot", &s, "--wait"],
    ));
    w.run(Answer, &["snapshot", "delete", &s]);
    w.run(Answer, &["volume", "delete", &copy]);
    w.run(Answer, &["volume", "delete", &v]);
    w.run(Answer, &["instance", "terminate", &i, "--wait"]);
    let other = id(&launched["instances"][1]);
    w.run(Answer, &["instance", "terminate", &other, "--wait"]);
    w.run(NoBody, &["network", "delete", "backend"]);
    w.run(NoBody, &["security-group", "delete", "web"]);

    w.run(Answer, &["billing", "usage", "--by", "service"]);
    w.run(Answer, &["billing", "cost"]);
    w.run(Answer, &["billing", "invoice"]);
    w.run(Answer, &["billing", "invoices"]);
    let c = w.run(
        Answer,
        &[
            "billing",
            "commitment",
            "create",
            "--per-hour",
            "0.5",
            "--term",
            "1y",
        ],
    );
    w.run(Answer, &["billing", "commitment", "list"]);
    w.run(Answer, &["billing", "commitment", "show", &id(&c)]);
    let b = w.run(Answer, &["billing", "budget", "create", "--monthly", "20"]);
    w.run(Answer, &["billing", "budget", "list"]);
    w.run(Answer, &["billing", "budget", "show", &id(&b)]);
    w.run(NoBody, &["billing", "budget", "delete", &id(&b)]);
    w.run(Answer, &["billing", "budget", "alerts"]);

    w.run(Answer, &["bucket", "create", "walk-bucket"]);
    w.run(Answer, &["bucket", "list"]);
    w.run(NoBody, &["bucket", "delete", "walk-bucket"]);

    let token = r.operator_token();
    w.run(
        Answer,
        &["admin", "hosts", "list", "--operator-token", &token],
    );
    w.run(
        Answer,
        &[
            "admin",
            "billing",
            "close",
            "--month",
            "2020-01",
            "--operator-token",
            &token,
        ],
    );
    let archive = r.dir.join("walk-backup.tar");
    w.run(
        Saved,
        &[
            "admin",
            "backup",
            "--to",
            archive.to_str().unwrap(),
            "--operator-token",
            &token,
        ],
    );
    w.run(Answer, &["account", "close", "--confirm", &account]);

    let missed: Vec<&String> = w.commands.difference(&w.ran).collect();
    assert!(
        missed.is_empty(),
        "commands this walk does not check: {missed:?}; add them to it"
    );
}

/// `--wait` prints the action's answer with each resource as last read.
#[test]
fn a_waited_launch_prints_the_launch_answer_with_each_instance_as_last_read() {
    let r = Region::start(StoreKind::Sqlite);
    r.ok(&["signup", "--email", "wait@example.com"]);
    let out = r.nubo(
        &[
            &["-o", "json", "--debug"][..],
            &common::launch_micro(&["--count", "3", "--wait"]),
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for a in answers(&String::from_utf8_lossy(&out.stderr)) {
        if a.method == "GET" && a.url.contains("/v1/instances/i-") {
            let v: Value = serde_json::from_str(&a.body).unwrap();
            last.insert(id(&v), v);
        }
    }
    let instances = printed["instances"].as_array().unwrap();
    assert_eq!(
        printed.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["instances"],
        "the launch answer's shape: {printed}"
    );
    assert_eq!(instances.len(), 3);
    for i in instances {
        assert_eq!(i["state"], "running", "{printed}");
        assert_eq!(Some(i), last.get(&id(i)), "as last read");
    }
}

/// Runs the CLI with its stdout a pipe nobody reads any more.
fn closed_stdout(r: &Region, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nubo"))
        .args(args)
        .env("XDG_CONFIG_HOME", r.dir.join("config"))
        .env("NUBO_ENDPOINT", &r.endpoint)
        .env_remove("NUBO_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_every_kind_of_output_quietly() {
    let r = Region::start(StoreKind::Sqlite);
    r.ok(&["signup", "--email", "pipe@example.com"]);
    let launched = r.json(&common::launch_micro(&["--wait"]));
    let i = id(&launched["instances"][0]);
    for args in [
        vec!["pricing", "list", "-o", "json"],
        vec!["pricing", "list"],
        vec!["instance-types", "list", "-o", "csv"],
        vec!["whoami"],
        vec!["instance", "console", &i],
        vec!["instance", "list", "-o", "json"],
        vec!["billing", "invoice", "-o", "csv"],
        vec!["key-pairs", "create", "piped"],
        vec!["completions", "bash"],
        vec!["--help"],
    ] {
        let (code, stderr) = closed_stdout(&r, &args);
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "nubo {args:?}");
    }
    // Its errors still go to stderr.
    let (code, stderr) = closed_stdout(&r, &["instance", "show", "i-0000000000000000"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("NotFound"), "{stderr}");
}

/// Runs the CLI in a pseudo-terminal (util-linux `script`), as a person does;
/// what the terminal showed, stdout and stderr together.
fn at_terminal(r: &Region, args: &[&str]) -> String {
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_nubo"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect();
    let out = Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .env("XDG_CONFIG_HOME", r.dir.join("config"))
        .env("NUBO_ENDPOINT", &r.endpoint)
        .env("TERM", "xterm")
        .env_remove("NUBO_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "nubo {args:?} at a terminal");
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

#[test]
fn wait_shows_progress_at_a_terminal_and_nothing_to_programs() {
    let config = std::env::temp_dir().join(format!(
        "nubo-slow-boot-{:016x}.toml",
        nubo_store::ids::random_u64()
    ));
    std::fs::write(
        &config,
        "[sim_host]\nvcpus = 32\nmemory_mib = 131072\ndisk_gib = 2048\nboot_ms = 1500\n",
    )
    .unwrap();
    let r = Region::start_with(StoreKind::Sqlite, &["--config", config.to_str().unwrap()]);
    std::fs::remove_file(&config).unwrap();
    r.ok(&["signup", "--email", "progress@example.com"]);
    let launch = common::launch_micro(&["--wait"]);

    let shown = at_terminal(&r, &[&launch[..], &["--count", "2"]].concat());
    assert!(
        shown.contains("waiting for 2 instances to be running"),
        "{shown}"
    );
    // The table's rows, after the progress.
    let ids: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains(" n1.nano "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), 2, "{shown}");
    for id in &ids {
        for state in ["pending", "running"] {
            assert!(
                shown.contains(&format!("{id} {state} after ")),
                "{id} {state}: {shown}"
            );
        }
    }
    let volume = at_terminal(&r, &["volume", "create", "--size", "1", "--wait"]);
    assert!(volume.contains(" available after "), "{volume}");

    let json = at_terminal(&r, &[&["-o", "json"], &launch[..]].concat());
    let printed: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("-o json shows nothing but JSON: {e}: {json:?}"));
    assert_eq!(printed["instances"][0]["state"], "running");

    let piped = r.nubo(&launch);
    assert!(piped.status.success());
    assert_eq!(
        String::from_utf8_lossy(&piped.stderr),
        "",
        "no progress when stderr is not a terminal"
    );
    assert!(String::from_utf8_lossy(&piped.stdout).contains("running"));
}
