//! nubo key-pairs …

use nubo_api::compute::{CreateKeyPairRequest, CreatedKeyPair, KeyPair};

use crate::args::{KeyPairsCommand, Output};
use crate::client::ClientError;
use crate::commands::{Context, all_pages};
use crate::output::{note, print, print_record, print_text};

const HEADERS: &[&str] = &["name", "type", "fingerprint", "created"];

fn row(k: &KeyPair) -> Vec<String> {
    vec![
        k.name.clone(),
        k.key_type.clone(),
        k.fingerprint.clone(),
        k.created_at.clone(),
    ]
}

pub async fn run(ctx: &Context, cmd: KeyPairsCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    let create =
        |name: String, public_key: Option<String>| CreateKeyPairRequest { name, public_key };
    match cmd {
        KeyPairsCommand::Create { name } => {
            let k: CreatedKeyPair = client.post("/v1/key-pairs", &create(name, None)).await?;
            // The private key alone on stdout, so that `> key.pem` saves it.
            print_text(out, &k, k.private_key.as_deref().unwrap_or_default())?;
            if out != Output::Json {
                note(format!(
                    "key pair {} ({}); the private key is not shown again",
                    k.key_pair.name, k.key_pair.fingerprint
                ));
            }
            Ok(())
        }
        KeyPairsCommand::Import {
            name,
            public_key_file,
        } => {
            let text = std::fs::read_to_string(&public_key_file)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", public_key_file.display())))?;
            let k: CreatedKeyPair = client
                .post("/v1/key-pairs", &create(name, Some(text)))
                .await?;
            print(out, &k, HEADERS, vec![row(&k.key_pair)])
        }
        KeyPairsCommand::List => {
            let page = all_pages::<KeyPair>(&client, "/v1/key-pairs").await?;
            print(out, &page, HEADERS, page.items.iter().map(row).collect())
        }
        KeyPairsCommand::Show { name } => {
            let k: KeyPair = client.get(&format!("/v1/key-pairs/{name}")).await?;
            print_record(
                out,
                &k,
                vec![
                    ("name", k.name.clone()),
                    ("type", k.key_type.clone()),
                    ("fingerprint", k.fingerprint.clone()),
                    ("public_key", k.public_key.clone()),
                    ("created", k.created_at.clone()),
                ],
            )
        }
        KeyPairsCommand::Delete { name } => {
            client
                .delete_empty(&format!("/v1/key-pairs/{name}"))
                .await?;
            note(format!("deleted key pair {name}"));
            Ok(())
        }
    }
}
