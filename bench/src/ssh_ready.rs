//! The debian-12 part of `bench/network`: from the launch call to SSH
//! accepting (its banner read through the published port), beside a bare
//! QEMU boot of the same image on the same command line, timed to the line
//! its ready unit prints once sshd listens.
//!
//! The bare VM gets what any cloud gives a booting guest, so that cloud-init
//! does the same work in both: DHCP (QEMU's user-mode network, which reaches
//! nothing) and an EC2 metadata service, this binary answering each
//! connection QEMU forwards to 169.254.169.254 on its standard input and
//! output.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use nubo_api::compute::{Instance, LaunchRequest, LaunchResponse, PublishRequest, PublishedPort};
use nubo_cli::Client;
use nubo_host::qemu::accel::Accel;

use crate::launch::{Bare, BareVm, image_spec, terminate, wait_state};
use crate::region::Region;
use crate::stats::{Samples, ms};

pub const ROUNDS: usize = 3;
pub const TARGET: f64 = 1.3;
const SSH_TIMEOUT: Duration = Duration::from_secs(300);
/// The instance type that fits Debian with cloud-init.
const TYPE: &str = "n1.small";
const MEMORY_MIB: u32 = 1024;

/// `nubo-bench imds-stdio INSTANCE_ID [PUBLIC_KEY_FILE]`: answers one
/// metadata request read from standard input, enough of the EC2 tree for
/// cloud-init (and the key it installs for the default user).
pub fn imds_stdio(args: &[String]) -> Result<(), String> {
    let id = args
        .first()
        .ok_or("usage: nubo-bench imds-stdio INSTANCE_ID [PUBLIC_KEY_FILE]")?;
    let key = match args.get(1) {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?),
        None => None,
    };
    let mut input = std::io::BufReader::new(std::io::stdin().lock());
    let mut request = String::new();
    input.read_line(&mut request).map_err(|e| e.to_string())?;
    loop {
        let mut header = String::new();
        let n = input.read_line(&mut header).map_err(|e| e.to_string())?;
        if n == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    // The tree is the same under every version: drop it.
    let below = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, rest)| rest);
    let body = match below.trim_end_matches('/') {
        "meta-data" if key.is_some() => {
            Some("hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\npublic-keys/".to_string())
        }
        "meta-data" => Some("hostname\ninstance-id\nlocal-hostname\nlocal-ipv4".to_string()),
        "meta-data/public-keys" => key.as_ref().map(|_| "0=bench".to_string()),
        "meta-data/public-keys/0" => key.as_ref().map(|_| "openssh-key".to_string()),
        "meta-data/public-keys/0/openssh-key" => key.clone(),
        "meta-data/instance-id" | "meta-data/hostname" | "meta-data/local-hostname" => {
            Some(id.clone())
        }
        "meta-data/local-ipv4" => Some("169.254.0.15".into()),
        _ => None,
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", String::new()),
    };
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .and_then(|()| out.flush())
    .map_err(|e| e.to_string())
}

/// A bare boot of debian-12 to its ready line.
fn bare(images: &Path, accel: Accel) -> Result<Duration, String> {
    let image = image_spec(&images.join("debian-12"))?;
    let marker = image.ready_marker.clone().ok_or("no ready marker")?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let id = BareVm::next_id();
    // A comma in a QEMU option value is doubled.
    let serve = format!("{} imds-stdio {id}", me.display()).replace(',', ",,");
    let started = Instant::now();
    let vm = Bare {
        memory_mib: MEMORY_MIB,
        extra: vec![
            "-netdev".into(),
            // guestfwd serves only addresses of the user-mode network itself.
            format!(
                "user,id=nic0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,\
                 dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:{serve}"
            ),
            "-device".into(),
            "virtio-net-device,netdev=nic0".into(),
        ],
        ..Bare::new(&image, accel)
    }
    .start(&id)?;
    vm.wait_for(&marker, started)
}

/// Whether an SSH server answers at `address` with its banner.
fn banner(address: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 4];
    s.read_exact(&mut head).is_ok() && &head == b"SSH-"
}

/// From the launch call to SSH's banner through the published port.
async fn nubo(client: &Client) -> Result<Duration, String> {
    let request = LaunchRequest::new("debian-12", TYPE);
    let started = Instant::now();
    let launched: LaunchResponse = client
        .post("/v1/instances", &request)
        .await
        .map_err(|e| e.to_string())?;
    let id = launched.instances[0].id.clone();
    let _: Instance = wait_state(client, &id, "running").await?;
    let published: PublishedPort = client
        .post(
            &format!("/v1/instances/{id}/ports"),
            &PublishRequest { port: 22 },
        )
        .await
        .map_err(|e| e.to_string())?;
    let took = loop {
        let address = published.address.clone();
        if tokio::task::spawn_blocking(move || banner(&address))
            .await
            .unwrap_or(false)
        {
            break started.elapsed();
        }
        if started.elapsed() > SSH_TIMEOUT {
            return Err(format!("{id} never accepted SSH"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    terminate(client, &[id]).await?;
    Ok(took)
}

/// (bare boots, nubo launches), `ROUNDS` of each taking turns.
pub fn measure(
    runtime: &tokio::runtime::Runtime,
    region: &Region,
    images: &Path,
    accel: Accel,
) -> Result<(Samples, Samples), String> {
    let client = runtime.block_on(region.signed_up("ssh-bench@example.com"))?;
    let (mut bares, mut nubos) = (Samples::default(), Samples::default());
    for round in 1..=ROUNDS {
        bares.push(bare(images, accel)?);
        nubos.push(runtime.block_on(nubo(&client))?);
        eprintln!("debian-12 round {round} of {ROUNDS} measured");
    }
    Ok((bares, nubos))
}

/// Prints the figures and how they stand against the target.
pub fn report(mut bares: Samples, mut nubos: Samples) {
    let (bare, nubo) = (bares.percentile(50.0), nubos.percentile(50.0));
    println!();
    println!(
        "debian-12 (n1.small), launch to SSH accepting; medians of {ROUNDS}: nubo {}, bare QEMU boot {}",
        ms(nubo),
        ms(bare)
    );
    let ratio = nubo.as_secs_f64() / bare.as_secs_f64().max(1e-9);
    println!(
        "  {ratio:.2} of the bare boot vs <= {TARGET}: {:.2}x",
        TARGET / ratio
    );
}
