//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nubo_api::compute::{InstanceState, MetadataTokens};
use nubo_api::security_groups::Protocol;

#[derive(Debug, Parser)]
#[command(
    name = "nubo",
    version,
    about = "The nubo cloud, from the command line",
    after_help = OUTPUT_RULE
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// API endpoint, e.g. http://127.0.0.1:8080 (default: the profile's).
    #[arg(long, global = true, env = "NUBO_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Region name; another region of the same cloud is found through the catalog.
    #[arg(long, global = true, env = "NUBO_REGION")]
    pub region: Option<String>,
    /// Profile in ~/.config/nubo/config.toml [env: NUBO_PROFILE] (default: the
    /// file's default profile; see `nubo profile list`).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Output format (see "Output" below).
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print each API request and the API's whole answer on stderr.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Trust only the CA certificates in this PEM file for https:// endpoints
    /// (a region with a private CA); default: the system's.
    #[arg(long, global = true, env = "NUBO_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

/// What `-o json` prints, for every command (the README says the same).
const OUTPUT_RULE: &str = "\
Output:
  -o table (the default) prints aligned tables for people: one line per row,
  long text cut with '…' (`show` prints it whole); --wait on a terminal shows
  progress on stderr.
  -o json prints the body of the API's answer, unchanged. A list command reads
  every page and prints one page, {\"items\": [...]}, holding them all. With
  --wait, the same answer, with each resource as last read once the wait ended
  (a deleted one: as the delete answered). A command whose answer has no body
  (deleting a key) prints nothing; commands that call no API (profile,
  completions) print what they read locally.
  -o csv prints the table's rows (an invoice: the API's CSV export).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    /// The table's rows as CSV (an invoice: its CSV export).
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account; prints its credentials and saves them as a new profile.
    ///
    /// The profile is named after the account unless --profile names it; the
    /// first profile saved becomes the default.
    Signup {
        #[arg(long)]
        email: String,
        /// Do not save the credentials in a profile.
        #[arg(long)]
        no_save: bool,
        /// Replace the profile --profile names if it exists (its secret is lost).
        #[arg(long)]
        force: bool,
    },
    /// Save credentials and an endpoint as a profile.
    ///
    /// The profile is named after the account unless --profile names it; the
    /// first profile saved becomes the default.
    Configure {
        #[arg(long, env = "NUBO_ACCESS_KEY_ID")]
        access_key_id: String,
        #[arg(long, env = "NUBO_SECRET_ACCESS_KEY", hide_env_values = true)]
        secret_access_key: String,
        /// Replace a profile that holds another access key (its secret is lost).
        #[arg(long)]
        force: bool,
    },
    /// Profiles saved in ~/.config/nubo/config.toml.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Show the calling account and key.
    Whoami,
    /// The account itself.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Access keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Regions of this cloud.
    #[command(subcommand)]
    Regions(RegionsCommand),
    /// Quotas of the account.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Instance types and prices.
    #[command(subcommand, name = "instance-types")]
    InstanceTypes(ListOnly),
    /// Images.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// SSH key pairs for instances.
    #[command(subcommand, name = "key-pairs")]
    KeyPairs(KeyPairsCommand),
    /// Instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Private networks for instances.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Security groups: the firewalls of a network's instances.
    #[command(subcommand, name = "security-group")]
    SecurityGroup(SecurityGroupCommand),
    /// Block volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Snapshots of volumes, kept in object storage.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Usage, metered per second.
    #[command(subcommand)]
    Billing(BillingCommand),
    /// The public price list.
    #[command(subcommand)]
    Pricing(ListOnly),
    /// Buckets of object storage (for objects, use any S3 client).
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Operator commands (need the operator token).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// The saved profiles (their secrets stay in the file).
    List,
    /// Make a profile the default: commands use it unless --profile or
    /// NUBO_PROFILE names another.
    Use { name: String },
    /// Print the credentials in use as shell `export` lines for AWS's
    /// clients and SDKs (aws-cli, boto3): `eval "$(nubo profile export)"`,
    /// then `aws s3 ls` reaches the region's object storage.
    Export,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Close the account: keys stop working, instances are terminated.
    Close {
        /// The account id, repeated to confirm.
        #[arg(long)]
        confirm: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an access key (the secret is printed once).
    Create {
        #[arg(long, value_enum, default_value_t = Scope::Full)]
        scope: Scope,
    },
    List,
    Show {
        key_id: String,
    },
    Enable {
        key_id: String,
    },
    Disable {
        key_id: String,
    },
    Delete {
        key_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    Full,
    ReadOnly,
}

#[derive(Debug, Subcommand)]
pub enum RegionsCommand {
    List,
}

#[derive(Debug, Subcommand)]
pub enum ListOnly {
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Limits, usage and ceilings.
    Show,
    /// Raise (or lower) a limit, up to the operator's ceiling.
    Raise {
        /// vcpus, memory_mib, instances, volume_gib or buckets.
        #[arg(long)]
        resource: String,
        #[arg(long)]
        to: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    List,
    Create {
        name: String,
        /// Let anyone read the bucket's objects.
        #[arg(long)]
        public_read: bool,
    },
    /// Delete an empty bucket.
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    List,
    /// Create a network with a private address range.
    Create {
        #[arg(long)]
        name: String,
        /// For example 10.20.0.0/24.
        #[arg(long)]
        cidr: String,
    },
    /// Show a network, by id or name.
    Show {
        network: String,
    },
    /// Delete a network no instance uses.
    Delete {
        network: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecurityGroupCommand {
    List,
    /// Create a group; it lets everything in from its own members and
    /// everything out.
    Create {
        name: String,
        /// Network (id or name); the account's default network if absent.
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a group (id or name) and its rules.
    Show {
        group: String,
    },
    /// Delete a group no instance is a member of.
    Delete {
        group: String,
    },
    /// Let traffic in from a range or group (or, with --to, out to one).
    Allow(AllowArgs),
    /// Remove a rule (its id is in `show`).
    Revoke {
        group: String,
        rule_id: String,
    },
}

#[derive(Debug, Args)]
pub struct AllowArgs {
    pub group: String,
    /// tcp, udp, icmp or all.
    #[arg(long, default_value = "tcp", value_parser = parse_protocol)]
    pub proto: Protocol,
    /// A port or a range, e.g. 80 or 8000-8100 (TCP and UDP; every port if absent).
    #[arg(long, value_parser = parse_ports)]
    pub port: Option<(u16, u16)>,
    /// Let connections in from this range, e.g. 0.0.0.0/0.
    #[arg(long, group = "peer")]
    pub from: Option<String>,
    /// Let connections in from the members of this group.
    #[arg(long, group = "peer")]
    pub from_group: Option<String>,
    /// Let connections out to this range.
    #[arg(long, group = "peer")]
    pub to: Option<String>,
    /// Let connections out to the members of this group.
    #[arg(long, group = "peer")]
    pub to_group: Option<String>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("{s:?} is not tcp, udp, icmp or all"))
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port"))
    };
    match s.split_once('-') {
        Some((a, b)) => Ok((port(a)?, port(b)?)),
        None => port(s).map(|p| (p, p)),
    }
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    List,
    /// Create a volume, blank or from a snapshot.
    Create {
        /// GiB (default with --from-snapshot: the snapshot's size).
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        name: Option<String>,
        /// Restore this snapshot into the new volume.
        #[arg(long)]
        from_snapshot: Option<String>,
        /// key=value; repeat for several.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        #[command(flatten)]
        wait: Wait,
    },
    Show {
        volume_id: String,
    },
    /// Attach a volume to an instance on its host; a running guest sees a new
    /// disk at /dev/disk/by-id/virtio-<volume id>.
    Attach {
        volume_id: String,
        #[arg(long)]
        instance: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Detach a volume; unmount it in the guest first.
    Detach {
        volume_id: String,
        /// Pull it even from a guest that does not let go (unwritten data is lost).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Grow a detached volume.
    Resize {
        volume_id: String,
        /// The new size in GiB.
        #[arg(long)]
        size: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Replace the volume's tags (key=value, repeat for several; none clears them).
    Tag {
        volume_id: String,
        #[arg(value_parser = parse_tag)]
        tags: Vec<(String, String)>,
    },
    /// Delete a volume that is not attached.
    Delete {
        volume_id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// What the account's resources used: instances by the second while
    /// running (at least 60 s per start), storage by the GiB-second.
    Usage {
        #[command(flatten)]
        window: BillingWindow,
    },
    /// What the usage costs so far at the prices in effect, commitments
    /// applied, and a forecast to the month's end.
    Cost {
        #[command(flatten)]
        window: BillingWindow,
    },
    /// A month's invoice: final once the month is closed, the month so far
    /// before (`-o json` or `-o csv` to export it).
    Invoice {
        /// YYYY-MM; default: this month.
        #[arg(long)]
        month: Option<String>,
    },
    /// The account's invoices, newest first.
    Invoices,
    /// Commitments: a spend per hour on compute for a term, at a discount.
    #[command(subcommand)]
    Commitment(CommitmentCommand),
    /// Monthly budgets that raise alerts as costs cross their thresholds.
    #[command(subcommand)]
    Budget(BudgetCommand),
}

#[derive(Debug, clap::Args)]
pub struct BillingWindow {
    /// RFC 3339 or YYYY-MM-DD (UTC); default: the start of this month.
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 or YYYY-MM-DD (UTC); default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// resource, service, tag (the whole tag set) or tag:<key>.
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CommitmentCommand {
    /// Commit to a spend per hour on compute for a term, from now. It is
    /// owed every hour of the term, used or not, and cannot be cancelled.
    Create {
        /// In the region's currency, e.g. 0.50.
        #[arg(long)]
        per_hour: f64,
        /// 1y or 3y.
        #[arg(long)]
        term: String,
    },
    List,
    Show {
        commitment_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Create a monthly budget.
    Create {
        #[arg(long, default_value = "monthly")]
        name: String,
        /// In the region's currency.
        #[arg(long)]
        monthly: f64,
        /// Percentages of the monthly amount to alert at, e.g. 80% (repeat
        /// or separate with commas; default 80% and 100%).
        #[arg(long, value_delimiter = ',', value_parser = parse_percent)]
        alert_at: Vec<u32>,
        /// An http:// URL each alert is POSTed to as JSON.
        #[arg(long)]
        webhook: Option<String>,
    },
    List,
    Show {
        budget_id: String,
    },
    Delete {
        budget_id: String,
    },
    /// The alerts budgets raised, newest first.
    Alerts,
}

fn parse_percent(s: &str) -> Result<u32, String> {
    s.trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?}: a percentage such as 80%"))
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a volume, attached or not.
    Create {
        volume_id: String,
        #[arg(long)]
        description: Option<String>,
        /// key=value; repeat for several.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        #[command(flatten)]
        wait: Wait,
    },
    List {
        /// Only snapshots of this volume.
        #[arg(long)]
        volume: Option<String>,
    },
    Show {
        snapshot_id: String,
    },
    /// Delete a snapshot; chunks other snapshots share stay.
    Delete {
        snapshot_id: String,
    },
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

#[derive(Debug, Subcommand)]
pub enum KeyPairsCommand {
    /// Create an ed25519 key pair; prints the private key (only this once).
    Create {
        name: String,
    },
    /// Import the public half of a key pair you hold.
    Import {
        name: String,
        #[arg(long)]
        public_key_file: PathBuf,
    },
    List,
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    List,
    Show {
        image: String,
    },
    /// Register a private image from a kernel (and initrd, and root disk).
    Register(RegisterImageArgs),
    /// Delete a private image.
    Delete {
        image: String,
    },
}

#[derive(Debug, Args)]
pub struct RegisterImageArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub description: Option<String>,
    /// Kernel: an uncompressed vmlinux (PVH) or a bzImage.
    #[arg(long)]
    pub kernel: PathBuf,
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Root disk, raw or qcow2; each instance boots a copy-on-write overlay.
    #[arg(long)]
    pub disk: Option<PathBuf>,
    #[arg(long, value_parser = ["raw", "qcow2"], requires = "disk")]
    pub disk_format: Option<String>,
    /// Kernel command line, e.g. "console=ttyS0 root=/dev/vda".
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Line the guest prints on its console once it is up.
    #[arg(long)]
    pub ready_marker: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Launch one or more instances.
    Launch(Box<LaunchArgs>),
    List {
        #[arg(long, value_parser = parse_state)]
        state: Option<InstanceState>,
    },
    Show {
        instance_id: String,
    },
    Stop(Transition),
    Start(Transition),
    Reboot(Transition),
    Terminate(Transition),
    /// Print the end of the instance's serial console.
    Console {
        instance_id: String,
    },
    /// Reach a TCP port of a running instance on its host's address; prints
    /// host:port.
    Publish {
        instance_id: String,
        #[arg(long)]
        port: u16,
    },
    /// List the instance's published ports.
    Ports {
        instance_id: String,
    },
    /// Show the instance's security groups, or replace them with --set.
    SecurityGroups {
        instance_id: String,
        /// A group (id or name) the instance is to be a member of; repeat for several.
        #[arg(long = "set")]
        set: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Image id or public image name (with --root-volume: the volume's image).
    #[arg(long, required_unless_present = "root_volume")]
    pub image: Option<String>,
    /// Instance type, e.g. n1.nano.
    #[arg(long = "type")]
    pub instance_type: String,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[arg(long)]
    pub name: Option<String>,
    /// File whose content is handed to the guest as user-data.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Idempotency token: retrying with it never launches twice.
    #[arg(long)]
    pub client_token: Option<String>,
    /// Key pair whose public key the guest installs.
    #[arg(long = "key")]
    pub key_name: Option<String>,
    /// Network (id or name) to join; the account's default network if absent.
    #[arg(long)]
    pub network: Option<String>,
    /// Security group (id or name) of the network; repeat for several. The
    /// network's default group if absent.
    #[arg(long = "security-group")]
    pub security_groups: Vec<String>,
    /// `required`: the guest's metadata service answers only IMDSv2 requests.
    #[arg(long, value_parser = parse_tokens)]
    pub metadata_tokens: Option<MetadataTokens>,
    /// GiB of the root volume (images with a disk; default: the disk's size).
    #[arg(long)]
    pub root_volume_size: Option<u64>,
    /// Keep the root volume as a volume when the instance terminates.
    #[arg(long)]
    pub keep_root_volume: bool,
    /// Boot from this available volume (a kept root volume).
    #[arg(long, conflicts_with_all = ["root_volume_size", "count"])]
    pub root_volume: Option<String>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Args)]
pub struct Transition {
    pub instance_id: String,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Wait {
    /// Return once the change is complete.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    #[command(subcommand)]
    Hosts(AdminHostsCommand),
    /// Billing: close a month's invoices.
    #[command(subcommand)]
    Billing(AdminBillingCommand),
    /// Save a consistent backup of the running region (its store, keys,
    /// object data, images and volumes) as a tar archive; restore it with
    /// `nubod restore --from FILE`.
    Backup {
        /// Where to write the archive (written whole or not at all).
        #[arg(long)]
        to: PathBuf,
        /// The region's operator token (from its data dir).
        #[arg(long, env = "NUBO_OPERATOR_TOKEN", hide_env_values = true)]
        operator_token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminBillingCommand {
    /// Close a month that has ended, for every account (months also close
    /// by themselves); closing again reports whether each invoice came out
    /// the same.
    Close {
        /// YYYY-MM.
        #[arg(long)]
        month: String,
        /// The region's operator token (from its data dir).
        #[arg(long, env = "NUBO_OPERATOR_TOKEN", hide_env_values = true)]
        operator_token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminHostsCommand {
    List {
        /// The region's operator token (from its data dir).
        #[arg(long, env = "NUBO_OPERATOR_TOKEN", hide_env_values = true)]
        operator_token: String,
    },
}

fn parse_tokens(s: &str) -> Result<MetadataTokens, String> {
    match s {
        "optional" => Ok(MetadataTokens::Optional),
        "required" => Ok(MetadataTokens::Required),
        _ => Err("optional or required".into()),
    }
}

fn parse_state(s: &str) -> Result<InstanceState, String> {
    InstanceState::parse(s).ok_or_else(|| {
        format!(
            "unknown state; one of: {}",
            InstanceState::ALL.map(|s| s.as_str()).join(", ")
        )
    })
}
