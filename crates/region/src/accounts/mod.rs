//! Accounts: instant self-service signup, the caller's identity, closing.

pub mod signup_limit;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use nubo_api::account::{
    Account, AccountStatus, CloseAccountRequest, SignupRequest, SignupResponse, WhoAmI,
};
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::keys::KeyScope;
use nubo_store::accounts::{self, AccountRow};
use nubo_store::{StoreError, ids};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Json;
use crate::clock::rfc3339;
use crate::compute::lifecycle;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(account_show))
        .routes(routes!(account_close))
}

pub fn view(a: AccountRow) -> Account {
    Account {
        status: if a.status == accounts::ACTIVE {
            AccountStatus::Active
        } else {
            AccountStatus::Closed
        },
        created_at: rfc3339(a.created_at),
        id: a.id,
        email: a.email,
    }
}

/// Normalizes and checks an email address the way a public signup form must.
fn normalize_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_ascii_lowercase();
    let domain_ok = email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
    if email.len() > 254 || !domain_ok || !email_address::EmailAddress::is_valid(&email) {
        return Err(ApiError::invalid(format!(
            "{:?} is not an email address this region accepts",
            raw.chars().take(64).collect::<String>()
        )));
    }
    Ok(email)
}

/// Creates an account and its first access key. No human in the loop; the secret
/// is shown in this response only.
#[utoipa::path(post, path = "/v1/signup", tag = "accounts", operation_id = "account_signup",
    request_body = SignupRequest,
    responses((status = 201, body = SignupResponse),
              (status = 409, body = ErrorBody)))]
async fn signup(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Json(req): Json<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignupResponse>)> {
    if let Err(wait) = state.signups.take(client.ip()) {
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!("too many signups from this address; retry in {wait} s"),
            )
        });
    }
    let email = normalize_email(&req.email)?;
    let at = state.clock.now_micros();
    let account_id = ids::new("acc");
    let mut tx = state.store.begin().await?;
    match accounts::insert(&mut tx, &account_id, &email, at).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::EmailTaken,
                "an active account already uses this email address",
            ));
        }
        other => other?,
    };
    let (key, secret) =
        crate::keys::mint(&mut tx, &state.secrets, &account_id, KeyScope::Full, at).await?;
    nubo_store::networks::default_for(&mut tx, &account_id, at).await?;
    tx.commit().await?;
    tracing::info!(account_id, "account created");
    Ok((
        StatusCode::CREATED,
        axum::Json(SignupResponse {
            account_id,
            access_key_id: key.id,
            secret_access_key: secret,
            region: state.config.region.clone(),
            s3_endpoint: state.config.public_s3_endpoint.clone(),
        }),
    ))
}

/// Who is calling: the account and the key that signed the request.
#[utoipa::path(get, path = "/v1/account", tag = "accounts", operation_id = "account_show",
    responses((status = 200, body = WhoAmI)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn account_show(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<WhoAmI>> {
    let mut c = state.store.conn().await?;
    let account = accounts::get(&mut c, &caller.account_id)
        .await?
        .ok_or_else(|| ApiError::internal("an authenticated key's account is missing"))?;
    Ok(axum::Json(WhoAmI {
        account: view(account),
        access_key_id: caller.key_id,
        scope: caller.scope,
        region: state.config.region.clone(),
    }))
}

/// Closes the account: its keys stop working and its instances are terminated.
#[utoipa::path(post, path = "/v1/account/close", tag = "accounts", operation_id = "account_close",
    request_body = CloseAccountRequest,
    responses((status = 200, body = Account)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn account_close(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CloseAccountRequest>,
) -> ApiResult<axum::Json<Account>> {
    if req.confirm_account_id != caller.account_id {
        return Err(ApiError::invalid(
            "confirm_account_id must repeat the id of the account being closed",
        ));
    }
    let at = state.clock.now_micros();
    let mut tx = state.store.begin().await?;
    accounts::close(&mut tx, &caller.account_id, at).await?;
    nubo_store::keys::disable_all(&mut tx, &caller.account_id, at).await?;
    lifecycle::terminate_all(&mut tx, &caller.account_id, at).await?;
    crate::volumes::manage::delete_all(&mut tx, &caller.account_id, at).await?;
    let account = accounts::get(&mut tx, &caller.account_id)
        .await?
        .ok_or_else(|| ApiError::internal("the closed account vanished"))?;
    tx.commit().await?;
    state.keys.forget_account(&caller.account_id);
    state.reconcile.notify_one();
    state.volumes.notify_one();
    tracing::info!(account_id = caller.account_id, "account closed");
    Ok(axum::Json(view(account)))
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Me@Example.COM ").unwrap(),
            "me@example.com"
        );
        for bad in [
            "",
            "me",
            "me@",
            "@example.com",
            "me@localhost",
            "a b@example.com",
            "me@example.",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
