//! Placement: which host runs each new instance.
//!
//! Instances of one request are spread over hosts (fewest of this request first,
//! then the host with most free memory), so that one host's loss takes as few of
//! them as possible. Each placement takes the capacity with a conditional update
//! in the caller's transaction, so concurrent launches never overcommit a host.
//! When nothing fits, the request is refused before anything is accepted.

use std::collections::HashMap;

use nubo_api::error::ErrorCode;
use nubo_api::regions::RegionCapacity;
use nubo_store::Conn;
use nubo_store::hosts::{self, HostRow};

use crate::api::error::{ApiError, ApiResult};
use crate::config::Config;

/// What one instance needs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub vcpus: i64,
    pub memory_mib: i64,
}

/// Places `count` instances of `shape` (on host `only`, if given: the host of
/// their volumes); returns a host id per instance.
pub async fn place(
    c: &mut Conn,
    config: &Config,
    count: u32,
    shape: Shape,
    only: Option<&str>,
    what: &str,
) -> ApiResult<Vec<String>> {
    let mut hosts: Vec<HostRow> = hosts::list(&mut *c)
        .await?
        .into_iter()
        .filter(|h| h.state == hosts::ACTIVE && only.is_none_or(|o| o == h.id))
        .collect();
    let mut placed_here: HashMap<String, u32> = HashMap::new();
    let mut placements = Vec::with_capacity(count as usize);
    while placements.len() < count as usize {
        let best = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| fits(h, shape))
            .min_by_key(|(_, h)| {
                (
                    placed_here.get(&h.id).copied().unwrap_or(0),
                    -h.free_memory_mib(),
                    -h.free_vcpus(),
                )
            })
            .map(|(i, _)| i);
        let Some(i) = best else {
            return Err(no_room(config, &hosts, count, shape, what));
        };
        let host = &mut hosts[i];
        if hosts::allocate(&mut *c, &host.id, shape.vcpus, shape.memory_mib).await? {
            host.used_vcpus += shape.vcpus;
            host.used_memory_mib += shape.memory_mib;
            *placed_here.entry(host.id.clone()).or_default() += 1;
            placements.push(host.id.clone());
        } else if let Some(fresh) = hosts::get(&mut *c, &host.id).await? {
            // Another launch took capacity since the list was read: look again.
            *host = fresh;
            if host.state != hosts::ACTIVE {
                host.used_vcpus = host.vcpus;
            }
        }
    }
    Ok(placements)
}

/// Places a volume of `gib` on the active host with the most free disk and
/// takes the room there; returns the host id.
pub async fn place_volume(
    c: &mut Conn,
    config: &Config,
    gib: i64,
    what: &str,
) -> ApiResult<String> {
    let mut hosts: Vec<HostRow> = hosts::list(&mut *c)
        .await?
        .into_iter()
        .filter(|h| h.state == hosts::ACTIVE)
        .collect();
    hosts.sort_by_key(|h| std::cmp::Reverse(h.disk_gib - h.used_disk_gib));
    for host in hosts.iter().filter(|h| h.disk_gib - h.used_disk_gib >= gib) {
        if hosts::allocate_disk(&mut *c, &host.id, gib).await? {
            return Ok(host.id.clone());
        }
    }
    let largest = hosts
        .first()
        .map_or(0, |h| (h.disk_gib - h.used_disk_gib).max(0));
    Err(ApiError::new(
        ErrorCode::InsufficientCapacity,
        format!(
            "region {} has no room for {what} ({gib} GiB); the most free disk on one host is              {largest} GiB",
            config.region
        ),
    ))
}

fn fits(h: &HostRow, shape: Shape) -> bool {
    h.free_vcpus() >= shape.vcpus && h.free_memory_mib() >= shape.memory_mib
}

fn no_room(config: &Config, hosts: &[HostRow], count: u32, shape: Shape, what: &str) -> ApiError {
    let largest = hosts
        .iter()
        .max_by_key(|h| {
            (
                h.free_memory_mib().min(h.free_vcpus() * 1_000_000),
                h.free_vcpus(),
            )
        })
        .map(|h| {
            format!(
                "{} vCPU / {} MiB",
                h.free_vcpus().max(0),
                h.free_memory_mib().max(0)
            )
        })
        .unwrap_or_else(|| "none (no active host)".into());
    ApiError::new(
        ErrorCode::InsufficientCapacity,
        format!(
            "region {} has no room for {what} ({count} × {} vCPU / {} MiB); nothing was \
             launched. Largest free slot: {largest}",
            config.region, shape.vcpus, shape.memory_mib
        ),
    )
}

/// The region's room, from the host registry.
pub fn capacity(region: &str, hosts: &[HostRow]) -> RegionCapacity {
    let active: Vec<&HostRow> = hosts.iter().filter(|h| h.state == hosts::ACTIVE).collect();
    let free = |f: fn(&HostRow) -> i64| active.iter().map(move |h| f(h).max(0) as u64);
    let largest = active
        .iter()
        .max_by_key(|h| (h.free_memory_mib(), h.free_vcpus()))
        .map(|h| {
            (
                h.free_vcpus().max(0) as u64,
                h.free_memory_mib().max(0) as u64,
            )
        })
        .unwrap_or((0, 0));
    RegionCapacity {
        region: region.to_string(),
        hosts: active.len() as u64,
        free_vcpus: free(HostRow::free_vcpus).sum(),
        free_memory_mib: free(HostRow::free_memory_mib).sum(),
        largest_free_vcpus: largest.0,
        largest_free_memory_mib: largest.1,
    }
}
