//! SSH key pairs: created here (ed25519, private key returned once) or imported,
//! and handed to the guests launched with them.

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::compute::{CreateKeyPairRequest, CreatedKeyPair, KeyPair};
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::page::{Page, PageParams};
use nubo_store::key_pairs::{self, KeyPairRow};
use nubo_store::{StoreError, ids};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};
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
        .routes(routes!(key_pair_list, key_pair_create))
        .routes(routes!(key_pair_show, key_pair_delete))
}

pub fn view(k: KeyPairRow) -> KeyPair {
    KeyPair {
        created_at: rfc3339(k.created_at),
        name: k.name,
        key_type: k.key_type,
        fingerprint: k.fingerprint,
        public_key: k.public_key,
    }
}

fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Lists the account's key pairs.
#[utoipa::path(get, path = "/v1/key-pairs", tag = "compute", operation_id = "key_pair_list",
    params(PageParams),
    responses((status = 200, body = Page<KeyPair>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_pair_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Page<KeyPair>>> {
    let q = page::query(p.limit, p.page_token)?;
    let mut c = state.store.conn().await?;
    let rows = key_pairs::list(&mut c, &caller.account_id, &q).await?;
    Ok(axum::Json(page::page(rows, view)))
}

/// Creates an ed25519 key pair (its private key is in this answer only), or
/// imports an OpenSSH public key.
#[utoipa::path(post, path = "/v1/key-pairs", tag = "compute", operation_id = "key_pair_create",
    request_body = CreateKeyPairRequest,
    responses((status = 201, body = CreatedKeyPair),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_pair_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateKeyPairRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedKeyPair>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::invalid(
            "a key pair name is 1 to 255 letters, digits, '.', '_' or '-'",
        ));
    }
    let (public, private) = match &req.public_key {
        Some(text) => {
            let key = PublicKey::from_openssh(text.trim()).map_err(|e| {
                ApiError::invalid(format!("public_key is not an OpenSSH public key: {e}"))
            })?;
            (key, None)
        }
        None => {
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| ApiError::internal(format!("ed25519 key generation: {e}")))?;
            key.set_comment(&req.name);
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| ApiError::internal(format!("OpenSSH encoding: {e}")))?;
            (key.public_key().clone(), Some(pem.to_string()))
        }
    };
    let row = KeyPairRow {
        id: ids::new("kp"),
        account_id: caller.account_id.clone(),
        name: req.name.clone(),
        key_type: public.algorithm().as_str().to_string(),
        public_key: public
            .to_openssh()
            .map_err(|e| ApiError::internal(format!("OpenSSH encoding: {e}")))?,
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        created_at: state.clock.now_micros(),
    };
    let mut tx = state.store.begin().await?;
    match key_pairs::insert(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the account already has a key pair named {:?}", req.name),
            ));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKeyPair {
            key_pair: view(row),
            private_key: private,
        }),
    ))
}

/// Shows one key pair.
#[utoipa::path(get, path = "/v1/key-pairs/{key_name}", tag = "compute",
    operation_id = "key_pair_show",
    params(("key_name" = String, Path, description = "Key pair name")),
    responses((status = 200, body = KeyPair), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_pair_show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_name): Path<String>,
) -> ApiResult<axum::Json<KeyPair>> {
    let mut c = state.store.conn().await?;
    key_pairs::get(&mut c, &caller.account_id, &key_name)
        .await?
        .map(|k| axum::Json(view(k)))
        .ok_or_else(|| ApiError::not_found("key pair", &key_name))
}

/// Deletes a key pair; instances launched with it keep the key they were given.
#[utoipa::path(delete, path = "/v1/key-pairs/{key_name}", tag = "compute",
    operation_id = "key_pair_delete",
    params(("key_name" = String, Path, description = "Key pair name")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn key_pair_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_name): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    if !key_pairs::delete(
        &mut tx,
        &caller.account_id,
        &key_name,
        state.clock.now_micros(),
    )
    .await?
    {
        return Err(ApiError::not_found("key pair", &key_name));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
