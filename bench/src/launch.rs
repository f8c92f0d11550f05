//! `bench/launch`: how fast an instance runs its own code, measured from the API
//! call to the guest's ready line, beside the limit measured in the same run:
//! bare `qemu-system-x86_64`, same accelerator, same image, same command line,
//! same readiness point. Also the VMM's memory beyond guest RAM, and how many idle
//! 64 MiB instances one host holds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use nubo_api::compute::{Instance, LaunchRequest, LaunchResponse};
use nubo_cli::Client;
use nubo_host::VmSpec;
use nubo_host::qemu::QemuConfig;
use nubo_host::qemu::accel::{self, Accel, AccelChoice};
use nubo_host::qemu::command::{ImageSpec, Launch, VmFiles};
use nubo_host::qemu::volumes::{Format, VolumeDir};

use crate::region::Region;
use crate::stats::{Samples, ms};

/// Numbers bare VMs, whose ids must differ as instance ids do.
static NEXT_BARE: AtomicU32 = AtomicU32::new(0);

const SEQUENTIAL: usize = 30;
const CONCURRENT: usize = 10;
const DENSITY: u32 = 100;
/// How often a bare boot's console is read (the driver reads it as often).
const POLL: Duration = Duration::from_millis(10);
/// How often the benchmark asks the API; latency comes from the region's own times.
const API_POLL: Duration = Duration::from_millis(100);
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

const P50_TARGET: Duration = Duration::from_secs(1);
const RATIO_TARGET: f64 = 1.2;
const OVERHEAD_TARGET_MIB: f64 = 40.0;
const FAILURE_TARGET: Duration = Duration::from_secs(2);

fn config() -> String {
    format!(
        "[quota_defaults]\ninstances = {n}\nvcpus = {n}\nmemory_mib = {m}\n\
         [qemu]\nvcpu_overcommit = 64\n",
        n = DENSITY + 10,
        m = (DENSITY + 10) * 64
    )
}

pub fn run(args: &[String]) -> Result<(), String> {
    let nubod = crate::flag(args, "--nubod").ok_or("--nubod PATH is required")?;
    let images = PathBuf::from(crate::flag(args, "--images").ok_or("--images DIR is required")?);
    let image = image_spec(&images.join("nubo-micro"))?;
    let (accel, why) = accel::choose(AccelChoice::Auto);
    eprintln!("accelerator: {why}");
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;

    let mut bare_seq = Samples::default();
    for _ in 0..SEQUENTIAL {
        bare_seq.push(bare_boot(&image, accel)?);
    }
    let mut bare_conc = Samples::default();
    let handles: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (image, accel) = (image.clone(), accel);
            std::thread::spawn(move || bare_boot(&image, accel))
        })
        .collect();
    for h in handles {
        bare_conc.push(h.join().map_err(|_| "a bare boot panicked")??);
    }
    eprintln!("bare QEMU measured");

    let region = Region::start(
        nubod,
        &config(),
        None,
        &[
            "--hypervisor",
            "qemu",
            "--images-dir",
            &images.display().to_string(),
        ],
    )?;
    let figures = runtime.block_on(measure_nubo(&region))?;
    report(accel, bare_seq, bare_conc, figures);
    Ok(())
}

/// The image as nubod registers it from its `image.json`.
pub fn image_spec(dir: &Path) -> Result<ImageSpec, String> {
    let text = std::fs::read_to_string(dir.join("image.json"))
        .map_err(|e| format!("{}: {e} (run cargo xtask image)", dir.display()))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
    let disk = m["disk"]
        .as_str()
        .map(|d| serde_json::json!({ "path": dir.join(d), "format": field("disk_format") }));
    let spec = serde_json::json!({
        "kernel": dir.join(field("kernel")),
        "initrd": dir.join(field("initrd")),
        "cmdline": field("cmdline"),
        "ready_marker": field("ready_marker"),
        "disk": disk,
    });
    ImageSpec::parse(&spec.to_string()).map_err(|e| e.to_string())
}

/// A VM started as nubo's driver would start it, but by hand: killed and its
/// folder removed when dropped.
pub struct BareVm {
    files: VmFiles,
}

