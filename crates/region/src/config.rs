//! nubod's configuration: flags, then `NUBO_*` environment variables, then the
//! TOML file named by `--config`, then defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use nubo_api::quotas::QuotaResource;
use nubo_host::qemu::accel::AccelChoice;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// Real VMs: one QEMU microvm per instance on this machine.
    Qemu,
    /// Simulated hosts: VMs live in memory with realistic timing.
    Sim,
}

/// nubod, the region server of the nubo cloud.
#[derive(Debug, Parser, Default)]
#[command(name = "nubod", version, about)]
pub struct Args {
    /// TOML file with any of the settings below (flags and environment win).
    #[arg(long, env = "NUBO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the region keeps its store, keys and files.
    #[arg(long, env = "NUBO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the REST API.
    #[arg(long, env = "NUBO_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the S3-compatible object storage endpoint.
    #[arg(long, env = "NUBO_S3_LISTEN")]
    pub s3_listen: Option<SocketAddr>,
    /// Virtual-hosted-style S3 requests name the bucket as `<bucket>.<domain>`.
    #[arg(long, env = "NUBO_S3_DOMAIN")]
    pub s3_domain: Option<String>,
    /// Host driver.
    #[arg(long, env = "NUBO_HYPERVISOR")]
    pub hypervisor: Option<Hypervisor>,
    /// The region's name.
    #[arg(long, env = "NUBO_REGION")]
    pub region: Option<String>,
    /// Store: `postgres://…` or `sqlite://PATH` (default: SQLite in the data dir).
    #[arg(long, env = "NUBO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// URL clients use to reach the API (default: http://LISTEN, or https://
    /// with TLS).
    #[arg(long, env = "NUBO_PUBLIC_ENDPOINT")]
    pub public_endpoint: Option<String>,
    /// URL clients use to reach S3 (default: http://S3_LISTEN, or https://
    /// with TLS).
    #[arg(long, env = "NUBO_PUBLIC_S3_ENDPOINT")]
    pub public_s3_endpoint: Option<String>,
    /// Serve the API and S3 over TLS with this certificate chain (PEM, leaf
    /// first; it names the hosts of both endpoints). Needs --tls-key.
    #[arg(long, env = "NUBO_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "NUBO_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Where the images this region offers are (one folder each, with image.json).
    #[arg(long, env = "NUBO_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Accelerator of QEMU VMs: auto (KVM where the CPU has hardware
    /// virtualization, else TCG), kvm or tcg.
    #[arg(long, env = "NUBO_ACCEL", value_parser = parse_accel)]
    pub accel: Option<AccelChoice>,
    /// How many simulated hosts to run (with --hypervisor sim).
    #[arg(long, env = "NUBO_SIM_HOSTS")]
    pub sim_hosts: Option<u32>,
    /// Signups one client address may make per hour.
    #[arg(long, env = "NUBO_SIGNUPS_PER_HOUR")]
    pub signups_per_hour: Option<u32>,
    /// Let instances reach the outside through NAT on their host's address
    /// (QEMU hosts; off unless asked).
    #[arg(long, env = "NUBO_EGRESS_NAT")]
    pub egress_nat: Option<bool>,
    /// Log filter, e.g. `info` or `nubo_region=debug,info`.
    #[arg(long, env = "NUBO_LOG")]
    pub log: Option<String>,
    /// Read the time from this file (RFC 3339) instead of the system's clock:
    /// for tests of billing over days and months.
    #[arg(long, env = "NUBO_CLOCK_FILE", hide = true)]
    pub clock_file: Option<PathBuf>,
    /// Make steps of instance starts fail or crash nubod, as this file says
    /// (`STEP=fail` or `STEP=crash` lines): for tests of failures.
    #[arg(long, env = "NUBO_FAULT_FILE", hide = true)]
    pub fault_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What nubod does instead of serving.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Stop the nubod serving the data dir, if one does, then every VM, DHCP
    /// server and network namespace its hosts made on this machine, with
    /// their rules. The data dir stays unless --purge is given.
    Teardown {
        /// Remove the data dir too (a PostgreSQL store is left as it is).
        #[arg(long)]
        purge: bool,
    },
    /// Restore a backup (`nubo admin backup`) into the data dir, which must
    /// be new or empty (and, with PostgreSQL, into an empty database); then
    /// start nubod on it with the same settings.
    Restore {
        /// The backup archive.
        #[arg(long)]
        from: PathBuf,
    },
}

