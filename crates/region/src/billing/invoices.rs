//! Invoices: a month's lines for an account. The running month's invoice is
//! open and grows; once a month has ended, closing it writes its invoice
//! once, and it never changes. Closing again computes the same invoice from
//! the same events, and the store keeps the first: an invoice that came out
//! different is reported, not written.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use nubo_api::billing::{
    CloseReport, CloseRequest, Invoice, InvoiceLine, InvoiceParams, InvoiceSummary, cents, money,
};
use nubo_api::error::ErrorBody;
use nubo_store::invoices::{self as store, InvoiceRow};
use nubo_store::{StoreError, accounts};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ledger::Ledger;
use super::period;
use super::rating::{self, Line};
use crate::api::auth::{Caller, Operator};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::clock::rfc3339;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invoice_list))
        .routes(routes!(invoice_show))
        .routes(routes!(invoice_close))
}

fn invoice_line(l: Line) -> InvoiceLine {
    InvoiceLine {
        service: l.service.into(),
        resource_type: l.resource_type,
        resource_id: l.resource_id,
        meter: l.meter,
        quantity: l.quantity,
        unit: l.unit.into(),
        unit_price: money(l.unit_price_nanos as i64),
        amount: money(l.amount_nanos),
        amount_nanos: l.amount_nanos,
    }
}

/// The account's invoice for the month `[start, end)`, from what happened
/// before `until` (the month's end once it has ended).
async fn compute(
    state: &AppState,
    account_id: &str,
    start: i64,
    end: i64,
    until: i64,
) -> nubo_store::Result<Invoice> {
    let ledger = Ledger::load(&state.store, account_id, &[start], until).await?;
    let prices = &state.config.prices;
    let lines = ledger.lines(prices, start, until);
    let total_nanos = rating::total(&lines);
    Ok(Invoice {
        account_id: account_id.to_string(),
        month: period::month_name(start),
        status: if until >= end { "closed" } else { "open" }.into(),
        currency: prices.at(start).currency.clone(),
        since: rfc3339(start),
        until: rfc3339(until),
        closed_at: None,
        lines: lines.into_iter().map(invoice_line).collect(),
        total: money(total_nanos),
        total_nanos,
        amount_due: cents(total_nanos),
    })
}

/// What closing one account's month did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    New,
    Identical,
    Different,
}

