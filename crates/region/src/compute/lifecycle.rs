//! The instance state machine: every transition, from the API's requests and from
//! what hosts report, with the capacity and quota each one gives back.
//!
//! ```text
//! pending ──► running ──► stopping ──► stopped ──(start)──► pending
//!    │           │                                            
//!    └───────────┴──► failed            any ──► shutting-down ──► terminated
//! ```
//!
//! Invariant: `host_id` is set exactly while the instance holds capacity on that
//! host, and so the account's instance quotas (instances, vcpus, memory_mib):
//! stopped, failed and terminated instances count against none, as AWS counts
//! only pending and running instances against its limits.

use nubo_api::compute::InstanceState;
use nubo_api::quotas::QuotaResource;
use nubo_store::instances::{self, InstanceRow};
use nubo_store::{Conn, Result, hosts, quotas};

use crate::api::error::{ApiError, ApiResult};
use crate::compute::scheduler::{self, Shape};
use crate::config::Config;

fn is(row: &InstanceRow, state: InstanceState) -> bool {
    row.state == state.as_str()
}

fn with_state(row: &InstanceRow, state: InstanceState, at: i64) -> InstanceRow {
    InstanceRow {
        state: state.as_str().to_string(),
        state_changed_at: at,
        ..row.clone()
    }
}

/// The quota an instance holds while it holds a host.
fn quota_held(row: &InstanceRow) -> [(QuotaResource, i64); 3] {
    [
        (QuotaResource::Instances, 1),
        (QuotaResource::Vcpus, row.vcpus),
        (QuotaResource::MemoryMib, row.memory_mib),
    ]
}

/// Returns the host capacity and the quota the instance holds, if it holds any.
async fn release_host(c: &mut Conn, row: &mut InstanceRow) -> Result<()> {
    if let Some(host_id) = row.host_id.take() {
        hosts::release(c, &host_id, row.vcpus, row.memory_mib).await?;
        for (resource, amount) in quota_held(row) {
            quotas::release(&mut *c, &row.account_id, resource.as_str(), amount).await?;
        }
    }
    Ok(())
}

/// Asks a pending or running instance to stop. Stopping or stopped: unchanged.
pub async fn request_stop(
    c: &mut Conn,
    row: &InstanceRow,
    at: i64,
) -> ApiResult<Option<InstanceRow>> {
    if is(row, InstanceState::Stopping) || is(row, InstanceState::Stopped) {
        return Ok(Some(row.clone()));
    }
    if !is(row, InstanceState::Running) && !is(row, InstanceState::Pending) {
        return Err(ApiError::invalid_state(format!(
            "instance {} is {}; only pending or running instances stop",
            row.id, row.state
        )));
    }
    let mut next = with_state(row, InstanceState::Stopping, at);
    next.desired_state = InstanceState::Stopped.as_str().into();
    Ok(instances::update(c, row, next).await?)
}

/// Starts a stopped or failed instance on a host with room. Pending or running:
/// unchanged.
pub async fn request_start(
    c: &mut Conn,
    config: &Config,
    row: &InstanceRow,
    at: i64,
) -> ApiResult<Option<InstanceRow>> {
    if is(row, InstanceState::Pending) || is(row, InstanceState::Running) {
        return Ok(Some(row.clone()));
    }
    if !is(row, InstanceState::Stopped) && !is(row, InstanceState::Failed) {
        return Err(ApiError::invalid_state(format!(
            "instance {} is {}; only stopped or failed instances start",
            row.id, row.state
        )));
    }
    let shape = Shape {
        vcpus: row.vcpus,
        memory_mib: row.memory_mib,
    };
    let mut next = with_state(row, InstanceState::Pending, at);
    release_host(c, &mut next).await?;
    // An instance with volumes starts where they are, once no snapshot is
    // copying them.
    for v in nubo_store::volumes::of_instance(c, &row.id).await? {
        crate::volumes::manage::not_being_copied(c, &v).await?;
    }
    let home = crate::volumes::roots::home(c, &row.id).await?;
    let what = format!("starting {}", row.id);
    for (resource, amount) in quota_held(row) {
        let amount = amount as u64;
        crate::quotas::reserve(c, config, &row.account_id, resource, amount, &what).await?;
    }
    let host = scheduler::place(c, config, 1, shape, home.as_deref(), &what).await?;
    next.host_id = host.into_iter().next();
    next.desired_state = InstanceState::Running.as_str().into();
    next.state_reason = None;
    Ok(instances::update(c, row, next).await?)
}

/// Asks any instance to terminate. Shutting down or terminated: unchanged.
pub async fn request_terminate(
    c: &mut Conn,
    row: &InstanceRow,
    at: i64,
) -> Result<Option<InstanceRow>> {
    if is(row, InstanceState::ShuttingDown) || is(row, InstanceState::Terminated) {
        return Ok(Some(row.clone()));
    }
    let mut next = with_state(row, InstanceState::ShuttingDown, at);
    next.desired_state = InstanceState::Terminated.as_str().into();
    instances::update(c, row, next).await
}

/// Terminates every instance of an account (when it closes).
pub async fn terminate_all(c: &mut Conn, account_id: &str, at: i64) -> Result<()> {
    for row in instances::live_of_account(&mut *c, account_id).await? {
        let mut current = row;
        while request_terminate(&mut *c, &current, at).await?.is_none() {
            match instances::get_any(&mut *c, &current.id).await? {
                Some(fresh) => current = fresh,
                None => break,
            }
        }
    }
    Ok(())
}

/// The guest said it is up.
pub async fn mark_running(c: &mut Conn, row: &InstanceRow, at: i64) -> Result<Option<InstanceRow>> {
    let next = with_state(row, InstanceState::Running, at);
    instances::update(c, row, next).await
}

/// The VM is down and gone from its host.
pub async fn mark_stopped(
    c: &mut Conn,
    row: &InstanceRow,
    reason: Option<&str>,
    at: i64,
) -> Result<Option<InstanceRow>> {
    let mut next = with_state(row, InstanceState::Stopped, at);
    next.desired_state = InstanceState::Stopped.as_str().into();
    next.state_reason = reason.map(str::to_string);
    release_host(c, &mut next).await?;
    instances::update(c, row, next).await
}

/// The VM died without being asked to.
pub async fn mark_failed(
    c: &mut Conn,
    row: &InstanceRow,
    reason: &str,
    at: i64,
) -> Result<Option<InstanceRow>> {
    let mut next = with_state(row, InstanceState::Failed, at);
    next.desired_state = InstanceState::Stopped.as_str().into();
    next.state_reason = Some(reason.to_string());
    release_host(c, &mut next).await?;
    instances::update(c, row, next).await
}

/// The VM and everything it held are gone; the instance's network address is
/// given back (its host and quota went with its host, if it still held one).
pub async fn mark_terminated(
    c: &mut Conn,
    row: &InstanceRow,
    at: i64,
) -> Result<Option<InstanceRow>> {
    let mut next = with_state(row, InstanceState::Terminated, at);
    release_host(c, &mut next).await?;
    let Some(done) = instances::update(&mut *c, row, next).await? else {
        return Ok(None);
    };
    nubo_store::networks::release(&mut *c, &row.id).await?;
    crate::volumes::roots::on_terminated(&mut *c, &row.id, at).await?;
    Ok(Some(done))
}
