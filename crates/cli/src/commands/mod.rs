//! One module per group of commands; this one resolves where and as whom to call.

mod account;
mod admin;
mod billing;
mod compute;
mod key_pairs;
mod keys;
mod networks;
mod quota;
mod security_groups;
mod storage;
mod volumes;

use clap::CommandFactory;

use crate::args::{Cli, Command, Global, Output};
use crate::client::{Client, ClientError, Credentials};
use crate::profile::{self, Profile};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Global options merged with the profile: where, as whom, how to print.
pub struct Context {
    pub global: Global,
    pub profile: Profile,
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
        let regions = Client::regions(&endpoint).await?;
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
        let id = std::env::var("NUBO_ACCESS_KEY_ID")
            .ok()
            .or_else(|| self.profile.access_key_id.clone());
        let secret = std::env::var("NUBO_SECRET_ACCESS_KEY")
            .ok()
            .or_else(|| self.profile.secret_access_key.clone());
        let (Some(id), Some(secret)) = (id, secret) else {
            return Err(ClientError::Usage(format!(
                "no credentials in profile {:?}: run `nubo signup --email …` or `nubo configure`, \
                 or set NUBO_ACCESS_KEY_ID and NUBO_SECRET_ACCESS_KEY",
                self.global.profile
            )));
        };
        let (endpoint, region) = self.region().await?;
        Ok(Client::new(
            &endpoint,
            &region,
            Credentials::Key { id, secret },
        ))
    }

    /// A client for calls that need no credentials.
    pub async fn public(&self) -> Result<Client, ClientError> {
        let (endpoint, region) = self.region().await?;
        Ok(Client::new(&endpoint, &region, Credentials::None))
    }
}

pub async fn run(cli: Cli) -> Result<(), ClientError> {
    crate::client::trust(cli.global.ca_bundle.as_deref())?;
    let profile = profile::load(&cli.global.profile)?;
    let ctx = Context {
        global: cli.global,
        profile,
    };
    match cli.command {
        Command::Signup { email, no_save } => account::signup(&ctx, &email, no_save).await,
        Command::Configure {
            access_key_id,
            secret_access_key,
        } => account::configure(&ctx, access_key_id, secret_access_key).await,
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
            clap_complete::generate(shell, &mut Cli::command(), "nubo", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Fetches every page of a list endpoint.
pub async fn all_pages<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<Vec<T>, ClientError> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}limit=1000&page_token={t}"),
            None => format!("{path}{sep}limit=1000"),
        };
        let page: nubo_api::page::Page<T> = client.get(&url).await?;
        items.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(items),
        }
    }
}
