//! nubo keys …

use nubo_api::keys::{
    AccessKey, CreateKeyRequest, CreatedKey, KeyScope, KeyStatus, UpdateKeyRequest,
};

use crate::args::{KeysCommand, Scope};
use crate::client::ClientError;
use crate::commands::{Context, all_pages};
use crate::output::{note, print, print_record};

fn row(k: &AccessKey) -> Vec<String> {
    vec![
        k.id.clone(),
        k.scope.as_str().into(),
        k.status.as_str().into(),
        k.created_at.clone(),
    ]
}

const HEADERS: &[&str] = &["id", "scope", "status", "created"];

pub async fn run(ctx: &Context, cmd: KeysCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    let update = |status| UpdateKeyRequest { status };
    match cmd {
        KeysCommand::Create { scope } => {
            let scope = match scope {
                Scope::Full => KeyScope::Full,
                Scope::ReadOnly => KeyScope::ReadOnly,
            };
            let k: CreatedKey = client.post("/v1/keys", &CreateKeyRequest { scope }).await?;
            print_record(
                out,
                &k,
                vec![
                    ("access_key_id", k.key.id.clone()),
                    ("secret_access_key", k.secret_access_key.clone()),
                    ("scope", k.key.scope.as_str().into()),
                ],
            )
        }
        KeysCommand::List => {
            let page = all_pages::<AccessKey>(&client, "/v1/keys").await?;
            print(out, &page, HEADERS, page.items.iter().map(row).collect())
        }
        KeysCommand::Show { key_id } => {
            let k: AccessKey = client.get(&format!("/v1/keys/{key_id}")).await?;
            print(out, &k, HEADERS, vec![row(&k)])
        }
        KeysCommand::Enable { key_id } => {
            let k: AccessKey = client
                .patch(&format!("/v1/keys/{key_id}"), &update(KeyStatus::Active))
                .await?;
            print(out, &k, HEADERS, vec![row(&k)])
        }
        KeysCommand::Disable { key_id } => {
            let k: AccessKey = client
                .patch(&format!("/v1/keys/{key_id}"), &update(KeyStatus::Disabled))
                .await?;
            print(out, &k, HEADERS, vec![row(&k)])
        }
        KeysCommand::Delete { key_id } => {
            client.delete_empty(&format!("/v1/keys/{key_id}")).await?;
            note(format!("deleted {key_id}"));
            Ok(())
        }
    }
}
