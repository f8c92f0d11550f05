//! Compute: instance types, images, and instances from launch to termination.

pub mod catalog;
pub mod images;
pub mod instances;
pub mod key_pairs;
pub mod launch;
pub mod lifecycle;
pub mod ports;
pub mod reconciler;
pub mod scheduler;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(catalog::routes())
        .merge(images::routes())
        .merge(launch::routes())
        .merge(instances::routes())
        .merge(key_pairs::routes())
        .merge(ports::routes())
}
