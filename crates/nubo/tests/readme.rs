//! The README is a test. Its walkthrough (the indented command blocks between
//! `<!-- readme-test: begin -->` and `<!-- readme-test: end -->`) runs here
//! the way a new user runs it: nubod started as `cargo xtask up` starts it
//! (`--data-dir .nubo`, relative, in a working directory of its own, default
//! ports, real QEMU guests), then each command in order, in one shell session
//! (what one `export`s or `cd`s to holds for the next), through the real
//! `nubo` CLI, aws-cli and ssh, with a home of its own.
//!
//! A user copies ids from what the CLI just printed: in a command, `i-…`,
//! `vol-…`, `snap-…` and `AK…` stand for the last such id a launch, create,
//! import or signup printed, and `PORT` for the host port the last publish
//! printed. A command's trailing `# → TEXT` says what its output shows (`…`
//! matches anything within a line) the first time it runs, as a user runs it
//! once; only `# → TEXT (in a moment)`, something a guest does on its own time,
//! is run again until it shows. `cargo xtask down` runs what it runs: `nubod
//! teardown`.

mod common;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- readme-test: begin -->";
const END: &str = "<!-- readme-test: end -->";
/// Longest a command may take: a debian-12 launch under TCG, with `--wait`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a command that shows something `(in a moment)` is tried again.
const EXPECT_WITHIN: Duration = Duration::from_secs(480);
/// The region's default endpoints, which the README names.
const API_PORT: u16 = 8080;
const S3_PORT: u16 = 8081;

/// One command of the walkthrough.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// Its line in README.md, from 1.
    line: usize,
    command: String,
    /// What its output must show.
    expect: Option<String>,
    /// Whether it shows that only in a moment: run again until it does.
    again: bool,
}

/// The end of an expectation that a guest meets on its own time.
const IN_A_MOMENT: &str = "(in a moment)";

fn steps(readme: &str) -> Vec<Step> {
    let mut inside = false;
    let mut steps = Vec::new();
    for (i, line) in readme.lines().enumerate() {
        match line.trim() {
            BEGIN => inside = true,
            END => inside = false,
            _ if !inside => {}
            _ => {
                let Some(code) = line.strip_prefix("    ").map(str::trim) else {
                    continue;
                };
                if code.is_empty() || code.starts_with('#') {
                    continue;
                }
                let (command, expect) = match code.split_once("# →") {
                    Some((c, e)) => (c.trim(), Some(e.trim())),
                    None => (code, None),
                };
                let later = expect.and_then(|e| e.strip_suffix(IN_A_MOMENT));
                steps.push(Step {
                    line: i + 1,
                    command: command.to_string(),
                    expect: later.or(expect).map(|e| e.trim().to_string()),
                    again: later.is_some(),
                });
            }
        }
    }
    steps
}

/// Whether `text` has a line with `pattern`'s pieces (split at `…`) in order.
fn shows(text: &str, pattern: &str) -> bool {
    text.lines().any(|line| {
        let mut rest = line;
        pattern.split('…').all(|piece| match rest.find(piece) {
            Some(at) => {
                rest = &rest[at + piece.len()..];
                true
            }
            None => false,
        })
    })
}

/// Ids in `text` of the kinds commands refer to, in order: (kind, id).
fn ids(text: &str) -> Vec<(&'static str, String)> {
    let bytes = text.as_bytes();
    let boundary = |at: usize| at >= bytes.len() || !bytes[at].is_ascii_alphanumeric();
    let mut found = Vec::new();
    for start in 0..bytes.len() {
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        for (kind, prefix) in [("i", "i-"), ("vol", "vol-"), ("snap", "snap-")] {
            let end = start + prefix.len() + 16;
            if bytes[start..].starts_with(prefix.as_bytes())
                && end <= bytes.len()
                && bytes[start + prefix.len()..end]
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && boundary(end)
            {
                found.push((
                    kind,
                    String::from_utf8_lossy(&bytes[start..end]).into_owned(),
                ));
            }
        }
        let end = start + 20;
        if bytes[start..].starts_with(b"AK")
            && end <= bytes.len()
            && bytes[start + 2..end]
                .iter()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b))
            && boundary(end)
        {
            found.push((
                "AK",
                String::from_utf8_lossy(&bytes[start..end]).into_owned(),
            ));
        }
    }
    found
}

