//! signup, configure, whoami, regions, account close.

use nubo_api::account::{Account, CloseAccountRequest, SignupRequest, SignupResponse, WhoAmI};
use nubo_api::regions::Region;

use crate::args::{AccountCommand, Output};
use crate::client::{ClientError, Credentials};
use crate::commands::Context;
use crate::output::{note, print, print_record};
use crate::profile::{self, Profile, Profiles};

pub async fn signup(
    ctx: &Context,
    email: &str,
    no_save: bool,
    force: bool,
) -> Result<(), ClientError> {
    let named = profile::named(ctx.global.profile.as_deref());
    // Refused before the account exists, so that no secret is lost.
    if let Some((name, source)) = &named
        && !no_save
        && !force
        && ctx.profiles.get(name).is_some()
    {
        return Err(ClientError::Usage(format!(
            "profile {name:?} ({}) already exists in {}; signing up would replace its \
             credentials. Name another with --profile, or replace it with --force",
            source.describe(),
            profile::shown_path()
        )));
    }
    let client = ctx.public().await?;
    let created: SignupResponse = client
        .post(
            "/v1/signup",
            &SignupRequest {
                email: email.to_string(),
            },
        )
        .await?;
    print_record(
        ctx.output(),
        &created,
        vec![
            ("account_id", created.account_id.clone()),
            ("access_key_id", created.access_key_id.clone()),
            ("secret_access_key", created.secret_access_key.clone()),
            ("region", created.region.clone()),
        ],
    )?;
    if no_save {
        return Ok(());
    }
    let name = named.map_or_else(|| created.account_id.clone(), |(name, _)| name);
    let saved = Profile {
        endpoint: Some(client.endpoint().to_string()),
        region: Some(created.region.clone()),
        access_key_id: Some(created.access_key_id.clone()),
        secret_access_key: Some(created.secret_access_key.clone()),
        s3_endpoint: Some(created.s3_endpoint.clone()),
    };
    let is_default = Profiles::read()?.save(&name, saved)?;
    if ctx.output() == Output::Table {
        note(saved_note(
            &name,
            is_default,
            "the secret is not shown again",
        ));
    }
    Ok(())
}

/// Where a profile went and how to use it.
fn saved_note(name: &str, is_default: bool, then: &str) -> String {
    let path = profile::shown_path();
    if is_default {
        format!("saved as profile {name:?} in {path}, the default profile; {then}")
    } else {
        format!(
            "saved as profile {name:?} in {path}; {then}. Use it with --profile {name} \
             or NUBO_PROFILE={name}, or make it the default: nubo profile use {name}"
        )
    }
}

pub async fn configure(
    ctx: &Context,
    id: String,
    secret: String,
    force: bool,
) -> Result<(), ClientError> {
    let (endpoint, region) = ctx.region().await?;
    let s3_endpoint = ctx
        .public()
        .await?
        .regions()
        .await?
        .into_iter()
        .find(|r| r.name == region)
        .map(|r| r.s3_endpoint);
    let client = ctx
        .client_as(Credentials::Key {
            id: id.clone(),
            secret: secret.clone(),
        })
        .await?;
    let who: WhoAmI = client.get("/v1/account").await?;
    let name = profile::named(ctx.global.profile.as_deref())
        .map_or_else(|| who.account.id.clone(), |(name, _)| name);
    if let Some(held) = ctx
        .profiles
        .get(&name)
        .and_then(|p| p.access_key_id.as_ref())
        && *held != id
        && !force
    {
        return Err(ClientError::Usage(format!(
            "profile {name:?} in {} holds another access key, {held}; replace it with \
             --force (its secret is lost), or name another profile with --profile",
            profile::shown_path()
        )));
    }
    let saved = Profile {
        endpoint: Some(endpoint),
        region: Some(region),
        access_key_id: Some(id),
        secret_access_key: Some(secret),
        s3_endpoint,
    };
    let is_default = Profiles::read()?.save(&name, saved)?;
    let then = format!("it acts as account {}", who.account.id);
    match ctx.output() {
        Output::Json => crate::output::json(&who),
        Output::Table | Output::Csv => {
            note(saved_note(&name, is_default, &then));
            Ok(())
        }
    }
}

pub async fn whoami(ctx: &Context) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let who: WhoAmI = client.get("/v1/account").await?;
    print_record(
        ctx.output(),
        &who,
        vec![
            ("account_id", who.account.id.clone()),
            ("email", who.account.email.clone()),
            ("access_key_id", who.access_key_id.clone()),
            ("scope", who.scope.as_str().to_string()),
            ("region", who.region.clone()),
            ("endpoint", client.endpoint().to_string()),
            ("credentials", ctx.credentials_source()),
        ],
    )
}

pub async fn regions(ctx: &Context) -> Result<(), ClientError> {
    let regions: Vec<Region> = ctx.public().await?.get("/v1/regions").await?;
    let rows = regions
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.api_endpoint.clone(),
                r.s3_endpoint.clone(),
                if r.current { "*".into() } else { String::new() },
            ]
        })
        .collect();
    print(
        ctx.output(),
        &regions,
        &["name", "api", "s3", "current"],
        rows,
    )
}

pub async fn run(ctx: &Context, cmd: AccountCommand) -> Result<(), ClientError> {
    match cmd {
        AccountCommand::Close { confirm } => {
            let account: Account = ctx
                .client()
                .await?
                .post(
                    "/v1/account/close",
                    &CloseAccountRequest {
                        confirm_account_id: confirm,
                    },
                )
                .await?;
            print_record(
                ctx.output(),
                &account,
                vec![
                    ("account_id", account.id.clone()),
                    ("status", "closed".into()),
                ],
            )
        }
    }
}
