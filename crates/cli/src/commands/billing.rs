//! nubo billing …

use nubo_api::billing::{PriceList, UsageReport};

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

/// Every version of the price list, a row per price, in currency units.
pub async fn pricing(ctx: &Context) -> Result<(), ClientError> {
    let lists: Vec<PriceList> = ctx.public().await?.get("/v1/pricing").await?;
    let units = |nanos: u64| format!("{:.9}", nanos as f64 / 1e9);
    let mut rows = Vec::new();
    for l in &lists {
        let mut row = |item: String, unit: &str, nanos: u64| {
            rows.push(vec![
                l.effective_from.clone(),
                item,
                units(nanos),
                format!("{} per {unit}", l.currency),
            ])
        };
        for (t, nanos) in &l.instance_second_nanos {
            row(format!("instance {t}"), "second", *nanos);
        }
        row(
            "volume storage".into(),
            "GiB-month",
            l.volume_gib_month_nanos,
        );
        row(
            "snapshot storage".into(),
            "GiB-month",
            l.snapshot_gib_month_nanos,
        );
        row(
            "object storage".into(),
            "GiB-month",
            l.object_gib_month_nanos,
        );
        row("object requests".into(), "1,000", l.requests_per_1000_nanos);
        row("data out".into(), "GiB", l.egress_gib_nanos);
        row("load balancer".into(), "hour", l.load_balancer_hour_nanos);
    }
    print(
        ctx.output(),
        &lists,
        &["effective_from", "item", "price", "unit"],
        rows,
    )
}
