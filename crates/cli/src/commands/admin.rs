//! nubo admin … (operator token)

use nubo_api::billing::{CloseReport, CloseRequest};
use nubo_api::hosts::Host;

use crate::args::{AdminBillingCommand, AdminCommand, AdminHostsCommand};
use crate::client::{ClientError, Credentials};
use crate::commands::Context;
use crate::output::{print, print_record};

pub async fn run(ctx: &Context, cmd: AdminCommand) -> Result<(), ClientError> {
    match cmd {
        AdminCommand::Backup { to, operator_token } => {
            let client = ctx.client_as(Credentials::Operator(operator_token)).await?;
            let bytes = client.download("/v1/admin/backup", &to).await?;
            let file = to.display().to_string();
            print_record(
                ctx.output(),
                &serde_json::json!({ "file": file, "bytes": bytes }),
                vec![("file", file.clone()), ("bytes", bytes.to_string())],
            )
        }
        AdminCommand::Billing(AdminBillingCommand::Close {
            month,
            operator_token,
        }) => {
            let client = ctx.client_as(Credentials::Operator(operator_token)).await?;
            let report: CloseReport = client
                .post("/v1/admin/billing/close", &CloseRequest { month })
                .await?;
            print_record(
                ctx.output(),
                &report,
                vec![
                    ("month", report.month.clone()),
                    ("closed", report.closed.to_string()),
                    ("identical", report.identical.to_string()),
                    ("different", report.different.to_string()),
                ],
            )
        }
        AdminCommand::Hosts(AdminHostsCommand::List { operator_token }) => {
            let client = ctx.client_as(Credentials::Operator(operator_token)).await?;
            let hosts: Vec<Host> = client.get("/v1/admin/hosts").await?;
            let rows = hosts
                .iter()
                .map(|h| {
                    vec![
                        h.id.clone(),
                        h.name.clone(),
                        h.driver.clone(),
                        format!("{:?}", h.state).to_lowercase(),
                        format!("{}/{}", h.allocated.vcpus, h.capacity.vcpus),
                        format!("{}/{}", h.allocated.memory_mib, h.capacity.memory_mib),
                        h.instances.to_string(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &hosts,
                &[
                    "id",
                    "name",
                    "driver",
                    "state",
                    "vcpus",
                    "memory_mib",
                    "instances",
                ],
                rows,
            )
        }
    }
}
