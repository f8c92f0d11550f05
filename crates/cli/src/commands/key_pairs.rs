//! nubo key-pairs …

use nubo_api::compute::{CreateKeyPairRequest, CreatedKeyPair, KeyPair};

use crate::args::{KeyPairsCommand, Output};
use crate::client::ClientError;
use crate::commands::{Context, all_pages};
use crate::output::print;

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
            match out {
                Output::Json => print(out, &k, &[], vec![]),
                Output::Table | Output::Csv => {
                    // The private key alone on stdout, so that `> key.pem` saves it.
                    print!("{}", k.private_key.as_deref().unwrap_or_default());
                    eprintln!(
                        "key pair {} ({}); the private key is not shown again",
                        k.key_pair.name, k.key_pair.fingerprint
                    );
                    Ok(())
                }
            }
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
            let keys: Vec<KeyPair> = all_pages(&client, "/v1/key-pairs").await?;
            print(out, &keys, HEADERS, keys.iter().map(row).collect())
        }
        KeyPairsCommand::Show { name } => {
            let k: KeyPair = client.get(&format!("/v1/key-pairs/{name}")).await?;
            print(out, &k, HEADERS, vec![row(&k)])
        }
        KeyPairsCommand::Delete { name } => {
            client
                .delete_empty(&format!("/v1/key-pairs/{name}"))
                .await?;
            eprintln!("deleted key pair {name}");
            Ok(())
        }
    }
}