/// How to start a bare VM: nubo's command line for the image, and what else.
pub struct Bare<'a> {
    pub image: &'a ImageSpec,
    pub accel: Accel,
    pub memory_mib: u32,
    pub user_data: Option<String>,
    pub nic: Option<nubo_host::Nic>,
    /// The network namespace to run in (where its tap must be).
    pub netns: Option<&'a str>,
    /// QEMU arguments beyond nubo's.
    pub extra: Vec<String>,
}

impl<'a> Bare<'a> {
    pub fn new(image: &'a ImageSpec, accel: Accel) -> Bare<'a> {
        Bare {
            image,
            accel,
            memory_mib: 64,
            user_data: None,
            nic: None,
            netns: None,
            extra: Vec::new(),
        }
    }

    /// Starts the VM, as instance `id`, with exactly the command line nubo's
    /// driver would use (and `extra`).
    pub fn start(self, id: &str) -> Result<BareVm, String> {
        let dir = std::env::temp_dir().join(format!("nubo-bare-{id}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let vm = BareVm {
            files: VmFiles { dir: dir.clone() },
        };
        if let Some(text) = &self.user_data {
            std::fs::write(vm.files.user_data(), text).map_err(|e| e.to_string())?;
        }
        // Its root disk is where nubo's driver finds a root volume named `root`.
        let volumes = VolumeDir::open(dir.clone()).map_err(|e| e.to_string())?;
        let root = self.image.disk.as_ref().map(|_| "root");
        if let Some(disk) = &self.image.disk {
            let target = volumes.file("root", Format::Qcow2);
            let out = nubo_host::qemu::command::overlay(&disk.path, &disk.format, &target)
                .output()
                .map_err(|e| format!("qemu-img: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        let spec = VmSpec {
            instance_id: id.to_string(),
            instance_type: "bare".into(),
            region: String::new(),
            vcpus: 1,
            memory_mib: self.memory_mib,
            image: String::new(),
            user_data: self.user_data,
            hostname: id.to_string(),
            ssh_public_keys: Vec::new(),
            nic: self.nic,
            root_volume: root.map(str::to_string),
            volumes: Vec::new(),
            metadata_tokens_required: false,
        };
        let defaults = QemuConfig::new(String::new(), dir.clone());
        let launch = Launch {
            binary: &defaults.binary,
            accel: self.accel,
            tcg_tb_size_mib: defaults.tcg_tb_size_mib,
            tsc_khz: accel::tsc_khz(),
            spec: &spec,
            image: self.image,
            files: &vm.files,
            disks: volumes.boot_args(root, &[]).map_err(|e| e.to_string())?,
        };
        let mut qemu = launch.command();
        qemu.args(&self.extra);
        let mut cmd = match self.netns {
            Some(ns) => {
                let mut inside = std::process::Command::new("ip");
                inside
                    .args(["netns", "exec", ns])
                    .arg(qemu.get_program())
                    .args(qemu.get_args());
                inside
            }
            None => qemu,
        };
        let status = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("bare QEMU exited with {status}"));
        }
        Ok(vm)
    }
}

impl BareVm {
    /// An id for a bare VM, unique as instance ids are.
    pub fn next_id() -> String {
        format!(
            "i-bare{:05x}{:05x}",
            std::process::id(),
            NEXT_BARE.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.files.console()).unwrap_or_default()
    }

    /// Waits for `line` on the console; returns how long it took.
    pub fn wait_for(&self, line: &str, since: Instant) -> Result<Duration, String> {
        loop {
            if self.console().contains(line) {
                return Ok(since.elapsed());
            }
            if since.elapsed() > BOOT_TIMEOUT {
                return Err(format!("a bare VM never printed {line:?}"));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for BareVm {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.files.pidfile()) {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.trim())
                .status();
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&self.files.dir);
    }
}

/// Boots the image by hand and times it from exec to the ready line on the
/// console.
fn bare_boot(image: &ImageSpec, accel: Accel) -> Result<Duration, String> {
    let marker = image
        .ready_marker
        .clone()
        .ok_or("the image has no ready marker to time")?;
    let started = Instant::now();
    let vm = Bare::new(image, accel).start(&BareVm::next_id())?;
    vm.wait_for(&marker, started)
}

struct NuboFigures {
    failure_detection: Duration,
    sequential: Samples,
    concurrent: Samples,
    overhead_mib: Vec<f64>,
    density_running: u32,
    density_secs: f64,
    density_rss_gib: f64,
}

fn launch_request(count: u32) -> LaunchRequest {
    LaunchRequest {
        count: Some(count),
        ..LaunchRequest::new("nubo-micro", "n1.nano")
    }
}

/// Launches and waits until running; returns the instance ids and the time from
/// the call to the last one's `running`, by the region's own state-change time
/// (so that how often this client polls does not enter the figure).
async fn launch_and_wait(client: &Client, count: u32) -> Result<(Vec<String>, Duration), String> {
    let called = SystemTime::now();
    let launched: LaunchResponse = client
        .post("/v1/instances", &launch_request(count))
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<String> = launched.instances.into_iter().map(|i| i.id).collect();
    let mut latest = called;
    for id in &ids {
        let running = wait_state(client, id, "running").await?;
        let at = OffsetDateTime::parse(&running.state_changed_at, &Rfc3339)
            .map_err(|e| e.to_string())?;
        latest = latest.max(SystemTime::from(at));
    }
    Ok((ids, latest.duration_since(called).unwrap_or_default()))
}

pub async fn wait_state(client: &Client, id: &str, state: &str) -> Result<Instance, String> {
    let started = Instant::now();
    loop {
        let i: Instance = client
            .get(&format!("/v1/instances/{id}"))
            .await
            .map_err(|e| e.to_string())?;
        if i.state.as_str() == state {
            return Ok(i);
        }
        if i.state.as_str() == "failed" && state != "failed" {
            return Err(format!("{id} failed: {:?}", i.state_reason));
        }
        if started.elapsed() > BOOT_TIMEOUT * 3 {
            return Err(format!("{id} never became {state}"));
        }
        tokio::time::sleep(API_POLL).await;
    }
}

pub async fn terminate(client: &Client, ids: &[String]) -> Result<(), String> {
    for id in ids {
        let _: Instance = client
            .delete(&format!("/v1/instances/{id}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    for id in ids {
        wait_state(client, id, "terminated").await?;
    }
    Ok(())
}

async fn measure_nubo(region: &Region) -> Result<NuboFigures, String> {
    let client = region.signed_up("bench@example.com").await?;

    let mut sequential = Samples::default();
    for _ in 0..SEQUENTIAL {
        let (ids, took) = launch_and_wait(&client, 1).await?;
        sequential.push(took);
        terminate(&client, &ids).await?;
    }
    eprintln!("nubo sequential launches measured");

    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { launch_and_wait(&client, 1).await })
        })
        .collect();
    let mut concurrent = Samples::default();
    let mut idle = Vec::new();
    for t in tasks {
        let (ids, took) = t.await.map_err(|e| e.to_string())??;
        concurrent.push(took);
        idle.extend(ids);
    }
    eprintln!("nubo concurrent launches measured");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let overhead_mib = vmm_overheads(&region.dir.join("data/vms"), 64);
    let failure_detection = kill_and_time(&client, &region.dir.join("data/vms"), &idle[0]).await?;
    terminate(&client, &idle).await?;

    let started = Instant::now();
    let launched: LaunchResponse = client
        .post("/v1/instances", &launch_request(DENSITY))
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<String> = launched.instances.into_iter().map(|i| i.id).collect();
    let mut running = 0;
    for id in &ids {
        if wait_state(&client, id, "running").await.is_ok() {
            running += 1;
        }
    }
    let density_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let density_rss_gib = vm_pids(&region.dir.join("data/vms"))
        .iter()
        .map(|pid| rss_split(*pid, None).0)
        .sum::<u64>() as f64
        / (1024.0 * 1024.0);
    terminate(&client, &ids).await?;
    Ok(NuboFigures {
        failure_detection,
        sequential,
        concurrent,
        overhead_mib,
        density_running: running,
        density_secs,
        density_rss_gib,
    })
}

/// Kills a VM's process as a crash would; returns how long the region took to
/// call its instance failed, by the region's own state-change time.
async fn kill_and_time(client: &Client, vms: &Path, id: &str) -> Result<Duration, String> {
    let pid = std::fs::read_to_string(vms.join(id).join("qemu.pid")).map_err(|e| e.to_string())?;
    let killed = SystemTime::now();
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("kill -9 {}", pid.trim()));
    }
    let failed = wait_state(client, id, "failed").await?;
    let at =
        OffsetDateTime::parse(&failed.state_changed_at, &Rfc3339).map_err(|e| e.to_string())?;
    Ok(SystemTime::from(at)
        .duration_since(killed)
        .unwrap_or_default())
}

