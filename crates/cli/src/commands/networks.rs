//! nubo network …

use nubo_api::networks::{CreateNetworkRequest, Network};

use crate::args::NetworkCommand;
use crate::client::ClientError;
use crate::commands::{Context, all_pages};
use crate::output::{note, print};

const HEADERS: &[&str] = &["id", "name", "cidr", "gateway", "default", "created"];

fn row(n: &Network) -> Vec<String> {
    vec![
        n.id.clone(),
        n.name.clone(),
        n.cidr.clone(),
        n.gateway.clone(),
        if n.is_default { "yes" } else { "" }.into(),
        n.created_at.clone(),
    ]
}

pub async fn run(ctx: &Context, cmd: NetworkCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    let out = ctx.output();
    match cmd {
        NetworkCommand::List => {
            let page = all_pages::<Network>(&client, "/v1/networks").await?;
            print(out, &page, HEADERS, page.items.iter().map(row).collect())
        }
        NetworkCommand::Create { name, cidr } => {
            let n: Network = client
                .post("/v1/networks", &CreateNetworkRequest { name, cidr })
                .await?;
            print(out, &n, HEADERS, vec![row(&n)])
        }
        NetworkCommand::Show { network } => {
            let n: Network = client.get(&format!("/v1/networks/{network}")).await?;
            print(out, &n, HEADERS, vec![row(&n)])
        }
        NetworkCommand::Delete { network } => {
            client
                .delete_empty(&format!("/v1/networks/{network}"))
                .await?;
            note(format!("deleted network {network}"));
            Ok(())
        }
    }
}
