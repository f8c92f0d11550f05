//! Object storage in the region: the S3 endpoint's view of accounts and keys, and
//! the REST API's buckets (for the CLI and the console; S3 clients use S3).

use axum::extract::State;
use axum::http::StatusCode;
use nubo_api::buckets::{Bucket, CreateBucketRequest};
use nubo_api::error::{ErrorBody, ErrorCode};
use nubo_api::keys::KeyScope;
use nubo_api::quotas::QuotaResource;
use nubo_s3::{Key, Tenancy};
use nubo_store::buckets::{BucketRow, PRIVATE, PUBLIC_READ};
use s3s::{S3Error, S3ErrorCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Path};
use crate::clock::rfc3339;
use crate::state::AppState;

/// Accounts and keys as object storage sees them: the same keys as the API.
pub struct RegionTenancy(pub AppState);

#[async_trait::async_trait]
impl Tenancy for RegionTenancy {
    async fn key(&self, key_id: &str) -> Result<Option<Key>, String> {
        if !nubo_auth::credentials::is_access_key_id(key_id) {
            return Ok(None);
        }
        let key = self.0.keys.find(key_id).await.map_err(|e| e.to_string())?;
        Ok(key.map(|k| Key {
            account_id: k.account_id.clone(),
            secret: k.secret.clone(),
            may_write: k.scope == KeyScope::Full,
        }))
    }

    async fn bucket_limit(&self, account_id: &str) -> Result<u64, String> {
        let mut c = self.0.store.conn().await.map_err(|e| e.to_string())?;
        crate::quotas::limit(&mut c, &self.0.config, account_id, QuotaResource::Buckets)
            .await
            .map_err(|e| e.message)
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bucket_list, bucket_create))
        .routes(routes!(bucket_delete))
}

fn view(b: BucketRow) -> Bucket {
    Bucket {
        public_read: b.acl == PUBLIC_READ,
        versioning: (!b.versioning.is_empty()).then_some(b.versioning),
        created_at: rfc3339(b.created_at),
        name: b.name,
        region: b.region,
    }
}

/// Object storage's refusals, in the API's terms.
fn refused(e: S3Error, name: &str) -> ApiError {
    match e.code() {
        S3ErrorCode::NoSuchBucket | S3ErrorCode::AccessDenied => {
            ApiError::not_found("bucket", name)
        }
        S3ErrorCode::InvalidBucketName => ApiError::invalid(format!(
            "{name:?} is not a valid bucket name: 3 to 63 lower-case letters, digits, dots and hyphens"
        )),
        S3ErrorCode::BucketAlreadyExists | S3ErrorCode::BucketAlreadyOwnedByYou => ApiError::new(
            ErrorCode::Conflict,
            format!("the bucket name {name:?} is taken in this region"),
        ),
        S3ErrorCode::BucketNotEmpty => ApiError::new(
            ErrorCode::BucketNotEmpty,
            format!("bucket {name} is not empty; delete its objects and versions first"),
        ),
        S3ErrorCode::TooManyBuckets => ApiError::new(
            ErrorCode::QuotaExceeded,
            e.message().unwrap_or("bucket quota reached").to_string(),
        ),
        S3ErrorCode::ServiceUnavailable => ApiError::new(
            ErrorCode::Unavailable,
            "the store is unavailable; retry later",
        ),
        _ => ApiError::internal(format!("object storage: {e:?}")),
    }
}

/// Lists the account's buckets.
#[utoipa::path(get, path = "/v1/buckets", tag = "storage", operation_id = "bucket_list",
    responses((status = 200, body = Vec<Bucket>)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn bucket_list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Bucket>>> {
    let rows = state
        .objects()
        .list(&caller.account_id)
        .await
        .map_err(|e| refused(e, ""))?;
    Ok(axum::Json(rows.into_iter().map(view).collect()))
}

/// Creates a bucket in this region.
#[utoipa::path(post, path = "/v1/buckets", tag = "storage", operation_id = "bucket_create",
    request_body = CreateBucketRequest,
    responses((status = 201, body = Bucket),
              (status = 403, body = ErrorBody, description = "A quota refuses it (`QuotaExceeded`)"),
              (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn bucket_create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateBucketRequest>,
) -> ApiResult<(StatusCode, axum::Json<Bucket>)> {
    let acl = if req.public_read {
        PUBLIC_READ
    } else {
        PRIVATE
    };
    let row = state
        .objects()
        .create(&caller.account_id, &req.name, acl)
        .await
        .map_err(|e| refused(e, &req.name))?;
    Ok((StatusCode::CREATED, axum::Json(view(row))))
}

/// Deletes an empty bucket.
#[utoipa::path(delete, path = "/v1/buckets/{bucket_name}", tag = "storage",
    operation_id = "bucket_delete",
    params(("bucket_name" = String, Path, description = "Bucket name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("sigv4" = []), ("bearer" = [])))]
async fn bucket_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket_name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .objects()
        .remove(&caller.account_id, &bucket_name)
        .await
        .map_err(|e| refused(e, &bucket_name))?;
    Ok(StatusCode::NO_CONTENT)
}