fn vm_pids(vms: &Path) -> Vec<u32> {
    std::fs::read_dir(vms)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("qemu.pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// (anonymous memory, anonymous memory of the mapping of `guest_kib`, the guest's
/// RAM) of a process, in KiB. Anonymous memory is what each VM costs on its own;
/// file pages (the kernel image, QEMU's code) are shared by every VM.
fn rss_split(pid: u32, guest_kib: Option<u64>) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let kib = |v: &str| -> u64 { v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0) };
    let (mut total, mut guest, mut in_guest) = (0, 0, false);
    for line in smaps.lines() {
        if let Some(size) = line.strip_prefix("Size:") {
            in_guest = Some(kib(size)) == guest_kib;
        } else if let Some(anon) = line.strip_prefix("Anonymous:") {
            total += kib(anon);
            if in_guest {
                guest += kib(anon);
            }
        }
    }
    (total, guest)
}

/// Per idle VM: anonymous memory beyond what its guest's RAM holds, in MiB.
fn vmm_overheads(vms: &Path, guest_mib: u64) -> Vec<f64> {
    vm_pids(vms)
        .into_iter()
        .map(|pid| {
            let (total, guest) = rss_split(pid, Some(guest_mib * 1024));
            (total - guest) as f64 / 1024.0
        })
        .collect()
}

