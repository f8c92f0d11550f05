//! A `nubod` started for a benchmark, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nubo_api::account::{SignupRequest, SignupResponse};
use nubo_cli::{Client, Credentials};

pub struct Region {
    child: Child,
    pub endpoint: String,
    pub s3_endpoint: String,
    pub dir: PathBuf,
}

impl Region {
    /// Starts `nubod` with a config file's `text` and, if given, a PostgreSQL store.
    pub fn start(
        nubod: &str,
        config: &str,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> Result<Region, String> {
        let free_port = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| e.to_string())
        };
        let (port, s3_port) = (free_port()?, free_port()?);
        let dir = std::env::temp_dir().join(format!("nubo-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("nubod.toml"), config).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(nubod);
        cmd.arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("nubod.toml"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--s3-listen")
            .arg(format!("127.0.0.1:{s3_port}"))
            .args(extra)
            .env("NUBO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        let child = cmd.spawn().map_err(|e| format!("{nubod}: {e}"))?;
        let region = Region {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            s3_endpoint: format!("http://127.0.0.1:{s3_port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(region);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("nubod did not start listening within 30 s".into())
    }
}

impl Region {
    /// A client of a new account of this region.
    pub async fn signed_up(&self, email: &str) -> Result<Client, String> {
        let public = Client::new(&self.endpoint, "local-1", Credentials::None);
        let created: SignupResponse = public
            .post(
                "/v1/signup",
                &SignupRequest {
                    email: email.into(),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(Client::new(
            &self.endpoint,
            "local-1",
            Credentials::Key {
                id: created.access_key_id,
                secret: created.secret_access_key,
            },
        ))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
