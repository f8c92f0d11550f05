//! `bench/network`: TCP throughput and latency between two instances of one
//! network, on one host and across two hosts (VXLAN), beside the limit measured
//! in the same run: a plain veth pair between two namespaces.
//!
//! Throughput is what crosses the receiving instance's tap (its byte counter,
//! read by the benchmark while the sender streams), so no guest clock enters
//! it; for the veth pair, what a receiver reads. Latency is the average round
//! trip of busybox's ping, in the guests and between the namespaces alike.
//!
//! A pair of the same guests started by hand on a plain bridge shows what the
//! guests themselves can do (under TCG, far less than a veth pair): nubo's own
//! data path is the difference between them and nubo's instances.
//!
//! It also times debian-12 from launch to SSH accepting beside a bare boot of
//! the same image (`ssh_ready`).
//!
//! Two hosts are modelled on this machine as nubod does in its tests: each
//! host's underlay in a namespace of the benchmark's own, joined by a veth pair
//! (documentation addresses).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nubo_api::compute::{Instance, InstanceConsole, LaunchRequest, LaunchResponse};
use nubo_api::networks::{CreateNetworkRequest, Network};
use nubo_cli::Client;
use nubo_host::Nic;
use nubo_host::qemu::accel::{self, AccelChoice};
use nubo_host::qemu::network::{in_namespace, tap};

use crate::launch::{Bare, BareVm, terminate, wait_state};
use crate::region::Region;
use crate::ssh_ready;

/// How long the throughput of a pair is sampled, after a warm-up.
const WINDOW: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(2);
/// How long a guest sender streams: the warm-up, the window, and slack.
const STREAM_SECS: u64 = 20;
const PINGS: u32 = 20;
const THROUGHPUT_TARGET: f64 = 0.7;
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(180);

/// MiB/s and milliseconds of round trip.
#[derive(Debug, Clone, Copy)]
struct Figures {
    throughput: f64,
    latency_ms: f64,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ip {} failed", args.join(" ")))
}

/// Two namespaces of the benchmark's own joined by a veth pair, deleted when
/// dropped.
struct Pair {
    namespaces: [String; 2],
    addresses: [&'static str; 2],
}

impl Pair {
    fn new(tag: &str, addresses: [&'static str; 2]) -> Result<Pair, String> {
        let namespaces = [
            format!("nubobench-{tag}a-{}", std::process::id()),
            format!("nubobench-{tag}b-{}", std::process::id()),
        ];
        let pair = Pair {
            namespaces,
            addresses,
        };
        let [a, b] = &pair.namespaces;
        for ns in &pair.namespaces {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", b,
        ])?;
        for (ns, address) in pair.namespaces.iter().zip(addresses) {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "v0",
            ])?;
            ip(&["-n", ns, "link", "set", "v0", "up"])?;
        }
        Ok(pair)
    }

    /// What a receiver in the second namespace reads from a sender in the
    /// first, and busybox ping's round trip between them.
    fn measure(&self) -> Result<Figures, String> {
        let listener = in_namespace(&self.namespaces[1], || {
            TcpListener::bind((self.addresses[1], 5001))
        })
        .map_err(|e| e.to_string())?;
        let receiver = std::thread::spawn(move || -> Result<f64, String> {
            let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 * 1024];
            let started = Instant::now();
            let mut total = 0usize;
            while started.elapsed() < WARM_UP {
                total = s.read(&mut buf).map_err(|e| e.to_string())?;
                if total == 0 {
                    return Err("the sender stopped early".into());
                }
            }
            let (started, mut got) = (Instant::now(), 0usize);
            while started.elapsed() < WINDOW {
                match s.read(&mut buf).map_err(|e| e.to_string())? {
                    0 => break,
                    n => got += n,
                }
            }
            let _ = total;
            Ok(got as f64 / 1048576.0 / started.elapsed().as_secs_f64())
        });
        let mut sender = in_namespace(&self.namespaces[0], || {
            std::net::TcpStream::connect((self.addresses[1], 5001))
        })
        .map_err(|e| e.to_string())?;
        let chunk = vec![0u8; 256 * 1024];
        let deadline = Instant::now() + WARM_UP + WINDOW + Duration::from_secs(1);
        while Instant::now() < deadline {
            if sender.write_all(&chunk).is_err() {
                break;
            }
        }
        drop(sender);
        let throughput = receiver
            .join()
            .map_err(|_| "the receiver panicked".to_string())??;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[0], "busybox", "ping"])
            .args(["-c", &PINGS.to_string(), "-i", "0.2", self.addresses[1]])
            .output()
            .map_err(|e| format!("busybox ping: {e}"))?;
        let latency_ms = average_rtt(&String::from_utf8_lossy(&out.stdout))
            .ok_or("busybox ping printed no round trip")?;
        Ok(Figures {
            throughput,
            latency_ms,
        })
    }

    /// A config section that makes nubod's two hosts use these namespaces as
    /// their underlays.
    fn hosts_config(&self) -> String {
        self.namespaces
            .iter()
            .zip(self.addresses)
            .map(|(ns, address)| {
                format!(
                    "[[qemu.hosts]]\nunderlay_address = \"{address}\"\nunderlay_namespace = \"{ns}\"\n"
                )
            })
            .collect()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}