fn report(accel: Accel, mut bare_seq: Samples, mut bare_conc: Samples, mut n: NuboFigures) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let (nb50, bb50) = (n.sequential.percentile(50.0), bare_seq.percentile(50.0));
    println!();
    println!(
        "bench/launch: nubo-micro on n1.nano (1 vCPU, 64 MiB), accelerator {}",
        accel.name()
    );
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "API call -> guest ready", "nubo p50", "nubo p99", "bare p50", "bare p99"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        format!("{SEQUENTIAL} sequential"),
        ms(nb50),
        ms(n.sequential.percentile(99.0)),
        ms(bb50),
        ms(bare_seq.percentile(99.0)),
    );
    let (nc50, bc50) = (n.concurrent.percentile(50.0), bare_conc.percentile(50.0));
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        format!("{CONCURRENT} concurrent"),
        ms(nc50),
        ms(n.concurrent.percentile(99.0)),
        ms(bc50),
        ms(bare_conc.percentile(99.0)),
    );
    let overhead = n.overhead_mib.iter().sum::<f64>() / n.overhead_mib.len().max(1) as f64;
    let worst = n.overhead_mib.iter().cloned().fold(0.0, f64::max);
    println!();
    println!(
        "VMM memory beyond guest RAM (anonymous, per idle VM): mean {overhead:.1} MiB, \
         max {worst:.1} MiB"
    );
    println!(
        "density: {}/{DENSITY} idle 64 MiB instances running after {:.1} s; QEMU anonymous \
         memory {:.2} GiB in all",
        n.density_running, n.density_secs, n.density_rss_gib
    );
    println!();
    println!(
        "against the targets (ratio > 1 meets it), accelerator {}:",
        accel.name()
    );
    println!(
        "  launch p50 {} vs < {}: {:.2}x",
        ms(nb50),
        ms(P50_TARGET),
        P50_TARGET.as_secs_f64() / nb50.as_secs_f64().max(1e-9)
    );
    println!(
        "  launch p50 / bare p50 = {:.2} vs <= {RATIO_TARGET}: {:.2}x (concurrent: {:.2})",
        ratio(nb50, bb50),
        RATIO_TARGET / ratio(nb50, bb50),
        ratio(nc50, bc50),
    );
    println!(
        "  VMM overhead {overhead:.1} MiB vs < {OVERHEAD_TARGET_MIB} MiB: {:.2}x",
        OVERHEAD_TARGET_MIB / overhead.max(1e-9)
    );
    println!(
        "  a killed VM's instance failed after {} vs < {}: {:.2}x",
        ms(n.failure_detection),
        ms(FAILURE_TARGET),
        FAILURE_TARGET.as_secs_f64() / n.failure_detection.as_secs_f64().max(1e-9)
    );
    println!(
        "  density {}/{DENSITY}: {:.2}x",
        n.density_running,
        f64::from(n.density_running) / f64::from(DENSITY)
    );
}
