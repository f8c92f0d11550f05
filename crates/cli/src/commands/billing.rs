//! nubo billing …

use nubo_api::billing::{
    Budget, BudgetAlert, BudgetCreate, Commitment, CommitmentCreate, CostReport, Invoice,
    InvoiceSummary, PriceList, UsageReport,
};

use crate::args::{BillingCommand, BillingWindow, BudgetCommand, CommitmentCommand, Output};
use crate::client::{Client, ClientError};
use crate::commands::Context;
use crate::output::{print, print_record};

/// A quantity with the digits that matter: storage for a few seconds is a
/// tiny fraction of a GiB-month.
fn quantity(q: f64) -> String {
    match q.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{q:.1}"),
        a if a >= 1.0 => format!("{q:.3}"),
        _ => format!("{q:.3e}"),
    }
}

/// `path` with the window's query.
fn windowed(path: &str, w: BillingWindow) -> String {
    let query: Vec<String> = [("since", w.since), ("until", w.until), ("by", w.by)]
        .into_iter()
        // A `+` of a time zone offset would read as a space.
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", v.replace('+', "%2B"))))
        .collect();
    match query.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{}", query.join("&")),
    }
}

pub async fn run(ctx: &Context, cmd: BillingCommand) -> Result<(), ClientError> {
    let client = ctx.client().await?;
    match cmd {
        BillingCommand::Usage { window } => {
            let report: UsageReport = client.get(&windowed("/v1/billing/usage", window)).await?;
            let rows = report
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.group.clone(),
                        l.meter.clone(),
                        quantity(l.quantity),
                        l.unit.clone(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &report,
                &[&report.by, "meter", "quantity", "unit"],
                rows,
            )
        }
        BillingCommand::Cost { window } => {
            let report: CostReport = client.get(&windowed("/v1/billing/cost", window)).await?;
            let mut rows: Vec<Vec<String>> = report
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.group.clone(),
                        l.meter.clone(),
                        quantity(l.quantity),
                        l.unit.clone(),
                        l.amount.clone(),
                    ]
                })
                .collect();
            let blank = || String::new();
            rows.push(vec![
                format!("total {} to {}", report.since, report.until),
                blank(),
                blank(),
                blank(),
                report.total.clone(),
            ]);
            if let Some(f) = &report.forecast {
                rows.push(vec![
                    format!("forecast to {}", f.until),
                    blank(),
                    blank(),
                    blank(),
                    f.total.clone(),
                ]);
            }
            let amount = format!("amount ({})", report.currency);
            print(
                ctx.output(),
                &report,
                &[&report.by, "meter", "quantity", "unit", &amount],
                rows,
            )
        }
        BillingCommand::Invoice { month } => invoice(ctx, &client, month).await,
        BillingCommand::Invoices => {
            let list: Vec<InvoiceSummary> = client.get("/v1/billing/invoices").await?;
            let rows = list
                .iter()
                .map(|i| {
                    vec![
                        i.month.clone(),
                        i.status.clone(),
                        i.total.clone(),
                        i.closed_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &list,
                &["month", "status", "total", "closed_at"],
                rows,
            )
        }
        BillingCommand::Commitment(cmd) => commitment(ctx, &client, cmd).await,
        BillingCommand::Budget(cmd) => budget(ctx, &client, cmd).await,
    }
}

async fn invoice(ctx: &Context, client: &Client, month: Option<String>) -> Result<(), ClientError> {
    let month = match month {
        Some(m) => m,
        None => {
            let list: Vec<InvoiceSummary> = client.get("/v1/billing/invoices").await?;
            list.first().map(|i| i.month.clone()).unwrap_or_default()
        }
    };
    let path = format!("/v1/billing/invoices/{month}");
    if ctx.output() == Output::Csv {
        return crate::output::write(&client.get_text(&format!("{path}?format=csv")).await?);
    }
    let invoice: Invoice = client.get(&path).await?;
    let mut rows: Vec<Vec<String>> = invoice
        .lines
        .iter()
        .map(|l| {
            vec![
                l.resource_id.clone(),
                l.meter.clone(),
                quantity(l.quantity),
                l.unit.clone(),
                l.unit_price.clone(),
                l.amount.clone(),
            ]
        })
        .collect();
    let title = format!(
        "{} {} ({}), due {} {}",
        invoice.month, invoice.status, invoice.currency, invoice.amount_due, invoice.currency
    );
    rows.push(vec![
        title,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        invoice.total.clone(),
    ]);
    print(
        ctx.output(),
        &invoice,
        &[
            "resource",
            "meter",
            "quantity",
            "unit",
            "unit_price",
            "amount",
        ],
        rows,
    )
}

