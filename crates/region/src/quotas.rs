//! Quotas: what an account may hold, raised by the account itself up to the
//! operator's ceiling, and enforced when resources are created.

use axum::extract::State;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::quotas::{Quota, QuotaResource, SetQuotaRequest};
use nubo_store::{Conn, quotas};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::config::Config;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quota_list))
        .routes(routes!(quota_set))
}

/// The account's limit for `resource`.
pub async fn limit(
    c: &mut Conn,
    config: &Config,
    account_id: &str,
    resource: QuotaResource,
) -> ApiResult<u64> {
    let limits = quotas::limits(c, account_id).await?;
    Ok(limits
        .get(resource.as_str())
        .map(|v| *v as u64)
        .unwrap_or(config.quota(resource).default))
}

/// Takes `amount` of `resource` for the account within its limit, in the caller's
/// transaction; refuses with a message that says how to raise the limit.
pub async fn reserve(
    c: &mut Conn,
    config: &Config,
    account_id: &str,
    resource: QuotaResource,
    amount: u64,
    what: &str,
) -> ApiResult<()> {
    let max = limit(c, config, account_id, resource).await?;
    if quotas::reserve(c, account_id, resource.as_str(), amount as i64, max as i64).await? {
        return Ok(());
    }
    let used = quotas::usage(c, account_id)
        .await?
        .get(resource.as_str())
        .copied()
        .unwrap_or(0);
    Err(ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "{what} needs {amount} {name}; the account holds {used} of its {max}. \
             Raise the quota with `nubo quota raise --resource {name} --to N` \
             (up to {ceiling})",
            name = resource.as_str(),
            ceiling = config.quota(resource).ceiling,
        ),
    ))
}

/// Lists the account's quotas with what it holds and how far it may raise them.
#[utoipa::path(get, path = "/v1/quotas", tag = "quotas", operation_id = "quota_list",
    responses((status = 200, body = Vec<Quota>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn quota_list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Quota>>> {
    let mut c = state.store.conn().await?;
    let limits = quotas::limits(&mut c, &caller.account_id).await?;
    let usage = quotas::usage(&mut c, &caller.account_id).await?;
    Ok(axum::Json(
        QuotaResource::ALL
            .into_iter()
            .map(|r| {
                let rule = state.config.quota(r);
                Quota {
                    resource: r,
                    limit: limits
                        .get(r.as_str())
                        .map(|v| *v as u64)
                        .unwrap_or(rule.default),
                    used: usage.get(r.as_str()).map(|v| *v as u64).unwrap_or(0),
                    ceiling: rule.ceiling,
                }
            })
            .collect(),
    ))
}

/// Sets the account's limit for one resource, up to the operator's ceiling.
#[utoipa::path(put, path = "/v1/quotas/{resource}", tag = "quotas", operation_id = "quota_set",
    params(("resource" = QuotaResource, Path, description = "Quota resource")),
    request_body = SetQuotaRequest,
    responses((status = 200, body = Quota),
              (status = 403, body = ErrorBody,
               description = "Above the operator's ceiling (`QuotaCeilingExceeded`)")),
    security(("sigv4" = []), ("bearer" = [])))]
async fn quota_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
    Json(req): Json<SetQuotaRequest>,
) -> ApiResult<axum::Json<Quota>> {
    let resource = QuotaResource::parse(&resource).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown quota resource {resource:?}; one of: {}",
            QuotaResource::ALL.map(|r| r.as_str()).join(", ")
        ))
    })?;
    let rule = state.config.quota(resource);
    if req.limit > rule.ceiling {
        return Err(ApiError::new(
            ErrorCode::QuotaCeilingExceeded,
            format!(
                "{} can be raised to at most {} without the operator",
                resource.as_str(),
                rule.ceiling
            ),
        ));
    }
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    quotas::set_limit(
        &mut tx,
        &caller.account_id,
        resource.as_str(),
        req.limit as i64,
        at,
    )
    .await?;
    let used = quotas::usage(&mut tx, &caller.account_id)
        .await?
        .get(resource.as_str())
        .map(|v| *v as u64)
        .unwrap_or(0);
    tx.commit().await?;
    Ok(axum::Json(Quota {
        resource,
        limit: req.limit,
        used,
        ceiling: rule.ceiling,
    }))
}
