//! Access keys of an account: create, list, show, enable/disable, delete.

pub mod lookup;

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::keys::{
    AccessKey, CreateKeyRequest, CreatedKey, KeyScope, KeyStatus, UpdateKeyRequest,
};
use nubo_api::page::{Page, PageParams};
use nubo_auth::{SecretBox, new_access_key_id, new_secret};
use nubo_store::keys::{self, KeyRow};
use nubo_store::{Conn, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path, Query};
use crate::api::page;
use crate::clock::rfc3339;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key_list, key_create))
        .routes(routes!(key_show, key_update, key_delete))
}

/// Creates a key for `account_id`; returns it and its secret in clear (the only
/// time the secret exists outside the sealed column).
pub async fn mint(
    c: &mut Conn,
    secrets: &SecretBox,
    account_id: &str,
    scope: KeyScope,
    at: i64,
) -> ApiResult<(KeyRow, String)> {
    let id = new_access_key_id();
    let secret = new_secret();
    let row = KeyRow {
        sealed_secret: secrets.seal(&id, &secret),
        id,
        account_id: account_id.to_string(),
        scope: scope.as_str().to_string(),
        status: KeyStatus::Active.as_str().to_string(),
        created_at: at,
    };
    keys::insert(c, &row).await?;
    Ok((row, secret))
}

pub fn view(k: KeyRow) -> AccessKey {
    AccessKey {
        scope: KeyScope::parse(&k.scope).unwrap_or(KeyScope::ReadOnly),
        status: KeyStatus::parse(&k.status).unwrap_or(KeyStatus::Disabled),
        created_at: rfc3339(k.created_at),
        id: k.id,
    }
}

/// Lists the account's access keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", operation_id = "key_list",
    params(PageParams),
    responses((status = 200, body = Page<AccessKey>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<AccessKey>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = keys::list(&mut c, &caller.account_id, &q).await?;
    Ok(axum::Json(page::page(rows, view)))
}

/// Creates an access key; the secret is in this response only.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", operation_id = "key_create",
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateKeyRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedKey>)> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let (row, secret) = mint(&mut tx, &state.secrets, &caller.account_id, req.scope, at).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKey {
            key: view(row),
            secret_access_key: secret,
        }),
    ))
}

/// Shows one access key.
#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys", operation_id = "key_show",
    params(("key_id" = String, Path, description = "Access key id")),
    responses((status = 200, body = AccessKey), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> ApiResult<axum::Json<AccessKey>> {
    let mut c = state.store.conn().await?;
    keys::get(&mut c, &caller.account_id, &key_id)
        .await?
        .map(|k| axum::Json(view(k)))
        .ok_or_else(|| ApiError::not_found("access key", &key_id))
}

/// Enables or disables an access key.
#[utoipa::path(patch, path = "/v1/keys/{key_id}", tag = "keys", operation_id = "key_update",
    params(("key_id" = String, Path, description = "Access key id")),
    request_body = UpdateKeyRequest,
    responses((status = 200, body = AccessKey), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
    Json(req): Json<UpdateKeyRequest>,
) -> ApiResult<axum::Json<AccessKey>> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    let key = keys::get(&mut tx, &caller.account_id, &key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("access key", &key_id))?;
    if req.status == KeyStatus::Disabled {
        ensure_another_full_key(&mut tx, &caller.account_id, &key_id).await?;
    }
    let updated = keys::set_status(
        &mut tx,
        &caller.account_id,
        &key.id,
        req.status.as_str(),
        at,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("access key", &key_id))?;
    tx.commit().await?;
    state.keys.forget(&key_id);
    Ok(axum::Json(view(updated)))
}

/// Deletes an access key. The account's last active full-scope key cannot go:
/// nothing could then manage the account.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys", operation_id = "key_delete",
    params(("key_id" = String, Path, description = "Access key id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> ApiResult<StatusCode> {
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    if keys::get(&mut tx, &caller.account_id, &key_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("access key", &key_id));
    }
    ensure_another_full_key(&mut tx, &caller.account_id, &key_id).await?;
    keys::delete(&mut tx, &caller.account_id, &key_id, at).await?;
    tx.commit().await?;
    state.keys.forget(&key_id);
    Ok(StatusCode::NO_CONTENT)
}

async fn ensure_another_full_key(c: &mut Conn, account_id: &str, except: &str) -> ApiResult<()> {
    let all = PageQuery {
        after: None,
        limit: nubo_api::page::MAX_PAGE_SIZE,
    };
    let others = keys::list(c, account_id, &all)
        .await?
        .items
        .into_iter()
        .filter(|k| {
            k.id != except
                && k.status == KeyStatus::Active.as_str()
                && k.scope == KeyScope::Full.as_str()
        })
        .count();
    if others == 0 {
        return Err(ApiError::new(
            ErrorCode::LastAccessKey,
            format!(
                "{except} is the account's last active full-scope key; create another \
                 before removing it"
            ),
        ));
    }
    Ok(())
}
