//! From the API's page parameters to the store's keyset pages, and back.

use nubo_api::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page};
use nubo_store::{PageQuery, Paged};

use crate::api::error::{ApiError, ApiResult};

pub fn query(limit: Option<u32>, page_token: Option<String>) -> ApiResult<PageQuery> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    if let Some(token) = &page_token
        && (token.is_empty() || token.len() > 128 || !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::invalid("page_token is not one this API issued"));
    }
    Ok(PageQuery {
        after: page_token,
        limit,
    })
}

pub fn page<T, U>(paged: Paged<T>, view: impl FnMut(T) -> U) -> Page<U> {
    Page {
        items: paged.items.into_iter().map(view).collect(),
        next_page_token: paged.next_after,
    }
}
