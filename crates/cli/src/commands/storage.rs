//! nubo bucket …

use nubo_api::buckets::{Bucket, CreateBucketRequest};

use crate::args::BucketCommand;
use crate::client::ClientError;
use crate::commands::Context;
use crate::output::{note, print};

const HEADERS: &[&str] = &["name", "region", "public_read", "versioning", "created"];

fn row(b: &Bucket) -> Vec<String> {
    vec![
        b.name.clone(),
        b.region.clone(),
        b.public_read.to_string(),
        b.versioning.clone().unwrap_or_else(|| "-".into()),
        b.created_at.clone(),
    ]
}

pub async fn run(ctx: &Context, cmd: BucketCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        BucketCommand::List => {
            let buckets: Vec<Bucket> = client.get("/v1/buckets").await?;
            print(
                ctx.output(),
                &buckets,
                HEADERS,
                buckets.iter().map(row).collect(),
            )
        }
        BucketCommand::Create { name, public_read } => {
            let b: Bucket = client
                .post("/v1/buckets", &CreateBucketRequest { name, public_read })
                .await?;
            print(ctx.output(), &b, HEADERS, vec![row(&b)])
        }
        BucketCommand::Delete { name } => {
            client.delete_empty(&format!("/v1/buckets/{name}")).await?;
            note(format!("deleted bucket {name}"));
            Ok(())
        }
    }
}
