//! Accounts: signup, the caller's identity, closing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keys::KeyScope;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The owner's email address; one active account per address.
    #[schema(format = "email", max_length = 254, example = "you@example.com")]
    pub email: String,
}

/// Credentials of a new account. The secret is shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignupResponse {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The region that created the account.
    pub region: String,
    /// Where S3 clients reach the region's object storage with these keys.
    pub s3_endpoint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub status: AccountStatus,
    /// RFC 3339.
    pub created_at: String,
}

/// Who is calling: the account and the key that signed the request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub account: Account,
    pub access_key_id: String,
    pub scope: KeyScope,
    pub region: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseAccountRequest {
    /// Must repeat the account id, so that a stray request cannot close an account.
    pub confirm_account_id: String,
}
