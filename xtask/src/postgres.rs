//! The throwaway PostgreSQL cluster that tests and benchmarks run against:
//! one per machine and major version, on a fixed port, and left running so
//! that reruns skip initdb and start-up.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, Error, Result};

/// Off the default 5432, so a system PostgreSQL can coexist.
const PORT: u16 = 15432;

/// Starts the cluster unless it, or one from an earlier run, already serves
/// the port; returns the URL to reach it.
pub fn ensure() -> Result<String> {
    let cluster = Cluster::find()?.ok_or_else(|| {
        Error::new("no PostgreSQL server under /usr/lib/postgresql; install the postgresql package")
    })?;
    if !cluster.running()? {
        if port_served() {
            eprintln!("reusing the PostgreSQL already serving 127.0.0.1:{PORT}");
        } else {
            if !cluster.initialized() {
                cluster.init()?;
            }
            cluster.start()?;
        }
    }
    // `--auth=trust`: no password.
    Ok(format!("postgres://postgres@127.0.0.1:{PORT}/postgres"))
}

/// Stops the cluster, if it runs.
pub fn stop() -> Result {
    match Cluster::find()? {
        Some(cluster) if cluster.running()? => {
            cmd::run(cluster.pg_ctl().args(["-m", "fast", "stop"]))
        }
        _ => {
            eprintln!("the test PostgreSQL is not running");
            Ok(())
        }
    }
}

struct Cluster {
    /// The server's `bin` directory.
    bin: PathBuf,
    /// The data directory, which also holds the socket and `server.log`.
    data: PathBuf,
    /// Whether the tools run as the `postgres` user, because we are root.
    as_postgres: bool,
}

impl Cluster {
    /// The cluster of the newest installed server, if any is installed.
    fn find() -> Result<Option<Self>> {
        let Some((bin, major)) = newest_server() else {
            return Ok(None);
        };
        let as_postgres = cmd::is_root()?;
        let cache = crate::cache::dir()?;
        // As root the cluster belongs to `postgres`, which must be able to
        // reach it. A cache under /root (mode 700) is out of its reach, so
        // then use /var/tmp: open to all users and, unlike /tmp, kept
        // across reboots.
        let data = if as_postgres && !searchable_by_all(&cache) {
            PathBuf::from(format!("/var/tmp/nubo-postgres-{major}"))
        } else {
            cache.join(format!("postgres-{major}"))
        };
        Ok(Some(Self {
            bin,
            data,
            as_postgres,
        }))
    }

    fn initialized(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }

    fn running(&self) -> Result<bool> {
        Ok(self.initialized() && cmd::status(self.pg_ctl().arg("status"))?.success())
    }

    fn init(&self) -> Result {
        let parent = self.data.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", parent.display())))?;
        if self.as_postgres {
            // `postgres` cannot create it in a directory root owns: hand it
            // over empty.
            cmd::run(
                Command::new("install")
                    .args(["-d", "-m", "700", "-o", "postgres", "-g", "postgres"])
                    .arg(&self.data),
            )?;
        }
        // The C locale sorts text bytewise, as SQLite (the other store) does,
        // and the same on every machine.
        cmd::run(
            self.tool("initdb")
                .args([
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                    "-D",
                ])
                .arg(&self.data),
        )
    }

    fn start(&self) -> Result {
        let log = self.data.join("server.log");
        // Durability off: the data is throwaway, and tests run faster.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {PORT} -k {} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cmd::quote(&self.data.to_string_lossy())
        );
        cmd::run(
            self.pg_ctl()
                .arg("-l")
                .arg(&log)
                .args(["-w", "-o", &options, "start"]),
        )
        .map_err(|e| Error {
            message: format!("{}; see {}", e.message, log.display()),
            ..e
        })
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(&self.data);
        cmd
    }

    /// One of the server's tools, run as `postgres` if we are root.
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(exe);
            runuser
        } else {
            Command::new(exe)
        };
        // `postgres` may not be allowed into our working directory.
        cmd.current_dir("/");
        // Stdout is for results (`pg-url` prints one).
        cmd.stdout(io::stderr());
        cmd
    }
}

/// The newest installed server's `bin` directory and its major version.
fn newest_server() -> Option<(PathBuf, String)> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let bin = entry.path().join("bin");
            let has_server = bin.join("initdb").is_file() && bin.join("pg_ctl").is_file();
            has_server.then(|| (bin, entry.file_name().to_string_lossy().into_owned()))
        })
        .max_by_key(|(_, major)| {
            // Numerically, so that 15 beats 9.6.
            major
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect::<Vec<u32>>()
        })
}

/// Whether every existing ancestor of `dir` is searchable by all users (the
/// ones still missing are created so).
fn searchable_by_all(dir: &Path) -> bool {
    dir.ancestors()
        .filter_map(|ancestor| fs::metadata(ancestor).ok())
        .all(|meta| meta.permissions().mode() & 0o001 != 0)
}

fn port_served() -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}