/// The average of "round-trip min/avg/max = a/b/c ms".
fn average_rtt(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    line.split('=')
        .nth(1)?
        .trim()
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// The receiver: discards what comes to port 5001, a process per connection.
const SINK: &str = "#!/bin/sh\n\
    printf '#!/bin/sh\\ndd of=/dev/null bs=256k 2>/dev/null\\n' > /tmp/discard\n\
    chmod +x /tmp/discard\n\
    nc -ll -p 5001 -e /tmp/discard &\n\
    echo sinking\n";

/// The sender: pings the receiver, says the round trip, then streams to it
/// (dd writing the socket itself: busybox nc would relay a pipe in small
/// pieces).
fn source(to: &str) -> String {
    format!(
        "#!/bin/sh\n\
         until ping -c 1 -W 1 {to} >/dev/null 2>&1; do sleep 1; done\n\
         echo \"rtt $(ping -c {PINGS} -i 0.2 {to} | grep min/avg/max)\"\n\
         echo streaming\n\
         printf '#!/bin/sh\\ndd if=/dev/zero bs=256k 2>/dev/null\\n' > /tmp/stream\n\
         chmod +x /tmp/stream\n\
         timeout {STREAM_SECS} nc {to} 5001 -e /tmp/stream\n\
         echo streamed\n"
    )
}

fn request(user_data: String) -> LaunchRequest {
    LaunchRequest {
        user_data: Some(user_data),
        network: Some("bench".into()),
        ..LaunchRequest::new("nubo-micro", "n1.nano")
    }
}

async fn console(client: &Client, id: &str) -> Result<String, String> {
    let c: InstanceConsole = client
        .get(&format!("/v1/instances/{id}/console"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(c.output)
}

async fn launch(client: &Client, user_data: String) -> Result<Instance, String> {
    let launched: LaunchResponse = client
        .post("/v1/instances", &request(user_data))
        .await
        .map_err(|e| e.to_string())?;
    let id = &launched.instances[0].id;
    wait_state(client, id, "running").await
}

/// Bytes the tap of `instance` (in the namespace whose name ends with its
/// network id) has sent to its guest.
fn tap_bytes(instance: &Instance) -> Result<u64, String> {
    let tap = tap(&instance.id);
    let network = instance.network_id.as_deref().unwrap_or_default();
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&netns.stdout);
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.ends_with(network))
        .find_map(|ns| tap_tx(ns, &tap).ok())
        .ok_or_else(|| format!("no tap {tap} of {}", instance.id))
}

/// Streams between two instances of one network and measures what reaches
/// the receiver; `spread` asserts they run on different hosts.
async fn measure_guests(region: &Region, spread: bool) -> Result<Figures, String> {
    let client = region.signed_up("network-bench@example.com").await?;
    let _: Network = client
        .post(
            "/v1/networks",
            &CreateNetworkRequest {
                name: "bench".into(),
                cidr: "10.60.0.0/24".into(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let sink = launch(&client, SINK.into()).await?;
    let started = Instant::now();
    while !console(&client, &sink.id).await?.contains("sinking") {
        if started.elapsed() > CONSOLE_TIMEOUT {
            return Err("the receiver never listened".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let to = sink.private_ip.clone().unwrap_or_default();
    let sender = launch(&client, source(&to)).await?;
    if spread && sender.host_id == sink.host_id {
        return Err("both instances landed on one host".into());
    }
    let started = Instant::now();
    while !console(&client, &sender.id).await?.contains("streaming") {
        if started.elapsed() > CONSOLE_TIMEOUT {
            return Err("the sender never streamed".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(WARM_UP).await;
    let (before, at) = (tap_bytes(&sink)?, Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (after, took) = (tap_bytes(&sink)?, at.elapsed());
    let text = console(&client, &sender.id).await?;
    let latency_ms = average_rtt(&text).ok_or("the sender printed no round trip")?;
    terminate(&client, &[sender.id, sink.id]).await?;
    Ok(Figures {
        throughput: (after - before) as f64 / 1048576.0 / took.as_secs_f64(),
        latency_ms,
    })
}

/// Tx bytes of tap `tap` in namespace `ns`.
fn tap_tx(ns: &str, tap: &str) -> Result<u64, String> {
    let path = format!("/sys/class/net/{tap}/statistics/tx_bytes");
    let read = Command::new("ip")
        .args(["netns", "exec", ns, "cat", &path])
        .output()
        .map_err(|e| e.to_string())?;
    if !read.status.success() {
        return Err(format!("{ns}: no {path}"));
    }
    String::from_utf8_lossy(&read.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

/// The same two guests, started by hand on a plain bridge in a namespace of
/// the benchmark's own (no anti-spoofing, no security groups, no tunnel): what
/// the guests themselves can do here, the peer nubo's own data path is held
/// against.
fn measure_bare(images: &std::path::Path) -> Result<Figures, String> {
    let image = crate::launch::image_spec(&images.join("nubo-micro"))?;
    let (accel, _) = accel::choose(AccelChoice::Auto);
    let ns = format!("nubobench-bare-{}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let _cleanup = Namespace(ns.clone());
    ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &ns, "link", "set", "br0", "up"])?;
    let nic = |id: &str, address: &str| -> Result<Nic, String> {
        let tap = tap(id);
        ip(&["-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
        ip(&["-n", &ns, "link", "set", &tap, "master", "br0", "up"])?;
        let last = id.len().saturating_sub(10);
        let hex: String = id[last..]
            .chars()
            .map(|c| if c.is_ascii_hexdigit() { c } else { '0' })
            .collect();
        let pairs: Vec<&str> = (0..5).map(|i| &hex[2 * i..2 * i + 2]).collect();
        Ok(Nic {
            network_id: "bare".into(),
            address: format!("{address}/24"),
            gateway: "10.61.0.1".into(),
            mac: format!("02:{}", pairs.join(":")),
            network: Default::default(),
        })
    };
    let (sink_id, source_id) = (BareVm::next_id(), BareVm::next_id());
    let started = Instant::now();
    let sink = Bare {
        user_data: Some(SINK.into()),
        nic: Some(nic(&sink_id, "10.61.0.4")?),
        netns: Some(&ns),
        ..Bare::new(&image, accel)
    }
    .start(&sink_id)?;
    sink.wait_for("sinking", started)?;
    let sender = Bare {
        user_data: Some(source("10.61.0.4")),
        nic: Some(nic(&source_id, "10.61.0.5")?),
        netns: Some(&ns),
        ..Bare::new(&image, accel)
    }
    .start(&source_id)?;
    sender.wait_for("streaming", started)?;
    std::thread::sleep(WARM_UP);
    let (before, at) = (tap_tx(&ns, &tap(&sink_id))?, Instant::now());
    std::thread::sleep(WINDOW);
    let (after, took) = (tap_tx(&ns, &tap(&sink_id))?, at.elapsed());
    let latency_ms = average_rtt(&sender.console()).ok_or("no round trip printed")?;
    Ok(Figures {
        throughput: (after - before) as f64 / 1048576.0 / took.as_secs_f64(),
        latency_ms,
    })
}

/// A namespace deleted when dropped.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.0]);
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let images = PathBuf::from(crate::flag(args, "--images").ok_or("--images DIR is required")?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let qemu = ["--hypervisor", "qemu", "--images-dir"];
    let images = images.display().to_string();
    let extra: Vec<&str> = qemu.iter().copied().chain([images.as_str()]).collect();

    let veth = Pair::new("veth", ["203.0.113.1", "203.0.113.2"])?.measure()?;
    eprintln!("veth pair measured");
    let bare = measure_bare(Path::new(&images))?;
    eprintln!("bare QEMU pair measured");
    let (one_host, (bares, nubos)) = {
        let region = Region::start(nubod, "", None, &extra)?;
        let figures = runtime.block_on(measure_guests(&region, false))?;
        eprintln!("one host measured");
        let (accel, _) = accel::choose(AccelChoice::Auto);
        let ssh = ssh_ready::measure(&runtime, &region, Path::new(&images), accel)?;
        (figures, ssh)
    };
    let two_hosts = {
        let underlay = Pair::new("ul", ["192.0.2.1", "192.0.2.2"])?;
        let region = Region::start(nubod, &underlay.hosts_config(), None, &extra)?;
        let figures = runtime.block_on(measure_guests(&region, true))?;
        drop(region);
        figures
    };
    eprintln!("two hosts measured");

    println!();
    println!(
        "bench/network: TCP between two instances of one network (guests under the host's accelerator)"
    );
    println!();
    println!("{:<28} {:>16} {:>16}", "", "MiB/s", "round trip ms");
    for (name, f) in [
        ("veth pair (the limit)", veth),
        ("bare QEMU pair, plain bridge", bare),
        ("one host", one_host),
        ("two hosts (VXLAN)", two_hosts),
    ] {
        println!("{name:<28} {:>16.1} {:>16.3}", f.throughput, f.latency_ms);
    }
    println!();
    println!("against the targets (ratio > 1 meets it):");
    for (name, f) in [("one host", one_host), ("two hosts", two_hosts)] {
        let ratio = f.throughput / veth.throughput;
        println!(
            "  {name}: {ratio:.3} of the veth throughput vs >= {THROUGHPUT_TARGET}: {:.2}x \
             ({:.2} of the bare QEMU pair's)",
            ratio / THROUGHPUT_TARGET,
            f.throughput / bare.throughput
        );
    }
    ssh_ready::report(bares, nubos);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_round_trips_parse() {
        let text = "20 packets transmitted, 20 packets received, 0% packet loss\n\
                    round-trip min/avg/max = 0.412/0.735/1.902 ms\n";
        assert_eq!(average_rtt(text), Some(0.735));
        assert_eq!(average_rtt("nothing"), None);
    }
}