fn commitment_record(ctx: &Context, c: &Commitment) -> Result<(), ClientError> {
    print_record(
        ctx.output(),
        c,
        vec![
            ("id", c.id.clone()),
            ("per_hour", c.per_hour.clone()),
            ("term", c.term.clone()),
            ("discount", format!("{}%", c.discount_percent)),
            ("starts_at", c.starts_at.clone()),
            ("ends_at", c.ends_at.clone()),
            ("state", c.state.clone()),
        ],
    )
}

async fn commitment(
    ctx: &Context,
    client: &Client,
    cmd: CommitmentCommand,
) -> Result<(), ClientError> {
    match cmd {
        CommitmentCommand::Create { per_hour, term } => {
            let c: Commitment = client
                .post(
                    "/v1/billing/commitments",
                    &CommitmentCreate { per_hour, term },
                )
                .await?;
            commitment_record(ctx, &c)
        }
        CommitmentCommand::Show { commitment_id } => {
            let c: Commitment = client
                .get(&format!("/v1/billing/commitments/{commitment_id}"))
                .await?;
            commitment_record(ctx, &c)
        }
        CommitmentCommand::List => {
            let list: Vec<Commitment> = client.get("/v1/billing/commitments").await?;
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.per_hour.clone(),
                        c.term.clone(),
                        format!("{}%", c.discount_percent),
                        c.starts_at.clone(),
                        c.ends_at.clone(),
                        c.state.clone(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &list,
                &[
                    "id",
                    "per_hour",
                    "term",
                    "discount",
                    "starts_at",
                    "ends_at",
                    "state",
                ],
                rows,
            )
        }
    }
}

fn budget_record(ctx: &Context, b: &Budget) -> Result<(), ClientError> {
    print_record(
        ctx.output(),
        b,
        vec![
            ("id", b.id.clone()),
            ("name", b.name.clone()),
            ("monthly", b.monthly.clone()),
            ("alert_at", percents(&b.alert_at)),
            ("month_to_date", b.month_to_date.clone()),
            ("webhook", b.webhook_url.clone().unwrap_or_default()),
            ("created_at", b.created_at.clone()),
        ],
    )
}

fn percents(p: &[u32]) -> String {
    p.iter()
        .map(|p| format!("{p}%"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn budget(ctx: &Context, client: &Client, cmd: BudgetCommand) -> Result<(), ClientError> {
    match cmd {
        BudgetCommand::Create {
            name,
            monthly,
            alert_at,
            webhook,
        } => {
            let b: Budget = client
                .post(
                    "/v1/billing/budgets",
                    &BudgetCreate {
                        name,
                        monthly,
                        alert_at,
                        webhook_url: webhook,
                    },
                )
                .await?;
            budget_record(ctx, &b)
        }
        BudgetCommand::Show { budget_id } => {
            let b: Budget = client
                .get(&format!("/v1/billing/budgets/{budget_id}"))
                .await?;
            budget_record(ctx, &b)
        }
        BudgetCommand::Delete { budget_id } => {
            client
                .delete_empty(&format!("/v1/billing/budgets/{budget_id}"))
                .await
        }
        BudgetCommand::List => {
            let list: Vec<Budget> = client.get("/v1/billing/budgets").await?;
            let rows = list
                .iter()
                .map(|b| {
                    vec![
                        b.id.clone(),
                        b.name.clone(),
                        b.monthly.clone(),
                        percents(&b.alert_at),
                        b.month_to_date.clone(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &list,
                &["id", "name", "monthly", "alert_at", "month_to_date"],
                rows,
            )
        }
        BudgetCommand::Alerts => {
            let list: Vec<BudgetAlert> = client.get("/v1/billing/alerts").await?;
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.at.clone(),
                        a.budget_name.clone(),
                        a.month.clone(),
                        format!("{}%", a.threshold_percent),
                        a.amount.clone(),
                        a.budget.clone(),
                        a.webhook.clone(),
                    ]
                })
                .collect();
            print(
                ctx.output(),
                &list,
                &[
                    "at",
                    "budget",
                    "month",
                    "threshold",
                    "amount",
                    "monthly",
                    "webhook",
                ],
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
