//! Prometheus metrics at `/metrics`: request counts and latencies, and the
//! region's resources counted from the store at scrape time.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::error::ApiResult;
use crate::state::AppState;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    accounts: Gauge,
    instances: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nubo");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let accounts = Gauge::default();
        let instances = Family::<Labels, Gauge>::default();
        registry.register(
            "http_requests",
            "API requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "API request latency by method and route",
            latency.clone(),
        );
        registry.register("accounts", "Active accounts", accounts.clone());
        registry.register("instances", "Instances by state", instances.clone());
        Metrics {
            registry,
            requests,
            latency,
            accounts,
            instances,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let route_labels = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
        ];
        let mut labels = route_labels.clone();
        labels.push(("status".to_string(), status.to_string()));
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&route_labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let mut c = state.store.conn().await?;
    state
        .metrics
        .accounts
        .set(nubo_store::accounts::count_active(&mut c).await?);
    for (instance_state, n) in nubo_store::instances::count_by_state(&mut c).await? {
        state
            .metrics
            .instances
            .get_or_create(&vec![("state".to_string(), instance_state)])
            .set(n);
    }
    let mut text = String::new();
    encode(&mut text, &state.metrics.registry)
        .map_err(|_| crate::api::error::ApiError::internal("metrics encoding failed"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
