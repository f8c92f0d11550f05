//! nubo quota …

use nubo_api::quotas::{Quota, SetQuotaRequest};

use crate::args::QuotaCommand;
use crate::client::ClientError;
use crate::commands::Context;
use crate::output::print;

fn row(q: &Quota) -> Vec<String> {
    let name = serde_json::to_value(q.resource)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    vec![
        name,
        q.used.to_string(),
        q.limit.to_string(),
        q.ceiling.to_string(),
    ]
}

const HEADERS: &[&str] = &["resource", "used", "limit", "ceiling"];

pub async fn run(ctx: &Context, cmd: QuotaCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        QuotaCommand::Show => {
            let quotas: Vec<Quota> = client.get("/v1/quotas").await?;
            print(
                ctx.output(),
                &quotas,
                HEADERS,
                quotas.iter().map(row).collect(),
            )
        }
        QuotaCommand::Raise { resource, to } => {
            let q: Quota = client
                .put(
                    &format!("/v1/quotas/{resource}"),
                    &SetQuotaRequest { limit: to },
                )
                .await?;
            print(ctx.output(), &q, HEADERS, vec![row(&q)])
        }
    }
}