/// The config file: the flags' settings, plus what only a file can say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    s3_listen: Option<SocketAddr>,
    s3_domain: Option<String>,
    hypervisor: Option<Hypervisor>,
    region: Option<String>,
    database_url: Option<String>,
    public_endpoint: Option<String>,
    public_s3_endpoint: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    sim_hosts: Option<u32>,
    signups_per_hour: Option<u32>,
    egress_nat: Option<bool>,
    log: Option<String>,
    images_dir: Option<PathBuf>,
    accel: Option<AccelChoice>,
    sim_host: Option<SimHostConfig>,
    qemu: Option<QemuHostConfig>,
    #[serde(default)]
    quota_defaults: BTreeMap<String, u64>,
    #[serde(default)]
    quota_ceilings: BTreeMap<String, u64>,
    #[serde(default)]
    regions: Vec<PeerRegion>,
    /// The currency prices are in.
    currency: Option<String>,
    /// Changes of the price list, each from its time.
    #[serde(default)]
    prices: Vec<crate::billing::prices::PriceChange>,
    billing: Option<BillingConfig>,
}

/// How billing runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Seconds between checks of budgets and of months to close.
    pub check_seconds: u64,
    /// Seconds after a month ends before its invoices are closed, so that
    /// what happened in its last moments is in the store.
    pub close_after_seconds: u64,
    /// The discount of a commitment, by term (`1y`, `3y`), as a fraction.
    pub commitment_discounts: BTreeMap<String, f64>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            check_seconds: 60,
            close_after_seconds: 3600,
            commitment_discounts: [("1y".to_string(), 0.25), ("3y".to_string(), 0.45)].into(),
        }
    }
}

/// Capacity of each simulated host.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimHostConfig {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// Milliseconds from start to the guest being up.
    pub boot_ms: u64,
}

impl Default for SimHostConfig {
    fn default() -> Self {
        SimHostConfig {
            vcpus: 32,
            memory_mib: 128 * 1024,
            disk_gib: 2048,
            boot_ms: 150,
        }
    }
}

/// The QEMU host of this machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QemuHostConfig {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// TCG translation cache per VM, in MiB.
    pub tcg_tb_size_mib: u32,
    /// vCPUs offered per CPU of the machine.
    pub vcpu_overcommit: u32,
    /// Memory kept back from guests, in MiB.
    pub memory_reserve_mib: u64,
    /// The hosts this nubod runs on this machine, each with its end of the
    /// tunnels that carry networks between hosts. None: one host, alone.
    /// Several: a model of a region of several machines (each host's underlay
    /// in a namespace of its own), for tests and benchmarks.
    pub hosts: Vec<QemuHostEntry>,
}

/// A host of this machine and its underlay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuHostEntry {
    /// The host's address on the network between hosts (VXLAN, UDP 4789).
    pub underlay_address: std::net::Ipv4Addr,
    /// The network namespace that holds that address; the machine's own if absent.
    pub underlay_namespace: Option<String>,
}

impl Default for QemuHostConfig {
    fn default() -> Self {
        QemuHostConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            tcg_tb_size_mib: 16,
            vcpu_overcommit: 16,
            memory_reserve_mib: 1024,
            hosts: Vec::new(),
        }
    }
}

/// Another region of the same cloud, for the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRegion {
    pub name: String,
    pub api_endpoint: String,
    pub s3_endpoint: String,
}

