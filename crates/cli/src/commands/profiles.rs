//! nubo profile … (the config file only; no API call)

use serde::Serialize;

use crate::args::ProfileCommand;
use crate::client::ClientError;
use crate::commands::Context;
use crate::output::{note, opt, print};

/// What `profile list` tells of a profile: everything but its secret.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    default: bool,
    endpoint: Option<&'a str>,
    region: Option<&'a str>,
    access_key_id: Option<&'a str>,
}

pub fn run(ctx: &Context, cmd: ProfileCommand) -> Result<(), ClientError> {
    match cmd {
        ProfileCommand::List => {
            let default = ctx.profiles.default_name();
            let listed: Vec<Listed> = ctx
                .profiles
                .iter()
                .map(|(name, p)| Listed {
                    name,
                    default: name == default,
                    endpoint: p.endpoint.as_deref(),
                    region: p.region.as_deref(),
                    access_key_id: p.access_key_id.as_deref(),
                })
                .collect();
            let rows = listed
                .iter()
                .map(|l| {
                    vec![
                        l.name.to_string(),
                        if l.default { "*" } else { "" }.into(),
                        opt(&l.endpoint.map(str::to_string)),
                        opt(&l.region.map(str::to_string)),
                        opt(&l.access_key_id.map(str::to_string)),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &listed,
                &["name", "default", "endpoint", "region", "access_key_id"],
                rows,
            )
        }
        ProfileCommand::Use { name } => {
            ctx.profiles.clone().make_default(&name)?;
            note(format!(
                "profile {name:?} is the default: commands use it unless --profile or \
                 NUBO_PROFILE names another"
            ));
            Ok(())
        }
    }
}
