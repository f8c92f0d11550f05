//! signup, configure, whoami, regions, account close.

use nubo_api::account::{Account, CloseAccountRequest, SignupRequest, SignupResponse, WhoAmI};
use nubo_api::regions::Region;

use crate::args::{AccountCommand, Output};
use crate::client::{ClientError, Credentials};
use crate::commands::Context;
use crate::output::{note, print, print_record};
use crate::profile::{self, Profile};

pub async fn signup(ctx: &Context, email: &str, no_save: bool) -> Result<(), ClientError> {
    let client = ctx.public().await?;
    let created: SignupResponse = client
        .post(
            "/v1/signup",
            &SignupRequest {
                email: email.to_string(),
            },
        )
        .await?;
    let saved = if no_save {
        None
    } else {
        Some(profile::save(
            &ctx.global.profile,
            Profile {
                endpoint: Some(client.endpoint().to_string()),
                region: Some(created.region.clone()),
                access_key_id: Some(created.access_key_id.clone()),
                secret_access_key: Some(created.secret_access_key.clone()),
            },
        )?)
    };
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
    if let (Some(path), Output::Table) = (saved, ctx.output()) {
        note(format!(
            "saved as profile {:?} in {}; the secret is not shown again",
            ctx.global.profile,
            path.display()
        ));
    }
    Ok(())
}

pub async fn configure(ctx: &Context, id: String, secret: String) -> Result<(), ClientError> {
    let (endpoint, region) = ctx.region().await?;
    let client = ctx
        .client_as(Credentials::Key {
            id: id.clone(),
            secret: secret.clone(),
        })
        .await?;
    let who: WhoAmI = client.get("/v1/account").await?;
    let path = profile::save(
        &ctx.global.profile,
        Profile {
            endpoint: Some(endpoint),
            region: Some(region),
            access_key_id: Some(id),
            secret_access_key: Some(secret),
        },
    )?;
    note(format!(
        "profile {:?} in {} now acts as account {}",
        ctx.global.profile,
        path.display(),
        who.account.id
    ));
    Ok(())
}

pub async fn whoami(ctx: &Context) -> Result<(), ClientError> {
    let who: WhoAmI = ctx.client().await?.get("/v1/account").await?;
    print_record(
        ctx.output(),
        &who,
        vec![
            ("account_id", who.account.id.clone()),
            ("email", who.account.email.clone()),
            ("access_key_id", who.access_key_id.clone()),
            ("scope", who.scope.as_str().to_string()),
            ("region", who.region.clone()),
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
