//! Pagination shared by every list endpoint.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest page a list endpoint returns, whatever `limit` asks.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Query parameters of list endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_page_token` of the previous page.
    #[param(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub page_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items follow; pass it as `page_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
