//! nubo profile … (the config file only; no API call)

use std::collections::BTreeMap;

use serde::Serialize;

use crate::args::Output;
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
        ProfileCommand::Export => export(ctx),
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

/// The credentials in use, as AWS's clients read them from the environment:
/// shell `export` lines, or a JSON object of the same variables.
fn export(ctx: &Context) -> Result<(), ClientError> {
    let (id, secret) = ctx.key()?;
    let region = ctx
        .global
        .region
        .clone()
        .or_else(|| ctx.profile.region.clone())
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "profile {:?} names no region: name one with --region",
                ctx.profile_name
            ))
        })?;
    let s3 = ctx.profile.s3_endpoint.clone().ok_or_else(|| {
        ClientError::Usage(format!(
            "profile {:?} does not say where the region's S3 endpoint is (`nubo regions \
             list` does): save it again with `nubo configure`",
            ctx.profile_name
        ))
    })?;
    let vars = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID", id),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_ENDPOINT_URL_S3", s3),
    ]);
    match ctx.output() {
        Output::Json => crate::output::json(&vars),
        Output::Table | Output::Csv => {
            let lines: String = vars
                .iter()
                .map(|(name, value)| format!("export {name}={}\n", shell_quoted(value)))
                .collect();
            crate::output::write(&lines)
        }
    }
}

/// `value` as one shell word.
fn shell_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_single_shell_words() {
        assert_eq!(shell_quoted("abc-_/+="), "'abc-_/+='");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