/// The port of the first `127.0.0.1:PORT` in `text`.
fn published_port(text: &str) -> Option<String> {
    let rest = &text[text.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// A user's shell session in a working directory of its own.
struct Session {
    dir: PathBuf,
    env: HashMap<String, String>,
    /// The last id of each kind a command printed, and the published port.
    last: HashMap<&'static str, String>,
    /// Ports that stand in for the default ones, when those are taken.
    ports: [(u16, u16); 2],
}

impl Session {
    fn substitute(&self, text: &str, line: usize) -> String {
        let mut out = text.to_string();
        for (placeholder, kind) in [
            ("i-…", "i"),
            ("vol-…", "vol"),
            ("snap-…", "snap"),
            ("AK…", "AK"),
            ("PORT", "PORT"),
        ] {
            if out.contains(placeholder) {
                let value = self.last.get(kind).unwrap_or_else(|| {
                    panic!("README.md:{line}: {placeholder} before any was printed")
                });
                out = out.replace(placeholder, value);
            }
        }
        for (default, actual) in self.ports {
            out = out.replace(
                &format!("127.0.0.1:{default}"),
                &format!("127.0.0.1:{actual}"),
            );
        }
        out
    }

    /// Runs `command` as the session's shell would; returns whether it
    /// succeeded and what it printed (stdout, then stderr).
    fn run(&mut self, command: &str) -> (bool, String, String) {
        let env_file = self.dir.join(".session-env");
        let script = format!(
            "{command}\n__status=$?\nenv -0 > {}\nexit $__status\n",
            env_file.display()
        );
        let cwd = self
            .env
            .get("PWD")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.clone());
        let (out, err) = (self.dir.join(".stdout"), self.dir.join(".stderr"));
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .envs(&self.env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Ok(env) = std::fs::read(&env_file) {
            self.env = env
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect();
            let _ = std::fs::remove_file(&env_file);
        }
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = match status {
            None => format!("timed out after {COMMAND_TIMEOUT:?}"),
            Some(_) => std::fs::read_to_string(&err).unwrap_or_default(),
        };
        (status.is_some_and(|s| s.success()), stdout, stderr)
    }

    /// Remembers the ids a launch, create, import or signup printed.
    fn learn(&mut self, command: &str, stdout: &str) {
        let words: Vec<&str> = command.split_whitespace().collect();
        if ["launch", "create", "import", "signup"]
            .iter()
            .any(|w| words.contains(w))
        {
            for (kind, id) in ids(stdout) {
                self.last.insert(kind, id);
            }
        }
        if words.contains(&"publish")
            && let Some(port) = published_port(stdout)
        {
            self.last.insert("PORT", port);
        }
    }
}

fn free_or_other(port: u16) -> u16 {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => {
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let other = other.local_addr().unwrap().port();
            eprintln!("port {port} is taken here (a region from `cargo xtask up`?); using {other}");
            other
        }
    }
}

/// The folders of the test binaries and of the venv's aws-cli, then the
/// system's.
fn path() -> String {
    let bin = |p: &str| Path::new(p).parent().unwrap().display().to_string();
    let python = std::env::var("NUBO_TEST_PYTHON")
        .expect("NUBO_TEST_PYTHON is not set: the README drives aws-cli. Run `cargo xtask test`");
    [
        bin(env!("CARGO_BIN_EXE_nubo")),
        bin(&python),
        std::env::var("PATH").unwrap_or_default(),
    ]
    .join(":")
}

/// The built images, where `cargo xtask up` installs them: `.nubo/images`.
fn install_images(dir: &Path) {
    let images = std::env::var("NUBO_TEST_IMAGES").expect(
        "NUBO_TEST_IMAGES is not set: the README launches real guests. Run `cargo xtask test`",
    );
    for image in std::fs::read_dir(&images).unwrap().flatten() {
        let to = dir.join(".nubo/images").join(image.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(image.path()).unwrap().flatten() {
            let target = to.join(file.file_name());
            if std::fs::hard_link(file.path(), &target).is_err() {
                std::fs::copy(file.path(), &target).unwrap();
            }
        }
    }
}

/// nubod as `cargo xtask up` runs it: its args (`--data-dir .nubo`) in the
/// working directory, and nothing else but the ports when the defaults are
/// taken.
struct Nubod {
    child: std::process::Child,
    dir: PathBuf,
}

impl Nubod {
    fn start(dir: &Path, ports: [(u16, u16); 2]) -> Nubod {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nubod"));
        cmd.args(["--data-dir", ".nubo"]).current_dir(dir);
        for (flag, (default, actual)) in ["--listen", "--s3-listen"].iter().zip(ports) {
            if default != actual {
                cmd.arg(flag).arg(format!("127.0.0.1:{actual}"));
            }
        }
        for (name, _) in std::env::vars() {
            if name.starts_with("NUBO_") {
                cmd.env_remove(name);
            }
        }
        let log = std::fs::File::create(dir.join("nubod.log")).unwrap();
        let child = cmd
            .env("NUBO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{}", ports[0].1);
        common::wait_until("nubod to answer", Duration::from_secs(60), || {
            common::http(&endpoint, "GET", "/healthz", None, &[]).is_ok_and(|(s, _, _)| s == 200)
        });
        Nubod {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("nubod.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Nubod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(env!("CARGO_BIN_EXE_nubod"))
            .args(["--data-dir", ".nubo", "teardown"])
            .current_dir(&self.dir)
            .output();
    }
}

/// What `cargo xtask down` runs (see `xtask/src/down.rs`), from the
/// workspace root.
fn xtask_down(command: &str) -> Option<String> {
    let rest = command.strip_prefix("cargo xtask down")?;
    let purge = rest.trim() == "--purge";
    Some(format!(
        "nubod --data-dir .nubo teardown{}",
        if purge { " --purge" } else { "" }
    ))
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let steps = steps(&readme);
    assert!(
        steps.len() > 20,
        "the README's marked walkthrough: {steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.command.starts_with("cargo xtask down")),
        "the walkthrough ends with `cargo xtask down`"
    );

    let dir = std::env::temp_dir().join(format!(
        "nubo-readme-{:016x}",
        nubo_store::ids::random_u64()
    ));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    install_images(&dir);
    let ports = [
        (API_PORT, free_or_other(API_PORT)),
        (S3_PORT, free_or_other(S3_PORT)),
    ];
    let nubod = Nubod::start(&dir, ports);
    let mut session = Session {
        env: HashMap::from([
            ("PATH".to_string(), path()),
            ("HOME".to_string(), home.display().to_string()),
            ("PWD".to_string(), dir.display().to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ]),
        dir: dir.clone(),
        last: HashMap::new(),
        ports,
    };

    let mut taken_down = None;
    for step in &steps {
        let command = session.substitute(&step.command, step.line);
        let command = match xtask_down(&command) {
            Some(down) => {
                taken_down = Some(namespaces_of(&dir));
                down
            }
            None => command,
        };
        let expect = step
            .expect
            .as_ref()
            .map(|e| session.substitute(e, step.line));
        let started = Instant::now();
        loop {
            let (ok, stdout, stderr) = session.run(&command);
            let shown = expect
                .as_ref()
                .is_none_or(|e| shows(&stdout, e) || shows(&stderr, e));
            if ok && shown {
                session.learn(&command, &stdout);
                eprintln!(
                    "README.md:{} ok in {:.1} s: {command}",
                    step.line,
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                step.again && started.elapsed() < EXPECT_WITHIN,
                "README.md:{}: `{command}` {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- nubod\n{}",
                step.line,
                match (ok, &expect) {
                    (false, _) => "failed".to_string(),
                    (true, Some(e)) if step.again => format!("never showed {e:?}"),
                    (true, Some(e)) => format!("did not show {e:?}"),
                    (true, None) => unreachable!(),
                },
                nubod.log()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // Nothing of the region runs after `cargo xtask down`.
    let namespaces = taken_down.expect("the walkthrough took the region down");
    assert!(!namespaces.is_empty(), "the walkthrough made networks");
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "{ns} is left: {listed}");
    }
    assert_eq!(processes_in(&dir), Vec::<String>::new(), "processes left");
    drop(nubod);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The network namespaces the region in `dir` made (one folder each).
fn namespaces_of(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".nubo/networks"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Processes whose command line or working directory is in `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if cmdline.contains(&dir.display().to_string()) || cwd.starts_with(dir) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn the_walkthrough_reads_commands_ids_and_expectations() {
    let readme = "text\n    not run\n<!-- readme-test: begin -->\n\n    # a comment\n    \
                  nubo instance launch --wait   # → i-…\n    nubo instance console i-…  # → hello from i-… (in a moment)\n\
                  <!-- readme-test: end -->\n    not run either\n";
    let steps = steps(readme);
    assert_eq!(
        steps,
        [
            Step {
                line: 6,
                command: "nubo instance launch --wait".into(),
                expect: Some("i-…".into()),
                again: false,
            },
            Step {
                line: 7,
                command: "nubo instance console i-…".into(),
                expect: Some("hello from i-…".into()),
                again: true,
            },
        ]
    );
    assert!(shows("x\nhello from i-0123 yes\n", "hello from i-…yes"));
    assert!(!shows("hello\nfrom i-0123\n", "hello…from"));
    let found = ids(
        "i-0123456789abcdef vol-0123456789abcdef0 snap-00000000000000ff AKABCDEFGHIJKLMNOP23 xi-0123456789abcdef",
    );
    assert_eq!(
        found,
        [
            ("i", "i-0123456789abcdef".to_string()),
            ("snap", "snap-00000000000000ff".to_string()),
            ("AK", "AKABCDEFGHIJKLMNOP23".to_string()),
        ]
    );
    assert_eq!(
        published_port("relayed: 127.0.0.1:40123 → 22"),
        Some("40123".into())
    );
    assert_eq!(
        xtask_down("cargo xtask down --purge").as_deref(),
        Some("nubod --data-dir .nubo teardown --purge")
    );
}
