//! A `nubod` started for a benchmark, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nubo_api::account::{SignupRequest, SignupResponse};
use nubo_cli::{Client, Credentials};

pub struct Region {
    child: Child,
    /// nubod and its arguments, to start it again.
    command: (String, Vec<String>),
    port: u16,
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
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--config".into(),
            dir.join("nubod.toml").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--s3-listen".into(),
            format!("127.0.0.1:{s3_port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        if let Some(url) = database_url {
            args.extend(["--database-url".to_string(), url.to_string()]);
        }
        let command = (nubod.to_string(), args);
        let mut region = Region {
            child: spawn(&command)?,
            command,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            s3_endpoint: format!("http://127.0.0.1:{s3_port}"),
            dir,
        };
        region.wait_listening()?;
        Ok(region)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("nubod did not start listening within 30 s".into())
    }

    /// Stops nubod (SIGKILL), keeping its data dir.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts nubod again on its data dir.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = spawn(&self.command)?;
        self.wait_listening()
    }
}

fn spawn((nubod, args): &(String, Vec<String>)) -> Result<Child, String> {
    Command::new(nubod)
        .args(args)
        .env("NUBO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{nubod}: {e}"))
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
