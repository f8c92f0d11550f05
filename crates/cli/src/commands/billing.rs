//! nubo billing …

use nubo_api::billing::UsageReport;

use crate::args::BillingCommand;
use crate::client::ClientError;
use crate::commands::Context;
use crate::output::print;

pub async fn run(ctx: &Context, cmd: BillingCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        BillingCommand::Usage { since, until } => {
            let query: Vec<String> = [("since", since), ("until", until)]
                .into_iter()
                // A `+` of a time zone offset would read as a space.
                .filter_map(|(k, v)| v.map(|v| format!("{k}={}", v.replace('+', "%2B"))))
                .collect();
            let path = match query.is_empty() {
                true => "/v1/billing/usage".to_string(),
                false => format!("/v1/billing/usage?{}", query.join("&")),
            };
            let report: UsageReport = client.get(&path).await?;
            let rows = report
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.resource_id.clone(),
                        l.meter.clone(),
                        format!("{:.3}", l.quantity),
                        l.unit.clone(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &report,
                &["resource", "meter", "quantity", "unit"],
                rows,
            )
        }
    }
}
