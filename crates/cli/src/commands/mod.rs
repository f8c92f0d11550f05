//! One module per group of commands; this one resolves where and as whom to call.

mod account;
mod admin;
mod billing;
mod compute;
mod key_pairs;
mod keys;
mod networks;
mod profiles;
mod quota;
mod security_groups;
mod storage;
mod volumes;

use clap::CommandFactory;
use nubo_api::page::Page;

use crate::args::{Cli, Command, Global, Output};
use crate::client::{Client, ClientError, Credentials};
use crate::profile::{self, Profile, Profiles, Source};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Global options merged with the profile: where, as whom, how to print.
pub struct Context {
    pub global: Global,
    pub profiles: Profiles,
    /// The profile in use (empty if the file has none of that name), its
    /// name, and who named it.
    pub profile: Profile,
    pub profile_name: String,
    pub profile_source: Source,
}

impl Context {
    pub fn output(&self) -> Output {
        self.global.output
    }

    /// The endpoint named by flag or environment, else the profile's.
    pub fn endpoint(&self) -> String {
        self.global
            .endpoint
            .clone()
            .or_else(|| self.profile.endpoint.clone())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
    }

    /// The endpoint and name of the region to talk to. A region other than the
    /// profile's is looked up in the endpoint's catalog.
    pub async fn region(&self) -> Result<(String, String), ClientError> {
        let endpoint = self.endpoint();
        // The profile's region goes with the profile's endpoint.
        let explicit_endpoint = self
            .global
            .endpoint
            .as_ref()
            .is_some_and(|e| Some(e) != self.profile.endpoint.as_ref());
        match (&self.global.region, &self.profile.region) {
            (None, Some(saved)) if !explicit_endpoint => return Ok((endpoint, saved.clone())),
            (Some(wanted), Some(saved)) if wanted == saved && !explicit_endpoint => {
                return Ok((endpoint, saved.clone()));
            }
            _ => {}
        }
        let regions = Client::new(&endpoint, "", Credentials::None)
            .debugging(self.global.debug)
            .regions()
            .await?;
        let found = match &self.global.region {
            Some(wanted) => regions.iter().find(|r| &r.name == wanted).ok_or_else(|| {
                ClientError::Usage(format!(
                    "{endpoint} knows no region {wanted:?}; it knows: {}",
                    regions
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => regions
                .iter()
                .find(|r| r.current)
                .ok_or_else(|| ClientError::Other(format!("{endpoint} names no current region")))?,
        };
        let endpoint = if found.current {
            endpoint
        } else {
            found.api_endpoint.clone()
        };
        Ok((endpoint, found.name.clone()))
    }

    /// A client that signs with the account's key.
    pub async fn client(&self) -> Result<Client, ClientError> {
        let (id, secret) = self.key()?;
        self.client_as(Credentials::Key { id, secret }).await
    }

    /// The access key in use (id, secret): the environment's, else the
    /// profile's.
    pub fn key(&self) -> Result<(String, String), ClientError> {
        let id = std::env::var("NUBO_ACCESS_KEY_ID")
            .ok()
            .or_else(|| self.profile.access_key_id.clone());
        let secret = std::env::var("NUBO_SECRET_ACCESS_KEY")
            .ok()
            .or_else(|| self.profile.secret_access_key.clone());
        match (id, secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(ClientError::Usage(self.no_credentials())),
        }
    }

    /// Why there are no credentials, and how to get some.
    fn no_credentials(&self) -> String {
        let get = "run `nubo signup --email …` or `nubo configure`, \
                   or set NUBO_ACCESS_KEY_ID and NUBO_SECRET_ACCESS_KEY";
        let name = &self.profile_name;
        match self.profiles.get(name) {
            Some(_) => format!("profile {name:?} holds no credentials: {get}"),
            None if self.profiles.iter().next().is_none() => format!("no credentials: {get}"),
            None => format!(
                "no profile {name:?} ({}) in {}; it holds: {}. Name one with --profile \
                 or NUBO_PROFILE, or make one the default with `nubo profile use NAME`",
                self.profile_source.describe(),
                profile::shown_path(),
                self.profiles.names()
            ),
        }
    }

    /// Where the credentials come from, for people.
    pub fn credentials_source(&self) -> String {
        if std::env::var_os("NUBO_ACCESS_KEY_ID").is_some() {
            return "NUBO_ACCESS_KEY_ID and NUBO_SECRET_ACCESS_KEY".into();
        }
        format!(
            "profile {} ({})",
            self.profile_name,
            self.profile_source.describe()
        )
    }

    /// A client for calls that need no credentials.
    pub async fn public(&self) -> Result<Client, ClientError> {
        self.client_as(Credentials::None).await
    }

    /// A client of the region that authenticates with `credentials`.
    pub async fn client_as(&self, credentials: Credentials) -> Result<Client, ClientError> {
        let (endpoint, region) = self.region().await?;
        Ok(Client::new(&endpoint, &region, credentials).debugging(self.global.debug))
    }
}

pub async fn run(cli: Cli) -> Result<(), ClientError> {
    crate::client::trust(cli.global.ca_bundle.as_deref())?;
    let profiles = Profiles::read()?;
    let (profile_name, profile_source) = profiles.select(cli.global.profile.as_deref());
    let ctx = Context {
        profile: profiles.get(&profile_name).cloned().unwrap_or_default(),
        profiles,
        profile_name,
        profile_source,
        global: cli.global,
    };
    match cli.command {
        Command::Signup {
            email,
            no_save,
            force,
        } => account::signup(&ctx, &email, no_save, force).await,
        Command::Configure {
            access_key_id,
            secret_access_key,
            force,
        } => account::configure(&ctx, access_key_id, secret_access_key, force).await,
        Command::Profile(cmd) => profiles::run(&ctx, cmd),
        Command::Whoami => account::whoami(&ctx).await,
        Command::Account(cmd) => account::run(&ctx, cmd).await,
        Command::Keys(cmd) => keys::run(&ctx, cmd).await,
        Command::Regions(_) => account::regions(&ctx).await,
        Command::Quota(cmd) => quota::run(&ctx, cmd).await,
        Command::InstanceTypes(_) => compute::instance_types(&ctx).await,
        Command::Images(cmd) => compute::images(&ctx, cmd).await,
        Command::KeyPairs(cmd) => key_pairs::run(&ctx, cmd).await,
        Command::Instance(cmd) => compute::instances(&ctx, cmd).await,
        Command::Network(cmd) => networks::run(&ctx, cmd).await,
        Command::SecurityGroup(cmd) => security_groups::run(&ctx, cmd).await,
        Command::Volume(cmd) => volumes::run(&ctx, cmd).await,
        Command::Snapshot(cmd) => volumes::snapshots(&ctx, cmd).await,
        Command::Billing(cmd) => billing::run(&ctx, cmd).await,
        Command::Pricing(_) => billing::pricing(&ctx).await,
        Command::Bucket(cmd) => storage::run(&ctx, cmd).await,
        Command::Admin(cmd) => admin::run(&ctx, cmd).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nubo", &mut script);
            crate::output::write(&String::from_utf8_lossy(&script))
        }
    }
}

/// Reads every page of a list endpoint into one: what the API answers, whole,
/// with no `next_page_token`.
pub async fn all_pages<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<Page<T>, ClientError> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}limit=1000&page_token={t}"),
            None => format!("{path}{sep}limit=1000"),
        };
        let page: Page<T> = client.get(&url).await?;
        items.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => {
                return Ok(Page {
                    items,
                    next_page_token: None,
                });
            }
        }
    }
}