/// PEM files of a server certificate chain and its key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Quota of one resource: the default limit of a new account, and the most an
/// account may raise it to by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRule {
    pub default: u64,
    pub ceiling: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub s3_listen: SocketAddr,
    pub s3_domain: String,
    pub hypervisor: Hypervisor,
    pub region: String,
    pub database_url: String,
    pub public_endpoint: String,
    pub public_s3_endpoint: String,
    /// The certificate chain and key both listeners serve TLS with, if any.
    pub tls: Option<TlsFiles>,
    pub sim_hosts: u32,
    pub sim_host: SimHostConfig,
    pub images_dir: PathBuf,
    pub accel: AccelChoice,
    pub qemu: QemuHostConfig,
    pub signups_per_hour: u32,
    /// Instances reach the outside through NAT.
    pub egress_nat: bool,
    pub log: String,
    pub quotas: BTreeMap<QuotaResource, QuotaRule>,
    pub peers: Vec<PeerRegion>,
    /// The public price list, every version.
    pub prices: crate::billing::prices::Prices,
    pub billing: BillingConfig,
    /// The file the clock reads, if not the system's clock.
    pub clock_file: Option<PathBuf>,
    /// Faults to inject into instance starts, for tests.
    pub fault_file: Option<PathBuf>,
}

impl Config {
    pub fn load(args: Args) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        // Absolute from here on: every path nubod hands to a child process
        // (QEMU, dnsmasq, which changes to `/`) must mean the same to it.
        let data_dir = absolute(
            args.data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(".nubo")),
        )?;
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let s3_listen = args
            .s3_listen
            .or(file.s3_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081)));
        let region = args
            .region
            .or(file.region)
            .unwrap_or_else(|| "local-1".into());
        if !valid_region_name(&region) {
            return Err(format!(
                "region name {region:?}: use 1-32 lower-case letters, digits and dashes"
            ));
        }
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| sqlite_url(&data_dir.join("region.db")));
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err("TLS needs both a certificate (tls_cert) and its key (tls_key)".into());
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_endpoint = args
            .public_endpoint
            .or(file.public_endpoint)
            .unwrap_or_else(|| format!("{scheme}://{listen}"));
        let public_s3_endpoint = args
            .public_s3_endpoint
            .or(file.public_s3_endpoint)
            .unwrap_or_else(|| format!("{scheme}://{s3_listen}"));
        let quotas = quota_rules(&file.quota_defaults, &file.quota_ceilings)?;
        let currency = file.currency.clone().unwrap_or_else(|| "USD".into());
        let prices = crate::billing::prices::Prices::new(&currency, &file.prices)?;
        let billing = file.billing.clone().unwrap_or_default();
        for (term, discount) in &billing.commitment_discounts {
            if crate::billing::commitments::term_months(term).is_none()
                || !(0.0..1.0).contains(discount)
            {
                return Err(format!(
                    "billing.commitment_discounts: {term:?} = {discount}: terms are like 1y or 3y, \
                     discounts from 0 to below 1"
                ));
            }
        }
        let images_dir = absolute(
            args.images_dir
                .or(file.images_dir)
                .unwrap_or_else(|| data_dir.join("images")),
        )?;
        Ok(Config {
            data_dir,
            listen,
            s3_listen,
            s3_domain: args
                .s3_domain
                .or(file.s3_domain)
                .unwrap_or_else(|| "s3.localhost".into()),
            hypervisor: args
                .hypervisor
                .or(file.hypervisor)
                .unwrap_or(Hypervisor::Qemu),
            images_dir,
            accel: args.accel.or(file.accel).unwrap_or_default(),
            qemu: file.qemu.unwrap_or_default(),
            region,
            database_url,
            public_endpoint: public_endpoint.trim_end_matches('/').to_string(),
            public_s3_endpoint: public_s3_endpoint.trim_end_matches('/').to_string(),
            tls,
            sim_hosts: args.sim_hosts.or(file.sim_hosts).unwrap_or(1).max(1),
            sim_host: file.sim_host.unwrap_or_default(),
            signups_per_hour: args
                .signups_per_hour
                .or(file.signups_per_hour)
                .unwrap_or(20),
            egress_nat: args.egress_nat.or(file.egress_nat).unwrap_or(false),
            log: args.log.or(file.log).unwrap_or_else(|| "info".into()),
            quotas,
            peers: file.regions,
            prices,
            billing,
            clock_file: args.clock_file.map(absolute).transpose()?,
            fault_file: args.fault_file.map(absolute).transpose()?,
        })
    }

    pub fn quota(&self, resource: QuotaResource) -> QuotaRule {
        self.quotas[&resource]
    }
}