/// Closes the account's month starting at `start`, which must have ended.
pub async fn close(state: &AppState, account_id: &str, start: i64) -> nubo_store::Result<Closed> {
    let end = period::next_month(start);
    super::rollups::advance(state, account_id, end).await?;
    let invoice = compute(state, account_id, start, end, end).await?;
    let body = serde_json::to_string(&invoice).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let row = InvoiceRow {
        account_id: account_id.to_string(),
        month: invoice.month.clone(),
        total_nanos: invoice.total_nanos,
        body,
        closed_at: state.clock.now_micros(),
    };
    let mut tx = state.store.begin().await?;
    let (written, kept) = store::close(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(if written {
        Closed::New
    } else if kept.body == row.body {
        Closed::Identical
    } else {
        tracing::error!(
            account = account_id,
            month = row.month,
            kept = kept.total_nanos,
            computed = row.total_nanos,
            "closing a month again gave a different invoice; the first is kept"
        );
        Closed::Different
    })
}

/// Closes the month starting at `start` for every account open in it that
/// has no invoice for it yet (or, `again`, for every one).
pub async fn close_month(state: &AppState, start: i64, again: bool) -> ApiResult<CloseReport> {
    let end = period::next_month(start);
    let month = period::month_name(start);
    let ids = {
        let mut c = state.store.conn().await?;
        let open = accounts::open_between(&mut c, start, end).await?;
        let mut ids = Vec::new();
        for id in open {
            if again || store::get(&mut c, &id, &month).await?.is_none() {
                ids.push(id);
            }
        }
        ids
    };
    let mut report = CloseReport {
        month,
        closed: 0,
        identical: 0,
        different: 0,
    };
    for id in ids {
        match close(state, &id, start).await? {
            Closed::New => report.closed += 1,
            Closed::Identical => report.identical += 1,
            Closed::Different => report.different += 1,
        }
    }
    Ok(report)
}

fn stored(row: InvoiceRow) -> ApiResult<Invoice> {
    let mut invoice: Invoice = serde_json::from_str(&row.body).map_err(ApiError::internal)?;
    invoice.closed_at = Some(rfc3339(row.closed_at));
    Ok(invoice)
}

/// The account's invoices, newest first: this month's, open, then each
/// closed month's.
#[utoipa::path(get, path = "/v1/billing/invoices", tag = "billing", operation_id = "invoice_list",
    responses((status = 200, body = Vec<InvoiceSummary>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn invoice_list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<InvoiceSummary>>> {
    let now = state.clock.now_micros();
    let start = period::month_start(now);
    let open = compute(
        &state,
        &caller.account_id,
        start,
        period::next_month(start),
        now,
    )
    .await?;
    let mut c = state.store.conn().await?;
    let closed = store::of_account(&mut c, &caller.account_id).await?;
    let mut out = vec![InvoiceSummary {
        month: open.month,
        status: open.status,
        total: open.total,
        total_nanos: open.total_nanos,
        closed_at: None,
    }];
    out.extend(closed.into_iter().map(|r| InvoiceSummary {
        month: r.month,
        status: "closed".into(),
        total: money(r.total_nanos),
        total_nanos: r.total_nanos,
        closed_at: Some(rfc3339(r.closed_at)),
    }));
    Ok(axum::Json(out))
}

/// The invoice as CSV: a header, one row per line, and a total row.
fn csv(invoice: &Invoice) -> ApiResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = |row: &[&str]| w.write_record(row).map_err(ApiError::internal);
    write(&[
        "month",
        "service",
        "resource_type",
        "resource_id",
        "meter",
        "quantity",
        "unit",
        "unit_price",
        "amount",
        "currency",
    ])?;
    for l in &invoice.lines {
        write(&[
            &invoice.month,
            &l.service,
            &l.resource_type,
            &l.resource_id,
            &l.meter,
            &l.quantity.to_string(),
            &l.unit,
            &l.unit_price,
            &l.amount,
            &invoice.currency,
        ])?;
    }
    write(&[
        &invoice.month,
        "total",
        "",
        "",
        "",
        "",
        "",
        "",
        &invoice.total,
        &invoice.currency,
    ])?;
    let bytes = w.into_inner().map_err(ApiError::internal)?;
    String::from_utf8(bytes).map_err(ApiError::internal)
}

/// When the account was opened.
async fn opened(state: &AppState, account_id: &str) -> ApiResult<i64> {
    let mut c = state.store.conn().await?;
    let account = accounts::get(&mut c, account_id).await?;
    Ok(account.map_or(i64::MAX, |a| a.created_at))
}

/// A month's invoice: closed and final once the month has been closed,
/// open (the month so far) for the running month. `?format=csv` for CSV.
#[utoipa::path(get, path = "/v1/billing/invoices/{month}", tag = "billing",
    operation_id = "invoice_show",
    params(("month" = String, Path, description = "YYYY-MM",
            pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"), InvoiceParams),
    responses((status = 200, content((Invoice = "application/json"), (String = "text/csv"))),
        (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn invoice_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(month): Path<String>,
    Query(p): Query<InvoiceParams>,
) -> ApiResult<Response> {
    let (start, end) = period::parse_month(&month)?;
    let as_csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::invalid(format!("format {other:?}: json or csv"))),
    };
    let now = state.clock.now_micros();
    let row = {
        let mut c = state.store.conn().await?;
        store::get(&mut c, &caller.account_id, &month).await?
    };
    let invoice = match row {
        Some(row) => stored(row)?,
        None if (start..end).contains(&now) => {
            compute(&state, &caller.account_id, start, end, now).await?
        }
        None if start > now || end <= opened(&state, &caller.account_id).await? => {
            return Err(ApiError::not_found("invoice", &month));
        }
        // Ended, not closed yet: what it will be, marked open.
        None => {
            let mut invoice = compute(&state, &caller.account_id, start, end, end).await?;
            invoice.status = "open".into();
            invoice
        }
    };
    Ok(if as_csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&invoice)?,
        )
            .into_response()
    } else {
        axum::Json(invoice).into_response()
    })
}

/// Closes a month that has ended, for every account open in it; closing a
/// month again reports whether each invoice came out the same (it is kept
/// as first written either way). Months close by themselves a while after
/// they end.
#[utoipa::path(post, path = "/v1/admin/billing/close", tag = "admin",
    operation_id = "admin_billing_close",
    request_body = CloseRequest,
    responses((status = 200, body = CloseReport),
        (status = 409, body = ErrorBody)),
    security(("operator" = [])))]
async fn invoice_close(
    State(state): State<AppState>,
    _: Operator,
    Json(req): Json<CloseRequest>,
) -> ApiResult<axum::Json<CloseReport>> {
    let (start, end) = period::parse_month(&req.month)?;
    if end > state.clock.now_micros() {
        return Err(ApiError::invalid_state(format!(
            "month {} has not ended",
            req.month
        )));
    }
    Ok(axum::Json(close_month(&state, start, true).await?))
}