fn parse_accel(s: &str) -> Result<AccelChoice, String> {
    match s {
        "auto" => Ok(AccelChoice::Auto),
        "kvm" => Ok(AccelChoice::Kvm),
        "tcg" => Ok(AccelChoice::Tcg),
        _ => Err("one of: auto, kvm, tcg".into()),
    }
}

fn absolute(path: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

pub fn valid_region_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The built-in quota rules, overridden by the file's `[quota_defaults]` and
/// `[quota_ceilings]` tables.
fn quota_rules(
    defaults: &BTreeMap<String, u64>,
    ceilings: &BTreeMap<String, u64>,
) -> Result<BTreeMap<QuotaResource, QuotaRule>, String> {
    for name in defaults.keys().chain(ceilings.keys()) {
        if QuotaResource::parse(name).is_none() {
            return Err(format!(
                "unknown quota resource {name:?} in the config file"
            ));
        }
    }
    let mut rules = BTreeMap::new();
    for resource in QuotaResource::ALL {
        let (default, ceiling) = match resource {
            QuotaResource::Vcpus => (32, 1024),
            QuotaResource::MemoryMib => (64 * 1024, 4 * 1024 * 1024),
            QuotaResource::Instances => (20, 1000),
            QuotaResource::VolumeGib => (500, 100 * 1024),
            QuotaResource::Buckets => (100, 1000),
        };
        let rule = QuotaRule {
            default: defaults.get(resource.as_str()).copied().unwrap_or(default),
            ceiling: ceilings.get(resource.as_str()).copied().unwrap_or(ceiling),
        };
        if rule.default > rule.ceiling {
            return Err(format!(
                "quota {}: the default {} is above the ceiling {}",
                resource.as_str(),
                rule.default,
                rule.ceiling
            ));
        }
        rules.insert(resource, rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("nubo-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("nubod.toml");
        std::fs::write(
            &file,
            "region = \"eu-1\"\nlisten = \"127.0.0.1:9000\"\n\
             [quota_defaults]\nvcpus = 8\n[[regions]]\nname = \"us-2\"\n\
             api_endpoint = \"http://a\"\ns3_endpoint = \"http://b\"\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Args::default()
        };
        let c = Config::load(args).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.region, "eu-1");
        assert_eq!(c.public_endpoint, "http://127.0.0.1:9100");
        assert_eq!(c.quota(QuotaResource::Vcpus).default, 8);
        assert_eq!(c.peers.len(), 1);
        assert!(
            c.database_url.starts_with("sqlite:///"),
            "{}",
            c.database_url
        );
        // What `cargo xtask up` passes: relative, and made absolute, for the
        // child processes that change directory (dnsmasq goes to `/`).
        assert!(c.data_dir.is_absolute() && c.data_dir.ends_with(".nubo"));
        assert!(c.images_dir.is_absolute() && c.images_dir.starts_with(&c.data_dir));

        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        let err = Config::load(Args {
            config: Some(file),
            ..Args::default()
        })
        .unwrap_err();
        assert!(err.contains("colour"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_takes_a_certificate_and_its_key_and_makes_endpoints_https() {
        let c = Config::load(Args {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..Args::default()
        })
        .unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.public_endpoint, "https://127.0.0.1:8080");
        assert_eq!(c.public_s3_endpoint, "https://127.0.0.1:8081");
        let half = Config::load(Args {
            tls_cert: Some("cert.pem".into()),
            ..Args::default()
        })
        .unwrap_err();
        assert!(half.contains("tls_key"), "{half}");
    }

    #[test]
    fn bad_region_names_and_quota_rules_are_refused() {
        let bad = Args {
            region: Some("Bad Region".into()),
            ..Args::default()
        };
        assert!(Config::load(bad).is_err());
        let mut defaults = BTreeMap::new();
        defaults.insert("vcpus".to_string(), 5000);
        assert!(quota_rules(&defaults, &BTreeMap::new()).is_err());
        defaults.clear();
        defaults.insert("gpus".to_string(), 1);
        assert!(quota_rules(&defaults, &BTreeMap::new()).is_err());
    }
}
